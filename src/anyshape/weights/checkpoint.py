"""The in-memory form every weights file is read into before any model variable is touched.

A `Checkpoint` holds numpy arrays in Keras layout, keyed by anyshape's unit names
(`anyshape.archs.inception_v3.ConvSpec.name`, e.g. "mixed0_branch5x5_2") and the dense layer names
("predictions", "aux_predictions"):

    units["mixed0_branch5x5_2"] = {"kernel": (kh, kw, in, out),
                                   "gamma": (out,) [only when the source has one],
                                   "beta", "moving_mean", "moving_variance": (out,)}
    units["predictions"] = {"kernel": (2048, classes), "bias": (classes,)}

Readers (`torch.read_torch_file`, `keras_h5.read_keras_file`) produce one; the loader checks it
against the model completely and only then assigns, so a bad file leaves the model unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from anyshape.archs.inception_v3 import AUX_CONVS, BLOCKS, STEM, ConvSpec

__all__ = ["Checkpoint", "WeightFileError", "CONV_SPECS", "BACKBONE_SPECS", "FIRST_CONV", "DENSE_NAMES"]

BACKBONE_SPECS: tuple[ConvSpec, ...] = tuple(
    [s for s in STEM if isinstance(s, ConvSpec)] + [c for b in BLOCKS for c in b.convs()]
)
CONV_SPECS: tuple[ConvSpec, ...] = BACKBONE_SPECS + tuple(AUX_CONVS)
FIRST_CONV = BACKBONE_SPECS[0].name  # "stem_1a_3x3": the only layer channel adaptation changes
DENSE_NAMES = ("predictions", "aux_predictions")


class WeightFileError(ValueError):
    """A weights file that cannot be loaded into this model: what is wrong, why, what to do."""


@dataclass
class Checkpoint:
    units: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)
    source: str = ""  # the file, for messages
    layout: str = "torch"  # "torch" or "keras": the layout it was read from

    @property
    def bn_scale(self) -> bool:
        return any("gamma" in u for name, u in self.units.items() if name not in DENSE_NAMES)

    @property
    def num_classes(self) -> int | None:
        head = self.units.get("predictions")
        return None if head is None else int(head["kernel"].shape[1])

    @property
    def has_aux(self) -> bool:
        return "aux_predictions" in self.units
