"""`twin_note`: where a network built for a PyTorch twin's weights is not the twin's function at an
input shape (`anyshape explain --weights NAME` prints it; `anyshape.weights.twin_reference.twin_difference`
says why). Reads no weights and imports no backend."""

from __future__ import annotations

from anyshape.weights.registry import resolve
from anyshape.weights.twin_reference import twin_difference

__all__ = ["twin_note"]


def twin_note(
    weights,
    input_shape=None,
    *,
    arch,
    include_top: bool = True,
    data_format: str = "channels_last",
    preprocessing: str | None = None,
) -> str | None:
    """Where network `arch` (a name), built with PyTorch weights `weights` (a weight set's name, a
    file or a WeightSet, as `resolve` takes it) for `input_shape` (H, W, C in `data_format`
    order; None or None sides for a free size), is not the function of the twin the weights were
    trained in; None when it is, or when the weights are not a twin's. Reads no weights."""
    from anyshape.archs import get_arch

    ws = resolve(weights, preprocessing, arch=arch)
    if ws.format != "torch":
        return None
    shape = tuple(input_shape) if input_shape is not None else (None, None, 3)
    hw = shape[1:] if data_format == "channels_first" else shape[:2]
    why = twin_difference(get_arch(arch), hw, include_top)
    return None if why is None else f"with weights {ws.name}: {why}"
