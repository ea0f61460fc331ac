"""Inception-ResNet-v2 (Szegedy et al. 2017), as keras.applications builds it, at any input shape.

Why it takes any H, W >= 75: its stem is InceptionV3's (three unpadded 3x3 convolutions and two
3x3 stride-2 max pools) and its two reduction blocks (mixed_6a, mixed_7a) end in unpadded 3x3
stride-2 windows; every other layer is "same"-padded. Followed back from mixed_7a's windows, which
need 3 pixels, that gives 75, the minimum Keras enforces too; the shape tracer finds it from the
calls below. Below it, `explain` names the collapsing stage: keras.applications' free-size model
at 8 x 8 kills the process with a floating-point exception instead (issue 17).

Keras' residual scaling is a custom layer (`CustomScaleLayer`: inputs[0] + inputs[1] * scale,
keras/src/applications/inception_resnet_v2.py). Here it is two built-in layers that compute the
same floats: `Rescaling(scale)` (up * scale + 0.0, which changes no value) and `Add` (x + that), so
a saved model loads with plain Keras.

Layer names: Keras names only the block-level layers (mixed_5b, block35_1_mixed, block35_1_conv,
block35_1_ac, ..., conv_7b, avg_pool, predictions) and leaves its conv + BN + ReLU units
`conv2d_bn` unnamed (conv2d_57, batch_normalization_57, activation_57). Ours are named after the
block and timm's branch: `{block}_branch{i}[_{j}]` for the convolution, `_bn` and `_ac` after it,
as Keras' own named unit conv_7b. The stem units are named as InceptionV3's (`stem_1a_3x3` ...).
The weighted layers, their shapes and their order (which the graph decides:
keras.src.ops.function.map_graph sorts layers by depth) are Keras', so
`ours.set_weights(keras_model.get_weights())` and Keras' weight files work unchanged.

Two build options make it the same function as timm's `inception_resnet_v2` (the torch twin):
`bn_scale=True` (its BasicConv2d's BatchNorm2d has a gamma; Keras' has scale=False) and
`count_include_pad`, the semantics of mixed_5b's 3x3 average pool. timm's is
`nn.AvgPool2d(3, stride=1, padding=1, count_include_pad=False)` (timm/models/inception_resnet_v2.py,
Mixed_5b.branch3), i.e. Keras' "same" pooling, so the twin keeps the default False; True gives
PyTorch's default AvgPool2d (zeros padded, always / 9), as InceptionV3's torchvision twin needs.
"""

from __future__ import annotations

from dataclasses import dataclass

from anyshape.archs.base import KERAS_ARGS, Arch, ArchConfig, classifier_head

__all__ = ["InceptionResNetV2Config", "ARCHS"]

REPEATS = {"block35": (10, 0.17), "block17": (20, 0.1), "block8": (10, 0.2)}
"""Each residual block kind: how many in a row, and the scale of the residual (Keras' values; the
last block8 has scale 1.0 and no ReLU)."""


@dataclass(frozen=True)
class InceptionResNetV2Config(ArchConfig):
    """Inception-ResNet-v2's build arguments (keras.applications', and the torch twin's two)."""

    count_include_pad: bool = False  # True: mixed_5b's 3x3 average pool divides by 9 (zeros padded)
    bn_scale: bool = False  # True: BatchNorm has a gamma (timm's layout)


def _what(filters: int, kernel, strides: int, padding: str) -> str:
    kh, kw = (kernel, kernel) if isinstance(kernel, int) else kernel
    return f"{kh}x{kw} conv {filters}" + (f", stride {strides}" if strides > 1 else "") + f", {padding}"


def _unit(net, cfg: InceptionResNetV2Config, x, name: str, filters: int, kernel, strides=1, padding="same"):
    """Conv (no bias) + BatchNorm + ReLU: Keras' `conv2d_bn`, timm's BasicConv2d."""
    with net.stage(name, _what(filters, kernel, strides, padding)):
        x = net.conv(x, filters, kernel, strides, padding, use_bias=False, name=name)
        x = net.bn(x, scale=cfg.bn_scale, name=f"{name}_bn")
        return net.activation(x, "relu", name=f"{name}_ac")


def _chain(net, cfg, x, name: str, *units):
    """A branch of units (filters, kernel[, strides, padding]) named `{name}_0`, `{name}_1`, ...;
    a single unit is named `name` (timm: `branch0` is a BasicConv2d, `branch1` a Sequential)."""
    if len(units) == 1:
        return _unit(net, cfg, x, name, *units[0])
    for j, unit in enumerate(units):
        x = _unit(net, cfg, x, f"{name}_{j}", *unit)
    return x


def _max_pool(net, x, name: str):
    return net.max_pool(x, 3, 2, "valid", name=name)


def _mixed_5b(net, cfg, x):
    with net.stage("mixed_5b", "Inception A (35x35 at 299)"):
        b0 = _chain(net, cfg, x, "mixed_5b_branch0", (96, 1))
        b1 = _chain(net, cfg, x, "mixed_5b_branch1", (48, 1), (64, 5))
        b2 = _chain(net, cfg, x, "mixed_5b_branch2", (64, 1), (96, 3), (96, 3))
        if cfg.count_include_pad:  # zeros padded, always / 9 (PyTorch's default AvgPool2d)
            p = net.pad(x, 1, name="mixed_5b_branch3_pad")
            p = net.avg_pool(p, 3, 1, "valid", name="mixed_5b_branch3_pool")
        else:  # Keras' and timm's: / the number of real pixels
            p = net.avg_pool(x, 3, 1, "same", name="mixed_5b_branch3_pool")
        b3 = _unit(net, cfg, p, "mixed_5b_branch3_1", 64, 1)
        return net.concat([b0, b1, b2, b3], name="mixed_5b")


def _residual_block(net, cfg, x, kind: str, k: int, scale: float, relu: bool = True):
    """x + scale * conv1x1(concat(branches)), then ReLU: Keras' `inception_resnet_block`."""
    block = f"{kind}_{k}"
    what = {"block35": "Inception-ResNet A", "block17": "Inception-ResNet B", "block8": "Inception-ResNet C"}[kind]
    with net.stage(block, f"{what}, residual x {scale:g}" + ("" if relu else ", no ReLU")):
        if kind == "block35":
            branches = [
                _chain(net, cfg, x, f"{block}_branch0", (32, 1)),
                _chain(net, cfg, x, f"{block}_branch1", (32, 1), (32, 3)),
                _chain(net, cfg, x, f"{block}_branch2", (32, 1), (48, 3), (64, 3)),
            ]
        elif kind == "block17":
            branches = [
                _chain(net, cfg, x, f"{block}_branch0", (192, 1)),
                _chain(net, cfg, x, f"{block}_branch1", (128, 1), (160, (1, 7)), (192, (7, 1))),
            ]
        else:
            branches = [
                _chain(net, cfg, x, f"{block}_branch0", (192, 1)),
                _chain(net, cfg, x, f"{block}_branch1", (192, 1), (224, (1, 3)), (256, (3, 1))),
            ]
        mixed = net.concat(branches, name=f"{block}_mixed")
        up = net.conv(mixed, x.shape[-1], 1, 1, "same", use_bias=True, name=f"{block}_conv")
        up = net.rescaling(up, scale, name=f"{block}_scale")
        x = net.add([x, up], name=f"{block}_add")
        return net.activation(x, "relu", name=f"{block}_ac") if relu else x


def _mixed_6a(net, cfg, x):
    with net.stage("mixed_6a", "Reduction A, stride 2"):
        b0 = _chain(net, cfg, x, "mixed_6a_branch0", (384, 3, 2, "valid"))
        b1 = _chain(net, cfg, x, "mixed_6a_branch1", (256, 1), (256, 3), (384, 3, 2, "valid"))
        b2 = _max_pool(net, x, "mixed_6a_branch2_pool")
        return net.concat([b0, b1, b2], name="mixed_6a")


def _mixed_7a(net, cfg, x):
    with net.stage("mixed_7a", "Reduction B, stride 2"):
        b0 = _chain(net, cfg, x, "mixed_7a_branch0", (256, 1), (384, 3, 2, "valid"))
        b1 = _chain(net, cfg, x, "mixed_7a_branch1", (256, 1), (288, 3, 2, "valid"))
        b2 = _chain(net, cfg, x, "mixed_7a_branch2", (256, 1), (288, 3), (320, 3, 2, "valid"))
        b3 = _max_pool(net, x, "mixed_7a_branch3_pool")
        return net.concat([b0, b1, b2, b3], name="mixed_7a")


def _repeat(net, cfg, x, kind: str):
    count, scale = REPEATS[kind]
    for k in range(1, count + 1):
        last = kind == "block8" and k == count
        x = _residual_block(net, cfg, x, kind, k, 1.0 if last else scale, relu=not last)
    return x


def network(net, cfg: InceptionResNetV2Config, x):
    """Inception-ResNet-v2 on `x` (NHWC): keras/src/applications/inception_resnet_v2.py's layers."""
    x = _unit(net, cfg, x, "stem_1a_3x3", 32, 3, 2, "valid")
    x = _unit(net, cfg, x, "stem_2a_3x3", 32, 3, 1, "valid")
    x = _unit(net, cfg, x, "stem_2b_3x3", 64, 3)
    with net.stage("stem_pool1", "3x3 max pool, stride 2, valid"):
        x = _max_pool(net, x, "stem_pool1")
    x = _unit(net, cfg, x, "stem_3b_1x1", 80, 1, 1, "valid")
    x = _unit(net, cfg, x, "stem_4a_3x3", 192, 3, 1, "valid")
    with net.stage("stem_pool2", "3x3 max pool, stride 2, valid"):
        x = _max_pool(net, x, "stem_pool2")
    x = _mixed_5b(net, cfg, x)
    x = _repeat(net, cfg, x, "block35")
    x = _mixed_6a(net, cfg, x)
    x = _repeat(net, cfg, x, "block17")
    x = _mixed_7a(net, cfg, x)
    x = _repeat(net, cfg, x, "block8")
    x = _unit(net, cfg, x, "conv_7b", 1536, 1)
    return classifier_head(net, cfg, x)


def _block_outputs(kind: str) -> list[str]:
    count, _ = REPEATS[kind]
    return [f"{kind}_{k}_add" if kind == "block8" and k == count else f"{kind}_{k}_ac" for k in range(1, count + 1)]


BLOCKS = (
    "mixed_5b",
    *_block_outputs("block35"),
    "mixed_6a",
    *_block_outputs("block17"),
    "mixed_7a",
    *_block_outputs("block8"),
    "conv_7b_ac",
)

ARCHS = (
    Arch(
        name="inception_resnet_v2",
        keras_name="InceptionResNetV2",
        family="inception_resnet_v2",
        config_class=InceptionResNetV2Config,
        network=network,
        default_size=299,
        keras_min_size=75,  # keras/src/applications/inception_resnet_v2.py: obtain_input_shape(min_size=75)
        first_conv="stem_1a_3x3",
        classifier=("predictions",),
        blocks=BLOCKS,
        # timm's feature_info: conv2d_2b, conv2d_4a, repeat, repeat_1, conv2d_7b (strides 2 ... 32)
        feature_points=("stem_2b_3x3_ac", "stem_4a_3x3_ac", "block35_10_ac", "block17_20_ac", "conv_7b_ac"),
        preprocessing="tf",  # keras.applications.inception_resnet_v2.preprocess_input: mode="tf"
        keras_args=(*KERAS_ARGS, ("name", "inception_resnet_v2")),
        description="Inception-ResNet-v2 (Szegedy et al. 2017): Inception blocks with scaled residuals, 55.9 M parameters",
    ),
)
