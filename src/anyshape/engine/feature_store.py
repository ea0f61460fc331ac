"""Feature files: rows (path, feature) checkpointed as a run goes, one atomic file at the end."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from anyshape.atomic_write import write_atomically, write_bytes_atomically
from anyshape.engine.images import path_key
from anyshape.engine.manifest import ResumeMismatch, RunManifest

if TYPE_CHECKING:
    from anyshape.engine.runs import ImageResult


FEATURE_SUFFIXES = (".npy", ".npz", ".parquet")


class FeatureStore:
    """Rows (path, feature) of a `features` run: checkpointed as it goes, written at the end.

    While running, every finished batch is appended as one small `.npz` chunk (written
    atomically) in the folder `<out>.partial/`, beside `manifest.json`, the run's record of
    what it computes (`RunManifest`: options and weights digest). An interrupted run leaves only
    whole chunks there; `resume=True` first checks that the new run computes exactly what the
    record says (else `ResumeMismatch`, before any work), then reads the chunks and the run
    skips their files. Files are identified by `path_key` (absolute, links resolved), so one
    file given two ways is one row; rows keep the spelling the file was first given with.
    `finish()` writes `out` in one atomic rename and removes the checkpoint folder.

    Output formats, each carrying the manifest:

    * `.npz`: arrays `features` (N, ...) float32, `paths` (N,) str and `manifest` (a JSON str);
    * `.npy`: the (N, ...) float32 feature array, with the paths in row order in
      `<out>.paths.jsonl` (one JSON string per line: a name may hold a line break) and the
      manifest in `<out>.manifest.json`;
    * `.parquet`: columns `path` (string) and `feature` (list<float32>, flattened), the manifest
      as JSON in the schema metadata key `anyshape_manifest`; needs pyarrow.

    `read_features(out)` reads any of them back. Every file name round-trips: a name whose bytes
    are not UTF-8 is held as Python holds it in a path (surrogate escapes, `os.fsdecode`) in
    `.npz` and `.npy` (`os.fsencode(name)` gives the bytes back); Parquet text is UTF-8 only, so
    a `.parquet` run refuses such names before any work (`check_names`), naming the files.

    Nothing the caller did not name is overwritten or deleted: the sidecar files of `.npy`
    follow the rules of `out` (refused if they exist, unless `force`), and `force` removes only
    this store's own checkpoint files (a `<out>.partial` folder holding anything else is refused).
    """

    MANIFEST = "manifest.json"

    def __init__(self, out, *, resume: bool = False, force: bool = False, manifest: RunManifest | None = None):
        self.out = Path(out)
        self.partial = self.out.with_name(self.out.name + ".partial")
        self.check_output(out, resume=resume, force=force)
        if self.partial.exists() and force and not resume:
            self._remove_partial()
        self.manifest = manifest
        if self.partial.exists():
            recorded = RunManifest.read(self.partial / self.MANIFEST)
            if recorded is None:
                raise ResumeMismatch(
                    f"{self.partial} has no record of what its rows were computed with ({self.MANIFEST}), "
                    "so they cannot be safely continued: start again with --force"
                )
            if manifest is not None:
                manifest.check_resume(recorded, where=str(self.partial))
            self.manifest = recorded if manifest is None else manifest
        self.paths: list[str] = []
        self.keys: list[str] = []
        self.rows: list[np.ndarray] = []
        if self.partial.exists():
            for chunk in sorted(self.partial.glob("chunk-*.npz")):
                with np.load(chunk, allow_pickle=False) as z:
                    self.paths.extend(str(p) for p in z["paths"])
                    self.keys.extend(str(k) for k in z["keys"])
                    self.rows.extend(z["features"])
        self.partial.mkdir(exist_ok=True)
        if self.manifest is not None and not (self.partial / self.MANIFEST).exists():
            self.manifest.write(self.partial / self.MANIFEST)
        self._chunks = len(list(self.partial.glob("chunk-*.npz")))
        self.done = set(self.keys)

    @classmethod
    def sidecars(cls, out) -> list[Path]:
        """Files written beside `out` (for .npy: the paths listing and the manifest)."""
        out = Path(out)
        if out.suffix != ".npy":
            return []
        return [out.with_name(out.name + ".paths.jsonl"), out.with_name(out.name + ".manifest.json")]

    @classmethod
    def check_output(cls, out, *, resume: bool = False, force: bool = False) -> None:
        """Refuse an output that cannot be written, without touching anything (call it before
        building a model): wrong suffix, missing folder, a folder in the way, existing files."""
        out = Path(out)
        if out.suffix not in FEATURE_SUFFIXES:
            raise ValueError(f"--out must end in {', '.join(FEATURE_SUFFIXES)}, got {str(out)!r}")
        if out.suffix == ".parquet":
            try:
                import pyarrow  # noqa: F401
            except ImportError:
                raise ValueError(
                    "writing .parquet needs pyarrow, which is not installed: "
                    "pip install pyarrow, or use --out FILE.npz / FILE.npy"
                ) from None
        if not out.parent.is_dir():
            raise ValueError(f"the folder of --out, {str(out.parent)!r}, does not exist")
        for f in [out, *cls.sidecars(out)]:
            if f.is_dir():
                raise FileExistsError(f"{f} is a folder; --out needs a file name (a folder is never replaced)")
            if f.exists() and not force:
                raise FileExistsError(f"{f} exists; pass --force to overwrite it")
        partial = out.with_name(out.name + ".partial")
        if partial.exists():
            own = partial.is_dir() and all(
                f.is_file() and (f.name == cls.MANIFEST or (f.name.startswith("chunk-") and f.suffix == ".npz"))
                for f in partial.iterdir()
            )
            if not own:
                raise FileExistsError(
                    f"{partial} is in the way and is not an interrupted run's checkpoint folder: "
                    "move it, or choose another --out"
                )
            if not (resume or force):
                raise FileExistsError(
                    f"{partial} holds an interrupted run's rows; pass --resume to continue it or --force to start again"
                )

    @classmethod
    def check_names(cls, out, paths) -> None:
        """Refuse, before any work, file names `out` cannot hold: Parquet text is UTF-8 only, so a
        name whose bytes are not UTF-8 would fail the run at its end (.npz and .npy hold any name)."""
        if Path(out).suffix == ".parquet":
            refuse_non_utf8(paths, "a .parquet output", "or write --out FILE.npz or FILE.npy, which keep any name")

    def owns(self, path) -> bool:
        """True for the files this store writes (so a run over the folder it writes into skips them)."""
        key = path_key(path)
        mine = {path_key(self.out), *(path_key(f) for f in self.sidecars(self.out))}
        return key in mine or key.startswith(path_key(self.partial) + os.sep)

    def add(self, results: list[ImageResult]) -> None:
        ok, keys = [], []
        for r in results:
            key = path_key(r.path)
            if r.error is None and key not in self.done and key not in keys:
                ok.append(r)
                keys.append(key)
        if not ok:
            return
        feats = np.stack([np.asarray(r.output, np.float32) for r in ok])
        names = np.array([str(r.path) for r in ok])
        self._chunks += 1
        chunk = self.partial / f"chunk-{self._chunks:06d}.npz"
        write_atomically(chunk, lambda tmp: np.savez(tmp, features=feats, paths=names, keys=np.array(keys)))
        self.paths.extend(names.tolist())
        self.keys.extend(keys)
        self.rows.extend(feats)
        self.done.update(keys)

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
        record = json.dumps(self.manifest.to_json(), sort_keys=True) if self.manifest is not None else ""
        suffix = self.out.suffix
        if suffix == ".npz":
            write_atomically(
                self.out, lambda tmp: np.savez(tmp, features=feats, paths=np.array(paths), manifest=np.array(record))
            )
        elif suffix == ".npy":
            listing, manifest_file = self.sidecars(self.out)
            write_bytes_atomically(listing, "".join(json.dumps(p) + "\n" for p in paths).encode("ascii"))
            if self.manifest is not None:
                self.manifest.write(manifest_file)
            write_atomically(self.out, lambda tmp: np.save(tmp, feats))
        else:
            import pyarrow as pa
            import pyarrow.parquet as pq

            flat = feats.reshape(len(paths), -1) if paths else np.zeros((0, 0), np.float32)
            table = pa.table(
                {
                    "path": pa.array(paths, pa.string()),
                    "feature": pa.array(list(flat), pa.list_(pa.float32())),
                }
            )
            table = table.replace_schema_metadata({"anyshape_manifest": record})
            write_atomically(self.out, lambda tmp: pq.write_table(table, tmp))
        self._remove_partial()
        return len(paths)

    def _remove_partial(self) -> None:
        """Remove this store's checkpoint files, and the folder if nothing else is in it."""
        if not self.partial.is_dir():
            return
        for f in self.partial.iterdir():
            if f.is_file() and (f.name == self.MANIFEST or (f.name.startswith("chunk-") and f.suffix == ".npz")):
                f.unlink()
        if not any(self.partial.iterdir()):
            self.partial.rmdir()


def refuse_non_utf8(paths, output: str, instead: str) -> None:
    """ValueError naming the file names among `paths` whose bytes are not UTF-8 (Python holds them
    with surrogate escapes), which `output`, being UTF-8 text, cannot store."""
    bad = []
    for p in map(str, paths):
        try:
            p.encode("utf-8")
        except UnicodeEncodeError:
            bad.append(os.fsencode(p).decode("utf-8", "backslashreplace"))
    if bad:
        shown = ", ".join(bad[:3]) + (f" and {len(bad) - 3} more" if len(bad) > 3 else "")
        raise ValueError(
            f"{len(bad)} file name(s) are not valid UTF-8, which {output} cannot store: {shown}; rename them, {instead}"
        )


def read_features(path) -> tuple[np.ndarray, list[str]]:
    """(features, paths) of a `features` output file (.npz, .npy with its paths.jsonl, .parquet:
    its rows flattened), in file order. A name whose bytes are not UTF-8 comes back as Python
    holds it in a path (surrogate escapes): open it as it is, or take its bytes with `os.fsencode`."""
    path = Path(path)
    if path.suffix == ".npz":
        with np.load(path, allow_pickle=False) as z:
            return z["features"], [str(p) for p in z["paths"]]
    if path.suffix == ".npy":
        listing = path.with_name(path.name + ".paths.jsonl").read_text(encoding="ascii")
        return np.load(path, allow_pickle=False), [json.loads(line) for line in listing.splitlines()]
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        table = pq.read_table(path)
        features = np.array(table.column("feature").to_pylist(), np.float32)
        return features, table.column("path").to_pylist()
    raise ValueError(f"{path}: not a features output (expected {', '.join(FEATURE_SUFFIXES)})")


def read_manifest(path) -> RunManifest | None:
    """The RunManifest a `features` output file carries (.npz, .npy sidecar, .parquet metadata), or None."""
    path = Path(path)
    text = ""
    if path.suffix == ".npz":
        with np.load(path, allow_pickle=False) as z:
            text = str(z["manifest"]) if "manifest" in z.files else ""
    elif path.suffix == ".npy":
        return RunManifest.read(path.with_name(path.name + ".manifest.json"))
    elif path.suffix == ".parquet":
        import pyarrow.parquet as pq

        meta = pq.read_schema(path).metadata or {}
        text = meta.get(b"anyshape_manifest", b"").decode()
    return RunManifest.from_json(json.loads(text)) if text else None
