"""The ``minirobust`` command.

    minirobust info                     versions, devices, backend, kernel tiers
    minirobust demo                     train a small net and print its accuracy

Every subcommand takes ``--backend cpu|gpu``. Bad flag values end in a one-line error
(exit status 2), not a traceback.
"""

from __future__ import annotations

import argparse
import sys

from .errors import MinirobustError


def _add_common(p):
    p.add_argument("--backend", choices=("cpu", "gpu"), default=None,
                   help="where arrays live (default: $MINIROBUST_BACKEND or cpu)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")


def cmd_info(args):
    from . import info  # noqa: PLC0415

    info()


def cmd_demo(args):
    from .demo import run_demo  # noqa: PLC0415

    run_demo(epochs=args.epochs, seed=args.seed)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="minirobust", description=__doc__.split("\n")[0].strip())
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("info", help="print versions, devices, the backend and kernel tiers")
    _add_common(p)
    p.set_defaults(func=cmd_info)

    p = sub.add_parser("demo", help="train the paper's MNIST net on a small task and print accuracy")
    _add_common(p)
    p.add_argument("--epochs", type=int, default=2)
    p.set_defaults(func=cmd_demo)
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if args.backend:
            from .backend import set_backend  # noqa: PLC0415

            set_backend(args.backend)
        args.func(args)
    except MinirobustError as exc:
        print(f"minirobust {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
