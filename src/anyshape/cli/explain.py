"""`anyshape explain` and `anyshape summary`: the shape engine's answer for an input shape.

`explain` needs no deep-learning backend, so it answers at once."""

from __future__ import annotations

import argparse
import ast
from dataclasses import fields

from anyshape.cli.options import EXIT_FAILED, EXIT_OK, add_model_arguments


def _option(text: str) -> tuple:
    """--option KEY=VALUE: VALUE read as a Python literal (0.5, True, (3, 4, 6, 3)), else as text."""
    key, sep, value = text.partition("=")
    if not sep or not key.strip().isidentifier():
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE (e.g. alpha=0.5), got {text!r}")
    try:
        parsed = ast.literal_eval(value.strip())
    except (ValueError, SyntaxError):
        parsed = value.strip()
    return key.strip(), parsed


class _Options(argparse.Action):
    """Collects repeated --option flags in a list (whatever the default was replaced by)."""

    def __call__(self, parser, namespace, values, option_string=None):
        current = getattr(namespace, self.dest, None)
        setattr(namespace, self.dest, [*(current if isinstance(current, list) else []), values])


def _add_arch_arguments(p) -> None:
    from anyshape.archs import DEFAULT_ARCH, list_models

    p.add_argument(
        "--arch",
        default=DEFAULT_ARCH,
        choices=list_models(),
        metavar="NAME",
        help=f"the network, one of anyshape.list_models() (default: {DEFAULT_ARCH}): " + ", ".join(list_models()),
    )
    p.add_argument(
        "--option",
        type=_option,
        action=_Options,
        default=None,
        metavar="KEY=VALUE",
        help="a build argument of the network's own (repeatable), e.g. --option alpha=0.5 for MobileNet, "
        "--option head=conv for VGG; the names are its Config's fields",
    )


def _configuration(args) -> dict:
    """The model the flags describe, as keyword arguments that `anyshape.shapes.explain` and
    `anyshape.create_model` both take; a network's own options only when given."""
    from anyshape.archs import get_arch

    arch = get_arch(args.arch)
    known = {f.name for f in fields(arch.config_class)}
    out = dict(
        input_shape=args.input_shape,
        include_top=args.include_top,
        pooling=args.pooling,
        classes=args.classes,
        data_format=args.data_format,
        dropout_rate=args.dropout_rate,
    )
    own = dict(args.option or [])
    for flag, key in (("--aux-logits", "aux_logits"), ("--bn-scale", "bn_scale")):
        if getattr(args, key, False):
            if key not in known:
                raise ValueError(f"{flag} is an option of inception_v3, not of --arch {args.arch}")
            own[key] = True
    for key in own:
        if key in out or key not in known:
            others = sorted(known - set(out) - {"input_shape", "name"})
            raise ValueError(
                f"--option {key}: {'use its own flag' if key in out else f'--arch {args.arch} has no option {key}'}"
                f"; its options are {', '.join(others) or 'none'}"
            )
    return {**out, **own}


def _add_explain(sub) -> None:
    p = sub.add_parser(
        "explain",
        help="explain what a network (InceptionV3 by default) does with an input shape, stage by stage",
        description="Print every stage's output size, parameters and multiply-accumulates "
        "for an input shape; exit 1 with the reason when the shape cannot work.",
    )
    add_model_arguments(p)
    p.add_argument("--bn-scale", action="store_true", help="count BatchNorm gammas (torchvision/timm layout)")
    _add_arch_arguments(p)


def _run_explain(args) -> int:
    from anyshape.shapes import explain

    report = explain(arch=args.arch, **_configuration(args))
    print(report)
    return EXIT_OK if report.valid else EXIT_FAILED


def _add_summary(sub) -> None:
    p = sub.add_parser("summary", help="print the Keras summary of a configuration (random weights)")
    add_model_arguments(p)
    _add_arch_arguments(p)


def _run_summary(args) -> int:
    from anyshape.factory import create_model

    model = create_model(args.arch, weights=None, **_configuration(args))
    model.summary(line_length=120)
    return EXIT_OK


# verb: (declare its arguments, run it), for anyshape.cli.VERBS
VERBS = {
    "explain": (_add_explain, _run_explain),
    "summary": (_add_summary, _run_summary),
}
