"""convert(): a weight set (torchvision/timm state dict, or a Keras file) -> a Keras file.

With `arch=` naming another network of the family (`anyshape.list_models()`), the source is a Keras
file of that network: Keras' published legacy .h5 (with or without the top), a registry set
(`resnet50.keras_in1k`) or a Keras 3 `.weights.h5`/`.keras`; it is converted into anyshape's
network of that name at the shape and channel count asked (the first-convolution rules of
`anyshape.weights.family`), through `anyshape.create_model`. The parity report then compares with
keras.applications' own model loaded from the same file (RGB; Keras' published .h5 only, which is
the file Keras' constructor reads). PyTorch weights convert into InceptionV3 only in this version.

The result is a Keras 3 `.weights.h5` (for `anyshape.InceptionV3(weights=path)` or
`model.load_weights`) or a complete `.keras` model, written atomically, never over an existing
file unless `force=True`. It carries the weight set's metadata (preprocessing, pool semantics),
so `anyshape.InceptionV3(weights="converted.weights.h5")` builds the right model and
`anyshape.preprocess_input(x, weights=...)` scales the right way.

When the source framework is importable, the converted model is compared with the original
(torchvision's Inception3 or timm's InceptionV3 in eval mode, same state dict) on random
images before anything is written: max abs logit difference and top-5 agreement. A mismatch
(difference > 1e-4 or a different top-5) raises and writes nothing.

Import order: `import torchvision` (and timm, which imports it) after TensorFlow has loaded
crashes the process on this stack (see anyshape.weights.reference): `convert` imports them
itself when TensorFlow is not loaded yet. When it already is, the parity report is skipped with a
note rather than risking the crash.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import sys
from dataclasses import dataclass, replace

import numpy as np

from anyshape.errors import OutputExistsError, ParameterError
from anyshape.weights.checkpoint import Checkpoint, WeightFileError
from anyshape.weights.reference import import_reference_frameworks
from anyshape.weights.registry import WeightSet, resolve

__all__ = [
    "convert",
    "ConversionResult",
    "FamilyConversionResult",
    "ParityReport",
    "FamilyParityReport",
    "PARITY_TOLERANCE",
]

log = logging.getLogger("anyshape.weights")
PARITY_TOLERANCE = 1e-4
SOURCES = ("torchvision", "timm", "keras")


@dataclass
class ParityReport:
    reference: str  # "torchvision" or "timm"
    input_hw: tuple[int, int]
    images: int
    max_abs_logit_diff: float
    top5_agreement: float  # fraction of images with the same top-5 classes, in order
    aux_max_abs_logit_diff: float | None = None
    max_abs_logit: float = 1.0  # the reference's largest |logit| (main and aux)

    @property
    def tolerance(self) -> float:
        """1e-4, relative to the logits' scale when they exceed 1 (float32 rounding grows with it)."""
        return PARITY_TOLERANCE * max(1.0, self.max_abs_logit)

    @property
    def ok(self) -> bool:
        aux_ok = self.aux_max_abs_logit_diff is None or self.aux_max_abs_logit_diff <= self.tolerance
        return self.max_abs_logit_diff <= self.tolerance and self.top5_agreement == 1.0 and aux_ok

    def __str__(self) -> str:
        h, w = self.input_hw
        lines = [
            f"parity vs {self.reference} ({self.images} random images at {h}x{w}, eval mode):",
            f"  max abs logit difference: {self.max_abs_logit_diff:.2e} (tolerance {self.tolerance:.2g}; "
            f"largest |logit| {self.max_abs_logit:.3g})",
            f"  top-5 agreement: {self.top5_agreement:.0%}",
        ]
        if self.aux_max_abs_logit_diff is not None:
            lines.append(f"  aux head max abs logit difference: {self.aux_max_abs_logit_diff:.2e}")
        # not "exact": the outputs differ by float32 rounding, which grows with the logits' scale
        lines.append("  result: " + ("match (within float32 rounding)" if self.ok else "MISMATCH"))
        return "\n".join(lines)


@dataclass
class ConversionResult:
    path: str
    weight_set: WeightSet
    parity: ParityReport | None
    note: str = ""  # why there is no parity report, when there is none

    def __str__(self) -> str:
        ws = self.weight_set
        head = (
            f"wrote {self.path}: {ws.name} ({ws.num_classes} classes{', aux head' if ws.has_aux else ''}; "
            f"bn_scale={ws.bn_scale}, count_include_pad={ws.count_include_pad}; preprocessing "
            + ("mode 'tf' ([-1, 1])" if ws.mode == "tf" else f"mode 'torch' mean={ws.mean} std={ws.std}")
            + ")"
        )
        return head + "\n" + (str(self.parity) if self.parity else f"parity: not computed ({self.note})")


def _reference_available(module: str) -> str | None:
    """None when `module` can be used for parity here, else why not."""
    if importlib.util.find_spec(module) is None or importlib.util.find_spec("torch") is None:
        return f"{module} is not installed (pip install {module})"
    needs = ["torchvision"] if module == "torchvision" else ["torchvision", "timm"]
    if "tensorflow" in sys.modules and any(m not in sys.modules for m in needs):
        return (
            f"{module} was not imported before TensorFlow, and importing it afterwards crashes; "
            f"call convert before anything loads Keras, import torch and {module} first, or use the anyshape CLI"
        )
    return None


def _reference_model(reference: str, state: dict, num_classes: int, has_aux: bool):
    import torch

    if reference == "timm":
        import timm

        model = timm.create_model("inception_v3", pretrained=False, num_classes=num_classes, aux_logits=has_aux)
    else:
        import torchvision

        model = torchvision.models.inception_v3(
            weights=None, aux_logits=has_aux, init_weights=False, transform_input=False, num_classes=num_classes
        )
    model.load_state_dict({k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in state.items()}, strict=True)
    return model.eval()


def _parity(model, reference: str, state, hw: tuple, images: int, offset: int) -> ParityReport:
    import keras
    import torch

    n = state["fc.weight"].shape[0]
    has_aux = "AuxLogits.fc.weight" in state and len(model.outputs) == 2
    if not has_aux:
        state = {k: v for k, v in state.items() if not k.startswith("AuxLogits.")}
    ref_model = _reference_model(reference, state, n, has_aux)
    x = np.random.default_rng(0).uniform(-1, 1, (images, *hw, 3)).astype(np.float32)
    feats: dict = {}
    hook = ref_model.Mixed_6e.register_forward_hook(lambda mod, i, o: feats.__setitem__("m", o))
    with torch.no_grad():
        out = ref_model(torch.from_numpy(x.transpose(0, 3, 1, 2).copy()))
        ref = (out[0] if isinstance(out, tuple) else out).numpy()[:, offset:]
        ref_aux = ref_model.AuxLogits(feats["m"]).numpy()[:, offset:] if has_aux else None
    hook.remove()
    ours = model(x, training=False)
    ours_aux = None
    if isinstance(ours, (list, tuple)):  # convert_to_numpy: torch's outputs require grad, np.asarray refuses them
        ours, ours_aux = keras.ops.convert_to_numpy(ours[0]), keras.ops.convert_to_numpy(ours[1])
    ours = keras.ops.convert_to_numpy(ours)
    top = lambda a: np.argsort(-a, axis=1)[:, :5]  # noqa: E731
    agree = float(np.mean(np.all(top(ours) == top(ref), axis=1)))
    aux_diff = (
        float(np.abs(ours_aux - ref_aux).max()) if has_aux and ours_aux is not None and ref_aux is not None else None
    )
    scale = float(max(np.abs(ref).max(), 0.0 if ref_aux is None else np.abs(ref_aux).max()))
    return ParityReport(reference, hw, images, float(np.abs(ours - ref).max()), agree, aux_diff, scale)


def _check_destination(dst: str, force: bool) -> str:
    dst = os.fspath(dst)
    if not dst.endswith((".weights.h5", ".keras")):
        raise ValueError(f"destination {dst!r} must end in .weights.h5 (weights only) or .keras (whole model)")
    if os.path.exists(dst) and not force:
        raise OutputExistsError("{dst} already exists; pass {force=True} to overwrite it", dst=dst)
    parent = os.path.dirname(os.path.abspath(dst))
    if not os.path.isdir(parent):
        raise FileNotFoundError(f"directory {parent} does not exist; create it first")
    return dst


def convert(
    src,
    dst,
    *,
    source: str | None = None,
    input_shape=None,
    aux_logits: bool | None = None,
    force: bool = False,
    parity: bool = True,
    parity_images: int = 2,
    classifier_activation: str | None = "softmax",
    channel_adapt=None,
    cache_dir: str | None = None,
    progress: bool = True,
    preprocessing: str | None = None,
    arch: str | None = None,
    **options,
) -> ConversionResult | FamilyConversionResult:
    """Convert a weight set (registry name or file) into a Keras file at `dst`.

    Args:
        src: a registry name ("torchvision.IMAGENET1K_V1", "inception_v3.tf_in1k", ...) or a
            file: a torchvision/timm state dict (.pth/.pt/.bin/.safetensors) or a Keras file.
        dst: the output, ending in .weights.h5 or .keras.
        source: "torchvision", "timm" or "keras": which framework the weights come from, used as
            the parity reference. Default: the registry entry's, else torchvision for state dicts.
        input_shape: the model's input shape (H, W, C); default (None, None, 3). It matters only
            for .keras (a .weights.h5 loads at any shape). C != 3 adapts the first conv.
        aux_logits: keep the auxiliary classifier (default: when the source has one).
        force: overwrite an existing `dst`.
        parity: compare with the source framework when it can be imported (see the module doc).
        classifier_activation: the activation stored in a .keras model (the parity check always
            compares logits).
        channel_adapt: first-conv rule when input_shape has C != 3 (see anyshape.weights.channels).
        preprocessing: "tf" ([-1, 1]) or "torch" (ImageNet mean/std) for a state dict that is not
            a published file (it cannot say; see anyshape.weights.resolve). Stored in `dst`.
        arch: the network the weights are for (default InceptionV3); another network of the family
            takes Keras files only (see the module doc).
        **options: that network's own build arguments (its Config: alpha for MobileNet, ...).
    Returns:
        ConversionResult (path, the weight set's metadata as written, the parity report); for
        another network than InceptionV3, a FamilyConversionResult (the same, and the network).
    """
    dst = _check_destination(dst, force)
    if arch is not None or options:
        from anyshape.archs import get_arch

        network = get_arch(arch or "inception_v3")
        if network.name != "inception_v3":
            if aux_logits is not None:
                raise ValueError(f"aux_logits is an option of inception_v3, not of {network.name}")
            return _convert_family(
                src,
                dst,
                network,
                source=source,
                input_shape=input_shape,
                force=force,
                parity=parity,
                parity_images=parity_images,
                classifier_activation=classifier_activation,
                channel_adapt=channel_adapt,
                cache_dir=cache_dir,
                progress=progress,
                preprocessing=preprocessing,
                options=options,
            )
        if options:
            raise ValueError(f"convert takes no network options for inception_v3, got {sorted(options)}")
    ws = resolve(src, preprocessing)
    source = _check_source(ws, source)
    if parity and source != "keras":  # before anything loads TensorFlow (see anyshape.weights.reference)
        import_reference_frameworks(source)
    from anyshape.weights.loader import fetch_weight_file

    path = fetch_weight_file(ws, include_top=True, cache_dir=cache_dir, progress=progress)
    ws = replace(ws, path=path)
    input_shape = tuple(input_shape) if input_shape is not None else (None, None, 3)
    read = _read_source(ws, path)
    if aux_logits is None:
        fits_aux = all(d is None or d >= 299 for d in input_shape[:2])
        aux_logits = read.has_aux and fits_aux and read.num_classes is not None
    model, loaded = _build_model(ws, read, input_shape, aux_logits, channel_adapt)
    report, note = _check_parity(model, ws, source, read, input_shape, parity, parity_images)
    written = _written_weight_set(loaded, read, aux_logits)
    _save(model, dst, written, classifier_activation, overwrite=force)
    return ConversionResult(os.path.abspath(dst), written, report, note)


def _check_source(ws: WeightSet, source: str | None) -> str:
    """The framework `ws` comes from: `source` when it fits `ws`, else its default; raises otherwise."""
    if source is not None and source not in SOURCES:
        raise ValueError(f"source must be one of {', '.join(SOURCES)}, got {source!r}")
    if source is None:
        source = ws.source if ws.source in SOURCES else ("keras" if ws.format == "keras" else "torchvision")
    elif ws.source in SOURCES and ws.source != source:
        raise ValueError(f"{ws.name} is a {ws.source} weight set, not {source}")
    if (source == "keras") != (ws.format == "keras"):
        raise ParameterError(
            "{name} is a {kind}; {source=*} does not fit it",
            name=ws.name,
            kind="Keras file" if ws.format == "keras" else "PyTorch state dict",
            source=source,
        )
    return source


@dataclass
class _Source:
    """The source file as read before a model exists."""

    path: str
    state: dict | None  # the torch state dict, read once for the checkpoint and the parity check
    ck: Checkpoint | None  # None for a Keras file: read_keras_file needs the model
    num_classes: int | None  # the file's classifier's classes (None: no classifier)
    has_aux: bool
    offset: int  # 1 when the file's class 0 is 'background' (dropped), else 0
    classes: int  # the converted model's classes


def _read_source(ws: WeightSet, path: str) -> _Source:
    """Read a torch state dict (into a Checkpoint) or describe a Keras file; the classes to build."""
    state = ck = None
    if ws.format == "torch":
        from anyshape.weights.torch import read_state_dict, state_dict_to_checkpoint

        state = read_state_dict(path)
        ck = state_dict_to_checkpoint(state, source=path)
        n_file, has_aux = ck.num_classes, ck.has_aux
    else:
        from anyshape.weights.keras_h5 import describe_keras_file

        described = describe_keras_file(path)
        n_file, has_aux = described.num_classes, described.has_aux
    offset = 1 if n_file is not None and (n_file == 1001 or ws.label_offset == 1) else 0
    classes = n_file - offset if n_file is not None else 1000
    return _Source(path, state, ck, n_file, has_aux, offset, classes)


def _build_model(ws: WeightSet, read: _Source, input_shape: tuple, aux_logits: bool, channel_adapt):
    """The anyshape model the weights are converted into (logits out), loaded: (model, loaded WeightSet)."""
    from anyshape.inception_v3 import InceptionV3
    from anyshape.weights.loader import load_checkpoint

    model = InceptionV3(
        weights=None,
        include_top=read.num_classes is not None,
        classes=read.classes,
        input_shape=input_shape,
        aux_logits=aux_logits,
        bn_scale=ws.bn_scale,
        count_include_pad=ws.count_include_pad,
        classifier_activation=None,
    )
    ck = read.ck
    if ck is None:
        from anyshape.weights.keras_h5 import read_keras_file

        ck = read_keras_file(read.path, model)
    loaded = load_checkpoint(model, ck, ws, channel_adapt=channel_adapt)
    return model, loaded


def _check_parity(model, ws: WeightSet, source: str, read: _Source, input_shape: tuple, parity: bool, images: int):
    """(ParityReport, "") when compared with the source framework, else (None, why not); raises on a mismatch."""
    if not parity:
        return None, "disabled"
    if ws.format == "keras":
        return None, "a Keras source: the same framework, nothing to compare with"
    if input_shape[2] != 3:
        return None, f"the model has {input_shape[2]} input channels; the reference is RGB"
    if read.num_classes is None:
        return None, "the source has no classifier"
    reference = _parity_reference(source)
    note = _reference_available(reference) or ""
    if note:
        return None, note
    hw = tuple(d or 299 for d in input_shape[:2])
    report = _parity(model, reference, read.state, hw, images, read.offset)
    if not report.ok:
        raise WeightFileError(f"conversion of {ws.name} does not match its source, nothing written:\n{report}")
    return report, ""


def _parity_reference(source: str) -> str:
    """The framework to compare with: timm's own weights compare with torchvision when timm is missing."""
    reference = "timm" if source == "timm" else "torchvision"
    if reference == "timm" and _reference_available("timm") and not _reference_available("torchvision"):
        # timm's InceptionV3 has torchvision's layers, keys and semantics: same reference
        reference = "torchvision"
    return reference


def _written_weight_set(loaded: WeightSet, read: _Source, aux_logits: bool) -> WeightSet:
    """The metadata stored in the converted file: a Keras file of its own, no download or label offset."""
    return _as_written(
        loaded, num_classes=read.classes if read.num_classes is not None else None, has_aux=bool(aux_logits)
    )


def _as_written(ws: WeightSet, **changes) -> WeightSet:
    """The weight set a converted file records: a Keras file of its own, with none of the source's
    download facts (URLs, file names, hashes) and labels from 0."""
    return replace(
        ws,
        format="keras",
        path=None,
        label_offset=0,
        url=None,
        file_name=None,
        file_hash=None,
        hash_algorithm=None,
        url_notop=None,
        file_name_notop=None,
        file_hash_notop=None,
        **changes,
    )


def _save(model, dst: str, weight_set: WeightSet, classifier_activation, *, overwrite: bool) -> None:
    from anyshape.atomic_write import write_atomically
    from anyshape.weights.keras_h5 import write_metadata

    def write(tmp: str) -> None:
        if dst.endswith(".keras"):
            import keras

            for name in ("predictions", "aux_predictions"):
                if classifier_activation and name in {layer.name for layer in model.layers}:
                    model.get_layer(name).activation = keras.activations.get(classifier_activation)
            model.save(tmp)
        else:
            model.save_weights(tmp)
        write_metadata(tmp, weight_set)

    write_atomically(dst, write, overwrite=overwrite)  # without force, not a file that appeared meanwhile either


# --- the family's other networks: Keras files ------------------------------------------------------


@dataclass
class FamilyParityReport:
    """Our converted network against keras.applications' model loaded from the same file."""

    reference: str  # e.g. "keras.applications.ResNet50"
    input_hw: tuple[int, int]
    images: int
    max_rel_diff: float  # max |ours - keras| / max |keras| over the logits
    top5_agreement: float

    @property
    def ok(self) -> bool:
        return self.max_rel_diff <= PARITY_TOLERANCE and self.top5_agreement == 1.0

    def __str__(self) -> str:
        h, w = self.input_hw
        return "\n".join(
            [
                f"parity vs {self.reference} ({self.images} random images at {h}x{w}, inference mode, same file):",
                f"  max relative logit difference: {self.max_rel_diff:.2e} (tolerance {PARITY_TOLERANCE:.0e})",
                f"  top-5 agreement: {self.top5_agreement:.0%}",
                "  result: " + ("match (within float32 rounding)" if self.ok else "MISMATCH"),
            ]
        )


@dataclass
class FamilyConversionResult:
    path: str
    weight_set: WeightSet
    architecture: str
    input_shape: tuple
    parity: FamilyParityReport | None
    note: str = ""

    def __str__(self) -> str:
        ws = self.weight_set
        prep = {"tf": "[-1, 1]", "torch": "ImageNet mean/std", "caffe": "caffe (BGR - mean)"}.get(
            ws.mode, "raw 0..255 (normalised in the graph)"
        )
        classes = f"{ws.num_classes} classes" if ws.num_classes else "no top"
        head = (
            f"wrote {self.path}: {self.architecture} from {ws.name} ({classes}; input {self.input_shape}; "
            f"preprocessing {prep})"
        )
        return head + "\n" + (str(self.parity) if self.parity else f"parity: not computed ({self.note})")


def _convert_family(
    src,
    dst: str,
    arch,
    *,
    source,
    input_shape,
    force: bool,
    parity: bool,
    parity_images: int,
    classifier_activation,
    channel_adapt,
    cache_dir,
    progress: bool,
    preprocessing,
    options: dict,
) -> FamilyConversionResult:
    """A Keras file (or registry set) of network `arch` into anyshape's network, written to `dst`."""
    from anyshape.archs import model_config
    from anyshape.factory import create_model
    from anyshape.weights.family import family_weight_file, file_classes

    if source not in (None, "keras"):
        raise ParameterError(
            "{source=*}: {network} converts from Keras files only in this version", source=source, network=arch.name
        )
    from anyshape.weights.registry import TORCH_SUFFIXES

    torch_file = isinstance(src, (str, os.PathLike)) and os.fspath(src).lower().endswith(TORCH_SUFFIXES)
    ws = None if torch_file else resolve(src, preprocessing, arch=arch.name)
    if ws is None or ws.format == "torch":
        name = os.path.basename(os.fspath(src)) if ws is None else ws.name
        raise ValueError(
            f"{name} is a PyTorch state dict: converting PyTorch weights into {arch.name} is not "
            "supported yet (only into inception_v3); give a Keras file of it (.h5, .weights.h5, .keras)"
        )
    input_shape = tuple(input_shape) if input_shape is not None else (None, None, 3)
    overrides = {k: v for k, v in ws.build_overrides_for(arch.name).items() if k not in options}
    # the network without its top says what the file holds beyond it: the classifier, or nothing
    backbone = create_model(arch.name, input_shape=input_shape, include_top=False, **overrides, **options)
    built = model_config(backbone)
    assert built is not None  # create_model records the network it built
    path = family_weight_file(ws, arch, built[1], True, cache_dir, progress)
    classes = file_classes(path, backbone, arch)
    del backbone
    head = {"include_top": True, "classes": classes} if classes is not None else {"include_top": False}
    # create_model(weights=...) as it does it, with the weight set already resolved and fetched
    from anyshape.weights.loader import load_weight_set

    model = create_model(arch.name, input_shape=input_shape, classifier_activation=None, **head, **overrides, **options)
    load_weight_set(model, replace(ws, path=path), channel_adapt=channel_adapt, cache_dir=cache_dir, progress=progress)
    report, note = _family_parity(model, arch, path, classes, input_shape, parity, parity_images, options, overrides)
    written = _as_written(model.anyshape_weights, arch=arch.name, source="keras", name=ws.name, num_classes=classes)
    if classes is not None and classifier_activation:
        _set_classifier_activation(model, arch, classifier_activation)
    _save_family(model, dst, written, overwrite=force)
    return FamilyConversionResult(os.path.abspath(dst), written, arch.name, input_shape, report, note)


def _set_classifier_activation(model, arch, activation: str) -> None:
    """The activation on the classifier's last weighted layer (built without one, for logits),
    and in the Config the model records."""
    import keras

    model.get_layer(arch.classifier[0]).activation = keras.activations.get(activation)
    config = getattr(model, "anyshape_config", None)
    if config is not None:
        model.anyshape_config = replace(config, classifier_activation=activation)


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


def _save_family(model, dst: str, weight_set: WeightSet, *, overwrite: bool) -> None:
    """`dst` atomically: a .weights.h5 with the weight set's metadata, or a .keras model with it and
    the model's info (network, Config, preprocessing), so `--model FILE.keras` needs no --arch."""
    from anyshape.atomic_write import write_atomically
    from anyshape.weights.keras_h5 import write_metadata

    model.anyshape_weights = weight_set

    def write(tmp: str) -> None:
        if dst.endswith(".keras"):
            import json
            import zipfile

            from anyshape.model_info import MEMBER, model_info

            model.save(tmp)
            with zipfile.ZipFile(tmp, "a") as z:
                z.writestr(MEMBER, json.dumps(model_info(model).to_dict(), indent=2))
        else:
            model.save_weights(tmp)
        write_metadata(tmp, weight_set)

    write_atomically(dst, write, overwrite=overwrite)
