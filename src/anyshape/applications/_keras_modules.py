"""What keras.applications' per-family modules (`keras.applications.resnet50`, `.efficientnet`,
...) hold besides the constructors: `preprocess_input` and `decode_predictions`, so that
`from anyshape.applications.resnet50 import ResNet50, preprocess_input, decode_predictions` is
Keras' import line with `keras` replaced.

Each module's `preprocess_input(x, data_format=None)` is the scaling of the network's Keras
ImageNet weights (`anyshape.preprocess_input(x, data_format, weights=...)`): Keras' caffe mode for
ResNet and VGG, torch for DenseNet, [-1, 1] for InceptionV3, Xception, MobileNet(V2), ResNetV2 and
NASNet, the pixels as they are for the networks that scale inside the graph (EfficientNet(V2),
ConvNeXt, MobileNetV3: Keras' function is a pass-through there), at any channel count (a per-channel
mean becomes its average, as predict uses it). `decode_predictions` is `anyshape.decode_predictions`
(Keras' own result for a batch of 1000 ImageNet scores).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from anyshape.archs import get_arch
from anyshape.labels import decode_predictions
from anyshape.pixel_scaling import preprocess_input as _scale
from anyshape.weights.preprocessing import preprocess_input as _preprocess


def constructors(*keras_names: str) -> tuple[Callable[..., Any], ...]:
    """anyshape.applications' constructors of these keras.applications names."""
    from anyshape import applications

    return tuple(getattr(applications, name) for name in keras_names)


def helpers(module: str, arch_name: str) -> tuple[Callable[..., Any], Callable[..., Any]]:
    """(preprocess_input, decode_predictions) of keras.applications.`module`, whose networks'
    Keras weights scale as `arch_name`'s."""
    weights = "imagenet" if arch_name == "inception_v3" else f"{arch_name}.keras_in1k"
    mode = get_arch(arch_name).preprocessing

    def preprocess_input(x, data_format=None):
        return _preprocess(x, data_format, weights=weights)

    preprocess_input.__doc__ = (
        f"Raw pixels (0..255) scaled as keras.applications.{module}.preprocess_input scales them (mode "
        f"{mode!r}, the scaling of {weights!r}), at any channel count; a float32 array or tensor."
    )
    preprocess_input.__module__ = f"anyshape.applications.{module}"
    preprocess_input.__qualname__ = "preprocess_input"
    return preprocess_input, decode_predictions


def imagenet_preprocess_input(x, data_format=None, mode="caffe"):
    """keras.applications.imagenet_utils.preprocess_input: `mode` "caffe" (Keras' default), "tf",
    "torch" (or anyshape's "raw"), with that mode's ImageNet constants."""
    return _scale(x, data_format, mode=mode)
