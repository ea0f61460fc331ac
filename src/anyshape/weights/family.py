"""Keras' weight files into any network of the family (all but InceptionV3) at any shape and channel count.

keras.applications' published files are Keras 2 HDF5 files ("legacy .h5": root `layer_names`, per
layer `weight_names`), which Keras loads by order: the model's layers that have weights, in
`model.layers` order, against the file's layers that have weights
(keras/src/legacy/saving/legacy_h5_format.py, load_weights_from_hdf5_group). Every anyshape network
has keras.applications' weighted layers in Keras' order with the same shapes (tests/test_archs.py),
so the same pairing holds here, with these rules where the shapes differ:

  - the first convolution (`Arch.first_conv`) takes another channel count by `channel_adapt`
    (`anyshape.weights.channels`: "sum", "mean", "repeat", "zero", "random" or a mapping);
  - where the network normalises its input in the graph per channel (`Arch.input_layers`:
    EfficientNet's Normalization, EfficientNetV2-B's, ConvNeXt's), the rule applies to the first
    convolution seen from the *pixels*: with y_c = a_c * x_c + b_c the in-graph map of the RGB
    network and y'_d = a'_d * x_d + b'_d the adapted network's own (its Normalization at another
    channel count: the RGB values averaged), the pixel kernel k_c * a_c is adapted by the rule and
    divided by a'_d, and the constant sum_c k_c * b_c - sum_d k'_d * b'_d (one value per output
    channel) goes into the first convolution's bias or, without one, into the moving mean of the
    BatchNorm that follows it. So "sum" on one channel computes what the RGB network computes on
    the gray image copied to R, G and B: exactly wherever the first convolution's window holds no
    zero padding (everywhere for ConvNeXt's 4x4 stride-4 "valid" stem; all but the border rows and
    columns of the stem's output for EfficientNet and EfficientNetV2-B, whose stem pads: the RGB
    network pads with zeros *after* its per-channel normalisation, a value no one-channel map
    reproduces). Where the in-graph map is the same for every channel (MobileNetV3's and
    EfficientNetV2-S/M/L's Rescaling) the plain rule is exact everywhere and nothing is folded;
  - the classifier (`Arch.classifier`): another class count keeps the model's new, randomly
    initialised head and says so; VGG's fully-convolutional head (any size from 224 up but 224)
    takes the Dense kernels reshaped (`anyshape.archs.vgg.convert_head_kernel`); its Flatten top
    below 224 (what Keras builds there) cannot take a top trained at 224: a registered set's top is
    refused before it is downloaded (`include_top=False` loads the backbone), a file's is refused
    with the rest of its problems;
  - a file without the top into a model with it leaves the head random and says so.

Keras 3 files (`.weights.h5` from `model.save_weights`, `.keras` from `model.save`) take the same
rules: Keras 3 stores each layer under its class name numbered per class in `model.layers` order
("conv2d", "conv2d_1", ...; keras/src/saving/saving_lib.py, _save_container_state and
_get_unique_name), not under its own name, so a layer of the model is paired with the file's group
of the same class and rank (`read_keras3_groups`, `file_pairs`). That holds for a file saved from
an anyshape model of the network at any size or channel count, or from keras.applications' model
where it is flat (all but ConvNeXt, whose stem and downsampling layers Keras nests in Sequential
models: such a file is refused, naming the nesting). Only the head may differ in class (VGG's conv
head against Keras' Dense one): a head layer without a group of its own class takes the file's
remaining groups in order.

Everything is read and checked before any variable is assigned: a file that does not fit raises
`WeightFileError` with the model unchanged. Reading and pairing the files is
`anyshape.weights.family_files`' job (its names are re-exported here); this module plans and
assigns.
"""

from __future__ import annotations

import logging
import os
from dataclasses import replace

import numpy as np

from anyshape.errors import Message, ParameterError
from anyshape.weights import channels as channel_rules
from anyshape.weights.checkpoint import WeightFileError
from anyshape.weights.family_files import (
    family_weight_file,
    file_classes,
    file_pairs,
    head_layers,
    pair_in_order,
    read_keras3_groups,
    read_legacy_h5,
)
from anyshape.weights.weight_set import WeightSet

__all__ = [
    "load_family_weights",
    "read_legacy_h5",
    "read_keras3_groups",
    "file_pairs",
    "file_classes",
    "input_affine",
    "family_weight_file",
]

log = logging.getLogger("anyshape.weights")
_pair = pair_in_order  # the name `weights.torch_family` imports
IMAGENET_CLASSES = (1000,)


def _uniform(values) -> bool:
    return bool(np.all(values == values[0]))


def input_affine(arch, config, channels: int, normalization=None) -> tuple[np.ndarray, np.ndarray]:
    """(a, b), one value per input channel: what the network's in-graph preprocessing does to a
    pixel x of channel c before the first convolution, y = a[c] * x + b[c]. `normalization`:
    (mean, variance) of a Normalization whose values are weights (EfficientNet's)."""
    a, b = np.ones(channels), np.zeros(channels)
    family = arch.family
    if family == "efficientnet":
        from anyshape.archs.efficientnet import per_channel

        mean, var = (np.asarray(v, np.float64).reshape(-1) for v in normalization)
        sd = np.sqrt(np.maximum(var, 0.0))
        scale = np.ones(channels)
        if config.stddev_rescaling:
            scale = 1.0 / np.sqrt(np.asarray(per_channel(tuple(config.stddev_rescaling), channels), np.float64))
        a, b = scale / (255.0 * sd), -mean / sd * scale
    elif family == "efficientnet_v2" and config.include_preprocessing:
        mean, var = config.normalization_mean, config.normalization_variance
        if mean and len(mean) == channels:
            sd = np.sqrt(np.asarray(var, np.float64))
            a, b = 1.0 / (255.0 * sd), -np.asarray(mean, np.float64) / sd
        else:
            a, b = np.full(channels, 1.0 / config.rescaling_divisor), np.full(channels, -1.0)
    elif family == "convnext" and config.include_preprocessing:
        from anyshape.archs.convnext import normalization_constants

        mean, var = (np.asarray(v, np.float64) for v in normalization_constants(channels))
        a, b = 1.0 / np.sqrt(var), -mean / np.sqrt(var)
    elif family == "mobilenet_v3" and config.include_preprocessing:
        a, b = np.full(channels, 1.0 / 127.5), np.full(channels, -1.0)
    return a, b


def _next_layer(model, layer):
    """The layer that reads `layer`'s output (the first one found), or None."""
    for other in model.layers:
        for node in getattr(other, "_inbound_nodes", []):
            if any(
                getattr(t, "_keras_history", None) and t._keras_history.operation is layer for t in node.input_tensors
            ):
                return other
    return None


class _Plan:
    """The arrays to assign, per layer, and what to tell the user."""

    def __init__(self):
        self.values: dict[str, list] = {}
        self.notes: list[str] = []
        self.problems: list[str] = []


def _shapes(layer) -> list[tuple]:
    return [tuple(int(d) for d in w.shape) for w in layer.weights]


def _normalization_values(arrays, channels: int) -> list:
    """EfficientNet's Normalization (mean, variance, count) for `channels`: the file's RGB values,
    or their average for another channel count (`input_affine` folds the difference)."""
    mean, var, count = arrays
    if mean.shape[-1] != channels:
        mean = np.full((channels,), mean.mean(), np.float32)
        var = np.full((channels,), var.mean(), np.float32)
    return [mean, var, count]


def _first_conv(plan: _Plan, model, arch, config, layer, arrays, norm, channel_adapt, seed, channels):
    """The first convolution's arrays for `channels` input channels, folding the in-graph map."""
    kernel = np.asarray(arrays[0], np.float32)
    rest = [np.asarray(a) for a in arrays[1:]]
    source = kernel.shape[2]
    rgb_a, rgb_b = input_affine(arch, config, source, norm[0] if norm else None)
    our_a, our_b = input_affine(arch, config, channels, norm[1] if norm else None)
    same_map = source == channels and np.allclose(rgb_a, our_a) and np.allclose(rgb_b, our_b)
    if same_map and channel_adapt is None:
        return [kernel, *rest], None
    rule = channel_adapt if channel_adapt is not None else channel_rules.default_rule(channels)
    # the plain rule where the in-graph map is one and the same for every channel (or none)
    if source == channels:
        plain = bool(_uniform(rgb_a) and _uniform(rgb_b) and same_map)
    else:
        plain = bool(
            _uniform(rgb_a)
            and _uniform(rgb_b)
            and _uniform(our_a)
            and _uniform(our_b)
            and np.isclose(rgb_a[0], our_a[0])
            and np.isclose(rgb_b[0], our_b[0])
        )
    plain = plain or (isinstance(rule, str) and rule == "random")  # a fresh kernel: nothing to fold
    try:
        if plain:
            adapted, offset = channel_rules.adapt_kernel(kernel, channels, rule, seed=seed), None
        else:
            pixel = kernel.astype(np.float64) * rgb_a[None, None, :, None]
            folded = channel_rules.adapt_kernel(pixel, channels, rule, seed=seed).astype(np.float64)
            adapted64 = folded / our_a[None, None, :, None]
            offset = np.einsum("ijco,c->o", kernel.astype(np.float64), rgb_b) - np.einsum("ijdo,d->o", adapted64, our_b)
            adapted = adapted64.astype(np.float32)
    except ValueError as e:
        raise WeightFileError(str(e)) from None
    plan.notes.append(
        f"first conv ({layer.name}) adapted from {source} to {channels} input channels with "
        f"channel_adapt={channel_rules.describe_rule(rule)}"
        + ("" if offset is None else ", seen from the pixels through the network's in-graph normalisation")
        + "; no other layer changed"
        + ("" if offset is None else " but for the constant the normalisation adds (folded in after the conv)")
    )
    return [adapted, *rest], offset


def _trained_top_problem(arch, config, fc1_inputs: int | None = None) -> str | None:
    """Why a top trained at the network's default size cannot load into `config`'s model (VGG's
    Flatten top at another size; `anyshape.archs.vgg.trained_top_problem`), or None."""
    if arch.family != "vgg":
        return None
    from anyshape.archs.vgg import trained_top_problem

    return trained_top_problem(config, fc1_inputs)


def _check_trained_top(arch, config, weight_set: WeightSet) -> None:
    """Refuses, before any download, a registered set's top (trained at the default size) that
    cannot fit `config`'s model; a file's top is checked with its arrays (`_head_values`)."""
    if weight_set.path is not None:
        return
    problem = _trained_top_problem(arch, config)
    if problem is not None:
        raise ParameterError(
            Message(
                "{network}: the classifier of {weights=*}: {problem}. For the pretrained backbone at this "
                "size give {python:include_top=False}{cli:no --include-top (anyshape features)}; for its "
                "classifier, an input of at least {size} x {size}",
                network=arch.keras_name,
                weights=weight_set.name,
                problem=problem,
                size=arch.default_size,
            )
        )


def _head_values(plan: _Plan, arch, config, layer, arrays, shapes):
    """A head layer's arrays (VGG's Dense kernels reshaped for its conv head), or None to keep the
    model's new head (another class count)."""
    arrays = [np.asarray(a, np.float32) for a in arrays]
    if arch.family == "vgg" and arrays[0].ndim != len(shapes[0]):
        from anyshape.archs.vgg import convert_head_kernel

        try:
            arrays[0] = convert_head_kernel(arrays[0], layer.name, "conv" if len(shapes[0]) == 4 else "flatten")
        except ValueError as e:
            plan.problems.append(str(e))
            return None
    if [a.shape for a in arrays] == shapes:
        return arrays
    problem = _trained_top_problem(arch, config, arrays[0].shape[0]) if layer.name == "fc1" else None
    if problem is not None:
        plan.problems.append(f"fc1: {problem}")
        return None
    classes_file, classes_model = arrays[0].shape[-1], shapes[0][-1]
    if classes_file != classes_model and arrays[0].shape[:-1] == shapes[0][:-1]:
        if classes_file in IMAGENET_CLASSES:
            plan.notes.append(
                f"{layer.name}: classes={classes_model} differs from the weight set's {classes_file} ImageNet "
                f"classes: loaded the pretrained backbone and kept a new, randomly initialised "
                f"{classes_model}-class head (train it, e.g. with anyshape's fine-tuning)"
            )
            return None
        raise WeightFileError(
            f"its classifier ({layer.name}) has {classes_file} classes but the model was built with "
            f"classes={classes_model}. Build the model with classes={classes_file} to load it, or with "
            "include_top=False to use only its backbone."
        )
    plan.problems.append(f"{layer.name}: file {[a.shape for a in arrays]}, model {shapes}")
    return None


def assign_plan(model, plan) -> None:
    """Assigns a checked plan's values (every problem was found before: nothing is half loaded)."""
    for name, values in plan.values.items():
        layer = model.get_layer(name)
        layer.set_weights(values)
        if hasattr(layer, "finalize_state") and type(layer).__name__ == "Normalization":
            layer.finalize_state()  # Normalization computes with a copy of its mean and variance


def _plan(model, arch, config, pairs, path, channel_adapt, seed, channels) -> _Plan:
    """What to assign for `pairs` ([(model layer, the file's arrays or None)], in model order)."""
    plan = _Plan()
    head = set(head_layers(arch, config)) if config.include_top else set()
    norm = None
    offset = None
    for layer, arrays in pairs:
        shapes = _shapes(layer)
        if arrays is None:
            plan.notes.append(
                f"{path} has no weights for {layer.name} (a file without the top): it is randomly initialised"
            )
            continue
        if layer.name in arch.input_layers and type(layer).__name__ == "Normalization":
            values = _normalization_values(arrays, channels)
            norm = ((arrays[0], arrays[1]), (values[0], values[1]))
        elif layer.name == arch.first_conv:
            values, offset = _first_conv(plan, model, arch, config, layer, arrays, norm, channel_adapt, seed, channels)
        elif layer.name in head:
            values = _head_values(plan, arch, config, layer, arrays, shapes)
            if values is None:
                continue
        else:
            values = list(arrays)
        got = [tuple(np.shape(v)) for v in values]
        if got != shapes:
            plan.problems.append(f"{layer.name}: file {got}, model {shapes}")
            continue
        plan.values[layer.name] = values
    if offset is not None and not plan.problems:
        _place_offset(plan, model, arch, offset)
    if plan.problems:
        raise WeightFileError(
            f"{path} does not fit this {arch.keras_name}: "
            + "; ".join(plan.problems[:4])
            + (f" (and {len(plan.problems) - 4} more)" if len(plan.problems) > 4 else "")
            + ". It is probably another architecture or configuration; nothing was loaded."
        )
    return plan


def _place_offset(plan: _Plan, model, arch, offset: np.ndarray) -> None:
    """Add the folded constant after the first convolution: its bias, or the next BatchNorm's mean."""
    conv = model.get_layer(arch.first_conv)
    values = plan.values[conv.name]
    if getattr(conv, "use_bias", False):
        values[1] = (values[1].astype(np.float64) + offset).astype(np.float32)
        return
    bn = _next_layer(model, conv)
    if bn is None or type(bn).__name__ != "BatchNormalization" or bn.name not in plan.values:
        raise WeightFileError(
            f"{arch.keras_name}: the first convolution has no bias and no BatchNorm after it to take the "
            "constant of its in-graph normalisation; this channel count cannot be loaded exactly"
        )
    bn_values = plan.values[bn.name]
    i = len(bn_values) - 2  # [gamma,] beta, moving_mean, moving_variance
    # BN(x + offset) with mean m == BN(x) with mean m - offset
    bn_values[i] = (bn_values[i].astype(np.float64) - offset).astype(np.float32)


def load_family_weights(
    model, arch, config, weight_set: WeightSet, *, channel_adapt=None, cache_dir=None, progress=True, seed=None
) -> WeightSet:
    """Load `weight_set` (a Keras file) into `model`, network `arch` built as `config`, all or nothing."""
    conv = model.get_layer(arch.first_conv)
    channels = int(conv.kernel.shape[2])
    if channel_adapt is not None:
        channel_rules.check_rule(channel_adapt, channels)
    if weight_set.format != "keras":
        raise WeightFileError(
            f"{weight_set.name}: {arch.keras_name} loads Keras weight files; PyTorch state dicts load into InceptionV3 only"
        )
    # the file with the classifier only where it is used: another class count gets a new head, so
    # its backbone comes from the file without the top (as InceptionV3's loader does)
    with_top = config.include_top and (weight_set.num_classes is None or config.classes == weight_set.num_classes)
    if with_top:
        _check_trained_top(arch, config, weight_set)
    path = os.fspath(family_weight_file(weight_set, arch, config, with_top, cache_dir, progress))
    plan = _plan(model, arch, config, file_pairs(model, arch, config, path), path, channel_adapt, seed, channels)
    assign_plan(model, plan)
    loaded = replace(weight_set, path=path, num_classes=config.classes if config.include_top else None)
    model.anyshape_weights = loaded
    log.info("loaded weights %r from %s into %d layers", weight_set.name, path, len(plan.values))
    if config.include_top and not with_top:
        plan.notes.insert(
            0,
            f"classes={config.classes} differs from the weight set's {weight_set.num_classes} ImageNet classes: "
            f"loaded the pretrained backbone from {os.path.basename(path)} (the file without the top) and kept a "
            f"new, randomly initialised {config.classes}-class head (train it, e.g. with anyshape's fine-tuning)",
        )
    for note in plan.notes:
        log.warning(note)
    return loaded
