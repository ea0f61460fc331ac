"""The verbs that run a model on images: predict and features, locally or on a Ray cluster
(export, bench and quantize are `anyshape.cli.deploy`'s)."""

from __future__ import annotations

import contextlib
import os
import sys

from anyshape.cli.arg_types import positive_int
from anyshape.cli.options import (
    add_image_run_arguments,
    add_inference_model_arguments,
    check_model_flags,
    check_ray_flags,
    check_size_flag,
    cli_message,
    inference_model,
    library_default,
    network_options,
)
from anyshape.cli.ray_stderr import without_ray_core_lines


def _image_run_options(args) -> dict:
    """The flags `options.add_image_run_arguments` declares, as the keyword arguments of every image
    run (`engine.predict_paths`, `engine.extract_features`, the Ray jobs)."""
    return dict(size=args.size, upscale=args.upscale, max_pixels=args.max_pixels, batch_size=args.batch_size)


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
    quiet = contextlib.nullcontext() if getattr(args, "verbose", False) else without_ray_core_lines()
    try:
        with quiet:
            summary = job(
                predictor,
                args.paths,
                args.out,
                **_image_run_options(args),
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
    model = inference_model(args, include_top=True, pooling=args.pooling)
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
            top=args.top,
            **_image_run_options(args),
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

    base = inference_model(args, include_top=False)
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
            resume=args.resume,
            force=args.force,
            **_image_run_options(args),
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


# verb: (declare its arguments, run it), for anyshape.cli.VERBS
VERBS = {
    "predict": (_add_predict, _run_predict),
    "features": (_add_features, _run_features),
}
