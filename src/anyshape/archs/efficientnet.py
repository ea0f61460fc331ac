"""EfficientNet B0 ... B7 (Tan & Le 2019), as keras.applications builds them, at any input shape.

Every window is padded, so the network takes any H, W >= 1: the convolutions are "same" (1x1, the
stem's and the blocks' strided ones included) and the head is a global average pool. The network
is Keras' (keras/src/applications/efficientnet.py) layer for layer: the same weighted layers in the
same order with the same shapes and names (block1a_expand_conv ... top_conv, predictions), so
`ours.set_weights(keras_model.get_weights())` and Keras' weight files work unchanged.

One change of form, none of arithmetic: Keras pads the stem conv and every stride-2 depthwise conv
with `ZeroPadding2D(imagenet_utils.correct_pad(x, k))` and then convolves "valid". correct_pad
reads the static input size and pads (k//2 - 1, k//2) for an even size, (k//2, k//2) for an odd
one, which is exactly what a strided "same" convolution pads (total max((ceil(n/2) - 1) * 2 + k - n,
0), the smaller half first): so `padding="same"` computes the same map at every size Keras builds.
On Keras' free-size path correct_pad cannot read the size and assumes an even one, so Keras' free-
size model is wrong at odd sizes; a "same" convolution pads by the size it gets at run time, and a
free-size model here equals a fixed-size one. The ZeroPadding2D layers (weightless) are gone.

The input preprocessing is in the graph (keras.applications' `preprocess_input` for EfficientNet is
a pass-through: the model takes pixels in [0, 255]): Rescaling(1/255) ("rescaling"), then a
Normalization whose mean and variance are weights ("normalization", with Keras' sample count;
Keras' published files set them to ImageNet's), and, only in Keras' `weights="imagenet"` model, a
third per-channel Rescaling by 1/sqrt(stddev) (tensorflow#49930: the original implementation divided
by the variance, not the standard deviation). Which structure is built is the Config's
`stddev_rescaling`: () (the default) builds Keras' `weights=None` structure; the stddevs (Keras'
IMAGENET_STDDEV_RGB) build the `weights="imagenet"` one, and a weight set that needs it says so in
its build overrides. The extra layer has no weights, so either structure loads either file. These
first two layers are the record's `input_layers`; the third, built only with `stddev_rescaling`, follows
the channel count by itself (`per_channel`).

Keras' Normalization computes with a copy of its mean and variance, made when it is built and by
its `finalize_state()`: Keras' weight-file loaders call that after assigning the variables,
`set_weights()` does not, so after `model.set_weights(...)` call `finalize_state()` on the
"normalization" layer (on a keras.applications model too) or it keeps normalising with the old values.

`drop_connect_rate`'s stochastic depth is Keras' Dropout with noise_shape (None, 1, 1, 1) before
each residual add (rate growing linearly from 0 over the blocks; none in the first block), and
`dropout_rate` the classifier's "top_dropout"; both only act in training.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from anyshape.archs.base import KERAS_ARGS, Arch, ArchConfig, global_pool

__all__ = ["EfficientNetConfig", "Block", "BLOCKS_ARGS", "IMAGENET_STDDEV_RGB", "network", "plan", "ARCHS"]

IMAGENET_STDDEV_RGB = (0.229, 0.224, 0.225)  # what Keras' weights="imagenet" model rescales by (see above)


@dataclass(frozen=True)
class BlockArgs:
    """One row of Keras' DEFAULT_BLOCKS_ARGS: a stage of `repeats` inverted-residual blocks at B0's
    widths (`conv_type`: EfficientNetV2's FusedMBConv (1) or MBConv (0); EfficientNet's are MBConv)."""

    kernel: int
    repeats: int
    filters_in: int
    filters_out: int
    expand_ratio: int
    strides: int
    se_ratio: float
    conv_type: int = 0


BLOCKS_ARGS = (
    BlockArgs(3, 1, 32, 16, 1, 1, 0.25),
    BlockArgs(3, 2, 16, 24, 6, 2, 0.25),
    BlockArgs(5, 2, 24, 40, 6, 2, 0.25),
    BlockArgs(3, 3, 40, 80, 6, 2, 0.25),
    BlockArgs(5, 3, 80, 112, 6, 1, 0.25),
    BlockArgs(5, 4, 112, 192, 6, 2, 0.25),
    BlockArgs(3, 1, 192, 320, 6, 1, 0.25),
)
"""Keras' DEFAULT_BLOCKS_ARGS (id_skip is True in every row)."""


@dataclass(frozen=True)
class EfficientNetConfig(ArchConfig):
    """EfficientNet's build arguments. The scaling fields are the arguments of Keras' `EfficientNet()`
    that its B0 ... B7 constructors set (`ARCHS` holds each member's values)."""

    width_coefficient: float = 1.0  # channels scale (rounded to multiples of depth_divisor)
    depth_coefficient: float = 1.0  # blocks per stage scale (rounded up)
    drop_connect_rate: float = 0.2  # stochastic depth of the last block (training only)
    depth_divisor: int = 8
    dropout_rate: float = 0.2  # before the classifier (training only)
    # per-channel stddevs the normalised input is divided by once more, as Keras' weights="imagenet"
    # model does (IMAGENET_STDDEV_RGB); () for no such layer (Keras' weights=None structure). With
    # another channel count than values, every channel gets their mean.
    stddev_rescaling: tuple[float, ...] = ()

    def problems(self) -> list[str]:
        out = super().problems()
        out += scaling_problems(self)
        if any(not isinstance(s, (int, float)) or s <= 0 for s in self.stddev_rescaling):
            out.append(f"stddev_rescaling must hold positive numbers, got {self.stddev_rescaling!r}")
        return out


def scaling_problems(cfg) -> list[str]:
    """The scaling fields EfficientNet and EfficientNetV2 share, checked in their names."""
    out = []
    for key in ("width_coefficient", "depth_coefficient"):
        value = getattr(cfg, key)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
            out.append(f"{key} must be a positive number, got {value!r}")
    rate = cfg.drop_connect_rate
    if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not 0.0 <= rate < 1.0:
        out.append(f"drop_connect_rate must be in [0, 1), got {rate!r}")
    divisor = cfg.depth_divisor
    if isinstance(divisor, bool) or not isinstance(divisor, int) or divisor < 1:
        out.append(f"depth_divisor must be a positive integer, got {divisor!r}")
    return out


@dataclass(frozen=True)
class Block:
    """One block of the network as built: Keras' name ("block2a"), its widths and its drop rate."""

    name: str
    kernel: int
    strides: int
    filters_in: int
    filters_out: int
    expand_ratio: int
    se_ratio: float
    drop_rate: float  # stochastic depth (Dropout with noise_shape (None, 1, 1, 1)), 0 for none
    fused: bool = False  # EfficientNetV2's FusedMBConv

    @property
    def residual(self) -> bool:
        return self.strides == 1 and self.filters_in == self.filters_out

    @property
    def output(self) -> str:
        """The block's last layer."""
        if self.residual:
            return f"{self.name}_add"
        if self.fused and self.expand_ratio == 1:
            return f"{self.name}_project_activation"
        return f"{self.name}_project_bn"

    @property
    def what(self) -> str:
        text = f"{'FusedMBConv' if self.fused else 'MBConv'}{self.expand_ratio} {self.kernel}x{self.kernel}"
        if self.strides > 1:
            text += f", stride {self.strides}"
        if 0 < self.se_ratio <= 1:
            text += ", SE"
        return text + (", residual" if self.residual else "")


def round_filters(filters: int, cfg: EfficientNetConfig) -> int:
    """Keras' round_filters: scaled, rounded to a multiple of depth_divisor, never 10% below."""
    scaled = filters * cfg.width_coefficient
    divisor = cfg.depth_divisor
    new_filters = max(divisor, int(scaled + divisor / 2) // divisor * divisor)
    if new_filters < 0.9 * scaled:
        new_filters += divisor
    return int(new_filters)


def round_repeats(repeats: int, depth_coefficient: float) -> int:
    return int(math.ceil(depth_coefficient * repeats))


def plan(cfg: EfficientNetConfig) -> list[Block]:
    """The blocks Keras' EfficientNet() builds with this Config, in order."""
    total = float(sum(round_repeats(a.repeats, cfg.depth_coefficient) for a in BLOCKS_ARGS))
    return expand_blocks(BLOCKS_ARGS, cfg, total, round_filters)


def expand_blocks(table, cfg, total: float, widths) -> list[Block]:
    """Keras' block loop, EfficientNet's and EfficientNetV2's alike: each row of `table` repeated
    `round_repeats` times; a stage's first block takes its strides and input width (`widths`: the
    network's round_filters); the drop rate grows with the block's index over `total`."""
    out: list[Block] = []
    for i, a in enumerate(table):
        filters_in, filters_out = widths(a.filters_in, cfg), widths(a.filters_out, cfg)
        for j in range(round_repeats(a.repeats, cfg.depth_coefficient)):
            out.append(
                Block(
                    f"block{i + 1}{chr(j + 97)}",
                    a.kernel,
                    a.strides if j == 0 else 1,
                    filters_in if j == 0 else filters_out,
                    filters_out,
                    a.expand_ratio,
                    a.se_ratio,
                    cfg.drop_connect_rate * len(out) / total,
                    fused=a.conv_type == 1,
                )
            )
    return out


def feature_points(blocks: list[Block]) -> tuple[str, ...]:
    """The last block's output at each stride (as timm's feature_info: 1/2 ... 1/32)."""
    out = []
    for block, after in zip(blocks, blocks[1:] + [None]):
        if after is None or after.strides > 1:
            out.append(block.output)
    return tuple(out)


# --------------------------------------------------------------------------------------------
# the network


def conv_bn_act(net, x, filters: int, kernel: int, strides: int, name: str, *, activation=True, momentum=0.99):
    """Conv (no bias, "same") + BatchNorm (+ swish): `name`_conv, `name`_bn, `name`_activation."""
    x = net.conv(x, filters, kernel, strides, "same", use_bias=False, name=f"{name}_conv")
    x = net.bn(x, momentum=momentum, name=f"{name}_bn")
    return net.activation(x, "swish", name=f"{name}_activation") if activation else x


def squeeze_excite(net, x, block: Block, filters: int):
    """Squeeze and excitation, as Keras: channel weights from the global average through two 1x1
    convs (swish, sigmoid), multiplied in."""
    name = block.name
    se = net.global_pool(x, "avg", name=f"{name}_se_squeeze")
    se = net.reshape(se, (1, 1, filters), name=f"{name}_se_reshape")
    filters_se = max(1, int(block.filters_in * block.se_ratio))
    se = net.conv(se, filters_se, 1, 1, "same", activation="swish", name=f"{name}_se_reduce")
    se = net.conv(se, filters, 1, 1, "same", activation="sigmoid", name=f"{name}_se_expand")
    return net.multiply([x, se], name=f"{name}_se_excite")


def residual(net, x, inputs, block: Block):
    """The skip connection of a block that keeps its size, with its stochastic depth."""
    if not block.residual:
        return x
    if block.drop_rate:
        x = net.dropout(x, block.drop_rate, noise_shape=(None, 1, 1, 1), name=f"{block.name}_drop")
    return net.add([x, inputs], name=f"{block.name}_add")


def mbconv(net, inputs, block: Block, *, momentum: float = 0.99, depthwise_name: str = "dwconv"):
    """The inverted residual block (Keras' `block`; EfficientNetV2's MBConvBlock names its
    depthwise conv "dwconv2" and uses another BatchNorm momentum)."""
    name = block.name
    filters = block.filters_in * block.expand_ratio
    x = inputs
    if block.expand_ratio != 1:
        x = conv_bn_act(net, x, filters, 1, 1, f"{name}_expand", momentum=momentum)
    x = net.depthwise(x, block.kernel, block.strides, "same", use_bias=False, name=f"{name}_{depthwise_name}")
    x = net.bn(x, momentum=momentum, name=f"{name}_bn")
    x = net.activation(x, "swish", name=f"{name}_activation")
    if 0 < block.se_ratio <= 1:
        x = squeeze_excite(net, x, block, filters)
    x = conv_bn_act(net, x, block.filters_out, 1, 1, f"{name}_project", activation=False, momentum=momentum)
    return residual(net, x, inputs, block)


def top(net, cfg: ArchConfig, x, filters: int, momentum: float = 0.99):
    """The 1x1 conv to the feature width (top_conv), then Keras' EfficientNet head: the global
    average pool, "top_dropout" and the classifier; without the top, `pooling` or the map."""
    with net.stage("top", f"1x1 conv {filters}"):
        x = conv_bn_act(net, x, filters, 1, 1, "top", momentum=momentum)
    if not cfg.include_top:
        return global_pool(net, x, cfg.pooling) if cfg.pooling is not None else x
    x = global_pool(net, x, cfg.pooling or "avg")
    if cfg.dropout_rate > 0:
        x = net.dropout(x, cfg.dropout_rate, name="top_dropout")
    return net.dense(x, cfg.classes, activation=cfg.classifier_activation, name="predictions")


def per_channel(values: tuple[float, ...], channels: int) -> list[float]:
    """`values` for `channels` channels: as they are when they are one per channel, else their mean
    for each (an input of another channel count than the values were made for)."""
    if len(values) == channels:
        return list(values)
    return [sum(values) / len(values)] * channels


def network(net, cfg: EfficientNetConfig, x):
    """EfficientNet on `x` (NHWC, pixels in [0, 255]): preprocessing, stem, blocks, top, head."""
    what = "/ 255, normalise" + (", / sqrt(stddev)" if cfg.stddev_rescaling else "")
    with net.stage("preprocessing", what):
        x = net.rescaling(x, 1.0 / 255.0, name="rescaling")
        x = net.normalization(x, name="normalization")
        if cfg.stddev_rescaling:
            stddevs = per_channel(cfg.stddev_rescaling, x.shape[-1])
            x = net.rescaling(x, [1.0 / math.sqrt(s) for s in stddevs], name="stddev_rescaling")
    stem = round_filters(32, cfg)
    with net.stage("stem", f"3x3 conv {stem}, stride 2"):
        x = conv_bn_act(net, x, stem, 3, 2, "stem")
    for block in plan(cfg):
        with net.stage(block.name, block.what):
            x = mbconv(net, x, block)
    return top(net, cfg, x, round_filters(1280, cfg))


# --------------------------------------------------------------------------------------------
# the records

# (width_coefficient, depth_coefficient, default size, dropout_rate): Keras' EfficientNetB0 ... B7
MEMBERS = {
    "b0": (1.0, 1.0, 224, 0.2),
    "b1": (1.0, 1.1, 240, 0.2),
    "b2": (1.1, 1.2, 260, 0.3),
    "b3": (1.2, 1.4, 300, 0.3),
    "b4": (1.4, 1.8, 380, 0.4),
    "b5": (1.6, 2.2, 456, 0.4),
    "b6": (1.8, 2.6, 528, 0.5),
    "b7": (2.0, 3.1, 600, 0.5),
}
PARAMS = {  # with the top, as anyshape.explain counts them (tests/test_family_efficientnet.py checks it)
    "b0": "5.3",
    "b1": "7.9",
    "b2": "9.2",
    "b3": "12.3",
    "b4": "19.5",
    "b5": "30.6",
    "b6": "43.3",
    "b7": "66.7",
}


def _arch(member: str) -> Arch:
    width, depth, size, dropout = MEMBERS[member]
    defaults = {"width_coefficient": width, "depth_coefficient": depth, "dropout_rate": dropout}
    blocks = plan(EfficientNetConfig(**defaults))  # type: ignore[arg-type]
    return Arch(
        name=f"efficientnet_{member}",
        keras_name=f"EfficientNet{member.upper()}",
        family="efficientnet",
        config_class=EfficientNetConfig,
        network=network,
        defaults=defaults,
        default_size=size,
        keras_min_size=32,  # efficientnet.py: imagenet_utils.obtain_input_shape(min_size=32)
        first_conv="stem_conv",
        input_layers=("rescaling", "normalization"),  # and stddev_rescaling when configured (see above)
        classifier=("predictions",),
        blocks=("stem_activation", *(b.output for b in blocks), "top_activation"),
        feature_points=feature_points(blocks),
        preprocessing="raw",
        keras_args=(*KERAS_ARGS, ("name", f"efficientnet{member}")),
        description=f"EfficientNet-{member.upper()} (Tan & Le 2019): compound-scaled MBConv + SE, "
        f"{PARAMS[member]} M parameters",
    )


ARCHS = tuple(_arch(member) for member in MEMBERS)
