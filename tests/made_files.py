"""Weight files in Keras' published layout, made by the tests from random-initialised models
(pretrained files cannot be downloaded here)."""

from __future__ import annotations

import hashlib
import os

import h5py
import keras


def write_legacy_h5(model, path, *, top: bool = True, head=(), value=None):
    """`model`'s weights in Keras' published layout (Keras 2 HDF5), its weighted layers in order;
    without the layers in `head` when `top` is False. `value(weight, array)`, when given, gives the
    array written for each weight (from its current value), one weight at a time: no copy of the
    whole model is held, and the model itself is left as it was."""
    layers = [layer for layer in model.layers if layer.weights and (top or layer.name not in head)]
    tmp = f"{path}.part"
    with h5py.File(tmp, "w") as f:
        f.attrs["layer_names"] = [layer.name.encode() for layer in layers]
        f.attrs["backend"] = b"tensorflow"
        f.attrs["keras_version"] = b"2.2.4"
        for layer in layers:
            g = f.create_group(layer.name)
            names = [f"{layer.name}/{w.name}:0" for w in layer.weights]
            g.attrs["weight_names"] = [n.encode() for n in names]
            for n, w in zip(names, layer.weights):
                a = keras.ops.convert_to_numpy(w)
                g.create_dataset(n, data=a if value is None else value(w, a))
    os.replace(tmp, path)


def md5(path) -> str:
    return digest(path, "md5")


def digest(path, algorithm: str) -> str:
    """The hex digest of a file (`hashlib`'s algorithm names; anyshape's loader checks "md5" and
    "sha256", of which sha256 is the faster one where the CPU has SHA instructions)."""
    h = hashlib.new(algorithm)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
