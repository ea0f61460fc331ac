"""The layouts of the family's PyTorch twins: which torch module each weighted Keras layer of a
network takes its tensors from (`twin_layout`), torchvision's for ResNet, DenseNet, VGG and
MobileNetV2, timm's for MobileNet, InceptionResNetV2, EfficientNet B0-B7, EfficientNetV2, MobileNetV3,
ConvNeXt, Xception and NASNetLarge. The tensors themselves are converted and loaded by
`anyshape.weights.torch_family`; the weight sets are `anyshape.weights.torch_sets`.

A twin is a torchvision network that computes what a keras.applications network computes once the
network is built with a few options (its weight set's `overrides`, which go into the model's Config,
so a saved model reloads as what it is):

    network       torchvision keys            build overrides
    resnet50/101/152  conv1, bn1, layerN.B.convK / bnK / downsample.0/1, fc
                                                  stride_in_3x3=True (v1.5), conv_bias=False,
                                                  bn_epsilon=1e-5
    densenet121/169/201  features.conv0 / norm0, features.denseblockN.denselayerJ.norm1 / conv1 /
                  norm2 / conv2, features.transitionN.norm / conv, features.norm5, classifier
                                                  bn_epsilon=1e-5
    vgg16/19      features.I (conv), classifier.0 / 3 / 6
                                                  none (fc1's columns are reordered, below)
    mobilenet_v2  features.0.0 / 0.1, features.N.conv..., features.18.0 / 18.1, classifier.1
                                                  padding="symmetric", bn_epsilon=1e-5
    mobilenet (timm mobilenetv1_100)  conv_stem, bn1, blocks.S.J.conv_dw / bn1 / conv_pw / bn2,
                  classifier (Keras' 1x1 conv_preds)
                                                  padding="symmetric", bn_epsilon=1e-5
    inception_resnet_v2 (timm)  conv2d_1a.conv / .bn ..., mixed_5b.branchB[.J], repeat.K...,
                  repeat_1.K..., repeat_2.K..., block8, conv2d_7b, classif
                                                  bn_scale=True
    efficientnet_b0..b7 (timm tf_efficientnet_b<N>)  conv_stem, bn1, blocks.S.J.conv_dw / bn1 / se.* /
                  conv_pw / bn2 (first stage) or conv_pw / bn1 / conv_dw / bn2 / se.* / conv_pwl / bn3,
                  conv_head, bn2, classifier         none (the in-graph Normalization takes the
                                                  weights' mean and std)
    efficientnet_v2_b0..b3, _s, _m, _l (timm tf_efficientnetv2_*)  conv_stem, bn1, blocks.0.J.conv /
                  bn1, blocks.S.J.conv_exp / bn1 / conv_pwl / bn2 (fused), the MBConv blocks as
                  EfficientNet's, conv_head, bn2, classifier
                                                  rescaling_divisor=127.5 where the weights take
                                                  [-1, 1] (the set's overrides; see torch_sets)
    xception (timm legacy_xception)  conv1 / bn1, conv2 / bn2, blockK.skip / skipbn, blockK.rep.I (a
                  SeparableConv2d: conv1 depthwise + pointwise) / rep.I+1, conv3 / bn3, conv4 / bn4, fc
                                                  padding="symmetric", bn_epsilon=1e-5
    nasnet_large (timm nasnetalarge)  conv0.conv / bn, cell_stem_0/1, cell_0 ... cell_17,
                  reduction_cell_0/1: conv_1x1, conv_prev_1x1 or path_1 / path_2 / final_path_bn,
                  comb_iter_I_{left,right}.separable_1/2 (depthwise_conv2d + pointwise_conv2d) /
                  bn_sep_1/2; last_linear
                                                  max_pool_padding="same"

Sources (torchvision 0.29, read for this module): torchvision/models/resnet.py (Bottleneck puts the
stride in conv2, "ResNet V1.5"; every conv has bias=False; nn.BatchNorm2d's eps 1e-5),
densenet.py (`_DenseLayer` norm1/conv1/norm2/conv2, `_Transition` norm/conv/pool, and
`_load_state_dict`, which renames the published files' older keys `denselayerJ.norm.1` to
`denselayerJ.norm1`: the same rename is applied here), vgg.py (`make_layers`: a conv then a ReLU per
"conv" entry, one MaxPool2d per "M"; classifier Linear(512 * 7 * 7, 4096), ReLU, Dropout,
Linear(4096, 4096), ReLU, Dropout, Linear(4096, classes) after `AdaptiveAvgPool2d((7, 7))` and
`torch.flatten`), mobilenetv2.py (`Conv2dNormActivation` = conv, BN, ReLU6 with padding
(k - 1) // 2, symmetric; `InvertedResidual` conv = [expand,] depthwise, project conv, BN); and timm
1.0's timm/models/inception_resnet_v2.py (ConvNormAct with BatchNorm eps 1e-3, the TF port's
"valid" convs as padding=0 and its "same" stride-1 convs as symmetric padding, mixed_5b's
AvgPool2d(count_include_pad=False); the Block35/17/8 `conv2d` has a bias).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from anyshape.weights.checkpoint import WeightFileError

__all__ = ["BN_KEYS", "Unit", "twin_layout", "head_units", "normalised_keys", "head_classes"]

BN_KEYS = ("weight", "bias", "running_mean", "running_var")


@dataclass(frozen=True)
class Unit:
    """One weighted Keras layer and the torch module it comes from."""

    layer: str  # the Keras layer name
    module: str  # the torch module's name (key prefix)
    # "conv", "conv_bias", "depthwise", "separable" (and "sep_conv2d", its other key names), "bn", "ln" (LayerNorm), "param", "dense", "dense_chw",
    # "dense_conv" (a Linear as Keras' 1x1 Conv2D)
    kind: str

    def keys(self) -> tuple[str, ...]:
        m = self.module
        if self.kind == "bn":
            return tuple(f"{m}.{k}" for k in BN_KEYS)
        if self.kind in ("conv", "depthwise"):
            return (f"{m}.weight",)
        if self.kind == "param":  # a bare parameter (ConvNeXt's layer scale gamma)
            return (m,)
        if self.kind == "separable":  # timm's SeparableConv2d: depthwise conv1, then pointwise
            return (f"{m}.conv1.weight", f"{m}.pointwise.weight")
        if self.kind == "sep_conv2d":  # timm nasnet's SeparableConv2d
            return (f"{m}.depthwise_conv2d.weight", f"{m}.pointwise_conv2d.weight")
        return (f"{m}.weight", f"{m}.bias")


def _resnet(config) -> list[Unit]:
    units = [Unit("conv1_conv", "conv1", "conv"), Unit("conv1_bn", "bn1", "bn")]
    for i, depth in enumerate(config.depths):
        for b in range(depth):
            ours, theirs = f"conv{i + 2}_block{b + 1}", f"layer{i + 1}.{b}"
            if b == 0:
                units += [Unit(f"{ours}_0_conv", f"{theirs}.downsample.0", "conv")]
                units += [Unit(f"{ours}_0_bn", f"{theirs}.downsample.1", "bn")]
            for k in (1, 2, 3):
                units += [
                    Unit(f"{ours}_{k}_conv", f"{theirs}.conv{k}", "conv"),
                    Unit(f"{ours}_{k}_bn", f"{theirs}.bn{k}", "bn"),
                ]
    return units + [Unit("predictions", "fc", "dense")]


def _densenet(config) -> list[Unit]:
    units = [Unit("conv1_conv", "features.conv0", "conv"), Unit("conv1_bn", "features.norm0", "bn")]
    for i, depth in enumerate(config.blocks):
        if i > 0:
            t = f"features.transition{i}"
            units += [Unit(f"pool{i + 1}_bn", f"{t}.norm", "bn"), Unit(f"pool{i + 1}_conv", f"{t}.conv", "conv")]
        for j in range(1, depth + 1):
            ours, theirs = f"conv{i + 2}_block{j}", f"features.denseblock{i + 1}.denselayer{j}"
            units += [Unit(f"{ours}_0_bn", f"{theirs}.norm1", "bn"), Unit(f"{ours}_1_conv", f"{theirs}.conv1", "conv")]
            units += [Unit(f"{ours}_1_bn", f"{theirs}.norm2", "bn"), Unit(f"{ours}_2_conv", f"{theirs}.conv2", "conv")]
    return units + [Unit("bn", "features.norm5", "bn"), Unit("predictions", "classifier", "dense")]


def _vgg(config) -> list[Unit]:
    units, index = [], 0
    for i, depth in enumerate(config.depths):
        for j in range(1, depth + 1):
            units.append(Unit(f"block{i + 1}_conv{j}", f"features.{index}", "conv_bias"))
            index += 2  # the conv and its ReLU
        index += 1  # the block's MaxPool2d
    return units + [
        Unit("fc1", "classifier.0", "dense_chw"),
        Unit("fc2", "classifier.3", "dense"),
        Unit("predictions", "classifier.6", "dense"),
    ]


def _mobilenet_v2(config) -> list[Unit]:
    from anyshape.archs.mobilenet_v2 import SETTINGS

    units = [Unit("Conv1", "features.0.0", "conv"), Unit("bn_Conv1", "features.0.1", "bn")]
    block = 0
    for expansion, _, repeats, _ in SETTINGS:
        for _ in range(repeats):
            ours, theirs = (f"block_{block}_" if block else "expanded_conv_"), f"features.{block + 1}.conv"
            if expansion != 1:
                units += [
                    Unit(f"{ours}expand", f"{theirs}.0.0", "conv"),
                    Unit(f"{ours}expand_BN", f"{theirs}.0.1", "bn"),
                ]
            dw = f"{theirs}.1" if expansion != 1 else f"{theirs}.0"
            project = 2 if expansion != 1 else 1
            units += [Unit(f"{ours}depthwise", f"{dw}.0", "depthwise"), Unit(f"{ours}depthwise_BN", f"{dw}.1", "bn")]
            units += [Unit(f"{ours}project", f"{theirs}.{project}", "conv")]
            units += [Unit(f"{ours}project_BN", f"{theirs}.{project + 1}", "bn")]
            block += 1
    last = f"features.{block + 1}"
    units += [Unit("Conv_1", f"{last}.0", "conv"), Unit("Conv_1_bn", f"{last}.1", "bn")]
    return units + [Unit("predictions", "classifier.1", "dense")]


# timm/models/efficientnet.py `_gen_mobilenet_v1`: arch_def stages of 1, 2, 2, 6 and 2 "dsa" blocks
# (Keras' blocks 1-13, the first of stages 1-4 strided)
_TIMM_MOBILENET_V1_STAGES = (1, 2, 2, 6, 2)


def _mobilenet(config) -> list[Unit]:
    """timm's mobilenetv1_100 / _125 (timm/models/efficientnet.py `_gen_mobilenet_v1`, the EfficientNet
    builder: conv_stem / bn1, blocks.S.J a DepthwiseSeparableConv "dsa" (conv_dw / bn1, conv_pw / bn2,
    each BatchNorm followed by ReLU6, no skip), no conv_head (`head_conv=False`), the Linear
    classifier), in Keras' names (conv1, conv_dw_<k>, conv_pw_<k>, the 1x1 conv_preds)."""
    if config.depth_multiplier != 1:
        raise WeightFileError(
            "timm's mobilenetv1 has one filter per channel in its depthwise convolutions (Keras' "
            f"depth_multiplier=1); this MobileNet has depth_multiplier={config.depth_multiplier} and no "
            "PyTorch twin"
        )
    units = [Unit("conv1", "conv_stem", "conv"), Unit("conv1_bn", "bn1", "bn")]
    k = 1
    for stage, count in enumerate(_TIMM_MOBILENET_V1_STAGES):
        for j in range(count):
            theirs = f"blocks.{stage}.{j}"
            units += [
                Unit(f"conv_dw_{k}", f"{theirs}.conv_dw", "depthwise"),
                Unit(f"conv_dw_{k}_bn", f"{theirs}.bn1", "bn"),
            ]
            units += [Unit(f"conv_pw_{k}", f"{theirs}.conv_pw", "conv"), Unit(f"conv_pw_{k}_bn", f"{theirs}.bn2", "bn")]
            k += 1
    return units + [Unit("conv_preds", "classifier", "dense_conv")]


def _conv_bn(layer: str, module: str) -> list[Unit]:
    """timm's ConvNormAct (`conv`, `bn`) as Keras' conv2d_bn (`<name>`, `<name>_bn`)."""
    return [Unit(layer, f"{module}.conv", "conv"), Unit(f"{layer}_bn", f"{module}.bn", "bn")]


def _branches(ours: str, theirs: str, lengths: dict[int, int]) -> list[Unit]:
    """Branches `{ours}_branchB[_J]` <- `{theirs}.branchB[.J]`: one unit is a ConvNormAct, several a Sequential."""
    units: list[Unit] = []
    for b, n in lengths.items():
        if n == 1:
            units += _conv_bn(f"{ours}_branch{b}", f"{theirs}.branch{b}")
        else:
            for j in range(n):
                units += _conv_bn(f"{ours}_branch{b}_{j}", f"{theirs}.branch{b}.{j}")
    return units


def _inception_resnet_v2(config) -> list[Unit]:
    """timm's inception_resnet_v2 (timm/models/inception_resnet_v2.py: conv2d_1a ... conv2d_4a,
    mixed_5b, repeat (10 Block35), mixed_6a, repeat_1 (20 Block17), mixed_7a, repeat_2 (9 Block8),
    block8, conv2d_7b, classif), whose layers anyshape's names follow."""
    from anyshape.archs.inception_resnet_v2 import REPEATS

    units: list[Unit] = []
    for layer, module in (("1a_3x3", "1a"), ("2a_3x3", "2a"), ("2b_3x3", "2b"), ("3b_1x1", "3b"), ("4a_3x3", "4a")):
        units += _conv_bn(f"stem_{layer}", f"conv2d_{module}")
    units += _branches("mixed_5b", "mixed_5b", {0: 1, 1: 2, 2: 3})
    units += _conv_bn("mixed_5b_branch3_1", "mixed_5b.branch3.1")

    def repeat(kind: str, sequence: str, lengths: dict[int, int]) -> list[Unit]:
        out: list[Unit] = []
        count = REPEATS[kind][0]
        for k in range(1, count + 1):
            # timm's last Block8 (no ReLU) is its own module, `block8`
            theirs = "block8" if kind == "block8" and k == count else f"{sequence}.{k - 1}"
            out += _branches(f"{kind}_{k}", theirs, lengths)
            out.append(Unit(f"{kind}_{k}_conv", f"{theirs}.conv2d", "conv_bias"))
        return out

    units += repeat("block35", "repeat", {0: 1, 1: 2, 2: 3})
    units += _branches("mixed_6a", "mixed_6a", {0: 1, 1: 3})
    units += repeat("block17", "repeat_1", {0: 1, 1: 3})
    units += _branches("mixed_7a", "mixed_7a", {0: 2, 1: 2, 2: 3})
    units += repeat("block8", "repeat_2", {0: 1, 1: 3})
    units += _conv_bn("conv_7b", "conv2d_7b")
    return units + [Unit("predictions", "classif", "dense")]


def _efficientnet(config) -> list[Unit]:
    """timm's tf_efficientnet_* (timm/models/_efficientnet_blocks.py: DepthwiseSeparableConv conv_dw /
    bn1 / se / conv_pw / bn2 in the first stage, InvertedResidual conv_pw / bn1 / conv_dw / bn2 / se /
    conv_pwl / bn3 after it; SqueezeExcite conv_reduce / conv_expand with biases), in Keras' blocks."""
    from anyshape.archs.efficientnet import plan

    units = [Unit("stem_conv", "conv_stem", "conv"), Unit("stem_bn", "bn1", "bn")]
    for block in plan(config):
        stage, j = int(block.name[5:-1]) - 1, ord(block.name[-1]) - 97
        ours, theirs = block.name, f"blocks.{stage}.{j}"
        se = (
            [Unit(f"{ours}_se_reduce", f"{theirs}.se.conv_reduce", "conv_bias")]
            + [Unit(f"{ours}_se_expand", f"{theirs}.se.conv_expand", "conv_bias")]
            if 0 < block.se_ratio <= 1
            else []
        )
        if block.expand_ratio == 1:
            units += [
                Unit(f"{ours}_dwconv", f"{theirs}.conv_dw", "depthwise"),
                Unit(f"{ours}_bn", f"{theirs}.bn1", "bn"),
            ]
            units += se + [Unit(f"{ours}_project_conv", f"{theirs}.conv_pw", "conv")]
            units += [Unit(f"{ours}_project_bn", f"{theirs}.bn2", "bn")]
        else:
            units += [Unit(f"{ours}_expand_conv", f"{theirs}.conv_pw", "conv")]
            units += [Unit(f"{ours}_expand_bn", f"{theirs}.bn1", "bn")]
            units += [
                Unit(f"{ours}_dwconv", f"{theirs}.conv_dw", "depthwise"),
                Unit(f"{ours}_bn", f"{theirs}.bn2", "bn"),
            ]
            units += se + [Unit(f"{ours}_project_conv", f"{theirs}.conv_pwl", "conv")]
            units += [Unit(f"{ours}_project_bn", f"{theirs}.bn3", "bn")]
    units += [Unit("top_conv", "conv_head", "conv"), Unit("top_bn", "bn2", "bn")]
    return units + [Unit("predictions", "classifier", "dense")]


def _efficientnet_v2(config) -> list[Unit]:
    """timm's tf_efficientnetv2_* (timm/models/efficientnet.py `_gen_efficientnetv2_base` / `_s` /
    `_m` / `_l`: arch_def stages "cn" (ConvBnAct: conv / bn1), "er" (EdgeResidual: conv_exp / bn1 /
    conv_pwl / bn2) and "ir" (InvertedResidual as EfficientNet's, SE reduced from the block's input
    width as Keras'), the same stage table as Keras' DEFAULT_BLOCKS_ARGS), in Keras' blocks: the
    FusedMBConv with expand ratio 1 is one k x k `project_conv`, with another ratio a k x k
    `expand_conv` and a 1x1 `project_conv`; MBConv's depthwise conv is `dwconv2`."""
    from anyshape.archs.efficientnet_v2 import plan

    units = [Unit("stem_conv", "conv_stem", "conv"), Unit("stem_bn", "bn1", "bn")]
    for block in plan(config):
        stage, j = int(block.name[5:-1]) - 1, ord(block.name[-1]) - 97
        ours, theirs = block.name, f"blocks.{stage}.{j}"
        if block.fused and block.expand_ratio == 1:
            units += [Unit(f"{ours}_project_conv", f"{theirs}.conv", "conv")]
            units += [Unit(f"{ours}_project_bn", f"{theirs}.bn1", "bn")]
            continue
        if block.fused:
            units += [Unit(f"{ours}_expand_conv", f"{theirs}.conv_exp", "conv")]
            units += [Unit(f"{ours}_expand_bn", f"{theirs}.bn1", "bn")]
            units += [Unit(f"{ours}_project_conv", f"{theirs}.conv_pwl", "conv")]
            units += [Unit(f"{ours}_project_bn", f"{theirs}.bn2", "bn")]
            continue
        units += [Unit(f"{ours}_expand_conv", f"{theirs}.conv_pw", "conv")]
        units += [Unit(f"{ours}_expand_bn", f"{theirs}.bn1", "bn")]
        units += [Unit(f"{ours}_dwconv2", f"{theirs}.conv_dw", "depthwise"), Unit(f"{ours}_bn", f"{theirs}.bn2", "bn")]
        if 0 < block.se_ratio <= 1:
            units += [Unit(f"{ours}_se_reduce", f"{theirs}.se.conv_reduce", "conv_bias")]
            units += [Unit(f"{ours}_se_expand", f"{theirs}.se.conv_expand", "conv_bias")]
        units += [Unit(f"{ours}_project_conv", f"{theirs}.conv_pwl", "conv")]
        units += [Unit(f"{ours}_project_bn", f"{theirs}.bn3", "bn")]
    units += [Unit("top_conv", "conv_head", "conv"), Unit("top_bn", "bn2", "bn")]
    return units + [Unit("predictions", "classifier", "dense")]


def _mobilenet_v3(config) -> list[Unit]:
    """timm's tf_mobilenetv3_{large,small}[_minimal]_<width> (timm/models/mobilenetv3.py
    `_gen_mobilenet_v3`: its arch_def stages hold 1, 2, 3, 4, 2, 3 blocks (large) or 1, 2, 3, 2, 3
    (small), the first a DepthwiseSeparableConv, then a ConvBnAct `cn` stage (conv, bn1); the head is
    conv_head (with a bias) and the Linear classifier), in Keras' blocks and top (conv_2, logits)."""
    from anyshape.archs.mobilenet_v3 import STACKS

    stages = {"large": (1, 2, 3, 4, 2, 3), "small": (1, 2, 3, 2, 3)}[config.model_type]
    units = [Unit("conv", "conv_stem", "conv"), Unit("conv_bn", "bn1", "bn")]
    block = 0
    for stage, count in enumerate(stages):
        for j in range(count):
            ours, theirs = (f"expanded_conv_{block}_" if block else "expanded_conv_"), f"blocks.{stage}.{j}"
            se = []
            if STACKS[config.model_type][block][4] and not config.minimalistic:
                se = [
                    Unit(f"{ours}squeeze_excite_conv", f"{theirs}.se.conv_reduce", "conv_bias"),
                    Unit(f"{ours}squeeze_excite_conv_1", f"{theirs}.se.conv_expand", "conv_bias"),
                ]
            if block == 0:  # DepthwiseSeparableConv: conv_dw, bn1, se, conv_pw, bn2
                dw, project = [(f"{theirs}.conv_dw", f"{theirs}.bn1")], (f"{theirs}.conv_pw", f"{theirs}.bn2")
            else:  # InvertedResidual: conv_pw, bn1, conv_dw, bn2, se, conv_pwl, bn3
                units += [Unit(f"{ours}expand", f"{theirs}.conv_pw", "conv")]
                units += [Unit(f"{ours}expand_bn", f"{theirs}.bn1", "bn")]
                dw, project = [(f"{theirs}.conv_dw", f"{theirs}.bn2")], (f"{theirs}.conv_pwl", f"{theirs}.bn3")
            units += [Unit(f"{ours}depthwise", dw[0][0], "depthwise"), Unit(f"{ours}depthwise_bn", dw[0][1], "bn")]
            units += se + [Unit(f"{ours}project", project[0], "conv"), Unit(f"{ours}project_bn", project[1], "bn")]
            block += 1
    last = f"blocks.{len(stages)}.0"
    units += [Unit("conv_1", f"{last}.conv", "conv"), Unit("conv_1_bn", f"{last}.bn1", "bn")]
    return units + [Unit("conv_2", "conv_head", "conv_bias"), Unit("logits", "classifier", "dense_conv")]


def _convnext(config, p: str = "convnext_tiny") -> list[Unit]:
    """timm's convnext_* (timm/models/convnext.py, conv_mlp=False: stem.0 conv / stem.1 LayerNorm2d,
    stages.I.downsample.0 LayerNorm2d / .1 conv for I >= 1, stages.I.blocks.J.conv_dw (depthwise
    7x7, a bias; Keras' grouped Conv2D kernel (7, 7, 1, C)) / norm / mlp.fc1 / mlp.fc2 / gamma,
    head.norm and head.fc; every LayerNorm eps 1e-6 as Keras'), in Keras' names. Without the top,
    Keras' network ends in a LayerNormalization: it takes head.norm (timm's features with
    num_classes=0 are pooled and normalised by it). `p`: the layers' prefix, the network's name."""
    units = [Unit(f"{p}_stem_conv", "stem.0", "conv_bias"), Unit(f"{p}_stem_layernorm", "stem.1", "ln")]
    for i, depth in enumerate(config.depths):
        if i:
            units += [Unit(f"{p}_downsampling_layernorm_{i - 1}", f"stages.{i}.downsample.0", "ln")]
            units += [Unit(f"{p}_downsampling_conv_{i - 1}", f"stages.{i}.downsample.1", "conv_bias")]
        for j in range(depth):
            ours, theirs = f"{p}_stage_{i}_block_{j}", f"stages.{i}.blocks.{j}"
            units += [
                Unit(f"{ours}_depthwise_conv", f"{theirs}.conv_dw", "conv_bias"),
                Unit(f"{ours}_layernorm", f"{theirs}.norm", "ln"),
                Unit(f"{ours}_pointwise_conv_1", f"{theirs}.mlp.fc1", "dense"),
                Unit(f"{ours}_pointwise_conv_2", f"{theirs}.mlp.fc2", "dense"),
                Unit(f"{ours}_layer_scale", f"{theirs}.gamma", "param"),
            ]
    norm = f"{p}_head_layernorm" if config.include_top else "layer_normalization"
    return units + [Unit(norm, "head.norm", "ln"), Unit(f"{p}_head_dense", "head.fc", "dense")]


def _xception(config) -> list[Unit]:
    """timm's legacy_xception (timm/models/xception.py): conv1 / bn1, conv2 / bn2, then Keras' block
    k (2 ... 13) is timm's block{k - 1}: skip / skipbn (the 1x1 shortcut of a reduction block) and
    `rep`, a Sequential of [ReLU,] SeparableConv2d, BatchNorm per separable conv (block1 starts
    without the ReLU); conv3 / bn3 and conv4 / bn4 are block14's; fc the classifier."""
    from anyshape.archs.xception import MIDDLE_BLOCKS

    units = [*_pair("block1_conv1", "conv1", "bn1"), *_pair("block1_conv2", "conv2", "bn2")]
    for k in range(2, 14):
        ours, theirs = f"block{k}", f"block{k - 1}"
        if k not in MIDDLE_BLOCKS:
            units += [Unit(f"{ours}_residual_conv", f"{theirs}.skip", "conv")]
            units += [Unit(f"{ours}_residual_bn", f"{theirs}.skipbn", "bn")]
        first = 0 if k == 2 else 1  # the index of the first separable conv in `rep`
        for i in range(3 if k in MIDDLE_BLOCKS else 2):
            at = first + 3 * i
            units += [Unit(f"{ours}_sepconv{i + 1}", f"{theirs}.rep.{at}", "separable")]
            units += [Unit(f"{ours}_sepconv{i + 1}_bn", f"{theirs}.rep.{at + 1}", "bn")]
    for i, n in ((1, 3), (2, 4)):
        units += [Unit(f"block14_sepconv{i}", f"conv{n}", "separable"), Unit(f"block14_sepconv{i}_bn", f"bn{n}", "bn")]
    return units + [Unit("predictions", "fc", "dense")]


# Keras' NASNet separable blocks per cell kind -> timm's BranchSeparables (comb_iter_<i>_<side>)
_NASNET_BRANCHES = {
    "normal": (
        ("left1", "0_left"),
        ("right1", "0_right"),
        ("left2", "1_left"),
        ("right2", "1_right"),
        ("left5", "4_left"),
    ),
    "reduction": (
        ("left1", "0_left"),
        ("right1", "0_right"),
        ("right2", "1_right"),
        ("right3", "2_right"),
        ("left4", "4_left"),
    ),
}


def _nasnet(config) -> list[Unit]:
    """timm's nasnetalarge (timm/models/nasnet.py NASNetALarge, Cadene's port of TF-slim's NASNet-A
    Large): conv0.conv / .bn; cell_stem_0, cell_stem_1, cell_0 ... cell_5, reduction_cell_0, cell_6
    ... cell_11, reduction_cell_1, cell_12 ... cell_17 in Keras' cell order; per cell `conv_1x1` (an
    ActConvBn: Keras' `<kind>_conv_1` / `_bn_1`), the adjust block as `path_1.conv` / `path_2.conv`
    / `final_path_bn` where Keras halves `p` and `conv_prev_1x1` where it projects it, and each
    BranchSeparables (separable_1 / bn_sep_1 / separable_2 / bn_sep_2: Keras' `separable_conv_1_<id>`
    ...); last_linear. timm builds 6 normal cells per stage, two reductions wider by 2, and the cell
    after a reduction reads the cell before it: Keras' NASNetLarge structure (any widths)."""
    from anyshape.archs.nasnet import cells

    if (config.num_blocks, config.filter_multiplier, config.skip_reduction) != (6, 2, True):
        raise WeightFileError(
            "timm's nasnetalarge is NASNet-A Large's structure (num_blocks=6, filter_multiplier=2, "
            f"skip_reduction=True); this NASNet has num_blocks={config.num_blocks}, filter_multiplier="
            f"{config.filter_multiplier}, skip_reduction={config.skip_reduction} and no PyTorch twin"
        )
    units = [Unit("stem_conv1", "conv0.conv", "conv"), Unit("stem_bn1", "conv0.bn", "bn")]
    # (level, channels) of the cell input `ip` and of `p`, as the network's adjust block decides
    ip, p = (1, config.stem_block_filters), None
    normal = 0
    for kind, block_id, filters in cells(config):
        if block_id.startswith("stem"):
            module = f"cell_stem_{int(block_id[-1]) - 1}"
        elif kind == "reduction":
            module = f"reduction_cell_{0 if block_id == f'reduce_{config.num_blocks}' else 1}"
        else:
            module, normal = f"cell_{normal}", normal + 1
        if p is not None and p[0] < ip[0]:  # halved: the factorised reduction
            units += [Unit(f"adjust_conv_1_{block_id}", f"{module}.path_1.conv", "conv")]
            units += [Unit(f"adjust_conv_2_{block_id}", f"{module}.path_2.conv", "conv")]
            units += [Unit(f"adjust_bn_{block_id}", f"{module}.final_path_bn", "bn")]
        elif p is not None and p[1] != filters:  # projected
            units += _conv_bn_act(
                f"adjust_conv_projection_{block_id}", f"adjust_bn_{block_id}", f"{module}.conv_prev_1x1"
            )
        units += _conv_bn_act(f"{kind}_conv_1_{block_id}", f"{kind}_bn_1_{block_id}", f"{module}.conv_1x1")
        for ours, theirs in _NASNET_BRANCHES[kind]:
            b, t = f"{kind}_{ours}_{block_id}", f"{module}.comb_iter_{theirs}"
            units += [Unit(f"separable_conv_1_{b}", f"{t}.separable_1", "sep_conv2d")]
            units += [Unit(f"separable_conv_1_bn_{b}", f"{t}.bn_sep_1", "bn")]
            units += [Unit(f"separable_conv_2_{b}", f"{t}.separable_2", "sep_conv2d")]
            units += [Unit(f"separable_conv_2_bn_{b}", f"{t}.bn_sep_2", "bn")]
        out = (ip[0] + (kind == "reduction"), filters * (6 if kind == "normal" else 4))
        skip = kind == "reduction" and not block_id.startswith("stem")  # skip_reduction
        ip, p = out, (p if skip else ip)  # the next cell reads this one's input (or, skipped, its `p`)
    return units + [Unit("predictions", "last_linear", "dense")]


def _conv_bn_act(conv: str, bn: str, module: str) -> list[Unit]:
    """timm's ActConvBn (ReLU, `conv`, `bn`) as Keras' conv and BatchNorm layers."""
    return [Unit(conv, f"{module}.conv", "conv"), Unit(bn, f"{module}.bn", "bn")]


def _pair(layer: str, conv: str, bn: str) -> list[Unit]:
    return [Unit(layer, conv, "conv"), Unit(f"{layer}_bn", bn, "bn")]


# how many of a family's last units are its top (the rest load into a model without it)
_TOP_UNITS = {"vgg": 3, "mobilenet_v3": 2}


def head_units(arch, units: list[Unit]) -> list[Unit]:
    """The last units of `units`, network `arch`'s layout: its top (the classifier)."""
    return units[-_TOP_UNITS.get(arch.family, 1) :]


_LAYOUTS = {
    "convnext": _convnext,
    "mobilenet_v3": _mobilenet_v3,
    "mobilenet": _mobilenet,
    "efficientnet": _efficientnet,
    "efficientnet_v2": _efficientnet_v2,
    "resnet": _resnet,
    "densenet": _densenet,
    "vgg": _vgg,
    "mobilenet_v2": _mobilenet_v2,
    "inception_resnet_v2": _inception_resnet_v2,
    "xception": _xception,
    "nasnet": _nasnet,
}


def twin_layout(arch, config) -> list[Unit]:
    """The weighted layers of network `arch` built as `config`, in Keras' order, each with its torch
    module (the head last); raises for a family without a PyTorch twin."""
    if arch.family not in _LAYOUTS:
        raise WeightFileError(
            f"{arch.keras_name} has no PyTorch twin anyshape converts (PyTorch state dicts load into "
            f"InceptionV3, {', '.join(sorted(_LAYOUTS))}); use its Keras weights (weights='imagenet')"
        )
    if arch.family == "convnext":
        return _convnext(config, arch.name)
    return _LAYOUTS[arch.family](config)


# torchvision's published DenseNet files use keys from before module names could not hold a dot
# (densenet.py `_load_state_dict`): "denselayer1.norm.1.weight" is "denselayer1.norm1.weight"
_OLD_DENSENET_KEY = re.compile(
    r"^(.*denselayer\d+\.(?:norm|relu|conv))\.((?:[12])\.(?:weight|bias|running_mean|running_var))$"
)


# timm's mobilenetv2_100 (timm/models/efficientnet.py `_gen_mobilenet_v2`: the EfficientNet builder's
# conv_stem / bn1, blocks.S.J, conv_head / bn2, classifier) is torchvision's MobileNetV2 function
# (ReLU6, symmetric padding, BatchNorm eps 1e-5) under other names: its DepthwiseSeparableConv
# (conv_dw / bn1, conv_pw / bn2) and InvertedResidual (conv_pw / bn1, conv_dw / bn2, conv_pwl / bn3)
# modules, in order, are torchvision's features.1 ... features.17
_TIMM_MOBILENET_V2_BLOCK = re.compile(r"^blocks\.(\d+)\.(\d+)\.(conv_dw|conv_pw|conv_pwl|bn1|bn2|bn3)\.(.+)$")
_TIMM_MOBILENET_V2_DS = {"conv_dw": "conv.0.0", "bn1": "conv.0.1", "conv_pw": "conv.1", "bn2": "conv.2"}
_TIMM_MOBILENET_V2_IR = {
    "conv_pw": "conv.0.0",
    "bn1": "conv.0.1",
    "conv_dw": "conv.1.0",
    "bn2": "conv.1.1",
    "conv_pwl": "conv.2",
    "bn3": "conv.3",
}
_TIMM_MOBILENET_V2_TOP = {"conv_stem": "features.0.0", "bn1": "features.0.1", "conv_head": "features.18.0"}


def _timm_mobilenet_v2_keys(state: dict) -> dict:
    """timm's mobilenetv2_100 state dict under torchvision's MobileNetV2 keys."""
    blocks = sorted({(int(m.group(1)), int(m.group(2))) for k in state if (m := _TIMM_MOBILENET_V2_BLOCK.match(k))})
    index = {block: i + 1 for i, block in enumerate(blocks)}  # features.1 ... in the builder's order
    out = {}
    for key, value in state.items():
        m = _TIMM_MOBILENET_V2_BLOCK.match(key)
        if m:
            stage, block, module, rest = int(m.group(1)), int(m.group(2)), m.group(3), m.group(4)
            names = _TIMM_MOBILENET_V2_DS if index[(stage, block)] == 1 else _TIMM_MOBILENET_V2_IR
            key = f"features.{index[(stage, block)]}.{names[module]}.{rest}"
        else:
            module, _, rest = key.partition(".")
            if module == "bn2":  # the head's BatchNorm (blocks' are matched above)
                key = f"features.18.1.{rest}"
            elif module == "classifier":
                key = f"classifier.1.{rest}"
            elif module in _TIMM_MOBILENET_V2_TOP:
                key = f"{_TIMM_MOBILENET_V2_TOP[module]}.{rest}"
        out[key] = value
    return out


def normalised_keys(state: dict, family: str) -> dict:
    """`state` with torchvision's published DenseNet files' older keys renamed, and timm's
    mobilenetv2_100 keys renamed to torchvision's MobileNetV2 ones (others as they are)."""
    if family == "mobilenet_v2" and "conv_stem.weight" in state:
        return _timm_mobilenet_v2_keys(state)
    if family != "densenet":
        return state
    out = {}
    for key, value in state.items():
        m = _OLD_DENSENET_KEY.match(key)
        out[m.group(1) + m.group(2) if m else key] = value
    return out


def head_classes(state: dict, arch, config) -> int | None:
    """The class count of the classifier in state dict `state` of network `arch`, None without one."""
    bias = state.get(f"{twin_layout(arch, config)[-1].module}.bias")
    return None if bias is None else int(bias.shape[0])
