"""`convert(src, dst, arch=NAME)` for a Keras file of the family's other networks: Keras' published
legacy .h5 (with or without the top), a registry set (`resnet50.keras_in1k`) or a Keras 3
`.weights.h5`/`.keras`, converted into anyshape's network of that name at the shape and channel
count asked (the first-convolution rules of `anyshape.weights.family`), through
`anyshape.create_model`. The parity report compares with keras.applications' own model loaded from
the same file (RGB; Keras' published .h5 only, which is the file Keras' constructor reads).
"""

from __future__ import annotations

import numpy as np

from anyshape.errors import ParameterError
from anyshape.weights.checkpoint import WeightFileError
from anyshape.weights.convert_common import (
    FamilyArguments,
    FamilyConversionResult,
    FamilyParityReport,
    as_written,
    build_family_model,
    finish_family,
    load_family_model,
)
from anyshape.weights.weight_set import WeightSet

__all__ = ["convert_family"]


def convert_family(
    ws: WeightSet,
    dst: str,
    arch,
    args: FamilyArguments,
) -> FamilyConversionResult:
    """A Keras file or registry set of network `arch` (`ws`, resolved) into anyshape's network, written
    to `dst`."""
    from anyshape.weights.family import family_weight_file, file_classes
    from anyshape.weights.family_files import classifier_hint

    if args.source not in (None, "keras"):
        raise ParameterError(
            "{source=*}: {network} converts from Keras files only in this version",
            source=args.source,
            network=arch.name,
        )
    input_shape, overrides, options = args.shape(), args.overrides(ws, arch), args.options
    # Building the network is what a conversion costs: built once when the file says its head up
    # front (Keras' published .h5 names its classifier; a registry set records its classes), else
    # the network without its top first, which says what the file holds beyond it (the classifier,
    # or nothing: then it is the model the file loads into)
    model = first = None
    hint = classifier_hint(ws.path, arch) if ws.path else ws.num_classes
    if hint is not None:
        first = build_family_model(arch, args, hint, overrides)
        path = family_weight_file(ws, arch, _config(first), True, args.cache_dir, args.progress)
        model, classes = (first, hint) if classifier_hint(path, arch) == hint else (None, None)
    if model is None:
        backbone = build_family_model(arch, args, None, overrides)
        path = family_weight_file(ws, arch, _config(backbone), True, args.cache_dir, args.progress)
        classes = file_classes(path, backbone, arch)
        model = backbone if classes is None else (first if classes == hint else None)
        del backbone
    del first
    model, _ = load_family_model(ws, path, arch, args, classes, overrides, model=model)
    report, note = _family_parity(
        model, arch, path, classes, input_shape, args.parity, args.parity_images, options, overrides
    )
    written = as_written(model.anyshape_weights, arch=arch.name, source="keras", name=ws.name, num_classes=classes)
    return finish_family(model, arch, dst, written, classes, args, report, note)


def _config(model):
    """The Config `model` was built with (by `create_model`, which records it)."""
    from anyshape.archs import model_config

    built = model_config(model)
    assert built is not None  # create_model records the network it built
    return built[1]


def _family_parity(
    model, arch, path: str, classes, input_shape: tuple, parity: bool, images: int, options: dict, overrides: dict
):
    """(FamilyParityReport, "") against keras.applications on the same file, else (None, why not)."""
    import inspect

    if not parity:
        return None, "disabled"
    if overrides:
        # e.g. EfficientNet's stddev rescaling, which Keras' constructor adds for weights="imagenet" only
        return None, (
            f"these weights need {', '.join(sorted(overrides))}, which keras.applications.{arch.keras_name} "
            "builds only when it downloads them itself (weights='imagenet')"
        )
    if classes is None:
        return None, "the file has no classifier"
    if not path.lower().endswith((".h5", ".hdf5")) or path.lower().endswith(".weights.h5"):
        return None, "a Keras 3 file: keras.applications' constructors read Keras' published .h5 files"
    if input_shape[2] != 3:
        return None, f"the model has {input_shape[2]} input channels; keras.applications' model is RGB"
    import keras

    constructor = getattr(keras.applications, arch.keras_name, None)
    if constructor is None:
        return None, f"keras.applications has no {arch.keras_name}"
    params = inspect.signature(constructor).parameters
    if any(k not in params for k in options):
        return None, f"keras.applications.{arch.keras_name} takes no {', '.join(k for k in options if k not in params)}"
    hw = tuple(d or arch.default_size for d in input_shape[:2])
    if arch.family == "vgg":
        hw = (arch.default_size, arch.default_size)  # Keras' VGG top is Dense: its own size only
    try:
        ref = constructor(weights=path, input_shape=(*hw, 3), classes=classes, classifier_activation=None, **options)
    except (ValueError, TypeError, OSError) as e:
        return None, f"keras.applications.{arch.keras_name} could not load the file ({e})"
    low, high = (0.0, 255.0) if arch.preprocessing in ("raw", "caffe") else (-1.0, 1.0)
    x = np.random.default_rng(0).uniform(low, high, (images, *hw, 3)).astype(np.float32)
    theirs = keras.ops.convert_to_numpy(ref(x, training=False)).reshape(images, -1).astype(np.float64)
    ours = keras.ops.convert_to_numpy(model(x, training=False)).reshape(images, -1).astype(np.float64)
    del ref
    top = lambda a: np.argsort(-a, axis=1)[:, :5]  # noqa: E731
    rel = float(np.abs(ours - theirs).max() / max(np.abs(theirs).max(), 1e-12))
    report = FamilyParityReport(
        f"keras.applications.{arch.keras_name}",
        hw,
        images,
        rel,
        float(np.mean(np.all(top(ours) == top(theirs), axis=1))),
    )
    if not report.ok:
        raise WeightFileError(
            f"conversion of {path} into {arch.name} does not match keras.applications, nothing written:\n{report}"
        )
    return report, ""
