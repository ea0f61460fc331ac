"""MobileNetV2 (Sandler et al. 2018), as keras.applications builds it, at any input shape.

Written from keras/src/applications/mobilenet_v2.py: Conv1, 17 inverted residual blocks
(expanded_conv, block_1 ... block_16: 1x1 expansion, 3x3 depthwise, 1x1 linear projection, a
residual add where the shapes allow), Conv_1 and the usual dense top, with Keras' layer names
(bn_Conv1, block_3_expand_BN, ...), so the weighted layers come in Keras' order with Keras' shapes.

Shapes: Keras pads before each stride-2 depthwise conv with `imagenet_utils.correct_pad` and then
runs it "valid". correct_pad reads the static shape: (0, 1) on an even side, (1, 1) on an odd one,
which is exactly TF "same" padding for a 3x3 stride-2 window (total max(3 - 2, 0) = 1 at an even
size, 3 - 1 = 2 at an odd one, the extra pixel at the end). On the free-size path the shape is
None and correct_pad assumes an even size, so Keras' free-size model differs from its fixed-size
model at odd sizes. Here those convs are stride-2 "same": equal to Keras' fixed-size model at every
size it takes, and a free-size model equals a fixed one at every size. Every window is "same", so
any size from 1 pixel works (Keras asks 32).

`padding="symmetric"` builds the same weights with torchvision's and timm's arithmetic instead:
every stride-2 3x3 conv (Conv1 and the strided depthwise convs) pads one pixel on every side and
runs "valid" (PyTorch's padding=1), which differs from TF "same" on the first row and column at
even sizes. That is the form the PyTorch checkpoints need, with `bn_epsilon=1e-5` (torch's BatchNorm
epsilon, where Keras' is 1e-3).
"""

from __future__ import annotations

from dataclasses import dataclass

from anyshape.archs.base import KERAS_ARGS, Arch, ArchConfig, classifier_head

__all__ = ["MobileNetV2Config", "SETTINGS", "PADDINGS", "ARCHS", "make_divisible"]

PADDINGS = ("tf", "symmetric")
BN_MOMENTUM = 0.999


@dataclass(frozen=True)
class MobileNetV2Config(ArchConfig):
    """MobileNetV2's build arguments: keras.applications.MobileNetV2's, plus `padding`."""

    alpha: float = 1.0  # width multiplier (rounded to multiples of 8)
    # "tf": Keras' arithmetic (TF "same" on the stride-2 convs); "symmetric": pad 1 on every side
    # then "valid", as torchvision's and timm's mobilenet_v2
    padding: str = "tf"
    bn_epsilon: float = 1e-3  # Keras' 1e-3; torchvision's and timm's mobilenet_v2: 1e-5

    def problems(self) -> list[str]:
        out = super().problems()
        if not isinstance(self.alpha, (int, float)) or isinstance(self.alpha, bool) or self.alpha <= 0:
            out.append(f"alpha must be a positive number, got {self.alpha!r}")
        if self.padding not in PADDINGS:
            out.append(f"padding must be one of {PADDINGS}, got {self.padding!r}")
        if not isinstance(self.bn_epsilon, (int, float)) or isinstance(self.bn_epsilon, bool) or self.bn_epsilon <= 0:
            out.append(f"bn_epsilon must be a positive number, got {self.bn_epsilon!r}")
        return out


SETTINGS: tuple[tuple[int, int, int, int], ...] = (
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
)
"""(expansion, filters before alpha, blocks, stride of the first block): the paper's Table 2, which
keras.applications writes out as blocks 0 ... 16."""


def make_divisible(v: float, divisor: int = 8) -> int:
    """The nearest multiple of `divisor` to `v`, at least `divisor` and not more than 10 % below
    `v` (TensorFlow's slim `_make_divisible`, which Keras' MobileNetV2 and V3 copy)."""
    new_v = max(divisor, int(v + divisor / 2) // divisor * divisor)
    return new_v + divisor if new_v < 0.9 * v else new_v


def _strided(net, cfg: MobileNetV2Config, x, name: str):
    """The input of a stride-2 3x3 window and that window's padding, by `cfg.padding`."""
    if cfg.padding == "symmetric":
        return net.pad(x, 1, name=f"{name}pad"), "valid"
    return x, "same"


def _block(net, cfg: MobileNetV2Config, x, block_id: int, cin: int, expansion: int, filters: int, stride: int):
    """One inverted residual block (Keras' `_inverted_res_block`); returns (output, channels)."""
    prefix = f"block_{block_id}_" if block_id else "expanded_conv_"
    inputs = x
    if block_id:
        x = net.conv(x, expansion * cin, 1, 1, "same", use_bias=False, name=f"{prefix}expand")
        x = net.bn(x, momentum=BN_MOMENTUM, epsilon=cfg.bn_epsilon, name=f"{prefix}expand_BN")
        x = net.relu(x, 6.0, name=f"{prefix}expand_relu")
    padding = "same"
    if stride == 2:
        x, padding = _strided(net, cfg, x, prefix)
    x = net.depthwise(x, 3, stride, padding, use_bias=False, name=f"{prefix}depthwise")
    x = net.bn(x, momentum=BN_MOMENTUM, epsilon=cfg.bn_epsilon, name=f"{prefix}depthwise_BN")
    x = net.relu(x, 6.0, name=f"{prefix}depthwise_relu")
    x = net.conv(x, filters, 1, 1, "same", use_bias=False, name=f"{prefix}project")
    x = net.bn(x, momentum=BN_MOMENTUM, epsilon=cfg.bn_epsilon, name=f"{prefix}project_BN")
    if cin == filters and stride == 1:
        x = net.add([inputs, x], name=f"{prefix}add")
    return x, filters


def network(net, cfg: MobileNetV2Config, x):
    """MobileNetV2 on `x` (NHWC): Conv1, the 17 blocks, Conv_1, the top."""
    channels = make_divisible(32 * cfg.alpha)
    with net.stage("Conv1", f"3x3 conv {channels}, stride 2"):
        x, padding = _strided(net, cfg, x, "Conv1_")
        x = net.conv(x, channels, 3, 2, padding, use_bias=False, name="Conv1")
        x = net.bn(x, momentum=BN_MOMENTUM, epsilon=cfg.bn_epsilon, name="bn_Conv1")
        x = net.relu(x, 6.0, name="Conv1_relu")
    block_id = 0
    for expansion, filters, repeats, first_stride in SETTINGS:
        filters = make_divisible(int(filters * cfg.alpha))
        for r in range(repeats):
            stride = first_stride if r == 0 else 1
            name = f"block_{block_id}" if block_id else "expanded_conv"
            what = f"inverted residual x{expansion} {filters}" + (", stride 2" if stride == 2 else "")
            with net.stage(name, what):
                x, channels = _block(net, cfg, x, block_id, channels, expansion, filters, stride)
            block_id += 1
    # no alpha on the last conv below 1 (the paper): wider, never narrower
    last = make_divisible(1280 * cfg.alpha) if cfg.alpha > 1.0 else 1280
    with net.stage("Conv_1", f"1x1 conv {last}"):
        x = net.conv(x, last, 1, 1, "valid", use_bias=False, name="Conv_1")
        x = net.bn(x, momentum=BN_MOMENTUM, epsilon=cfg.bn_epsilon, name="Conv_1_bn")
        x = net.relu(x, 6.0, name="out_relu")
    return classifier_head(net, cfg, x)


def _block_outputs() -> tuple[str, ...]:
    """The block output layers with the default width (a residual block ends in its add)."""
    out, block_id, cin = [], 0, 32
    for _, filters, repeats, _ in SETTINGS:
        for r in range(repeats):
            prefix = f"block_{block_id}_" if block_id else "expanded_conv_"
            out.append(f"{prefix}add" if r and cin == filters else f"{prefix}project_BN")
            cin, block_id = filters, block_id + 1
    return (*out, "out_relu")


ARCHS = (
    Arch(
        name="mobilenet_v2",
        keras_name="MobileNetV2",
        family="mobilenet_v2",
        config_class=MobileNetV2Config,
        network=network,
        default_size=224,
        # keras/src/applications/mobilenet_v2.py: obtain_input_shape(..., min_size=32, ...)
        keras_min_size=32,
        first_conv="Conv1",
        classifier=("predictions",),
        blocks=_block_outputs(),
        feature_points=("expanded_conv_project_BN", "block_2_add", "block_5_add", "block_12_add", "out_relu"),
        preprocessing="tf",
        keras_args=(
            ("input_shape", None),
            ("alpha", 1.0),
            *(kv for kv in KERAS_ARGS if kv[0] != "input_shape"),
            ("name", None),
        ),
        description="MobileNetV2 (Sandler et al. 2018): inverted residual blocks, 3.5 M parameters",
    ),
)
