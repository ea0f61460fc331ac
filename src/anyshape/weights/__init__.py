"""Weight sets: resolving `weights=` and loading them into a built model.

This first version loads Keras weight files (.weights.h5, .keras, legacy .h5) given by path.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

__all__ = ["WeightSet", "resolve", "load_weight_set"]


@dataclass(frozen=True)
class WeightSet:
    """What a `weights=` argument points at, and how the model must be built for it."""

    name: str
    path: str | None = None
    count_include_pad: bool = False  # 3x3 pool-branch semantics it was trained with
    bn_scale: bool = False  # whether its BatchNorm layers have a gamma


def resolve(weights) -> WeightSet:
    """Turn a `weights=` argument (name or path) into a `WeightSet`; raises if it cannot be used."""
    path = os.fspath(weights)
    if os.path.exists(path):
        if not path.endswith((".h5", ".keras")):
            raise ValueError(f"weights file {path!r}: expected a Keras .weights.h5, .keras or .h5 file")
        return WeightSet(name=os.path.basename(path), path=path)
    raise ValueError(
        f"weights={weights!r} is neither an existing file nor a known weight set; "
        "use weights=None for random initialisation"
    )


def load_weight_set(model, weight_set: WeightSet, report=None, **options) -> None:
    if options:
        raise ValueError(f"unknown weight options {sorted(options)}")
    model.load_weights(weight_set.path)
