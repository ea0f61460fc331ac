"""What a model needs at inference besides its graph, kept inside its `.keras` file.

A Keras model is a graph and weights. How its input images must be prepared (a `DataConfig`),
what its outputs are called (class names) and which weight set it came from are not part of
it. anyshape keeps them as `model.anyshape_info` (a `ModelInfo`) in memory and, in a `.keras`
file, as the zip member `anyshape_model.json` beside Keras' own config.json and
model.weights.h5. `save_model` writes it; `load_model` reads it back (`engine.load_or_build`,
and so `anyshape predict --model`, go through it).

Why a zip member and not a serialisable layer or model subclass (keras-hub's ImageConverter
is a layer): Keras finds a custom class on load only when its package was imported first or
is passed as `custom_objects`; it imports a class's module by itself only for its own packages
(keras, keras_hub, ...: `_retrieve_class_or_fn` in keras/src/saving/serialization_lib.py). A
file holding an anyshape layer would not load with plain `keras.saving.load_model` where
anyshape is not installed. With a member, the file is an ordinary Keras Functional model
everywhere (Keras ignores zip members it does not know), and anyshape reads what it added.
The same place already holds `anyshape_weights.json`, the weight set `anyshape convert`
records (see `anyshape.weights.keras_h5`).

The cost: a bare `model.save()` writes only what Keras knows. Save with
`anyshape.model_info.save_model` (as `anyshape train` and `anyshape export --format keras` do).

A run folder of `anyshape train` also holds `classes.json`, the same facts for people (and
for run folders written before the member existed): `read_run_info` reads it, and
`load_model` falls back to it when the file has no member.
"""

from __future__ import annotations

import json
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from anyshape.atomic_write import write_atomically
from anyshape.data_config import DataConfig, resolve_data_config

__all__ = ["ModelInfo", "model_info", "save_model", "load_model", "load_problem", "read_keras_info", "read_run_info"]

MEMBER = "anyshape_model.json"
INFO_VERSION = 1
RUN_INFO_FILE = "classes.json"


@dataclass(frozen=True)
class ModelInfo:
    """How to feed a model and name its outputs.

    data_config: how images are prepared. class_names: the outputs' names in order (None: the
    ImageNet labels for 1000/1001 outputs, else class_<index>). weights: the name of the weight
    set the model was loaded or fine-tuned from (a registry name or a file name), if any.
    architecture and config: the registered network and its Config (`anyshape.archs`), so that
    a loaded model is known for what it is (its first convolution, its blocks, how its layers
    compute) without reading its layer names; None for a file saved before models carried them.
    """

    data_config: DataConfig
    class_names: tuple[str, ...] | None = None
    weights: str | None = None
    architecture: str | None = None
    config: Any = None  # the network's Config

    def to_dict(self) -> dict:
        return {
            "anyshape_model": INFO_VERSION,
            "data_config": self.data_config.to_dict(),
            "class_names": list(self.class_names) if self.class_names is not None else None,
            "weights": self.weights,
            "architecture": self.architecture,
            "config": self.config.to_dict() if self.config is not None else None,
        }

    @classmethod
    def from_dict(cls, record: dict) -> ModelInfo:
        names = record.get("class_names")
        architecture, config = record.get("architecture"), record.get("config")
        if architecture is not None and config is not None:
            from anyshape.archs import get_arch

            config = get_arch(architecture).config_class.from_dict(config)
        return cls(
            data_config=DataConfig.from_dict(record.get("data_config") or {}),
            class_names=tuple(str(n) for n in names) if names is not None else None,
            weights=record.get("weights"),
            architecture=architecture,
            config=config,
        )

    def attach(self, model) -> None:
        """Set this info on `model` (`anyshape_info`, and the network it was built as)."""
        model.anyshape_info = self
        if self.architecture is not None and self.config is not None:
            model.anyshape_arch, model.anyshape_config = self.architecture, self.config

    @classmethod
    def from_run_info(cls, run: dict) -> ModelInfo:
        """From a trained run's classes.json (see `read_run_info`)."""
        names = run.get("classes")
        return cls(resolve_data_config(run), tuple(names) if names else None, run.get("weights"))


def model_info(model: Any) -> ModelInfo:
    """The info a model carries (`model.anyshape_info`), else what its weight set says; with the
    network and Config `anyshape.create_model` built it as."""
    from dataclasses import replace

    from anyshape.archs import model_config

    info = getattr(model, "anyshape_info", None)
    if info is None:
        run = getattr(model, "anyshape_run_info", None)  # a classes.json dict set by hand
        if run:
            info = ModelInfo.from_run_info(run)
    built = model_config(model)
    if info is None:
        weight_set = getattr(model, "anyshape_weights", None)
        name = getattr(weight_set, "name", None)
        data = resolve_data_config(model)
        if weight_set is None and built is not None:  # random weights: the network's own preprocessing
            data = network_data_config(built[0].preprocessing, data)
        info = ModelInfo(data, None, str(name) if name is not None else None)
    if built is not None and info.config is None:
        info = replace(info, architecture=built[0].name, config=built[1])
    return info


def network_data_config(mode: str, base: DataConfig | None = None) -> DataConfig:
    """`base` (default: the defaults) with the preprocessing mode of a network's own weights
    (its `Arch.preprocessing`, keras.applications' preprocess_input mode: "caffe" for ResNet and
    VGG, "torch" for DenseNet, "raw" where the network normalises inside its graph)."""
    from dataclasses import replace

    from anyshape.data_config import CAFFE_MEAN, IMAGENET_MEAN, IMAGENET_STD

    base = base if base is not None else DataConfig()
    if mode == base.mode:
        return base
    if mode == "torch":
        return replace(base, mode="torch", mean=IMAGENET_MEAN, std=IMAGENET_STD)
    if mode == "caffe":
        return replace(base, mode="caffe", mean=CAFFE_MEAN, std=None)
    return replace(base, mode=mode, mean=None, std=None)


def save_model(model, path, info: ModelInfo | None = None, *, overwrite: bool = True) -> Path:
    """`model.save(path)` plus the member `anyshape_model.json`, atomically.

    `path` is a `.keras` file in an existing folder. `info` defaults to `model_info(model)`; it is
    also set as `model.anyshape_info`. With `overwrite=False` an existing `path` is kept
    (FileExistsError), see `anyshape.atomic_write`. Refused before anything is written: another
    suffix (the info is a zip member, which only the .keras format is), a folder as `path`, a
    folder that does not exist.
    """
    path = Path(path)
    if path.is_dir():
        raise ValueError(
            f"{path} is a folder: give save_model the name of a .keras file to write, e.g. {path / 'model.keras'}"
        )
    if path.suffix.lower() != ".keras":
        raise ValueError(
            f"save_model writes a Keras model file, whose name ends in .keras; got {str(path)!r}: "
            f"name it {path.stem}.keras"
        )
    if not path.parent.is_dir():
        raise FileNotFoundError(f"cannot save {path}: the folder {path.parent} does not exist; create it first")
    if path.exists() and not overwrite:
        raise FileExistsError(
            f"{path} exists and overwrite=False: choose another name, or pass overwrite=True to replace it"
        )
    info = info if info is not None else model_info(model)
    info.attach(model)
    text = json.dumps(info.to_dict(), indent=2)

    def write(tmp: str) -> None:
        model.save(tmp)
        with zipfile.ZipFile(tmp, "a") as z:
            z.writestr(MEMBER, text)

    try:
        return write_atomically(path, write, overwrite=overwrite)
    except FileExistsError:
        raise
    except OSError as e:  # disk full, permissions: said of the user's file, not of the temporary one
        raise OSError(e.errno, f"cannot save {path}: {e.strerror or type(e).__name__}; nothing was written") from e


def read_keras_info(path) -> ModelInfo | None:
    """The `anyshape_model.json` member of a `.keras` file, or None if it has none."""
    try:
        with zipfile.ZipFile(path) as z:
            if MEMBER not in z.namelist():
                return None
            record = json.loads(z.read(MEMBER).decode("utf-8"))
    except (zipfile.BadZipFile, OSError, ValueError) as e:
        raise ValueError(f"{path}: its {MEMBER} cannot be read ({type(e).__name__}: {e}); save the model again") from e
    if not isinstance(record, dict) or record.get("anyshape_model") != INFO_VERSION:
        raise ValueError(
            f"{path}: {MEMBER} is not version {INFO_VERSION} of anyshape's model info; "
            "save the model again with this anyshape"
        )
    try:
        return ModelInfo.from_dict(record)
    except (TypeError, ValueError) as e:  # e.g. a preprocessing mode anyshape does not know
        raise ValueError(f"{path}: {MEMBER} is not valid ({e}); save the model again") from e


def read_run_info(model_path) -> dict | None:
    """The `classes.json` of a run folder of `anyshape train`, or None if there is none.

    `model_path` is a run folder or a model file in it. Returns the parsed file:
    {"classes": [names in output order], "input_shape": [H, W, C], "data_format",
     "preprocess": keyword arguments for anyshape.preprocess_input (e.g. {"mode": "tf"}),
     "resize": {"method": "resize_shorter_and_center_crop", "crop_pct": 1.0,
                "interpolation": "bilinear"}, "output": "softmax", "model": "model.keras"}.
    Prepare an image with `anyshape.datasets.read_image(path, (H, W), C)` (which applies that
    resize), then `preprocess_input(x, **info["preprocess"])`.
    """
    p = Path(model_path)
    info = (p if p.is_dir() else p.parent) / RUN_INFO_FILE
    if not info.is_file():
        return None
    with open(info) as f:
        return json.load(f)


def load_model(path):
    """`keras.saving.load_model(path)` with its `ModelInfo` as `model.anyshape_info`.

    The info comes from the file's `anyshape_model.json`; for a file without one, from the
    `classes.json` beside it (a run folder written before the member existed), else from the
    `anyshape_weights.json` member `anyshape convert` writes; otherwise the model has none and
    `model_info` gives the defaults. A file that does not load raises a ValueError of one line
    that starts with the path (Keras' own message carries the whole model config).
    """
    import keras

    from anyshape.archs import keras_ops  # noqa: F401 -- registers LayerScale, which older ConvNeXt files hold

    try:
        model = keras.saving.load_model(path)
    except Exception as e:  # noqa: BLE001 -- any failure of Keras' loader is the file's problem, said in one line
        raise ValueError(load_problem(path, e)) from e
    info = read_keras_info(path)
    if info is None:
        run = read_run_info(path)
        if run:
            info = ModelInfo.from_run_info(run)
    if info is None:
        weight_set = _converted_weight_set(path)
        if weight_set is not None:
            model.anyshape_weights = weight_set
    if info is not None:
        info.attach(model)
    return model


def load_problem(path, error: BaseException) -> str:
    """One line for a Keras model file that does not load: Keras' message without the model
    config it appends ("Full object config: {...}", often megabytes), and what to do."""
    import re

    text = str(error)
    unknown = re.search(r"Could not locate (?:class|function) '([^']+)'", text)
    if unknown:
        name = unknown.group(1)
        return (
            f"{path}: holds a layer or function {name!r} that neither Keras nor anyshape defines (the "
            f"program that saved it does): load it where {name} is defined, or with "
            f"keras.saving.load_model(path, custom_objects={{{name!r}: ...}})"
        )
    text = re.split(r"\s*(?:Full object config|Config|config)\s*[:=]\s*\{", text, maxsplit=1)[0]
    first = " ".join(text.split())
    if len(first) > 300:
        first = first[:297] + "..."
    return (
        f"{path}: cannot be loaded as a Keras model ({type(error).__name__}: {first}); "
        "give a .keras file written by Keras 3 (model.save or anyshape.model_info.save_model)"
    )


def _converted_weight_set(path):
    """The weight set a `.keras` file from `anyshape convert` declares (member anyshape_weights.json)."""
    from anyshape.weights.keras_h5 import METADATA_MEMBER
    from anyshape.weights.weight_set import WeightSet

    with zipfile.ZipFile(path) as z:
        if METADATA_MEMBER not in z.namelist():
            return None
        return WeightSet.from_json(z.read(METADATA_MEMBER).decode("utf-8"), path=str(path))
