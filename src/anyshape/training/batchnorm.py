"""BatchNorm statistics: `recalibrate_batchnorm`, the "precise BN" estimate (see anyshape.training)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

import numpy as np

__all__ = ["recalibrate_batchnorm"]


def _all_layers(model) -> list:
    out = []
    for layer in model.layers:
        out.append(layer)
        if hasattr(layer, "layers"):
            out.extend(_all_layers(layer))
    return out


def _batchnorm_layers(model) -> list:
    import keras

    return [l for l in _all_layers(model) if isinstance(l, keras.layers.BatchNormalization)]


def _batches(data, batch_size: int) -> Iterable:
    """Yield input batches from an array, a tf.data.Dataset / iterable of x or (x, y, ...)."""
    if isinstance(data, np.ndarray):
        for i in range(0, len(data), batch_size):
            yield data[i : i + batch_size]
        return
    for item in data:
        yield item[0] if isinstance(item, (tuple, list)) else item


def recalibrate_batchnorm(
    model, data, steps: int | None = None, *, batch_size: int = 32, layers: str | Sequence = "trainable"
) -> int:
    """Re-estimate BatchNorm moving statistics on `data`; returns the number of batches used.

    The new moving mean and variance of each layer are the plain average, over `steps` batches,
    of the batch mean and variance it sees in training mode (i.e. momentum k/(k+1) at step k:
    every batch counts the same, none is forgotten), the "precise BN" estimate. Computed at the
    training resolution it makes evaluation match training; on images of a new resolution it
    adapts a pretrained model to it (FixRes, Touvron et al. 2019).

    Args:
        model: a Keras model containing BatchNormalization layers.
        data: preprocessed model inputs: a numpy array (N, H, W, C), a tf.data.Dataset or any
            iterable of batches, each x or a tuple (x, y, ...). Use training images, without
            augmentation, at the resolution the model will be evaluated at.
        steps: number of batches to use (None: all of `data`).
        batch_size: batch size when `data` is an array (batch statistics need >= 8 or so).
        layers: "trainable" (default: the BatchNorm layers that are trainable, leaving frozen
            ones with their pretrained statistics), "all", or a list of layer names.

    Nothing else changes: weights, other layers' statistics, and each layer's momentum and
    trainable flag are as before.
    """
    import keras

    bns = _batchnorm_layers(model)
    chosen = _chosen_batchnorm_layers(model, bns, layers)
    if not chosen:
        return 0
    chosen_ids = {id(l) for l in chosen}
    others = [l for l in bns if id(l) not in chosen_ids]
    saved_other = [
        (l, keras.ops.convert_to_numpy(l.moving_mean), keras.ops.convert_to_numpy(l.moving_variance)) for l in others
    ]
    saved_flags = [(l, l.trainable, l.momentum) for l in bns]
    for l in bns:  # only chosen layers run in training mode; momentum 0: moving stats := batch stats
        l.trainable = id(l) in chosen_ids
        l.momentum = 0.0
    forward = _training_forward(model, tuple(id(l) for l in chosen))
    sums_mean = [np.zeros(l.moving_mean.shape, np.float64) for l in chosen]
    sums_var = [np.zeros(l.moving_variance.shape, np.float64) for l in chosen]
    n = 0
    try:
        for x in _batches(data, batch_size):
            if steps is not None and n >= steps:
                break
            forward(x)
            for i, l in enumerate(chosen):
                sums_mean[i] += keras.ops.convert_to_numpy(l.moving_mean)
                sums_var[i] += keras.ops.convert_to_numpy(l.moving_variance)
            n += 1
    finally:
        for l, trainable, momentum in saved_flags:
            l.trainable, l.momentum = trainable, momentum
        for l, m, v in saved_other:
            l.moving_mean.assign(m)
            l.moving_variance.assign(v)
    if n == 0:
        raise ValueError("recalibrate_batchnorm got no batches from data")
    for i, l in enumerate(chosen):
        l.moving_mean.assign((sums_mean[i] / n).astype(l.moving_mean.dtype))
        l.moving_variance.assign((sums_var[i] / n).astype(l.moving_variance.dtype))
    return n


def _chosen_batchnorm_layers(model, bns: list, layers: str | Sequence) -> list:
    """The BatchNorm layers `recalibrate_batchnorm(layers=...)` names, in model order."""
    if layers == "trainable":
        return [l for l in bns if l.trainable]
    if layers == "all":
        return list(bns)
    names = set(layers)
    chosen = [l for l in bns if l.name in names]
    missing = names - {l.name for l in chosen}
    if missing:
        raise ValueError(f"no BatchNormalization layer named {sorted(missing)} in {model.name}")
    return chosen


def _training_forward(model, key) -> Callable:
    """model(x, training=True) with the BatchNorm flags recalibration sets, compiled on TensorFlow
    (unless the model was compiled with run_eagerly=True, as Keras' own steps then run).

    The flags are Python attributes read when the function is traced, so a traced function is
    kept on the model for the same set of recalibrated layers (tracing costs seconds).
    """
    import keras

    if keras.backend.backend() != "tensorflow" or getattr(model, "run_eagerly", False):
        return lambda x: model(x, training=True)
    import tensorflow as tf

    cached = getattr(model, "_anyshape_recalibration_fn", None)
    if cached is None or cached[0] != key:
        fn = tf.function(lambda x: model(x, training=True), reduce_retracing=True)
        cached = (key, fn)
        model._anyshape_recalibration_fn = cached
    fn = cached[1]
    return lambda x: fn(tf.convert_to_tensor(x))
