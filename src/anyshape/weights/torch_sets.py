"""The family's PyTorch twins as data: their weight sets, the build overrides that make each network
its twin's function, and which torch model each set is the state dict of (the parity reference).

`anyshape.weights.registry` adds `twin_sets()` to its table; `anyshape.weights.torch_family` maps
the state dicts. Nothing here reads a file or imports torch, Keras or a network module at import.

Where the figures come from:
  - torchvision 0.29, torchvision/models/{resnet,densenet,vgg,mobilenetv2}.py `<Net>_Weights`: url,
    acc@1, and transforms ImageClassification(crop_size=224[, resize_size=232]) (resize 256 by
    default, bilinear, ImageNet mean/std). The 8 hex digits before ".pth" are the start of the file's
    sha256 (torch.hub's check_hash rule; torchvision loads them with check_hash=True). "tv_in1k" is
    IMAGENET1K_V1 and "tv2_in1k" IMAGENET1K_V2, as timm tags the same files; `torchvision/<network>`
    names torchvision's DEFAULT.
  - timm 1.0, timm/models/efficientnet.py default_cfgs `tf_efficientnet_b<N>.<tag>` (`_cfg`: 1000
    classes, crop_pct 0.875, bicubic, IMAGENET_DEFAULT_MEAN/STD; per member input_size and crop_pct;
    the ap_in1k sets IMAGENET_INCEPTION_MEAN/STD; ra_in1k for b5 and b7 only, in1k for b0-b5 only;
    hf_hub_id timm/, no hash on the hub, no top-1 in the config). timm's default tag of a model is
    the first one its table lists (timm/models/_registry.py `generate_default_cfgs`): ns_jft_in1k
    for every tf_efficientnet_b<N>, which `timm/tf_efficientnet_b<N>` names here too.
  - timm/models/efficientnet.py default_cfgs `tf_efficientnetv2_<member>.<tag>` (the TF ports of
    the official EfficientNetV2 checkpoints; `tf_efficientnetv2_<member>()` sets bn_eps
    BN_EPS_TF_DEFAULT and pad_type "same", as Keras' network): hf_hub_id timm/, 1000 classes,
    bicubic; s, m, l and b3.in21k_ft_in1k take mean = std = (0.5, 0.5, 0.5), i.e. x / 127.5 - 1
    (Keras' EfficientNetV2 scales by 1 / 128: these sets build with rescaling_divisor=127.5), b0,
    b1, b2 and b3.in1k the `_cfg` default IMAGENET_DEFAULT_MEAN/STD (Keras' own normalisation).
    The input size here is timm's test_input_size, which is Keras' default size of the member
    (timm's input_size is the smaller training size); crop_pct and crop_mode as listed ("squash"
    for m, l and b3.in21k_ft_in1k: each side resized to size / crop_pct, the aspect ratio not kept).
    The in21k sets of B3, S, M and L (ImageNet-21k, not fine-tuned: 21,843 classes, mean = std =
    0.5, the in21k_ft_in1k set's size and crop) are registered; xl (no Keras member) is not.
  - timm/models/resnet.py and densenet.py default_cfgs `resnet{50,101,152}.<tag>`, `densenet121.ra_in1k`
    (`_TIMM_TORCHVISION_LAYOUT` below).
  - timm/models/efficientnet.py default_cfgs `mobilenetv1_{100,125}.ra4_e3600_r224_in1k` (`_MOBILENET_V1`
    below).
  - Each timm set's size is Keras' default size of the network: timm's input_size with its crop_pct,
    or, where timm trained below Keras' size, its test_input_size with test_crop_pct when it gives
    one (timm/data/config.py `resolve_data_config(use_test_size=True)`): EfficientNetV2's sets,
    resnet50.a1h_in1k (trained at 176) and a3_in1k (160). ConvNeXt's `_384` sets are at 384.
  - timm/models/inception_resnet_v2.py default_cfgs: hf_hub_id timm/, input 299, crop_pct 0.8975,
    bicubic, IMAGENET_INCEPTION_MEAN/STD, i.e. [-1, 1], 1000 classes; tf_in1k listed first.
  - timm/models/xception.py default_cfgs `legacy_xception.tf_in1k` (Cadene's port of Keras' Xception
    weights): url .../releases/download/v0.1-cadene/xception-43020ad28.pth (no hf_hub_id: the file is
    a GitHub release, with no published hash), input 299, crop_pct 0.8975, bicubic,
    mean = std = 0.5 ([-1, 1]), 1000 classes; top-1 78.892 as the module doc reports it.
"""

from __future__ import annotations

import os
from dataclasses import replace

from anyshape.data_config import IMAGENET_MEAN, IMAGENET_STD, INCEPTION_MEAN, INCEPTION_STD
from anyshape.weights.weight_set import WeightSet

__all__ = [
    "TWIN_OVERRIDES",
    "TWIN_SOURCE",
    "HF_URL",
    "twin_sets",
    "unpublished_twin_set",
    "file_set_with_mode",
    "efficientnet_v2_overrides",
]

HF_URL = "https://huggingface.co/timm/{}/resolve/main/model.safetensors"

TWIN_OVERRIDES: dict[str, tuple[tuple[str, object], ...]] = {
    "resnet": (("stride_in_3x3", True), ("conv_bias", False), ("bn_epsilon", 1e-5)),
    "densenet": (("bn_epsilon", 1e-5),),
    "vgg": (),
    "mobilenet_v2": (("padding", "symmetric"), ("bn_epsilon", 1e-5)),
    # timm's mobilenetv1_100: torch's padding=1 on the stride-2 convs (conv_stem, the strided conv_dw),
    # BatchNorm eps 1e-5; ReLU6 and the Linear classifier (Keras' 1x1 conv_preds) as Keras'
    "mobilenet": (("padding", "symmetric"), ("bn_epsilon", 1e-5)),
    # timm's ConvNormAct has a BatchNorm gamma (eps 1e-3 as Keras'); its mixed_5b pool excludes the
    # padding, as Keras' does
    "inception_resnet_v2": (("bn_scale", True),),
    # timm's tf_efficientnet_*: TF "same" padding (Conv2dSame), BatchNorm eps 1e-3, as Keras'; the
    # input normalisation stays in the graph (its Normalization takes the weights' mean and std)
    "efficientnet": (),
    # timm's tf_efficientnetv2_*: TF "same" padding, BatchNorm eps 1e-3, as Keras'; the input scaling
    # stays in the graph, built as the weights need (`efficientnet_v2_overrides`)
    "efficientnet_v2": (),
    # timm's tf_mobilenetv3_*: TF "same" padding, BatchNorm eps 1e-3, [-1, 1] input (the in-graph
    # Rescaling); the 0.75 width and minimal sets add alpha / minimalistic (see _MOBILENET_V3)
    "mobilenet_v3": (),
    # timm's convnext_* (conv_mlp=False): LayerNorm eps 1e-6, exact GELU, a 4x4 / 2x2 "valid" stem and
    # downsampling, 7x7 depthwise convs padded 3 ("same"), ImageNet mean/std in Keras' graph
    "convnext": (),
    # timm's legacy_xception: torch's MaxPool2d(3, 2, 1) in the reduction blocks, BatchNorm eps 1e-5
    "xception": (("padding", "symmetric"), ("bn_epsilon", 1e-5)),
    # timm's nasnetalarge (TF-slim's NASNet-A Large): the reduction cells' stride-2 max pools are TF's
    # SAME (MaxPool2dSame pads -inf) where Keras pools a zero-padded map; BatchNorm eps 1e-3 as Keras'
    "nasnet": (("max_pool_padding", "same"),),
}
"""The build options that make each family's network its PyTorch twin's function
(`anyshape.weights.torch_family`'s module doc says why)."""

# the twin's framework, per family; timm's model name for a network when no weight set says it
TWIN_SOURCE = {family: "torchvision" for family in TWIN_OVERRIDES} | {
    "mobilenet": "timm",
    "inception_resnet_v2": "timm",
    "efficientnet": "timm",
    "efficientnet_v2": "timm",
    "mobilenet_v3": "timm",
    "convnext": "timm",
    "xception": "timm",
    "nasnet": "timm",
}

_TORCHVISION = "https://download.pytorch.org/models/"
_TV_SETS: tuple[tuple[str, str, str, float, int], ...] = (
    # (network, tag, file, acc@1, resize_size)
    ("resnet50", "tv_in1k", "resnet50-0676ba61.pth", 76.130, 256),
    ("resnet50", "tv2_in1k", "resnet50-11ad3fa6.pth", 80.858, 232),
    ("resnet101", "tv_in1k", "resnet101-63fe2227.pth", 77.374, 256),
    ("resnet101", "tv2_in1k", "resnet101-cd907fc2.pth", 81.886, 232),
    ("resnet152", "tv_in1k", "resnet152-394f9c45.pth", 78.312, 256),
    ("resnet152", "tv2_in1k", "resnet152-f82ba261.pth", 82.284, 232),
    ("densenet121", "tv_in1k", "densenet121-a639ec97.pth", 74.434, 256),
    ("densenet169", "tv_in1k", "densenet169-b2777c0a.pth", 75.600, 256),
    ("densenet201", "tv_in1k", "densenet201-c1103571.pth", 76.896, 256),
    ("vgg16", "tv_in1k", "vgg16-397923af.pth", 71.592, 256),
    ("vgg19", "tv_in1k", "vgg19-dcbb9e9d.pth", 72.376, 256),
    ("mobilenet_v2", "tv_in1k", "mobilenet_v2-b0353104.pth", 71.878, 256),
    ("mobilenet_v2", "tv2_in1k", "mobilenet_v2-7ebf99e0.pth", 72.154, 232),
)
_TV_DEFAULT = {"resnet50": "tv2_in1k", "resnet101": "tv2_in1k", "resnet152": "tv2_in1k", "mobilenet_v2": "tv2_in1k"}

# timm's tf_efficientnet_b<N>: (input size, crop_pct) per member
EFFICIENTNET_SIZES = {
    0: (224, 0.875),
    1: (240, 0.882),
    2: (260, 0.890),
    3: (300, 0.904),
    4: (380, 0.922),
    5: (456, 0.934),
    6: (528, 0.942),
    7: (600, 0.949),
}
# (timm tag, what TF trained, members, mean, std), in timm's order (the first is the default)
EFFICIENTNET_TAGS: tuple[tuple[str, str, tuple[int, ...], tuple, tuple], ...] = (
    ("ns_jft_in1k", "Noisy Student (JFT-300M)", tuple(range(8)), IMAGENET_MEAN, IMAGENET_STD),
    ("ap_in1k", "trained with AdvProp", tuple(range(8)), INCEPTION_MEAN, INCEPTION_STD),
    ("ra_in1k", "trained with RandAugment", (5, 7), IMAGENET_MEAN, IMAGENET_STD),
    ("aa_in1k", "trained with AutoAugment", tuple(range(8)), IMAGENET_MEAN, IMAGENET_STD),
    ("in1k", "", tuple(range(6)), IMAGENET_MEAN, IMAGENET_STD),
)


# timm's tf_efficientnetv2_<member>: (member, tag, input size (timm's test_input_size), crop_pct,
# crop_mode, [-1, 1] (mean = std = 0.5) rather than ImageNet's mean/std), in timm's order (the first
# listed tag of a member is timm's default)
EFFICIENTNET_V2_SETS: tuple[tuple[str, str, int, float, str, bool], ...] = (
    ("s", "in21k_ft_in1k", 384, 1.0, "center", True),
    ("m", "in21k_ft_in1k", 480, 1.0, "squash", True),
    ("l", "in21k_ft_in1k", 480, 1.0, "squash", True),
    ("s", "in1k", 384, 1.0, "center", True),
    ("m", "in1k", 480, 1.0, "squash", True),
    ("l", "in1k", 480, 1.0, "squash", True),
    ("b0", "in1k", 224, 0.875, "center", False),
    ("b1", "in1k", 240, 0.882, "center", False),
    ("b2", "in1k", 260, 0.890, "center", False),
    ("b3", "in21k_ft_in1k", 300, 0.9, "squash", True),
    ("b3", "in1k", 300, 0.904, "center", False),
    # ImageNet-21k, not fine-tuned: 21,843 classes (timm's in21k cfgs)
    ("s", "in21k", 384, 1.0, "center", True),
    ("m", "in21k", 480, 1.0, "squash", True),
    ("l", "in21k", 480, 1.0, "squash", True),
    ("b3", "in21k", 300, 0.904, "center", True),
)


def efficientnet_v2_overrides(arch, mean, std) -> tuple[tuple[str, object], ...]:
    """The build options that make EfficientNetV2 `arch` scale its input as weights trained on
    (x / 255 - mean) / std expect: the Normalization (the B members': Keras' own, at 3 channels)
    takes mean and std ** 2 unless they are the member's own; [-1, 1] (mean = std = 0.5) is also
    Rescaling(1 / 127.5, offset -1), which S, M and L apply at 3 channels (they have no
    Normalization, and get none for [-1, 1]) and every member at other channel counts."""
    from anyshape.archs.efficientnet_v2 import EfficientNetV2Config

    defaults = EfficientNetV2Config(**arch.defaults)
    half = tuple(mean) == (0.5,) * 3 and tuple(std) == (0.5,) * 3
    out: tuple[tuple[str, object], ...] = ()
    variance = tuple(float(s) ** 2 for s in std)
    own = tuple(mean) == defaults.normalization_mean and variance == defaults.normalization_variance
    if not own and not (half and not defaults.normalization_mean):
        out = (("normalization_mean", tuple(mean)), ("normalization_variance", variance))
    return out + ((("rescaling_divisor", 127.5),) if half else ())


def _efficientnet_v2_sets() -> list[WeightSet]:
    """anyshape's EfficientNetV2 scales its input in its graph: these sets keep taking 0..255 pixels
    (mode "raw"); their mean / std (on [0, 1] pixels) are what the graph is built to apply."""
    from anyshape.archs import get_arch

    out, seen = [], set()
    for member, tag, size, crop, crop_mode, half in EFFICIENTNET_V2_SETS:
        arch = get_arch(f"efficientnet_v2_{member}")
        mean, std = ((0.5,) * 3, (0.5,) * 3) if half else (IMAGENET_MEAN, IMAGENET_STD)
        timm_name = f"tf_efficientnetv2_{member}.{tag}"
        trained = {"in21k_ft_in1k": " (ImageNet-21k, fine-tuned on 1k)", "in21k": " (ImageNet-21k, 21,843 classes)"}
        out.append(
            _timm_set(
                timm_name,
                f"{arch.name}.tf_{tag}",
                arch.name,
                f"timm {timm_name}: port of TF's EfficientNetV2-{member.upper()}{trained.get(tag, '')}",
                member not in seen,
                num_classes=21843 if tag == "in21k" else 1000,
                mode="raw",
                mean=mean,
                std=std,
                input_size=(size, size),
                crop_pct=crop,
                crop_mode=crop_mode,
                overrides=efficientnet_v2_overrides(arch, mean, std),
            )
        )
        seen.add(member)
    return out


# timm/models/mobilenetv3.py default_cfgs `tf_mobilenetv3_<type>_<width>.in1k` (`_cfg`: 224, crop_pct
# 0.875, bilinear; IMAGENET_INCEPTION_MEAN/STD, i.e. [-1, 1]: Keras' in-graph Rescaling): (timm
# width suffix, anyshape tag, build overrides)
_MOBILENET_V3 = (
    ("100", "tf_in1k", ()),
    ("075", "tf_075_in1k", (("alpha", 0.75),)),
    ("minimal_100", "tf_minimal_in1k", (("minimalistic", True),)),
)


# timm/models/efficientnet.py default_cfgs `mobilenetv1_<width>.ra4_e3600_r224_in1k` (`_cfg`: 224, bicubic;
# IMAGENET_INCEPTION_MEAN/STD, i.e. [-1, 1], Keras' "tf" preprocessing of MobileNet; crop_pct 0.875 for
# 100, 0.9 for 125; their test_input_size 256 is above Keras' 224, so the sets keep timm's training
# input_size and crop_pct): (timm width, anyshape tag, crop_pct, build overrides beyond the twin's).
# Not registered: mobilenetv1_100h (a 1x1 conv_head of 1024 + BatchNorm + ReLU6 before the
# classifier, which Keras' MobileNet does not have).
_MOBILENET_V1 = (
    ("100", "ra4_e3600_r224_in1k", 0.875, ()),
    ("125", "ra4_e3600_r224_125_in1k", 0.9, (("alpha", 1.25),)),
)


def _mobilenet_sets() -> list[WeightSet]:
    return [
        _timm_set(
            f"mobilenetv1_{width}.ra4_e3600_r224_in1k",
            f"mobilenet.{tag}",
            "mobilenet",
            f"timm mobilenetv1_{width}.ra4_e3600_r224_in1k: MobileNet"
            + (f" (alpha {int(width) / 100})" if width != "100" else "")
            + " trained by timm (its ra4 recipe, 3600 epochs at 224 px)",
            True,  # its only tag: timm's default for that model
            mode="tf",
            input_size=(224, 224),
            crop_pct=crop,
            overrides=TWIN_OVERRIDES["mobilenet"] + overrides,
        )
        for width, tag, crop, overrides in _MOBILENET_V1
    ]


def _mobilenet_v3_sets() -> list[WeightSet]:
    out = []
    for model_type in ("large", "small"):
        for width, tag, overrides in _MOBILENET_V3:
            timm_name = f"tf_mobilenetv3_{model_type}_{width}.in1k"
            out.append(
                _timm_set(
                    timm_name,
                    f"mobilenet_v3_{model_type}.{tag}",
                    f"mobilenet_v3_{model_type}",
                    f"timm {timm_name}: port of TF's MobileNetV3-{model_type.capitalize()}",
                    True,  # its only tag: timm's default for that model
                    mode="raw",
                    input_size=(224, 224),
                    crop_pct=0.875,
                    interpolation="bilinear",
                    overrides=overrides,
                )
            )
    return out


# timm/models/convnext.py default_cfgs `convnext_<size>.<tag>` (`_cfg`: 224, crop_pct 0.875, bicubic,
# IMAGENET_DEFAULT_MEAN/STD: Keras' in-graph Normalization): the official ConvNeXt files (fb_in1k,
# fb_in22k_ft_in1k, and fb_in22k: the ImageNet-22k head, 21,841 classes) and timm's own tiny and
# small ones (in12k_ft_in1k, crop_pct 0.95; in12k: the ImageNet-12k head, 11,821 classes); the `_384`
# fine-tunes take 384, crop_pct 1.0, crop_mode "squash". All are the same model (timm's
# `convnext_<size>()`), only the head's width differs: (tag, sizes, crop_pct, classes). Not
# registered: the clip_* files (OpenAI CLIP mean/std, which Keras' graph does not apply; some
# with a 640-wide projection head), dinov3_* and eupe_* (no classifier; other licences).
_ALL = ("tiny", "small", "base", "large", "xlarge")
_CONVNEXT = (
    ("in12k_ft_in1k", _ALL[:2], 0.95, 1000),
    ("fb_in22k_ft_in1k", _ALL, 0.875, 1000),
    ("fb_in1k", _ALL[:4], 0.875, 1000),
    ("in12k_ft_in1k_384", _ALL[:2], 1.0, 1000),
    ("fb_in22k_ft_in1k_384", _ALL, 1.0, 1000),
    ("in12k", _ALL[:2], 0.95, 11821),
    ("fb_in22k", _ALL, 0.875, 21841),
)
# timm's default tag per size (the first its default_cfgs lists; `timm.models.get_pretrained_cfg(
# "convnext_<size>").tag`), which `timm/convnext_<size>` names: in12k_ft_in1k for tiny and small,
# fb_in22k_ft_in1k for base, large and xlarge
_CONVNEXT_DEFAULT = {"tiny": "in12k_ft_in1k", "small": "in12k_ft_in1k"}


def _convnext_sets() -> list[WeightSet]:
    trained = {
        "in12k": " (timm, ImageNet-12k)",
        "fb_in22k": " (ImageNet-22k)",
        "in12k_ft_in1k": " (timm, ImageNet-12k, fine-tuned on 1k)",
        "fb_in22k_ft_in1k": " (ImageNet-22k, fine-tuned on 1k)",
    }
    out = []
    for tag, sizes, crop, classes in _CONVNEXT:
        side = 384 if tag.endswith("_384") else 224
        for size in sizes:
            out.append(
                _timm_set(
                    f"convnext_{size}.{tag}",
                    f"convnext_{size}.{tag}",
                    f"convnext_{size}",
                    f"timm convnext_{size}.{tag}: "
                    + ("" if tag.startswith("in12k") else "Facebook's ")
                    + f"ConvNeXt-{size.capitalize()}{trained.get(tag.removesuffix('_384'), '')}"
                    + (f", {classes:,} classes" if classes != 1000 else "")
                    + (" at 384 x 384" if side == 384 else ""),
                    _CONVNEXT_DEFAULT.get(size, "fb_in22k_ft_in1k") == tag,
                    mode="raw",
                    input_size=(side, side),
                    crop_pct=crop,
                    crop_mode="squash" if side == 384 else "center",
                    num_classes=classes,
                )
            )
    return out


def _torchvision_sets() -> list[WeightSet]:
    from anyshape.archs import get_arch

    out = []
    for net, tag, file_name, top1, resize in _TV_SETS:
        arch = get_arch(net)
        version = "IMAGENET1K_V1" if tag == "tv_in1k" else "IMAGENET1K_V2"
        aliases = [f"torchvision/{net}.{version}", f"torchvision:{arch.keras_name}_Weights.{version}"]
        if _TV_DEFAULT.get(net, "tv_in1k") == tag:
            aliases.append(f"torchvision/{net}")
        if arch.family == "resnet":  # timm's resnet<N>.tv_in1k / tv2_in1k: these files (their cfg's url)
            aliases += [f"timm/{net}.{tag}", f"timm:{net}.{tag}"]
        out.append(
            WeightSet(
                name=f"{net}.{tag}",
                arch=net,
                source="torchvision",
                format="torch",
                description=f"torchvision {arch.keras_name}_Weights.{version}",
                url=_TORCHVISION + file_name,
                file_name=file_name,
                file_hash=file_name.rsplit("-", 1)[1].split(".")[0],
                hash_algorithm="sha256",
                mode="torch",
                mean=IMAGENET_MEAN,
                std=IMAGENET_STD,
                input_size=(224, 224),
                crop_pct=224 / resize,
                interpolation="bilinear",
                top1=top1,
                license="bsd-3-clause",
                overrides=TWIN_OVERRIDES[arch.family],
                aliases=tuple(aliases),
            )
        )
    return out


def _timm_set(timm_name: str, name: str, arch: str, description: str, default: bool, **kw) -> WeightSet:
    model = timm_name.split(".")[0]
    kw.setdefault("interpolation", "bicubic")
    kw.setdefault("license", "apache-2.0")
    return WeightSet(
        name=name,
        arch=arch,
        source="timm",
        format="torch",
        description=description,
        url=HF_URL.format(timm_name),
        file_name=f"timm_{timm_name}.safetensors",
        aliases=(f"timm/{timm_name}", f"timm:{timm_name}") + ((f"timm/{model}",) if default else ()),
        **kw,
    )


# timm/models/resnet.py default_cfgs `resnet{50,101,152}.<tag>` and densenet.py's `densenet121.ra_in1k`
# (hf_hub_id timm/, 1000 classes, IMAGENET_DEFAULT_MEAN/STD). timm's `resnet50()` / `resnet101()` /
# `resnet152()` build ResNet(Bottleneck, layers) with the defaults, torchvision's v1.5 network (the
# stride in conv2, no conv bias, BatchNorm eps 1e-5, MaxPool2d(3, 2, 1)) with torchvision's state-dict
# keys; `densenet121()` is torchvision's DenseNet-121 (growth 32, blocks 6-12-24-16, BatchNormAct2d
# eps 1e-5, the same keys): torchvision's layout and overrides load every tag (tests compare timm's
# models with torchvision's on one state dict). timm's tv_in1k and tv2_in1k of the three ResNets are
# torchvision's files (their cfg's url): the torchvision sets above carry those timm names. Not
# registered: resnet50.bamboo (no classifier, no licence in its cfg), densenet121.tv_in1k
# (torchvision's file; timm's cfg says bicubic where torchvision's transforms say bilinear).
# (network, tag, crop_pct, interpolation), all at Keras' 224 x 224: timm's input_size, or for
# resnet50.a1h_in1k (trained at 176) and a3_in1k (160) its test_input_size and test_crop_pct
_TIMM_TORCHVISION_LAYOUT: tuple[tuple[str, str, float, str], ...] = (
    ("resnet50", "a1_in1k", 0.95, "bicubic"),
    ("resnet50", "a1h_in1k", 1.0, "bicubic"),
    ("resnet50", "a2_in1k", 0.95, "bicubic"),
    ("resnet50", "a3_in1k", 0.95, "bicubic"),
    ("resnet50", "am_in1k", 0.875, "bicubic"),
    ("resnet50", "b1k_in1k", 0.95, "bicubic"),
    ("resnet50", "b2k_in1k", 0.95, "bicubic"),
    ("resnet50", "bt_in1k", 0.875, "bicubic"),
    ("resnet50", "c1_in1k", 0.95, "bicubic"),
    ("resnet50", "c2_in1k", 0.95, "bicubic"),
    ("resnet50", "d_in1k", 0.95, "bicubic"),
    ("resnet50", "fb_ssl_yfcc100m_ft_in1k", 0.875, "bilinear"),
    ("resnet50", "fb_swsl_ig1b_ft_in1k", 0.875, "bilinear"),
    ("resnet50", "gluon_in1k", 0.875, "bicubic"),
    ("resnet50", "ra_in1k", 0.875, "bicubic"),
    ("resnet50", "ram_in1k", 0.875, "bicubic"),
    ("resnet101", "a1_in1k", 0.95, "bicubic"),
    ("resnet101", "a1h_in1k", 0.95, "bicubic"),
    ("resnet101", "a2_in1k", 0.95, "bicubic"),
    ("resnet101", "a3_in1k", 0.95, "bicubic"),
    ("resnet101", "gluon_in1k", 0.875, "bicubic"),
    ("resnet152", "a1_in1k", 0.95, "bicubic"),
    ("resnet152", "a1h_in1k", 0.95, "bicubic"),
    ("resnet152", "a2_in1k", 0.95, "bicubic"),
    ("resnet152", "a3_in1k", 0.95, "bicubic"),
    ("resnet152", "gluon_in1k", 0.875, "bicubic"),
    ("densenet121", "ra_in1k", 0.875, "bicubic"),
    ("mobilenet_v2", "ra_in1k", 0.875, "bicubic"),
)
# timm's model name where it is not the network's: mobilenetv2_100 is torchvision's MobileNetV2 under
# timm's EfficientNet-builder module names, renamed on load (torch_layouts.normalised_keys)
_TIMM_MODEL = {"mobilenet_v2": "mobilenetv2_100"}
# timm's default tag (`timm.models.get_pretrained_cfg("<network>").tag`), which `timm/<network>` names
# (`torchvision/<network>` stays torchvision's DEFAULT)
_TIMM_TORCHVISION_DEFAULT = {
    "resnet50": "a1_in1k",
    "resnet101": "a1h_in1k",
    "resnet152": "a1h_in1k",
    "densenet121": "ra_in1k",
    "mobilenet_v2": "ra_in1k",
}
_TIMM_TEST_SIZE = {("resnet50", "a1h_in1k"): 176, ("resnet50", "a3_in1k"): 160}  # timm's training size
# Facebook's semi- and semi-weakly supervised ResNet-50s (timm's cfg: cc-by-nc-4.0, non-commercial)
_NON_COMMERCIAL = ("fb_ssl_yfcc100m_ft_in1k", "fb_swsl_ig1b_ft_in1k")


def _timm_torchvision_layout_sets() -> list[WeightSet]:
    """timm's weights for networks in torchvision's layout: torchvision's preprocessing mode (ImageNet
    mean/std, before the model) and the twin's overrides, timm's crop and interpolation."""
    from anyshape.archs import get_arch

    out = []
    for net, tag, crop, interpolation in _TIMM_TORCHVISION_LAYOUT:
        arch = get_arch(net)
        name, timm_name = f"{net}.{tag}", f"{_TIMM_MODEL.get(net, net)}.{tag}"
        trained = _TIMM_TEST_SIZE.get((net, tag))
        out.append(
            _timm_set(
                timm_name,
                name,
                net,
                f"timm {timm_name}: {arch.keras_name} in torchvision's layout"
                + (" under timm's module names" if net in _TIMM_MODEL else "")
                + (f" (at 224, timm's test size; trained at {trained})" if trained else ""),
                _TIMM_TORCHVISION_DEFAULT[net] == tag,
                mode="torch",
                mean=IMAGENET_MEAN,
                std=IMAGENET_STD,
                input_size=(224, 224),
                crop_pct=crop,
                interpolation=interpolation,
                overrides=TWIN_OVERRIDES[arch.family],
                license="cc-by-nc-4.0" if tag in _NON_COMMERCIAL else "apache-2.0",
            )
        )
    return out


def _efficientnet_sets() -> list[WeightSet]:
    """anyshape's EfficientNet normalises in its graph: these sets keep taking 0..255 pixels (mode
    "raw"), and their mean / std (on [0, 1] pixels) go into the Normalization layer."""
    out = []
    for n, (size, crop) in EFFICIENTNET_SIZES.items():
        first = True
        for tag, what, members, mean, std in EFFICIENTNET_TAGS:
            if n not in members:
                continue
            timm_name = f"tf_efficientnet_b{n}.{tag}"
            out.append(
                _timm_set(
                    timm_name,
                    f"efficientnet_b{n}.tf_{tag}",
                    f"efficientnet_b{n}",
                    f"timm {timm_name}: port of TF's EfficientNet-B{n}" + (f" {what}" if what else ""),
                    first,
                    mode="raw",
                    mean=mean,
                    std=std,
                    input_size=(size, size),
                    crop_pct=crop,
                )
            )
            first = False
    return out


def _inception_resnet_v2_sets() -> list[WeightSet]:
    return [
        _timm_set(
            f"inception_resnet_v2.{tag}",
            f"inception_resnet_v2.{tag}",
            "inception_resnet_v2",
            f"timm: port of TF-slim {what}",
            tag == "tf_in1k",
            mode="tf",
            input_size=(299, 299),
            crop_pct=0.8975,
            overrides=TWIN_OVERRIDES["inception_resnet_v2"],
        )
        for tag, what in (
            ("tf_in1k", "inception_resnet_v2_2016_08_30"),
            ("tf_ens_adv_in1k", "ens_adv_inception_resnet_v2_2017_08_18 (ensemble adversarial training)"),
        )
    ]


def _xception_sets() -> list[WeightSet]:
    file_name = "xception-43020ad28.pth"
    return [
        WeightSet(
            name="xception.tf_in1k",
            arch="xception",
            source="timm",
            format="torch",
            description="timm legacy_xception.tf_in1k: Cadene's PyTorch port of Keras' Xception weights",
            url="https://github.com/rwightman/pytorch-image-models/releases/download/v0.1-cadene/" + file_name,
            file_name=file_name,
            # not checked: timm loads it with check_hash off (timm/models/_builder.py _CHECK_HASH) and
            # no source says which digest the 9 hex digits in its name begin
            file_hash=None,
            mode="tf",
            input_size=(299, 299),
            crop_pct=0.8975,
            interpolation="bicubic",
            top1=78.892,
            license="apache-2.0",
            overrides=TWIN_OVERRIDES["xception"],
            aliases=("timm/legacy_xception.tf_in1k", "timm:legacy_xception.tf_in1k", "timm/legacy_xception"),
        )
    ]


def _nasnet_sets() -> list[WeightSet]:
    """timm/models/nasnet.py default_cfgs `nasnetalarge.tf_in1k` (Cadene's port of TF-slim's
    NASNet-A Large checkpoint): hf_hub_id timm/, input 331, crop_pct 0.911, bicubic, mean = std =
    0.5 ([-1, 1]), 1000 classes (no background class); no top-1 in the config."""
    return [
        _timm_set(
            "nasnetalarge.tf_in1k",
            "nasnet_large.tf_in1k",
            "nasnet_large",
            "timm nasnetalarge.tf_in1k: port of TF-slim's NASNet-A Large",
            True,
            mode="tf",
            input_size=(331, 331),
            crop_pct=0.911,
            overrides=TWIN_OVERRIDES["nasnet"],
        )
    ]


def twin_sets() -> list[WeightSet]:
    """Every registered set of the family's PyTorch twins (InceptionV3's are the registry's own)."""
    return (
        _torchvision_sets()
        + _timm_torchvision_layout_sets()
        + _efficientnet_sets()
        + _efficientnet_v2_sets()
        + _inception_resnet_v2_sets()
        + _mobilenet_sets()
        + _mobilenet_v3_sets()
        + _convnext_sets()
        + _xception_sets()
        + _nasnet_sets()
    )


# the scaling a family's graph applies to 0..255 pixels with include_preprocessing (fixed, not weights):
# MobileNetV3's Rescaling to [-1, 1], ConvNeXt's Normalization by ImageNet's mean and std
_IN_GRAPH = {"mobilenet_v3": "tf", "convnext": "torch"}


def pixel_scaling(arch, weight_set: WeightSet) -> tuple[tuple, tuple]:
    """(mean, std) on [0, 1] pixels that a raw-pixel network's graph applies with `weight_set`."""
    if weight_set.mean is not None and weight_set.std is not None:
        return tuple(weight_set.mean), tuple(weight_set.std)
    if _IN_GRAPH.get(arch.family) == "torch":
        return IMAGENET_MEAN, IMAGENET_STD
    return (0.5,) * 3, (0.5,) * 3


def file_set_with_mode(ws: WeightSet, mode: str) -> WeightSet:
    """A file's set with the preprocessing its caller gave: "torch" (ImageNet mean/std) or "tf"."""
    if mode == "torch":
        return replace(ws, mode="torch", mean=IMAGENET_MEAN, std=IMAGENET_STD)
    return replace(ws, mode="tf", mean=None, std=None)


def unpublished_twin_set(path: str, arch, mode: str) -> WeightSet:
    """A state dict of network `arch`'s twin that is no published file: the twin's overrides and the
    preprocessing `mode` its caller gave ("torch" or "tf"). A network that normalises in its graph
    (EfficientNet) keeps taking 0..255 pixels: its Normalization takes the mean and std instead."""
    base = WeightSet(
        name=os.path.basename(path),
        arch=arch.name,
        source="file",
        format="torch",
        path=path,
        num_classes=None,
        input_size=(arch.default_size,) * 2,
        overrides=TWIN_OVERRIDES[arch.family],
        declared=False,
        description=f"PyTorch state dict ({TWIN_SOURCE[arch.family]} layout of {arch.name})",
    )
    ws = file_set_with_mode(base, mode)
    if arch.family == "efficientnet_v2":  # built to scale as the weights need, whatever the member
        mean, std = (ws.mean, ws.std) if ws.mode == "torch" else ((0.5,) * 3, (0.5,) * 3)
        overrides = ws.overrides + efficientnet_v2_overrides(arch, mean, std)
        return replace(ws, mode="raw", mean=mean, std=std, overrides=overrides)
    if arch.family in _IN_GRAPH and mode == _IN_GRAPH[arch.family]:
        return replace(ws, mode="raw", mean=None, std=None)
    if arch.family in _IN_GRAPH:  # built without its in-graph scaling, the model takes the scaled input
        return replace(ws, overrides=ws.overrides + (("include_preprocessing", False),))
    if "normalization" in arch.input_layers:
        mean, std = (ws.mean, ws.std) if ws.mode == "torch" else ((0.5,) * 3, (0.5,) * 3)
        ws = replace(ws, mode="raw", mean=mean, std=std)
    return ws
