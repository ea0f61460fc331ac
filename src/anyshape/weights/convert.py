"""convert(): a weight set (torchvision/timm state dict, or a Keras file) -> a Keras file.

InceptionV3's sets convert here. With `arch=` naming another network of the family
(`anyshape.list_models()`), a Keras file of it converts in `anyshape.weights.convert_family`
(parity against keras.applications' model on the same file), and a PyTorch state dict of its
torchvision or timm twin (`anyshape.weights.torch_family`) in `anyshape.weights.convert_twin`
(parity against the twin's torch model); shared parts live in `anyshape.weights.convert_common`.

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

import logging
import os
from dataclasses import dataclass, replace

import numpy as np

from anyshape.errors import ParameterError
from anyshape.weights.checkpoint import Checkpoint, WeightFileError
from anyshape.weights.convert_common import (
    PARITY_TOLERANCE,
    FamilyArguments,
    FamilyConversionResult,
    FamilyParityReport,
    as_written,
    check_destination,
    reference_available,
)
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
            takes its Keras files and its PyTorch twin's state dicts (see the module doc).
        **options: that network's own build arguments (its Config: alpha for MobileNet, ...).
    Returns:
        ConversionResult (path, the weight set's metadata as written, the parity report); for
        another network than InceptionV3, a FamilyConversionResult (the same, and the network).
    """
    dst = check_destination(dst, force)
    if arch is not None or options:
        from anyshape.archs import get_arch

        network = get_arch(arch or "inception_v3")
        if network.name != "inception_v3":
            if aux_logits is not None:
                raise ValueError(f"aux_logits is an option of inception_v3, not of {network.name}")
            arguments = FamilyArguments(
                source=source,
                input_shape=input_shape,
                force=force,
                parity=parity,
                parity_images=parity_images,
                classifier_activation=classifier_activation,
                channel_adapt=channel_adapt,
                cache_dir=cache_dir,
                progress=progress,
                options=options,
            )
            return _convert_network(_family_weight_set(src, preprocessing, network), dst, network, arguments)
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


def _convert_network(ws: WeightSet, dst: str, network, arguments: FamilyArguments) -> FamilyConversionResult:
    """`ws`, resolved for `network` (not InceptionV3), converted by its converter: a state dict of its
    PyTorch twin by `convert_twin`, a Keras file by `convert_family`."""
    if ws.format == "torch":
        from anyshape.weights.convert_twin import convert_twin as convert_network
    else:
        from anyshape.weights.convert_family import convert_family as convert_network
    return convert_network(ws, dst, network, arguments)


def _family_weight_set(src, preprocessing: str | None, network) -> WeightSet:
    """`src` resolved for `network` (not InceptionV3); a PyTorch file of a network without a twin is
    refused in convert's words."""
    from anyshape.archs import get_arch, list_models
    from anyshape.weights.registry import TORCH_SUFFIXES
    from anyshape.weights.torch_sets import TWIN_OVERRIDES

    if isinstance(src, (str, os.PathLike)) and os.fspath(src).lower().endswith(TORCH_SUFFIXES):
        if network.family not in TWIN_OVERRIDES:
            twins = sorted(n for n in list_models() if get_arch(n).family in TWIN_OVERRIDES)
            raise ValueError(
                f"{os.path.basename(os.fspath(src))} is a PyTorch state dict: {network.keras_name} has no PyTorch "
                f"twin anyshape converts; state dicts convert into inception_v3, {', '.join(twins)}; give a "
                "Keras file of it (.h5, .weights.h5, .keras)"
            )
    return resolve(src, preprocessing, arch=network.name)


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
    from anyshape.factory import create_model
    from anyshape.weights.loader import load_checkpoint

    model = create_model(
        "inception_v3",
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
    note = reference_available(reference) or ""
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
    if reference == "timm" and reference_available("timm") and not reference_available("torchvision"):
        # timm's InceptionV3 has torchvision's layers, keys and semantics: same reference
        reference = "torchvision"
    return reference


def _written_weight_set(loaded: WeightSet, read: _Source, aux_logits: bool) -> WeightSet:
    """The metadata stored in the converted file: a Keras file of its own, no download or label offset."""
    return as_written(
        loaded, num_classes=read.classes if read.num_classes is not None else None, has_aux=bool(aux_logits)
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
