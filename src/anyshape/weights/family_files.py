"""Keras' weight files of the family, read and paired with a model's layers.

Keras 2 HDF5 files (keras.applications' published ones: `read_legacy_h5`, paired in order,
`pair_in_order`) and Keras 3 files (`.weights.h5`, `.keras`: `read_keras3_groups`, paired by
class and rank, `keras3_pairs`); `file_pairs` picks between them, `file_classes` reads a file's
class count, `family_weight_file` finds a weight set's file (cached or downloaded). The rules
that assign the pairs to a model at another shape or channel count are `anyshape.weights.family`'s.
Everything here only reads: a file that does not fit raises `WeightFileError`.
"""

from __future__ import annotations

import numpy as np

from anyshape.weights.checkpoint import WeightFileError
from anyshape.weights.weight_set import WeightSet

__all__ = [
    "classifier_hint",
    "family_weight_file",
    "file_classes",
    "file_pairs",
    "head_layers",
    "is_legacy_file",
    "keras3_pairs",
    "pair_in_order",
    "read_keras3_groups",
    "read_legacy_h5",
]


def read_legacy_h5(path: str) -> list[tuple[str, list[np.ndarray]]]:
    """[(layer name, [arrays in the layer's weight order])] of a Keras 2 HDF5 weights file."""
    import h5py

    try:
        with h5py.File(path, "r") as f:
            g = f["model_weights"] if "layer_names" not in f.attrs and "model_weights" in f else f
            if "layer_names" not in g.attrs:
                raise WeightFileError(
                    f"{path!r} is not a Keras 2 HDF5 weights file (keras.applications' published layout, "
                    "with a 'layer_names' attribute); load a Keras 3 .weights.h5 or .keras file with "
                    "model.load_weights"
                )
            return [(name, [np.asarray(group[n]) for n in names]) for name, group, names in _weighted_layers(g)]
    except WeightFileError:
        raise
    except (OSError, KeyError, ValueError) as e:
        raise WeightFileError(
            f"{path!r} could not be read as a Keras weights file ({e}); it may be truncated or corrupt"
        ) from e


def family_weight_file(weight_set: WeightSet, arch, config, include_top: bool, cache_dir=None, progress=True) -> str:
    """The local file of `weight_set` for network `arch` built as `config`: its path, or Keras'
    ImageNet file the way keras.applications picks it (MobileNet's by alpha and size), from the
    cache or downloaded."""
    if weight_set.path:
        return weight_set.path
    from anyshape.weights.download import cached_file
    from anyshape.weights.keras_files import NoKerasFile, keras_file

    url, fname, fhash = (
        (weight_set.url, weight_set.file_name, weight_set.file_hash)
        if include_top
        else (weight_set.url_notop, weight_set.file_name_notop, weight_set.file_hash_notop)
    )
    algorithm = weight_set.hash_algorithm
    if weight_set.source == "keras" and weight_set.arch == arch.name:
        try:
            published = keras_file(arch.name, config, include_top)
        except NoKerasFile as e:
            raise ValueError(f"weights={weight_set.name!r}: {e}") from None
        if published.file_name != fname:  # another alpha / size than the default Config's
            url, fname, fhash, algorithm = published.url, published.file_name, published.file_hash, published.algorithm
    if not url or not fname:
        raise WeightFileError(f"weight set {weight_set.name!r} has neither a path nor a URL")
    return cached_file(url, fname, expected_hash=fhash, hash_algorithm=algorithm, cache=cache_dir, progress=progress)


def is_legacy_file(path: str) -> bool:
    """True for a Keras 2 HDF5 file (root or model_weights `layer_names`), False for a Keras 3 file."""
    import h5py

    if path.lower().endswith(".keras"):
        return False
    try:
        with h5py.File(path, "r") as f:
            return "layer_names" in f.attrs or ("model_weights" in f and "layer_names" in f["model_weights"].attrs)
    except OSError as e:
        raise WeightFileError(
            f"{path!r} could not be read as a Keras weights file ({e}); it may be truncated or corrupt"
        ) from e


def read_keras3_groups(path: str) -> tuple[dict[str, list[np.ndarray]], list[str]]:
    """A Keras 3 file's top-level layer groups that hold variables, {key: [arrays in order]}, and
    the keys of nested models (groups with layers of their own), which cannot be paired."""
    from anyshape.weights.keras_h5 import _Opened

    groups: dict[str, list[np.ndarray]] = {}
    nested: list[str] = []
    with _Opened(path) as opened:
        f = opened.file
        if "layers" not in f:
            raise WeightFileError(f"{path!r} has no 'layers' group: not a Keras 3 weights file")
        for key in f["layers"]:
            group = f["layers"][key]
            if "layers" in group:
                nested.append(key)
            if "vars" in group and len(group["vars"]):
                vars_ = group["vars"]
                groups[key] = [np.asarray(vars_[str(i)]) for i in range(len(vars_))]
    return groups, nested


def _keras3_keys(model) -> dict[str, str]:
    """{layer name: the key Keras 3 saves the layer under}: its class name in snake case, numbered
    per class in `model.layers` order (keras/src/saving/saving_lib.py, _get_unique_name)."""
    from keras.src.utils.naming import to_snake_case

    used: dict[str, int] = {}
    keys = {}
    for layer in model.layers:
        base = to_snake_case(type(layer).__name__)
        if base in used:
            used[base] += 1
            keys[layer.name] = f"{base}_{used[base]}"
        else:
            used[base] = 0
            keys[layer.name] = base
    return keys


def _rank(key: str) -> tuple[str, int]:
    base, _, n = key.rpartition("_")
    return (base, int(n)) if base and n.isdigit() else (key, 0)


def keras3_pairs(model, arch, config, path: str):
    """[(model layer, the file's arrays or None)] for a Keras 3 file, by class and rank."""
    groups, nested = read_keras3_groups(path)
    keys = _keras3_keys(model)
    head = set(head_layers(arch, config)) if config.include_top else set()
    layers = [layer for layer in model.layers if layer.weights]
    used: set[str] = set()
    pairs: list = []
    missing = []
    for layer in layers:
        key = keys[layer.name]
        if key in groups and layer.name not in head:
            pairs.append((layer, groups[key]))
            used.add(key)
        elif layer.name not in head:
            missing.append(layer.name)
    if missing:
        why = (
            f"; the file nests models ({', '.join(nested)}), as keras.applications' {arch.keras_name} does, "
            "which anyshape's flat network cannot pair: save the weights from an anyshape model, or convert "
            "Keras' published .h5"
            if nested
            else ""
        )
        raise WeightFileError(
            f"{path!r} does not fit this {arch.keras_name}: no weights for {', '.join(missing[:4])}"
            + (f" (and {len(missing) - 4} more)" if len(missing) > 4 else "")
            + why
            + ". It is probably another architecture or configuration; nothing was loaded."
        )
    rest = sorted((k for k in groups if k not in used), key=_rank)
    for layer in layers:
        if layer.name not in head:
            continue
        key = keys[layer.name]
        if key in rest:
            rest.remove(key)
            pairs.append((layer, groups[key]))
        elif rest:  # VGG's conv head against the file's Dense one: the remaining groups in order
            pairs.append((layer, groups[rest.pop(0)]))
        else:
            pairs.append((layer, None))  # a file without the top into a model with it
    order = {layer.name: i for i, layer in enumerate(layers)}
    pairs.sort(key=lambda p: order[p[0].name])
    if rest and config.include_top:
        raise WeightFileError(
            f"{path!r} holds weights for {len(rest)} more layers than {arch.keras_name} as built "
            f"({', '.join(rest[:4])}): it is probably another architecture or configuration; nothing was loaded"
        )
    return pairs


def file_pairs(model, arch, config, path: str):
    """[(model layer, the file's arrays or None)] for Keras' published .h5 or a Keras 3 file."""
    if is_legacy_file(path):
        return pair_in_order(model, arch, config, read_legacy_h5(path), path)
    return keras3_pairs(model, arch, config, path)


def file_classes(path: str, backbone, arch) -> int | None:
    """The class count of the classifier in a Keras file of network `arch`, or None when it has
    none: what the file holds beyond `backbone` (the network built without its top); the
    classifier's last array is its bias, one value per class."""
    from anyshape.archs import model_config

    built = model_config(backbone)
    if built is None:
        raise ValueError("backbone must be a network built by anyshape.create_model")
    config = built[1]
    if is_legacy_file(path):
        arrays = [a for _, group in read_legacy_h5(path) for a in group]
        needed = sum(len(layer.weights) for layer in backbone.layers if layer.weights)
        return int(arrays[-1].shape[-1]) if len(arrays) > needed else None
    groups, _ = read_keras3_groups(path)
    pairs = keras3_pairs(backbone, arch, config, path)
    del pairs  # raises when the backbone is not in the file
    keys = _keras3_keys(backbone)
    rest = [k for k in groups if k not in {keys[layer.name] for layer in backbone.layers if layer.weights}]
    if not rest:
        return None
    # the classifier: the last of the remaining Dense groups, else of the remaining convolutions
    for kind in ("dense", "conv2d"):
        ranked = sorted((k for k in rest if _rank(k)[0] == kind), key=_rank)
        if ranked:
            return int(groups[ranked[-1]][-1].shape[-1])
    return int(groups[sorted(rest, key=_rank)[-1]][-1].shape[-1])


def classifier_hint(path: str, arch) -> int | None:
    """The class count of a Keras 2 HDF5 file (Keras' published layout) whose last weighted layer
    has the name of network `arch`'s classifier, in any case (as Keras' own files of it do), read from that
    layer's last array (its bias) without reading the others; None for any other file, which
    `file_classes` answers against a built backbone."""
    import h5py

    try:
        with h5py.File(path, "r") as f:
            g = f["model_weights"] if "layer_names" not in f.attrs and "model_weights" in f else f
            for name, group, weights in reversed(list(_weighted_layers(g))):
                if name.lower() != arch.classifier[0].lower():  # MobileNetV3's: Keras' "Logits"
                    return None
                shape = group[weights[-1]].shape
                return int(shape[-1]) if shape else None
    except (OSError, KeyError, ValueError):  # not an HDF5 file (.keras), or not this layout
        return None
    return None


def _weighted_layers(g):
    """(layer name, its group, its weight names) of each layer of a Keras 2 HDF5 weights group
    (`layer_names`, in order) that has weights."""

    def text(raw) -> str:
        return raw.decode("utf-8") if isinstance(raw, bytes) else str(raw)

    for name in (text(n) for n in g.attrs.get("layer_names", [])):
        group = g[name]
        names = [text(n) for n in group.attrs.get("weight_names", [])]
        if names:
            yield name, group, names


def head_layers(arch, config) -> tuple[str, ...]:
    if arch.family == "vgg":
        from anyshape.archs.vgg import TOP

        return TOP
    return tuple(arch.classifier)


def pair_in_order(model, arch, config, entries, path):
    """[(model layer, file arrays or None)] in Keras' order; None: the file has no such layer.

    The file's arrays are taken in order, as many per model layer as it has weights: Keras'
    ConvNeXt nests its stem and downsampling layers in Sequential models, which its files store
    as one layer holding their sublayers' weights in order, where anyshape's network is flat.
    """
    arrays = [a for _, group in entries for a in group]
    layers = [layer for layer in model.layers if layer.weights]
    head = set(head_layers(arch, config)) if config.include_top else set()
    needed = sum(len(layer.weights) for layer in layers)
    if len(arrays) > needed and config.include_top:
        raise WeightFileError(
            f"{path!r} holds {len(arrays)} weight arrays, {arch.keras_name} as built has {needed}: "
            "it is probably another architecture; nothing was loaded"
        )
    out, i = [], 0
    for layer in layers:
        n = len(layer.weights)
        if i + n <= len(arrays):
            out.append((layer, arrays[i : i + n]))
            i += n
        elif layer.name in head and i == len(arrays):
            out.append((layer, None))  # a file without the top into a model with it
        else:
            raise WeightFileError(
                f"{path!r} holds {len(arrays)} weight arrays, {arch.keras_name} as built has {needed}: "
                "it is probably another architecture (or another configuration of it); nothing was loaded"
            )
    return out
