"""The `predict` and `features` jobs on a Ray cluster, over local folders or object storage.

    from anyshape import distributed, engine
    predictor = engine.Predictor(engine.feature_model(model, "avg_pool", "avg"))
    summary = distributed.features(predictor, ["s3://bucket/photos"], "s3://bucket/feats", size=299)

The pipeline is a Ray Data dataset: the driver lists the input files (sorted, hidden files
skipped, and local files checked, as the local run does) -> `ray.data.from_items` ->
`map_batches` on a pool of actors (`_ImageJob`, one Predictor each, `cpus_per_actor` cores each,
as many actors as the cluster has room for) that open each file, decode, resize and preprocess
them with the local run's own `ImageReader` and run the Predictor -> the driver writes the rows as Parquet part files in
the output folder. The driver builds the model once and sends the same Predictor (its ONNX graph
and metadata) to every actor, so `--weights none` is one random network for the whole run, and
each path's numbers equal the local run's.

Exactly once. Each part file is written whole or not at all (a temporary name renamed into place
on a local disk; on S3 an object appears only when its upload completes) and is only written by
the driver, after Ray has handed it the rows. A path is done when a part file holds its row, and
a resumed run (`resume=True`, `--resume`) lists the part files and skips those paths; the driver
also drops any row whose path it has already written, so a task that Ray retried after an actor
died cannot give a second row. This "skip the paths already written" rule was chosen over Ray
Data's own checkpointing because it needs nothing but the output folder: it works the same for a
driver stopped by Ctrl-C, an actor killed, or a node lost, and on any file system pyarrow writes.

The output folder also holds `manifest.json` (`anyshape.engine.manifest.RunManifest`: task,
model, weights, layer, pooling, size, precision, preprocessing and the weights' digest). A resume
with other options, or another model, is refused before any work.

Paths are local files and folders or URLs that pyarrow opens (`s3://bucket/prefix`, `gs://...`);
S3 credentials come from the usual AWS environment variables and files, and `AWS_ENDPOINT_URL`
points at another S3 server. On a multi-node cluster, local paths must exist on every node (a
shared file system); object storage needs nothing more.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from pathlib import PurePosixPath

import numpy as np

from anyshape.engine.feature_store import refuse_non_utf8
from anyshape.engine.images import find_images, path_key
from anyshape.engine.manifest import ResumeMismatch, RunManifest
from anyshape.engine.runs import (
    RunInterrupted,
    RunSummary,
    _class_labels,
    feature_reader,
    make_reader,
    run_manifest,
)
from anyshape.errors import Message, OutputExistsError, ParameterError

__all__ = ["features", "predict", "DistributedSummary", "read_output"]

MANIFEST = "manifest.json"
PART_PREFIX = "part-"


# ---------------------------------------------------------------------------------------------
# File systems: local paths and URLs, one way for inputs and outputs
# ---------------------------------------------------------------------------------------------


def _is_url(path) -> bool:
    return "://" in str(path)


def _filesystem(path):
    """(pyarrow FileSystem, path inside it) for a local path or a URL such as s3://bucket/key."""
    import pyarrow.fs as pafs

    if not _is_url(path):
        return pafs.LocalFileSystem(), os.path.abspath(str(path))
    try:
        return pafs.FileSystem.from_uri(str(path))
    except Exception as e:  # pyarrow raises ArrowInvalid/OSError with the reason
        raise ValueError(f"{path}: cannot be opened as a file system URL ({e})") from None


def _url(fs_root: str, inner: str) -> str:
    """The user-facing spelling of `inner` (a path inside the file system of URL `fs_root`)."""
    scheme = str(fs_root).split("://", 1)[0]
    return f"{scheme}://{inner}"


def list_inputs(paths: Iterable) -> tuple[list[str], list[tuple[str, str]]]:
    """(files, missing) like `engine.find_images`, for local paths and URLs alike."""
    import pyarrow.fs as pafs

    files: list[str] = []
    missing: list[tuple[str, str]] = []
    local = [p for p in paths if not _is_url(p)]
    found, gone = find_images(local)
    files.extend(str(p) for p in found)
    missing.extend((str(p), why) for p, why in gone)
    seen = set(files)
    for url in (p for p in paths if _is_url(p)):
        fs, inner = _filesystem(url)
        info = fs.get_file_info(inner)
        if info.type == pafs.FileType.File:
            keys = [inner]
        elif info.type == pafs.FileType.Directory:
            selected = fs.get_file_info(pafs.FileSelector(inner, recursive=True))
            base = PurePosixPath(inner)
            keys = sorted(
                i.path
                for i in selected
                if i.type == pafs.FileType.File
                and not any(part.startswith(".") for part in PurePosixPath(i.path).relative_to(base).parts)
            )
        else:
            missing.append((str(url), "no such file or folder"))
            continue
        for key in keys:
            name = _url(url, key)
            if name not in seen:
                seen.add(name)
                files.append(name)
    return files, missing


READ_BUFFER = 4 * 1024 * 1024  # one request reads a whole photo of object storage, not a whole large file


class _FileLoader:
    """Opens a file (local or URL) for `run_images`; one file system per URL root.

    The file is opened for random access behind a read buffer, so the decoder reads only what it
    needs: a header for a file that is not an image, however large. Files are checked on the
    driver before they are sent (`_check_local_files`): opening a FIFO would block for ever."""

    def __init__(self):
        self._fs: dict = {}

    def __call__(self, path) -> io.BufferedReader:
        from anyshape.preprocess import ImageLoadError

        path = str(path)
        root = path.split("/", 3)[:3] if _is_url(path) else ["local"]
        key = "/".join(root)
        if key not in self._fs:
            self._fs[key] = _filesystem(path)[0]
        inner = path.split("://", 1)[1] if _is_url(path) else os.path.abspath(path)
        try:
            return io.BufferedReader(self._fs[key].open_input_file(inner), buffer_size=READ_BUFFER)
        except (OSError, FileNotFoundError) as e:
            raise ImageLoadError(f"{path}: cannot be read ({e})") from None


def _check_local_files(paths: list[str]) -> tuple[list[str], list[tuple[str, str]]]:
    """(usable, refused) by the local reader's own checks (`preprocess.check_image_file`: a
    regular file, not empty), made on the driver so that no actor opens a FIFO or a device."""
    from anyshape.preprocess import ImageLoadError, check_image_file

    usable, refused = [], []
    for p in paths:
        try:
            if not _is_url(p):
                check_image_file(p)
            usable.append(p)
        except ImageLoadError as e:
            refused.append((p, str(e)))
    return usable, refused


# ---------------------------------------------------------------------------------------------
# The output folder: manifest, part files, what is done
# ---------------------------------------------------------------------------------------------


class OutputFolder:
    """The Parquet part files and manifest of one distributed run, in a local folder or a URL."""

    def __init__(self, out):
        self.out = str(out)
        self.fs, self.root = _filesystem(out)

    def _join(self, name: str) -> str:
        return f"{self.root.rstrip('/')}/{name}"

    def listing(self) -> list[str]:
        import pyarrow.fs as pafs

        info = self.fs.get_file_info(self.root)
        if info.type == pafs.FileType.NotFound:
            return []
        if info.type != pafs.FileType.Directory:
            raise ParameterError(
                "{out=*} is a file; {python:on Ray}{cli:with --ray}, {out} is a folder (local or s3://)", out=self.out
            )
        return sorted(PurePosixPath(i.path).name for i in self.fs.get_file_info(pafs.FileSelector(self.root)))

    def parts(self) -> list[str]:
        return [n for n in self.listing() if n.startswith(PART_PREFIX) and n.endswith(".parquet")]

    def read_manifest(self) -> RunManifest | None:
        import json

        if MANIFEST not in self.listing():
            return None
        with self.fs.open_input_stream(self._join(MANIFEST)) as f:
            try:
                return RunManifest.from_json(json.loads(f.read()))
            except ValueError as e:
                raise ResumeMismatch(
                    Message(
                        "{path}/{manifest} cannot be read ({error}); start again with another {out}",
                        path=self.out,
                        manifest=MANIFEST,
                        error=e,
                    )
                ) from None

    def write_bytes(self, name: str, data: bytes) -> None:
        """Write a whole file: a local file appears by an atomic rename, an S3 object on upload."""
        if _is_url(self.out):
            with self.fs.open_output_stream(self._join(name)) as f:
                f.write(data)
            return
        from anyshape.atomic_write import write_bytes_atomically

        write_bytes_atomically(os.path.join(self.root, name), data)

    def prepare(self, manifest: RunManifest, *, resume: bool) -> bool:
        """Check the folder before any work: a new run needs an empty or absent folder; a resume
        needs the same manifest. Returns whether the run is new (its manifest is then written by
        `record`, once the run has started: a run that could not start leaves nothing behind)."""
        names = self.listing()
        if names and not resume:
            what = "an anyshape run" if MANIFEST in names else f"{len(names)} file(s) that are not an anyshape run"
            raise OutputExistsError(
                "{out=*} already holds {what}; pass {resume=True} to continue that run, "
                "or choose another {out} (nothing is overwritten)",
                out=self.out,
                what=what,
            )
        if names and resume:
            recorded = self.read_manifest()
            if recorded is None:
                raise OutputExistsError(
                    "{out=*} holds files but no {manifest}: it is not an anyshape run to resume; choose another {out}",
                    out=self.out,
                    manifest=MANIFEST,
                )
            manifest.check_resume(recorded, where=self.out)
            return False
        return True

    def record(self, manifest: RunManifest) -> None:
        """Write the manifest of a new run (making the folder)."""
        if not _is_url(self.out):
            os.makedirs(self.root, exist_ok=True)
        self.write_bytes(MANIFEST, manifest.to_bytes())

    def done(self) -> dict[str, str | None]:
        """{path: error or None} of every row already written."""
        import pyarrow.parquet as pq

        rows: dict[str, str | None] = {}
        for name in self.parts():
            table = pq.read_table(self._join(name), columns=["path", "error"], filesystem=self.fs)
            for p, e in zip(table.column("path").to_pylist(), table.column("error").to_pylist()):
                rows[p] = e
        return rows

    def write_part(self, table) -> str:
        import io

        import pyarrow.parquet as pq

        buf = io.BytesIO()
        pq.write_table(table, buf)
        name = f"{PART_PREFIX}{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:12]}.parquet"
        self.write_bytes(name, buf.getvalue())
        return name


def read_output(out, columns: list[str] | None = None):
    """All rows of a distributed run's output folder as one pyarrow Table, sorted by path."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    folder = OutputFolder(out)
    tables = [pq.read_table(folder._join(n), columns=columns, filesystem=folder.fs) for n in folder.parts()]
    if not tables:
        return None
    table = pa.concat_tables(tables)
    return table.sort_by("path")


# ---------------------------------------------------------------------------------------------
# The actor: one Predictor, the local run's reader
# ---------------------------------------------------------------------------------------------


class _ImageJob:
    """Ray Data callable class: a batch of paths in, one row per path out (features or top-k)."""

    def __init__(self, predictor, reader, task: str, top: int, decode_threads: int):
        self.predictor, self.reader, self.task, self.top = predictor, reader, task, top
        self.decode_threads = decode_threads
        self.load = _FileLoader()
        self.node = _node_id()
        self.pid = os.getpid()

    def __call__(self, batch):  # a pyarrow Table (batch_format="pyarrow")
        from anyshape.engine.runs import run_images

        paths = [str(p) for p in batch.column("path").to_pylist()]
        results = {
            str(r.path): r
            for r in run_images(
                self.predictor, self.reader, paths, batch_size=len(paths), workers=self.decode_threads, load=self.load
            )
        }
        out = {
            "path": paths,
            "error": [results[p].error for p in paths],
            "_node": [self.node] * len(paths),
            "_pid": [self.pid] * len(paths),
        }
        outputs = [results[p].output for p in paths]
        if self.task == "features":
            out["features"] = [None if o is None else np.asarray(o, np.float32).ravel().tolist() for o in outputs]
        else:
            labels = [
                None
                if o is None
                else _class_labels(
                    np.asarray(o[0] if isinstance(o, list) else o)[None],
                    self.top,
                    self.predictor.preprocessing.label_offset,
                    self.predictor.class_names,
                )[0]
                for o in outputs
            ]
            out["class_ids"] = [None if row is None else [c["class_id"] for c in row] for row in labels]
            out["labels"] = [None if row is None else [c["label"] for c in row] for row in labels]
            out["scores"] = [None if row is None else [float(c["score"]) for c in row] for row in labels]
        # An Arrow table with the output schema: lists stay lists (not Ray tensors) and a failed
        # image's row holds nulls.
        import pyarrow as pa

        schema = _schema(self.task).append(pa.field("_node", pa.string())).append(pa.field("_pid", pa.int64()))
        return pa.table({name: out[name] for name in schema.names}, schema=schema)


def _node_id() -> str:
    import ray

    return ray.get_runtime_context().get_node_id()


# ---------------------------------------------------------------------------------------------
# The driver
# ---------------------------------------------------------------------------------------------


@dataclass
class DistributedSummary(RunSummary):
    """A RunSummary, plus where the rows went and which Ray nodes computed them."""

    out: str = ""
    parts: int = 0
    rows_per_node: dict = field(default_factory=dict)
    actor_pids: set = field(default_factory=set)  # the actor processes that computed rows
    actors: int = 0

    def line(self) -> str:
        nodes = f"; {len(self.rows_per_node)} node(s), {self.actors} actor(s)" if self.rows_per_node else ""
        return super().line() + nodes


def _schema(task: str):
    import pyarrow as pa

    if task == "features":
        return pa.schema([("path", pa.string()), ("features", pa.list_(pa.float32())), ("error", pa.string())])
    return pa.schema(
        [
            ("path", pa.string()),
            ("class_ids", pa.list_(pa.int32())),
            ("labels", pa.list_(pa.string())),
            ("scores", pa.list_(pa.float32())),
            ("error", pa.string()),
        ]
    )


def _start_ray(address):
    """Connect to `address` ("auto", "ray://host:port", host:port) or start a local Ray; returns
    whether this call started it (and so must stop it)."""
    import ray

    if ray.is_initialized():
        return False
    if address in (None, "", "local"):
        ray.init(include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR)
    else:
        ray.init(address=address, log_to_driver=False, logging_level=logging.ERROR)
    return True


def _actor_count(cpus_per_actor: float, actors: int | None) -> int:
    import ray

    if actors is not None:
        if actors < 1:
            raise ValueError(f"actors must be >= 1, got {actors}")
        return actors
    cpus = ray.cluster_resources().get("CPU", 1)
    return max(1, int(cpus // cpus_per_actor))


@dataclass(frozen=True)
class RayJob:
    """How a Ray run goes: the keyword arguments `features` and `predict` share.

    size, upscale, max_pixels, batch_size: as for the local run (`engine.extract_features`).
    options: what the run computes, for the manifest (model, weights, layer, pooling, ...).
    address: None starts a local Ray in this process (and stops it at the end); "auto" or
        "ray://host:10001" joins an existing cluster (`RAY_ADDRESS` works too with "auto").
    cpus_per_actor, actors: cores per actor and the number of actors (default: as many as the
        cluster's CPUs allow).
    resume: continue the run in `out` (its manifest must match); rows_per_part: rows per
        Parquet part file; progress: Ray Data's progress bars; on_part(summary, table): called
        after each part file is written.
    """

    size: object = None
    upscale: bool = False
    max_pixels: int | None = None
    batch_size: int = 16
    options: dict | None = None
    address: str | None = None
    cpus_per_actor: float = 1
    actors: int | None = None
    resume: bool = False
    rows_per_part: int = 1024
    progress: bool = False
    on_part: Callable[[DistributedSummary, object], None] | None = None


def _run(task: str, predictor, paths, out, job: RayJob, top: int = 5) -> DistributedSummary:
    _check_job(predictor, job.cpus_per_actor, top)
    make = feature_reader if task == "features" else make_reader
    reader = make(predictor, job.size, upscale=job.upscale, max_pixels=job.max_pixels)
    manifest = run_manifest(predictor, reader, {"task": task, **(job.options or {})})
    files, missing = list_inputs(paths)
    # every row names its file in a Parquet string column (and in its error), which is UTF-8 only
    refuse_non_utf8(
        [*files, *(p for p, _ in missing)],
        "the Parquet rows of a Ray run",
        Message("or run {python:on one machine}{cli:without --ray} (.npz, .npy, json and csv keep any name)"),
    )
    folder = OutputFolder(out)
    new = folder.prepare(manifest, resume=job.resume)  # refuses before any work
    done = folder.done()
    done_keys = {_key(p) for p in done}
    todo = [p for p in files if _key(p) not in done_keys]
    summary = DistributedSummary(
        total=len(files) + len(missing),
        skipped=len(files) - len(todo),
        out=str(out),
        engine=predictor.engine,
        precision=predictor.precision,
    )
    summary.failed.extend((p, e) for p, e in done.items() if e is not None)
    todo, refused = _check_local_files(todo)
    parts = _PartWriter(task, folder, summary, done_keys, job.rows_per_part, job.on_part)
    start = time.perf_counter()
    started = False
    try:
        if todo:
            started = _start_ray(job.address)
        if new:
            folder.record(manifest)
        for p, why in missing:
            parts.add({"path": p, "error": f"{p}: {why}"})
        for p, error in refused:
            parts.add({"path": p, "error": error})
        if todo:
            for row in _ray_rows(predictor, reader, todo, task, top, job, summary):
                summary.rows_per_node[row["_node"]] = summary.rows_per_node.get(row["_node"], 0) + 1
                summary.actor_pids.add(int(row["_pid"]))
                parts.add(_plain(row))
        parts.flush()
    except KeyboardInterrupt:
        parts.flush()
        summary.seconds = time.perf_counter() - start
        raise RunInterrupted(None, summary) from None
    finally:
        summary.seconds = time.perf_counter() - start
        if started:
            import ray

            ray.shutdown()
    return summary


def check_ray_installed() -> None:
    """Refuse, naming the extra to install, when Ray Data cannot be imported."""
    from anyshape.engine.predictor import MissingExtra, missing_extra

    reason = missing_extra("ray.data", "ray")
    if reason is not None:
        raise MissingExtra(f"the Ray job cannot run: {reason}")


def _check_job(predictor, cpus_per_actor: float, top: int) -> None:
    check_ray_installed()
    if cpus_per_actor <= 0:
        raise ValueError(f"cpus_per_actor must be > 0, got {cpus_per_actor}")
    if top < 1:
        raise ValueError(f"top must be >= 1, got {top}")
    if predictor.engine == "keras":
        raise ValueError(
            f"the Ray job runs the ONNX engines only (the Keras engine cannot be sent to Ray actors): "
            f"{predictor.fallback_reason or 'install anyshape[fast]'}"
        )


class _PartWriter:
    """Rows into whole Parquet part files, each path once: a retried task's second answer, or a
    path a part file already holds, is dropped (the first one stands)."""

    def __init__(
        self, task: str, folder: OutputFolder, summary: DistributedSummary, written: set, rows_per_part, on_part
    ):
        self.task, self.folder, self.summary = task, folder, summary
        self.written = set(written)
        self.rows_per_part, self.on_part = rows_per_part, on_part
        self.pending: list[dict] = []

    def add(self, row: dict) -> None:
        key = _key(row["path"])
        if key in self.written:
            return
        self.written.add(key)
        self.pending.append({k: v for k, v in row.items() if not k.startswith("_")})
        if row["error"] is not None:
            self.summary.failed.append((row["path"], row["error"]))
        else:
            self.summary.ok += 1
        if len(self.pending) >= self.rows_per_part:
            self.flush()

    def flush(self) -> None:
        import pyarrow as pa

        if not self.pending:
            return
        table = pa.Table.from_pylist(self.pending, schema=_schema(self.task))
        self.folder.write_part(table)
        self.summary.parts += 1
        self.pending.clear()
        if self.on_part is not None:
            self.on_part(self.summary, table)


def _ray_rows(predictor, reader, todo, task: str, top: int, job: RayJob, summary: DistributedSummary):
    """The rows of `todo` computed by a pool of `_ImageJob` actors on Ray Data, as they come."""
    import ray.data

    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = ctx.print_on_execution_start = job.progress
    batch_size, cpus_per_actor = job.batch_size, job.cpus_per_actor
    n_actors = _actor_count(cpus_per_actor, job.actors)
    blocks = max(1, min(len(todo), 4 * n_actors, (len(todo) + batch_size - 1) // batch_size))
    n_actors = summary.actors = min(n_actors, blocks)  # an actor without a block would idle
    worker = type(predictor)(
        predictor.graph_model,
        engine=predictor.engine,
        precision=predictor.precision,
        threads=max(1, int(cpus_per_actor)),
    )
    items = ray.data.from_items([{"path": p} for p in todo], override_num_blocks=blocks)
    ds = items.map_batches(
        _ImageJob,
        batch_size=batch_size,
        batch_format="pyarrow",
        compute=ray.data.ActorPoolStrategy(size=n_actors),
        # Ray Data restarts a dead actor and retries its tasks by default (max_restarts=-1,
        # max_task_retries=-1: ray/data/_internal/execution/operators/actor_pool_map_operator.py)
        num_cpus=cpus_per_actor,
        fn_constructor_kwargs=dict(
            predictor=worker, reader=reader, task=task, top=top, decode_threads=max(2, int(cpus_per_actor))
        ),
    )
    with _quiet_ray_data():
        yield from ds.iter_rows()


@contextlib.contextmanager
def _quiet_ray_data():
    """Ray Data's console lines ("Progress bars disabled", "Dataset ... execution finished") off
    the user's terminal while the run goes, errors still shown; they stay in Ray's log files."""
    handlers = [
        h
        for h in logging.getLogger("ray.data").handlers
        if isinstance(h, logging.StreamHandler) and not isinstance(h, logging.FileHandler)
    ]
    levels = [h.level for h in handlers]
    for h in handlers:
        h.setLevel(max(h.level, logging.ERROR))
    try:
        yield
    finally:
        for h, level in zip(handlers, levels):
            h.setLevel(level)


def _key(path: str) -> str:
    return str(path) if _is_url(path) else path_key(path)


def _plain(row: dict) -> dict:
    """A row from Ray as plain Python values (numpy arrays -> lists)."""
    out = {}
    for k, v in row.items():
        if isinstance(v, np.ndarray):
            v = v.tolist() if v.dtype != object else list(v)
        elif isinstance(v, np.generic):
            v = v.item()
        out[k] = v
    return out


def features(predictor, paths, out, **job) -> DistributedSummary:
    """`engine.extract_features` on a Ray cluster: one Parquet row (path, features, error) per input
    in the folder `out` (local or a URL), resumable with `resume=True`.

    predictor: an `engine.Predictor` on a feature model (`engine.feature_model`), built by the
        caller as for the local run; it is sent to the actors as its ONNX graph.
    job: the keyword arguments of `RayJob` (size, upscale, max_pixels, batch_size, options,
        address, cpus_per_actor, actors, resume, rows_per_part, progress, on_part).
    """
    return _run("features", predictor, paths, out, RayJob(**job))


def predict(predictor, paths, out, *, top: int = 5, **job) -> DistributedSummary:
    """`engine.predict_paths` on a Ray cluster: one Parquet row (path, class_ids, labels, scores,
    error) per input, the top `top` classes by score, in the folder `out`. See `features`."""
    ray_job = RayJob(**job)
    ray_job = replace(ray_job, options={"top": top, **(ray_job.options or {})})
    return _run("predict", predictor, paths, out, ray_job, top=top)
