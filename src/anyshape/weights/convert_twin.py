"""`convert(src, dst, arch=NAME)` for a PyTorch state dict of a network's torchvision or timm twin
(`anyshape.weights.torch_family`): a registered set (`resnet50.tv2_in1k`, `timm/tf_efficientnet_b3`)
or a file, recognised by its published name and hash, else read with the `preprocessing` its caller
gives. The network is built with the twin's overrides (they go into its Config, and into the
metadata of the file written, so `weights=OUT` builds the same network), at the shape and channel
count asked.

The parity report compares with the twin itself: torchvision's model of the network's name, or
timm's model the weight set names (`tf_efficientnet_b<N>`, `inception_resnet_v2`), with the same
state dict, in eval mode, on random images. The inputs are what each expects: the same
preprocessed images for both, except for a network that normalises in its graph (EfficientNet,
MobileNetV3, ConvNeXt), which takes 0..255 pixels where the torch model takes them normalised with the
weights' mean and std. Where the two networks are not the same function the report is not made and the note says
why: VGG's top away from 224 x 224 (torchvision resamples block5_pool to 7 x 7 with an adaptive
average pool at every size; anyshape's head applies fc1 to 7 x 7 windows of it, which is the same
only at 224).
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from anyshape.errors import ParameterError
from anyshape.weights.checkpoint import WeightFileError
from anyshape.weights.convert_common import (
    FamilyArguments,
    FamilyConversionResult,
    FamilyParityReport,
    as_written,
    finish_family,
    load_family_model,
    reference_available,
)
from anyshape.weights.reference import import_reference_frameworks
from anyshape.weights.torch_sets import pixel_scaling
from anyshape.weights.twin_reference import reference_model, twin_difference
from anyshape.weights.weight_set import WeightSet

__all__ = ["convert_twin", "twin_difference"]


def convert_twin(
    ws: WeightSet,
    dst: str,
    arch,
    args: FamilyArguments,
) -> FamilyConversionResult:
    """A state dict of network `arch`'s twin (`ws`, resolved for `arch`) into anyshape's network,
    written to `dst`."""
    framework, model_name = reference_model(arch, ws, args.options)
    if args.source not in (None, framework):
        raise ParameterError(
            "{source=*}: a state dict of {network} is {framework}'s {model} layout; give {source=@framework} "
            "or leave it out",
            source=args.source,
            network=arch.name,
            framework=framework,
            model=model_name,
        )
    if args.parity:  # before anything loads TensorFlow (see anyshape.weights.reference)
        import_reference_frameworks(framework)
    from anyshape.weights.family import family_weight_file
    from anyshape.weights.torch import read_state_dict
    from anyshape.weights.torch_family import head_classes

    overrides = args.overrides(ws, arch)
    path = os.fspath(family_weight_file(ws, arch, None, True, args.cache_dir, args.progress))
    state = read_state_dict(path)
    classes = head_classes(state, arch, arch.checked_config(**overrides, **args.options))
    model, loaded = load_family_model(ws, path, arch, args, classes, overrides)
    report, note = None, "disabled"
    if args.parity:
        reference, images = (framework, model_name), args.parity_images
        report, note = _twin_parity(model, arch, loaded, state, reference, classes, args.shape(), images, args.options)
    del state
    written = as_written(loaded, arch=arch.name, name=ws.name, num_classes=classes)
    return finish_family(model, arch, dst, written, classes, args, report, note)


# anyshape build options that timm's model takes under another name (timm/models/convnext.py ConvNeXt,
# timm/models/nasnet.py NASNetALarge)
_TIMM_OPTIONS = {
    "convnext": {"depths": "depths", "projection_dims": "dims"},
    "nasnet": {"penultimate_filters": "num_features", "stem_block_filters": "stem_size"},
}


def _reference(framework: str, name: str, state: dict, family: str, classes: int, options: dict):
    """The twin in eval mode with the file's tensors (DenseNet's older keys renamed as torchvision
    does); a ConvNeXt of other depths or widths, a NASNet of other widths, as timm builds it with those."""
    import torch

    from anyshape.weights.torch_family import normalised_keys

    if framework == "timm":
        import timm

        renamed = _TIMM_OPTIONS.get(family, {})
        kwargs: dict[str, Any] = {
            renamed[k]: tuple(v) if isinstance(v, (list, tuple)) else v for k, v in options.items() if k in renamed
        }
        model = timm.create_model(name, pretrained=False, num_classes=classes, **kwargs)
    else:
        import torchvision

        model = getattr(torchvision.models, name)(weights=None, num_classes=classes)
    tensors = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in normalised_keys(state, family).items()}
    model.load_state_dict(tensors, strict=True)
    return model.eval()


def _twin_parity(model, arch, ws: WeightSet, state, reference, classes, input_shape, images: int, options: dict):
    """(FamilyParityReport, "") against the twin on the same state dict, else (None, why not); raises
    on a mismatch."""
    import keras
    import torch

    framework, name = reference
    if classes is None:
        return None, "the file has no classifier"
    if input_shape[2] != 3:
        return None, f"the model has {input_shape[2]} input channels; {framework}'s {name} is RGB"
    default = 224 if arch.family == "vgg" else arch.default_size
    hw = (int(input_shape[0] or default), int(input_shape[1] or default))
    why = twin_difference(arch, hw, True)
    if why:
        return None, why
    note = reference_available(framework)
    if note:
        return None, note
    try:
        ref = _reference(framework, name, state, arch.family, classes, options)
    except (RuntimeError, ValueError, KeyError) as e:
        return None, f"{framework}'s {name} could not load the file ({str(e).splitlines()[0]})"
    rng = np.random.default_rng(0)
    if ws.mode == "raw":  # normalised in our graph: pixels in, the torch model takes them normalised
        x = rng.uniform(0.0, 255.0, (images, *hw, 3)).astype(np.float32)
        mean, std = (np.asarray(v, np.float32) for v in pixel_scaling(arch, ws))
        x_torch = (x / 255.0 - mean) / std
    else:
        x = x_torch = rng.uniform(-1.0, 1.0, (images, *hw, 3)).astype(np.float32)
    with torch.no_grad():
        theirs = ref(torch.from_numpy(np.ascontiguousarray(x_torch.transpose(0, 3, 1, 2)))).numpy().astype(np.float64)
    del ref
    ours = keras.ops.convert_to_numpy(model(x, training=False)).reshape(images, -1).astype(np.float64)
    top = lambda a: np.argsort(-a, axis=1)[:, :5]  # noqa: E731
    rel = float(np.abs(ours - theirs).max() / max(np.abs(theirs).max(), 1e-12))
    qualified = f"torchvision.models.{name}" if framework == "torchvision" else f"timm {name}"
    agreement = float(np.mean(np.all(top(ours) == top(theirs), axis=1)))
    report = FamilyParityReport(qualified, hw, images, rel, agreement, how="eval mode, same state dict")
    if not report.ok:
        raise WeightFileError(
            f"conversion of {ws.name} into {arch.name} does not match {qualified}, nothing written:\n{report}"
        )
    return report, ""
