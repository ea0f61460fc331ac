"""What a run computes, written beside its output so that a resumed run cannot mix two computations.

A run over many images (`features`, `predict --out`, the same jobs on Ray) records a
`RunManifest`: the options a user reads (task, model, weights, layer, pooling, size,
precision, ...) and a digest of the model's weights. Resuming compares the new run's manifest
with the recorded one *before any work* and refuses when anything differs, naming each
difference in the interface's own words. The digest catches what options cannot: a weight
file changed on disk, or `--weights none`, which builds a new random network every run.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from anyshape.atomic_write import write_bytes_atomically
from anyshape.data_config import DataConfig
from anyshape.errors import Message

__all__ = ["RunManifest", "ResumeMismatch", "weights_digest"]

MANIFEST_VERSION = 1


class ResumeMismatch(ValueError):
    """A resume whose options or model differ from the run it would continue."""


def weights_digest(model) -> str:
    """sha256 over a Keras model's weights (shapes, dtypes and values, in layer order), or over
    the graph of a model file (`engine.GraphModel`: its ONNX bytes hold the weights)."""
    h = hashlib.sha256()
    if hasattr(model, "graph") and isinstance(model.graph, bytes):
        h.update(model.graph)
        return h.hexdigest()
    for w in model.weights:
        value = w.numpy() if hasattr(w, "numpy") else w
        a = np.ascontiguousarray(np.asarray(value))
        h.update(f"{a.shape}{a.dtype}".encode())
        h.update(a.tobytes())
    return h.hexdigest()


@dataclass(frozen=True)
class RunManifest:
    """The options a run computes with (JSON-able values) and the digest of its model's weights."""

    options: dict = field(default_factory=dict)
    digest: str | None = None

    def to_json(self) -> dict:
        return {"anyshape_manifest": MANIFEST_VERSION, "options": self.options, "weights_digest": self.digest}

    @classmethod
    def from_json(cls, obj: dict) -> RunManifest:
        if not isinstance(obj, dict) or not isinstance(obj.get("options"), dict):
            raise ValueError("not an anyshape run manifest")
        options = dict(obj["options"])
        prep = options.get("preprocessing")
        if isinstance(prep, dict):  # a field recorded before DataConfig had it takes its default
            options["preprocessing"] = DataConfig.from_dict(prep).to_dict()
        return cls(options, obj.get("weights_digest"))

    def to_bytes(self) -> bytes:
        """The manifest file's content (indented JSON)."""
        return (json.dumps(self.to_json(), indent=2, sort_keys=True) + "\n").encode()

    def write(self, path) -> Path:
        return write_bytes_atomically(path, self.to_bytes())

    @classmethod
    def read(cls, path) -> RunManifest | None:
        path = Path(path)
        if not path.exists():
            return None
        try:
            return cls.from_json(json.loads(path.read_text()))
        except (OSError, ValueError) as e:
            raise ResumeMismatch(
                f"{path} cannot be read as the interrupted run's record ({e}); start again without resuming"
            ) from None

    def differences(self, recorded: RunManifest) -> list[str]:
        """Human-readable differences, `name: now X, interrupted run Y`."""
        out = []
        for key in sorted(set(self.options) | set(recorded.options)):
            now, then = self.options.get(key), recorded.options.get(key)
            if _canonical(now) != _canonical(then):
                out.append(f"{key}: {_show(now)} now, {_show(then)} in the interrupted run")
        if not out and self.digest != recorded.digest:
            weights = self.options.get("weights")  # None (unset) for a model file: no hint then
            hint = (
                " ({weights=None} builds a new random network every run, so such a run cannot be resumed)"
                if isinstance(weights, str) and weights.lower() == "none"
                else ""
            )
            out.append(Message("the model's weights differ from the interrupted run's" + hint))
        return out

    def check_resume(self, recorded: RunManifest | None, *, where: str) -> None:
        """Raise ResumeMismatch (before any work) unless this run computes what `recorded` did."""
        if recorded is None:
            return
        diffs = self.differences(recorded)
        if diffs:
            raise ResumeMismatch(
                Message(
                    "cannot resume {where}: it was computed with other options ({diffs}). "
                    "Run with the interrupted run's options, or start again without {resume=True}",
                    where=where,
                    diffs=Message(
                        "; ".join(f"{{d{i}}}" for i in range(len(diffs))), **{f"d{i}": d for i, d in enumerate(diffs)}
                    ),
                )
            )


def _canonical(value):
    return json.loads(json.dumps(value, sort_keys=True))


def _show(value) -> str:
    return "unset" if value is None else json.dumps(value) if not isinstance(value, str) else value
