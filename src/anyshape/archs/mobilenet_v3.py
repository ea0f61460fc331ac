"""MobileNetV3 Small and Large (Howard et al. 2019), as keras.applications builds them, at any input shape.

Written from keras/src/applications/mobilenet_v3.py: an in-graph Rescaling to [-1, 1] (with
`include_preprocessing`), the 3x3 stride-2 stem, the inverted residual blocks of the variant's
table (expansion, squeeze-and-excite, ReLU or hard swish), conv_1 and Keras' top (a keepdims
global pool, the 1x1 convs conv_2 and logits, Flatten, the Activation "predictions"). Weighted
layers keep Keras' names (conv, conv_bn, expanded_conv_3_squeeze_excite_conv, ...), so they come
in Keras' order with Keras' shapes; Keras leaves the activations unnamed, here they are
`<unit>_act` whatever the activation is.

Two of Keras' pieces are raw tensor arithmetic, written here with built-in layers that compute the
same floats:
- hard sigmoid, `layers.ReLU(6.0)(x + 3.0) * (1.0 / 6.0)` in Keras: Rescaling(1, offset=3)
  computes x * 1 + 3 (x * 1 is exact), ReLU(6) is the same layer, Rescaling(1/6) computes
  x * (1/6) + 0 (adding 0 is exact). Keras' own Activation("hard_sigmoid") divides by 6 instead of
  multiplying by 1/6, which differs in the last bit.
- hard swish is Keras' Activation("hard_swish"), as Keras builds it.

Shapes: Keras pads before each stride-2 depthwise conv with `imagenet_utils.correct_pad` (kernel 3
or 5) and runs it "valid"; correct_pad is TF "same" padding for a stride-2 window at both parities
((k//2 - 1, k//2) at an even size, (k//2, k//2) at an odd one) but assumes an even size on the
free-size path, where Keras' model is therefore right only at multiples of 32. Here those convs
are stride-2 "same" (see anyshape.archs.mobilenet_v2), so a free-size model equals a fixed one at
every size, and any size from 1 pixel works (Keras asks 32). Keras builds MobileNetV3 at free size by default, even with the top; anyshape's default
with the top is the 224 x 224 the weights were trained at (give input_shape=(None, None, 3) for
Keras' default).

The records (blocks, feature points) name the default width's layers; another `alpha` can remove a
residual add (the first block's, with alpha 0.5).
"""

from __future__ import annotations

from dataclasses import dataclass

from anyshape.archs.base import Arch, ArchConfig, classifier_head
from anyshape.archs.mobilenet import keepdims_pool
from anyshape.archs.mobilenet_v2 import make_divisible

__all__ = ["MobileNetV3Config", "STACKS", "ARCHS"]

BN = {"epsilon": 1e-3, "momentum": 0.999}


@dataclass(frozen=True)
class MobileNetV3Config(ArchConfig):
    """MobileNetV3's build arguments: keras.applications.MobileNetV3Small/Large's, with
    `model_type` (Keras' MobileNetV3 argument) choosing the block table."""

    dropout_rate: float = 0.2  # Keras' default: the top's dropout before logits
    alpha: float = 1.0  # width multiplier of the blocks (rounded to multiples of 8)
    minimalistic: bool = False  # 3x3 kernels, ReLU only, no squeeze-and-excite
    include_preprocessing: bool = True  # Rescaling(1/127.5, offset=-1) in front: input in [0, 255]
    model_type: str = "large"  # "small" or "large"

    def problems(self) -> list[str]:
        out = super().problems()
        if not isinstance(self.alpha, (int, float)) or isinstance(self.alpha, bool) or self.alpha <= 0:
            out.append(f"alpha must be a positive number, got {self.alpha!r}")
        if self.model_type not in STACKS:
            out.append(f"model_type must be one of {tuple(STACKS)}, got {self.model_type!r}")
        return out


# (expansion, filters before alpha, kernel, stride, squeeze-and-excite, hard swish) per block. A
# kernel of 5, SE and hard swish hold unless `minimalistic` (then 3, none, ReLU): Keras' stack_fn
# passes `kernel`, `se_ratio` and `activation` there, and 3 / None / relu where they are fixed.
STACKS: dict[str, tuple[tuple[float, int, int, int, bool, bool], ...]] = {
    "small": (
        (1, 16, 3, 2, True, False),
        (72.0 / 16, 24, 3, 2, False, False),
        (88.0 / 24, 24, 3, 1, False, False),
        (4, 40, 5, 2, True, True),
        (6, 40, 5, 1, True, True),
        (6, 40, 5, 1, True, True),
        (3, 48, 5, 1, True, True),
        (3, 48, 5, 1, True, True),
        (6, 96, 5, 2, True, True),
        (6, 96, 5, 1, True, True),
        (6, 96, 5, 1, True, True),
    ),
    "large": (
        (1, 16, 3, 1, False, False),
        (4, 24, 3, 2, False, False),
        (3, 24, 3, 1, False, False),
        (3, 40, 5, 2, True, False),
        (3, 40, 5, 1, True, False),
        (3, 40, 5, 1, True, False),
        (6, 80, 3, 2, False, True),
        (2.5, 80, 3, 1, False, True),
        (2.3, 80, 3, 1, False, True),
        (2.3, 80, 3, 1, False, True),
        (6, 112, 3, 1, True, True),
        (6, 112, 3, 1, True, True),
        (6, 160, 5, 2, True, True),
        (6, 160, 5, 1, True, True),
        (6, 160, 5, 1, True, True),
    ),
}
LAST_POINT = {"small": 1024, "large": 1280}  # conv_2's width (before alpha > 1)
SE_RATIO = 0.25


def _act(net, x, hard_swish: bool, name: str):
    """Keras' `activation`: Activation("hard_swish") or ReLU()."""
    if hard_swish:
        return net.activation(x, "hard_swish", name=f"{name}_act")
    return net.relu(x, name=f"{name}_act")


def _hard_sigmoid(net, x, name: str):
    """relu6(x + 3) * (1 / 6), exactly Keras' arithmetic (see the module docstring)."""
    x = net.rescaling(x, 1.0, 3.0, name=f"{name}_plus3")
    x = net.relu(x, 6.0, name=f"{name}_relu6")
    return net.rescaling(x, 1.0 / 6.0, name=f"{name}_div6")


def _se(net, x, channels: int, prefix: str):
    """Squeeze-and-excite (Keras' `_se_block`): the map times a per-channel gate."""
    s = net.global_pool(x, "avg", keepdims=True, name=f"{prefix}squeeze_excite_avg_pool")
    s = net.conv(s, make_divisible(channels * SE_RATIO), 1, 1, "same", name=f"{prefix}squeeze_excite_conv")
    s = net.relu(s, name=f"{prefix}squeeze_excite_relu")
    s = net.conv(s, channels, 1, 1, "same", name=f"{prefix}squeeze_excite_conv_1")
    s = _hard_sigmoid(net, s, f"{prefix}squeeze_excite")
    return net.multiply([x, s], name=f"{prefix}squeeze_excite_mul")


def _block(net, cfg: MobileNetV3Config, x, block_id: int, cin: int, spec):
    """One inverted residual block (Keras' `_inverted_res_block`); returns (output, channels)."""
    expansion, filters, kernel, stride, se, hard_swish = spec
    filters = make_divisible(filters * cfg.alpha)
    if cfg.minimalistic:
        kernel, se, hard_swish = 3, False, False
    prefix = f"expanded_conv_{block_id}_" if block_id else "expanded_conv_"
    inputs = x
    expanded = make_divisible(cin * expansion)
    if block_id:
        x = net.conv(x, expanded, 1, 1, "same", use_bias=False, name=f"{prefix}expand")
        x = net.bn(x, **BN, name=f"{prefix}expand_bn")
        x = _act(net, x, hard_swish, f"{prefix}expand")
    x = net.depthwise(x, kernel, stride, "same", use_bias=False, name=f"{prefix}depthwise")
    x = net.bn(x, **BN, name=f"{prefix}depthwise_bn")
    x = _act(net, x, hard_swish, f"{prefix}depthwise")
    if se:
        x = _se(net, x, expanded, prefix)
    x = net.conv(x, filters, 1, 1, "same", use_bias=False, name=f"{prefix}project")
    x = net.bn(x, **BN, name=f"{prefix}project_bn")
    if stride == 1 and cin == filters:
        x = net.add([inputs, x], name=f"{prefix}add")
    return x, filters


def network(net, cfg: MobileNetV3Config, x):
    """MobileNetV3 on `x` (NHWC): the rescaling, the stem, the blocks, conv_1, the top."""
    hard_swish = not cfg.minimalistic
    if cfg.include_preprocessing:
        x = net.rescaling(x, 1.0 / 127.5, -1.0, name="rescaling")
    with net.stage("conv", "3x3 conv 16, stride 2"):
        x = net.conv(x, 16, 3, 2, "same", use_bias=False, name="conv")
        x = net.bn(x, **BN, name="conv_bn")
        x = _act(net, x, hard_swish, "conv")
    channels = 16
    for block_id, spec in enumerate(STACKS[cfg.model_type]):
        name = f"expanded_conv_{block_id}" if block_id else "expanded_conv"
        expansion, filters, _, stride, se, _ = spec
        what = f"inverted residual x{expansion:g} {make_divisible(filters * cfg.alpha)}"
        what += (" + SE" if se and not cfg.minimalistic else "") + (", stride 2" if stride == 2 else "")
        with net.stage(name, what):
            x, channels = _block(net, cfg, x, block_id, channels, spec)
    last_conv = make_divisible(channels * 6)
    with net.stage("conv_1", f"1x1 conv {last_conv}"):
        x = net.conv(x, last_conv, 1, 1, "same", use_bias=False, name="conv_1")
        x = net.bn(x, **BN, name="conv_1_bn")
        x = _act(net, x, hard_swish, "conv_1")
    if not cfg.include_top:
        return classifier_head(net, cfg, x)
    last_point = LAST_POINT[cfg.model_type]
    if cfg.alpha > 1.0:
        last_point = make_divisible(last_point * cfg.alpha)
    x = keepdims_pool(net, x, cfg.pooling or "avg", last_conv)
    x = net.conv(x, last_point, 1, 1, "same", name="conv_2")
    x = _act(net, x, hard_swish, "conv_2")
    if cfg.dropout_rate > 0:
        x = net.dropout(x, cfg.dropout_rate, name="dropout")
    x = net.conv(x, cfg.classes, 1, 1, "same", name="logits")
    x = net.flatten(x, name="flatten")
    return net.activation(x, cfg.classifier_activation or "linear", name="predictions")


def _block_outputs(model_type: str) -> tuple[str, ...]:
    """The block output layers with the default width (a residual block ends in its add)."""
    out, cin = [], 16
    for block_id, (_, filters, _, stride, _, _) in enumerate(STACKS[model_type]):
        prefix = f"expanded_conv_{block_id}_" if block_id else "expanded_conv_"
        out.append(f"{prefix}add" if stride == 1 and cin == filters else f"{prefix}project_bn")
        cin = filters
    return (*out, "conv_1_act")


# keras/src/applications/mobilenet_v3.py: MobileNetV3Small/Large's signatures (classes comes
# before pooling there)
_KERAS_ARGS = (
    ("input_shape", None),
    ("alpha", 1.0),
    ("minimalistic", False),
    ("include_top", True),
    ("weights", "imagenet"),
    ("input_tensor", None),
    ("classes", 1000),
    ("pooling", None),
    ("dropout_rate", 0.2),
    ("classifier_activation", "softmax"),
    ("include_preprocessing", True),
)


def _arch(model_type: str, keras_name: str, feature_points: tuple[str, ...], description: str) -> Arch:
    return Arch(
        name=f"mobilenet_v3_{model_type}",
        keras_name=keras_name,
        family="mobilenet_v3",
        config_class=MobileNetV3Config,
        network=network,
        defaults={"model_type": model_type},
        default_size=224,
        # keras/src/applications/mobilenet_v3.py: "Input size must be at least 32x32" (its own check)
        keras_min_size=32,
        first_conv="conv",
        input_layers=("rescaling",),
        classifier=("logits",),
        blocks=_block_outputs(model_type),
        feature_points=feature_points,
        preprocessing="raw",
        keras_args=(*_KERAS_ARGS, ("name", keras_name)),
        description=description,
    )


ARCHS = (
    _arch(
        "small",
        "MobileNetV3Small",
        ("conv_act", "expanded_conv_project_bn", "expanded_conv_2_add", "expanded_conv_7_add", "conv_1_act"),
        "MobileNetV3-Small (Howard et al. 2019): inverted residuals, SE, hard swish, 2.6 M parameters",
    ),
    _arch(
        "large",
        "MobileNetV3Large",
        ("expanded_conv_add", "expanded_conv_2_add", "expanded_conv_5_add", "expanded_conv_11_add", "conv_1_act"),
        "MobileNetV3-Large (Howard et al. 2019): inverted residuals, SE, hard swish, 5.5 M parameters",
    ),
)
