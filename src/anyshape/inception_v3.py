"""`anyshape.InceptionV3`: keras.applications' InceptionV3 signature over `anyshape.create_model`.

The network itself is `anyshape.archs.inception_v3` (its table, its network function, why it takes
any H, W >= 75); the shape engine is `anyshape.shapes`; weights are `anyshape.weights`.
"""

from __future__ import annotations

from collections.abc import Sequence

from anyshape.factory import create_model
from anyshape.shapes import InvalidInputShape

__all__ = ["InceptionV3", "InvalidInputShape"]


def InceptionV3(
    include_top: bool = True,
    weights: str | None = "imagenet",
    input_tensor=None,
    input_shape: Sequence[int | None] | None = None,
    pooling: str | None = None,
    classes: int = 1000,
    classifier_activation: str | None = "softmax",
    name: str = "inception_v3",
    *,
    data_format: str | None = None,
    dropout_rate: float = 0.0,
    aux_logits: bool = False,
    count_include_pad: bool | None = None,
    bn_scale: bool | None = None,
    preprocessing: str | None = None,
    **weights_options,
):
    """Instantiates InceptionV3 at any input shape that works.

    A drop-in superset of `keras.applications.InceptionV3`: every argument has Keras' meaning,
    but shapes are limited only by what the network can compute.

    Args:
        include_top: whether to include the global pooling + dense classifier. Works at every
            valid input size, including (None, None, C): the classifier sees 2048 pooled
            features whatever the image size.
        weights: None (random initialisation), a registered weight set name such as
            "imagenet", or the path to a weights file.
        input_tensor: optional Keras tensor (e.g. the output of `keras.Input()`) to use as
            the model's input; its shape must be valid. With `input_shape` too, both must agree.
        input_shape: optional shape tuple without the batch axis, in `data_format` order:
            (H, W, C) for channels_last, (C, H, W) for channels_first. H and W are each None or
            an integer >= 75 (>= 299 with `aux_logits`), C any integer >= 1. Default: (299, 299, 3)
            with the top (as Keras), else (None, None, 3).
        pooling: global pooling. With `include_top=False`: None (the 4-D mixed10 map), "avg",
            "max", "avgmax" (mean of both) or "catavgmax" (both concatenated, 4096 wide). With
            `include_top=True`: the head's pooling (default "avg").
        classes: number of classes of the classifier (with `include_top=True`).
        classifier_activation: activation of the classifier (and the aux classifier); None
            returns logits.
        name: the model's name.
        data_format: "channels_last" or "channels_first"; default
            `keras.config.image_data_format()`. channels_first works on every backend,
            TensorFlow on CPU included (see the module docstring).
        dropout_rate: dropout before the classifier (torchvision trains with 0.5).
        aux_logits: add the auxiliary classifier on mixed7 (torchvision's AuxLogits); the model
            then has two outputs [main, aux]. Needs `include_top=True` and H, W >= 299.
        count_include_pad: average-pool semantics of the 3x3 pool branches. False (Keras/TF):
            border windows average over real pixels only; True (torchvision/timm): padded zeros
            count, the divisor is always 9. None: what the weight set was trained with (False
            for random init).
        bn_scale: BatchNorm with a learned scale (gamma), as torchvision/timm; Keras' model has
            none. None: what the weight set needs (False for random init).
        preprocessing: "tf" ([-1, 1]) or "torch" (ImageNet mean/std): how a PyTorch weights file
            expects its input, needed when `weights` is a state dict anyshape does not recognise
            as a published one (see `anyshape.weights.resolve`).
        **weights_options: passed to the weight loader (e.g. `channel_adapt=`).

    Returns:
        A `keras.Model`.

    Raises:
        InvalidInputShape: (a ValueError) for a shape the network cannot take, naming the stage
            that collapses, why, and the nearest valid shape. Raised before any layer is built.
        ValueError: for other invalid arguments, saying which and why.
    """
    return create_model(
        "inception_v3",
        weights=weights,
        input_tensor=input_tensor,
        input_shape=input_shape,
        include_top=include_top,
        preprocessing=preprocessing,
        pooling=pooling,
        classes=classes,
        classifier_activation=classifier_activation,
        name=name,
        data_format=data_format,
        dropout_rate=dropout_rate,
        aux_logits=aux_logits,
        count_include_pad=count_include_pad,
        bn_scale=bn_scale,
        **weights_options,
    )
