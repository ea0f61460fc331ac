"""How images must be prepared for a model: the constants, the config, and the one resolver.

Everything that decides how an image becomes model input reads it from here:
`anyshape.preprocess_input(weights=...)`, `weights.preprocessing_for`, training (the run's
`classes.json` and its model.keras, see `anyshape.model_info`) and the inference engine (`engine.Preprocessing` is `DataConfig`). A
`DataConfig` comes from `resolve_data_config(source)`, where `source` is a resolved weight set
(a `WeightSet`, whose `data_config` property converts it), a model loaded or trained by
anyshape, a trained run's info (`classes.json`), or None for the defaults. This module is in
the data layer, below the weights: a registry name or a weights file is resolved by
`anyshape.weights.data_config_for`, which then calls this function. In the spirit of timm's `resolve_data_config`
(timm/data/config.py), without timm.

Defaults, when the weights say nothing (a model built with `weights=None`, a Keras file
without metadata): pixels scaled to [-1, 1] (mode "tf", Keras' and TF-slim's InceptionV3
convention), the evaluation crop 0.875 of timm's and Keras' InceptionV3 (299 of 342), and
bicubic resizing. Bicubic is timm's choice for all its InceptionV3 configs, Pillow's filter
that best keeps detail when shrinking, and what the inference engine and
`preprocess.resize` already used; a weight set that was evaluated otherwise says so in the
registry (Keras' "imagenet" and torchvision's IMAGENET1K_V1: bilinear) and that wins.

The evaluation resize has timm's two crop modes (`crop_mode`, timm/data/transforms_factory.py
`transforms_imagenet_eval`): "center" (the default, and what a file without the field means)
keeps the aspect ratio, resizing the shorter side to size / crop_pct and cutting the centre;
"squash" resizes each side to size / crop_pct on its own, ignoring the aspect ratio, then cuts the
centre (with crop_pct 1.0: the whole image, squashed to the input size). timm's EfficientNetV2-M
and -L sets and B3's 21k set are evaluated with "squash". timm's third mode, "border" (fit the
longer side, pad with the mean), is not offered.

Training resizes once, to the input size, keeping the whole shorter side (crop 1.0,
bilinear, centre, see `anyshape.datasets`); a trained run records that, so inference on its model
prepares images the same way.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

import numpy as np

# the constants `preprocess` applies, defined there (this module sits above it) and kept here too
from anyshape.preprocess import (
    CAFFE_MEAN,
    DEFAULT_CROP_PCT,
    DEFAULT_INTERPOLATION,
    IMAGENET_MEAN,
    IMAGENET_STD,
    PREPROCESS_MODES,
    center_crop,
    preprocess_input,
    shorter_side_resize_size,
)
from anyshape.preprocess import resize as resize_image

__all__ = [
    "DataConfig",
    "resolve_data_config",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "INCEPTION_MEAN",
    "INCEPTION_STD",
    "DEFAULT_CROP_PCT",
    "DEFAULT_INTERPOLATION",
    "PREPROCESS_MODES",
    "CAFFE_MEAN",
    "TRAIN_CROP_PCT",
    "TRAIN_INTERPOLATION",
    "RESIZE_METHOD",
    "CROP_MODES",
    "DEFAULT_CROP_MODE",
]

INCEPTION_MEAN = (0.5, 0.5, 0.5)  # mean/std 0.5 is the same map as mode "tf": x / 127.5 - 1
INCEPTION_STD = (0.5, 0.5, 0.5)
RESIZE_METHOD = "resize_shorter_and_center_crop"
CROP_MODES = ("center", "squash")  # timm's crop_mode values anyshape applies
DEFAULT_CROP_MODE = "center"
# a run's classes.json names the resize by its method; one per crop mode
_RESIZE_METHODS = {"center": RESIZE_METHOD, "squash": "squash_and_center_crop"}
TRAIN_CROP_PCT = 1.0  # training keeps the whole shorter side (no information cut away)
TRAIN_INTERPOLATION = "bilinear"


@dataclass(frozen=True)
class DataConfig:
    """How images must be prepared for a model's weights.

    mode "tf": ``x / 127.5 - 1`` ([-1, 1]); "torch": ``(x / 255 - mean) / std``; "caffe": RGB
    to BGR, minus a BGR mean in 0..255 (Keras' ResNet and VGG); "raw": the pixels as they are,
    0..255 (the network scales them itself: EfficientNet, ConvNeXt, MobileNetV3).
    input_size: the (H, W) the weights were evaluated at, if known. crop_pct, interpolation and
    crop_mode: the evaluation resize (`resize`; "center": `preprocess.resize_shorter_and_center_crop`,
    "squash": each side to size / crop_pct, then the centre crop, as timm's crop_mode="squash").
    label_offset: 1 when output 0 is a background class, 0 when not, "auto" when unknown (decided by
    the output width).
    """

    mode: str = "tf"
    mean: tuple | float | None = None  # a float: one value for every channel
    std: tuple | float | None = None
    input_size: tuple | None = None
    crop_pct: float = DEFAULT_CROP_PCT
    interpolation: str = DEFAULT_INTERPOLATION
    label_offset: int | str = "auto"
    crop_mode: str = DEFAULT_CROP_MODE  # last: older code builds DataConfig by position

    def __post_init__(self) -> None:
        # every way in (the Python API, a model file's anyshape_model.json, a run's classes.json,
        # an .onnx file's metadata, a converted file's weight set) meets this check: an unknown
        # mode must not quietly mean "tf"
        if self.mode not in PREPROCESS_MODES:
            raise ValueError(
                f"DataConfig mode={self.mode!r} is not a preprocessing mode: use one of "
                f"{', '.join(repr(m) for m in PREPROCESS_MODES)}"
            )
        if self.crop_mode not in CROP_MODES:
            raise ValueError(
                f"DataConfig crop_mode={self.crop_mode!r} is not a crop mode: use one of "
                f'{", ".join(repr(m) for m in CROP_MODES)} (timm\'s "border" is not offered)'
            )

    @classmethod
    def from_model(cls, model) -> DataConfig:
        """The config a model carries (`model.anyshape_info`, kept in its .keras file, see
        `anyshape.model_info`), else its weight set's; the defaults without either."""
        return resolve_data_config(model)

    def to_dict(self) -> dict:
        """A JSON-ready dict (tuples as lists); `from_dict` reads it back."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, record: dict) -> DataConfig:
        """The inverse of `to_dict`; keys it does not know are ignored (a newer writer's)."""
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in record.items() if k in known}
        for key in ("mean", "std", "input_size"):
            if key in values:
                values[key] = _tuple(values[key])
        return cls(**values)

    def preprocess_kwargs(self) -> dict:
        """Keyword arguments for `anyshape.preprocess_input`: mode, and mean/std for "torch" (mean
        for "caffe")."""
        if self.mode == "torch":
            return {"mode": "torch", "mean": self.mean, "std": self.std}
        if self.mode == "caffe":
            return {"mode": "caffe", "mean": self.mean}
        return {"mode": self.mode}

    def for_channels(self, channels: int | None) -> DataConfig:
        """A per-channel mean/std that does not fit `channels` becomes its average.

        The first conv of a model with other than 3 channels was adapted from RGB (see
        anyshape.weights.channels), so one value per channel, the RGB average, fits it best.
        """
        changes: dict = {}
        for name in ("mean", "std"):
            value = getattr(self, name)
            if channels is not None and isinstance(value, (tuple, list)) and len(value) != channels:
                changes[name] = float(sum(value) / len(value))
        return replace(self, **changes) if changes else self

    def for_training(self) -> DataConfig:
        """The same scaling with the resize training uses (whole shorter side, bilinear, centre)."""
        return replace(
            self,
            crop_pct=TRAIN_CROP_PCT,
            interpolation=TRAIN_INTERPOLATION,
            label_offset=0,
            crop_mode=DEFAULT_CROP_MODE,
        )

    def resize_policy(self) -> dict:
        """The resize as recorded in a run's classes.json (its method names the crop mode)."""
        return {
            "method": _RESIZE_METHODS[self.crop_mode],
            "crop_pct": self.crop_pct,
            "interpolation": self.interpolation,
        }

    def resize_size(self, image_hw: tuple[int, int], size_hw: tuple[int, int] | int) -> tuple[int, int]:
        """The (H, W) an image of `image_hw` is resized to before the centre crop to `size_hw`:
        "center" keeps the aspect ratio (`preprocess.shorter_side_resize_size`); "squash" takes
        floor(side / crop_pct) for each side, as timm's squash mode (a tuple size for
        torchvision's Resize)."""
        if self.crop_mode == "squash":
            if isinstance(size_hw, int):
                size_hw = (size_hw, size_hw)
            shorter_side_resize_size(image_hw, size_hw, self.crop_pct)  # the same checks of size and crop_pct
            return math.floor(size_hw[0] / self.crop_pct), math.floor(size_hw[1] / self.crop_pct)
        return shorter_side_resize_size(image_hw, size_hw, self.crop_pct)

    def resize(self, image_hwc, size_hw: tuple[int, int] | int):
        """One (H, W, C) image brought to `size_hw` as the weights were evaluated: resized to
        `resize_size` with `interpolation` (Pillow, `preprocess.resize`), then its centre cut."""
        image_hwc = np.asarray(image_hwc)
        resized = resize_image(image_hwc, self.resize_size(image_hwc.shape[:2], size_hw), self.interpolation)
        return center_crop(resized, size_hw)

    def apply(self, image_hwc):
        """Scale one (H, W, C) image of 0..255 pixels (numpy) as the weights expect."""
        kwargs = self.preprocess_kwargs()
        return preprocess_input(image_hwc, "channels_last", **kwargs)


def _tuple(value) -> tuple | float | None:
    if value is None or isinstance(value, (int, float)):
        return value
    return tuple(value)


def _from_run_info(run: dict) -> DataConfig:
    """A trained run's classes.json: its "preprocess" and "resize" sections."""
    prep, how = dict(run.get("preprocess") or {}), dict(run.get("resize") or {})
    method = how.get("method", RESIZE_METHOD)  # older runs: the centre crop
    modes = {m: mode for mode, m in _RESIZE_METHODS.items()}
    if method not in modes:
        raise ValueError(
            f"the run's resize method {method!r} is not one anyshape applies: {', '.join(repr(m) for m in modes)}"
        )
    return DataConfig(
        mode=prep.get("mode", "tf"),
        mean=_tuple(prep.get("mean")),
        std=_tuple(prep.get("std")),
        crop_pct=float(how.get("crop_pct", DEFAULT_CROP_PCT)),
        interpolation=how.get("interpolation", DEFAULT_INTERPOLATION),
        label_offset=0,
        crop_mode=modes[method],
    )


def resolve_data_config(
    source: Any = None, *, channels: int | None = None, preprocessing: str | None = None
) -> DataConfig:
    """The one place a `DataConfig` is decided.

    Args:
        source: None (the defaults), a `DataConfig` (returned as is), a trained run's info (the
            dict of classes.json, see `anyshape.model_info.read_run_info`), a model (its
            `anyshape_info`, as saved in its .keras file, or a classes.json dict set as
            `anyshape_run_info`; else its `anyshape_weights`; else the defaults), or anything
            that carries its `data_config` (a resolved `WeightSet`, a `ModelInfo`). A
            `weights=` value (a registry name or a file path) is resolved by the weight
            registry, above this module: `anyshape.weights.data_config_for`.
        channels: the model's input channels; a 3-value mean/std is averaged for others.
        preprocessing: "tf" or "torch": the scaling of random weights (source None).
    """
    if isinstance(source, DataConfig):
        config = source
    elif source is None:  # random weights: the defaults, or the scaling asked for
        config = DataConfig()
        if preprocessing == "torch":
            config = DataConfig(mode="torch", mean=IMAGENET_MEAN, std=IMAGENET_STD)
    elif isinstance(source, dict):
        config = _from_run_info(source)
    elif getattr(source, "anyshape_info", None) is not None:  # anyshape.model_info.ModelInfo
        config = source.anyshape_info.data_config
    elif getattr(source, "anyshape_run_info", None):
        config = _from_run_info(source.anyshape_run_info)
    elif getattr(source, "anyshape_weights", None) is not None:  # anyshape.weights.WeightSet
        config = source.anyshape_weights.data_config
    elif isinstance(getattr(source, "data_config", None), DataConfig):  # a WeightSet, a ModelInfo
        config = source.data_config
    elif isinstance(source, str) or hasattr(source, "__fspath__"):
        raise TypeError(
            f"resolve_data_config takes a resolved weight set, not the name or path {str(source)!r}: "
            "anyshape.weights.data_config_for(weights) resolves it through the registry"
        )
    else:  # a model neither trained nor loaded by anyshape
        config = DataConfig()
    return config.for_channels(channels)
