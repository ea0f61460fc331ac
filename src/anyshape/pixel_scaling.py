"""Pixel scaling: ``preprocess_input`` scales pixels the way a weight set was trained ("tf":
[-1, 1], Keras' InceptionV3 default; "torch": ImageNet mean/std; "caffe": BGR minus Caffe's
means; "raw"), for any channel count and both data formats, on numpy arrays (always returning a
new float32 array) and on backend tensors. It holds the scaling constants; `anyshape.preprocess`
and `anyshape.data_config` re-export them, so there is one value of each.

numpy only; Keras is imported only for a tensor or an unresolved ``data_format``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import numpy as np

IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)
# Keras' imagenet_utils "caffe" mode (ResNet, VGG): RGB -> BGR, minus these BGR means, in 0..255
CAFFE_MEAN: tuple[float, float, float] = (103.939, 116.779, 123.68)
PREPROCESS_MODES: tuple[str, ...] = ("tf", "torch", "caffe", "raw")

DataFormat = Literal["channels_last", "channels_first"]
PreprocessMode = Literal["tf", "torch", "caffe", "raw"]


def _resolve_data_format(data_format: str | None) -> str:
    if data_format is None:
        import keras  # deferred: only needed when the caller leaves the format to Keras

        data_format = keras.config.image_data_format()
    if data_format not in ("channels_last", "channels_first"):
        raise ValueError(
            f"data_format must be 'channels_last', 'channels_first' or None (use "
            f"keras.config.image_data_format()), got {data_format!r}."
        )
    return data_format


def _channel_axis(ndim: int, data_format: str) -> int:
    """Channel axis of an image batch (ndim >= 4) or a single image (ndim == 3)."""
    if data_format == "channels_last":
        return ndim - 1
    return 0 if ndim == 3 else 1


def _per_channel_constant(
    name: str,
    value: float | Sequence[float] | None,
    default: Sequence[float],
    num_channels: int | None,
    mode: str = "torch",
    scale: str = "0..1 scale (pixels are divided by 255 first)",
) -> np.ndarray:
    """Validate ``mean``/``std`` for mode "torch" (or "caffe"); returns a float32 vector or a 0-d
    scalar.

    ``num_channels`` is None for inputs without a channel axis (fewer than 3 dimensions).
    """
    if value is None:
        if num_channels is None:
            raise ValueError(
                f"mode={mode!r} needs a channel axis (a 3-D image or 4-D batch) to apply the "
                f"default ImageNet {name}; for other inputs pass a scalar {name}=."
            )
        if num_channels != len(default):
            raise ValueError(
                f"mode={mode!r} has a default ImageNet {name} {tuple(default)} only for 3-channel "
                f"RGB input, but the input has {num_channels} channels. Pass {name}= as a scalar "
                f"or as {num_channels} values, in the {scale}."
            )
        value = default
    constant = np.asarray(value, dtype=np.float32)
    if constant.ndim == 0:
        return constant
    if num_channels is None:
        raise ValueError(
            f"A per-channel {name} needs an input with a channel axis (a 3-D image or 4-D batch); "
            f"pass a scalar {name} for inputs without one."
        )
    if constant.ndim != 1 or constant.shape[0] != num_channels:
        raise ValueError(f"{name} must be a scalar or have one value per channel ({num_channels}), got {value!r}.")
    return constant


def _caffe(x, is_numpy: bool, axis: int | None, num_channels: int | None, mean, ndim: int):
    """Mode "caffe": 3 channels reversed (RGB -> BGR), then a (BGR) mean subtracted, 0..255."""
    mean_values = _per_channel_constant("mean", mean, CAFFE_MEAN, num_channels, mode="caffe", scale="0..255")
    if axis is not None and mean_values.ndim:
        broadcast_shape = [1] * ndim
        broadcast_shape[axis] = -1
        mean_values = mean_values.reshape(broadcast_shape)
    if is_numpy:
        pixels = np.asarray(x, dtype=np.float32)
        if num_channels == 3:
            pixels = np.flip(pixels, axis=axis)
        return (pixels - mean_values).astype(np.float32, copy=False)
    from keras import ops

    pixels = ops.cast(x, "float32")
    if num_channels == 3:
        pixels = ops.flip(pixels, axis=axis)
    return ops.subtract(pixels, ops.convert_to_tensor(mean_values))


def preprocess_input(
    x: Any,
    data_format: DataFormat | None = None,
    *,
    mode: PreprocessMode | None = None,
    mean: float | Sequence[float] | None = None,
    std: float | Sequence[float] | None = None,
) -> Any:
    """Scale raw pixels (0..255) to the range a pretrained InceptionV3 expects.

    The scaling is given by mode, mean and std. `anyshape.preprocess_input` (in
    `anyshape.weights.preprocessing`, above the registry) also takes ``weights=``, a weight set
    whose scaling to apply.

    Args:
        x: images with values in 0..255: a batch ``(N, H, W, C)`` / ``(N, C, H, W)``, a single
            image ``(H, W, C)`` / ``(C, H, W)``, or any array for mode "tf". A numpy array (or
            anything ``np.asarray`` accepts) or a Keras/backend tensor.
        data_format: "channels_last" (channel axis -1) or "channels_first" (axis 1 for a batch,
            0 for a single 3-D image). None means ``keras.config.image_data_format()``; it is
            only looked up when the mode needs the channel axis.
        mode: "tf" (default, Keras' and TF-slim's InceptionV3 weights): ``x / 127.5 - 1``, so
            0 -> -1 and 255 -> 1, for any channel count.
            "torch" (torchvision/timm weights): ``(x / 255 - mean) / std`` per channel.
            "caffe" (Keras' ResNet and VGG weights, as keras.applications.imagenet_utils): 3
            channels RGB -> BGR, then minus ``mean`` (default the BGR ImageNet mean
            ``(103.939, 116.779, 123.68)``) in the 0..255 scale; other channel counts are kept
            in order and need an explicit mean.
            "raw": the pixels unchanged, as float32 (networks that scale inside the graph:
            EfficientNet, ConvNeXt, MobileNetV3).
        mean, std: mode "torch" (both, in the 0..1 scale; default ImageNet's
            ``(0.485, 0.456, 0.406)`` and ``(0.229, 0.224, 0.225)``) and mode "caffe" (mean only,
            in the 0..255 scale, in BGR order for 3 channels). The defaults only fit 3 channels;
            any other channel count needs explicit values, one per channel or a scalar.

    Returns:
        For numpy input, a new float32 numpy array (``x`` is never modified). For a tensor, a
        float32 tensor of the same backend.

    Raises:
        ValueError: for an unknown mode or data_format, mean/std with mode "tf", or mean/std
            that do not match the channel count.
    """
    if mode is None:
        mode = "tf"
    if mode not in PREPROCESS_MODES:
        raise ValueError(f"mode must be one of {PREPROCESS_MODES}, got {mode!r}.")
    is_numpy = isinstance(x, (np.ndarray, np.generic, list, tuple, int, float))

    if mode == "raw":
        if mean is not None or std is not None:
            raise ValueError("mean and std do not apply to mode='raw', which passes the pixels unchanged.")
        if data_format is not None:
            _resolve_data_format(data_format)
        if is_numpy:
            return np.array(x, dtype=np.float32)
        from keras import ops

        return ops.cast(x, "float32")
    if mode == "caffe" and std is not None:
        raise ValueError("std does not apply to mode='caffe', which only subtracts a mean (0..255 scale).")

    if mode == "tf":
        if mean is not None or std is not None:
            raise ValueError("mean and std apply only to mode='torch'; mode='tf' always computes x / 127.5 - 1.")
        if data_format is not None:
            _resolve_data_format(data_format)  # still reject typos
        if is_numpy:
            return np.asarray(x, dtype=np.float32) / np.float32(127.5) - np.float32(1.0)
        from keras import ops

        return ops.subtract(ops.divide(ops.cast(x, "float32"), 127.5), 1.0)

    resolved_format = _resolve_data_format(data_format)
    shape = tuple(np.shape(x)) if is_numpy else tuple(x.shape)
    ndim = len(shape)
    axis = _channel_axis(ndim, resolved_format) if ndim >= 3 else None
    num_channels = shape[axis] if axis is not None else None
    if axis is not None and num_channels is None:
        raise ValueError(
            f"mode={mode!r} needs a known channel count, but the input shape {shape} has None on "
            f"the channel axis {axis} ({resolved_format})."
        )
    if mode == "caffe":
        return _caffe(x, is_numpy, axis, num_channels, mean, ndim)
    mean_values = _per_channel_constant("mean", mean, IMAGENET_MEAN, num_channels)
    std_values = _per_channel_constant("std", std, IMAGENET_STD, num_channels)
    if np.any(std_values == 0):
        raise ValueError(f"std must be non-zero, got {std!r}.")
    if axis is not None:  # per-channel vectors broadcast along the channel axis
        broadcast_shape = [1] * ndim
        broadcast_shape[axis] = -1
        mean_values = mean_values.reshape(broadcast_shape) if mean_values.ndim else mean_values
        std_values = std_values.reshape(broadcast_shape) if std_values.ndim else std_values

    if is_numpy:
        scaled = np.asarray(x, dtype=np.float32) / np.float32(255.0)
        return ((scaled - mean_values) / std_values).astype(np.float32, copy=False)
    from keras import ops

    scaled = ops.divide(ops.cast(x, "float32"), 255.0)
    return ops.divide(ops.subtract(scaled, ops.convert_to_tensor(mean_values)), ops.convert_to_tensor(std_values))


def input_channels(x: Any, data_format: str | None) -> int | None:
    """The channel count of images `x` (a batch or one image) in `data_format`; None for fewer
    than 3 dimensions. Looks up `keras.config.image_data_format()` only for data_format None."""
    shape = tuple(np.shape(x)) if not hasattr(x, "shape") else tuple(x.shape)
    if len(shape) < 3:
        return None
    return shape[_channel_axis(len(shape), _resolve_data_format(data_format))]
