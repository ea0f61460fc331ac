"""A weight set's preprocessing: `weights=` values turned into a `DataConfig` and applied.

The data layer below (`anyshape.data_config`, `anyshape.preprocess`) knows how to scale pixels
and how a resolved weight set, a model or a run's info describes that scaling; it does not know
the registry. This module resolves a `weights=` value (a registry name or a weights file, as
`anyshape.weights.resolve` does) and hands the result down, so every name is resolved in one
place, the weights layer.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from anyshape import preprocess
from anyshape.data_config import DataConfig, resolve_data_config
from anyshape.weights.registry import resolve

__all__ = ["data_config_for", "preprocessing_for", "preprocess_input"]


def data_config_for(weights: Any, *, channels: int | None = None, preprocessing: str | None = None) -> DataConfig:
    """The `DataConfig` of a `weights=` value.

    `weights` is a registry name or a weights file (resolved by `anyshape.weights.resolve`, with
    `preprocessing` for a file that cannot tell), or anything
    `anyshape.data_config.resolve_data_config` takes (None, a `WeightSet`, a model, a run's
    info). `channels`: the model's input channels (a 3-value mean/std is averaged for others).
    """
    if isinstance(weights, str) or hasattr(weights, "__fspath__"):
        weights = resolve(weights, preprocessing=preprocessing)
    return resolve_data_config(weights, channels=channels, preprocessing=preprocessing)


def preprocessing_for(weights: Any, channels: int | None = None) -> dict:
    """preprocess_input keyword arguments (mode, mean, std) for a weight set.

    `weights` is a registry name, a path, a WeightSet, or a model loaded by anyshape (which
    carries `anyshape_weights`, or `anyshape_info` when loaded from a .keras file anyshape
    saved). `channels`: the input's channel count (a 3-value mean/std is averaged for others).
    """
    carries = getattr(weights, "anyshape_weights", None) or getattr(weights, "anyshape_info", None)
    if carries is None and hasattr(weights, "layers"):
        raise ValueError(
            "this model carries no anyshape weight metadata (it was built with weights=None or "
            "not by anyshape): pass mode= (and mean=/std=) to preprocess_input instead"
        )
    return data_config_for(weights, channels=channels).preprocess_kwargs()


def preprocess_input(
    x: Any,
    data_format: preprocess.DataFormat | None = None,
    *,
    weights: Any = None,
    mode: preprocess.PreprocessMode | None = None,
    mean: float | Sequence[float] | None = None,
    std: float | Sequence[float] | None = None,
) -> Any:
    """`anyshape.preprocess.preprocess_input`, which also takes the scaling of a weight set.

    weights: take mode, mean and std from a weight set: a registry name ("imagenet",
    "torchvision.IMAGENET1K_V1", "inception_v3.gluon_in1k", ...), a weights file, an
    ``anyshape.weights.WeightSet``, or a model loaded by anyshape (it carries
    ``model.anyshape_weights``). Not combinable with mode/mean/std. For a "torch"- or
    "caffe"-mode set (torchvision's, timm's; Keras' ResNet and VGG) and an input with other than
    3 channels, the mean of its mean and std are used, as predict uses them (the first conv of
    such a model was adapted from RGB; see anyshape.weights.channels). The other arguments
    are `anyshape.preprocess.preprocess_input`'s.
    """
    if weights is not None:
        if mode is not None or mean is not None or std is not None:
            raise ValueError("give either weights= (which sets mode, mean and std) or mode=/mean=/std=, not both.")
        kw = preprocessing_for(weights)
        if kw["mode"] in ("torch", "caffe"):  # per-channel constants: the channel count matters (and the format)
            channels = preprocess.input_channels(x, data_format)
            if channels is not None:
                kw = preprocessing_for(weights, channels)
        mode, mean, std = kw["mode"], kw.get("mean"), kw.get("std")
    return preprocess.preprocess_input(x, data_format, mode=mode, mean=mean, std=std)
