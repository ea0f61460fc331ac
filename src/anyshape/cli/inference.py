"""The verbs that run a model on images or time it: predict, features (locally or on a Ray
cluster), export, bench and quantize."""

from __future__ import annotations

import contextlib
import os
import re
import sys
import threading

from anyshape.cli.arg_types import parse_shape, positive_float, positive_int, positive_int_list
from anyshape.cli.options import (
    EXIT_OK,
    add_arch_arguments,
    add_image_run_arguments,
    add_inference_model_arguments,
    check_model_flags,
    check_ray_flags,
    check_size_flag,
    cli_message,
    library_default,
    network_options,
)

# the prefix of a line Ray's C++ core logs: [2026-11-28 19:57:47,058 E 7261 7261] core_worker.cc:2465:
_RAY_CORE_LINE = re.compile(rb"\[\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d+ [A-Z] \d+ \d+\] [\w.]+:\d+: ")
_RAY_CORE_PREFIX = 64  # longer than any such prefix: a held line this long that does not match is not one


@contextlib.contextmanager
def _without_ray_core_lines():
    """Keep the lines Ray's C++ core writes to standard error off the terminal while a job runs.

    They bypass Python's logging: the core writes them to file descriptor 2 itself. A Ray Data
    run gives one per actor pool ("has constructor arguments in the object store and max_restarts
    > 0", ray-project/ray#57733), however small its arguments; RAY_BACKEND_LOG_LEVEL cannot hide
    it and prints a line of its own. So descriptor 2 goes through a pipe whose reader drops those
    lines and passes every other byte on as it comes (progress bars and warnings included).
    `--verbose` runs without it."""
    sys.stderr.flush()
    terminal = os.dup(2)
    read_end, write_end = os.pipe()
    os.dup2(write_end, 2)
    os.close(write_end)

    def write(data: bytes) -> None:
        try:
            while data:
                data = data[os.write(terminal, data) :]
        except OSError:  # standard error closed: the rest is dropped, and the pipe keeps draining
            pass

    def pump() -> None:
        held = b""
        while chunk := os.read(read_end, 65536):
            held += chunk
            while held:
                end = held.find(b"\n") + 1
                if not end and held.startswith(b"[") and (len(held) < _RAY_CORE_PREFIX or _RAY_CORE_LINE.match(held)):
                    break  # (perhaps) a Ray line, not ended yet: wait for its end
                cut = end or len(held)
                if not _RAY_CORE_LINE.match(held[:cut]):
                    write(held[:cut])
                held = held[cut:]
        if not _RAY_CORE_LINE.match(held):
            write(held)
        os.close(read_end)
        os.close(terminal)

    reader = threading.Thread(target=pump, name="anyshape-ray-stderr", daemon=True)
    reader.start()
    try:
        yield
    finally:
        sys.stderr.flush()
        saved = os.dup(terminal)
        os.dup2(saved, 2)  # the pipe's last write end closes: the reader passes on what is left and ends
        os.close(saved)
        reader.join(timeout=10)


def _run_on_ray(verb: str, args, predictor, options: dict) -> int:
    """predict/features --ray: the same job on Ray, rows into the folder --out (anyshape.distributed)."""
    from anyshape import distributed

    if getattr(args, "force", False):
        raise ValueError(
            "--force is not used with --ray: an output folder is never overwritten; choose another --out, "
            "or --resume to continue the run in it"
        )
    job = distributed.features if verb == "features" else distributed.predict
    kwargs = dict(top=args.top) if verb == "predict" else {}
    progress = not args.quiet and sys.stderr.isatty()  # before standard error is a pipe
    quiet = contextlib.nullcontext() if getattr(args, "verbose", False) else _without_ray_core_lines()
    try:
        with quiet:
            summary = job(
                predictor,
                args.paths,
                args.out,
                size=args.size,
                upscale=args.upscale,
                max_pixels=args.max_pixels,
                batch_size=args.batch_size,
                options=options,
                address=None if args.ray == "local" else args.ray,
                cpus_per_actor=args.cpus_per_actor,
                actors=args.actors,
                resume=args.resume,
                progress=progress,
                **kwargs,
            )
    except KeyboardInterrupt as e:
        # the line printed on Ctrl-C says what was kept (_interrupted_line)
        e.kept = (  # type: ignore[attr-defined]
            f"the rows written so far are kept in {args.out}: run the same command with --resume to finish"
        )
        raise
    _report_failures(verb, summary)
    print(
        f"anyshape {verb}: {summary.ok + len(summary.failed)} row(s) in {args.out} "
        f"({summary.parts} part file(s) written by this run)",
        file=sys.stderr,
    )
    return summary.exit_code


def _inference_model(args, *, include_top: bool, pooling: str | None = None):
    """The model the flags describe: --model FILE as saved (its network says what it is; an --arch
    given must name that network), else --arch built by `anyshape.create_model` with the flags'
    arguments and each --option."""
    from anyshape import engine

    check_model_flags(args)
    if args.model is not None:
        return engine.load_or_build(args.model, arch=args.arch if "arch" in getattr(args, "given", ()) else None)
    weights = None if str(args.weights).lower() == "none" else args.weights
    kwargs = dict(
        weights=weights,
        include_top=include_top,
        input_shape=args.input_shape,
        data_format=args.data_format,
        dropout_rate=args.dropout_rate,
        pooling=pooling,
    )
    if include_top:
        kwargs.update(classes=args.classes)
    if args.preprocessing is not None:
        kwargs.update(preprocessing=args.preprocessing)
    kwargs.update(network_options(args))
    return engine.load_or_build(None, arch=args.arch, size=getattr(args, "size", None), **kwargs)


def _model_network(args) -> str | None:
    """The network the flags name: --arch, or the one a --model .keras file records (read from
    its anyshape_model.json without loading it; None when it records none, or for an .onnx file)."""
    if args.model is None:
        return args.arch
    from pathlib import Path

    path = Path(args.model)
    if path.suffix != ".keras" or not path.is_file():
        return None
    from anyshape.model_info import read_keras_info

    try:
        info = read_keras_info(path)
    except ValueError:
        return None  # loading it says what is wrong with it
    return info.architecture if info is not None else None


def _check_size_flag(args) -> None:
    """--size checked before the model is built, by the rules of the network the flags name."""
    if args.size is None or args.model is not None:
        return  # a model file's own minimum is checked once it is loaded (runs.default_size)
    # predict builds the network with its top (InceptionV3's --aux-logits needs it), features without
    check_size_flag(args, arch=args.arch, include_top=getattr(args, "top", None) is not None, **network_options(args))


def _refuse_without_top(args, model) -> None:
    """predict runs a classifier: a model that ends before its classifier gives features, not scores."""
    from anyshape import engine
    from anyshape.engine.graph_model import describe_keras

    top = model.include_top if isinstance(model, engine.GraphModel) else describe_keras(model)["include_top"]
    if top is False:
        raise ValueError(
            f"--model {args.model} has no classifier (it was built with include_top=False): its outputs are "
            "features, not class scores. Use anyshape features --model ... for them, or a model with its top"
        )


def _report_failures(verb: str, summary) -> None:
    for _, reason in summary.failed:
        print(f"anyshape {verb}: FAILED {cli_message(reason)}", file=sys.stderr)
    print(f"anyshape {verb}: {summary.line()}", file=sys.stderr)


def _add_predict(sub) -> None:
    from anyshape.engine import runs as engine_runs

    p = sub.add_parser(
        "predict",
        help="classify images: class names and probabilities per image",
        description="Classify image files and folders (always with the classifier). Unreadable or "
        "too-small images are reported with their reason and skipped; the exit code is "
        "1 when any failed. On Ctrl-C the images classified so far are printed.",
    )
    add_image_run_arguments(p)
    add_inference_model_arguments(p, weights_default="imagenet", include_top=False)
    p.add_argument(
        "--top",
        type=positive_int,
        default=library_default(engine_runs.predict_paths, "top"),
        metavar="K",
        help="classes per image",
    )
    p.add_argument("--format", choices=["table", "json", "csv"], default="table", help="output format on stdout")
    p.add_argument(
        "--out",
        "-o",
        default=None,
        metavar="DIR",
        help="with --ray: the folder (local or s3://) for the Parquet rows (default: none, print on stdout)",
    )
    p.add_argument("--resume", action="store_true", help="with --ray: continue the interrupted run in --out")


def _run_predict(args) -> int:
    from anyshape import engine

    check_model_flags(args)
    _check_size_flag(args)
    check_ray_flags(args)
    model = _inference_model(args, include_top=True, pooling=args.pooling)
    _refuse_without_top(args, model)
    predictor = engine.Predictor(model, engine=args.engine, precision=args.precision)
    if args.ray is not None:
        return _run_on_ray(
            "predict",
            args,
            predictor,
            {"model": _model_identity(args), "weights": _weights_identity(args), "arch": _model_network(args)},
        )
    try:
        rows, summary = engine.predict_paths(
            predictor,
            args.paths,
            size=args.size,
            top=args.top,
            upscale=args.upscale,
            batch_size=args.batch_size,
            max_pixels=args.max_pixels,
            progress=not args.quiet and sys.stderr.isatty(),
        )
    except engine.RunInterrupted as e:  # the rows classified so far are not lost
        _print_rows(e.rows, args.format)
        # the line printed on Ctrl-C says what was kept (_interrupted_line)
        e.kept = (  # type: ignore[attr-defined]
            f"the {len(e.rows)} image(s) classified before it were printed; run the command again to classify them all"
        )
        raise
    _print_rows(rows, args.format)
    _report_failures("predict", summary)
    return summary.exit_code


def _print_rows(rows, fmt: str) -> None:
    """The rows on stdout, encoded as file names are (`os.fsencode`): a name's bytes that are not
    UTF-8 go out unchanged instead of failing the print (see `engine.format_predictions`)."""
    from anyshape import engine

    rows = [{**r, "error": cli_message(r["error"])} if r.get("error") else r for r in rows]  # in the CLI's words
    data = os.fsencode(engine.format_predictions(rows, fmt))
    sys.stdout.flush()
    sys.stdout.buffer.write(data)
    sys.stdout.buffer.flush()


def _add_features(sub) -> None:
    from anyshape.engine.predictor import feature_model

    p = sub.add_parser(
        "features",
        help="extract one feature row per image into .npy/.npz/.parquet",
        description="Write one row (path, features) per image. The file appears only when the run "
        "ends (atomic rename); an interrupted run continues with --resume.",
    )
    add_image_run_arguments(p)
    add_inference_model_arguments(p, weights_default="imagenet", features=True)
    p.add_argument(
        "--out",
        "-o",
        required=True,
        metavar="FILE",
        help="output .npy (+ FILE.paths.jsonl and FILE.manifest.json), .npz or .parquet; with --ray a folder",
    )
    p.add_argument(
        "--layer",
        default=library_default(feature_model, "layer"),
        metavar="LAYER",
        help="avg_pool (the last map, pooled), or one of the network's blocks and feature points: "
        "mixed0 .. mixed10 for InceptionV3, conv2_block1_out .. conv5_block3_out for ResNet50, ... "
        "(a name the network has not is refused with the list of those it has)",
    )
    p.add_argument(
        "--resume",
        action="store_true",
        help="continue an interrupted run into the same --out (refused unless every option is the same)",
    )
    p.add_argument(
        "--force",
        action="store_true",
        help="overwrite --out (and its side files) if it exists, or discard an interrupted run's rows",
    )


def _file_identity(path) -> str:
    """A file named by a flag, as recorded in a run manifest: its resolved path and sha256."""
    from anyshape.weights.download import file_hash

    return f"{os.path.realpath(path)} sha256:{file_hash(str(path))}"


def _features_options(args) -> dict:
    """What `features` computes as the user chose it (recorded for --resume; see engine.RunManifest)."""
    return {
        "model": _model_identity(args),
        "weights": _weights_identity(args),
        "arch": _model_network(args),
        "layer": args.layer,
        "pooling": args.pooling or "none",
    }


def _model_identity(args) -> str:
    """A model file's path and hash, or the network built: its keras.applications name and its
    own options (InceptionV3, MobileNet(alpha=0.25))."""
    if args.model and os.path.isfile(args.model):
        return _file_identity(args.model)
    from anyshape.archs import get_arch

    own = network_options(args)
    name = get_arch(args.arch).keras_name
    return name + (f"({', '.join(f'{k}={v!r}' for k, v in sorted(own.items()))})" if own else "")


def _weights_identity(args) -> str | None:
    weights = str(args.weights)
    if args.model is None and weights.lower() != "none" and os.path.isfile(weights):
        weights = _file_identity(weights)
    return None if args.model else weights


def _feature_predictor(args, pooling):
    from anyshape import engine

    base = _inference_model(args, include_top=False)
    if isinstance(base, engine.GraphModel):  # an .onnx file: it is already the feature model it was saved as
        return engine.Predictor(base, engine=args.engine, precision=args.precision)
    return engine.Predictor(
        engine.feature_model(base, args.layer, pooling), engine=args.engine, precision=args.precision
    )


def _run_features(args) -> int:
    from anyshape import engine
    from anyshape.engine.feature_store import FeatureStore
    from anyshape.engine.manifest import RunManifest

    pooling = args.pooling
    # everything that can be refused is refused before the model is built
    if args.model is not None:
        if str(args.model).endswith(".onnx"):  # a graph as exported: no layer to choose, no pooling to add
            ignored = [f for d, f in (("layer", "--layer"), ("pooling", "--pooling")) if d in args.given]
            if ignored:
                raise ValueError(
                    f"--model {args.model} is an ONNX graph that gives its own outputs; {', '.join(ignored)} "
                    "would not be used with it: drop them, or use the .keras model it was exported from"
                )
        else:  # --pooling is the feature pooling of --layer, which a .keras model takes as any other
            args.given = set(args.given) - {"pooling"}
    check_model_flags(args)
    # the layers of the network the flags name (InceptionV3: --layer avg_pool --pooling max|none is mixed10)
    args.layer = engine.feature_layer(args.layer, pooling, _model_network(args))
    _check_size_flag(args)
    check_ray_flags(args)
    options = _features_options(args)
    if args.ray is not None:
        return _run_on_ray("features", args, _feature_predictor(args, pooling), options)
    FeatureStore.check_output(args.out, resume=args.resume, force=args.force)
    partial = args.out + ".partial"
    if args.resume and os.path.isdir(partial):
        recorded = RunManifest.read(os.path.join(partial, FeatureStore.MANIFEST))
        if recorded is not None:
            now = {k: v for k, v in options.items()}
            RunManifest(now, recorded.digest).check_resume(
                RunManifest({k: recorded.options.get(k) for k in now}, recorded.digest), where=partial
            )
    try:
        predictor = _feature_predictor(args, pooling)
        summary = engine.extract_features(
            predictor,
            args.paths,
            args.out,
            size=args.size,
            upscale=args.upscale,
            resume=args.resume,
            force=args.force,
            batch_size=args.batch_size,
            max_pixels=args.max_pixels,
            progress=not args.quiet and sys.stderr.isatty(),
            options=options,
        )
    except KeyboardInterrupt as e:
        if os.path.isdir(partial):
            # the line printed on Ctrl-C says what was kept (_interrupted_line)
            e.kept = (  # type: ignore[attr-defined]
                f"the rows done so far are kept in {partial}/: run the same command with --resume to finish"
            )
        raise
    _report_failures("features", summary)
    print(f"anyshape features: wrote {summary.ok + summary.skipped} row(s) to {args.out}", file=sys.stderr)
    return summary.exit_code


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
    model = _inference_model(args, include_top=args.include_top, pooling=args.pooling)
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
    model = None
    if args.model is not None:  # the model decides its layout, and a fixed size is the only size it takes
        model = _inference_model(args, include_top=args.include_top, pooling=args.pooling)
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
    side = get_arch(args.arch).default_size  # the network's own default size (299 for InceptionV3)
    shape = args.input_shape or ((3, side, side) if args.data_format == "channels_first" else (side, side, 3))
    hw = _check_timed_shape(shape, args, model)
    args.input_shape = shape
    if model is None:
        model = _inference_model(args, include_top=args.include_top, pooling=args.pooling)
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
    if report.no_fast_engine is not None:
        print(f"anyshape bench: no fast engine: {report.no_fast_engine}", file=sys.stderr)
    print(f"input {hw[0]}x{hw[1]}, {report.threads} core(s)")
    print(f"{'batch':>5}  " + "  ".join(f"{name:>18}" for name in report.engines) + "  ratio (last/first)")
    for b, rates in report.rates.items():
        values = list(rates.values())
        print(f"{b:>5}  " + "  ".join(f"{r:>14.1f} i/s" for r in values) + f"  {values[-1] / values[0]:.2f}x")
    f = report.fidelity
    if f is not None:
        print(
            f"fidelity of {report.fidelity_of} vs {report.fidelity_reference} on {f['rows']} "
            f"{'images' if args.sample else 'random inputs'}: top-1 agreement {100 * f['top1_agreement']:.1f} %, "
            f"min cosine {f['min_cosine']:.5f}"
        )
    return 0


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
    add_arch_arguments(p)
    p.add_argument("--force", action="store_true", help="overwrite FILE.onnx if it exists")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bar")


def _run_quantize(args) -> int:
    from pathlib import Path

    from anyshape import engine
    from anyshape.engine.quantize import DEFAULT_METHOD, check_method

    check_method(args.method or DEFAULT_METHOD)  # before the model is built
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
    )
    for _, reason in report.skipped:
        print(f"anyshape quantize: SKIPPED {cli_message(reason)}", file=sys.stderr)
    print(f"anyshape quantize: {report.line()}", file=sys.stderr)
    return EXIT_OK


# verb: (declare its arguments, run it), for anyshape.cli.VERBS
VERBS = {
    "predict": (_add_predict, _run_predict),
    "features": (_add_features, _run_features),
    "export": (_add_export, _run_export),
    "bench": (_add_bench, _run_bench),
    "quantize": (_add_quantize, _run_quantize),
}
