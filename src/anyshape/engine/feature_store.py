"""Feature files: rows (path, feature) checkpointed as a run goes, one atomic file at the end."""

from __future__ import annotations

import fcntl
import json
import os
import re
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from anyshape.atomic_write import write_atomically, write_bytes_atomically
from anyshape.engine.images import path_key
from anyshape.engine.manifest import ResumeMismatch, RunManifest
from anyshape.errors import Message, OutputExistsError, ParameterError

if TYPE_CHECKING:
    from anyshape.engine.runs import ImageResult


FEATURE_SUFFIXES = (".npy", ".npz", ".parquet")
_CHUNK = re.compile(r"chunk-(\d+)\.npz")


class RunInUse(OSError):
    """Another live run holds the checkpoint folder (`FeatureStore.LOCK`)."""


class FeatureStore:
    """Rows (path, feature) of a `features` run: checkpointed as it goes, written at the end.

    While running, every finished batch is appended as one small `.npz` chunk (written
    atomically) in the folder `<out>.partial/`, beside `manifest.json`, the run's record of
    what it computes (`RunManifest`: options and weights digest). An interrupted run leaves only
    whole chunks there; `resume=True` first checks that the new run computes exactly what the
    record says (else `ResumeMismatch`, before any work), then reads the chunks and the run
    skips their files. A chunk that cannot be read (truncated, empty) is removed and its files
    are computed again, as those of a deleted chunk are. A live run holds an exclusive lock on
    the file `lock` in the folder (`fcntl.flock`, released by `close`, `finish` or the end of
    its process), so a second run on the same `out` is refused (`RunInUse`) instead of mixing
    its chunks with the first one's or deleting them. Files are identified by `path_key`
    (absolute, links resolved), so one file given two ways is one row; rows keep the spelling
    the file was first given with.
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
    LOCK = "lock"

    def __init__(self, out, *, resume: bool = False, force: bool = False, manifest: RunManifest | None = None):
        self.out = Path(out)
        self.partial = self.out.with_name(self.out.name + ".partial")
        self.check_output(out, resume=resume, force=force)
        created = not self.partial.exists()
        self.partial.mkdir(exist_ok=True)
        self._lock: int | None = _hold_lock(self.partial / self.LOCK, self.out)
        try:
            self._open(resume=resume, force=force, manifest=manifest)
        except BaseException:
            if created:  # nothing of this run is left behind
                self._remove_partial(lock=True)
            self.close()
            raise

    def _open(self, *, resume: bool, force: bool, manifest: RunManifest | None) -> None:
        """Check and read the checkpoint folder, holding its lock."""
        if force and not resume:
            self._remove_partial()
        self.manifest = manifest
        if any(f.name != self.LOCK for f in self.partial.iterdir()):
            recorded = RunManifest.read(self.partial / self.MANIFEST)
            if recorded is None:
                raise ResumeMismatch(
                    Message(
                        "{partial} has no record of what its rows were computed with ({manifest}), "
                        "so they cannot be safely continued: start again with {force=True}",
                        partial=self.partial,
                        manifest=self.MANIFEST,
                    )
                )
            if manifest is not None:
                manifest.check_resume(recorded, where=str(self.partial))
            self.manifest = recorded if manifest is None else manifest
        self.paths: list[str] = []
        self.keys: list[str] = []
        self.rows: list[np.ndarray] = []
        numbers = [0]
        for chunk in sorted(self.partial.glob("chunk-*.npz")):
            rows = _read_chunk(chunk)
            if rows is None:
                chunk.unlink()
                continue
            self.paths.extend(rows[0])
            self.keys.extend(rows[1])
            self.rows.extend(rows[2])
            match = _CHUNK.fullmatch(chunk.name)
            numbers.append(int(match.group(1)) if match else 0)
        if self.manifest is not None and not (self.partial / self.MANIFEST).exists():
            self.manifest.write(self.partial / self.MANIFEST)
        self._chunks = max(numbers)  # new chunks never take the name of one kept
        self.done = set(self.keys)

    def close(self) -> None:
        """Release the lock on the checkpoint folder (`finish` does; so does the process's end)."""
        if self._lock is not None:
            os.close(self._lock)
            self._lock = None

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
            raise ParameterError(
                "{out} must end in {suffixes}, got {path!r}", suffixes=", ".join(FEATURE_SUFFIXES), path=str(out)
            )
        if out.suffix == ".parquet":
            try:
                import pyarrow  # noqa: F401
            except ImportError:
                raise ParameterError(
                    "writing .parquet needs pyarrow, which is not installed: "
                    "pip install pyarrow, or use {out=FILE.npz} / FILE.npy"
                ) from None
        if not out.parent.is_dir():
            raise ParameterError("the folder of {out}, {folder!r}, does not exist", folder=str(out.parent))
        for f in [out, *cls.sidecars(out)]:
            if f.is_dir():
                raise OutputExistsError(
                    "{path} is a folder; {out} needs a file name (a folder is never replaced)", path=f
                )
            if f.exists() and not force:
                raise OutputExistsError("{path} exists; pass {force=True} to overwrite it", path=f)
        partial = out.with_name(out.name + ".partial")
        if partial.exists():
            own = partial.is_dir() and all(f.is_file() and cls._owns_name(f.name) for f in partial.iterdir())
            if not own:
                raise OutputExistsError(
                    "{partial} is in the way and is not an interrupted run's checkpoint folder: "
                    "move it, or choose another {out}",
                    partial=partial,
                )
            _check_unlocked(partial / cls.LOCK, out)
            if not (resume or force):
                raise OutputExistsError(
                    "{partial} holds an interrupted run's rows; pass {resume=True} to continue it "
                    "or {force=True} to start again",
                    partial=partial,
                )

    @classmethod
    def check_names(cls, out, paths) -> None:
        """Refuse, before any work, file names `out` cannot hold: Parquet text is UTF-8 only, so a
        name whose bytes are not UTF-8 would fail the run at its end (.npz and .npy hold any name)."""
        if Path(out).suffix == ".parquet":
            refuse_non_utf8(
                paths, "a .parquet output", Message("or write {out=FILE.npz} or FILE.npy, which keep any name")
            )

    @classmethod
    def _owns_name(cls, name: str) -> bool:
        """The names of the files this store writes in its checkpoint folder."""
        return name in (cls.MANIFEST, cls.LOCK) or (name.startswith("chunk-") and name.endswith(".npz"))

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
            raise ParameterError(
                "the feature maps have different shapes {shapes}; use {pooling='avg'} or 'max', "
                "or {size=N} so every image has the same size",
                shapes=sorted(shapes)[:4],
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
        self._remove_partial(lock=True)
        self.close()
        return len(paths)

    def _remove_partial(self, *, lock: bool = False) -> None:
        """Remove this store's checkpoint files (the lock file too when `lock`: the run is over),
        and the folder if nothing else is in it."""
        if not self.partial.is_dir():
            return
        for f in self.partial.iterdir():
            if f.is_file() and self._owns_name(f.name) and (lock or f.name != self.LOCK):
                f.unlink()
        if not any(self.partial.iterdir()):
            self.partial.rmdir()


def refuse_non_utf8(paths, output: str, instead: str | Message) -> None:
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
        raise ParameterError(
            "{count} file name(s) are not valid UTF-8, which {output} cannot store: {shown}; rename them, {instead}",
            parameter="paths",
            count=len(bad),
            output=output,
            shown=shown,
            instead=instead,
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


def _read_chunk(path: Path) -> tuple[list[str], list[str], list[np.ndarray]] | None:
    """(paths, keys, feature rows) of a checkpoint chunk, or None when it cannot be read whole."""
    try:
        with np.load(path, allow_pickle=False) as z:
            paths, keys, feats = [str(p) for p in z["paths"]], [str(k) for k in z["keys"]], list(z["features"])
    except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile):
        return None
    return (paths, keys, feats) if len(paths) == len(keys) == len(feats) else None


def _in_use(out) -> RunInUse:
    return RunInUse(
        Message(
            "{out=*}: another run is using it (a live `anyshape features` holds {path}.partial/); "
            "wait for it to end, or choose another {out}",
            out=str(out),
            path=out,
        )
    )


def _check_unlocked(lock: Path, out) -> None:
    """Refuse when a live run holds `lock`, without taking it (nothing is created)."""
    try:
        fd = os.open(lock, os.O_RDONLY)
    except FileNotFoundError:
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        raise _in_use(out) from None
    finally:
        os.close(fd)


def _hold_lock(lock: Path, out) -> int:
    """An exclusive `flock` on the file `lock` (created if missing), as an open descriptor.

    A run that ends removes its lock file: a lock taken on a file that was meanwhile removed
    (or replaced) guards nothing, so the file is opened again until the lock held is on the
    file under that name."""
    while True:
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise _in_use(out) from None
        try:
            if os.stat(lock).st_ino == os.fstat(fd).st_ino:
                return fd
        except FileNotFoundError:
            pass
        os.close(fd)


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
