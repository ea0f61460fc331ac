"""Keras weight files -> the loader's `Checkpoint`, read with h5py (nothing assigned here).

Three layouts:
  - legacy Keras 2 HDF5, as keras.applications publishes InceptionV3
    (inception_v3_weights_tf_dim_ordering_tf_kernels[_notop].h5): root attribute `layer_names`,
    one group per layer with attribute `weight_names` and datasets named like
    "conv2d_1/kernel:0". Keras loads it by layer order (keras/src/legacy/saving/legacy_h5_format.py,
    load_weights_from_hdf5_group), and so do we when the names are not ours.
  - Keras 3 `.weights.h5` (model.save_weights): groups `layers/<class>_<k>/vars/<i>`, numbered
    per layer class in model.layers order (keras/src/saving/saving_lib.py, _get_unique_name);
    the `vars` group's `name` attribute is the layer's own name.
  - `.keras` (model.save): a zip with model.weights.h5 in the Keras 3 layout.
Files saved from an anyshape model are matched by layer name; others (keras.applications,
whose layers are auto-named) by order within each layer class, which is the same because our
builder keeps keras.applications' order of weighted layers.

Files written by anyshape (`anyshape convert`, `save_weight_file`) carry the weight set's
metadata (preprocessing, pool semantics) as JSON: the root attribute "anyshape_weights" of the
.weights.h5, or the zip member "anyshape_weights.json" of a .keras file.
"""

from __future__ import annotations

import io
import os
import re
import zipfile

import numpy as np

from anyshape.weights.checkpoint import CONV_SPECS, DENSE_NAMES, Checkpoint, WeightFileError
from anyshape.weights.weight_set import WeightSet

__all__ = ["describe_keras_file", "read_keras_file", "METADATA_ATTR", "METADATA_MEMBER"]

METADATA_ATTR = "anyshape_weights"
METADATA_MEMBER = "anyshape_weights.json"
_CLASS_KEY = re.compile(r"^(.*?)(?:_(\d+))?$")
_OUR_NAMES = frozenset([f"{s.name}_{part}" for s in CONV_SPECS for part in ("conv", "bn")] + list(DENSE_NAMES))


def _h5py():
    import h5py

    return h5py


class _Opened:
    """Open a Keras file's HDF5 part (for .keras: the zip member) and keep the zip's extras."""

    def __init__(self, path: str):
        self.path = path
        self.zip_json: dict[str, str] = {}
        h5py = _h5py()
        try:
            if path.lower().endswith(".keras"):
                with zipfile.ZipFile(path) as z:
                    names = z.namelist()
                    if "model.weights.h5" not in names:
                        raise WeightFileError(
                            f"{path!r} is a zip without model.weights.h5: not a Keras 3 .keras file "
                            f"(members: {', '.join(names[:5])})"
                        )
                    for member in ("config.json", METADATA_MEMBER):
                        if member in names:
                            self.zip_json[member] = z.read(member).decode("utf-8")
                    data = z.read("model.weights.h5")
                self.file = h5py.File(io.BytesIO(data), "r")
            else:
                self.file = h5py.File(path, "r")
        except WeightFileError:
            raise
        except (OSError, zipfile.BadZipFile, KeyError, ValueError) as e:
            raise WeightFileError(
                f"{path!r} could not be read as a Keras weights file ({e}); it may be truncated "
                "or corrupt: download or save it again"
            ) from e

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.file.close()


def _is_legacy(f) -> bool:
    return "layer_names" in f.attrs or ("model_weights" in f and "layer_names" in f["model_weights"].attrs)


def _decode(x) -> str:
    return x.decode("utf-8") if isinstance(x, bytes) else str(x)


def _legacy_layers(f, lazy: bool = False) -> list[tuple[str, str, dict[str, np.ndarray]]]:
    """[(layer name, kind, {kernel/bias/gamma/beta/moving_mean/moving_variance: array})]."""
    g = f["model_weights"] if "model_weights" in f and "layer_names" not in f.attrs else f
    out = []
    for lname in (_decode(n) for n in g.attrs["layer_names"]):
        group = g[lname]
        weight_names = [_decode(n) for n in group.attrs.get("weight_names", [])]
        if not weight_names:
            continue
        arrays = {}
        for wn in weight_names:
            short = wn.split("/")[-1].split(":")[0]
            arrays[short] = group[wn] if lazy else np.asarray(group[wn], dtype=np.float32)
        out.append((lname, _kind(arrays, lname), arrays))
    return out


def _kind(arrays: dict[str, np.ndarray], lname: str) -> str:
    if "moving_mean" in arrays:
        return "batch_normalization"
    k = arrays.get("kernel")
    if k is not None and k.ndim == 4:
        return "conv2d"
    if k is not None and k.ndim == 2:
        return "dense"
    raise WeightFileError(f"layer {lname!r} in the file has weights {sorted(arrays)}: not a layer InceptionV3 has")


def _keras3_layers(f, lazy: bool = False) -> list[tuple[str, str, dict[str, np.ndarray]]]:
    """Keras 3 layout, in model.layers order per class (the class counter's order)."""
    if "layers" not in f:
        raise WeightFileError("no 'layers' group: not a Keras weights file")
    entries = []
    for key in f["layers"]:
        group = f["layers"][key]
        if "vars" not in group or not len(group["vars"]):
            continue
        m = _CLASS_KEY.match(key)
        if m is None:
            raise WeightFileError(f"layer group {key!r}: not a Keras 3 layer name")
        cls, index = m.group(1), int(m.group(2) or 0)
        vars_ = group["vars"]
        lname = _decode(vars_.attrs.get("name", key))
        values = [vars_[str(i)] if lazy else np.asarray(vars_[str(i)], dtype=np.float32) for i in range(len(vars_))]
        if cls == "conv2d":
            arrays = {"kernel": values[0]}
            if len(values) > 1:
                arrays["bias"] = values[1]
        elif cls == "batch_normalization":
            names = (
                ["gamma", "beta", "moving_mean", "moving_variance"][-len(values) :] if len(values) in (3, 4) else None
            )
            if names is None:
                raise WeightFileError(f"BatchNormalization layer {lname!r} has {len(values)} variables")
            arrays = dict(zip(names, values))
        elif cls == "dense":
            arrays = {"kernel": values[0], "bias": values[1]} if len(values) == 2 else {"kernel": values[0]}
        else:
            raise WeightFileError(f"layer {lname!r} ({cls}) has weights: InceptionV3 has no such layer")
        entries.append((cls, index, lname, arrays))
    entries.sort(key=lambda e: (e[0], e[1]))
    return [(lname, cls, arrays) for cls, _, lname, arrays in entries]


def _read_layers(f, path: str, lazy: bool = False) -> list[tuple[str, str, dict[str, np.ndarray]]]:
    """The file's weighted layers in either layout; any problem as a WeightFileError naming `path`."""
    try:
        return _legacy_layers(f, lazy) if _is_legacy(f) else _keras3_layers(f, lazy)
    except WeightFileError as e:
        raise WeightFileError(f"{path!r}: {e}") from None
    except (KeyError, OSError, ValueError) as e:
        raise WeightFileError(f"{path!r} is damaged or not a Keras weights file ({e})") from e


def _model_order(model) -> dict[str, list[str]]:
    """Our model's weighted layers per class, in model.layers order, without the aux head."""
    import keras

    order: dict[str, list] = {"conv2d": [], "batch_normalization": [], "dense": []}
    for layer in model.layers:
        if layer.name.startswith("aux_"):
            continue
        if isinstance(layer, keras.layers.Conv2D):
            order["conv2d"].append(layer.name)
        elif isinstance(layer, keras.layers.BatchNormalization):
            order["batch_normalization"].append(layer.name)
        elif isinstance(layer, keras.layers.Dense):
            order["dense"].append(layer.name)
    return order


def _unit_name(layer_name: str) -> str:
    for suffix in ("_conv", "_bn"):
        if layer_name.endswith(suffix):
            return layer_name[: -len(suffix)]
    return layer_name


def read_keras_file(path: str, model) -> Checkpoint:
    """Read a Keras weight file into a Checkpoint matched to `model`'s layers."""
    with _Opened(path) as opened:
        f = opened.file
        layers = _read_layers(f, path)
    # anyshape's own files (any configuration, e.g. with an aux head the model lacks) by name
    by_name = layers and all(lname in _OUR_NAMES for lname, _, _ in layers)
    if not by_name:
        order = _model_order(model)
        per_class: dict[str, list] = {"conv2d": [], "batch_normalization": [], "dense": []}
        for lname, cls, arrays in layers:
            per_class[cls].append((lname, arrays))
        n_conv, n_bn = len(per_class["conv2d"]), len(per_class["batch_normalization"])
        if n_conv != len(order["conv2d"]) or n_bn != len(order["batch_normalization"]) or len(per_class["dense"]) > 1:
            raise WeightFileError(
                f"{path!r} has {n_conv} conv, {n_bn} BatchNorm and {len(per_class['dense'])} dense "
                f"layers; InceptionV3 has {len(order['conv2d'])}, {len(order['batch_normalization'])} "
                "and 1 (0 without the top). It is another architecture (or a model with extra "
                "layers); nothing was loaded."
            )
        renamed = []
        for cls in ("conv2d", "batch_normalization"):
            renamed += [(ours, cls, arrays) for ours, (_, arrays) in zip(order[cls], per_class[cls])]
        renamed += [("predictions", "dense", arrays) for _, arrays in per_class["dense"]]
        layers = renamed
    units: dict[str, dict[str, np.ndarray]] = {}
    for lname, cls, arrays in layers:
        if cls == "dense":
            if lname not in DENSE_NAMES:
                raise WeightFileError(f"{path!r}: dense layer {lname!r} is not part of InceptionV3")
            units[lname] = dict(arrays)
            continue
        unit = units.setdefault(_unit_name(lname), {})
        if cls == "conv2d":
            if "bias" in arrays:
                raise WeightFileError(f"{path!r}: conv layer {lname!r} has a bias; InceptionV3's convs have none")
            unit["kernel"] = arrays["kernel"]
        else:
            unit.update(arrays)
    return Checkpoint(units=units, source=path, layout="keras")


def read_metadata(path: str) -> str | None:
    """The weight-set metadata anyshape stored in a Keras file (JSON text), or None."""
    with _Opened(path) as opened:
        f = opened.file
        return opened.zip_json.get(METADATA_MEMBER) or (
            _decode(f.attrs[METADATA_ATTR]) if METADATA_ATTR in f.attrs else None
        )


def describe_keras_file(path: str) -> WeightSet:
    """What a Keras weights file needs (BatchNorm gamma? pools counting padding?), cheaply."""
    with _Opened(path) as opened:
        f = opened.file
        meta = opened.zip_json.get(METADATA_MEMBER) or (
            _decode(f.attrs[METADATA_ATTR]) if METADATA_ATTR in f.attrs else None
        )
        if meta:
            return WeightSet.from_json(meta, path=path)
        layers = _read_layers(f, path, lazy=True)
        if _is_legacy(f):
            names = [lname for lname, _, _ in layers]
        else:  # every layer's name, weighted or not (the pool-padding layers have no weights)
            names = [
                _decode(f["layers"][k]["vars"].attrs.get("name", k)) for k in f["layers"] if "vars" in f["layers"][k]
            ]
        # (datasets are read lazily: only shapes and names, while the file is open)
        bn_scale = any(cls == "batch_normalization" and "gamma" in arrays for _, cls, arrays in layers)
        dense = {lname: a for lname, cls, a in layers if cls == "dense"}
        head = (
            dense.get("predictions")
            if "predictions" in dense
            else (next(iter(dense.values())) if len(dense) == 1 else None)
        )
        num_classes = None if head is None else int(head["kernel"].shape[1])
    config = opened.zip_json.get("config.json", "")
    count_include_pad = any(n.endswith("_branch_pool_pad") for n in names) or "_branch_pool_pad" in config
    return WeightSet(
        name=os.path.basename(path),
        source="file",
        format="keras",
        path=path,
        bn_scale=bn_scale,
        count_include_pad=count_include_pad,
        num_classes=num_classes,
        has_aux="aux_predictions" in dense,
        mode="tf",  # Keras' InceptionV3 convention; `preprocessing=` can say otherwise
        declared=False,
        description="Keras weights file",
    )


def write_metadata(path: str, weight_set: WeightSet) -> None:
    """Store the weight set's metadata in a .weights.h5 (root attribute) or .keras (zip member)."""
    text = weight_set.to_json()
    if path.lower().endswith(".keras"):
        with zipfile.ZipFile(path, "a") as z:
            z.writestr(METADATA_MEMBER, text)
    else:
        with _h5py().File(path, "a") as f:
            f.attrs[METADATA_ATTR] = text
