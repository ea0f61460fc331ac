"""Freezing: `freeze_layers` sets `trainable` for a freeze option read from the network's record."""

from __future__ import annotations

from anyshape.archs import DEFAULT_ARCH, Arch, get_arch
from anyshape.training.config import check_freeze

__all__ = ["freeze_layers"]


def _ancestor_layer_names(model, layer_name: str) -> set[str]:
    """Names of the layers that `layer_name`'s output depends on, itself included."""
    import keras

    sub = keras.Model(model.inputs, model.get_layer(layer_name).output)
    return {l.name for l in sub.layers}


def _model_arch(model) -> Arch:
    """The network `model` was built as (`anyshape.create_model` records it), else InceptionV3."""
    from anyshape.archs import model_config

    built = model_config(model)
    return built[0] if built is not None else get_arch(DEFAULT_ARCH)


def freeze_layers(model, spec: str, arch: str | Arch | None = None) -> list[str]:
    """Set `trainable` for a freeze option; returns the names of the frozen layers (with weights).

    The options come from the network's record (`arch`, by default the one `model` was built as):
    "none": everything trains. "backbone": only the classifier trains (everything its main
    classifier layer reads is frozen; InceptionV3's aux head, which reads mixed7, trains too).
    "up-to-<block>" for a block of the network (`Arch.blocks`: mixed0..mixed10 for InceptionV3):
    that block and everything its output depends on are frozen, the later blocks and the head
    train. Frozen BatchNorm layers run in inference mode (Keras 3 semantics of trainable=False).
    """
    a = get_arch(arch) if arch is not None else _model_arch(model)
    spec = check_freeze(spec, a)
    if spec == "none":
        frozen = set()
    elif spec == "backbone":
        frozen = _ancestor_layer_names(model, a.classifier[0]) - {a.classifier[0]}
    else:
        frozen = _ancestor_layer_names(model, spec[len("up-to-") :])
    names = []
    for layer in model.layers:
        layer.trainable = layer.name not in frozen
        if layer.name in frozen and layer.weights:
            names.append(layer.name)
    return names
