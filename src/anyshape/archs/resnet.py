"""ResNet50, ResNet101 and ResNet152 (He et al. 2015, v1), as keras.applications builds them, at any size.

Written from keras/src/applications/resnet.py (`ResNet`, `residual_block_v1`,
`stack_residual_blocks_v1`): the same layers in the same order with Keras' names (conv1_conv,
conv2_block1_0_conv ... conv5_block3_out, avg_pool, predictions), so `get_weights()` of a
keras.applications model and Keras' weight files fit unchanged.

Why any H, W >= 1 works: every strided window keeps ceil(n / 2) at both parities (the stem's
7x7 conv and 3x3 max pool are zero-padded by Keras' own ZeroPadding2D of 3 and 1, the stride-2
1x1 convs cannot collapse), and the head is a global average pool. Nothing in the arithmetic
depends on parity, so a free-size model equals a fixed one at odd sizes too. keras.applications'
minimum of 32 (`obtain_input_shape(min_size=32)`) is policy.

Three build options make the same function torchvision's ResNet v1.5, which the PyTorch weight sets
will need; the defaults are Keras' network:
- `stride_in_3x3`: torchvision strides a bottleneck in its 3x3 conv (zero padding of 1 on each
  side, as torch pads), Keras in its first 1x1 conv (which then reads only every other pixel).
- `conv_bias`: Keras' convolutions have biases, torchvision's have none (BatchNorm's beta follows).
- `bn_epsilon`: Keras 1.001e-5, torch 1e-5.
"""

from __future__ import annotations

from dataclasses import dataclass

from anyshape.archs.base import KERAS_ARGS, Arch, ArchConfig, classifier_head

__all__ = ["ResNetConfig", "ARCHS", "stem", "stage_names", "KERAS_BN_EPSILON"]

KERAS_BN_EPSILON = 1.001e-5  # every BatchNormalization of keras.applications' ResNets and DenseNets
STEM_WIDTH = 64


@dataclass(frozen=True)
class ResNetConfig(ArchConfig):
    """ResNet v1's build arguments: the ArchConfig ones, the blocks per stage, torchvision's options."""

    depths: tuple[int, ...] = (3, 4, 6, 3)  # bottleneck blocks in conv2, conv3, ...
    stride_in_3x3: bool = False  # True: torchvision's v1.5 (stride in the 3x3 conv, not the first 1x1)
    conv_bias: bool = True  # False: torchvision's convolutions without bias
    bn_epsilon: float = KERAS_BN_EPSILON  # torch: 1e-5

    def problems(self) -> list[str]:
        out = super().problems()
        if not self.depths or not all(isinstance(d, int) and d >= 1 for d in self.depths):
            out.append(f"depths must be a non-empty tuple of positive integers, got {self.depths!r}")
        if not isinstance(self.bn_epsilon, (int, float)) or self.bn_epsilon <= 0:
            out.append(f"bn_epsilon must be a positive number, got {self.bn_epsilon!r}")
        return out


def stage_names(depths) -> list[str]:
    """conv2, conv3, ...: Keras' names of the stages after the stem."""
    return [f"conv{i + 2}" for i in range(len(depths))]


def stem(net, x, *, conv_bias: bool, bn_epsilon: float, preact: bool):
    """conv1 (7x7 conv 64, stride 2, on Keras' 3-pixel zero padding) and pool1 (3x3 max pool,
    stride 2, on a 1-pixel zero padding); v1 normalises and activates between them, v2
    (`preact`) does not."""
    with net.stage("conv1", f"7x7 conv {STEM_WIDTH}, stride 2" + ("" if preact else " + BN + ReLU")):
        x = net.pad(x, 3, name="conv1_pad")
        x = net.conv(x, STEM_WIDTH, 7, 2, use_bias=conv_bias, name="conv1_conv")
        if not preact:
            x = net.bn(x, epsilon=bn_epsilon, name="conv1_bn")
            x = net.activation(x, "relu", name="conv1_relu")
    with net.stage("pool1", "3x3 max pool, stride 2"):
        x = net.pad(x, 1, name="pool1_pad")
        return net.max_pool(x, 3, 2, name="pool1_pool")


def _bottleneck(net, cfg: ResNetConfig, x, name: str, filters: int, stride: int, projection: bool):
    """Keras' `residual_block_v1`: 1x1 / 3x3 / 1x1 (4x wider) convs with BN, added to the shortcut
    (a 1x1 conv + BN when the shape changes), then ReLU. The layers are made in Keras' order
    (shortcut first), which is the order of `get_weights()`."""
    eps, bias = cfg.bn_epsilon, cfg.conv_bias
    what = f"bottleneck {filters}-{filters}-{4 * filters}" + (f", stride {stride}" if stride > 1 else "")
    with net.stage(name, what + (", projection" if projection else "")):
        if projection:
            shortcut = net.conv(x, 4 * filters, 1, stride, use_bias=bias, name=f"{name}_0_conv")
            shortcut = net.bn(shortcut, epsilon=eps, name=f"{name}_0_bn")
        else:
            shortcut = x
        stride_1x1, stride_3x3 = (1, stride) if cfg.stride_in_3x3 else (stride, 1)
        y = net.conv(x, filters, 1, stride_1x1, use_bias=bias, name=f"{name}_1_conv")
        y = net.bn(y, epsilon=eps, name=f"{name}_1_bn")
        y = net.activation(y, "relu", name=f"{name}_1_relu")
        if stride_3x3 > 1:  # torch's symmetric padding of 1 (TF's "same" pads only bottom/right at even sizes)
            y = net.pad(y, 1, name=f"{name}_2_pad")
            y = net.conv(y, filters, 3, stride_3x3, use_bias=bias, name=f"{name}_2_conv")
        else:
            y = net.conv(y, filters, 3, padding="same", use_bias=bias, name=f"{name}_2_conv")
        y = net.bn(y, epsilon=eps, name=f"{name}_2_bn")
        y = net.activation(y, "relu", name=f"{name}_2_relu")
        y = net.conv(y, 4 * filters, 1, use_bias=bias, name=f"{name}_3_conv")
        y = net.bn(y, epsilon=eps, name=f"{name}_3_bn")
        y = net.add([shortcut, y], name=f"{name}_add")
        return net.activation(y, "relu", name=f"{name}_out")


def network(net, cfg: ResNetConfig, x):
    """ResNet v1 on `x` (NHWC): the stem, conv2 ... conv5 (stride 1 in conv2's first block, 2 in
    the other stages' first blocks, which also project the shortcut), the head."""
    x = stem(net, x, conv_bias=cfg.conv_bias, bn_epsilon=cfg.bn_epsilon, preact=False)
    for i, (stage, depth) in enumerate(zip(stage_names(cfg.depths), cfg.depths)):
        for b in range(1, depth + 1):
            stride = 2 if i > 0 and b == 1 else 1
            x = _bottleneck(net, cfg, x, f"{stage}_block{b}", STEM_WIDTH * 2**i, stride, projection=b == 1)
    return classifier_head(net, cfg, x)


def _arch(keras_name: str, depths: tuple[int, ...], params: str) -> Arch:
    name = keras_name.lower()
    stages = stage_names(depths)
    return Arch(
        name=name,
        keras_name=keras_name,
        family="resnet",
        config_class=ResNetConfig,
        network=network,
        defaults={"depths": depths},
        default_size=224,
        keras_min_size=32,  # keras/src/applications/resnet.py: obtain_input_shape(min_size=32)
        first_conv="conv1_conv",
        blocks=tuple(f"{s}_block{b}_out" for s, d in zip(stages, depths) for b in range(1, d + 1)),
        feature_points=("conv1_relu", *(f"{s}_block{d}_out" for s, d in zip(stages, depths))),
        preprocessing="caffe",
        keras_args=(*KERAS_ARGS, ("name", name)),
        description=f"ResNet v1 (He et al. 2015), {sum(depths)} bottleneck blocks, {params} parameters",
    )


ARCHS = (
    _arch("ResNet50", (3, 4, 6, 3), "25.6 M"),
    _arch("ResNet101", (3, 4, 23, 3), "44.7 M"),
    _arch("ResNet152", (3, 8, 36, 3), "60.4 M"),
)
