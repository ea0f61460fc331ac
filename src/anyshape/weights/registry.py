"""The public weight sets, kept as data, and `resolve()` for a `weights=` argument.

Every set is made for one network (`WeightSet.arch`) and named `<network>.<tag>` as timm names its
pretrained configs: InceptionV3's sets below (with their older names "imagenet", "IMAGENET1K_V1",
... kept as aliases), and for each of keras.applications' other networks `<network>.keras_in1k`,
Keras' ImageNet file (`anyshape.weights.keras_files`). `weights="imagenet"` resolves to the set of
the network being built (`resolve(..., arch=...)`); a set made for another network is refused.

No Keras, torch or network here: resolving a name or a path only decides how the model must be
built (BatchNorm gamma, average-pool semantics) and how its input must be preprocessed. Reading
and checking the file happens in `anyshape.weights.loader` after the model is built.

Where InceptionV3's figures come from: `anyshape.weights.inception_v3_sets`.
"""

from __future__ import annotations

import os
from dataclasses import replace

from anyshape.data_config import (
    CAFFE_MEAN,
    IMAGENET_MEAN,
    IMAGENET_STD,
    INCEPTION_MEAN,
    INCEPTION_STD,
)
from anyshape.errors import Message, ParameterError
from anyshape.weights.inception_v3_sets import INCEPTION_V3_SETS
from anyshape.weights.torch_sets import TWIN_OVERRIDES, file_set_with_mode, twin_sets, unpublished_twin_set
from anyshape.weights.weight_set import WeightSet

__all__ = [
    "WeightSet",
    "REGISTRY",
    "resolve",
    "weight_sets",
    "UnknownWeights",
    "PreprocessingUnknown",
    "WeightsForAnotherNetwork",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "INCEPTION_MEAN",
    "INCEPTION_STD",
]

KERAS_SUFFIXES = (".weights.h5", ".keras", ".h5", ".hdf5")
TORCH_SUFFIXES = (".pth", ".pt", ".bin", ".ckpt", ".safetensors")


class UnknownWeights(ValueError):
    """`weights=` names no registered weight set and no existing file."""


class WeightsForAnotherNetwork(UnknownWeights):
    """`weights=` names a set made for another network than the one being built."""


class PreprocessingUnknown(ValueError):
    """A PyTorch weights file whose input preprocessing cannot be told from the file."""


REGISTRY: dict[str, WeightSet] = {ws.name: ws for ws in INCEPTION_V3_SETS}

# keras.applications' preprocess_input of each family (keras/src/applications/<family>.py): caffe
# for ResNet (v1) and VGG, torch mean/std for DenseNet, [-1, 1] for InceptionResNetV2, Xception,
# MobileNet v1/v2, NASNet and ResNetV2; raw pixels (normalised in the graph) for EfficientNet,
# EfficientNetV2, ConvNeXt and MobileNetV3. Each network's `Arch.preprocessing` records the same.
_FAMILY_DATA: dict[str, dict] = {
    "caffe": {"mode": "caffe", "mean": CAFFE_MEAN},
    "torch": {"mode": "torch", "mean": IMAGENET_MEAN, "std": IMAGENET_STD},
    "tf": {"mode": "tf"},
    "raw": {"mode": "raw"},
}


def _keras_family_sets() -> list[WeightSet]:
    """`<network>.keras_in1k` for every keras.applications network but InceptionV3 (whose Keras
    set is "imagenet" above): the file with the default Config (MobileNet's depend on alpha and
    size; `anyshape.weights.keras_files.keras_file` picks the one a model needs)."""
    from anyshape.archs import get_arch, list_models
    from anyshape.weights.keras_files import NoKerasFile, keras_file

    out = []
    for name in list_models():
        if name == "inception_v3":
            continue
        arch = get_arch(name)
        try:
            top, notop = keras_file(name, None, True), keras_file(name, None, False)
        except NoKerasFile:  # a network registered at run time (archs.register_arch) has no Keras file
            continue
        overrides: tuple = ()
        if arch.family == "efficientnet":
            from anyshape.archs.efficientnet import IMAGENET_STDDEV_RGB

            # keras/src/applications/efficientnet.py: with weights="imagenet" Keras adds the
            # Rescaling by 1 / sqrt(stddev) (tensorflow#49930); the file loads into either form
            overrides = (("stddev_rescaling", IMAGENET_STDDEV_RGB),)
        out.append(
            WeightSet(
                name=f"{name}.keras_in1k",
                arch=name,
                source="keras",
                format="keras",
                description=f"Keras' {arch.keras_name} ImageNet weights (keras.applications)",
                url=top.url,
                file_name=top.file_name,
                file_hash=top.file_hash,
                hash_algorithm=top.algorithm or notop.algorithm,
                url_notop=notop.url,
                file_name_notop=notop.file_name,
                file_hash_notop=notop.file_hash,
                **_FAMILY_DATA[arch.preprocessing],
                input_size=(arch.default_size, arch.default_size),
                interpolation="bilinear",
                overrides=overrides,
                aliases=(f"keras/{name}", f"{arch.keras_name.lower()}.keras_in1k"),
            )
        )
    return out


REGISTRY.update({ws.name: ws for ws in _keras_family_sets()})

# the family's PyTorch twins: torchvision's and timm's sets (anyshape.weights.torch_sets)
REGISTRY.update({ws.name: ws for ws in twin_sets()})

_ALIASES = {alias.lower(): ws.name for ws in REGISTRY.values() for alias in (ws.name, *ws.aliases)}


def _looks_like_path(text: str) -> bool:
    return os.sep in text or text.lower().endswith(KERAS_SUFFIXES + TORCH_SUFFIXES)


WEIGHT_FILE_MODES: tuple[str, ...] = ("tf", "torch")


KERAS_NAMES = ("imagenet", "keras", "keras.imagenet", "keras_in1k")
"""The names that mean "the network's own Keras ImageNet set" (keras.applications' `weights="imagenet"`)."""
FRAMEWORK_NAMES = ("torchvision", "timm")
"""The names that mean that framework's default set of the network (`weights="timm"`: what timm's
`pretrained=True` loads)."""


def weight_sets(arch: str | None = None) -> list[WeightSet]:
    """The registered weight sets; only those made for network `arch` when given."""
    if arch is None:
        return list(REGISTRY.values())
    name = _arch_name(arch)
    return [ws for ws in REGISTRY.values() if ws.arch == name]


def _arch_name(arch) -> str:
    from anyshape.archs import get_arch

    return get_arch(arch).name


def resolve(weights, preprocessing: str | None = None, *, arch: str | None = None) -> WeightSet:
    """Turn a `weights=` argument into a `WeightSet`, without reading weights or the network.

    `weights` is a registered name (see `weight_sets()`; case-insensitive, aliases such as
    "IMAGENET1K_V1" or "timm/inception_v3.tf_in1k" work), a path to a Keras file (legacy .h5 as
    published, .weights.h5, .keras) or a PyTorch state dict (.pth, .pt, .bin, .safetensors), or
    a WeightSet (returned as is).

    `arch`: the network the weights are for (a registered name or Keras' constructor name).
    With it, "imagenet" (and "keras") mean that network's own Keras set (`<arch>.keras_in1k`;
    InceptionV3's is "imagenet"), and a set made for another network is refused
    (`WeightsForAnotherNetwork`). Without it, names resolve as registered ("imagenet" is
    InceptionV3's).

    `preprocessing` ("tf": pixels to [-1, 1]; "torch": ImageNet mean/std) says how a weights
    file expects its input when the file cannot: a PyTorch state dict carries no preprocessing
    (torchvision's `transform_input` is a constructor argument, not a tensor), so one is
    recognised only as a published file (see `_published_set`) and otherwise needs it. For a
    registered set or a file that declares its preprocessing it must agree with it.

    Raises:
        UnknownWeights: (a ValueError) for anything else, listing the registered names.
        WeightsForAnotherNetwork: (an UnknownWeights) for a set made for another network.
        PreprocessingUnknown: (a ValueError) for a state dict that is not a published file,
            without `preprocessing`.
    """
    # A weights file's own preprocessing is one of the two InceptionV3's published sets use; the
    # family's other modes (caffe, raw) belong to DataConfig, not to a weights file.
    if preprocessing is not None and preprocessing not in WEIGHT_FILE_MODES:
        raise ValueError(
            f"preprocessing must be 'tf' (pixels to [-1, 1]) or 'torch' (ImageNet mean/std), got {preprocessing!r}"
        )
    arch_name = None if arch is None else _arch_name(arch)
    ws = _resolve(weights, preprocessing, arch_name)
    if arch_name is not None and ws.arch is not None and ws.arch != arch_name:
        raise WeightsForAnotherNetwork(_another_network(weights, ws, arch_name))
    return _with_preprocessing(ws, preprocessing)


def _another_network(weights, ws: WeightSet, arch_name: str) -> Message:
    from anyshape.archs import get_arch

    ours, theirs = get_arch(arch_name), get_arch(ws.arch or "inception_v3")
    names = ", ".join(repr(s.name) for s in weight_sets(arch_name)) or "none registered"
    given = weights if isinstance(weights, str) else ws.name
    also = "" if given.lower() == ws.name.lower() else f" ({ws.name})"
    return Message(
        "{weights=*}{also} are {theirs}'s weights ({family}), not {ours}'s: {ours} takes {weights='imagenet'}"
        " (Keras' ImageNet weights), its weight sets ({names}), a weights file, or {weights=None} for random"
        " initialisation",
        weights=given,
        also=also,
        theirs=theirs.keras_name,
        family=theirs.name,
        ours=ours.keras_name,
        names=names,
    )


def _framework_default(framework: str, arch: str) -> str | None:
    """The name of `framework`'s default set of network `arch` (see `_resolve`), or None."""
    untagged = [
        (alias.lower() != f"{framework}/{arch}", ws.name)
        for ws in weight_sets(arch)
        for alias in ws.aliases
        if alias.lower().startswith(f"{framework}/") and "." not in alias.split("/", 1)[1]
    ]
    return min(untagged, key=lambda pair: pair[0])[1] if untagged else None


def _resolve(weights, preprocessing: str | None, arch: str | None = None) -> WeightSet:
    if isinstance(weights, WeightSet):
        return weights
    if weights is None:
        raise UnknownWeights("weights=None means random initialisation: there is nothing to resolve")
    if not isinstance(weights, str) and hasattr(weights, "__fspath__"):
        weights = os.fspath(weights)
    if not isinstance(weights, str):
        raise UnknownWeights(f"weights must be None, a weight set name or a file path, got {weights!r}")
    if arch is not None and arch != "inception_v3" and weights.lower() in KERAS_NAMES:
        own = REGISTRY.get(f"{arch}.keras_in1k")
        if own is None:
            raise UnknownWeights(
                Message("{weights=*}: no Keras ImageNet weights are registered for {arch}", weights=weights, arch=arch)
            )
        return own
    if arch is not None and arch != "inception_v3" and weights.lower() in FRAMEWORK_NAMES:
        # a framework's name alone: its default weights of this network, those torchvision's
        # weights="DEFAULT" and timm's pretrained=True pick: the set aliased "<framework>/<model>"
        # without a tag, the twin named as this network first ("timm/resnet50"), else the first
        # registered (timm's twin of EfficientNetB0 is tf_efficientnet_b0); InceptionV3's
        # "torchvision" is its registered alias
        key = _framework_default(weights.lower(), arch)
        if key is None:
            raise UnknownWeights(
                Message(
                    "{weights=*}: no {framework} weights are registered for {arch}. Its sets: 'imagenet' (Keras'"
                    " ImageNet weights), {names}. Use {weights=None} for random initialisation.",
                    weights=weights,
                    framework=weights.lower(),
                    arch=arch,
                    names=", ".join(s.name for s in weight_sets(arch)),
                )
            )
        return REGISTRY[key]
    key = _ALIASES.get(weights.lower())
    if key is not None:  # registered names win over a same-named file, as in keras.applications
        return REGISTRY[key]
    path = os.path.expanduser(weights)
    if os.path.isfile(path):
        if arch is not None and arch != "inception_v3" and path.lower().endswith(KERAS_SUFFIXES):
            return _describe_family_file(path, arch)
        if arch is not None and arch != "inception_v3" and path.lower().endswith(TORCH_SUFFIXES):
            return _describe_family_torch_file(path, arch, preprocessing)
        return _describe_file(path, preprocessing)
    if os.path.isdir(path):
        raise UnknownWeights(Message("{weights=*} is a directory; give the weights file inside it", weights=weights))
    names = ", ".join(s.name for s in weight_sets(arch)) if arch is not None else ", ".join(sorted(REGISTRY))
    if _looks_like_path(weights):
        raise UnknownWeights(
            Message(
                "weights file {file!r} does not exist (resolved to {path!r}). Give an existing file, a registered"
                " name ({names}), or {weights=None} for random weights.",
                file=weights,
                path=os.path.abspath(path),
                names=names,
            )
        )
    if arch is not None:
        raise UnknownWeights(
            Message(
                "{weights=*} is neither a weight set of {arch} nor an existing file. Its sets: 'imagenet'"
                " (Keras' ImageNet weights), {names}. Use {weights=None} for random initialisation.",
                weights=weights,
                arch=arch,
                names=names,
            )
        )
    raise UnknownWeights(
        Message(
            "{weights=*} is neither a registered weight set nor an existing file. Registered: {names} (aliases:"
            " IMAGENET1K_V1, timm/inception_v3.<tag>). Use {weights=None} for random initialisation.",
            weights=weights,
            names=names,
        )
    )


def _describe_family_file(path: str, arch: str) -> WeightSet:
    """A Keras weights file given for network `arch` (not InceptionV3): its own metadata when
    anyshape wrote it, else keras.applications' preprocessing of that network (declared=False)."""
    from anyshape.weights.keras_h5 import read_metadata

    meta = read_metadata(path)
    if meta is not None:
        return WeightSet.from_json(meta, path=path)
    own = REGISTRY.get(f"{arch}.keras_in1k")
    base = WeightSet(name=os.path.basename(path), arch=None, source="file", format="keras", path=path)
    if own is not None:
        base = replace(base, mode=own.mode, mean=own.mean, std=own.std, input_size=own.input_size)
    return replace(base, num_classes=None, declared=False, description=f"Keras weights file for {arch}")


def _describe_family_torch_file(path: str, arch: str, preprocessing: str | None) -> WeightSet:
    """A PyTorch state dict given for network `arch` (not InceptionV3): torchvision's twin layout
    (`anyshape.weights.torch_family`), built with the twin's overrides; recognised as a published
    set by its name and hash, else its preprocessing must be given (a state dict cannot say)."""
    from anyshape.archs import get_arch

    family = get_arch(arch).family
    if family not in TWIN_OVERRIDES:
        keras_name = get_arch(arch).keras_name
        raise UnknownWeights(
            f"weights file {path!r}: {keras_name} has no PyTorch twin anyshape converts (state dicts load into "
            f"InceptionV3 and the {', '.join(sorted(TWIN_OVERRIDES))} families); give a Keras weights file, "
            "'imagenet', or None"
        )
    published = _published_set(path, arch=arch)
    if published is not None:
        ws, how = published
        return replace(ws, path=path, description=f"PyTorch state dict, recognised as {ws.name} by {how}")
    if preprocessing is None:
        raise PreprocessingUnknown(
            Message(
                "weights file {path!r}: a PyTorch state dict does not say how its input was scaled, and this "
                "is not a published file anyshape recognises (by name and hash). Say which: "
                "{preprocessing='torch'} (ImageNet mean/std: what torchvision's and most timm weights "
                "expect) or {preprocessing='tf'} (pixels to [-1, 1]).",
                path=path,
            )
        )
    return unpublished_twin_set(path, get_arch(arch), preprocessing)


def _with_preprocessing(ws: WeightSet, preprocessing: str | None) -> WeightSet:
    """`ws` with the preprocessing given, which must agree with what `ws` declares, if it does."""
    if preprocessing is None or preprocessing == ws.mode:
        return ws
    if ws.format == "torch" and ws.mode == "raw" and not ws.declared:
        return ws  # a state dict for a network that normalises in its graph: applied there (see above)
    if ws.declared:
        raise ParameterError(
            "{preprocessing=*} contradicts {name}, which expects mode {mode!r} ({scale}); leave "
            "{preprocessing} out for this weight set",
            preprocessing=preprocessing,
            name=ws.name,
            mode=ws.mode,
            scale="[-1, 1]" if ws.mode == "tf" else "ImageNet mean/std",
        )
    return file_set_with_mode(ws, preprocessing)


def _published_set(path: str, arch: str = "inception_v3") -> tuple[WeightSet, str] | None:
    """The registered set a local state dict is a copy of, and how that was told; else None.

    A file carrying a registered set's published name (torchvision's inception_v3_google-
    0cc3c7bd.pth, whose name holds its sha256 prefix; anyshape's cache names), checked against
    the published hash where there is one, or a timm file in the Hugging Face hub's cache
    (.../models--timm--inception_v3.<tag>/snapshots/<revision>/model.safetensors).
    """
    from anyshape.weights.download import hash_matches

    name = os.path.basename(path)
    parts = os.path.abspath(path).split(os.sep)
    for ws in REGISTRY.values():
        if ws.format != "torch" or (ws.arch or "inception_v3") != arch:
            continue
        if name == ws.file_name:
            if ws.file_hash and not hash_matches(path, ws.file_hash, ws.hash_algorithm):
                continue  # the published name on other contents: not that set
            how = f"its published name and {ws.hash_algorithm} hash" if ws.file_hash else "its published name"
            return ws, how
        if ws.source == "timm" and f"models--timm--{ws.name}" in parts:
            return ws, "its Hugging Face hub cache folder"
    return None


def _describe_torch_file(path: str, preprocessing: str | None) -> WeightSet:
    # torchvision / timm state dict: BatchNorm with gamma, pools counting padding.
    base = WeightSet(
        name=os.path.basename(path),
        source="file",
        format="torch",
        path=path,
        count_include_pad=True,
        bn_scale=True,
        num_classes=None,
        has_aux=False,
        mode="tf",
        declared=False,
        description="PyTorch state dict (torchvision/timm layout)",
    )
    published = _published_set(path)
    if published is not None:
        ws, how = published
        return replace(
            base,
            mode=ws.mode,
            mean=ws.mean,
            std=ws.std,
            input_size=ws.input_size,
            crop_pct=ws.crop_pct,
            interpolation=ws.interpolation,
            crop_mode=ws.crop_mode,
            label_offset=ws.label_offset,
            declared=True,
            description=f"PyTorch state dict, recognised as {ws.name} by {how}",
        )
    if preprocessing is None:
        raise PreprocessingUnknown(
            Message(
                "weights file {path!r}: a PyTorch state dict does not say how its input was scaled, and "
                "this is not a published file anyshape recognises. Say which: {preprocessing='tf'} "
                "(pixels to [-1, 1]: TF-ported weights, or a torchvision model built with "
                "transform_input=True, which inception_v3(weights=...) does) or {preprocessing='torch'} "
                "(ImageNet mean/std: a torchvision/timm model trained with transform_input=False).",
                path=path,
            )
        )
    return file_set_with_mode(base, preprocessing)


def _describe_file(path: str, preprocessing: str | None) -> WeightSet:
    lower = path.lower()
    if lower.endswith(TORCH_SUFFIXES):
        return _describe_torch_file(path, preprocessing)
    if lower.endswith(KERAS_SUFFIXES):
        from anyshape.weights.keras_h5 import describe_keras_file

        return describe_keras_file(path)
    raise UnknownWeights(
        f"weights file {path!r}: unknown kind. Expected a Keras file ({', '.join(KERAS_SUFFIXES)}) "
        f"or a PyTorch state dict ({', '.join(TORCH_SUFFIXES)})."
    )
