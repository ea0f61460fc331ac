"""What every conversion shares (`anyshape.weights.convert` and its family and twin conversions): the
destination rules, the parity report of a family network, the metadata a converted file records,
and the atomic write of the result."""

from __future__ import annotations

import importlib.util
import os
import sys
from dataclasses import dataclass, replace

from anyshape.errors import OutputExistsError
from anyshape.weights.weight_set import WeightSet

__all__ = [
    "PARITY_TOLERANCE",
    "FamilyParityReport",
    "FamilyConversionResult",
    "FamilyArguments",
    "build_family_model",
    "load_family_model",
    "finish_family",
    "check_destination",
    "reference_available",
    "as_written",
    "set_classifier_activation",
    "save_family",
]

PARITY_TOLERANCE = 1e-4


@dataclass(frozen=True)
class FamilyArguments:
    """What `convert` passes on to a family network's conversion (`convert_family`, `convert_twin`):
    its own arguments of the same names (`options`: the network's build arguments)."""

    source: str | None
    input_shape: tuple | None
    force: bool
    parity: bool
    parity_images: int
    classifier_activation: str | None
    channel_adapt: object
    cache_dir: str | None
    progress: bool
    options: dict

    def shape(self) -> tuple:
        """The model's input shape: `input_shape`, by default (None, None, 3)."""
        return tuple(self.input_shape) if self.input_shape is not None else (None, None, 3)

    def overrides(self, ws: WeightSet, arch) -> dict:
        """`ws`'s build overrides for network `arch`, but for those the caller's options set."""
        return {k: v for k, v in ws.build_overrides_for(arch.name).items() if k not in self.options}


def build_family_model(arch, args: FamilyArguments, classes, overrides: dict):
    """Network `arch` as a conversion builds it: for logits, with a head of `classes` classes (None:
    no top), at the shape and with the options asked, without weights."""
    from anyshape.factory import create_model

    head = {"include_top": True, "classes": classes} if classes is not None else {"include_top": False}
    return create_model(
        arch.name, input_shape=args.shape(), classifier_activation=None, **head, **overrides, **args.options
    )


def load_family_model(ws: WeightSet, path: str, arch, args: FamilyArguments, classes, overrides: dict, model=None):
    """(model, the loaded WeightSet): network `arch` built for logits with the file's head (`classes`
    classes; None: no top; `model`: that network, already built by `build_family_model`), `ws`'s
    file at `path` loaded into it (as create_model(weights=...) does, with the weight set already
    resolved and fetched)."""
    from anyshape.weights.loader import load_weight_set

    if model is None:
        model = build_family_model(arch, args, classes, overrides)
    loaded = load_weight_set(
        model,
        replace(ws, path=path),
        channel_adapt=args.channel_adapt,
        cache_dir=args.cache_dir,
        progress=args.progress,
    )
    return model, loaded


def finish_family(model, arch, dst: str, written: WeightSet, classes, args: FamilyArguments, report, note: str):
    """The classifier's activation set (when the file has a classifier), `dst` written, the result."""
    if classes is not None and args.classifier_activation:
        set_classifier_activation(model, arch, args.classifier_activation)
    save_family(model, dst, written, overwrite=args.force)
    return FamilyConversionResult(os.path.abspath(dst), written, arch.name, args.shape(), report, note)


def check_destination(dst, force: bool) -> str:
    dst = os.fspath(dst)
    if not dst.endswith((".weights.h5", ".keras")):
        raise ValueError(f"destination {dst!r} must end in .weights.h5 (weights only) or .keras (whole model)")
    if os.path.exists(dst) and not force:
        raise OutputExistsError("{dst} already exists; pass {force=True} to overwrite it", dst=dst)
    parent = os.path.dirname(os.path.abspath(dst))
    if not os.path.isdir(parent):
        raise FileNotFoundError(f"directory {parent} does not exist; create it first")
    return dst


def reference_available(module: str) -> str | None:
    """None when `module` (torchvision or timm) can be used for parity here, else why not."""
    if importlib.util.find_spec(module) is None or importlib.util.find_spec("torch") is None:
        return f"{module} is not installed (pip install {module})"
    needs = ["torchvision"] if module == "torchvision" else ["torchvision", "timm"]
    if "tensorflow" in sys.modules and any(m not in sys.modules for m in needs):
        return (
            f"{module} was not imported before TensorFlow, and importing it afterwards crashes; "
            f"call convert before anything loads Keras, import torch and {module} first, or use the anyshape CLI"
        )
    return None


@dataclass
class FamilyParityReport:
    """Our converted network against the reference model (keras.applications' or the PyTorch twin)
    loaded from the same file."""

    reference: str  # e.g. "keras.applications.ResNet50", "torchvision.models.resnet50"
    input_hw: tuple[int, int]
    images: int
    max_rel_diff: float  # max |ours - reference| / max |reference| over the logits
    top5_agreement: float
    how: str = "inference mode, same file"

    @property
    def ok(self) -> bool:
        return self.max_rel_diff <= PARITY_TOLERANCE and self.top5_agreement == 1.0

    def __str__(self) -> str:
        h, w = self.input_hw
        return "\n".join(
            [
                f"parity vs {self.reference} ({self.images} random images at {h}x{w}, {self.how}):",
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
        overrides = ", ".join(f"{k}={v!r}" for k, v in ws.overrides)
        head = (
            f"wrote {self.path}: {self.architecture} from {ws.name} ({classes}; input {self.input_shape}; "
            f"preprocessing {prep}" + (f"; built with {overrides}" if overrides else "") + ")"
        )
        return head + "\n" + (str(self.parity) if self.parity else f"parity: not computed ({self.note})")


def as_written(ws: WeightSet, **changes) -> WeightSet:
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


def set_classifier_activation(model, arch, activation: str) -> None:
    """The activation on the classifier's last weighted layer (built without one, for logits),
    and in the Config the model records."""
    import keras

    model.get_layer(arch.classifier[0]).activation = keras.activations.get(activation)
    config = getattr(model, "anyshape_config", None)
    if config is not None:
        model.anyshape_config = replace(config, classifier_activation=activation)


def save_family(model, dst: str, weight_set: WeightSet, *, overwrite: bool) -> None:
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

    write_atomically(dst, write, overwrite=overwrite)  # without force, not a file that appeared meanwhile either
