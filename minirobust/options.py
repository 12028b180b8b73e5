"""Settings declared once: a config dataclass field that the command line offers as a flag.

    epochs: int = option(10, "--epochs", "positive_int", "training epochs")

The field is the single declaration: its default, its flag, the kind of value it takes and its
help. ``cli.add_config_flags`` turns every such field of a dataclass into an argparse option (dest
= the field's name, so ``config_from_args`` rebuilds the dataclass from the parsed arguments by
name). Plain argparse, no extra library: the project has a few dozen options, and a generator of
twenty lines over ``dataclasses.fields`` does the job without a dependency.

Kinds: positive_int, nonneg_int, finite_float, nonneg_float, positive_float, norm, choice (with
``choices``), switch (a store_true flag), negated (a --no-X flag that sets the field False).
"""

from __future__ import annotations

from dataclasses import field


def option(default, flag, kind, help=None, *, choices=None, metavar=None, robust_only=False):
    """A dataclass field offered on the command line as ``flag``. ``robust_only``: the flag shapes
    robust training and means nothing without a norm (the CLI refuses it there)."""
    return field(default=default, metadata={"flag": flag, "kind": kind, "help": help, "choices": choices,
                                            "metavar": metavar, "robust_only": robust_only})
