"""`anyshape explain` and `anyshape summary`: the shape engine's answer for an input shape.

`explain` needs no deep-learning backend, so it answers at once."""

from __future__ import annotations

from anyshape.cli.options import (
    EXIT_FAILED,
    EXIT_OK,
    add_arch_arguments,
    add_model_arguments,
    add_preprocessing_argument,
    network_options,
)


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
    p.add_argument(
        "--weights",
        default=None,
        help="a weight set name or a weights file: explain the network built as those weights need "
        "(their build overrides), and say where it is not the function of the PyTorch twin they "
        "come from (no weights are read) (default: none)",
    )
    add_preprocessing_argument(p)
    add_arch_arguments(p)


def _run_explain(args) -> int:
    from anyshape.shapes import explain

    configuration = _configuration(args)
    if args.weights is not None and str(args.weights).lower() != "none":
        return _explain_with_weights(args, configuration)
    report = explain(arch=args.arch, **configuration)
    print(report)
    return EXIT_OK if report.valid else EXIT_FAILED


def _explain_with_weights(args, configuration: dict) -> int:
    """explain --weights: the network with the weight set's build overrides (a flag given wins),
    as `anyshape.create_model` builds it, then where it differs from the weights' PyTorch twin."""
    from anyshape.archs import get_arch
    from anyshape.shapes import explain
    from anyshape.weights import resolve
    from anyshape.weights.twin_note import twin_note

    arch = get_arch(args.arch).name
    ws = resolve(args.weights, args.preprocessing, arch=arch)
    for key, value in ws.build_overrides_for(arch).items():
        if configuration.get(key) is None:  # None: "what the weights need"; a value given wins
            configuration[key] = value
    report = explain(arch=args.arch, **configuration)
    print(report)
    note = twin_note(
        ws,
        args.input_shape,
        arch=arch,
        include_top=args.include_top,
        data_format=configuration.get("data_format", "channels_last"),
    )
    if note is not None:
        print(f"note: {note}")
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
