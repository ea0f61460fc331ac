"""Helpers the model tests share: a forward pass as numpy, weights with BatchNorm moved off its
defaults, random images, and the drop-in check against a keras.applications model."""

import re

import keras
import numpy as np


def run(model, x):
    """Forward pass in inference mode, as numpy (a list for multi-output models). Calls the model
    directly (no predict()), which keeps JAX from compiling the whole graph once per shape."""
    out = model(x, training=False)
    if isinstance(out, (list, tuple)):
        return [keras.ops.convert_to_numpy(o) for o in out]
    return keras.ops.convert_to_numpy(out)


def randomised_weights(model, seed=0):
    """The model's weights with BatchNorm statistics and offsets moved off their defaults, so
    that parity tests exercise every array (fresh BN has mean 0, variance 1, beta 0)."""
    rng = np.random.default_rng(seed)
    out = []
    for w in model.weights:
        a = keras.ops.convert_to_numpy(w.value)
        if "moving_variance" in w.path:
            a = rng.uniform(0.5, 1.5, a.shape)
        elif "moving_mean" in w.path or "beta" in w.path or "gamma" in w.path:
            a = a + rng.normal(0, 0.1, a.shape)
        out.append(a.astype(a.dtype if a.dtype.kind in "iu" else "float32"))
    return out


def images(shape, seed=1, n=2, low=-1.0, high=1.0):
    return np.random.default_rng(seed).uniform(low, high, (n, *shape)).astype("float32")


def relative_error(a, b) -> float:
    """max |a - b| / max |b|: the parity measure the issues state (relative 1e-5, 1e-6)."""
    a, b = np.asarray(a, "float64"), np.asarray(b, "float64")
    return float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-12))


def _auto_named(layer) -> bool:
    """Whether Keras named the layer itself (Rescaling -> "rescaling", "rescaling_3", ...): such names
    depend on what else the session built, so parity cannot ask for them."""
    from keras.src.utils.naming import to_snake_case  # how Keras makes the name

    return re.fullmatch(rf"{to_snake_case(type(layer).__name__)}(_\d+)?", layer.name) is not None


def assert_keras_layout(ours, keras_model, dropped=("ZeroPadding2D",)):
    """`ours` is a drop-in for the keras.applications model: the same weights (shapes, in order) in
    layers of the same names, and every layer Keras names itself there under that name with the same
    class, except the weightless kinds in `dropped` (e.g. correct_pad's paddings, which anyshape
    replaces by "same" padding)."""
    assert [tuple(w.shape) for w in ours.weights] == [tuple(w.shape) for w in keras_model.weights]

    def weighted(model):
        return [("<auto>" if _auto_named(layer) else layer.name) for layer in model.layers if layer.weights]

    assert weighted(ours) == weighted(keras_model)
    kinds = {layer.name: type(layer).__name__ for layer in ours.layers}
    for layer in keras_model.layers:
        kind = type(layer).__name__
        if kind == "InputLayer" or kind in dropped or _auto_named(layer):
            continue
        assert kinds.get(layer.name) == kind, f"Keras' {kind} {layer.name!r} is {kinds.get(layer.name)} here"
