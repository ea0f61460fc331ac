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

Here: the actor and the driver. The inputs (listing, checking, opening) are
`anyshape.ray_inputs`'; the output folder (manifest, part files) is `anyshape.ray_output`'s.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import numpy as np

from anyshape.engine.feature_store import refuse_non_utf8
from anyshape.engine.runs import (
    RunInterrupted,
    RunSummary,
    _class_labels,
    feature_reader,
    make_reader,
    run_manifest,
)
from anyshape.errors import Message
from anyshape.ray_inputs import FileLoader, check_local_files, list_inputs, path_id
from anyshape.ray_output import OutputFolder, PartWriter, part_schema, read_output

# the names the tests reach (a retried task's second row is dropped by the part writer)
_PartWriter, _key = PartWriter, path_id

__all__ = ["features", "predict", "DistributedSummary", "read_output"]


# ---------------------------------------------------------------------------------------------
# The actor: one Predictor, the local run's reader
# ---------------------------------------------------------------------------------------------


class _ImageJob:
    """Ray Data callable class: a batch of paths in, one row per path out (features or top-k)."""

    def __init__(self, predictor, reader, task: str, top: int, decode_threads: int):
        self.predictor, self.reader, self.task, self.top = predictor, reader, task, top
        self.decode_threads = decode_threads
        self.load = FileLoader()
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

        schema = part_schema(self.task).append(pa.field("_node", pa.string())).append(pa.field("_pid", pa.int64()))
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
    done_keys = {path_id(p) for p in done}
    todo = [p for p in files if path_id(p) not in done_keys]
    summary = DistributedSummary(
        total=len(files) + len(missing),
        skipped=len(files) - len(todo),
        out=str(out),
        engine=predictor.engine,
        precision=predictor.precision_text,
    )
    summary.failed.extend((p, e) for p, e in done.items() if e is not None)
    todo, refused = check_local_files(todo)
    parts = PartWriter(task, folder, summary, done_keys, job.rows_per_part, job.on_part)
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
