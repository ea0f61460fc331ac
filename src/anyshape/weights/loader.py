"""Loading a weight set into a built anyshape InceptionV3: read, check everything, then assign.

The order matters for "nothing half loaded": the file is read into numpy (`Checkpoint`), every
layer's new values are computed and checked against the model's variable shapes, and only when
all of them are right is any variable assigned. Any problem raises `WeightFileError` (or
`WeightDownloadError`) with the model exactly as it was.

Rules beyond one-to-one copying:
  - first conv with another channel count: `channels.adapt_kernel` (rule `channel_adapt`);
  - BatchNorm: a source without gamma (Keras' files) into a model with gamma loads gamma = 1,
    which is exact; a source with gamma into a model without one is refused unless every gamma
    is 1 (folding gamma into the kernel would be exact in inference but wrong in training mode);
  - classifier: loaded when the class counts agree; a 1001-class head (TF-slim's background
    class 0) into a 1000-class model drops class 0; an ImageNet head (1000/1001) with another
    `classes` keeps the model's new, randomly initialised head and says so; any other mismatch
    is an error (a fine-tuned head is never dropped silently);
  - aux head: loaded when the source has it, otherwise left random with a warning.
"""

from __future__ import annotations

import logging
import os
from dataclasses import replace

import numpy as np

from anyshape.archs import model_config
from anyshape.weights import channels as channel_rules
from anyshape.weights.checkpoint import FIRST_CONV, Checkpoint, WeightFileError
from anyshape.weights.weight_set import WeightSet

__all__ = ["load_weight_set", "load_checkpoint", "read_checkpoint", "fetch_weight_file", "model_semantics"]

log = logging.getLogger("anyshape.weights")
IMAGENET_CLASSES = (1000, 1001)


def model_semantics(model) -> dict:
    """How a built anyshape model computes: bn_scale, count_include_pad, channels, head."""
    names = {layer.name for layer in getattr(model, "layers", [])}
    if f"{FIRST_CONV}_conv" not in names or f"{FIRST_CONV}_bn" not in names:
        raise ValueError(
            f"{getattr(model, 'name', model)!r} is not a model built by anyshape.InceptionV3 (it has no "
            f"{FIRST_CONV}_conv layer); build it with anyshape.InceptionV3(weights=...) or load the "
            "file into such a model"
        )
    first_conv = model.get_layer(f"{FIRST_CONV}_conv")
    classes = model.get_layer("predictions").units if "predictions" in names else None
    built = model_config(model)
    if built is not None:
        config = built[1]
        bn_scale = getattr(config, "bn_scale", False)
        count_include_pad = getattr(config, "count_include_pad", False)
    else:  # a model file saved before models carried their Config: read the layers
        bn_scale = bool(model.get_layer(f"{FIRST_CONV}_bn").scale)
        count_include_pad = any(n.endswith("_branch_pool_pad") for n in names)
    return {
        "bn_scale": bool(bn_scale),
        "count_include_pad": bool(count_include_pad),
        "channels": int(first_conv.kernel.shape[2]),
        "classes": classes,
        "aux": "aux_predictions" in names,
    }


def fetch_weight_file(
    weight_set: WeightSet, *, include_top: bool = True, cache_dir: str | None = None, progress: bool = True
) -> str:
    """The local file of a weight set: its path, or the cached/downloaded registry file."""
    if weight_set.path:
        return weight_set.path
    from anyshape.weights.download import cached_file

    url: str | None
    fname: str | None
    if not include_top and weight_set.url_notop:
        url, fname, fhash = weight_set.url_notop, weight_set.file_name_notop, weight_set.file_hash_notop
    else:
        url, fname, fhash = weight_set.url, weight_set.file_name, weight_set.file_hash
    if not url or not fname:
        raise WeightFileError(f"weight set {weight_set.name!r} has neither a path nor a URL")
    return cached_file(
        url, fname, expected_hash=fhash, hash_algorithm=weight_set.hash_algorithm, cache=cache_dir, progress=progress
    )


def read_checkpoint(path: str, weight_set: WeightSet, model) -> Checkpoint:
    if weight_set.format == "torch":
        from anyshape.weights.torch import read_torch_file

        return read_torch_file(path)
    from anyshape.weights.keras_h5 import read_keras_file

    return read_keras_file(path, model)


def _plan(model, ck: Checkpoint, weight_set: WeightSet, channel_adapt, seed) -> tuple[list, list[str]]:
    """[(layer, [arrays])] for every layer to assign, and the messages to log; raises on problems."""
    sem = model_semantics(model)
    plan: list = []
    notes: list[str] = []
    problems: list[str] = []
    for layer in model.layers:
        if not layer.weights:
            continue
        values = _layer_values(layer, ck, weight_set, channel_adapt, seed, notes, problems)
        if values is not None:
            plan.append((layer, values))
    _raise_problems(ck, problems)
    notes += _model_notes(sem, ck, weight_set)
    return plan, notes


def _layer_values(layer, ck: Checkpoint, weight_set: WeightSet, channel_adapt, seed, notes, problems):
    """The arrays to assign to `layer`, or None (nothing to load, or a problem appended)."""
    import keras

    shapes = [tuple(int(d) for d in w.shape) for w in layer.weights]
    if isinstance(layer, keras.layers.Conv2D):
        return _conv_values(layer, shapes[0], ck, channel_adapt, seed, notes, problems)
    if isinstance(layer, keras.layers.BatchNormalization):
        return _bn_values(layer, shapes, ck, problems)
    if isinstance(layer, keras.layers.Dense) and layer.name in ("predictions", "aux_predictions"):
        return _head_values(layer, shapes[0], ck, weight_set.label_offset, notes)
    # not an InceptionV3 layer (e.g. a layer before `input_tensor`): not ours to load
    log.debug("weights: %s (%s) is not part of InceptionV3; left as is", layer.name, type(layer).__name__)
    return None


def _conv_values(layer, shape: tuple, ck: Checkpoint, channel_adapt, seed, notes, problems):
    """[kernel] for a Conv2D layer (the first conv adapted to the model's channels)."""
    unit_name = layer.name[: -len("_conv")]
    unit = ck.units.get(unit_name)
    if unit is None:
        if not unit_name.startswith("aux_"):  # a missing aux head is reported once, by _model_notes
            problems.append(f"no weights for {layer.name}")
        return None
    if "kernel" not in unit:
        problems.append(f"no kernel for {layer.name}")
        return None
    kernel = unit["kernel"]
    if unit_name == FIRST_CONV and (kernel.shape[2] != shape[2] or channel_adapt is not None):
        kernel = _adapt_first_kernel(layer, kernel, shape[2], channel_adapt, seed, notes)
    if tuple(kernel.shape) != shape:
        problems.append(f"{layer.name} kernel: file {tuple(kernel.shape)}, model {shape}")
        return None
    return [kernel]


def _adapt_first_kernel(layer, kernel: np.ndarray, channels: int, channel_adapt, seed, notes) -> np.ndarray:
    """The first conv's kernel for `channels` input channels (rule `channel_adapt` or the default)."""
    rule = channel_adapt if channel_adapt is not None else channel_rules.default_rule(channels)
    try:
        adapted = channel_rules.adapt_kernel(kernel, channels, rule, seed=seed)
    except ValueError as e:
        raise WeightFileError(str(e)) from None
    notes.append(
        f"first conv ({layer.name}) adapted from {kernel.shape[2]} to "
        f"{channels} input channels with channel_adapt={channel_rules.describe_rule(rule)}; "
        "no other layer changed"
    )
    return adapted


def _bn_values(layer, shapes: list, ck: Checkpoint, problems):
    """[gamma (when the layer has one), beta, moving_mean, moving_variance] for a BatchNorm layer."""
    unit_name = layer.name[: -len("_bn")]
    unit = ck.units.get(unit_name)
    if unit is None:
        if not unit_name.startswith("aux_"):
            problems.append(f"no weights for {layer.name}")
        return None
    if not {"beta", "moving_mean", "moving_variance"} <= unit.keys():
        problems.append(f"no BatchNorm statistics for {layer.name}")
        return None
    values = []
    if layer.scale:
        values.append(unit.get("gamma", np.ones_like(unit["beta"])))
    elif "gamma" in unit and not np.all(unit["gamma"] == 1):
        raise WeightFileError(
            f"{ck.source}: its BatchNorm layers have a learned scale (gamma), but the model was "
            "built with bn_scale=False (Keras' layout, no gamma). Build it with bn_scale=True "
            "(the default when weights= names this file) to load it exactly."
        )
    values += [unit["beta"], unit["moving_mean"], unit["moving_variance"]]
    got = [tuple(v.shape) for v in values]
    if got != shapes:
        problems.append(f"{layer.name}: file {got}, model {shapes}")
        return None
    return values


def _head_values(layer, shape: tuple, ck: Checkpoint, label_offset, notes):
    """[kernel, bias] for a classifier (predictions, aux_predictions), or None to keep the model's."""
    unit = ck.units.get(layer.name)
    if unit is None:
        return None  # reported by _model_notes
    kernel, bias = unit["kernel"], unit["bias"]
    if kernel.shape[0] != shape[0]:
        notes.append(
            f"{layer.name}: the file's classifier reads {kernel.shape[0]} features but this "
            f"model's pooling gives {shape[0]}: kept the model's new, randomly initialised head"
        )
        return None
    return _head_classes(layer.name, kernel, bias, shape[1], label_offset, ck.source, notes)


def _head_classes(name: str, kernel, bias, n_model: int, label_offset, source: str, notes):
    """The classifier's arrays for `n_model` classes: as is, without a background class, or None."""
    n_file = kernel.shape[1]
    if n_file == n_model:
        return [kernel, bias]
    if n_file == n_model + 1 and (label_offset == 1 or n_file == 1001):
        notes.append(
            f"{name}: the file has {n_file} classes with class 0 as 'background' "
            f"(label offset 1); dropped it to give {n_model} classes"
        )
        return [kernel[:, 1:], bias[1:]]
    if n_file in IMAGENET_CLASSES:
        notes.append(
            f"{name}: classes={n_model} differs from the weight set's {n_file} ImageNet "
            f"classes: loaded the pretrained backbone and kept a new, randomly initialised "
            f"{n_model}-class head (train it, e.g. with anyshape's fine-tuning)"
        )
        return None
    raise WeightFileError(
        f"{source}: its classifier ({name}) has {n_file} classes but the model "
        f"was built with classes={n_model}. Build the model with classes={n_file} to load "
        f"it, or with include_top=False to use only its backbone."
    )


def _raise_problems(ck: Checkpoint, problems: list[str]) -> None:
    """One WeightFileError for every layer that does not fit (the first four named)."""
    if problems:
        raise WeightFileError(
            f"{ck.source} does not fit this model: "
            + "; ".join(problems[:4])
            + (f" (and {len(problems) - 4} more)" if len(problems) > 4 else "")
            + ". It is probably another architecture; nothing was loaded."
        )


def _model_notes(sem: dict, ck: Checkpoint, weight_set: WeightSet) -> list[str]:
    """What the whole load leaves different: random heads the file has no weights for, pool semantics."""
    notes = []
    if sem["classes"] is not None and "predictions" not in ck.units:
        notes.append(
            f"{ck.source} has no classifier weights (a 'notop' file): the {sem['classes']}-class "
            "head is randomly initialised"
        )
    if sem["aux"] and not ck.has_aux:
        notes.append(f"{ck.source} has no auxiliary-head weights: the aux head is randomly initialised")
    if weight_set.count_include_pad != sem["count_include_pad"]:
        notes.append(
            f"these weights were trained with count_include_pad={weight_set.count_include_pad} (3x3 "
            f"pool branches {'counting' if weight_set.count_include_pad else 'excluding'} the zero "
            f"padding) but the model was built with count_include_pad={sem['count_include_pad']}: "
            "border pixels of the pool branches differ from the original model; leave "
            "count_include_pad=None to get the weights' own semantics"
        )
    return notes


def load_weight_set(
    model,
    weight_set: WeightSet,
    report=None,
    *,
    channel_adapt=None,
    cache_dir=None,
    progress: bool = True,
    seed: int | None = None,
    **unknown,
) -> WeightSet:
    """Load `weight_set` into `model` (a network built by anyshape), all or nothing.

    InceptionV3 reads every file format below; the family's other networks read Keras' files
    (`anyshape.weights.family`).

    Args:
        model: a model built by `anyshape.create_model` (any input shape and channel count).
        weight_set: from `anyshape.weights.resolve(...)`.
        report: the model's ShapeReport (unused; accepted for the builder's call).
        channel_adapt: how the first conv's pretrained RGB kernel becomes C channels: "sum",
            "mean", "repeat", "zero", "random" or a mapping (see `anyshape.weights.channels`).
            Default: "sum" for 1 channel, "repeat" for 2 and >= 4, nothing for 3. Given
            explicitly, it applies at 3 channels too (e.g. (2, 1, 0) for BGR input).
        cache_dir: where registry files are cached (default: keras_home()/models).
        progress: show download progress on stderr.
        seed: seed for channel_adapt="random".

    Returns:
        The WeightSet as loaded (with `path`), also stored as `model.anyshape_weights`.
    """
    del report
    if unknown:
        raise ValueError(
            f"unknown weight option(s) {', '.join(sorted(unknown))}: the options are channel_adapt, "
            "cache_dir, progress and seed"
        )
    built = model_config(model)
    if built is not None and built[0].name != "inception_v3":
        if weight_set.format == "torch":
            from anyshape.weights.torch_family import load_twin_weights as load  # a twin's state dict
        else:
            from anyshape.weights.family import load_family_weights as load
        return load(
            model,
            built[0],
            built[1],
            weight_set,
            channel_adapt=channel_adapt,
            cache_dir=cache_dir,
            progress=progress,
            seed=seed,
        )
    sem = model_semantics(model)
    if channel_adapt is not None:
        try:
            channel_rules.check_rule(channel_adapt, sem["channels"])
        except ValueError as e:
            raise ValueError(str(e)) from None
    include_top = sem["classes"] is not None  # with another class count: backbone + new head
    path = fetch_weight_file(weight_set, include_top=include_top, cache_dir=cache_dir, progress=progress)
    ck = read_checkpoint(path, weight_set, model)
    return load_checkpoint(model, ck, replace(weight_set, path=os.fspath(path)), channel_adapt=channel_adapt, seed=seed)


def load_checkpoint(
    model, ck: Checkpoint, weight_set: WeightSet, *, channel_adapt=None, seed: int | None = None
) -> WeightSet:
    """Check `ck` against `model` completely, then assign it; see `load_weight_set`."""
    plan, notes = _plan(model, ck, weight_set, channel_adapt, seed)
    # everything is checked: assign
    for layer, values in plan:
        layer.set_weights(values)
    loaded = weight_set
    if weight_set.num_classes is None and ck.num_classes is not None:
        loaded = replace(loaded, num_classes=ck.num_classes, has_aux=ck.has_aux)
    classes = model_semantics(model)["classes"]
    if ck.num_classes == 1001 and classes == 1001:
        loaded = replace(loaded, label_offset=1)  # TF-slim head kept whole: class 0 is background
    elif ck.num_classes is not None and classes == ck.num_classes - 1:
        loaded = replace(loaded, label_offset=0, num_classes=classes)  # background class dropped
    model.anyshape_weights = loaded
    log.info("loaded weights %r from %s into %d layers", weight_set.name, ck.source, len(plan))
    for note in notes:
        log.warning(note)
    return loaded
