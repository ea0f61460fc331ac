"""NASNet-A (Zoph et al. 2018), Mobile and Large, as keras.applications builds them, at any input shape.

Why it takes any H, W >= 3 (Keras asks for 32): the stem's 3x3 stride-2 convolution is the only
unpadded window. Every later layer is a "same" convolution or pooling, or a stride-2 window that
turns a size n into ceil(n / 2), so nothing else can collapse; the shape tracer finds 3 from the
calls below.

keras.applications' NASNet (keras/src/applications/nasnet.py) does three things that only work at
the sizes it was written for; here each is replaced by an operation that computes the same floats
at those sizes and is correct at every size, also on the free-size path:

1. **The adjust block decides from static shapes.** Each cell reads two earlier outputs, `ip` (the
   previous cell's) and `p` (the one before). Keras' `_adjust_block` compares their widths
   (`p.shape[-2] != ip.shape[-2]`) to decide whether `p` must be halved (the factorised reduction)
   or only projected to the cell's width. With a free size both widths are None, it projects where
   it should halve, and the free-size model fails at every size (keras #16791, issue 17). The answer
   is structural: `p` is one resolution level above `ip` exactly when a reduction cell lies between
   them, which the cell sequence says. Here each map carries its level (how many stride-2 steps
   made it), and the adjust block halves `p` when its level is below `ip`'s. At every size Keras
   builds (>= 32) its width test gives the same answer, so the layers are the same.
2. **`correct_pad` + a "valid" stride-2 separable convolution** (reduction cells): correct_pad is
   TF "same" padding for a stride-2 window at both parities of a known size, and assumes an even
   size when it is unknown. A stride-2 "same" separable convolution computes the same sums at every
   size (the padding is zeros either way).
3. **`correct_pad` + "valid" stride-2 pools** on `h3`: Keras pools a zero-padded map, so its max
   pool sees the padded zeros and its average pool divides by 9 at the border. A "same" pool would
   not (it ignores padding), so here `h` is padded by 2 zeros on every side, pooled with a "same"
   3x3 stride-2 window, and the first and last outputs are cropped: at every size the kept windows
   are exactly correct_pad's (same start, which "same" pooling decides from the parity) and read
   only real pixels and explicit zeros.

`max_pool_padding="same"` replaces 3.'s max pools by TF's SAME ones, which ignore the padding:
TF-slim's NASNet and timm's `nasnetalarge` (Cadene's port of TF-slim's checkpoint, timm/models/
nasnet.py: MaxPool2dSame pads with -inf; its stride-2 AvgPool2dSame pads zeros and counts them, as
Keras does), which is otherwise Keras' network layer for layer (anyshape.weights.torch_layouts).

Keras refuses channels_first for NASNet; here it works like every network (a transpose in, one out).
The fixed-padding shift of the adjust block's second path (ZeroPadding2D((0, 1)) + Cropping2D((1, 0))
+ a 1x1 stride-2 average pool) is kept as Keras has it: it is the same arithmetic at every size.

The weighted layers, their shapes, their order (keras.src.ops.function.map_graph sorts layers by
depth, so the graph decides it) and names are Keras', so `ours.set_weights(keras_model.get_weights())`
and Keras' files work unchanged; the layers Keras leaves unnamed (its ReLUs, paddings and
concatenations) get names after their cell. Keras' private `NASNet()` parameters are Config fields:
Mobile and Large are two sets of values (`Arch.defaults`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple

from anyshape.archs.base import Arch, ArchConfig, classifier_head

__all__ = ["NASNetConfig", "ARCHS"]

BN = {"momentum": 0.9997, "epsilon": 1e-3}  # every BatchNorm of Keras' NASNet


@dataclass(frozen=True)
class NASNetConfig(ArchConfig):
    """NASNet's build arguments: keras.applications' and its private NASNet()'s (whose defaults,
    those of NASNet-A Large, are these)."""

    penultimate_filters: int = 4032  # the last cells' output channels; the first normal cells have this / 24 filters
    num_blocks: int = 6  # normal cells between reductions
    stem_block_filters: int = 96  # the stem convolution's filters
    skip_reduction: bool = True  # the cell after a reduction reads the cell before it, not its input
    filter_multiplier: int = 2  # how much wider each reduction makes the cells
    # the reduction cells' 3x3 stride-2 max pools: "zeros" pools Keras' zero-padded map (correct_pad,
    # see the module doc), "same" TF's SAME window, which ignores the padding (TF-slim's NASNet, and
    # timm's nasnetalarge port of it: MaxPool2dSame pads with -inf); the two differ at the border
    # where a window's real values are all negative. The average pools count the zeros either way.
    max_pool_padding: str = "zeros"

    def problems(self) -> list[str]:
        out = super().problems() + _structure_problems(self)
        if self.max_pool_padding not in ("zeros", "same"):
            out.append(f"max_pool_padding must be 'zeros' or 'same', got {self.max_pool_padding!r}")
        return out


def _structure_problems(cfg: NASNetConfig) -> list[str]:
    """The Config values that define no network (Keras' check, and what its layers would fail on)."""
    out = []
    for key in ("penultimate_filters", "num_blocks", "stem_block_filters", "filter_multiplier"):
        value = getattr(cfg, key)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            out.append(f"{key} must be a positive integer, got {value!r}")
    if out:
        return out
    if cfg.penultimate_filters % (24 * cfg.filter_multiplier**2):
        out.append(
            "penultimate_filters must be a multiple of 24 * filter_multiplier ** 2 "
            f"({24 * cfg.filter_multiplier**2}), got {cfg.penultimate_filters}"
        )
    elif (cfg.penultimate_filters // 24) % 2:
        out.append(
            "penultimate_filters / 24 must be even: the adjust block halves the previous map into two "
            f"paths of filters / 2 and adds them to a map of filters channels, got {cfg.penultimate_filters}"
        )
    return out


class Map(NamedTuple):
    """A cell's output and its resolution level (how many stride-2 steps made it)."""

    x: Any
    level: int


def _separable_block(net, x, filters: int, kernel: int, strides: int, block_id: str):
    """ReLU + separable conv + BN + ReLU + separable conv + BN: Keras' `_separable_conv_block`.

    A stride-2 first convolution is "same"-padded where Keras uses correct_pad + "valid" (see the
    module docstring): the same sums at every size."""
    x = net.activation(x, "relu", name=f"separable_relu_1_{block_id}")
    x = net.separable(x, filters, kernel, strides, "same", use_bias=False, name=f"separable_conv_1_{block_id}")
    x = net.bn(x, **BN, name=f"separable_conv_1_bn_{block_id}")
    x = net.activation(x, "relu", name=f"separable_relu_2_{block_id}")
    x = net.separable(x, filters, kernel, 1, "same", use_bias=False, name=f"separable_conv_2_{block_id}")
    return net.bn(x, **BN, name=f"separable_conv_2_bn_{block_id}")


def _adjust(net, p: Map | None, ip: Map, filters: int, block_id: str):
    """`p` made ready to be combined with `ip`: halved when it is one level finer (Keras'
    factorised reduction), projected to `filters` channels when only its channel count differs."""
    if p is None:
        return ip.x
    if p.level < ip.level:
        relu = net.activation(p.x, "relu", name=f"adjust_relu_1_{block_id}")
        p1 = net.avg_pool(relu, 1, 2, "valid", name=f"adjust_avg_pool_1_{block_id}")
        p1 = net.conv(p1, filters // 2, 1, 1, "same", use_bias=False, name=f"adjust_conv_1_{block_id}")
        p2 = net.pad(relu, ((0, 1), (0, 1)), name=f"adjust_pad_2_{block_id}")
        p2 = net.crop(p2, ((1, 0), (1, 0)), name=f"adjust_crop_2_{block_id}")  # shifted by one pixel
        p2 = net.avg_pool(p2, 1, 2, "valid", name=f"adjust_avg_pool_2_{block_id}")
        p2 = net.conv(p2, filters // 2, 1, 1, "same", use_bias=False, name=f"adjust_conv_2_{block_id}")
        x = net.concat([p1, p2], name=f"adjust_concat_{block_id}")
        return net.bn(x, **BN, name=f"adjust_bn_{block_id}")
    if p.x.shape[-1] != filters:
        x = net.activation(p.x, "relu", name=f"adjust_relu_projection_{block_id}")
        x = net.conv(x, filters, 1, 1, "same", use_bias=False, name=f"adjust_conv_projection_{block_id}")
        return net.bn(x, **BN, name=f"adjust_bn_{block_id}")
    return p.x


def _squeeze(net, ip: Map, filters: int, kind: str, block_id: str):
    """ReLU + 1x1 conv + BN on the cell's input: `h`, which the cell's left branches read."""
    h = net.activation(ip.x, "relu", name=f"{kind}_relu_1_{block_id}")
    h = net.conv(h, filters, 1, 1, "same", use_bias=False, name=f"{kind}_conv_1_{block_id}")
    return net.bn(h, **BN, name=f"{kind}_bn_1_{block_id}")


def _normal_cell(net, ip: Map, p: Map | None, filters: int, block_id: str) -> tuple[Map, Map]:
    """Keras' `_normal_a_cell`: five pairs of operations added, concatenated with `p`."""
    with net.stage(f"normal_{block_id}", f"normal cell, {filters} filters"):
        pa = _adjust(net, p, ip, filters, block_id)
        h = _squeeze(net, ip, filters, "normal", block_id)
        x1 = net.add(
            [
                _separable_block(net, h, filters, 5, 1, f"normal_left1_{block_id}"),
                _separable_block(net, pa, filters, 3, 1, f"normal_right1_{block_id}"),
            ],
            name=f"normal_add_1_{block_id}",
        )
        x2 = net.add(
            [
                _separable_block(net, pa, filters, 5, 1, f"normal_left2_{block_id}"),
                _separable_block(net, pa, filters, 3, 1, f"normal_right2_{block_id}"),
            ],
            name=f"normal_add_2_{block_id}",
        )
        x3 = net.avg_pool(h, 3, 1, "same", name=f"normal_left3_{block_id}")
        x3 = net.add([x3, pa], name=f"normal_add_3_{block_id}")
        x4 = net.add(
            [
                net.avg_pool(pa, 3, 1, "same", name=f"normal_left4_{block_id}"),
                net.avg_pool(pa, 3, 1, "same", name=f"normal_right4_{block_id}"),
            ],
            name=f"normal_add_4_{block_id}",
        )
        x5 = _separable_block(net, h, filters, 3, 1, f"normal_left5_{block_id}")
        x5 = net.add([x5, h], name=f"normal_add_5_{block_id}")
        x = net.concat([pa, x1, x2, x3, x4, x5], name=f"normal_concat_{block_id}")
    return Map(x, ip.level), ip


def _padded_pool(net, h, h3, kind: str, name: str, max_pool_padding: str = "zeros"):
    """A 3x3 stride-2 pool over correct_pad(h)'s zero-padded map at any size: `h3` is `h` padded
    by 2 on every side, the "same" pool places the windows where correct_pad does (by the parity),
    and cropping the first and last output keeps the windows that read only h and its zeros. With
    max_pool_padding="same" a max pool is TF's SAME pool of `h` itself (the same windows, without
    the zeros)."""
    if kind == "max" and max_pool_padding == "same":
        return net.max_pool(h, 3, 2, "same", name=name)
    pool = net.max_pool if kind == "max" else net.avg_pool
    x = pool(h3, 3, 2, "same", name=name)
    return net.crop(x, 1, name=f"{name}_crop")


def _reduction_cell(
    net, ip: Map, p: Map | None, filters: int, block_id: str, max_pool_padding: str = "zeros"
) -> tuple[Map, Map]:
    """Keras' `_reduction_a_cell`: stride-2 separable convs and pools, halving H and W."""
    with net.stage(block_id, f"reduction cell, {filters} filters, stride 2"):
        pa = _adjust(net, p, ip, filters, block_id)
        h = _squeeze(net, ip, filters, "reduction", block_id)
        h3 = net.pad(h, 2, name=f"reduction_pad_1_{block_id}")
        x1 = net.add(
            [
                _separable_block(net, h, filters, 5, 2, f"reduction_left1_{block_id}"),
                _separable_block(net, pa, filters, 7, 2, f"reduction_right1_{block_id}"),
            ],
            name=f"reduction_add_1_{block_id}",
        )
        x2 = net.add(
            [
                _padded_pool(net, h, h3, "max", f"reduction_left2_{block_id}", max_pool_padding),
                _separable_block(net, pa, filters, 7, 2, f"reduction_right2_{block_id}"),
            ],
            name=f"reduction_add_2_{block_id}",
        )
        x3 = net.add(
            [
                _padded_pool(net, h, h3, "avg", f"reduction_left3_{block_id}"),
                _separable_block(net, pa, filters, 5, 2, f"reduction_right3_{block_id}"),
            ],
            name=f"reduction_add3_{block_id}",
        )
        x4 = net.avg_pool(x1, 3, 1, "same", name=f"reduction_left4_{block_id}")
        x4 = net.add([x2, x4], name=f"reduction_block4_add_{block_id}")
        x5 = net.add(
            [
                _separable_block(net, x1, filters, 3, 1, f"reduction_left4_{block_id}"),
                _padded_pool(net, h, h3, "max", f"reduction_right5_{block_id}", max_pool_padding),
            ],
            name=f"reduction_add4_{block_id}",
        )
        x = net.concat([x2, x3, x4, x5], name=f"reduction_concat_{block_id}")
    return Map(x, ip.level + 1), ip


def cells(cfg: NASNetConfig) -> list[tuple[str, str, int]]:
    """The cells in order, as (kind, Keras' block id, filters): two stem reductions, then
    num_blocks normal cells, a reduction, num_blocks normal cells, a reduction, num_blocks normal
    cells; each reduction makes the cells filter_multiplier times wider (Keras' NASNet())."""
    n, fm, filters = cfg.num_blocks, cfg.filter_multiplier, cfg.penultimate_filters // 24
    return [
        ("reduction", "stem_1", filters // fm**2),
        ("reduction", "stem_2", filters // fm),
        *(("normal", f"{i}", filters) for i in range(n)),
        ("reduction", f"reduce_{n}", filters * fm),
        *(("normal", f"{n + i + 1}", filters * fm) for i in range(n)),
        ("reduction", f"reduce_{2 * n}", filters * fm**2),
        *(("normal", f"{2 * n + i + 1}", filters * fm**2) for i in range(n)),
    ]


def network(net, cfg: NASNetConfig, x):
    """NASNet on `x` (NHWC): keras/src/applications/nasnet.py's cells in the vocabulary."""
    problems = _structure_problems(cfg)
    if problems:  # no network to trace or build (num_blocks=0 would name two cells alike)
        raise ValueError("; ".join(problems))
    with net.stage("stem", f"3x3 conv {cfg.stem_block_filters}, stride 2, valid"):
        x = net.conv(x, cfg.stem_block_filters, 3, 2, "valid", use_bias=False, name="stem_conv1")
        x = net.bn(x, **BN, name="stem_bn1")
    ip, p = Map(x, 1), None
    for kind, block_id, filters in cells(cfg):
        if kind == "normal":
            ip, p = _normal_cell(net, ip, p, filters, block_id)
        else:
            before = p
            ip, p = _reduction_cell(net, ip, p, filters, block_id, cfg.max_pool_padding)
            if cfg.skip_reduction and not block_id.startswith("stem"):
                p = before  # the next cell reads the reduction's `p`, not its input (Keras' skip_reduction)
    with net.stage("final_relu", "relu"):
        x = net.activation(ip.x, "relu", name="final_relu")
    return classifier_head(net, cfg, x)


def _blocks(cfg: NASNetConfig) -> tuple[str, ...]:
    return ("stem_bn1", *(f"{kind}_concat_{block_id}" for kind, block_id, _ in cells(cfg)), "final_relu")


def _feature_points(cfg: NASNetConfig) -> tuple[str, ...]:
    """The last map at strides 2, 4, 8, 16 and 32 (timm's nasnet feature_info)."""
    n = cfg.num_blocks
    return ("stem_bn1", "reduction_concat_stem_1", f"normal_concat_{n - 1}", f"normal_concat_{2 * n}", "final_relu")


# keras.applications.NASNetMobile's and NASNetLarge's arguments to NASNet()
MOBILE: dict[str, Any] = {
    "penultimate_filters": 1056,
    "num_blocks": 4,
    "stem_block_filters": 32,
    "skip_reduction": False,
    "filter_multiplier": 2,
}
LARGE: dict[str, Any] = {
    "penultimate_filters": 4032,
    "num_blocks": 6,
    "stem_block_filters": 96,
    "skip_reduction": True,
    "filter_multiplier": 2,
}

# keras.applications.NASNetMobile/Large: input_shape comes first
_KERAS_ARGS = (
    ("input_shape", None),
    ("include_top", True),
    ("weights", "imagenet"),
    ("input_tensor", None),
    ("pooling", None),
    ("classes", 1000),
    ("classifier_activation", "softmax"),
)

ARCHS = (
    Arch(
        name="nasnet_mobile",
        keras_name="NASNetMobile",
        family="nasnet",
        config_class=NASNetConfig,
        network=network,
        defaults=MOBILE,
        default_size=224,
        keras_min_size=32,  # keras/src/applications/nasnet.py: obtain_input_shape(min_size=32)
        first_conv="stem_conv1",
        classifier=("predictions",),
        blocks=_blocks(NASNetConfig(**MOBILE)),
        feature_points=_feature_points(NASNetConfig(**MOBILE)),
        preprocessing="tf",  # keras.applications.nasnet.preprocess_input: mode="tf"
        keras_args=(*_KERAS_ARGS, ("name", "nasnet_mobile")),
        description="NASNet-A Mobile (Zoph et al. 2018): 4 @ 1056, cells found by architecture search, 5.3 M parameters",
    ),
    Arch(
        name="nasnet_large",
        keras_name="NASNetLarge",
        family="nasnet",
        config_class=NASNetConfig,
        network=network,
        defaults=LARGE,
        default_size=331,
        keras_min_size=32,  # keras/src/applications/nasnet.py: obtain_input_shape(min_size=32)
        first_conv="stem_conv1",
        classifier=("predictions",),
        blocks=_blocks(NASNetConfig(**LARGE)),
        feature_points=_feature_points(NASNetConfig(**LARGE)),
        preprocessing="tf",
        keras_args=(*_KERAS_ARGS, ("name", "nasnet_large")),
        description="NASNet-A Large (Zoph et al. 2018): 6 @ 4032, cells found by architecture search, 88.9 M parameters",
    ),
)
