"""`create_model`: the one way a network is built, from a name, with or without weights.

In the manner of timm's `build_model_with_cfg`: resolve the weight set, apply its build overrides to
the network's Config, check the shape with the shape engine, build the Keras model, then load the
weights (adapting the first convolution to the channel count). Everything below this module (the
networks in `anyshape.archs`, the shape engine) knows nothing of weights; the weights layer knows
the networks only through the Config and the `Arch` record a model carries.
"""

from __future__ import annotations

import os
import sys
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from types import FrameType

from anyshape.archs import Arch, get_arch, list_models, model_config
from anyshape.archs.base import DATA_FORMATS, ConfigValueError, ignored_classes_problem, input_shape_value
from anyshape.errors import Message
from anyshape.shapes import (
    ImplausibleModel,
    InvalidInputShape,
    ShapeReport,
    TransposedShapeWarning,
    explain_config,
    transposed_shape_warning,
)

__all__ = ["create_model", "list_models", "model_config", "InvalidInputShape", "ImplausibleModel"]

WEIGHT_OPTIONS = ("channel_adapt", "cache_dir", "progress", "seed")


def _resolve_input_shape(arch: Arch, input_shape, input_tensor, include_top: bool, data_format: str) -> tuple:
    """The input shape in `data_format` (no batch axis): from the arguments or the tensor."""
    tensor_shape = None
    if input_tensor is not None:
        if not hasattr(input_tensor, "shape") or len(input_tensor.shape) != 4:
            raise ValueError(
                "input_tensor must be a 4-D Keras tensor (batch, height, width, channels for "
                f"channels_last), got {getattr(input_tensor, 'shape', type(input_tensor).__name__)}"
            )
        tensor_shape = tuple(input_tensor.shape[1:])
    if input_shape is not None:
        input_shape = input_shape_value(input_shape)
        if tensor_shape is not None and input_shape != tensor_shape:
            raise ValueError(
                f"input_shape={input_shape} conflicts with input_tensor of shape "
                f"{tuple(input_tensor.shape)}: give one of them, or make them agree "
                f"(input_shape excludes the batch axis: {tensor_shape})"
            )
        return input_shape
    if tensor_shape is not None:
        return tensor_shape
    # keras.applications' defaults (so `ResNet50()` is the same model): its default size with the
    # top, any size without. Pass input_shape=(None, None, C) for a free-size classifier.
    size = arch.default_size if include_top else None
    return (3, size, size) if data_format == "channels_first" else (size, size, 3)


def _warn_caller(message: str, category: type[Warning]) -> None:
    """`warnings.warn` attributed to the first caller outside anyshape (a constructor, the CLI)."""
    package = os.path.dirname(os.path.abspath(__file__))
    frame: FrameType | None = sys._getframe(1)  # create_model's frame: warn's stacklevel 2
    level = 2
    while frame is not None and os.path.abspath(frame.f_code.co_filename).startswith(package + os.sep):
        level, frame = level + 1, frame.f_back
    warnings.warn(message, category, stacklevel=level)


def create_model(
    arch_name: str,
    /,
    *,
    weights=None,
    input_tensor=None,
    input_shape: Sequence[int | None] | None = None,
    include_top: bool = True,
    preprocessing: str | None = None,
    max_params: int | None = None,
    **kwargs,
):
    """Build the network registered as `arch_name` (see `list_models()`) at any input shape that works.

    Args:
        arch_name: a registered network, e.g. "inception_v3", "resnet50", "efficientnet_b0" (or
            keras.applications' constructor name, "ResNet50").
        weights: None (random initialisation), "imagenet" (the network's own Keras ImageNet
            weights, as keras.applications), one of its registered weight sets
            (`anyshape.weights.weight_sets(arch_name)`, e.g. "resnet50.keras_in1k"), or the path of a
            weights file (Keras .h5/.weights.h5/.keras, PyTorch .pth/.safetensors).
        input_tensor: optional Keras tensor to use as the model's input.
        input_shape: (H, W, C) for channels_last, (C, H, W) for channels_first, without the batch
            axis; H and W each None or at least the network's minimum, C any positive integer.
            Default: the network's default size with the top, else (None, None, 3).
        include_top: whether to include the classifier.
        preprocessing: how an unrecognised PyTorch weights file expects its input ("tf" or
            "torch"; see `anyshape.weights.resolve`).
        max_params: the most parameters built without refusal (default: the environment variable
            ANYSHAPE_MAX_PARAMS, else 1e9, 4 GB of float32 weights; see `anyshape.shapes`).
        **kwargs: the network's other build arguments (its Config: pooling, classes,
            classifier_activation, data_format, dropout_rate, name, and the network's own), and the
            weight loader's options (channel_adapt, cache_dir, progress, seed).

    Raises:
        InvalidInputShape: (a ValueError) for a shape the network cannot take, naming the stage
            that collapses, why, and the nearest valid shape; raised before any layer is built.
        ImplausibleModel: (a ValueError) for a network of more than `max_params` parameters
            (alpha=1e9, classes=10**7), before any layer is built.
        ValueError / TypeError: for other invalid arguments, saying which and why.

    Warns (`anyshape.shapes.TransposedShapeWarning`) for an input shape that looks transposed for
    its data format, e.g. (64, 64, 3) with data_format="channels_first"; with pretrained weights
    such a shape is refused unless `channel_adapt` says how to adapt the first convolution.
    """
    import keras

    arch = get_arch(arch_name)
    weight_options = {k: kwargs.pop(k) for k in WEIGHT_OPTIONS if k in kwargs}
    data_format = kwargs.pop("data_format", None) or keras.config.image_data_format()
    _check_arguments(arch, data_format, weights, kwargs)
    weight_set = None if weights is None else _weight_set(arch, weights, preprocessing, kwargs)
    kwargs = {k: v for k, v in kwargs.items() if v is not None or k in ("pooling", "classifier_activation", "name")}
    input_shape = _resolve_input_shape(arch, input_shape, input_tensor, include_top, data_format)
    report = _checked_config(
        arch, max_params, input_shape=input_shape, include_top=include_top, data_format=data_format, **kwargs
    )
    config = report.config
    _check_transposed(arch, config, pretrained=weight_set is not None, adapt_given="channel_adapt" in weight_options)

    from anyshape.archs import keras_ops

    model = keras_ops.build(arch, config, input_tensor)
    model.anyshape_config = config
    model.anyshape_arch = arch.name
    model.anyshape_size_check = MinimumSizeCheck.of(report)
    if weight_set is not None:
        from anyshape.weights import load_weight_set

        load_weight_set(model, weight_set, **weight_options)
    elif weight_options or preprocessing is not None:
        given = sorted(weight_options) + (["preprocessing"] if preprocessing is not None else [])
        raise ValueError(f"{given} only apply with pretrained weights (weights=None given)")
    return model


def _check_arguments(arch, data_format, weights, kwargs: dict) -> None:
    """The arguments wrong whatever the network computes: data_format, weights' type, classes=None."""
    if data_format not in DATA_FORMATS:
        raise ValueError(f"data_format must be 'channels_last' or 'channels_first', got {data_format!r}")
    if weights is not None and not isinstance(weights, str) and not hasattr(weights, "__fspath__"):
        raise ValueError(f"weights must be None, a weight set name or a file path, got {weights!r}")
    if "classes" in kwargs and kwargs["classes"] is None:  # None would otherwise mean the default, 1000
        raise ConfigValueError(
            "classes",
            f"{arch.keras_name}: classes must be the number of classes of the classifier (a positive integer), "
            "got None: give it, or leave classes out for ImageNet's 1000",
        )


def _weight_set(arch, weights, preprocessing, kwargs: dict):
    """The weight set `weights` names, its build overrides applied to `kwargs` (a value given wins)."""
    from anyshape.weights import resolve

    # raises for unknown names, missing files and sets made for another network
    weight_set = resolve(weights, preprocessing, arch=arch.name)
    for key, value in weight_set.build_overrides_for(arch.name).items():
        if kwargs.get(key) is None:  # None: "what the weights need"; a value given wins
            kwargs[key] = value
    return weight_set


def _checked_config(arch, max_params, **arguments) -> ShapeReport:
    """The report of the network's Config (`.config`), refused before any layer is built when the
    shape cannot work or the network is implausibly large."""
    # arguments that are wrong whatever the shape (classes=0, head="banana") are a ValueError, not InvalidInputShape
    config = arch.checked_config(**arguments)
    ignored = ignored_classes_problem(config)
    if ignored:
        raise ConfigValueError(
            "classes", Message("{network}: " + ignored.template, network=arch.keras_name, **ignored.values)
        )
    return explain_config(arch, config).raise_if_invalid().raise_if_implausible(max_params)


@dataclass(frozen=True)
class MinimumSizeCheck:
    """What a free-size model from `create_model` checks before Keras runs it (issue 28): called
    with an input's shape (batch axis first), it raises InvalidInputShape for a height or width
    below the network's minimum (None, unknown while Keras traces, is not checked), in the words of
    the call, instead of the backend's "Negative dimension size" deep inside the network."""

    network: str  # keras.applications' name
    minimum: tuple[int, int]  # (H, W)
    axes: tuple[int, int]  # where H and W are in a batch's shape

    @classmethod
    def of(cls, report: ShapeReport) -> MinimumSizeCheck | None:
        """The check for the model `report` describes; None when its size is fixed (create_model
        checked it) or every size works."""
        mh, mw = report.min_hw
        if (report.height is not None and report.width is not None) or mh is None or mw is None or max(mh, mw) <= 1:
            return None
        axes = (2, 3) if report.data_format == "channels_first" else (1, 2)
        return cls(report.arch.keras_name, (mh, mw), axes)

    def __call__(self, shape: tuple | None) -> None:
        """Raise for `shape` below the minimum; None: a batch found below it while the model ran
        (TensorFlow's check in the graph, `SizeCheckedModel`), whose size the message cannot say."""
        if shape is not None:
            h, w = (shape[a] for a in self.axes)
            if (h is None or h >= self.minimum[0]) and (w is None or w >= self.minimum[1]):
                return
        raise self.error(shape)

    def error(self, shape: tuple | None) -> InvalidInputShape:
        """The refusal of `shape` (None: a batch of unknown size)."""
        mh, mw = self.minimum
        least = f"{mh} px per side" if mh == mw else f"{mh} px high and {mw} px wide"
        if shape is None:
            what = "a batch of the input has images"
        else:
            size = "x".join("?" if shape[a] is None else str(shape[a]) for a in self.axes)
            what = f"an input of shape {tuple(shape)} has images of {size} px,"
        return InvalidInputShape(
            f"{self.network}: {what} below the network's minimum of {least} (its feature map would "
            f"vanish): resize or pad the images to at least {mh}x{mw} px"
        )


def _check_transposed(arch, config, *, pretrained: bool, adapt_given: bool) -> None:
    """Warn for an input shape that looks transposed; refuse it with pretrained weights unless
    channel_adapt says how to adapt the first convolution."""
    transposed = transposed_shape_warning(config.input_shape, config.data_format)
    if not transposed:
        return
    if pretrained and not adapt_given:
        raise ValueError(
            Message(
                "{network}: "
                + transposed.template
                + ". With pretrained weights that would adapt the first convolution from RGB to that many "
                "channels: refused; give {channel_adapt=} to build it anyway",
                network=arch.keras_name,
                **transposed.values,
            )
        )
    _warn_caller(
        Message("{network}: " + transposed.template, network=arch.keras_name, **transposed.values),
        TransposedShapeWarning,
    )
