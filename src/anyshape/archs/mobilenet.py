"""MobileNet (Howard et al. 2017), as keras.applications builds it, at any input shape.

Written from keras/src/applications/mobilenet.py: a 3x3 stride-2 conv unit and 13 depthwise-
separable blocks (3x3 depthwise + BN + ReLU6, 1x1 conv + BN + ReLU6), the same layer names
(conv1, conv_dw_1 ... conv_pw_13_relu, conv_preds, predictions), so the weighted layers come in
Keras' order with Keras' shapes and `ours.set_weights(keras_model.get_weights())` works.
`alpha` (width) and `depth_multiplier` (the depthwise convolutions' multiplier) are Keras' build
arguments with Keras' meaning; `dropout` is Keras' name for the head's dropout rate.

Shapes: the four strided blocks pad with ZeroPadding2D(((0, 1), (0, 1))) and then run a "valid"
3x3 stride-2 depthwise conv. That padding is fixed arithmetic (it reads no shape), so a free-size
model equals a fixed-size one at every size; at an odd size it keeps floor(n / 2) rows where TF
"same" padding would keep ceil(n / 2): anyshape keeps Keras' arithmetic, so odd sizes give what
keras.applications computes at that fixed size. Each strided block needs an input of at least 2
(padded to 3, the kernel): following that back through conv1 (stride 2, "same") gives a minimum
of 31, where Keras asks 32.

Why Keras' free-size model "returns a 2x2 map at 16x16" (issue 17): the head is not the cause
(its Reshape follows a keepdims global pool, 1x1 at any size). At 16 the input of conv_dw_12 is
1x1, padded to 2x2, smaller than the 3x3 kernel, so the window does not fit anywhere. On a
fixed-size input shape Keras' shape inference refuses that; on (None, None, 3) nothing checks it
before the backend runs, and TensorFlow's eager DepthwiseConv2dNative kernel then returns a 2x2
map of uninitialised memory (a traced `predict` raises "Negative dimension size", JAX returns
an empty map, torch raises). The shape tracer sees the collapse, so `explain` and
`create_model` refuse every size below 31 naming block_12's conv_dw_12.

`padding="symmetric"` builds the same weights with timm's arithmetic instead (timm/models/efficientnet.py
`_gen_mobilenet_v1`, `mobilenetv1_100`: its conv_stem and strided depthwise convs are torch convs
with padding=1): conv1 and every strided depthwise conv pad one pixel on every side and run
"valid". Keras' strided depthwise windows start on the first row and column (padding at the bottom
and right only), timm's one pixel before it, so the two differ at every size; at an odd size timm's
keep ceil(n / 2) rows where Keras' keep floor(n / 2). Every window then fits a padded 1 x 1 map:
any size from 1 pixel works. That is the form timm's weights need, with `bn_epsilon=1e-5` (torch's
BatchNorm epsilon, where Keras' is 1e-3); ReLU6, the blocks and their widths are Keras' (timm's
round_channels equals Keras' int(filters * alpha) at its widths 1.0 and 1.25), and timm's Linear
classifier after the average pool is Keras' 1x1 conv_preds on the pooled map (timm's dropout rate
is 0; Keras' 1e-3 is the identity at inference).

The top is Keras': a keepdims global average pool, dropout, the 1x1 conv "conv_preds", a Reshape
to one vector and the Activation "predictions" (`pooling` chooses the top's pool, as for every
anyshape network).
"""

from __future__ import annotations

from dataclasses import dataclass

from anyshape.archs.base import KERAS_ARGS, Arch, ArchConfig, classifier_head, global_pool

__all__ = ["MobileNetConfig", "BLOCKS", "ARCHS", "PADDINGS", "keepdims_pool"]

# "keras": Keras' arithmetic (conv1 "same"; the strided depthwise convs pad (0, 1) and run "valid");
# "symmetric": pad 1 on every side then "valid", as timm's mobilenetv1_100
PADDINGS = ("keras", "symmetric")


@dataclass(frozen=True)
class MobileNetConfig(ArchConfig):
    """MobileNet's build arguments: keras.applications.MobileNet's, with its names, plus `padding`
    and `bn_epsilon` (timm's twin)."""

    alpha: float = 1.0  # width multiplier: every conv has int(filters * alpha) filters
    depth_multiplier: int = 1  # the depthwise convolutions' channel multiplier
    dropout: float = 1e-3  # the head's dropout rate (Keras' name; dropout_rate is not used)
    padding: str = "keras"  # the stride-2 convs' padding: one of PADDINGS
    bn_epsilon: float = 1e-3  # Keras' 1e-3; timm's mobilenetv1_100: 1e-5

    def problems(self) -> list[str]:
        out = super().problems()
        if not isinstance(self.alpha, (int, float)) or isinstance(self.alpha, bool) or self.alpha <= 0:
            out.append(f"alpha must be a positive number, got {self.alpha!r}")
        elif int(32 * self.alpha) < 1:
            out.append(f"alpha={self.alpha!r} leaves conv1 without filters (int(32 * alpha) = 0)")
        dm = self.depth_multiplier
        if isinstance(dm, bool) or not isinstance(dm, int) or dm < 1:
            out.append(f"depth_multiplier must be a positive integer, got {dm!r}")
        if not isinstance(self.dropout, (int, float)) or not 0.0 <= self.dropout < 1.0:
            out.append(f"dropout must be in [0, 1), got {self.dropout!r}")
        if self.padding not in PADDINGS:
            out.append(f"padding must be one of {PADDINGS}, got {self.padding!r}")
        if not isinstance(self.bn_epsilon, (int, float)) or isinstance(self.bn_epsilon, bool) or self.bn_epsilon <= 0:
            out.append(f"bn_epsilon must be a positive number, got {self.bn_epsilon!r}")
        if self.dropout_rate:
            out.append(
                f"MobileNet's head dropout is `dropout` (keras.applications' name), not dropout_rate "
                f"(got dropout_rate={self.dropout_rate!r})"
            )
        return out


BLOCKS: tuple[tuple[int, int], ...] = (
    (64, 1),
    (128, 2),
    (128, 1),
    (256, 2),
    (256, 1),
    (512, 2),
    (512, 1),
    (512, 1),
    (512, 1),
    (512, 1),
    (512, 1),
    (1024, 2),
    (1024, 1),
)
"""The depthwise-separable blocks 1 ... 13: (pointwise filters before alpha, depthwise stride)."""


def keepdims_pool(net, x, pooling: str, channels: int):
    """The global pool of a top that continues with 1x1 convolutions (MobileNet, MobileNetV3): a
    1 x 1 x C map. Keras' top is the keepdims average pool; `pooling` may choose another."""
    if pooling in ("avg", "max"):
        return net.global_pool(x, pooling, keepdims=True, name=f"{pooling}_pool")
    x = global_pool(net, x, pooling)
    return net.reshape(x, (1, 1, 2 * channels if pooling == "catavgmax" else channels), name=f"{pooling}_pool_map")


def network(net, cfg: MobileNetConfig, x):
    """MobileNet on `x` (NHWC): conv1, blocks 1-13, the top."""
    filters = int(32 * cfg.alpha)
    symmetric = cfg.padding == "symmetric"
    with net.stage("conv1", f"3x3 conv {filters}, stride 2"):
        if symmetric:  # torch's padding=1
            x = net.pad(x, 1, name="conv1_pad")
        x = net.conv(x, filters, 3, 2, "valid" if symmetric else "same", use_bias=False, name="conv1")
        x = net.bn(x, epsilon=cfg.bn_epsilon, name="conv1_bn")
        x = net.relu(x, 6.0, name="conv1_relu")
    channels = filters
    for k, (pointwise, stride) in enumerate(BLOCKS, start=1):
        filters = int(pointwise * cfg.alpha)
        what = f"3x3 depthwise{', stride 2' if stride == 2 else ''} + 1x1 conv {filters}"
        with net.stage(f"block_{k}", what):
            if stride == 2:  # Keras' fixed padding: one row and column at the bottom and right
                x = net.pad(x, 1 if symmetric else ((0, 1), (0, 1)), name=f"conv_pad_{k}")
            padding = "valid" if stride == 2 else "same"
            x = net.depthwise(
                x, 3, stride, padding, use_bias=False, depth_multiplier=cfg.depth_multiplier, name=f"conv_dw_{k}"
            )
            x = net.bn(x, epsilon=cfg.bn_epsilon, name=f"conv_dw_{k}_bn")
            x = net.relu(x, 6.0, name=f"conv_dw_{k}_relu")
            x = net.conv(x, filters, 1, 1, "same", use_bias=False, name=f"conv_pw_{k}")
            x = net.bn(x, epsilon=cfg.bn_epsilon, name=f"conv_pw_{k}_bn")
            x = net.relu(x, 6.0, name=f"conv_pw_{k}_relu")
        channels = filters
    if not cfg.include_top:
        return classifier_head(net, cfg, x)
    x = keepdims_pool(net, x, cfg.pooling or "avg", channels)
    x = net.dropout(x, cfg.dropout, name="dropout")
    x = net.conv(x, cfg.classes, 1, 1, "same", name="conv_preds")
    x = net.reshape(x, (cfg.classes,), name="reshape_2")
    return net.activation(x, cfg.classifier_activation or "linear", name="predictions")


ARCHS = (
    Arch(
        name="mobilenet",
        keras_name="MobileNet",
        family="mobilenet",
        config_class=MobileNetConfig,
        network=network,
        default_size=224,
        # keras/src/applications/mobilenet.py: obtain_input_shape(..., min_size=32, ...)
        keras_min_size=32,
        first_conv="conv1",
        classifier=("conv_preds",),
        blocks=tuple(f"conv_pw_{k}_relu" for k in range(1, len(BLOCKS) + 1)),
        feature_points=("conv_pw_1_relu", "conv_pw_3_relu", "conv_pw_5_relu", "conv_pw_11_relu", "conv_pw_13_relu"),
        preprocessing="tf",
        keras_args=(
            ("input_shape", None),
            ("alpha", 1.0),
            ("depth_multiplier", 1),
            ("dropout", 1e-3),
            *(kv for kv in KERAS_ARGS if kv[0] != "input_shape"),
            ("name", None),
        ),
        description="MobileNet (Howard et al. 2017): depthwise-separable convolutions, 4.3 M parameters",
    ),
)
