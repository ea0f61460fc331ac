"""EfficientNetV2 B0 ... B3, S, M, L (Tan & Le 2021), as keras.applications builds them, at any size.

Keras' network (keras/src/applications/efficientnet_v2.py) already pads every window "same", so it
takes any H, W >= 1 and its free-size model is right at every size; here it is the same network
written in anyshape's vocabulary, layer for layer (the same weighted layers in the same order, with
Keras' names: stem_conv, block1a_project_conv, ..., block4a_dwconv2, top_conv, predictions), for the
registry, `explain` and the things Keras refuses (the top at any size, channels_first everywhere).

The early stages are FusedMBConv blocks (one full conv instead of expand + depthwise), the later
ones MBConv with squeeze-and-excitation; the tables are Keras' DEFAULT_BLOCKS_ARGS (`BLOCKS_ARGS`,
B0 ... B3 share one: Keras lists four identical copies) and each member scales them.

Preprocessing is in the graph when `include_preprocessing` (Keras' argument, default True): the
B members normalise as EfficientNet (V1) does, Rescaling(1/255) then a Normalization with ImageNet's
mean and variance as constants, when the input has as many channels as those constants (Keras:
"b" variants with 3 channels); otherwise, and for S, M and L, Rescaling(1/128, offset -1). The
constants are Config fields (`normalization_mean`, `normalization_variance`; () for none), so a
weight set adapted to other channels can keep the normalisation it was trained with by giving one
value per channel. The 128 is one too (`rescaling_divisor`): timm's TF ports of these networks
(tf_efficientnetv2_*) take mean = std = 0.5 on [0, 1] pixels, i.e. x / 127.5 - 1, so their weight
sets build with `rescaling_divisor=127.5` (anyshape.weights.torch_sets). keras.applications' `preprocess_input` is a pass-through ("raw").

Keras' stochastic depth here passes its `survival_probability` (drop_connect_rate * block index /
the unscaled block count) as the Dropout *rate*; it is kept as Keras builds it (training only).
"""

from __future__ import annotations

from dataclasses import dataclass

from anyshape.archs.base import KERAS_ARGS, Arch, ArchConfig
from anyshape.archs.efficientnet import (
    Block,
    BlockArgs,
    conv_bn_act,
    expand_blocks,
    feature_points,
    mbconv,
    residual,
    scaling_problems,
    squeeze_excite,
    top,
)

__all__ = ["EfficientNetV2Config", "BLOCKS_ARGS", "IMAGENET_MEAN", "IMAGENET_VARIANCE", "network", "plan", "ARCHS"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_VARIANCE = (0.229**2, 0.224**2, 0.225**2)

_B = (
    BlockArgs(3, 1, 32, 16, 1, 1, 0.0, 1),
    BlockArgs(3, 2, 16, 32, 4, 2, 0.0, 1),
    BlockArgs(3, 2, 32, 48, 4, 2, 0.0, 1),
    BlockArgs(3, 3, 48, 96, 4, 2, 0.25, 0),
    BlockArgs(3, 5, 96, 112, 6, 1, 0.25, 0),
    BlockArgs(3, 8, 112, 192, 6, 2, 0.25, 0),
)
BLOCKS_ARGS = {
    "b": _B,
    "s": (
        BlockArgs(3, 2, 24, 24, 1, 1, 0.0, 1),
        BlockArgs(3, 4, 24, 48, 4, 2, 0.0, 1),
        BlockArgs(3, 4, 48, 64, 4, 2, 0.0, 1),
        BlockArgs(3, 6, 64, 128, 4, 2, 0.25, 0),
        BlockArgs(3, 9, 128, 160, 6, 1, 0.25, 0),
        BlockArgs(3, 15, 160, 256, 6, 2, 0.25, 0),
    ),
    "m": (
        BlockArgs(3, 3, 24, 24, 1, 1, 0.0, 1),
        BlockArgs(3, 5, 24, 48, 4, 2, 0.0, 1),
        BlockArgs(3, 5, 48, 80, 4, 2, 0.0, 1),
        BlockArgs(3, 7, 80, 160, 4, 2, 0.25, 0),
        BlockArgs(3, 14, 160, 176, 6, 1, 0.25, 0),
        BlockArgs(3, 18, 176, 304, 6, 2, 0.25, 0),
        BlockArgs(3, 5, 304, 512, 6, 1, 0.25, 0),
    ),
    "l": (
        BlockArgs(3, 4, 32, 32, 1, 1, 0.0, 1),
        BlockArgs(3, 7, 32, 64, 4, 2, 0.0, 1),
        BlockArgs(3, 7, 64, 96, 4, 2, 0.0, 1),
        BlockArgs(3, 10, 96, 192, 4, 2, 0.25, 0),
        BlockArgs(3, 19, 192, 224, 6, 1, 0.25, 0),
        BlockArgs(3, 25, 224, 384, 6, 2, 0.25, 0),
        BlockArgs(3, 7, 384, 640, 6, 1, 0.25, 0),
    ),
}
"""Keras' DEFAULT_BLOCKS_ARGS: "b" for efficientnetv2-b0 ... b3, then -s, -m, -l (conv_type 1: fused)."""


@dataclass(frozen=True)
class EfficientNetV2Config(ArchConfig):
    """EfficientNetV2's build arguments: Keras' constructor arguments (include_preprocessing) and the
    arguments of Keras' `EfficientNetV2()` its members set (`ARCHS` holds each member's values)."""

    blocks_args: str = "b"  # which table of BLOCKS_ARGS
    width_coefficient: float = 1.0
    depth_coefficient: float = 1.0
    drop_connect_rate: float = 0.2  # stochastic depth (training only)
    depth_divisor: int = 8
    min_depth: int = 8
    bn_momentum: float = 0.9
    dropout_rate: float = 0.2  # before the classifier (training only)
    include_preprocessing: bool = True
    # the Normalization after Rescaling(1/255), one value per input channel; with another channel
    # count (or none given) the input is scaled to [-1, 1] instead, as Keras does
    normalization_mean: tuple[float, ...] = IMAGENET_MEAN
    normalization_variance: tuple[float, ...] = IMAGENET_VARIANCE
    # the [-1, 1] path's Rescaling(1 / rescaling_divisor, offset -1): Keras' 128, timm's ports 127.5
    rescaling_divisor: float = 128.0

    def problems(self) -> list[str]:
        out = super().problems() + scaling_problems(self)
        if self.blocks_args not in BLOCKS_ARGS:
            out.append(f"blocks_args must be one of {sorted(BLOCKS_ARGS)}, got {self.blocks_args!r}")
        if isinstance(self.min_depth, bool) or not isinstance(self.min_depth, int) or self.min_depth < 0:
            out.append(f"min_depth must be a non-negative integer, got {self.min_depth!r}")
        if not isinstance(self.bn_momentum, (int, float)) or not 0.0 <= self.bn_momentum <= 1.0:
            out.append(f"bn_momentum must be in [0, 1], got {self.bn_momentum!r}")
        if len(self.normalization_mean) != len(self.normalization_variance):
            out.append(
                "normalization_mean and normalization_variance must have one value per channel each, got "
                f"{len(self.normalization_mean)} and {len(self.normalization_variance)}"
            )
        divisor = self.rescaling_divisor
        if isinstance(divisor, bool) or not isinstance(divisor, (int, float)) or divisor <= 0:
            out.append(f"rescaling_divisor must be a positive number, got {divisor!r}")
        if any(not isinstance(v, (int, float)) or v <= 0 for v in self.normalization_variance):
            out.append(f"normalization_variance must hold positive numbers, got {self.normalization_variance!r}")
        return out


def round_filters(filters: int, cfg: EfficientNetV2Config) -> int:
    """Keras' EfficientNetV2 round_filters: scaled, rounded to a multiple of depth_divisor, at least
    min_depth (no 10% rule, unlike EfficientNet's)."""
    scaled = filters * cfg.width_coefficient
    divisor = cfg.depth_divisor
    return int(max(cfg.min_depth or divisor, int(scaled + divisor / 2) // divisor * divisor))


def plan(cfg: EfficientNetV2Config) -> list[Block]:
    """The blocks Keras' EfficientNetV2() builds with this Config, in order."""
    table = BLOCKS_ARGS[cfg.blocks_args]
    total = float(sum(a.repeats for a in table))  # Keras divides by the unscaled count
    return expand_blocks(table, cfg, total, round_filters)


def fused_mbconv(net, inputs, block: Block, momentum: float):
    """Keras' FusedMBConvBlock: a full k x k conv expands (or, with expand ratio 1, is the whole block)."""
    name = block.name
    filters = block.filters_in * block.expand_ratio
    x = inputs
    if block.expand_ratio != 1:
        x = conv_bn_act(net, x, filters, block.kernel, block.strides, f"{name}_expand", momentum=momentum)
    if 0 < block.se_ratio <= 1:
        x = squeeze_excite(net, x, block, filters)
    expanded = block.expand_ratio != 1
    kernel, strides = (1, 1) if expanded else (block.kernel, block.strides)
    x = conv_bn_act(net, x, block.filters_out, kernel, strides, f"{name}_project", activation=False, momentum=momentum)
    if not expanded:
        x = net.activation(x, "swish", name=f"{name}_project_activation")
    return residual(net, x, inputs, block)


def network(net, cfg: EfficientNetV2Config, x):
    """EfficientNetV2 on `x` (NHWC, pixels in [0, 255] with include_preprocessing)."""
    if cfg.include_preprocessing:
        mean, variance = cfg.normalization_mean, cfg.normalization_variance
        normalise = bool(mean) and len(mean) == x.shape[-1]
        with net.stage("preprocessing", "/ 255, normalise" if normalise else "to [-1, 1]"):
            if normalise:
                x = net.rescaling(x, 1.0 / 255, name="rescaling")
                x = net.normalization(x, mean=list(mean), variance=list(variance), name="normalization")
            else:
                x = net.rescaling(x, 1.0 / cfg.rescaling_divisor, -1, name="rescaling")
    blocks = plan(cfg)
    stem = round_filters(BLOCKS_ARGS[cfg.blocks_args][0].filters_in, cfg)
    with net.stage("stem", f"3x3 conv {stem}, stride 2"):
        x = conv_bn_act(net, x, stem, 3, 2, "stem", momentum=cfg.bn_momentum)
    for block in blocks:
        with net.stage(block.name, block.what):
            if block.fused:
                x = fused_mbconv(net, x, block, cfg.bn_momentum)
            else:
                x = mbconv(net, x, block, momentum=cfg.bn_momentum, depthwise_name="dwconv2")
    return top(net, cfg, x, round_filters(1280, cfg), cfg.bn_momentum)


# --------------------------------------------------------------------------------------------
# the records

# (Keras' suffix, blocks_args, width_coefficient, depth_coefficient, default size, parameters with the top)
MEMBERS = (
    ("b0", "b", 1.0, 1.0, 224, "7.2"),
    ("b1", "b", 1.0, 1.1, 240, "8.2"),
    ("b2", "b", 1.1, 1.2, 260, "10.2"),
    ("b3", "b", 1.2, 1.4, 300, "14.5"),
    ("s", "s", 1.0, 1.0, 384, "21.6"),
    ("m", "m", 1.0, 1.0, 480, "54.4"),
    ("l", "l", 1.0, 1.0, 480, "119.0"),
)


def _arch(member: str, blocks_args: str, width: float, depth: float, size: int, params: str) -> Arch:
    defaults: dict = {"blocks_args": blocks_args, "width_coefficient": width, "depth_coefficient": depth}
    if blocks_args != "b":  # Keras normalises only the b variants' input; -s, -m, -l scale to [-1, 1]
        defaults.update(normalization_mean=(), normalization_variance=())
    blocks = plan(EfficientNetV2Config(**defaults))
    return Arch(
        name=f"efficientnet_v2_{member}",
        keras_name=f"EfficientNetV2{member.upper()}",
        family="efficientnet_v2",
        config_class=EfficientNetV2Config,
        network=network,
        defaults=defaults,
        default_size=size,
        keras_min_size=32,  # efficientnet_v2.py: imagenet_utils.obtain_input_shape(min_size=32)
        first_conv="stem_conv",
        input_layers=("rescaling", "normalization") if blocks_args == "b" else ("rescaling",),
        classifier=("predictions",),
        blocks=("stem_activation", *(b.output for b in blocks), "top_activation"),
        feature_points=feature_points(blocks),
        preprocessing="raw",
        keras_args=(
            *KERAS_ARGS,
            ("include_preprocessing", True),
            ("name", f"efficientnetv2-{member}"),
        ),
        description=f"EfficientNetV2-{member.upper()} (Tan & Le 2021): FusedMBConv + MBConv, {params} M parameters",
    )


ARCHS = tuple(_arch(*member) for member in MEMBERS)
