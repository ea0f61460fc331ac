"""ResNet50V2, ResNet101V2 and ResNet152V2 (He et al. 2016, pre-activation), as keras.applications
builds them, at any size.

Written from keras/src/applications/resnet.py (`residual_block_v2`, `stack_residual_blocks_v2`)
and resnet_v2.py: the same layers in the same order with Keras' names (conv1_conv,
conv2_block1_preact_bn ... conv5_block3_out, post_bn, avg_pool, predictions), so `get_weights()`
of a keras.applications model and Keras' weight files fit unchanged. The identity shortcut of a
strided block is Keras' 1x1 max pool with stride 2 (unnamed there, `<block>_0_pool` here).

Keras' v2 differs from the paper's and from timm's ResNetV2 in where a stage reduces: in its
*last* block (conv2_block3 of ResNet50V2 halves the map), and conv5 does not reduce, so conv2's
last block output is at stride 8 and the network's total stride stays 32.

Why any H, W >= 1 works: the stem is ResNet v1's (`anyshape.archs.resnet.stem`); the strided 3x3
conv of a block reads a 1-pixel zero padding (Keras' ZeroPadding2D) and its shortcut is a 1x1
stride-2 window, both giving ceil(n / 2) at either parity, so the two always add up. The head is a
global average pool. keras.applications' minimum of 32 (`obtain_input_shape(min_size=32)` in
`resnet.ResNet`) is policy.
"""

from __future__ import annotations

from dataclasses import dataclass

from anyshape.archs.base import KERAS_ARGS, Arch, ArchConfig, classifier_head
from anyshape.archs.resnet import KERAS_BN_EPSILON, STEM_WIDTH, stage_names, stem

__all__ = ["ResNetV2Config", "ARCHS"]


@dataclass(frozen=True)
class ResNetV2Config(ArchConfig):
    """ResNet v2's build arguments: the ArchConfig ones and the blocks per stage."""

    depths: tuple[int, ...] = (3, 4, 6, 3)  # pre-activation bottleneck blocks in conv2, conv3, ...

    def problems(self) -> list[str]:
        out = super().problems()
        if not self.depths or not all(isinstance(d, int) and d >= 2 for d in self.depths):
            out.append(
                f"depths must be a non-empty tuple of integers >= 2 (a stage's first block projects, its "
                f"last reduces), got {self.depths!r}"
            )
        return out


def _preact_bottleneck(net, x, name: str, filters: int, stride: int, projection: bool):
    """Keras' `residual_block_v2`: BN + ReLU first (the "preact", which the projection shortcut
    reads too), then 1x1 / 3x3 (strided, on a 1-pixel zero padding) / 1x1 (4x wider) convs, added
    to the shortcut without a closing BN or ReLU. Layers in Keras' order (the order of `get_weights()`)."""
    eps = KERAS_BN_EPSILON
    what = f"pre-activation bottleneck {filters}-{filters}-{4 * filters}" + (f", stride {stride}" if stride > 1 else "")
    with net.stage(name, what + (", projection" if projection else "")):
        preact = net.bn(x, epsilon=eps, name=f"{name}_preact_bn")
        preact = net.activation(preact, "relu", name=f"{name}_preact_relu")
        if projection:
            shortcut = net.conv(preact, 4 * filters, 1, stride, name=f"{name}_0_conv")
        elif stride > 1:
            shortcut = net.max_pool(x, 1, stride, name=f"{name}_0_pool")
        else:
            shortcut = x
        y = net.conv(preact, filters, 1, use_bias=False, name=f"{name}_1_conv")
        y = net.bn(y, epsilon=eps, name=f"{name}_1_bn")
        y = net.activation(y, "relu", name=f"{name}_1_relu")
        y = net.pad(y, 1, name=f"{name}_2_pad")
        y = net.conv(y, filters, 3, stride, use_bias=False, name=f"{name}_2_conv")
        y = net.bn(y, epsilon=eps, name=f"{name}_2_bn")
        y = net.activation(y, "relu", name=f"{name}_2_relu")
        y = net.conv(y, 4 * filters, 1, name=f"{name}_3_conv")
        return net.add([shortcut, y], name=f"{name}_out")


def network(net, cfg: ResNetV2Config, x):
    """ResNet v2 on `x` (NHWC): the stem (conv1 without BN), conv2 ... conv5 (each stage's first
    block projects the shortcut, its last block reduces, except in the last stage), the closing
    BN + ReLU (post), the head."""
    x = stem(net, x, conv_bias=True, bn_epsilon=KERAS_BN_EPSILON, preact=True)
    stages = stage_names(cfg.depths)
    for i, (stage, depth) in enumerate(zip(stages, cfg.depths)):
        for b in range(1, depth + 1):
            stride = 2 if b == depth and i < len(stages) - 1 else 1
            x = _preact_bottleneck(net, x, f"{stage}_block{b}", STEM_WIDTH * 2**i, stride, projection=b == 1)
    with net.stage("post", "BN + ReLU"):
        x = net.bn(x, epsilon=KERAS_BN_EPSILON, name="post_bn")
        x = net.activation(x, "relu", name="post_relu")
    return classifier_head(net, cfg, x)


def _arch(keras_name: str, depths: tuple[int, ...], params: str) -> Arch:
    keras_model_name = keras_name.lower()  # "resnet50v2": keras.applications' default model name
    stages = stage_names(depths)
    return Arch(
        name=keras_model_name.replace("v2", "_v2"),
        keras_name=keras_name,
        family="resnet_v2",
        config_class=ResNetV2Config,
        network=network,
        defaults={"depths": depths},
        default_size=224,
        keras_min_size=32,  # keras/src/applications/resnet.py (ResNet): obtain_input_shape(min_size=32)
        first_conv="conv1_conv",
        blocks=tuple(f"{s}_block{b}_out" for s, d in zip(stages, depths) for b in range(1, d + 1)),
        # the last block output at each stride: stage i's last block reduces, so its output at
        # stride 4 * 2**i is the one before (conv5 does not reduce: post_relu is at stride 32)
        feature_points=("conv1_conv", *(f"{s}_block{d - 1}_out" for s, d in zip(stages[:-1], depths)), "post_relu"),
        preprocessing="tf",
        keras_args=(*KERAS_ARGS, ("name", keras_model_name)),
        description=f"ResNet v2 (He et al. 2016, pre-activation), {sum(depths)} bottleneck blocks, {params} parameters",
    )


ARCHS = (
    _arch("ResNet50V2", (3, 4, 6, 3), "25.6 M"),
    _arch("ResNet101V2", (3, 4, 23, 3), "44.7 M"),
    _arch("ResNet152V2", (3, 8, 36, 3), "60.4 M"),
)
