"""Runs over many images, as the `predict` and `features` commands do them."""

from __future__ import annotations

import functools
import json
import sys
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import numpy as np

from anyshape.engine.feature_store import FeatureStore
from anyshape.engine.images import ImageReader, ImageTooSmall, find_images, parse_size, path_key
from anyshape.engine.manifest import RunManifest, weights_digest
from anyshape.engine.predictor import Predictor, _cores
from anyshape.errors import Message, ParameterError, message_of
from anyshape.interrupts import raise_if_interrupted


@dataclass
class ImageResult:
    path: Path
    output: object = None  # numpy array (or list of arrays) for this one image
    error: str | None = None


def run_images(
    predictor: Predictor,
    reader: ImageReader,
    paths: Sequence,
    *,
    batch_size: int = 16,
    workers: int | None = None,
    on_batch: Callable[[list[ImageResult]], None] | None = None,
    load: Callable[[object], BinaryIO] | None = None,
) -> Iterator[ImageResult]:
    """Yield one `ImageResult` per path (in completion order, not input order).

    Images are decoded on a thread pool `workers` wide, `2 * batch_size` ahead of the engine;
    decoded images of the same shape are grouped into batches of up to `batch_size`. A file
    that cannot be used gives a result with `error` (path and reason) and no output.
    `load(path)` opens a file as a seekable binary file when the reader cannot open paths
    itself (object storage; it raises ImageLoadError for a file that cannot be opened); the
    decoder reads only what it needs of it, and it is closed after. Results carry the paths as
    given. An output holding NaN or Inf is an error, not a result.
    """
    paths = list(paths)
    workers = workers or min(4, max(2, _cores()))
    lookahead = max(2 * batch_size, 2 * workers)
    pending: dict[tuple, list[tuple[Path, np.ndarray]]] = {}

    read = functools.partial(_read_one, reader, load)
    run = functools.partial(_run_groups, predictor, on_batch)

    with ThreadPoolExecutor(workers, thread_name_prefix="anyshape-decode") as pool:
        queue: deque = deque()
        it = iter(paths)
        for p in it:
            queue.append(pool.submit(read, p))
            if len(queue) >= lookahead:
                break
        since_flush = 0
        while queue:
            path, x, error = queue.popleft().result()
            nxt = next(it, None)
            if nxt is not None:
                queue.append(pool.submit(read, nxt))
            if error is not None:
                yield ImageResult(path, None, error)
                continue
            group = pending.setdefault(x.shape, [])
            group.append((path, x))
            since_flush += 1
            if len(group) >= batch_size:
                del pending[x.shape]
                yield from run(group)
            if since_flush >= lookahead or not queue:
                # Images of rarer shapes do not wait for ever (and memory stays bounded).
                # Groups of different shapes run side by side, one per core.
                yield from run(*(pending.pop(shape) for shape in list(pending)))
                since_flush = 0
        yield from run(*(pending.pop(shape) for shape in list(pending)))


def _read_one(reader: ImageReader, load, path) -> tuple:
    """(path, model input or None, error or None) for one file of `run_images`."""
    from anyshape.preprocess import ImageLoadError

    # Only what is wrong with the file becomes its result (load_image turns every decoder
    # error into ImageLoadError); any other exception is a bug and stops the run, instead
    # of being reported as N unreadable files.
    try:
        if load is None:
            return path, reader.read(path), None
        with load(path) as data:
            return path, reader.read(path, data), None
    except (ImageLoadError, ImageTooSmall) as e:
        return path, None, message_of(e)
    except MemoryError:
        return path, None, f"{path}: out of memory while decoding"


def _run_groups(predictor: Predictor, on_batch, *groups) -> list[ImageResult]:
    """Run batches of same-shape inputs ([(path, input)] each) at once; one result per image."""
    raise_if_interrupted()  # a Ctrl-C swallowed since the last batch stops the run here
    outs = predictor.run_many([np.stack([x for _, x in group]) for group in groups])
    results = []
    for group, out in zip(groups, outs):
        for i, (p, _) in enumerate(group):
            o = [a[i] for a in out] if isinstance(out, list) else out[i]
            if all(np.isfinite(a).all() for a in (o if isinstance(o, list) else [o])):
                results.append(ImageResult(p, o))
            else:  # not a result: NaN scores would rank as anything, and NaN is not JSON
                why = "the model's output for this image holds NaN or Inf (its weights hold them, or it overflowed)"
                results.append(ImageResult(p, None, f"{p}: {why}; the result is not usable"))
    if on_batch is not None and results:
        on_batch(results)
    return results


class Progress:
    """A one-line progress bar with images/s on stderr; silent unless `enabled`."""

    def __init__(self, total: int, enabled: bool, stream=None, label: str = "images"):
        self.total, self.enabled, self.stream, self.label = total, enabled, stream or sys.stderr, label
        self.done = self.failed = 0
        self.start = time.perf_counter()
        self._last = 0.0

    def update(self, n: int = 1, failed: int = 0) -> None:
        self.done += n
        self.failed += failed
        now = time.perf_counter()
        if self.enabled and (now - self._last > 0.2 or self.done >= self.total):
            self._last = now
            rate = self.done / max(now - self.start, 1e-9)
            width = 30
            filled = int(width * self.done / max(self.total, 1))
            bad = f", {self.failed} failed" if self.failed else ""
            self.stream.write(
                f"\r[{'#' * filled}{'.' * (width - filled)}] {self.done}/{self.total} "
                f"{self.label}{bad}  {rate:.1f} img/s"
            )
            self.stream.flush()

    def close(self) -> None:
        if self.enabled:
            self.stream.write("\n")
            self.stream.flush()


@dataclass
class RunSummary:
    """What a run over many files did: counts, failures with reasons, time."""

    total: int = 0
    ok: int = 0
    failed: list = field(default_factory=list)  # (path, reason)
    skipped: int = 0  # already in the output (resume)
    seconds: float = 0.0
    engine: str = ""  # what ran: engine and precision (Predictor.engine, Predictor.precision)
    precision: str = ""

    @property
    def exit_code(self) -> int:
        return 1 if self.failed else 0

    def line(self) -> str:
        rate = self.ok / self.seconds if self.seconds > 0 else 0.0
        parts = [f"{self.total} file(s): {self.ok} ok", f"{len(self.failed)} failed"]
        if self.skipped:
            parts.append(f"{self.skipped} already done (resumed)")
        ran = f" [{self.engine} {self.precision}]" if self.engine else ""
        return ", ".join(parts) + f" in {self.seconds:.1f} s ({rate:.1f} images/s){ran}"


def check_size(size, *, aux_logits: bool = False, arch=None, **options):
    """`parse_size(size)`, refusing a fixed size the network cannot take with `anyshape.explain`'s
    reason, before any model is built or image read. `arch` (default InceptionV3) and `options`
    (the network's build arguments, e.g. alpha=0.25) say which network."""
    from anyshape.archs import DEFAULT_ARCH
    from anyshape.shapes import InvalidInputShape, explain

    size = parse_size(size)
    if size != "native":
        if aux_logits:
            options["aux_logits"] = True
        report = explain((size[0], size[1], 3), arch=arch or DEFAULT_ARCH, **options)
        if not report.valid:
            raise InvalidInputShape(Message("{size=*}: {reason}", size=f"{size[0]},{size[1]}", reason=report.reason()))
    return size


def check_model_size(model, size):
    """`parse_size(size)`, refusing a fixed size below the minimum of `model` (a Predictor or
    GraphModel: the rule of its own network, from its `min_size`)."""
    from anyshape.shapes import InvalidInputShape

    size = parse_size(size)
    if size != "native" and min(size) < model.min_size:
        name = getattr(model, "architecture", None)
        if name is not None:
            from anyshape.archs import get_arch

            name = get_arch(name).keras_name
        raise InvalidInputShape(
            Message(
                "{size=*}: {name} needs images of at least {min_size} px "
                "per side (below it its feature map would vanish); pass {size=@min_size} or more",
                size=f"{size[0]},{size[1]}",
                name=name or "the model",
                min_size=model.min_size,
            )
        )
    return size


class RunInterrupted(KeyboardInterrupt):
    """Ctrl-C during a run: carries what was done before it (`rows`, `summary`)."""

    def __init__(self, rows=None, summary=None):
        super().__init__()
        self.rows, self.summary = rows, summary


def default_size(predictor: Predictor, size=None):
    """The size policy: the given one, else the model's fixed size, else "native"."""
    if size is not None:
        size = check_model_size(predictor, size)
        if size != "native" and predictor.fixed_hw is not None and tuple(size) != tuple(predictor.fixed_hw):
            raise ParameterError(
                "the model takes {h}x{w} images only; {size=*} cannot be used with it (build it with a free size)",
                h=predictor.fixed_hw[0],
                w=predictor.fixed_hw[1],
                size=f"{size[0]},{size[1]}",
            )
        if size == "native" and predictor.fixed_hw is not None:
            raise ParameterError(
                "the model takes {h}x{w} images only; {size='native'} needs a model built with a free input size",
                h=predictor.fixed_hw[0],
                w=predictor.fixed_hw[1],
            )
        return size
    return predictor.fixed_hw if predictor.fixed_hw is not None else "native"


def feature_reader(
    predictor: Predictor, size=None, *, upscale: bool = False, max_pixels: int | None = None
) -> ImageReader:
    """`make_reader` for a features run, refusing what cannot give one row per image: unpooled
    maps of images at their native sizes differ in shape."""
    reader = make_reader(predictor, size, upscale=upscale, max_pixels=max_pixels)
    if predictor.output_rank > 2 and reader.size == "native":
        raise ParameterError(
            "unpooled feature maps ({pooling=None}) of images at their native sizes differ in shape and "
            "cannot share one output: pass {size=N} (or H,W), or pool them with {pooling='avg'} or 'max'",
            parameter="size",
        )
    return reader


def make_reader(
    predictor: Predictor, size=None, *, upscale: bool = False, max_pixels: int | None = None
) -> ImageReader:
    return ImageReader.for_model(predictor, size=default_size(predictor, size), upscale=upscale, max_pixels=max_pixels)


def _class_labels(scores: np.ndarray, top: int, label_offset, names: list | None = None) -> list[list[dict]]:
    n = scores.shape[1]
    if names is not None and len(names) != n:
        names = None
    if names is None and n in (1000, 1001):
        from anyshape.labels import decode_predictions

        offset = label_offset if label_offset != "auto" else (1 if n == 1001 else 0)
        decoded = decode_predictions(scores, top=min(top, 1000), label_offset=offset)
        return [
            [
                {"rank": k + 1, "class_id": int(i), "wnid": wnid, "label": name, "score": score}
                for k, (i, (wnid, name, score)) in enumerate(zip(np.argsort(-s[offset:], kind="stable"), row))
            ]
            for s, row in zip(scores, decoded)
        ]
    return [
        [
            {
                "rank": k + 1,
                "class_id": int(i),
                "wnid": "",
                "label": str(names[i]) if names else f"class_{int(i)}",
                "score": float(s[i]),
            }
            for k, i in enumerate(np.argsort(-s, kind="stable")[:top])
        ]
        for s in scores
    ]


def predict_paths(
    predictor: Predictor,
    paths: Iterable,
    *,
    size=None,
    top: int = 5,
    upscale: bool = False,
    batch_size: int = 16,
    max_pixels: int | None = None,
    progress: bool = False,
) -> tuple[list[dict], RunSummary]:
    """Classify every image under `paths`: rows {"path", "predictions": [{rank, class_id, wnid,
    label, score}], "error"} in the order the files were found, and the run's summary."""
    if top < 1:
        raise ValueError(f"top must be >= 1, got {top}")
    reader = make_reader(predictor, size, upscale=upscale, max_pixels=max_pixels)
    files, missing = find_images(paths)
    summary = RunSummary(total=len(files) + len(missing), engine=predictor.engine, precision=predictor.precision_text)
    summary.failed.extend((str(p), f"{p}: {why}") for p, why in missing)
    rows: dict[str, dict] = {
        str(p): {"path": str(p), "predictions": None, "error": f"{p}: {why}"} for p, why in missing
    }
    bar = Progress(len(files), progress)
    start = time.perf_counter()
    order = [str(p) for p, _ in missing] + [str(p) for p in files]
    try:
        for r in run_images(predictor, reader, files, batch_size=batch_size):
            if r.error is not None:
                summary.failed.append((str(r.path), r.error))
                rows[str(r.path)] = {"path": str(r.path), "predictions": None, "error": r.error}
                bar.update(1, failed=1)
                continue
            scores = r.output[0] if isinstance(r.output, list) else r.output
            rows[str(r.path)] = {
                "path": str(r.path),
                "predictions": _class_labels(
                    np.asarray(scores)[None], top, predictor.preprocessing.label_offset, predictor.class_names
                )[0],
                "error": None,
            }
            summary.ok += 1
            bar.update(1)
    except KeyboardInterrupt:  # the rows classified so far are not lost: the caller gets them
        bar.close()
        summary.seconds = time.perf_counter() - start
        raise RunInterrupted([rows[p] for p in order if p in rows], summary) from None
    bar.close()
    summary.seconds = time.perf_counter() - start
    return [rows[p] for p in order], summary


def format_predictions(rows: list[dict], fmt: str = "table") -> str:
    """Render `predict_paths` rows as "table" (for people), "json" or "csv" (one row per class).

    Every format gives back any file name: json escapes it (bytes that are not UTF-8 are held,
    as Python holds them in a path, as surrogate escapes, `\\udc80`-`\\udcff`: `json.loads`
    then `os.fsencode` returns the bytes); csv quotes a name with a comma, quote, CR or LF; the
    table shows a name that would not read back as one line of its own (a control character,
    bytes that are not UTF-8, a leading quote or space) as a JSON string. Write the text with
    `os.fsencode` (the CLI does), so that a name's undecodable bytes go out unchanged.
    """
    import csv
    import io

    if fmt == "json":
        return json.dumps(rows, indent=2, allow_nan=False)
    if fmt == "csv":
        buf = io.StringIO()
        plain = csv.writer(buf, lineterminator="\n")
        # Python's writer quotes a field holding the line terminator's characters but not a bare
        # CR, which ends the row for most readers: such rows are written with every field quoted
        quoted = csv.writer(buf, lineterminator="\n", quoting=csv.QUOTE_ALL)

        def write(fields: list) -> None:
            (quoted if any("\r" in str(f) for f in fields) else plain).writerow(fields)

        write(["path", "rank", "class_id", "wnid", "label", "score", "error"])
        for row in rows:
            if row["error"]:
                write([row["path"], "", "", "", "", "", row["error"]])
                continue
            for p in row["predictions"]:
                write([row["path"], p["rank"], p["class_id"], p["wnid"], p["label"], f"{p['score']:.6f}", ""])
        return buf.getvalue()
    if fmt != "table":
        raise ValueError(f"format must be table, json or csv, got {fmt!r}")
    lines = []
    for row in rows:
        if row["error"]:
            continue  # the table is for the images that ran; failures go to stderr with the summary
        path = row["path"]
        lines.append(path if path.isprintable() and not path.startswith(('"', " ")) else json.dumps(path))
        for p in row["predictions"]:
            lines.append(f"  {p['rank']:>2}. {p['label']:<28} {p['score']:8.4f}  ({p['wnid'] or p['class_id']})")
    return "\n".join(lines) + ("\n" if lines else "")


def run_manifest(predictor: Predictor, reader: ImageReader, options: dict | None = None) -> RunManifest:
    """What a run with `predictor` and `reader` computes: the caller's `options` (task, model,
    weights, layer, ...) plus what the predictor and reader decide (size, input shape, data
    format, preprocessing, precision, output shape), and the digest of the model's weights."""
    import dataclasses

    model = predictor.model
    size = reader.size if reader.size == "native" else list(reader.size)
    hw = list(predictor.fixed_hw) if predictor.fixed_hw else [None, None]
    recorded = {
        "size": size,
        "upscale": bool(reader.upscale),
        # a Keras model's own shapes; a model file (GraphModel) records what its metadata says
        "input_shape": list(model.inputs[0].shape[1:])
        if model is not None
        else ([predictor.channels, *hw] if predictor.data_format == "channels_first" else [*hw, predictor.channels]),
        "output_shape": list(model.outputs[0].shape[1:]) if model is not None else f"rank {predictor.output_rank}",
        "data_format": predictor.data_format,
        "preprocessing": dataclasses.asdict(predictor.preprocessing),
        "engine": predictor.engine,
        "precision": predictor.precision,
    }
    recorded.update(options or {})
    return RunManifest(
        json.loads(json.dumps(recorded)), weights_digest(model if model is not None else predictor.graph_model)
    )


def extract_features(
    predictor: Predictor,
    paths: Iterable,
    out,
    *,
    size=None,
    upscale: bool = False,
    resume: bool = False,
    force: bool = False,
    batch_size: int = 16,
    max_pixels: int | None = None,
    progress: bool = False,
    options: dict | None = None,
) -> RunSummary:
    """Write one row (path, features) per readable image under `paths` to `out` (see FeatureStore).

    `predictor` wraps a feature model (see `feature_model`). Interrupting the run (Ctrl-C, a
    crash) leaves `<out>.partial/`; calling again with `resume=True` computes only the images not
    in it, after checking, before any work, that it computes what the interrupted run did
    (`run_manifest`: `options` such as the layer and weights, the size, the model's weights
    digest; else `ResumeMismatch`). `out` appears only when the run ends, written atomically.
    Files under `paths` that the run itself writes (`out`, its checkpoint folder) are skipped.
    """
    FeatureStore.check_output(out, resume=resume, force=force)
    reader = feature_reader(predictor, size, upscale=upscale, max_pixels=max_pixels)
    files, missing = find_images(paths)
    FeatureStore.check_names(out, files)
    store = FeatureStore(  # holds a lock on its checkpoint folder until closed below
        out,
        resume=resume,
        force=force,
        manifest=run_manifest(predictor, reader, {"task": "features", **(options or {})}),
    )
    files = [p for p in files if not store.owns(p)]
    todo = [p for p in files if path_key(p) not in store.done]
    summary = RunSummary(
        total=len(files) + len(missing),
        skipped=len(files) - len(todo),
        engine=predictor.engine,
        precision=predictor.precision,
    )
    summary.failed.extend((str(p), f"{p}: {why}") for p, why in missing)
    bar = Progress(len(todo), progress)
    start = time.perf_counter()

    try:
        for r in run_images(predictor, reader, todo, batch_size=batch_size, on_batch=store.add):
            if r.error is not None:
                summary.failed.append((str(r.path), r.error))
                bar.update(1, failed=1)
            else:
                summary.ok += 1
                bar.update(1)
        store.finish()
    except KeyboardInterrupt:
        raise RunInterrupted(None, summary) from None
    finally:
        bar.close()
        summary.seconds = time.perf_counter() - start
        store.close()
    return summary
