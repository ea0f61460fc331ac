"""Helpers the model tests share: a forward pass as numpy, weights with BatchNorm moved off its
defaults, and random images."""

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


def weight_shapes(model) -> list[tuple]:
    """The shapes of `model.get_weights()`, in order, without copying the weights (ConvNeXtXLarge
    has 1.4 GB of them)."""
    return [tuple(w.shape) for w in model.weights]


def keras_parity(ref, ours, x) -> float:
    """Give `ref` (a keras.applications model) randomised weights, copy them into `ours` and return
    the relative error of `ours` against `ref` on `x`."""
    ref.set_weights(randomised_weights(ref))
    ours.set_weights(ref.get_weights())
    return relative_error(run(ours, x), run(ref, x))


def positional_signature(fn) -> list[tuple]:
    """(name, default) of a constructor's positional-or-keyword parameters, in order."""
    import inspect

    params = inspect.signature(fn).parameters.values()
    return [(p.name, p.default) for p in params if p.kind is inspect.Parameter.POSITIONAL_OR_KEYWORD]


def unknown_record_layers(model, arch) -> list[str]:
    """The layer names an `Arch` record gives (first conv, input layers, classifier, blocks, feature
    points) that `model` (built with the record's defaults and the top) does not have."""
    have = {layer.name for layer in model.layers}
    named = [arch.first_conv, *arch.input_layers, *arch.classifier, *arch.blocks, *arch.feature_points]
    return [name for name in named if name not in have]


def feature_strides(arch, size: int = 224) -> list[int]:
    """The stride of each of an `Arch`'s feature points, from the shape engine at size x size."""
    from anyshape.shapes import explain

    by_layer = {stage.layer: stage for stage in explain((size, size, 3), arch=arch).stages}
    return [size // by_layer[name].height for name in arch.feature_points]
