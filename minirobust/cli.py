"""The ``minirobust`` command.

    minirobust info                     versions, devices, backend, kernel tiers
    minirobust demo                     train a small net and print its accuracy
    minirobust data fetch mnist         download and verify a dataset
    minirobust data info mnist          load a dataset and print its shapes and statistics

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


def _positive_int(text):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def _add_data_dir(p):
    p.add_argument("--data-dir", default=None,
                   help="dataset folder (default: $MINIROBUST_DATA, else ~/.cache/minirobust)")


def cmd_info(args):
    from . import info  # noqa: PLC0415

    info()


def cmd_demo(args):
    from .demo import run_demo  # noqa: PLC0415

    run_demo(epochs=args.epochs, n_train=args.n_train, seed=args.seed, synthetic=args.synthetic,
             data_dir=args.data_dir)


def cmd_data(args):
    import numpy as np  # noqa: PLC0415

    from .data import data_root, dataset_stats, fetch_dataset, load_dataset  # noqa: PLC0415

    if args.action == "fetch":
        folder = fetch_dataset(args.dataset, args.data_dir, urls=args.url or None)
        load_dataset(args.dataset, args.data_dir, download=False, log=print)  # parse + verify once
        print(f"{args.dataset}: verified in {folder}")
        return
    d = load_dataset(args.dataset, args.data_dir, download=not args.no_download)
    mean, std = dataset_stats(d.x_train, per_channel=d.x_train.shape[1] > 1)
    print(f"{d!r} from {data_root(args.data_dir)}")
    print(f"train label counts {np.bincount(d.y_train, minlength=10).tolist()}")
    print(f"test label counts  {np.bincount(d.y_test, minlength=10).tolist()}")
    print(f"training mean {mean} std {std} (on the [0, 1] scale)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="minirobust", description=__doc__.split("\n")[0].strip())
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("info", help="print versions, devices, the backend and kernel tiers")
    _add_common(p)
    p.set_defaults(func=cmd_info)

    p = sub.add_parser("demo", help="train the paper's MNIST net on a small task and print accuracy")
    _add_common(p)
    p.add_argument("--epochs", type=_positive_int, default=1)
    p.add_argument("--n-train", type=_positive_int, default=None, help="use only the first N training images")
    p.add_argument("--synthetic", action="store_true", help="use the synthetic task instead of MNIST")
    _add_data_dir(p)
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("data", help="fetch (download + verify) or describe a dataset")
    _add_common(p)
    p.add_argument("action", choices=("fetch", "info"))
    p.add_argument("dataset", choices=("mnist", "cifar10"))
    _add_data_dir(p)
    p.add_argument("--url", action="append", metavar="URL",
                   help="download from this base URL (MNIST) or archive URL (CIFAR-10) instead of the "
                        "canonical sources; repeat for mirrors")
    p.add_argument("--no-download", action="store_true", help="fail instead of downloading missing files")
    p.set_defaults(func=cmd_data)
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
