"""The verbs that make a model ready to deploy or time it: export, bench and quantize."""

from __future__ import annotations

import sys

from anyshape.cli.arg_types import parse_shape, positive_float, positive_int_list
from anyshape.cli.options import (
    EXIT_OK,
    add_arch_arguments,
    add_inference_model_arguments,
    check_model_flags,
    cli_message,
    inference_model,
    library_default,
    network_options,
)


def _add_export(sub) -> None:
    p = sub.add_parser(
        "export",
        help="save the model as ONNX, a TF SavedModel or a .keras file",
        description="The format follows the output's name: *.onnx, *.keras, or a name without a "
        "suffix for a TF SavedModel folder; a --format the name contradicts is refused.",
    )
    add_inference_model_arguments(p, weights_default="imagenet")
    p.add_argument(
        "--format",
        choices=["onnx", "tf_saved_model", "keras"],
        default=None,
        help="onnx, tf_saved_model or keras (default: from the suffix of --output)",
    )
    p.add_argument(
        "-o", "--output", required=True, metavar="PATH", help="the file (*.onnx, *.keras) or folder to write"
    )
    p.add_argument(
        "--force",
        action="store_true",
        help="overwrite PATH if it exists (a file by a file, a SavedModel by a SavedModel)",
    )


def _run_export(args) -> int:
    from anyshape.engine.export import check_export_path, export_model

    check_model_flags(args)
    if args.precision in ("int8", "bf16"):  # fp32 and auto export the float graph
        raise ValueError(
            f"--precision {args.precision}: "
            + (
                "an int8 file is calibrated on your images: use anyshape quantize MODEL --calibrate FOLDER -o FILE.onnx"
                if args.precision == "int8"
                else "bf16 is chosen when the model runs (anyshape predict/features --precision bf16); export the fp32 model"
            )
        )
    fmt = check_export_path(args.output, args.format, force=args.force)  # before the model is built
    model = inference_model(args, include_top=args.include_top, pooling=args.pooling)
    path = export_model(model, args.output, fmt, force=args.force)
    print(f"anyshape export: wrote {path} ({fmt})", file=sys.stderr)
    return EXIT_OK


def _add_bench(sub) -> None:
    p = sub.add_parser(
        "bench",
        help="images/s of each available engine on this machine",
        description="Time anyshape's engines (Keras, and ONNX Runtime / OpenVINO at --precision) on "
        "random input, with the fidelity of each precision against fp32 (top-1 agreement, "
        "minimum cosine). The comparison with other frameworks is benchmarks/bench_inference.py.",
    )
    add_inference_model_arguments(p, weights_default="none")
    p.add_argument(
        "--batch",
        type=positive_int_list,
        default=[1, 16],
        metavar="B,B,...",
        help="batch sizes, comma-separated (default: 1,16)",
    )
    p.add_argument("--seconds", type=positive_float, default=3.0, help="timing per engine and point")
    p.add_argument(
        "--sample", default=None, metavar="FOLDER", help="images for the fidelity check (default: 32 random inputs)"
    )


def _run_bench(args) -> int:
    from anyshape import engine
    from anyshape.archs import get_arch

    if args.model is not None:  # for bench, --input-shape is the size to time, also with --model
        args.given = set(args.given) - {"input_shape"}
    check_model_flags(args)
    if args.data_format is None:  # the library's default, as create_model takes it
        import keras

        args.data_format = keras.config.image_data_format()
    model = _bench_model(args) if args.model is not None else None
    side = get_arch(args.arch).default_size  # the network's own default size (299 for InceptionV3)
    shape = args.input_shape or ((3, side, side) if args.data_format == "channels_first" else (side, side, 3))
    hw = _check_timed_shape(shape, args, model)
    args.input_shape = shape
    if model is None:
        model = inference_model(args, include_top=args.include_top, pooling=args.pooling)
    if (
        not isinstance(model, engine.GraphModel)
        and not args.include_top
        and args.pooling is None
        and args.model is None
    ):
        model = engine.feature_model(model, "avg_pool", "avg")
    report = engine.bench(
        model,
        hw,
        batches=args.batch,
        seconds=args.seconds,
        engine=args.engine,
        precision=args.precision,
        sample=args.sample,
    )
    _print_bench(report, hw, sample=args.sample)
    return 0


def _bench_model(args):
    """--model FILE for bench: the model decides its layout, and a fixed size is the only size it
    takes (args.data_format and args.input_shape are set from it)."""
    from anyshape import engine
    from anyshape.archs import get_arch

    model = inference_model(args, include_top=args.include_top, pooling=args.pooling)
    args.data_format, channels, fixed = _model_input(model)
    first = args.data_format == "channels_first"
    if args.input_shape is not None:  # a size below the model's own minimum: as without --model
        _check_timed_shape(args.input_shape, args, model)
    if fixed is not None:
        given = args.input_shape
        if given is not None and tuple(given[1:] if first else given[:2]) != fixed:
            raise ValueError(
                f"--model {args.model} takes {fixed[0]}x{fixed[1]} images only: drop --input-shape to time it "
                "at its own size"
            )
        args.input_shape = (channels, *fixed) if first else (*fixed, channels)
    elif args.input_shape is None:
        side = get_arch(engine.model_architecture(model) or args.arch).default_size
        args.input_shape = (channels, side, side) if first else (side, side, channels)
    return model


def _print_bench(report, hw, *, sample) -> None:
    """The table of images/s per batch size and engine, and the fidelity line."""
    if report.no_fast_engine is not None:
        print(f"anyshape bench: no fast engine: {report.no_fast_engine}", file=sys.stderr)
    print(f"input {hw[0]}x{hw[1]}, {report.threads} core(s)")
    print(f"{'batch':>5}  " + "  ".join(f"{name:>18}" for name in report.engines) + "  ratio (last/first)")
    for b, rates in report.rates.items():
        values = list(rates.values())
        print(f"{b:>5}  " + "  ".join(f"{r:>14.1f} i/s" for r in values) + f"  {values[-1] / values[0]:.2f}x")
    f = report.fidelity
    if report.recorded_fidelity is not None:  # an int8 file timed alone: what quantize measured
        from anyshape.engine.quantize import fidelity_line

        print(f"recorded by quantize: {fidelity_line(report.recorded_fidelity)}")
    if f is not None:
        print(
            f"fidelity of {report.fidelity_of} vs {report.fidelity_reference} on {f['rows']} "
            f"{'images' if sample else 'random inputs'}: top-1 agreement {100 * f['top1_agreement']:.1f} %, "
            f"min cosine {f['min_cosine']:.5f}"
        )


def _check_timed_shape(shape, args, model=None) -> tuple:
    """The (H, W) bench times at, refused when it is not fixed or the network cannot take it: by
    the rules of the network --arch names (its own collapse table), or of the loaded `model`
    (its minimum size)."""
    from anyshape.shapes import InvalidInputShape, explain

    hw = shape[1:] if args.data_format == "channels_first" else shape[:2]
    if None in hw:
        raise ValueError("--input-shape needs a height and a width to time (e.g. 299,299,3)")
    if model is not None:
        from anyshape import engine
        from anyshape.engine.graph_model import describe_keras

        least = model.min_size if isinstance(model, engine.GraphModel) else describe_keras(model)["min_size"]
        if min(hw) < least:
            raise InvalidInputShape(
                f"--input-shape {','.join(map(str, shape))}: --model {args.model} needs images of at least "
                f"{least} px per side (below it its feature map would vanish)"
            )
        return hw
    report = explain(
        shape,
        arch=args.arch,
        data_format=args.data_format,
        include_top=args.include_top,
        pooling=args.pooling,
        **network_options(args),
    )
    if not report.valid:
        raise InvalidInputShape(report.reason())
    return hw


def _model_input(model) -> tuple[str, int, tuple[int, int] | None]:
    """A loaded model's data format, channels, and (H, W) when its size is fixed."""
    from anyshape import engine
    from anyshape.engine.graph_model import describe_keras

    d = vars(model) if isinstance(model, engine.GraphModel) else describe_keras(model)
    return d["data_format"], int(d["channels"]), tuple(d["fixed_hw"]) if d["fixed_hw"] else None


def _add_quantize(sub) -> None:
    from anyshape.engine.quantize import quantize

    p = sub.add_parser(
        "quantize",
        help="int8 model calibrated on your images (an .onnx file predict/features load)",
        description="Post-training static int8 quantization: the images in --calibrate (up to "
        "--limit, sorted order; unreadable ones are reported and skipped) set the "
        "activation ranges. Deterministic for a given folder. Run the result with "
        "--model FILE.onnx --precision int8 (or auto).",
    )
    p.add_argument(
        "src",
        metavar="MODEL_OR_WEIGHTS",
        help="a .keras model, an .onnx file from anyshape export, a weight set name or a weights file",
    )
    p.add_argument("--calibrate", required=True, metavar="FOLDER", help="folder of representative images (required)")
    p.add_argument("-o", "--output", required=True, metavar="FILE.onnx", help="the int8 .onnx file to write (required)")
    p.add_argument(
        "--method",
        choices=["onnxruntime", "nncf"],
        default=None,
        help="quantizer (default: the one measured best, see README)",
    )
    p.add_argument("--features", action="store_true", help="quantize the avg-pooled feature model, not the classifier")
    p.add_argument(
        "--input-shape",
        type=parse_shape,
        default=None,
        metavar="H,W,C",
        help="model input shape when building from weights (default: free size, 3 channels)",
    )
    p.add_argument(
        "--size",
        default=None,
        metavar="N|H,W",
        help="calibration image size for a free-size model (default: the network's default size, 299 for InceptionV3)",
    )
    p.add_argument(
        "--limit", type=int, default=library_default(quantize, "limit"), help="calibration images used at most"
    )
    p.add_argument(
        "--engine",
        choices=["auto", "onnxruntime", "openvino"],
        default="auto",
        help="engine the int8 file's fidelity to the float model is measured on "
        "(default auto: the one it runs on here, OpenVINO when installed)",
    )
    p.add_argument(
        "--float-remainder",
        choices=["auto", "fp32"],
        default=library_default(quantize, "float_remainder"),
        help="the int8 file's float layers on OpenVINO (default auto: bf16 where the network runs faster so "
        "(on a CPU with AMX, every network), the CPU computes bf16 and it was measured to keep the fidelity; "
        "fp32: always f32)",
    )
    add_arch_arguments(p)
    p.add_argument("--force", action="store_true", help="overwrite FILE.onnx if it exists")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bar")


def _run_quantize(args) -> int:
    from pathlib import Path

    from anyshape import engine
    from anyshape.engine.quantize import DEFAULT_METHOD, check_method

    check_method(args.method or DEFAULT_METHOD, args.engine)  # before the model is built
    src = Path(args.src)
    given: set = getattr(args, "given", set())
    if src.suffix in (".keras", ".onnx"):
        if "option" in given or "input_shape" in given:
            flags = [f for d, f in (("input_shape", "--input-shape"), ("option", "--option")) if d in given]
            raise ValueError(f"{args.src} is a complete model; {', '.join(flags)} would not be used with it: drop them")
        model = engine.load_or_build(src, arch=args.arch if "arch" in given else None)
    else:
        from anyshape.archs import get_arch

        weights = None if args.src.lower() == "none" else args.src
        model = engine.load_or_build(
            None,
            arch=args.arch,
            size=args.size or get_arch(args.arch).default_size,
            weights=weights,
            include_top=not args.features,
            input_shape=args.input_shape,
            **network_options(args),
        )
    if args.features and not isinstance(model, engine.GraphModel):
        model = engine.feature_model(model, "avg_pool", "avg")
    report = engine.quantize(
        model,
        args.calibrate,
        args.output,
        method=args.method or DEFAULT_METHOD,
        size=args.size,
        limit=args.limit,
        force=args.force,
        progress=not args.quiet and sys.stderr.isatty(),
        engine=args.engine,
        float_remainder=args.float_remainder,
    )
    for _, reason in report.skipped:
        print(f"anyshape quantize: SKIPPED {cli_message(reason)}", file=sys.stderr)
    for line in report.line().splitlines():  # what it wrote, then the int8 model's fidelity
        print(f"anyshape quantize: {line}", file=sys.stderr)
    return EXIT_OK


# verb: (declare its arguments, run it), for anyshape.cli.VERBS
VERBS = {
    "export": (_add_export, _run_export),
    "bench": (_add_bench, _run_bench),
    "quantize": (_add_quantize, _run_quantize),
}
