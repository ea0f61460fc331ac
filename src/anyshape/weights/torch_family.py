"""PyTorch twins of the family: a torchvision or timm state dict converted into the Keras layers of
ResNet, DenseNet, VGG, MobileNet, MobileNetV2, InceptionResNetV2, EfficientNet B0-B7, EfficientNetV2, MobileNetV3,
ConvNeXt, Xception or NASNetLarge and loaded all or nothing (the layouts, which torch module feeds which Keras layer, and the twins'
build overrides: `anyshape.weights.torch_layouts`; the weight sets: `anyshape.weights.torch_sets`).

What differs in layout and how it is converted (tensors become Keras' arrays, in Keras' order):
  - conv weight (out, in, kh, kw) -> kernel (kh, kw, in, out); depthwise (C, 1, kh, kw) -> (kh, kw, C, 1);
  - BatchNorm weight, bias, running_mean, running_var -> gamma, beta, moving_mean, moving_variance
    (num_batches_tracked, a training counter, is dropped);
  - Linear weight (out, in) -> kernel (in, out);
  - VGG's fc1: torch flattens block5_pool channel-first, (c, h, w), Keras channel-last, (h, w, c):
    its 25,088 input columns are reordered. torchvision's adaptive 7x7 average pool is the identity
    at 224 x 224 only, so with the top VGG's twin is the same function at 224 (with or without the
    top at any size >= 32 its features are); at other sizes anyshape's fully-convolutional head
    averages the classifier over 7 x 7 windows where torchvision resamples block5_pool to 7 x 7.

Everything else is the same arithmetic: the stems' zero padding before a max pool that follows a
ReLU equals torch's -inf padding (the inputs are >= 0), "same" 3x3 stride-1 convs pad one pixel on
each side as torch's padding=1 does.

A state dict is read without running code (`anyshape.weights.torch.read_state_dict`); one that
does not match the layout is refused, naming the first tensor that is missing, misshapen or left
over; nothing is assigned before everything is checked (`anyshape.weights.family`'s plan then
adapts the first convolution to the model's channels and the classifier to its classes, as for
Keras' files).
"""

from __future__ import annotations

import logging
import os
from dataclasses import replace

import numpy as np

from anyshape.weights.checkpoint import WeightFileError
from anyshape.weights.torch_layouts import Unit, head_classes, head_units, normalised_keys, twin_layout
from anyshape.weights.torch_sets import TWIN_OVERRIDES, TWIN_SOURCE
from anyshape.weights.weight_set import WeightSet

__all__ = [
    "TWIN_OVERRIDES",
    "TWIN_FAMILIES",
    "twin_layout",
    "state_dict_to_entries",
    "load_twin_weights",
    "entries_to_state_dict",
    "head_classes",
    "normalised_keys",
]

log = logging.getLogger("anyshape.weights")

TWIN_FAMILIES = tuple(TWIN_OVERRIDES)
_SOURCE = {family: f"{source}'s" for family, source in TWIN_SOURCE.items()}


def _convert(unit: Unit, tensors: list[np.ndarray], source: str) -> list[np.ndarray]:
    """The torch tensors of `unit` as the Keras layer's arrays; raises naming a tensor of the wrong rank."""
    w = tensors[0]
    if unit.kind in (
        "separable",
        "sep_conv2d",
    ):  # depthwise (C, 1, kh, kw) -> (kh, kw, C, 1); pointwise (out, C, 1, 1) -> (1, 1, C, out)
        p = tensors[1]
        if w.ndim != 4 or w.shape[1] != 1 or p.ndim != 4 or p.shape[1:] != (w.shape[0], 1, 1):
            raise WeightFileError(
                f"{source}: separable conv {unit.module} has tensors of shapes {tuple(w.shape)} and "
                f"{tuple(p.shape)}, not (channels, 1, kh, kw) and (out, channels, 1, 1)"
            )
        return [np.ascontiguousarray(w.transpose(2, 3, 0, 1)), np.ascontiguousarray(p.transpose(2, 3, 1, 0))]
    if unit.kind in ("conv", "conv_bias", "depthwise"):
        if w.ndim != 4 or (unit.kind == "depthwise" and w.shape[1] != 1):
            want = "(channels, 1, kh, kw)" if unit.kind == "depthwise" else "(out, in, kh, kw)"
            raise WeightFileError(f"{source}: tensor {unit.module}.weight has shape {tuple(w.shape)}, not {want}")
        kernel = w.transpose(2, 3, 0, 1) if unit.kind == "depthwise" else w.transpose(2, 3, 1, 0)
        return [np.ascontiguousarray(kernel), *tensors[1:]]
    if unit.kind in ("ln", "param"):
        if any(t.ndim != 1 or t.shape != w.shape for t in tensors):
            shapes = ", ".join(f"{k} {tuple(t.shape)}" for k, t in zip(unit.keys(), tensors))
            raise WeightFileError(f"{source}: {unit.module} has tensors of unequal or wrong shapes ({shapes})")
        return list(tensors)
    if unit.kind == "bn":
        if any(t.ndim != 1 or t.shape != w.shape for t in tensors):
            shapes = ", ".join(f"{k} {tuple(t.shape)}" for k, t in zip(unit.keys(), tensors))
            raise WeightFileError(
                f"{source}: BatchNorm {unit.module} has tensors of unequal or wrong shapes ({shapes})"
            )
        return list(tensors)
    if w.ndim != 2 or tensors[1].shape != (w.shape[0],):
        raise WeightFileError(
            f"{source}: tensor {unit.module}.weight has shape {tuple(w.shape)} with bias "
            f"{tuple(tensors[1].shape)}, not a Linear layer's (out, in) and (out,)"
        )
    if unit.kind == "dense_chw":  # (out, c * h * w) -> kernel (h * w * c, out): Keras' channels_last Flatten
        side = 7  # torchvision's AdaptiveAvgPool2d((7, 7))
        if w.shape[1] % (side * side):
            raise WeightFileError(
                f"{source}: tensor {unit.module}.weight has {w.shape[1]} inputs, not channels x 7 x 7 "
                "(torchvision VGG's classifier after its 7 x 7 adaptive pool)"
            )
        c = w.shape[1] // (side * side)
        # one copy (fc1 is 411 MB): the reshape of the transposed view is a new C-ordered array
        return [w.reshape(w.shape[0], c, side, side).transpose(2, 3, 1, 0).reshape(-1, w.shape[0]), tensors[1]]
    if unit.kind == "dense_conv":  # Keras' 1x1 Conv2D classifier (MobileNet's conv_preds, MobileNetV3's logits)
        return [np.ascontiguousarray(w.T)[None, None], tensors[1]]
    return [np.ascontiguousarray(w.T), tensors[1]]


def state_dict_to_entries(
    state: dict, arch, config, source: str = "state dict", normalization=None
) -> list[tuple[str, str, list]]:
    """[(Keras layer, torch module, arrays in the layer's weight order)] in Keras' order, from a
    torchvision state dict of network `arch` (as `config` builds it; the head is read when the file
    has one and `config` has a top). Refuses a state dict that does not fit, naming the first tensor missing or left over.
    `normalization`: (mean, std) on [0, 1] pixels the weights expect, for a network that normalises
    in its graph (EfficientNet's Normalization layer gets mean and std ** 2)."""
    state = normalised_keys(state, arch.family)
    units = twin_layout(arch, config)
    head = head_units(arch, units)
    has_head = all(k in state for k in head[0].keys())
    out: list[tuple[str, str, list]] = []
    used: set[str] = set()
    if arch.family == "efficientnet":  # its Normalization's statistics are weights (EfficientNetV2's are Config)
        mean, std = normalization if normalization is not None else ((0.5,) * 3, (0.5,) * 3)
        variance = np.square(np.asarray(std, np.float32))
        out.append(("normalization", "(in-graph)", [np.asarray(mean, np.float32), variance, np.array(0, np.int64)]))
    for unit in units:
        if unit in head and not has_head:
            continue
        missing = [k for k in unit.keys() if k not in state]
        if missing:
            first = next((k for k in state if k not in used and not k.endswith("num_batches_tracked")), None)
            hint = f"; the first tensor not yet matched is {first!r}" if first else ""
            raise WeightFileError(
                f"{source} is not the PyTorch layout of {arch.keras_name} ({_SOURCE[arch.family]}): it has no tensor {missing[0]!r} "
                f"(for {arch.keras_name}'s layer {unit.layer}){hint}. It is probably another architecture "
                "or configuration; nothing was loaded."
            )
        used.update(unit.keys())
        if unit in head and not config.include_top:
            continue  # the file's top, not converted for a model without it (VGG's fc1 is 411 MB)
        out.append(
            (unit.layer, unit.module, _convert(unit, [np.asarray(state[k], np.float32) for k in unit.keys()], source))
        )
    left = [k for k in state if k not in used and not k.endswith("num_batches_tracked")]
    if left:
        raise WeightFileError(
            f"{source} is not the PyTorch layout of {arch.keras_name} ({_SOURCE[arch.family]}): tensor {left[0]!r} has no place in it"
            + (f" (and {len(left) - 1} more)" if len(left) > 1 else "")
            + ". It is probably another architecture or configuration; nothing was loaded."
        )
    return out


def _check_shapes(model, arch, config, entries, source: str) -> None:
    """Every tensor against the built layer's weights, naming the first torch tensor that differs;
    the first convolution's input channels and the head are left to the family plan (channel rules,
    another class count, VGG's head forms)."""
    units = twin_layout(arch, config)
    head, keys = {unit.layer for unit in head_units(arch, units)}, {unit.layer: unit.keys() for unit in units}
    for layer_name, module, arrays in entries:
        if layer_name in head or module == "(in-graph)":
            continue
        try:
            layer = model.get_layer(layer_name)
        except ValueError:
            raise WeightFileError(f"{source}: the model has no layer {layer_name!r} for {module}") from None
        shapes = [tuple(int(d) for d in w.shape) for w in layer.weights]
        got = [tuple(a.shape) for a in arrays]
        if layer_name == arch.first_conv:
            got = [(*got[0][:2], shapes[0][2], got[0][3]), *got[1:]]
        if got != shapes:
            i = next(i for i, (a, b) in enumerate(zip(got, shapes)) if a != b) if len(got) == len(shapes) else 0
            key = keys[layer_name][min(i, len(keys[layer_name]) - 1)]
            raise WeightFileError(
                f"{source} does not fit this {arch.keras_name}: tensor {key!r} gives {got[i]} for layer "
                f"{layer_name}, which has {shapes[i] if i < len(shapes) else 'no such weight'}. It is probably "
                "another architecture or configuration; nothing was loaded."
            )


def load_twin_weights(
    model, arch, config, weight_set: WeightSet, *, channel_adapt=None, cache_dir=None, progress=True, seed=None
) -> WeightSet:
    """Load a torchvision state dict (`weight_set`, format "torch") into `model`, network `arch`
    built as `config`, all or nothing: read, convert, check every tensor, then assign."""
    from anyshape.weights import channels as channel_rules
    from anyshape.weights.family import _check_trained_top, _pair, _plan, assign_plan, family_weight_file
    from anyshape.weights.torch import read_state_dict

    conv = model.get_layer(arch.first_conv)
    channels = int(conv.kernel.shape[2])
    if channel_adapt is not None:
        channel_rules.check_rule(channel_adapt, channels)
    twin_layout(arch, config)  # refuses a family without a twin before any download
    if config.include_top:
        _check_trained_top(arch, config, weight_set)
    path = os.fspath(family_weight_file(weight_set, arch, config, True, cache_dir, progress))
    normalization = None
    if weight_set.mean is not None and weight_set.std is not None:
        normalization = (weight_set.mean, weight_set.std)
    elif weight_set.mode == "tf":
        normalization = ((0.5,) * 3, (0.5,) * 3)
    elif weight_set.mode == "torch":
        from anyshape.data_config import IMAGENET_MEAN, IMAGENET_STD

        normalization = (IMAGENET_MEAN, IMAGENET_STD)
    entries = state_dict_to_entries(read_state_dict(path), arch, config, source=path, normalization=normalization)
    _check_shapes(model, arch, config, entries, path)
    # the family plan pairs arrays with the model's weighted layers in `model.layers` order (Keras'
    # files' order), which is the graph's, not always the order the layers were made in
    order = {layer.name: i for i, layer in enumerate(layer for layer in model.layers if layer.weights)}
    entries = sorted(entries, key=lambda e: order.get(e[0], len(order)))
    plan = _plan(
        model,
        arch,
        config,
        _pair(model, arch, config, [(name, arrays) for name, _, arrays in entries], path),
        path,
        channel_adapt,
        seed,
        channels,
    )
    assign_plan(model, plan)  # everything is checked
    loaded = replace(weight_set, path=path, num_classes=config.classes if config.include_top else None)
    model.anyshape_weights = loaded
    log.info("loaded weights %r from %s into %d layers", weight_set.name, path, len(plan.values))
    for note in plan.notes:
        log.warning(note)
    return loaded


def entries_to_state_dict(model, arch, config) -> dict[str, np.ndarray]:
    """The inverse: a built model's weights as torchvision's state dict (Keras layout -> torch keys),
    e.g. to check a conversion or to export the backbone to PyTorch. The model must have Keras'
    Flatten head for VGG's classifier (224 x 224)."""
    out: dict[str, np.ndarray] = {}
    for unit in twin_layout(arch, config):
        try:
            layer = model.get_layer(unit.layer)
        except ValueError:
            continue  # no top
        arrays = [np.asarray(w.numpy() if hasattr(w, "numpy") else w) for w in layer.get_weights()]
        if unit.kind in ("bn", "param"):
            out.update(zip(unit.keys(), arrays))
            continue
        if unit.kind in ("separable", "sep_conv2d"):
            depthwise, pointwise = unit.keys()
            out[depthwise] = np.ascontiguousarray(arrays[0].transpose(2, 3, 0, 1))
            out[pointwise] = np.ascontiguousarray(arrays[1].transpose(3, 2, 0, 1))
            continue
        w = arrays[0]
        if unit.kind == "depthwise":
            w = w.transpose(2, 3, 0, 1)
        elif w.ndim == 4 and unit.kind == "dense_conv":
            w = w[0, 0].T
        elif w.ndim == 4:
            w = w.transpose(3, 2, 0, 1)
        else:
            if unit.kind == "dense_chw":
                c = w.shape[0] // 49
                w = w.reshape(7, 7, c, -1).transpose(2, 0, 1, 3).reshape(c * 49, -1)
            w = w.T
        out[f"{unit.module}.weight"] = np.ascontiguousarray(w)
        if len(arrays) > 1:
            out[f"{unit.module}.bias"] = arrays[1]
    return out
