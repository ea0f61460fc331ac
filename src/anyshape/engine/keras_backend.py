"""The Keras backend: the model itself (the fallback when no faster engine can run it)."""

from __future__ import annotations

import numpy as np


class KerasBackend:
    name = "keras"

    def __init__(self, model):
        self.model = model

    def __call__(self, batch: np.ndarray) -> list:
        out = self.model.predict_on_batch(batch)
        return [np.asarray(o) for o in out] if isinstance(out, (list, tuple)) else [np.asarray(out)]

    def run_many(self, batches: list) -> list:
        return [self(b) for b in batches]

    def close(self) -> None:
        pass
