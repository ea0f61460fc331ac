"""The Keras 3 functional builder for InceptionV3 at any input shape.

Model code uses keras.layers only (built-in layers, so a saved `.keras` file loads with plain
`keras.saving.load_model`, no anyshape import needed), and runs on the TensorFlow, JAX and
PyTorch backends.

Compatibility with keras.applications.InceptionV3 is by construction: the same conv + BN
(scale=False) + ReLU units, the same branch order in every concatenation, the same block output
names (mixed0 ... mixed10, avg_pool, predictions), so the weighted layers come out in the same
topological order with the same shapes and `ours.set_weights(keras_model.get_weights())` and
Keras' weight files work unchanged. Inner layers are named after the block and the branch they
belong to, with torchvision's branch names (`mixed0_branch5x5_2_conv`), which makes torchvision
and timm state dicts map one to one (see `anyshape.shapes.ConvSpec.torch_name`).

channels_first: TensorFlow's CPU kernels have no NCHW convolution, which is why
keras.applications' channels_first model builds and then fails at predict. Here a
channels_first model transposes its input to NHWC once, computes in channels_last, and returns
its outputs in NCHW; every backend runs it and its outputs equal the channels_last model's on
the transposed input. The named inner layers (mixed0 ... mixed10) hold NHWC maps.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import keras
from keras import layers

from anyshape import shapes
from anyshape.shapes import AUX_BLOCK, AUX_CONVS, BLOCKS, STEM, ConvSpec, InvalidInputShape

__all__ = ["InceptionV3", "InvalidInputShape"]

log = logging.getLogger("anyshape")
_CL = "channels_last"


def _conv_bn(x, spec: ConvSpec, bn_scale: bool):
    """Conv (no bias) + BatchNorm + ReLU: Keras' `conv2d_bn`, torchvision's BasicConv2d."""
    x = layers.Conv2D(
        spec.filters,
        spec.kernel,
        strides=spec.strides,
        padding=spec.padding,
        use_bias=False,
        data_format=_CL,
        name=f"{spec.name}_conv",
    )(x)
    x = layers.BatchNormalization(axis=-1, epsilon=shapes.BN_EPSILON, scale=bn_scale, name=f"{spec.name}_bn")(x)
    return layers.Activation("relu", name=f"{spec.name}_relu")(x)


def _avg_pool_3x3(x, name: str, count_include_pad: bool):
    """The 3x3 stride-1 average pool of the pool branches (`name`: the branch's layer prefix).

    Keras (and TF-slim, where the weights come from) divides by the number of real pixels in
    the window ('same' padding excludes padded cells). torchvision and timm pad with zeros and
    always divide by 9 (`F.avg_pool2d(x, 3, 1, 1)`, count_include_pad defaults to True in
    torch): the two differ on the border pixels only, and exact weight conversion needs each
    model run with the semantics it was trained with.
    """
    if not count_include_pad:
        return layers.AveragePooling2D(3, strides=1, padding="same", data_format=_CL, name=f"{name}_avg")(x)
    x = layers.ZeroPadding2D(1, data_format=_CL, name=f"{name}_pad")(x)
    return layers.AveragePooling2D(3, strides=1, padding="valid", data_format=_CL, name=f"{name}_avg")(x)


def _max_pool_3x3_s2(x, name: str):
    return layers.MaxPooling2D(3, strides=2, padding="valid", data_format=_CL, name=name)(x)


def _branch(x, block: shapes.BlockSpec, branch: shapes.BranchSpec, bn_scale: bool, count_include_pad: bool):
    """One branch as its spec wires it: pool, chain of conv units, split concatenated."""
    name = f"{block.name}_{branch.name}"
    if branch.pool == "max":
        x = _max_pool_3x3_s2(x, f"{name}_max")
    elif branch.pool == "avg":
        x = _avg_pool_3x3(x, name, count_include_pad)
    for spec in branch.convs:
        x = _conv_bn(x, spec, bn_scale)
    if branch.split:
        x = layers.Concatenate(axis=-1, name=branch.split_name)([_conv_bn(x, s, bn_scale) for s in branch.split])
    return x


def _block(x, block: shapes.BlockSpec, bn_scale: bool, count_include_pad: bool):
    """One Inception block: its branches concatenated in the spec's (= Keras' and torchvision's) order."""
    parts = [_branch(x, block, branch, bn_scale, count_include_pad) for branch in block.branches]
    return layers.Concatenate(axis=-1, name=block.name)(parts)


def _global_pool(x, pooling: str):
    """Global pooling to one vector per image; names as keras.applications / timm."""
    if pooling == "avg":
        return layers.GlobalAveragePooling2D(data_format=_CL, name="avg_pool")(x)
    if pooling == "max":
        return layers.GlobalMaxPooling2D(data_format=_CL, name="max_pool")(x)
    avg = layers.GlobalAveragePooling2D(data_format=_CL, name=f"{pooling}_pool_avg")(x)
    mx = layers.GlobalMaxPooling2D(data_format=_CL, name=f"{pooling}_pool_max")(x)
    if pooling == "avgmax":  # timm's 'avgmax': 0.5 * (avg + max)
        return layers.Average(name="avgmax_pool")([avg, mx])
    return layers.Concatenate(axis=-1, name="catavgmax_pool")([avg, mx])  # timm's 'catavgmax'


def _resolve_input_shape(input_shape, input_tensor, include_top, data_format):
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
        input_shape = tuple(input_shape)
        if tensor_shape is not None and input_shape != tensor_shape:
            raise ValueError(
                f"input_shape={input_shape} conflicts with input_tensor of shape "
                f"{tuple(input_tensor.shape)}: give one of them, or make them agree "
                f"(input_shape excludes the batch axis: {tensor_shape})"
            )
        return input_shape
    if tensor_shape is not None:
        return tensor_shape
    # keras.applications' defaults (so `InceptionV3()` is the same model): 299 x 299 with the
    # top, any size without. Pass input_shape=(None, None, C) for a free-size classifier.
    size = 299 if include_top else None
    return (3, size, size) if data_format == "channels_first" else (size, size, 3)


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
) -> keras.Model:
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
    data_format = data_format or keras.config.image_data_format()
    if data_format not in shapes.DATA_FORMATS:
        raise ValueError(f"data_format must be 'channels_last' or 'channels_first', got {data_format!r}")
    if weights is not None and not isinstance(weights, str) and not hasattr(weights, "__fspath__"):
        raise ValueError(f"weights must be None, a weight set name or a file path, got {weights!r}")
    weight_set = None
    if weights is not None:
        from anyshape.weights import resolve

        weight_set = resolve(weights, preprocessing)  # raises for unknown names / missing files
    if count_include_pad is None:
        count_include_pad = bool(weight_set and weight_set.count_include_pad)
    if bn_scale is None:
        bn_scale = bool(weight_set and weight_set.bn_scale)

    input_shape = _resolve_input_shape(input_shape, input_tensor, include_top, data_format)
    report = shapes.explain(
        input_shape,
        include_top=include_top,
        pooling=pooling,
        aux_logits=aux_logits,
        classes=classes,
        data_format=data_format,
        bn_scale=bn_scale,
        dropout_rate=dropout_rate,
    ).raise_if_invalid()

    inputs, outputs = _build_graph(
        input_tensor,
        input_shape,
        include_top,
        pooling,
        classes,
        classifier_activation,
        data_format,
        dropout_rate,
        aux_logits,
        count_include_pad,
        bn_scale,
    )
    model = keras.Model(inputs, outputs, name=name)
    model.anyshape_report = report
    if weight_set is not None:
        from anyshape.weights import load_weight_set

        load_weight_set(model, weight_set, report=report, **weights_options)
    elif weights_options or preprocessing is not None:
        given = sorted(weights_options) + (["preprocessing"] if preprocessing is not None else [])
        raise ValueError(f"{given} only apply with pretrained weights (weights=None given)")
    return model


def _build_graph(
    input_tensor,
    input_shape,
    include_top,
    pooling,
    classes,
    classifier_activation,
    data_format,
    dropout_rate,
    aux_logits,
    count_include_pad,
    bn_scale,
):
    """Create the layers and return (inputs, outputs). No validation: `InceptionV3` checks the
    shape with the shape engine first (the tests call this directly to confirm the engine's
    verdicts against Keras' own shape inference)."""
    if input_tensor is None:
        img_input = layers.Input(shape=input_shape, name="input_layer")
        inputs = img_input
    elif keras.backend.is_keras_tensor(input_tensor):
        img_input = input_tensor
        inputs = keras.utils.get_source_inputs(input_tensor)
    else:
        img_input = layers.Input(tensor=input_tensor, shape=input_shape, name="input_layer")
        inputs = img_input

    x = img_input
    if data_format == "channels_first":
        x = layers.Permute((2, 3, 1), name="to_channels_last")(x)

    for item in STEM:
        x = _max_pool_3x3_s2(x, item) if isinstance(item, str) else _conv_bn(x, item, bn_scale)
    aux_input = None
    for block in BLOCKS:
        x = _block(x, block, bn_scale, count_include_pad)
        if block.name == AUX_BLOCK:
            aux_input = x

    if include_top:
        x = _global_pool(x, pooling or "avg")
        if dropout_rate:
            x = layers.Dropout(dropout_rate, name="dropout")(x)
        x = layers.Dense(classes, activation=classifier_activation, name="predictions")(x)
        outputs = x
        if aux_logits:
            a = layers.AveragePooling2D(5, strides=3, padding="valid", data_format=_CL, name="aux_pool")(aux_input)
            for spec in AUX_CONVS:
                a = _conv_bn(a, spec, bn_scale)
            a = layers.GlobalAveragePooling2D(data_format=_CL, name="aux_avg_pool")(a)
            a = layers.Dense(classes, activation=classifier_activation, name="aux_predictions")(a)
            outputs = [x, a]
    else:
        if pooling is not None:
            x = _global_pool(x, pooling)
        elif data_format == "channels_first":
            x = layers.Permute((3, 1, 2), name="to_channels_first")(x)
        outputs = x

    return inputs, outputs
