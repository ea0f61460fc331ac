"""Loading a saved model or building one, and exporting a model to a file."""

from __future__ import annotations

import os
from pathlib import Path

from anyshape.atomic_write import write_atomically, write_bytes_atomically


def load_or_build(model_path=None, **inception_v3_kwargs):
    """A saved Keras model (`.keras` file) when `model_path` is given, else anyshape.InceptionV3.

    An `.onnx` file with anyshape's metadata (`anyshape quantize`, `anyshape export --format onnx`)
    loads as a `GraphModel`, which `Predictor` runs on ONNX Runtime or OpenVINO.

    A model file in a run folder of `anyshape train` carries the folder's `classes.json` as
    `model.anyshape_run_info`: predictions are named by its classes and images prepared by its
    preprocessing and resize settings."""
    if model_path is not None and Path(model_path).suffix == ".onnx":
        from anyshape.engine.graph_model import GraphModel

        return GraphModel.load(model_path)  # e.g. an int8 file from `anyshape quantize`
    if model_path is not None:
        import keras

        path = Path(model_path)
        if not path.is_file():
            raise ValueError(f"--model {model_path}: no such file (expected a .keras model file)")
        try:
            model = keras.saving.load_model(path)
        except Exception as e:
            raise ValueError(f"--model {model_path}: cannot be loaded as a Keras model ({type(e).__name__}: {e})") from e
        try:  # a run folder of `anyshape train`: class names and preprocessing in classes.json
            from anyshape.train import read_run_info

            info = read_run_info(path)
        except ImportError:
            info = None
        if info:
            model.anyshape_run_info = info
        return model
    from anyshape.inception_v3 import InceptionV3

    return InceptionV3(**inception_v3_kwargs)


def export_model(model, path, fmt: str, *, force: bool = False) -> Path:
    """Save `model` as "onnx" (anyshape's emitter), "tf_saved_model" (a folder) or "keras", atomically."""
    import shutil

    path = Path(path)
    if fmt not in ("onnx", "tf_saved_model", "keras"):
        raise ValueError(f"format must be onnx, tf_saved_model or keras, got {fmt!r}")
    if fmt == "keras" and path.suffix != ".keras":
        raise ValueError(f"a Keras model file must end in .keras, got {str(path)!r}")
    if path.exists() and not force:
        raise FileExistsError(f"{path} exists; pass --force to overwrite it")
    if not path.parent.is_dir():
        raise ValueError(f"the folder {str(path.parent)!r} does not exist")
    if fmt == "onnx":
        from anyshape.engine.graph_model import GraphModel

        write_bytes_atomically(path, GraphModel.from_keras(model).to_bytes())  # metadata inside: --model loads it
    elif fmt == "keras":
        write_atomically(path, lambda tmp: model.save(tmp))
    else:
        tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
        try:
            model.export(str(tmp), format="tf_saved_model", verbose=False)
            if path.exists():
                shutil.rmtree(path) if path.is_dir() else path.unlink()
            os.replace(tmp, path)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp)
    return path
