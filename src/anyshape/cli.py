"""The `anyshape` command. Argument parsing only: every verb calls the Python API.

Each verb is a pair of functions: `_add_<verb>(subparsers)` declares its arguments and
`_run_<verb>(args) -> int` calls the library and returns the exit code. Keras is imported only
by verbs that build a model, so `anyshape explain` answers at once.

What every verb shares lives in one place, `_call`: the exit codes (0 ok, 1 some inputs failed
or the shape is invalid, 2 usage error: the command cannot run as given, 130 interrupted), the
one-line messages in CLI words instead of tracebacks, Ctrl-C, and quiet backend start-up unless
--verbose.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from collections.abc import Sequence

__all__ = ["main", "EXIT_OK", "EXIT_FAILED", "EXIT_USAGE", "EXIT_INTERRUPTED"]

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


class _HelpFormatter(argparse.HelpFormatter):
    """Every flag's help ends with its default (unless the help already states it)."""

    def _get_help_string(self, action):
        text = action.help or ""
        if "default" not in text and action.default not in (None, False, argparse.SUPPRESS) and action.option_strings:
            text += " (default: %(default)s)"
        return text


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {text!r}")
    return value


def positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number > 0, got {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected a number > 0, got {text!r}")
    return value


def positive_int_list(text: str) -> list[int]:
    """'1,16' -> [1, 16]."""
    try:
        values = [int(p) for p in text.split(",") if p.strip()]
    except ValueError:
        values = []
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected whole numbers >= 1 separated by commas (e.g. 1,16), got {text!r}")
    return values


def parse_shape(text: str) -> tuple:
    """'150,150,3' -> (150, 150, 3); 'none' or '?' for an unknown height or width."""
    from anyshape.shapes import parse_dims

    try:
        return parse_dims(text, unknown=True)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected H,W,C (e.g. 150,150,3), got {text!r}") from None


def parse_channel_adapt(text: str):
    """A --channel-adapt value: a rule name ('sum', 'mean', ...) or a mapping like '2,1,0' or
    '0,1,2,none' (for each input channel, the RGB channel whose kernel it takes, or none)."""
    if "," not in text:
        return text
    try:
        return tuple(None if p.strip().lower() == "none" else int(p) for p in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a rule name or channel indices like 2,1,0 or 0,1,2,none, got {text!r}"
        ) from None


POOLING_HELP = (
    "how the last feature map is reduced to one vector per image: avg, max, avgmax, catavgmax, "
    "or none (keep the map; with --include-top the classifier's own average pooling) (default: none)"
)


def _pooling(text: str):
    return None if text == "none" else text


def _add_model_arguments(p: argparse.ArgumentParser, *, include_top: bool = True) -> None:
    """The arguments that describe a model, shared by every verb that builds one."""
    p.add_argument(
        "--input-shape",
        type=parse_shape,
        default=None,
        metavar="H,W,C",
        help="input shape without the batch axis, in --data-format order (e.g. 150,150,3; none for a "
        "free size) (default: none,none,3, a free size)",
    )
    if include_top:
        p.add_argument(
            "--include-top",
            action="store_true",
            help="include the pooling + dense classifier (default: off, the backbone only; note that "
            "the Python API's InceptionV3 includes it by default)",
        )
    p.add_argument(
        "--pooling",
        type=_pooling,
        choices=["avg", "max", "avgmax", "catavgmax", None],
        default=None,
        metavar="{avg,max,avgmax,catavgmax,none}",
        help=POOLING_HELP,
    )
    p.add_argument("--classes", type=positive_int, default=1000, help="number of classes of the classifier")
    p.add_argument(
        "--aux-logits", action="store_true", help="add the auxiliary classifier on mixed7 (needs H, W >= 299)"
    )
    p.add_argument(
        "--data-format",
        choices=["channels_last", "channels_first"],
        default="channels_last",
        help="axis order of the input",
    )
    p.add_argument("--dropout-rate", type=float, default=0.0, help="dropout before the classifier")


def _add_explain(sub) -> None:
    p = sub.add_parser(
        "explain",
        help="explain what InceptionV3 does with an input shape, stage by stage",
        description="Print every stage's output size, parameters and multiply-accumulates "
        "for an input shape; exit 1 with the reason when the shape cannot work.",
    )
    _add_model_arguments(p)
    p.add_argument("--bn-scale", action="store_true", help="count BatchNorm gammas (torchvision/timm layout)")


def _run_explain(args) -> int:
    from anyshape.shapes import explain

    report = explain(
        args.input_shape,
        include_top=args.include_top,
        pooling=args.pooling,
        aux_logits=args.aux_logits,
        classes=args.classes,
        data_format=args.data_format,
        bn_scale=args.bn_scale,
        dropout_rate=args.dropout_rate,
    )
    print(report)
    return EXIT_OK if report.valid else EXIT_FAILED


def _add_summary(sub) -> None:
    p = sub.add_parser("summary", help="print the Keras summary of a configuration (random weights)")
    _add_model_arguments(p)


def _run_summary(args) -> int:
    from anyshape.inception_v3 import InceptionV3

    model = InceptionV3(
        weights=None,
        include_top=args.include_top,
        input_shape=args.input_shape,
        pooling=args.pooling,
        classes=args.classes,
        aux_logits=args.aux_logits,
        data_format=args.data_format,
        dropout_rate=args.dropout_rate,
    )
    model.summary(line_length=120)
    return EXIT_OK


# --- inference verbs: predict, features, export, bench (anyshape.engine does the work) ---------


def _add_preprocessing_argument(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--preprocessing",
        choices=["tf", "torch"],
        default=None,
        help="how a PyTorch --weights file expects its input: tf ([-1, 1]) or torch (ImageNet "
        "mean/std); needed when the file is not a published one anyshape recognises (default: what the weight set says)",
    )


# the flags that describe how to build a model: with --model FILE.keras (a complete model) they
# would be silently ignored, so they are refused
MODEL_FLAGS = {
    "input_shape": "--input-shape",
    "include_top": "--include-top",
    "pooling": "--pooling",
    "classes": "--classes",
    "aux_logits": "--aux-logits",
    "data_format": "--data-format",
    "dropout_rate": "--dropout-rate",
    "weights": "--weights",
    "preprocessing": "--preprocessing",
}


def _add_inference_model_arguments(
    p: argparse.ArgumentParser, *, weights_default: str, features: bool = False, include_top: bool = True
) -> None:
    if features:  # the backbone only: --pooling is the feature pooling, the top is never built
        p.add_argument(
            "--input-shape",
            type=parse_shape,
            default=None,
            metavar="H,W,C",
            help="model input shape (default: free height and width, 3 channels)",
        )
        p.add_argument(
            "--data-format",
            choices=["channels_last", "channels_first"],
            default="channels_last",
            help="axis order of the model input",
        )
        p.add_argument(
            "--pooling",
            type=_pooling,
            choices=["avg", "max", None],
            default="avg",
            metavar="{avg,max,none}",
            help="how the --layer feature map is reduced to one vector per image: avg, max, "
            "or none (keep the map) (default: avg)",
        )
        p.set_defaults(include_top=False, classes=1000, aux_logits=False, dropout_rate=0.0)
    else:
        _add_model_arguments(p, include_top=include_top)
    if not any("--weights" in a.option_strings for a in p._actions):
        p.add_argument(
            "--weights",
            default=weights_default,
            help=f"none, a weight set name or a weights file (default: {weights_default})",
        )
    _add_preprocessing_argument(p)
    p.add_argument(
        "--model",
        default=None,
        metavar="FILE",
        help="use a saved model instead of building one: .keras, or .onnx from anyshape quantize/export "
        "(then no flag that builds a model may be given)",
    )
    p.add_argument(
        "--engine",
        choices=["auto", "onnxruntime", "openvino", "keras"],
        default="auto",
        help="auto: the engine --precision picks (ONNX Runtime or OpenVINO), else Keras (default: auto)",
    )
    p.add_argument(
        "--precision",
        choices=["auto", "fp32", "bf16", "int8"],
        default=None,
        help="default: the model's own (fp32, int8 for a file from anyshape quantize); "
        "fp32: Keras' results to float32 rounding; bf16 (OpenVINO, CPUs with "
        "avx512_bf16 or amx_bf16), int8 (a --model FILE.onnx from anyshape quantize), "
        "auto (bf16 where the CPU runs it natively, else fp32)",
    )


def _add_image_run_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("paths", nargs="+", metavar="PATH", help="image files or folders (searched recursively)")
    p.add_argument(
        "--size",
        default=None,
        metavar="native|N|H,W",
        help="native: each image at its own size; N or H,W (at least 75): shorter side resized, centre "
        "crop (crop_pct and interpolation of the weights). Default: the model's size if fixed, else native",
    )
    p.add_argument("--upscale", action="store_true", help="enlarge images below 75 px instead of refusing them")
    p.add_argument("--batch-size", type=positive_int, default=16, help="images per batch")
    p.add_argument(
        "--max-pixels", type=positive_int, default=None, help="refuse larger images (default: Pillow's limit, 89 Mpx)"
    )
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bar")
    ray = p.add_argument_group("on a Ray cluster (pip install 'anyshape[ray]'; see anyshape.distributed)")
    ray.add_argument(
        "--ray",
        nargs="?",
        const="local",
        default=None,
        metavar="ADDRESS",
        help="run on Ray and write Parquet part files into the folder --out (local or s3://): "
        "--ray alone starts a local Ray; ADDRESS is auto (RAY_ADDRESS or the local cluster) or "
        "ray://host:10001 (default: no Ray)",
    )
    ray.add_argument("--cpus-per-actor", type=positive_float, default=1.0, help="cores per Ray actor (default: 1)")
    ray.add_argument(
        "--actors", type=positive_int, default=None, help="Ray actors (default: the cluster's CPUs / --cpus-per-actor)"
    )


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
    try:
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
            progress=not args.quiet and sys.stderr.isatty(),
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


def _check_ray_flags(args) -> None:
    if args.ray is None:
        if getattr(args, "out", None) is not None and getattr(args, "top", None) is not None:
            raise ValueError("predict --out DIR needs --ray (locally, predict prints its table, json or csv on stdout)")
        if getattr(args, "resume", False) and getattr(args, "top", None) is not None:
            raise ValueError("predict --resume needs --ray and --out DIR")
        if args.actors is not None or args.cpus_per_actor != 1.0:
            raise ValueError("--actors and --cpus-per-actor need --ray")
        return
    if getattr(args, "out", None) is None:
        raise ValueError("--ray needs --out DIR, the folder (local or s3://) that receives the Parquet rows")


def _check_model_flags(args) -> None:
    """--model is a complete model: refuse the flags that would build another one (before any work)."""
    if getattr(args, "model", None) is None:
        return
    given = [flag for dest, flag in MODEL_FLAGS.items() if dest in getattr(args, "given", ())]
    if given:
        raise ValueError(
            f"--model {args.model} is a complete model; {', '.join(given)} would not be used with it: "
            "drop them, or drop --model to build a model from them"
        )


def _check_size_flag(args) -> None:
    """--size is checked before the model is built: below 75 px no engine can run it."""
    from anyshape.engine.runs import check_size

    if args.size is not None:
        check_size(args.size, aux_logits=getattr(args, "aux_logits", False))


def _inference_model(args, *, include_top: bool, pooling: str | None = None):
    from anyshape import engine

    _check_model_flags(args)
    weights = None if str(args.weights).lower() == "none" else args.weights
    kwargs = dict(
        weights=weights,
        include_top=include_top,
        input_shape=args.input_shape,
        data_format=args.data_format,
        aux_logits=args.aux_logits,
        dropout_rate=args.dropout_rate,
        pooling=pooling,
    )
    if include_top:
        kwargs.update(classes=args.classes)
    if args.preprocessing is not None:
        kwargs.update(preprocessing=args.preprocessing)
    return engine.load_or_build(args.model, size=getattr(args, "size", None), **kwargs)


def _report_failures(verb: str, summary) -> None:
    for _, reason in summary.failed:
        print(f"anyshape {verb}: FAILED {cli_words(reason)}", file=sys.stderr)
    print(f"anyshape {verb}: {summary.line()}", file=sys.stderr)


def _add_predict(sub) -> None:
    p = sub.add_parser(
        "predict",
        help="classify images: class names and probabilities per image",
        description="Classify image files and folders (always with the classifier). Unreadable or "
        "too-small images are reported with their reason and skipped; the exit code is "
        "1 when any failed. On Ctrl-C the images classified so far are printed.",
    )
    _add_image_run_arguments(p)
    _add_inference_model_arguments(p, weights_default="imagenet", include_top=False)
    p.add_argument("--top", type=positive_int, default=5, metavar="K", help="classes per image")
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

    _check_model_flags(args)
    _check_size_flag(args)
    _check_ray_flags(args)
    predictor = engine.Predictor(
        _inference_model(args, include_top=True, pooling=args.pooling), engine=args.engine, precision=args.precision
    )
    if args.ray is not None:
        return _run_on_ray(
            "predict", args, predictor, {"model": _model_identity(args), "weights": _weights_identity(args)}
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
        sys.stdout.write(engine.format_predictions(e.rows, args.format))
        sys.stdout.flush()
        # the line printed on Ctrl-C says what was kept (_interrupted_line)
        e.kept = (  # type: ignore[attr-defined]
            f"the {len(e.rows)} image(s) classified before it were printed; run the command again to classify them all"
        )
        raise
    sys.stdout.write(engine.format_predictions(rows, args.format))
    _report_failures("predict", summary)
    return summary.exit_code


def _add_features(sub) -> None:
    from anyshape.engine.predictor import FEATURE_LAYERS  # numpy only: no backend is loaded

    p = sub.add_parser(
        "features",
        help="extract one feature row per image into .npy/.npz/.parquet",
        description="Write one row (path, features) per image. The file appears only when the run "
        "ends (atomic rename); an interrupted run continues with --resume.",
    )
    _add_image_run_arguments(p)
    _add_inference_model_arguments(p, weights_default="imagenet", features=True)
    p.add_argument(
        "--out",
        "-o",
        required=True,
        metavar="FILE",
        help="output .npy (+ FILE.paths.txt and FILE.manifest.json), .npz or .parquet; with --ray a folder",
    )
    p.add_argument(
        "--layer",
        default="avg_pool",
        choices=list(FEATURE_LAYERS),
        metavar="LAYER",
        help="avg_pool (2048-d) or mixed0 .. mixed10",
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
        "layer": args.layer,
        "pooling": args.pooling or "none",
    }


def _model_identity(args) -> str:
    return _file_identity(args.model) if args.model and os.path.isfile(args.model) else "InceptionV3"


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
    args.layer = engine.feature_layer(args.layer, pooling)  # --layer avg_pool --pooling max|none is mixed10's
    # everything that can be refused is refused before the model is built
    _check_model_flags(args)
    _check_size_flag(args)
    _check_ray_flags(args)
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
    _add_inference_model_arguments(p, weights_default="imagenet")
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

    _check_model_flags(args)
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
    _add_inference_model_arguments(p, weights_default="none")
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
    from anyshape.shapes import InvalidInputShape, explain

    if args.model is not None:  # for bench, --input-shape is the size to time, also with --model
        args.given = set(args.given) - {"input_shape"}
    _check_model_flags(args)
    shape = args.input_shape or ((3, 299, 299) if args.data_format == "channels_first" else (299, 299, 3))
    hw = shape[1:] if args.data_format == "channels_first" else shape[:2]
    if None in hw:
        raise ValueError("--input-shape needs a height and a width to time (e.g. 299,299,3)")
    report = explain(shape, data_format=args.data_format, aux_logits=args.aux_logits)
    if not report.valid:
        raise InvalidInputShape(report.reason())
    args.input_shape = shape
    batches = args.batch
    model = _inference_model(args, include_top=args.include_top, pooling=args.pooling)
    if (
        not isinstance(model, engine.GraphModel)
        and not args.include_top
        and args.pooling is None
        and args.model is None
    ):
        model = engine.feature_model(model, "avg_pool", "avg")
    engines = {}
    if not isinstance(model, engine.GraphModel):
        engines["keras fp32"] = engine.Predictor(model, engine="keras", precision="fp32")
        reference = engine.Predictor(model, engine=args.engine if args.engine != "keras" else "auto", precision="fp32")
    else:
        reference = None
    fast = engine.Predictor(model, engine=args.engine, precision=args.precision)
    if reference is not None and reference.engine != "keras":
        engines[f"{reference.engine} fp32"] = reference
    elif reference is not None:
        print(f"anyshape bench: no fast engine: {reference.fallback_reason}", file=sys.stderr)
    engines.setdefault(f"{fast.engine} {fast.precision}", fast)
    sample = None
    if args.sample is not None:
        from anyshape.engine.quantize import calibration_batches

        sample = calibration_batches(fast, args.sample, size=tuple(hw), limit=64)
    elif reference is not None:
        sample = engine.random_batches(fast, hw, 8, count=4)
    first = next(iter(engines.values()))
    print(f"input {hw[0]}x{hw[1]}, {first.threads} core(s)")
    print(f"{'batch':>5}  " + "  ".join(f"{name:>18}" for name in engines) + "  ratio (last/first)")
    for b in batches:
        rates = {name: engine.benchmark(pr, hw, b, seconds=args.seconds) for name, pr in engines.items()}
        values = list(rates.values())
        print(f"{b:>5}  " + "  ".join(f"{r:>14.1f} i/s" for r in values) + f"  {values[-1] / values[0]:.2f}x")
    if sample is not None and reference is not None and f"{fast.engine} {fast.precision}" != f"{reference.engine} fp32":
        f = engine.fidelity(reference, fast, sample)
        print(
            f"fidelity of {fast.engine} {fast.precision} vs {reference.engine} fp32 on {f['rows']} "
            f"{'images' if args.sample else 'random inputs'}: top-1 agreement {100 * f['top1_agreement']:.1f} %, "
            f"min cosine {f['min_cosine']:.5f}"
        )
    return 0


def _add_quantize(sub) -> None:
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
        "--size", default=None, metavar="N|H,W", help="calibration image size for a free-size model (default 299)"
    )
    p.add_argument("--limit", type=int, default=300, help="calibration images used at most (default 300)")
    p.add_argument("--force", action="store_true", help="overwrite FILE.onnx if it exists")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bar")


def _run_quantize(args) -> int:
    from pathlib import Path

    from anyshape import engine
    from anyshape.engine.quantize import DEFAULT_METHOD

    src = Path(args.src)
    if src.suffix in (".keras", ".onnx"):
        model = engine.load_or_build(src)
    else:
        weights = None if args.src.lower() == "none" else args.src
        model = engine.load_or_build(
            None, size=args.size or 299, weights=weights, include_top=not args.features, input_shape=args.input_shape
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
        print(f"anyshape quantize: SKIPPED {cli_words(reason)}", file=sys.stderr)
    print(f"anyshape quantize: {report.line()}", file=sys.stderr)
    return EXIT_OK


def _add_train(sub) -> None:
    p = sub.add_parser(
        "train",
        help="fine-tune InceptionV3 on a folder of images (one subfolder per class) or 'digits'",
        description="Train InceptionV3 at any input shape; writes a run folder with model.keras, "
        "classes.json and report.json. BatchNorm statistics are recalibrated on the "
        "training images so that evaluation matches training.",
    )
    p.add_argument(
        "data",
        help="folder with one subfolder of images per class (or train/ and test/ "
        "subfolders of such), or 'digits' (scikit-learn's handwritten digits)",
    )
    p.add_argument("--output", "-o", default=None, help="run folder (default: runs/<data>-<time>)")
    p.add_argument(
        "--resume",
        action="store_true",
        help="continue the run in --output from its last checkpoint, with the options stored there",
    )
    p.add_argument(
        "--input-shape",
        type=parse_shape,
        default=None,
        metavar="H,W[,C]",
        help="training size; channels from the data unless given (default 75,75 for digits, 299,299 otherwise)",
    )
    p.add_argument(
        "--weights", default="none", help="none, a weight set name (imagenet, ...) or a weights file (default: none)"
    )
    _add_preprocessing_argument(p)
    p.add_argument(
        "--channel-adapt",
        type=parse_channel_adapt,
        default=None,
        metavar="RULE",
        help="how pretrained first-conv weights fit another channel count: sum, mean, repeat, zero, random, or a mapping like 2,1,0",
    )
    p.add_argument(
        "--freeze",
        default="none",
        help="none | backbone | up-to-mixedN (stem and mixed0..mixedN frozen) (default: none)",
    )
    p.add_argument(
        "--stages",
        default=None,
        metavar="FREEZE:EPOCHS,...",
        help="staged unfreezing, e.g. backbone:2,up-to-mixed7:2,none:1 (replaces --freeze/--epochs)",
    )
    p.add_argument("--epochs", type=positive_int, default=5, help="training epochs")
    p.add_argument("--batch-size", type=positive_int, default=32, help="images per training step")
    p.add_argument("--optimizer", choices=["adam", "adamw", "sgd"], default="adam", help="optimizer")
    p.add_argument("--lr", type=positive_float, default=1e-3, help="peak learning rate")
    p.add_argument("--lr-schedule", choices=["cosine", "constant"], default="cosine", help="learning-rate schedule")
    p.add_argument("--warmup-epochs", type=float, default=0.0, help="epochs of linear warm-up")
    p.add_argument(
        "--weight-decay",
        type=float,
        default=None,
        help="weight decay (default: 0.004 for adamw, Keras' default, and 0 for adam and sgd; "
        "0 means none for every optimizer)",
    )
    p.add_argument("--label-smoothing", type=float, default=0.0, help="label smoothing of the loss")
    p.add_argument("--dropout-rate", type=float, default=0.0, help="dropout before the classifier")
    p.add_argument("--aux-logits", action="store_true", help="train the auxiliary classifier too (needs H, W >= 299)")
    p.add_argument("--aux-weight", type=float, default=0.4, help="weight of the auxiliary loss (default 0.4)")
    p.add_argument(
        "--augment",
        default="auto",
        help="auto (none for digits, crop,flip for folders) | none | comma list of crop, flip",
    )
    p.add_argument("--val-split", type=float, default=0.1, help="fraction of the images held out for validation")
    p.add_argument(
        "--test-split",
        type=float,
        default=0.2,
        help="fraction held out for the test accuracy (when the folder has no test/ subfolder)",
    )
    p.add_argument(
        "--early-stopping",
        type=int,
        default=None,
        metavar="PATIENCE",
        help="stop after PATIENCE epochs without a better validation accuracy",
    )
    p.add_argument(
        "--no-recalibrate", action="store_true", help="keep BatchNorm moving statistics as training left them"
    )
    p.add_argument("--skip-bad-images", action="store_true", help="train without unreadable images instead of stopping")
    p.add_argument("--jit-compile", action="store_true", help="XLA-compile the train step (slow to compile on CPU)")
    p.add_argument("--steps-per-execution", type=positive_int, default=1, help="train steps per compiled call")
    p.add_argument("--seed", type=int, default=0, help="random seed (data split, initial weights, augmentation)")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bar")


def _run_train(args) -> int:
    from anyshape.training import TrainingInterrupted, parse_stages, train

    stages = parse_stages(args.stages) if args.stages else None
    try:
        result = train(
            args.data,
            output=args.output,
            resume=args.resume,
            verbose=0
            if args.quiet
            else (1 if sys.stdout.isatty() else 2),  # bar on a terminal, a line per epoch in a log
            input_shape=args.input_shape,
            weights=args.weights,
            channel_adapt=args.channel_adapt,
            preprocessing=args.preprocessing,
            freeze=args.freeze,
            stages=stages,
            epochs=args.epochs,
            batch_size=args.batch_size,
            optimizer=args.optimizer,
            learning_rate=args.lr,
            lr_schedule=args.lr_schedule,
            warmup_epochs=args.warmup_epochs,
            weight_decay=args.weight_decay,
            label_smoothing=args.label_smoothing,
            dropout_rate=args.dropout_rate,
            aux_logits=args.aux_logits,
            aux_weight=args.aux_weight,
            augment=args.augment,
            val_split=args.val_split,
            test_split=args.test_split,
            early_stopping=args.early_stopping,
            recalibrate=not args.no_recalibrate,
            skip_bad_images=args.skip_bad_images,
            jit_compile=args.jit_compile,
            steps_per_execution=args.steps_per_execution,
            seed=args.seed,
        )
    except TrainingInterrupted as e:
        # the line printed on Ctrl-C says what was kept (_interrupted_line)
        e.kept = (  # type: ignore[attr-defined]
            f"the checkpoint after epoch {e.epoch} is kept in {e.run_dir}: run `anyshape train {args.data} "
            f"--output {e.run_dir} --resume` to continue"
            if e.run_dir
            else "no epoch had finished, so nothing was kept (the new run folder was removed)"
        )
        raise
    acc = result.test_accuracy
    print(f"run folder: {result.run_dir}")
    print(f"test accuracy: {acc:.4f}" if acc is not None else "test accuracy: (no test images)")
    return 0


# --- weights: convert (anyshape.weights.convert does the work) ---------------------------------


def _add_convert(sub) -> None:
    p = sub.add_parser(
        "convert",
        help="convert torchvision/timm (or Keras) InceptionV3 weights to a Keras file",
        description="Convert a weight set (registry name or file: .pth, .pt, .safetensors, Keras .h5) "
        "into a Keras .weights.h5 or .keras file, written atomically, with the weight "
        "set's preprocessing metadata; prints a parity report (max abs logit difference, "
        "top-5 agreement) against the source framework when it is installed.",
    )
    p.add_argument("src", metavar="SRC", help="a registry name (see `anyshape weights`) or a weights file")
    p.add_argument("-o", "--output", required=True, metavar="DST", help="output file: *.weights.h5 or *.keras")
    p.add_argument(
        "--source",
        choices=["torchvision", "timm", "keras"],
        default=None,
        help="framework the weights come from (default: the registry's, else torchvision for state dicts)",
    )
    p.add_argument(
        "--input-shape",
        type=parse_shape,
        default=None,
        metavar="H,W,C",
        help="model input shape (default none,none,3; matters for .keras only; C != 3 adapts the first conv)",
    )
    p.add_argument(
        "--no-aux-logits",
        dest="aux_logits",
        action="store_false",
        default=None,
        help="drop the auxiliary classifier even if the source has one",
    )
    p.add_argument(
        "--channel-adapt",
        type=parse_channel_adapt,
        default=None,
        metavar="RULE",
        help="first-conv rule for C != 3: sum, mean, repeat, zero, random, or a mapping like 2,1,0 or 0,1,2,none",
    )
    _add_preprocessing_argument(p)
    p.add_argument("--force", action="store_true", help="overwrite DST if it exists")
    p.add_argument(
        "--no-parity", dest="parity", action="store_false", help="skip the comparison with the source framework"
    )


def _run_convert(args) -> int:
    from anyshape.weights.convert import convert  # it imports torch/torchvision before Keras itself

    result = convert(
        args.src,
        args.output,
        source=args.source,
        input_shape=args.input_shape,
        aux_logits=args.aux_logits,
        force=args.force,
        parity=args.parity,
        channel_adapt=args.channel_adapt,
        preprocessing=args.preprocessing,
    )
    print(result)
    return 0


def _add_weights(sub) -> None:
    sub.add_parser(
        "weights",
        help="list the registered weight sets",
        description="List the InceptionV3 weight sets anyshape knows: name, source, preprocessing, "
        "crop, classes, aux head, published top-1.",
    )


def _run_weights(args) -> int:
    from anyshape.weights import weight_sets

    print(f"{'name':<28} {'source':<12} {'preprocessing':<22} {'crop':>6} {'interp':<9} {'aux':<4} {'top-1':>6}")
    for ws in weight_sets():
        prep = "[-1, 1]" if ws.mode == "tf" else "ImageNet mean/std"
        top1 = f"{ws.top1:.1f}" if ws.top1 else "-"
        print(
            f"{ws.name:<28} {ws.source:<12} {prep:<22} {ws.crop_pct:>6.3f} {ws.interpolation:<9} "
            f"{'yes' if ws.has_aux else 'no':<4} {top1:>6}"
        )
    return 0


VERBS = {
    "explain": (_add_explain, _run_explain),
    "summary": (_add_summary, _run_summary),
    "train": (_add_train, _run_train),
    "predict": (_add_predict, _run_predict),
    "features": (_add_features, _run_features),
    "export": (_add_export, _run_export),
    "bench": (_add_bench, _run_bench),
    "quantize": (_add_quantize, _run_quantize),
    "convert": (_add_convert, _run_convert),
    "weights": (_add_weights, _run_weights),
}


# verbs that load a deep-learning backend (its start-up messages are hidden unless --verbose)
BACKEND_VERBS = {"summary", "train", "predict", "features", "export", "bench", "quantize", "convert"}


class _Subparsers(argparse._SubParsersAction):
    """Subcommands that share the main parser's help formatter and accept --verbose after the verb."""

    def add_parser(self, name, **kwargs):
        kwargs.setdefault("formatter_class", _HelpFormatter)
        p = super().add_parser(name, **kwargs)
        p.add_argument(
            "--verbose",
            action="store_true",
            default=argparse.SUPPRESS,
            help="show the backend's start-up messages and the traceback of an error",
        )
        return p


def build_parser() -> argparse.ArgumentParser:
    from anyshape import __version__

    parser = argparse.ArgumentParser(
        prog="anyshape",
        description="InceptionV3 for Keras 3 at any input shape. "
        "Exit codes: 0 ok, 1 some inputs failed or the shape is invalid, "
        "2 usage error, 130 interrupted.",
        formatter_class=_HelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"anyshape {__version__}")
    parser.add_argument(
        "--verbose", action="store_true", help="show the backend's start-up messages and the traceback of an error"
    )
    parser.register("action", "parsers", _Subparsers)
    sub = parser.add_subparsers(dest="verb", required=True, metavar="VERB")
    for add, _ in VERBS.values():
        add(sub)
    return parser


_UNSET = object()


def _given(argv: Sequence[str]) -> set[str]:
    """The destinations of the flags present on the command line (not left at their defaults)."""
    parser = build_parser()
    # argparse keeps the verbs' parsers on its private _subparsers group
    subparsers = parser._subparsers._group_actions[0]  # type: ignore[union-attr]
    for action in subparsers.choices.values():  # type: ignore[union-attr]
        for a in action._actions:
            if a.option_strings and a.default is not argparse.SUPPRESS:
                a.default = _UNSET
        for dest in action._defaults:  # a verb's set_defaults (features' include_top=False, ...) are not flags
            action._defaults[dest] = _UNSET
    args = parser.parse_args(argv)
    return {k for k, v in vars(args).items() if v is not _UNSET}


def cli_words(message: str) -> str:
    """A library message in the CLI's words: `--upscale (upscale=True)` and `force=True (CLI:
    --force)` become `--upscale` and `--force`."""
    message = re.sub(r"(--[\w-]+) \((?:[\w.]+=[^()]*?)\)", r"\1", message)
    message = re.sub(r"\b[\w.]+=[\w.'\"-]+ \((?:CLI: )?(--[\w-]+)\)", r"\1", message)
    return message


def _quiet_backend_start(verb: str, source: str | None = None) -> None:
    """Load the backend with its start-up messages hidden.

    TF_CPP_MIN_LOG_LEVEL=3 silences TensorFlow's C++ logging, but the messages written before
    absl's logging is initialised (oneDNN, CUDA drivers) ignore it: standard error's file
    descriptor points at /dev/null while the backend loads."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    if "keras" in sys.modules:
        return
    sys.stderr.flush()
    saved, devnull = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    try:
        if verb == "convert":  # before TensorFlow, or importing them later crashes
            from anyshape.weights.reference import import_reference_frameworks

            import_reference_frameworks(source or "torchvision")
        try:
            import keras  # noqa: F401  (loads the backend)
        except Exception:  # noqa: BLE001 -- the verb imports it again and reports the error
            pass
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def _interrupted_line(verb: str, e: KeyboardInterrupt) -> str:
    kept = getattr(e, "kept", None) or "nothing was written (outputs appear only when complete)"
    return f"anyshape {verb}: interrupted; {kept}"


def _call(verb: str, run, args) -> int:
    """Run one verb with the rules every verb shares: exit codes, messages, Ctrl-C."""
    from anyshape.shapes import InvalidInputShape

    verbose = getattr(args, "verbose", False)
    try:
        return run(args)
    except KeyboardInterrupt as e:
        print(_interrupted_line(verb, e), file=sys.stderr)
        return EXIT_INTERRUPTED
    except InvalidInputShape as e:
        if verbose:
            raise
        print(f"anyshape {verb}: {cli_words(str(e))}", file=sys.stderr)
        return EXIT_FAILED
    except (ValueError, OSError, RuntimeError, NotImplementedError) as e:
        # the command cannot run as given (an option, a file, the weights): a usage error.
        # OSError covers missing or existing files and WeightDownloadError (offline weights)
        if verbose:
            raise
        print(f"anyshape {verb}: {cli_words(str(e))}", file=sys.stderr)
        return EXIT_USAGE


def _deliver_swallowed_interrupts() -> None:
    """A Ctrl-C that lands inside a garbage-collector callback (JAX registers one) is swallowed
    by Python and printed as "Exception ignored in ..." with a traceback, and the run goes on.
    Such an interrupt is signalled again a moment later from another thread, so that it stops
    the run at the next Python line outside the callback (raising it inside the hook would be
    swallowed the same way)."""
    import signal
    import threading

    previous = sys.unraisablehook

    def hook(unraisable):
        if unraisable.exc_type is not None and issubclass(unraisable.exc_type, KeyboardInterrupt):
            timer = threading.Timer(0.01, os.kill, (os.getpid(), signal.SIGINT))
            timer.daemon = True
            timer.start()
            return
        previous(unraisable)

    sys.unraisablehook = hook


def _main(argv: list, state: dict) -> int:
    args = build_parser().parse_args(argv)
    args.given = _given(argv)
    state["verb"] = args.verb
    if args.verb in BACKEND_VERBS and not getattr(args, "verbose", False):
        try:
            _quiet_backend_start(args.verb, getattr(args, "source", None))
        except KeyboardInterrupt as e:
            print(_interrupted_line(args.verb, e), file=sys.stderr)
            state["reported"] = True
            return EXIT_INTERRUPTED
    code = _call(args.verb, VERBS[args.verb][1], args)
    state["reported"] = code == EXIT_INTERRUPTED
    return code


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line `argv` (default: the program's own, as the `anyshape` command)."""
    if argv is not None:
        return _main(list(argv), {})
    import signal

    _deliver_swallowed_interrupts()
    state: dict = {}
    try:
        code = _main(sys.argv[1:], state)
    except KeyboardInterrupt as e:  # a second Ctrl-C, or one outside a verb's own handling
        if not state.get("reported"):
            print(_interrupted_line(state.get("verb", "(starting)"), e), file=sys.stderr)
        code = EXIT_INTERRUPTED
    finally:
        # the work is done and reported: a Ctrl-C while the process shuts down (TensorFlow's
        # teardown takes a moment) must not turn the exit code into a death by signal
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    if code == EXIT_INTERRUPTED:
        # A Ctrl-C that landed inside code an extension ran through PyRun_String (pybind11's
        # py::exec while TensorFlow loads) sets CPython's "unhandled KeyboardInterrupt" flag even
        # though the interrupt was handled here, and Py_RunMain then ends the process by SIGINT
        # after finalising (exit status -2, not 130). Every verb has already written or removed
        # its files and printed its line by now, so the process ends here with 130.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    return code


if __name__ == "__main__":
    sys.exit(main())
