"""`anyshape explain` and `anyshape summary`: the shape engine's answer for an input shape.

`explain` needs no deep-learning backend, so it answers at once."""

from __future__ import annotations

from anyshape.cli.options import EXIT_FAILED, EXIT_OK, add_arch_arguments, add_model_arguments, network_options


def _configuration(args) -> dict:
    """The model the flags describe, as keyword arguments that `anyshape.shapes.explain` and
    `anyshape.create_model` both take; a network's own options only when given."""
    out = dict(
        input_shape=args.input_shape,
        include_top=args.include_top,
        pooling=args.pooling,
        classes=args.classes,
        dropout_rate=args.dropout_rate,
    )
    if args.data_format is not None:  # else the library's own default
        out["data_format"] = args.data_format
    own = network_options(args, (("--aux-logits", "aux_logits"), ("--bn-scale", "bn_scale")))
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
    add_arch_arguments(p)


def _run_explain(args) -> int:
    from anyshape.shapes import explain

    report = explain(arch=args.arch, **_configuration(args))
    print(report)
    return EXIT_OK if report.valid else EXIT_FAILED


def _add_summary(sub) -> None:
    p = sub.add_parser("summary", help="print the Keras summary of a configuration (random weights)")
    add_model_arguments(p)
    add_arch_arguments(p)


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
