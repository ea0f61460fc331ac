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
    The in21k sets (21,843 classes) and xl (no Keras member) are not registered.
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
        trained = " (ImageNet-21k, fine-tuned on 1k)" if "21k" in tag else ""
        out.append(
            _timm_set(
                timm_name,
                f"{arch.name}.tf_{tag}",
                arch.name,
                f"timm {timm_name}: port of TF's EfficientNetV2-{member.upper()}{trained}",
                member not in seen,
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
                    width == "100",
                    mode="raw",
                    input_size=(224, 224),
                    crop_pct=0.875,
                    interpolation="bilinear",
                    overrides=overrides,
                )
            )
    return out


# timm/models/convnext.py default_cfgs `convnext_<size>.fb_in1k` and `.fb_in22k_ft_in1k` (`_cfg`: 224,
# crop_pct 0.875, bicubic, IMAGENET_DEFAULT_MEAN/STD: Keras' in-graph Normalization), the official
# ConvNeXt files, and timm's own `convnext_{tiny,small}.in12k_ft_in1k` (crop_pct 0.95, the rest
# `_cfg`'s; the same model, trained by timm on ImageNet-12k and fine-tuned on 1k): (tag, sizes, crop).
_CONVNEXT = (
    ("in12k_ft_in1k", ("tiny", "small"), 0.95),
    ("fb_in22k_ft_in1k", ("tiny", "small", "base", "large", "xlarge"), 0.875),
    ("fb_in1k", ("tiny", "small", "base", "large"), 0.875),
)
# timm's default tag per size (the first its default_cfgs lists; `timm.models.get_pretrained_cfg(
# "convnext_<size>").tag`), which `timm/convnext_<size>` names: in12k_ft_in1k for tiny and small,
# fb_in22k_ft_in1k for base, large and xlarge
_CONVNEXT_DEFAULT = {"tiny": "in12k_ft_in1k", "small": "in12k_ft_in1k"}


def _convnext_sets() -> list[WeightSet]:
    trained = {
        "in12k_ft_in1k": " (timm, ImageNet-12k, fine-tuned on 1k)",
        "fb_in22k_ft_in1k": " (ImageNet-22k, fine-tuned on 1k)",
    }
    return [
        _timm_set(
            f"convnext_{size}.{tag}",
            f"convnext_{size}.{tag}",
            f"convnext_{size}",
            f"timm convnext_{size}.{tag}: "
            + ("" if tag.startswith("in12k") else "Facebook's ")
            + f"ConvNeXt-{size.capitalize()}{trained.get(tag, '')}",
            _CONVNEXT_DEFAULT.get(size, "fb_in22k_ft_in1k") == tag,
            mode="raw",
            input_size=(224, 224),
            crop_pct=crop,
        )
        for tag, sizes, crop in _CONVNEXT
        for size in sizes
    ]


def _torchvision_sets() -> list[WeightSet]:
    from anyshape.archs import get_arch

    out = []
    for net, tag, file_name, top1, resize in _TV_SETS:
        arch = get_arch(net)
        version = "IMAGENET1K_V1" if tag == "tv_in1k" else "IMAGENET1K_V2"
        aliases = [f"torchvision/{net}.{version}", f"torchvision:{arch.keras_name}_Weights.{version}"]
        if _TV_DEFAULT.get(net, "tv_in1k") == tag:
            aliases.append(f"torchvision/{net}")
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
    return WeightSet(
        name=name,
        arch=arch,
        source="timm",
        format="torch",
        description=description,
        url=HF_URL.format(timm_name),
        file_name=f"timm_{timm_name}.safetensors",
        license="apache-2.0",
        aliases=(f"timm/{timm_name}", f"timm:{timm_name}") + ((f"timm/{model}",) if default else ()),
        **kw,
    )


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
        + _efficientnet_sets()
        + _efficientnet_v2_sets()
        + _inception_resnet_v2_sets()
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
