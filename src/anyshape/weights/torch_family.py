"""PyTorch twins of the family: torchvision state dicts into ResNet, DenseNet, VGG and MobileNetV2,
timm's into InceptionResNetV2 and EfficientNet B0-B7 (the weight sets: `anyshape.weights.torch_sets`).

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
    inception_resnet_v2 (timm)  conv2d_1a.conv / .bn ..., mixed_5b.branchB[.J], repeat.K...,
                  repeat_1.K..., repeat_2.K..., block8, conv2d_7b, classif
                                                  bn_scale=True
    efficientnet_b0..b7 (timm tf_efficientnet_b<N>)  conv_stem, bn1, blocks.S.J.conv_dw / bn1 / se.* /
                  conv_pw / bn2 (first stage) or conv_pw / bn1 / conv_dw / bn2 / se.* / conv_pwl / bn3,
                  conv_head, bn2, classifier         none (the in-graph Normalization takes the
                                                  weights' mean and std)

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

What differs in layout and how it is converted (tensors become Keras' arrays, in Keras' order):
  - conv weight (out, in, kh, kw) -> kernel (kh, kw, in, out); depthwise (C, 1, kh, kw) -> (kh, kw, C, 1);
  - BatchNorm weight, bias, running_mean, running_var -> gamma, beta, moving_mean, moving_variance
    (num_batches_tracked, a training counter, is dropped);
  - Linear weight (out, in) -> kernel (in, out);
  - VGG's fc1: torch flattens block5_pool channel-first, (c, h, w), Keras channel-last, (h, w, c):
    its 25,088 input columns are reordered. torchvision's adaptive 7x7 average pool is the identity
    at 224 x 224 only, so with the top VGG's twin is the same function at 224 (with or without the
    top at any size >= 32 its features are); at other sizes anyshape's fully-convolutional head
    averages the classifier over 7 x 7 windows where torchvision resamples block5_pool to 7 x 7.

Everything else is the same arithmetic: the stems' zero padding before a max pool that follows a
ReLU equals torch's -inf padding (the inputs are >= 0), "same" 3x3 stride-1 convs pad one pixel on
each side as torch's padding=1 does.

A state dict is read without running code (`anyshape.weights.torch.read_state_dict`); one that
does not match the layout is refused, naming the first tensor that is missing, misshapen or left
over; nothing is assigned before everything is checked (`anyshape.weights.family`'s plan then
adapts the first convolution to the model's channels and the classifier to its classes, as for
Keras' files).
"""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass, replace

import numpy as np

from anyshape.weights.checkpoint import WeightFileError
from anyshape.weights.torch_sets import TWIN_OVERRIDES, TWIN_SOURCE
from anyshape.weights.weight_set import WeightSet

__all__ = [
    "TWIN_OVERRIDES",
    "TWIN_FAMILIES",
    "twin_layout",
    "state_dict_to_entries",
    "load_twin_weights",
    "entries_to_state_dict",
    "head_classes",
    "normalised_keys",
]

log = logging.getLogger("anyshape.weights")

TWIN_FAMILIES = tuple(TWIN_OVERRIDES)
_SOURCE = {family: f"{source}'s" for family, source in TWIN_SOURCE.items()}

BN_KEYS = ("weight", "bias", "running_mean", "running_var")


@dataclass(frozen=True)
class Unit:
    """One weighted Keras layer and the torch module it comes from."""

    layer: str  # the Keras layer name
    module: str  # the torch module's name (key prefix)
    # "conv", "conv_bias", "depthwise", "bn", "ln" (LayerNorm), "param", "dense", "dense_chw",
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


# how many of a family's last units are its top (the rest load into a model without it)
_TOP_UNITS = {"vgg": 3, "mobilenet_v3": 2}


def _top(arch, units: list[Unit]) -> list[Unit]:
    return units[-_TOP_UNITS.get(arch.family, 1) :]


_LAYOUTS = {
    "convnext": _convnext,
    "mobilenet_v3": _mobilenet_v3,
    "efficientnet": _efficientnet,
    "resnet": _resnet,
    "densenet": _densenet,
    "vgg": _vgg,
    "mobilenet_v2": _mobilenet_v2,
    "inception_resnet_v2": _inception_resnet_v2,
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


def normalised_keys(state: dict, family: str) -> dict:
    """`state` with torchvision's published DenseNet files' older keys renamed (others as they are)."""
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


def _convert(unit: Unit, tensors: list[np.ndarray], source: str) -> list[np.ndarray]:
    """The torch tensors of `unit` as the Keras layer's arrays; raises naming a tensor of the wrong rank."""
    w = tensors[0]
    if unit.kind in ("conv", "conv_bias", "depthwise"):
        if w.ndim != 4 or (unit.kind == "depthwise" and w.shape[1] != 1):
            want = "(channels, 1, kh, kw)" if unit.kind == "depthwise" else "(out, in, kh, kw)"
            raise WeightFileError(f"{source}: tensor {unit.module}.weight has shape {tuple(w.shape)}, not {want}")
        kernel = w.transpose(2, 3, 0, 1) if unit.kind == "depthwise" else w.transpose(2, 3, 1, 0)
        return [np.ascontiguousarray(kernel), *tensors[1:]]
    if unit.kind in ("ln", "param"):
        if any(t.ndim != 1 or t.shape != w.shape for t in tensors):
            shapes = ", ".join(f"{k} {tuple(t.shape)}" for k, t in zip(unit.keys(), tensors))
            raise WeightFileError(f"{source}: {unit.module} has tensors of unequal or wrong shapes ({shapes})")
        return list(tensors)
    if unit.kind == "bn":
        if any(t.ndim != 1 or t.shape != w.shape for t in tensors):
            shapes = ", ".join(f"{k} {tuple(t.shape)}" for k, t in zip(unit.keys(), tensors))
            raise WeightFileError(
                f"{source}: BatchNorm {unit.module} has tensors of unequal or wrong shapes ({shapes})"
            )
        return list(tensors)
    if w.ndim != 2 or tensors[1].shape != (w.shape[0],):
        raise WeightFileError(
            f"{source}: tensor {unit.module}.weight has shape {tuple(w.shape)} with bias "
            f"{tuple(tensors[1].shape)}, not a Linear layer's (out, in) and (out,)"
        )
    if unit.kind == "dense_chw":  # (out, c * h * w) -> kernel (h * w * c, out): Keras' channels_last Flatten
        side = 7  # torchvision's AdaptiveAvgPool2d((7, 7))
        if w.shape[1] % (side * side):
            raise WeightFileError(
                f"{source}: tensor {unit.module}.weight has {w.shape[1]} inputs, not channels x 7 x 7 "
                "(torchvision VGG's classifier after its 7 x 7 adaptive pool)"
            )
        c = w.shape[1] // (side * side)
        # one copy (fc1 is 411 MB): the reshape of the transposed view is a new C-ordered array
        return [w.reshape(w.shape[0], c, side, side).transpose(2, 3, 1, 0).reshape(-1, w.shape[0]), tensors[1]]
    if unit.kind == "dense_conv":  # Keras' 1x1 Conv2D classifier (MobileNetV3's logits)
        return [np.ascontiguousarray(w.T)[None, None], tensors[1]]
    return [np.ascontiguousarray(w.T), tensors[1]]


def state_dict_to_entries(
    state: dict, arch, config, source: str = "state dict", normalization=None
) -> list[tuple[str, str, list]]:
    """[(Keras layer, torch module, arrays in the layer's weight order)] in Keras' order, from a
    torchvision state dict of network `arch` (as `config` builds it; the head is read when the file
    has one and `config` has a top). Refuses a state dict that does not fit, naming the first tensor missing or left over.
    `normalization`: (mean, std) on [0, 1] pixels the weights expect, for a network that normalises
    in its graph (EfficientNet's Normalization layer gets mean and std ** 2)."""
    state = normalised_keys(state, arch.family)
    units = twin_layout(arch, config)
    head = _top(arch, units)
    has_head = all(k in state for k in head[0].keys())
    out: list[tuple[str, str, list]] = []
    used: set[str] = set()
    if "normalization" in arch.input_layers:
        mean, std = normalization if normalization is not None else ((0.5,) * 3, (0.5,) * 3)
        variance = np.square(np.asarray(std, np.float32))
        out.append(("normalization", "(in-graph)", [np.asarray(mean, np.float32), variance, np.array(0, np.int64)]))
    for unit in units:
        if unit in head and not has_head:
            continue
        missing = [k for k in unit.keys() if k not in state]
        if missing:
            first = next((k for k in state if k not in used and not k.endswith("num_batches_tracked")), None)
            hint = f"; the first tensor not yet matched is {first!r}" if first else ""
            raise WeightFileError(
                f"{source} is not the PyTorch layout of {arch.keras_name} ({_SOURCE[arch.family]}): it has no tensor {missing[0]!r} "
                f"(for {arch.keras_name}'s layer {unit.layer}){hint}. It is probably another architecture "
                "or configuration; nothing was loaded."
            )
        used.update(unit.keys())
        if unit in head and not config.include_top:
            continue  # the file's top, not converted for a model without it (VGG's fc1 is 411 MB)
        out.append(
            (unit.layer, unit.module, _convert(unit, [np.asarray(state[k], np.float32) for k in unit.keys()], source))
        )
    left = [k for k in state if k not in used and not k.endswith("num_batches_tracked")]
    if left:
        raise WeightFileError(
            f"{source} is not the PyTorch layout of {arch.keras_name} ({_SOURCE[arch.family]}): tensor {left[0]!r} has no place in it"
            + (f" (and {len(left) - 1} more)" if len(left) > 1 else "")
            + ". It is probably another architecture or configuration; nothing was loaded."
        )
    return out


def _check_shapes(model, arch, config, entries, source: str) -> None:
    """Every tensor against the built layer's weights, naming the first torch tensor that differs;
    the first convolution's input channels and the head are left to the family plan (channel rules,
    another class count, VGG's head forms)."""
    units = twin_layout(arch, config)
    head, keys = {unit.layer for unit in _top(arch, units)}, {unit.layer: unit.keys() for unit in units}
    for layer_name, module, arrays in entries:
        if layer_name in head or module == "(in-graph)":
            continue
        try:
            layer = model.get_layer(layer_name)
        except ValueError:
            raise WeightFileError(f"{source}: the model has no layer {layer_name!r} for {module}") from None
        shapes = [tuple(int(d) for d in w.shape) for w in layer.weights]
        got = [tuple(a.shape) for a in arrays]
        if layer_name == arch.first_conv:
            got = [(*got[0][:2], shapes[0][2], got[0][3]), *got[1:]]
        if got != shapes:
            i = next(i for i, (a, b) in enumerate(zip(got, shapes)) if a != b) if len(got) == len(shapes) else 0
            key = keys[layer_name][min(i, len(keys[layer_name]) - 1)]
            raise WeightFileError(
                f"{source} does not fit this {arch.keras_name}: tensor {key!r} gives {got[i]} for layer "
                f"{layer_name}, which has {shapes[i] if i < len(shapes) else 'no such weight'}. It is probably "
                "another architecture or configuration; nothing was loaded."
            )


def load_twin_weights(
    model, arch, config, weight_set: WeightSet, *, channel_adapt=None, cache_dir=None, progress=True, seed=None
) -> WeightSet:
    """Load a torchvision state dict (`weight_set`, format "torch") into `model`, network `arch`
    built as `config`, all or nothing: read, convert, check every tensor, then assign."""
    from anyshape.weights import channels as channel_rules
    from anyshape.weights.family import _pair, _plan, assign_plan, family_weight_file
    from anyshape.weights.torch import read_state_dict

    conv = model.get_layer(arch.first_conv)
    channels = int(conv.kernel.shape[2])
    if channel_adapt is not None:
        channel_rules.check_rule(channel_adapt, channels)
    twin_layout(arch, config)  # refuses a family without a twin before any download
    path = os.fspath(family_weight_file(weight_set, arch, config, True, cache_dir, progress))
    normalization = None
    if weight_set.mean is not None and weight_set.std is not None:
        normalization = (weight_set.mean, weight_set.std)
    elif weight_set.mode == "tf":
        normalization = ((0.5,) * 3, (0.5,) * 3)
    elif weight_set.mode == "torch":
        from anyshape.data_config import IMAGENET_MEAN, IMAGENET_STD

        normalization = (IMAGENET_MEAN, IMAGENET_STD)
    entries = state_dict_to_entries(read_state_dict(path), arch, config, source=path, normalization=normalization)
    _check_shapes(model, arch, config, entries, path)
    # the family plan pairs arrays with the model's weighted layers in `model.layers` order (Keras'
    # files' order), which is the graph's, not always the order the layers were made in
    order = {layer.name: i for i, layer in enumerate(layer for layer in model.layers if layer.weights)}
    entries = sorted(entries, key=lambda e: order.get(e[0], len(order)))
    plan = _plan(
        model,
        arch,
        config,
        _pair(model, arch, config, [(name, arrays) for name, _, arrays in entries], path),
        path,
        channel_adapt,
        seed,
        channels,
    )
    assign_plan(model, plan)  # everything is checked
    loaded = replace(weight_set, path=path, num_classes=config.classes if config.include_top else None)
    model.anyshape_weights = loaded
    log.info("loaded weights %r from %s into %d layers", weight_set.name, path, len(plan.values))
    for note in plan.notes:
        log.warning(note)
    return loaded


def entries_to_state_dict(model, arch, config) -> dict[str, np.ndarray]:
    """The inverse: a built model's weights as torchvision's state dict (Keras layout -> torch keys),
    e.g. to check a conversion or to export the backbone to PyTorch. The model must have Keras'
    Flatten head for VGG's classifier (224 x 224)."""
    out: dict[str, np.ndarray] = {}
    for unit in twin_layout(arch, config):
        try:
            layer = model.get_layer(unit.layer)
        except ValueError:
            continue  # no top
        arrays = [np.asarray(w.numpy() if hasattr(w, "numpy") else w) for w in layer.get_weights()]
        if unit.kind in ("bn", "param"):
            out.update(zip(unit.keys(), arrays))
            continue
        w = arrays[0]
        if unit.kind == "depthwise":
            w = w.transpose(2, 3, 0, 1)
        elif w.ndim == 4 and unit.kind == "dense_conv":
            w = w[0, 0].T
        elif w.ndim == 4:
            w = w.transpose(3, 2, 0, 1)
        else:
            if unit.kind == "dense_chw":
                c = w.shape[0] // 49
                w = w.reshape(7, 7, c, -1).transpose(2, 0, 1, 3).reshape(c * 49, -1)
            w = w.T
        out[f"{unit.module}.weight"] = np.ascontiguousarray(w)
        if len(arrays) > 1:
            out[f"{unit.module}.bias"] = arrays[1]
    return out
