"""Xception (Chollet 2017), as keras.applications builds it, at any input shape.

Why it takes any H, W >= 7 (Keras asks for 71): only the two stem convolutions are unpadded
("valid"), a 3x3 stride-2 one and a 3x3 one; every later layer is a "same"-padded separable
convolution, a "same" max pool or a 1x1 shortcut, which turns any size n into ceil(n / 2) and never
collapses. The stem needs 3 pixels for its second convolution, so 2 * 3 + 1 = 7 pixels; the shape
tracer finds it from the calls below. Keras' 71 is policy (keras/src/applications/xception.py,
`obtain_input_shape(min_size=71)`), not arithmetic.

Nothing here depends on the parity of a size: Xception has no `correct_pad`, so a free-size model
equals a fixed-size one at every size without any change to Keras' layers.

Compatibility with keras.applications.Xception is by construction: the same layers with the same
arguments and the same wiring (the graph, not the order of the calls, decides the order of the
weights: keras.src.ops.function.map_graph sorts layers by depth), and Keras' names wherever Keras
names a layer. The layers Keras leaves unnamed get names after their block: the shortcut of block
k is `block{k}_residual_conv` / `block{k}_residual_bn` (Keras: conv2d, batch_normalization, ...),
the block output `block{k}_add`.

Two build options make it timm's `legacy_xception` (timm/models/xception.py, the Cadene port of
Keras' weights): `padding="symmetric"` for its reduction pools, `nn.MaxPool2d(3, 2, 1)` (one pixel
on every side, where Keras' "same" pads (0, 1) at even sizes: the same at odd sizes only), built
as a 3x3 stride-1 "same" max pool (one pixel each side, -inf as torch pads) and a 1x1 stride-2 one
that keeps its even positions; and `bn_epsilon=1e-5` (torch's `nn.BatchNorm2d` default; Keras' is
1e-3). Every other layer is already the same arithmetic: the "valid" stem convs are timm's
padding 0, the 3x3 separable convs' "same" is padding 1 at stride 1, the 1x1 stride-2 shortcut
needs no padding.
"""

from __future__ import annotations

from dataclasses import dataclass

from anyshape.archs.base import KERAS_ARGS, Arch, ArchConfig, classifier_head

__all__ = ["XceptionConfig", "ARCHS", "PADDINGS"]

PADDINGS = ("tf", "symmetric")

MIDDLE_BLOCKS = range(5, 13)  # blocks 5 ... 12: the middle flow, eight residual blocks of 728


@dataclass(frozen=True)
class XceptionConfig(ArchConfig):
    """Xception's build arguments: keras.applications' (see `ArchConfig`), plus timm's twin's two."""

    # "tf": Keras' "same" reduction pools; "symmetric": timm legacy_xception's MaxPool2d(3, 2, 1)
    padding: str = "tf"
    bn_epsilon: float = 1e-3  # Keras' 1e-3; timm's legacy_xception: 1e-5

    def problems(self) -> list[str]:
        out = super().problems()
        if self.padding not in PADDINGS:
            out.append(f"padding must be one of {PADDINGS}, got {self.padding!r}")
        if not isinstance(self.bn_epsilon, (int, float)) or isinstance(self.bn_epsilon, bool) or self.bn_epsilon <= 0:
            out.append(f"bn_epsilon must be a positive number, got {self.bn_epsilon!r}")
        return out


def _stem_unit(net, cfg: XceptionConfig, x, name: str, filters: int, strides: int):
    with net.stage(name, f"3x3 conv {filters}" + (f", stride {strides}" if strides > 1 else "") + ", valid"):
        x = net.conv(x, filters, 3, strides, "valid", use_bias=False, name=name)
        x = net.bn(x, epsilon=cfg.bn_epsilon, name=f"{name}_bn")
        return net.activation(x, "relu", name=f"{name}_act")


def _sepconv(
    net, cfg: XceptionConfig, x, block: str, k: int, filters: int, *, relu_before: bool = True, relu_after: bool = False
):
    """[ReLU] + 3x3 separable conv + BatchNorm [+ ReLU], named as Keras names them."""
    if relu_before:
        x = net.activation(x, "relu", name=f"{block}_sepconv{k}_act")
    x = net.separable(x, filters, 3, 1, "same", use_bias=False, name=f"{block}_sepconv{k}")
    x = net.bn(x, epsilon=cfg.bn_epsilon, name=f"{block}_sepconv{k}_bn")
    if relu_after:
        x = net.activation(x, "relu", name=f"{block}_sepconv{k}_act")
    return x


def _reduction_block(net, cfg: XceptionConfig, x, k: int, filters: tuple[int, int], *, relu_first: bool = True):
    """Two separable convs, a 3x3 stride-2 'same' max pool, plus a strided 1x1 conv shortcut.

    Block 2 reads the stem's ReLU directly (Keras puts no ReLU before block2_sepconv1 and names the
    one between its two convolutions block2_sepconv2_act)."""
    block = f"block{k}"
    with net.stage(block, f"separable convs {filters[0]}, {filters[1]}, max pool, stride 2, + 1x1 shortcut"):
        residual = net.conv(x, filters[1], 1, 2, "same", use_bias=False, name=f"{block}_residual_conv")
        residual = net.bn(residual, epsilon=cfg.bn_epsilon, name=f"{block}_residual_bn")
        y = _sepconv(net, cfg, x, block, 1, filters[0], relu_before=relu_first)
        y = _sepconv(net, cfg, y, block, 2, filters[1])
        if cfg.padding == "symmetric":  # torch's MaxPool2d(3, 2, 1): windows centred on the even positions
            y = net.max_pool(y, 3, 1, "same", name=f"{block}_pool")
            y = net.max_pool(y, 1, 2, "valid", name=f"{block}_pool_stride")
        else:
            y = net.max_pool(y, 3, 2, "same", name=f"{block}_pool")
        return net.add([y, residual], name=f"{block}_add")


def network(net, cfg: XceptionConfig, x):
    """Xception on `x` (NHWC): keras/src/applications/xception.py's layers in the vocabulary."""
    x = _stem_unit(net, cfg, x, "block1_conv1", 32, 2)
    x = _stem_unit(net, cfg, x, "block1_conv2", 64, 1)
    x = _reduction_block(net, cfg, x, 2, (128, 128), relu_first=False)
    x = _reduction_block(net, cfg, x, 3, (256, 256))
    x = _reduction_block(net, cfg, x, 4, (728, 728))
    for k in MIDDLE_BLOCKS:
        block = f"block{k}"
        with net.stage(block, "3 separable convs 728 + identity"):
            y = x
            for i in (1, 2, 3):
                y = _sepconv(net, cfg, y, block, i, 728)
            x = net.add([y, x], name=f"{block}_add")
    x = _reduction_block(net, cfg, x, 13, (728, 1024))
    with net.stage("block14", "separable convs 1536, 2048"):
        x = _sepconv(net, cfg, x, "block14", 1, 1536, relu_before=False, relu_after=True)
        x = _sepconv(net, cfg, x, "block14", 2, 2048, relu_before=False, relu_after=True)
    return classifier_head(net, cfg, x)


BLOCKS = (
    "block1_conv2_act",
    *(f"block{k}_add" for k in range(2, 14)),
    "block14_sepconv2_act",
)

ARCHS = (
    Arch(
        name="xception",
        keras_name="Xception",
        family="xception",
        config_class=XceptionConfig,
        network=network,
        default_size=299,
        keras_min_size=71,  # keras/src/applications/xception.py: obtain_input_shape(min_size=71)
        first_conv="block1_conv1",
        classifier=("predictions",),
        blocks=BLOCKS,
        # timm's (legacy) xception feature_info: the last map at strides 2, 4, 8, 16 and 32
        feature_points=("block1_conv2_act", "block2_add", "block3_add", "block12_add", "block14_sepconv2_act"),
        preprocessing="tf",  # keras.applications.xception.preprocess_input: mode="tf"
        keras_args=(*KERAS_ARGS, ("name", "xception")),
        description="Xception (Chollet 2017): depthwise separable convolutions with residuals, 22.9 M parameters",
    ),
)
