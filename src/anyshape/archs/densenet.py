"""DenseNet121, DenseNet169 and DenseNet201 (Huang et al. 2017), as keras.applications builds them,
at any size and in either data format.

Written from keras/src/applications/densenet.py (`DenseNet`, `dense_block`, `conv_block`,
`transition_block`): the same layers in the same order with Keras' names (conv1_conv,
conv2_block1_0_bn ... conv5_block16_concat, bn, avg_pool, predictions), so `get_weights()` of a
keras.applications model and Keras' weight files fit unchanged. Keras' two unnamed stem paddings
are `conv1_pad` and `pool1_pad` here.

keras.applications refuses channels_first for DenseNet; here it builds and runs on every backend
(`anyshape.archs.keras_ops.build` computes in channels_last between two transposes).

The minimum: the stem's 7x7 conv and 3x3 max pool are zero-padded and keep ceil(n / 2), but each
of the three transitions ends in a 2x2 stride-2 *valid* average pool that needs 2 pixels, so
pool4 needs 2, pool3 4, pool2 8 and the input 29 (not Keras' 32,
`obtain_input_shape(min_size=32)`, which is policy). At odd sizes those pools drop the last row
or column, as in Keras and torchvision; nothing depends on parity, so a free-size model equals a
fixed one.

`bn_epsilon` (Keras 1.001e-5, torchvision 1e-5) is the option the PyTorch weight sets will need;
otherwise torchvision's DenseNet is this network (its convolutions have no bias either).
"""

from __future__ import annotations

from dataclasses import dataclass

from anyshape.archs.base import KERAS_ARGS, Arch, ArchConfig, classifier_head
from anyshape.archs.resnet import KERAS_BN_EPSILON

__all__ = ["DenseNetConfig", "ARCHS"]

STEM_WIDTH = 64


@dataclass(frozen=True)
class DenseNetConfig(ArchConfig):
    """DenseNet's build arguments: the ArchConfig ones and Keras' `blocks`, `growth_rate`,
    `reduction` (keras/src/applications/densenet.py), and torchvision's BatchNorm epsilon."""

    blocks: tuple[int, ...] = (6, 12, 24, 16)  # conv blocks in each dense block (conv2 ... conv5)
    growth_rate: int = 32  # channels each conv block adds
    reduction: float = 0.5  # a transition's channel compression
    bn_epsilon: float = KERAS_BN_EPSILON  # torch: 1e-5

    def problems(self) -> list[str]:
        out = super().problems()
        if not self.blocks or not all(isinstance(b, int) and b >= 1 for b in self.blocks):
            out.append(f"blocks must be a non-empty tuple of positive integers, got {self.blocks!r}")
        if not isinstance(self.growth_rate, int) or self.growth_rate < 1:
            out.append(f"growth_rate must be a positive integer, got {self.growth_rate!r}")
        if not isinstance(self.reduction, (int, float)) or not 0 < self.reduction <= 1:
            out.append(f"reduction must be in (0, 1], got {self.reduction!r}")
        if not isinstance(self.bn_epsilon, (int, float)) or self.bn_epsilon <= 0:
            out.append(f"bn_epsilon must be a positive number, got {self.bn_epsilon!r}")
        return out


def _conv_block(net, cfg: DenseNetConfig, x, name: str, channels: int):
    """Keras' `conv_block`: BN + ReLU + 1x1 conv (4 x growth) + BN + ReLU + 3x3 conv (growth),
    concatenated after its input. Returns (output, its channel count)."""
    g, eps = cfg.growth_rate, cfg.bn_epsilon
    with net.stage(name, f"dense layer: 1x1 conv {4 * g}, 3x3 conv {g}, concat ({channels + g})"):
        y = net.bn(x, epsilon=eps, name=f"{name}_0_bn")
        y = net.activation(y, "relu", name=f"{name}_0_relu")
        y = net.conv(y, 4 * g, 1, use_bias=False, name=f"{name}_1_conv")
        y = net.bn(y, epsilon=eps, name=f"{name}_1_bn")
        y = net.activation(y, "relu", name=f"{name}_1_relu")
        y = net.conv(y, g, 3, padding="same", use_bias=False, name=f"{name}_2_conv")
        return net.concat([x, y], name=f"{name}_concat"), channels + g


def _transition(net, cfg: DenseNetConfig, x, name: str, channels: int):
    """Keras' `transition_block`: BN + ReLU + 1x1 conv (channels x reduction) + 2x2 average pool,
    stride 2, valid. Returns (output, its channel count)."""
    out = int(channels * cfg.reduction)
    with net.stage(name, f"transition: 1x1 conv {out}, 2x2 average pool, stride 2"):
        x = net.bn(x, epsilon=cfg.bn_epsilon, name=f"{name}_bn")
        x = net.activation(x, "relu", name=f"{name}_relu")
        x = net.conv(x, out, 1, use_bias=False, name=f"{name}_conv")
        return net.avg_pool(x, 2, 2, name=f"{name}_pool"), out


def network(net, cfg: DenseNetConfig, x):
    """DenseNet on `x` (NHWC): the stem, dense blocks conv2 ... conv5 with transitions pool2 ...
    pool4 between them, the closing BN + ReLU, the head."""
    eps = cfg.bn_epsilon
    with net.stage("conv1", f"7x7 conv {STEM_WIDTH}, stride 2 + BN + ReLU"):
        x = net.pad(x, 3, name="conv1_pad")
        x = net.conv(x, STEM_WIDTH, 7, 2, use_bias=False, name="conv1_conv")
        x = net.bn(x, epsilon=eps, name="conv1_bn")
        x = net.activation(x, "relu", name="conv1_relu")
    with net.stage("pool1", "3x3 max pool, stride 2"):
        x = net.pad(x, 1, name="pool1_pad")
        x = net.max_pool(x, 3, 2, name="pool1")
    channels = STEM_WIDTH
    for i, depth in enumerate(cfg.blocks):
        if i > 0:
            x, channels = _transition(net, cfg, x, f"pool{i + 1}", channels)
        for b in range(1, depth + 1):
            x, channels = _conv_block(net, cfg, x, f"conv{i + 2}_block{b}", channels)
    with net.stage("bn", "BN + ReLU"):
        x = net.bn(x, epsilon=eps, name="bn")
        x = net.activation(x, "relu", name="relu")
    return classifier_head(net, cfg, x)


def _arch(keras_name: str, blocks: tuple[int, ...], params: str) -> Arch:
    name = keras_name.lower()
    stages = [f"conv{i + 2}" for i in range(len(blocks))]
    return Arch(
        name=name,
        keras_name=keras_name,
        family="densenet",
        config_class=DenseNetConfig,
        network=network,
        defaults={"blocks": blocks},
        default_size=224,
        keras_min_size=32,  # keras/src/applications/densenet.py: obtain_input_shape(min_size=32)
        first_conv="conv1_conv",
        blocks=tuple(
            block
            for i, (s, d) in enumerate(zip(stages, blocks))
            for block in ((f"pool{i + 1}_pool",) if i > 0 else ())
            + tuple(f"{s}_block{b}_concat" for b in range(1, d + 1))
        ),
        # a dense block's output is the last map at its stride (the transition after it halves it)
        feature_points=("conv1_relu", *(f"{s}_block{d}_concat" for s, d in zip(stages[:-1], blocks)), "relu"),
        preprocessing="torch",
        keras_args=(*KERAS_ARGS, ("name", name)),
        description=f"DenseNet (Huang et al. 2017), {sum(blocks)} dense layers, {params} parameters",
    )


ARCHS = (
    _arch("DenseNet121", (6, 12, 24, 16), "8.1 M"),
    _arch("DenseNet169", (6, 12, 32, 32), "14.3 M"),
    _arch("DenseNet201", (6, 12, 48, 32), "20.2 M"),
)
