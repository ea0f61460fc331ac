"""The `anyshape` command. Argument parsing only: every verb calls the Python API.

Each verb is a pair of functions: `_add_<verb>(subparsers)` declares its arguments and
`_run_<verb>(args) -> int` calls the library and returns the exit code. Keras is imported only
by verbs that build a model, so `anyshape explain` answers at once.
"""

from __future__ import annotations

import argparse
import sys
from typing import Sequence

__all__ = ["main"]


def parse_shape(text: str) -> tuple:
    """'150,150,3' -> (150, 150, 3); 'none' or '?' for an unknown height or width."""
    parts = [p.strip() for p in text.replace("x", ",").split(",") if p.strip()]
    try:
        return tuple(None if p.lower() in ("none", "?") else int(p) for p in parts)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected H,W,C (e.g. 150,150,3), got {text!r}") from None


def _add_model_arguments(p: argparse.ArgumentParser, *, weights_default: str | None = "none") -> None:
    """The arguments that describe a model, shared by every verb that builds one."""
    p.add_argument("--input-shape", type=parse_shape, default=None, metavar="H,W,C",
                   help="input shape without the batch axis, in --data-format order (e.g. 150,150,3; none for a free size)")
    p.add_argument("--include-top", action="store_true", help="include the pooling + dense classifier")
    p.add_argument("--pooling", choices=["avg", "max", "avgmax", "catavgmax"], default=None)
    p.add_argument("--classes", type=int, default=1000)
    p.add_argument("--aux-logits", action="store_true", help="add the auxiliary classifier on mixed7 (needs H, W >= 299)")
    p.add_argument("--data-format", choices=["channels_last", "channels_first"], default="channels_last")
    p.add_argument("--dropout-rate", type=float, default=0.0)


def _add_explain(sub) -> None:
    p = sub.add_parser("explain", help="explain what InceptionV3 does with an input shape, stage by stage",
                       description="Print every stage's output size, parameters and multiply-accumulates "
                                   "for an input shape; exit 1 with the reason when the shape cannot work.")
    _add_model_arguments(p)
    p.add_argument("--bn-scale", action="store_true", help="count BatchNorm gammas (torchvision/timm layout)")


def _run_explain(args) -> int:
    from anyshape.shapes import explain

    try:
        report = explain(args.input_shape, include_top=args.include_top, pooling=args.pooling,
                         aux_logits=args.aux_logits, classes=args.classes, data_format=args.data_format,
                         bn_scale=args.bn_scale, dropout_rate=args.dropout_rate)
    except ValueError as e:
        print(f"anyshape explain: {e}", file=sys.stderr)
        return 2
    print(report)
    return 0 if report.valid else 1


def _add_summary(sub) -> None:
    p = sub.add_parser("summary", help="print the Keras summary of a configuration (random weights)")
    _add_model_arguments(p)


def _run_summary(args) -> int:
    from anyshape.shapes import InvalidInputShape

    from anyshape.inception_v3 import InceptionV3

    try:
        model = InceptionV3(weights=None, include_top=args.include_top, input_shape=args.input_shape,
                            pooling=args.pooling, classes=args.classes, aux_logits=args.aux_logits,
                            data_format=args.data_format, dropout_rate=args.dropout_rate)
    except (InvalidInputShape, ValueError) as e:
        print(f"anyshape summary: {e}", file=sys.stderr)
        return 1
    model.summary(line_length=120)
    return 0


VERBS = {
    "explain": (_add_explain, _run_explain),
    "summary": (_add_summary, _run_summary),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="anyshape", description="InceptionV3 for Keras 3 at any input shape.")
    sub = parser.add_subparsers(dest="verb", required=True, metavar="VERB")
    for add, _ in VERBS.values():
        add(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return VERBS[args.verb][1](args)


if __name__ == "__main__":
    sys.exit(main())
