"""Feature files: rows (path, feature) checkpointed as a run goes, one atomic file at the end."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from anyshape.atomic_write import write_atomically, write_bytes_atomically

if TYPE_CHECKING:
    from anyshape.engine.runs import ImageResult


FEATURE_SUFFIXES = (".npy", ".npz", ".parquet")


class FeatureStore:
    """Rows (path, feature) of a `features` run: checkpointed as it goes, written at the end.

    While running, every finished batch is appended as one small `.npz` chunk (written
    atomically) in the folder `<out>.partial/`. An interrupted run leaves only whole chunks
    there; `resume=True` reads them and the run skips their paths. `finish()` writes `out` in
    one atomic rename and removes the checkpoint folder. Output formats:

    * `.npz`: arrays `features` (N, ...) float32 and `paths` (N,) str;
    * `.npy`: the (N, ...) float32 feature array, with the paths in row order in the text file
      `<out>.paths.txt` (one per line);
    * `.parquet`: columns `path` (string) and `feature` (list<float32>, flattened); needs pyarrow.

    `metadata` (e.g. {"engine": "openvino", "precision": "bf16"}, from `Predictor.metadata()`)
    is stored as a JSON string: the `metadata` array of a .npz, the schema metadata key
    `anyshape` of a .parquet, and `<out>.meta.json` next to a .npy.
    """

    def __init__(self, out, *, resume: bool = False, force: bool = False, metadata: dict | None = None):
        self.metadata = dict(metadata or {})
        self.out = Path(out)
        if self.out.suffix not in FEATURE_SUFFIXES:
            raise ValueError(f"--out must end in {', '.join(FEATURE_SUFFIXES)}, got {str(out)!r}")
        if self.out.suffix == ".parquet":
            try:
                import pyarrow  # noqa: F401
            except ImportError:
                raise ValueError("writing .parquet needs pyarrow, which is not installed: "
                                 "pip install pyarrow, or use --out FILE.npz / FILE.npy") from None
        if not self.out.parent.is_dir():
            raise ValueError(f"the folder of --out, {str(self.out.parent)!r}, does not exist")
        self.partial = self.out.with_name(self.out.name + ".partial")
        if self.out.exists() and not force:
            raise FileExistsError(f"{self.out} exists; pass --force to overwrite it")
        if self.partial.exists() and not (resume or force):
            raise FileExistsError(
                f"{self.partial} holds an interrupted run's rows; pass --resume to continue it "
                "or --force to start again"
            )
        if self.partial.exists() and force and not resume:
            self._remove_partial()
        self.paths: list[str] = []
        self.rows: list[np.ndarray] = []
        if self.partial.exists():
            for chunk in sorted(self.partial.glob("chunk-*.npz")):
                with np.load(chunk, allow_pickle=False) as z:
                    self.paths.extend(str(p) for p in z["paths"])
                    self.rows.extend(z["features"])
        self.partial.mkdir(exist_ok=True)
        self._chunks = len(list(self.partial.glob("chunk-*.npz")))
        self.done = set(self.paths)

    def add(self, results: list[ImageResult]) -> None:
        ok = [r for r in results if r.error is None and str(r.path) not in self.done]
        if not ok:
            return
        feats = np.stack([np.asarray(r.output, np.float32) for r in ok])
        names = np.array([str(r.path) for r in ok])
        self._chunks += 1
        chunk = self.partial / f"chunk-{self._chunks:06d}.npz"
        write_atomically(chunk, lambda tmp: np.savez(tmp, features=feats, paths=names))
        self.paths.extend(names.tolist())
        self.rows.extend(feats)
        self.done.update(names.tolist())

    def finish(self) -> int:
        """Write the output file (rows sorted by path); returns the number of rows."""
        order = sorted(range(len(self.paths)), key=lambda i: self.paths[i])
        paths = [self.paths[i] for i in order]
        shapes = {self.rows[i].shape for i in order}
        if len(shapes) > 1:
            raise ValueError(
                f"the feature maps have different shapes {sorted(shapes)[:4]}; use --pooling avg|max, "
                "or --size N so every image has the same size"
            )
        feats = np.stack([self.rows[i] for i in order]) if order else np.zeros((0,), np.float32)
        suffix = self.out.suffix
        meta = json.dumps(self.metadata)
        if suffix == ".npz":
            write_atomically(self.out, lambda tmp: np.savez(tmp, features=feats, paths=np.array(paths),
                                                             metadata=np.array(meta)))
        elif suffix == ".npy":
            listing = self.out.with_name(self.out.name + ".paths.txt")
            write_bytes_atomically(listing, ("\n".join(paths) + ("\n" if paths else "")).encode("utf-8"))
            write_bytes_atomically(self.out.with_name(self.out.name + ".meta.json"), meta.encode("utf-8"))
            write_atomically(self.out, lambda tmp: np.save(tmp, feats))
        else:
            import pyarrow as pa
            import pyarrow.parquet as pq

            flat = feats.reshape(len(paths), -1) if paths else np.zeros((0, 0), np.float32)
            table = pa.table({
                "path": pa.array(paths, pa.string()),
                "feature": pa.array(list(flat), pa.list_(pa.float32())),
            }).replace_schema_metadata({"anyshape": meta})
            write_atomically(self.out, lambda tmp: pq.write_table(table, tmp))
        self._remove_partial()
        return len(paths)

    def _remove_partial(self) -> None:
        if self.partial.exists():
            for f in self.partial.iterdir():
                f.unlink()
            self.partial.rmdir()
