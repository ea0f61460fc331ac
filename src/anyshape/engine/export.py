"""Loading a saved model or building one, and exporting a model to a file."""

from __future__ import annotations

from pathlib import Path

from anyshape.atomic_write import write_bytes_atomically
from anyshape.errors import OutputExistsError, ParameterError


def load_or_build(model_path=None, *, arch=None, size=None, **options):
    """A saved model (`.keras` or `.onnx` file) when `model_path` is given, else a new network
    built by `anyshape.create_model(arch, **options)` (`arch` default "inception_v3").

    `options` are create_model's arguments (weights, include_top, input_shape, pooling, classes,
    data_format, dropout_rate, preprocessing, and the network's own, e.g. alpha=0.25 for
    "mobilenet"). `size` (N or (H, W)) says the images will be resized to a size of the caller's
    choosing: a model built with no `input_shape` then takes any height and width, the classifier
    too (without it, a network with its top is built at its own default size, as in
    keras.applications: 299 x 299 for InceptionV3, 224 x 224 for most others).

    An `.onnx` file with anyshape's metadata (`anyshape quantize`, `anyshape export --format onnx`)
    loads as a `GraphModel`, which `Predictor` runs on ONNX Runtime or OpenVINO.

    A `.keras` file carries what predict needs (its network and Config, class names,
    preprocessing, weight set) as `model.anyshape_info`, from the file itself or, for a run folder
    written before, from the `classes.json` beside it (see `anyshape.model_info.load_model`): it
    needs no `arch`. An `arch` given with a model file must name the network the file holds.
    """
    from anyshape.archs import DEFAULT_ARCH, get_arch

    if model_path is not None:
        if options:
            raise ParameterError(
                "{model_path=*} is a complete model; {given} would not be used with it",
                model_path=str(model_path),
                given=", ".join(sorted(options)),
            )
        model = _load(model_path)
        held = model_architecture(model)
        if arch is not None and held is not None and get_arch(arch).name != held:
            raise ParameterError(
                "{model_path=*} holds a {held} network, but {arch=*} was given: "
                "drop {arch} (a saved model says what it is), or give the model file of that network",
                model_path=str(model_path),
                held=held,
                arch=get_arch(arch).name,
                parameter="arch",
            )
        return model
    from anyshape.factory import create_model

    if size is not None and options.get("input_shape") is None and options.get("input_tensor") is None:
        first = options.get("data_format") == "channels_first"
        options["input_shape"] = (3, None, None) if first else (None, None, 3)
    return create_model(get_arch(arch or DEFAULT_ARCH).name, **options)


def _load(model_path):
    if Path(model_path).suffix == ".onnx":
        from anyshape.engine.graph_model import GraphModel

        return GraphModel.load(model_path)  # e.g. an int8 file from `anyshape quantize`
    from anyshape.model_info import load_model

    path = Path(model_path)
    if not path.is_file():
        raise ParameterError("{model_path=*}: no such file (expected a .keras model file)", model_path=str(model_path))
    try:
        return load_model(path)
    except Exception as e:
        from anyshape.model_info import load_problem

        # model_info.load_model raises one line starting with the path; anything else gets one
        problem = str(e) if isinstance(e, ValueError) else load_problem(model_path, e)
        prefix = str(model_path)
        rest = problem[len(prefix) :] if problem.startswith(prefix) else f": {problem}"
        raise ParameterError("{model_path=*}{rest}", model_path=prefix, rest=rest) from e


def model_architecture(model) -> str | None:
    """The registered network a model (Keras, or a `GraphModel`) holds, when it says so."""
    from anyshape.engine.graph_model import GraphModel

    if isinstance(model, GraphModel):
        return model.architecture
    from anyshape.model_info import model_info

    return model_info(model).architecture


EXPORT_SUFFIXES = {".onnx": "onnx", ".keras": "keras", "": "tf_saved_model"}


def check_export_path(path, fmt: str | None = None, *, force: bool = False) -> str:
    """The export format for `path`, refusing what cannot be written, without touching anything.

    A file's suffix and its content agree: `.onnx` is ONNX, `.keras` a Keras model file, a
    name without a suffix a TF SavedModel folder. `fmt=None` takes the format from the suffix;
    a `fmt` the suffix contradicts is refused. An existing output is replaced only with
    `force`, and only by its own kind: a folder is never replaced by a file, a file never by a
    folder, and a folder that is not a SavedModel is never deleted.
    """
    path = Path(path)
    formats = sorted(set(EXPORT_SUFFIXES.values()))
    if fmt is not None and fmt not in formats:
        raise ParameterError("{fmt} must be one of {formats}, got {value!r}", formats=", ".join(formats), value=fmt)
    inferred = EXPORT_SUFFIXES.get(path.suffix.lower())
    if inferred is None:
        raise ValueError(
            f"{str(path)!r}: the suffix {path.suffix!r} says no export format; name the file "
            "*.onnx (ONNX) or *.keras (Keras), or give a name without a suffix for a TF SavedModel folder"
        )
    if fmt is not None and fmt != inferred:
        raise ParameterError(
            "{path!r} names a {inferred} output by its suffix but the format asked is {value}: "
            "a file's suffix and content must agree; drop {fmt} or rename the output",
            path=str(path),
            inferred=inferred,
            value=fmt,
        )
    if not path.parent.is_dir():
        raise ValueError(f"the folder {str(path.parent)!r} does not exist")
    if path.exists():
        if inferred == "tf_saved_model":
            if not path.is_dir():
                raise FileExistsError(f"{path} is a file; a TF SavedModel is a folder: choose another output name")
            if not (path / "saved_model.pb").is_file():
                raise FileExistsError(
                    f"{path} is a folder that is not a TF SavedModel; it is never deleted: choose another output name"
                )
        elif path.is_dir():
            raise FileExistsError(f"{path} is a folder; an {inferred} export is a file: choose another output name")
        if not force:
            raise OutputExistsError("{path} exists; pass {force=True} to overwrite it", path=path)
    return inferred


def export_model(model, path, fmt: str | None = None, *, force: bool = False) -> Path:
    """Save `model` as "onnx" (anyshape's emitter), "tf_saved_model" (a folder) or "keras",
    atomically; `fmt=None` takes the format from the suffix (see `check_export_path`).

    `model` is a Keras model, or a `GraphModel` (an .onnx file anyshape wrote, from
    `load_or_build`), which is an ONNX graph and so exports as ONNX only. Without `force` an
    existing output is never replaced, also not one another process writes meanwhile."""
    from anyshape.atomic_write import write_atomically
    from anyshape.engine.graph_model import GraphModel

    path = Path(path)
    fmt = check_export_path(path, fmt, force=force)
    if isinstance(model, GraphModel):
        if fmt != "onnx":
            raise ValueError(
                f"{str(path)!r}: an ONNX model file exports as ONNX only (*.onnx), not as {fmt}: "
                "export the .keras model or the weights it was made from instead"
            )
        write_bytes_atomically(path, model.to_bytes(), overwrite=force)
    elif fmt == "onnx":
        # metadata inside: --model loads it
        write_bytes_atomically(path, GraphModel.from_keras(model).to_bytes(), overwrite=force)
    elif fmt == "keras":
        from anyshape.model_info import save_model

        save_model(
            model, path, overwrite=force
        )  # with anyshape_model.json inside: --model loads it with its preprocessing
    else:
        write_atomically(path, lambda tmp: model.export(tmp, format="tf_saved_model", verbose=False), overwrite=force)
    return path
