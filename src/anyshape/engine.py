"""Fast inference: ONNX Runtime sessions made from the Keras model, and runs over image folders.

`Predictor(model)` translates a built Keras model into ONNX with `anyshape.onnx_graph` (dynamic
batch, height and width; no TensorFlow or tf2onnx needed) and runs it with ONNX Runtime. Its
outputs equal the Keras model's to float32 rounding (tests check <= 1e-4 max abs). Without
onnxruntime (or for a layer the emitter does not know) it runs the Keras model itself.

How it is fast on a small CPU (measured by benchmarks/bench_inference.py):

* ONNX Runtime's CPU kernels (MLAS, NCHWc-blocked convolutions) beat Keras' TensorFlow path
  and torchvision eager on this model; the session runs with all graph optimisations.
* Batches are split across the cores, each piece run by a single-threaded session call in its
  own thread (`InferenceSession.run` is thread-safe and releases the GIL). One image per core
  needs no synchronisation between cores inside each layer, which a single session with
  `intra_op_num_threads=cores` must do hundreds of times per image. A batch of one runs on a
  second session that splits each layer across the cores instead. Batches of different shapes
  (photos at their native sizes) run side by side, one per core (`Predictor.run_many`):
  1.8x the rate of running them one after the other, each split across the cores, on a folder
  of 32 photos of 32 sizes around 170 px (measured 2026-11-27, 2 cores).
* One session serves every input size (dynamic H, W); ONNX Runtime plans each new shape once
  and reuses it. Images of equal shape are grouped into batches by `run_images`.

`run_images` reads, checks, resizes and preprocesses images on a thread pool while the
engine runs the previous batch, so a folder of JPEGs runs at nearly the engine's own rate.
Bad files are returned as results with an error (path and reason) and the run goes on.
"""

from __future__ import annotations

import math
import os
import sys
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Iterator, Sequence

import numpy as np

from anyshape.atomic_write import write_atomically, write_bytes_atomically
from anyshape.shapes import MIN_SIZE

__all__ = [
    "Predictor",
    "Preprocessing",
    "ImageReader",
    "ImageResult",
    "ImageTooSmall",
    "find_images",
    "run_images",
    "feature_model",
    "parse_size",
    "benchmark",
    "predict_paths",
    "format_predictions",
    "extract_features",
    "FeatureStore",
    "RunSummary",
    "Progress",
    "export_model",
    "load_or_build",
    "FEATURE_LAYERS",
]

FEATURE_LAYERS = ("avg_pool",) + tuple(f"mixed{i}" for i in range(11))
ENGINES = ("auto", "onnxruntime", "keras")


def _cores() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


# ---------------------------------------------------------------------------------------------
# Preprocessing metadata
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Preprocessing:
    """How images must be prepared for a model's weights.

    Read from the weight set the model was loaded with (`model.anyshape_weights`, set by
    `anyshape.weights`); without one, InceptionV3's Keras/TF-slim convention: pixels scaled to
    [-1, 1] ("tf"), evaluation crop 0.875 with bicubic resizing (timm's InceptionV3 config).
    """

    mode: str = "tf"
    mean: tuple | None = None
    std: tuple | None = None
    input_size: tuple | None = None  # (H, W) the weights were trained at, if known
    crop_pct: float = 0.875
    interpolation: str = "bicubic"
    label_offset: int | str = "auto"

    @classmethod
    def from_model(cls, model) -> "Preprocessing":
        run = getattr(model, "anyshape_run_info", None)
        if run:  # a model trained by `anyshape train`: its classes.json says how it was fed
            prep, resize = dict(run.get("preprocess") or {}), dict(run.get("resize") or {})
            return cls(
                mode=prep.get("mode", "tf"),
                mean=tuple(prep["mean"]) if prep.get("mean") is not None else None,
                std=tuple(prep["std"]) if prep.get("std") is not None else None,
                crop_pct=float(resize.get("crop_pct", 0.875)),
                interpolation=resize.get("interpolation", "bicubic"),
                label_offset=0,
            )
        ws = getattr(model, "anyshape_weights", None)
        if ws is None:
            return cls()
        size = getattr(ws, "input_size", None)
        if size is not None:
            size = tuple(size)
            size = size[-2:] if len(size) == 3 and size[0] in (1, 3, 4) else size[:2]
        mean, std = getattr(ws, "mean", None), getattr(ws, "std", None)
        return cls(
            mode=getattr(ws, "mode", None) or "tf",
            mean=tuple(mean) if mean is not None else None,
            std=tuple(std) if std is not None else None,
            input_size=size,
            crop_pct=float(getattr(ws, "crop_pct", None) or 0.875),
            interpolation=getattr(ws, "interpolation", None) or "bicubic",
            label_offset=getattr(ws, "label_offset", None) if getattr(ws, "label_offset", None) is not None else "auto",
        )

    def apply(self, image_hwc: np.ndarray) -> np.ndarray:
        from anyshape.preprocess import preprocess_input

        kwargs = {}
        if self.mode == "torch":
            kwargs = dict(mean=self.mean, std=self.std)
        return preprocess_input(image_hwc, "channels_last", mode=self.mode, **kwargs)


# ---------------------------------------------------------------------------------------------
# Sizes and image reading
# ---------------------------------------------------------------------------------------------


def parse_size(text) -> str | tuple[int, int]:
    """`"native"` -> "native"; `"299"` / 299 -> (299, 299); `"150,200"` -> (150, 200)."""
    if text is None or text == "native":
        return "native"
    if isinstance(text, int):
        return (text, text)
    if isinstance(text, (tuple, list)):
        h, w = (int(v) for v in text)
        return (h, w)
    parts = [p for p in str(text).replace("x", ",").split(",") if p.strip()]
    try:
        values = [int(p) for p in parts]
    except ValueError:
        values = []
    if len(values) not in (1, 2) or min(values) < 1:
        raise ValueError(f"size must be 'native', N or H,W (e.g. 299 or 150,200), got {text!r}")
    return (values[0], values[0]) if len(values) == 1 else (values[0], values[1])


class ImageTooSmall(ValueError):
    """An image below the network's minimum size, and upscaling was not asked for."""


@dataclass
class ImageReader:
    """Reads one image file into the model's input: decode, convert, size policy, preprocess.

    size: "native" keeps each image's own size (any H, W >= min_size); (H, W) resizes the
    shorter side to H/crop_pct (W/crop_pct) and takes the centre crop (timm's evaluation
    transform, `preprocess.resize_shorter_and_center_crop`), with the weights' crop_pct and
    interpolation. Images whose shorter side is below `min_size` (75 px, where InceptionV3's
    feature map would collapse) are refused unless `upscale`, which enlarges them first so the
    shorter side is `min_size`.

    Channel rule (`preprocess.load_image`): 3 channels: gray is replicated, alpha dropped,
    palette/CMYK converted, 16-bit scaled to 0..255; 1 channel: luminance; 4: RGBA. EXIF
    orientation is applied. Images over `max_pixels` are refused (decompression bomb).
    """

    channels: int = 3
    size: str | tuple = "native"
    preprocessing: Preprocessing = field(default_factory=Preprocessing)
    upscale: bool = False
    min_size: int = MIN_SIZE
    max_pixels: int | None = None
    data_format: str = "channels_last"

    def read(self, path) -> np.ndarray:
        from anyshape import preprocess

        kwargs = {} if self.max_pixels is None else {"max_pixels": self.max_pixels}
        image = preprocess.load_image(path, self.channels, **kwargs)
        h, w = image.shape[:2]
        shorter = min(h, w)
        if shorter < self.min_size:
            if not self.upscale:
                raise ImageTooSmall(
                    f"{path}: {h}x{w} px is below InceptionV3's minimum of {self.min_size} px per side "
                    f"(its feature map would vanish); pass --upscale (upscale=True) to enlarge such images"
                )
            scale = self.min_size / shorter
            image = preprocess.resize(image, (max(self.min_size, math.ceil(h * scale)),
                                              max(self.min_size, math.ceil(w * scale))),
                                      self.preprocessing.interpolation)
        if self.size != "native":
            image = self._fixed(image)
        x = self.preprocessing.apply(image)
        if self.data_format == "channels_first":
            x = np.ascontiguousarray(np.transpose(x, (2, 0, 1)))
        return x

    def _fixed(self, image: np.ndarray) -> np.ndarray:
        from anyshape import preprocess

        # Resize in uint8, Pillow's 8-bit path as timm/torchvision do (exact for 8-bit files;
        # 16-bit files lose less than half a level).
        image = np.clip(np.rint(image), 0, 255).astype(np.uint8)
        out = preprocess.resize_shorter_and_center_crop(
            image, self.size, self.preprocessing.crop_pct, self.preprocessing.interpolation
        )
        return out.astype(np.float32)


def find_images(paths: Iterable) -> tuple[list[Path], list[tuple[Path, str]]]:
    """Expand files and folders (recursively, sorted, hidden files skipped).

    Returns (files, missing) where missing lists (path, reason) for arguments that do not exist.
    """
    files: list[Path] = []
    missing: list[tuple[Path, str]] = []
    seen = set()
    for p in map(Path, paths):
        if p.is_dir():
            found = sorted(
                q for q in p.rglob("*")
                if q.is_file() and not any(part.startswith(".") for part in q.relative_to(p).parts)
            )
        elif p.exists():
            found = [p]
        else:
            missing.append((p, "no such file or folder"))
            continue
        for q in found:
            key = os.path.abspath(q)
            if key not in seen:
                seen.add(key)
                files.append(q)
    return files, missing


# ---------------------------------------------------------------------------------------------
# The predictor
# ---------------------------------------------------------------------------------------------


def _input_data_format(model) -> str:
    from anyshape.onnx_graph import _input_data_format as fmt

    return fmt(model)


class Predictor:
    """Runs a Keras model fast: ONNX Runtime when available, Keras otherwise.

    Args:
        model: a built `keras.Model` (anyshape's InceptionV3, a feature model from
            `feature_model`, keras.applications' InceptionV3, ...).
        engine: "auto" (ONNX Runtime when installed and the model translates, else Keras),
            "onnxruntime" (raise if it cannot be used) or "keras".
        threads: cores to use (default: the cores this process may run on).

    Call it on a preprocessed float32 batch in the model's data format; it returns a numpy
    array (or a list for several outputs), like `model.predict_on_batch`.
    """

    def __init__(self, model, *, engine: str = "auto", threads: int | None = None):
        if engine not in ENGINES:
            raise ValueError(f"engine must be one of {ENGINES}, got {engine!r}")
        self.model = model
        self.threads = threads or _cores()
        self.data_format = _input_data_format(model)
        self.preprocessing = Preprocessing.from_model(model)
        run = getattr(model, "anyshape_run_info", None) or {}
        self.class_names = list(run["classes"]) if run.get("classes") else None
        shape = tuple(model.inputs[0].shape[1:])
        self.channels = shape[0] if self.data_format == "channels_first" else shape[-1]
        hw = shape[1:] if self.data_format == "channels_first" else shape[:2]
        self.fixed_hw = tuple(hw) if all(d is not None for d in hw) else None
        self.fallback_reason = None
        self._single = self._shared = None
        self._pool = None
        self.engine = "keras"
        if engine != "keras":
            try:
                self._start_onnxruntime()
                self.engine = "onnxruntime"
            except ImportError as e:
                self.fallback_reason = f"onnxruntime or onnx is not installed ({e}); pip install 'anyshape[fast]'"
            except NotImplementedError as e:
                self.fallback_reason = f"the model cannot be translated to ONNX: {e}"
            if self.engine != "onnxruntime" and engine == "onnxruntime":
                raise RuntimeError(f"engine='onnxruntime' unavailable: {self.fallback_reason}")

    def _start_onnxruntime(self) -> None:
        import onnxruntime as ort  # noqa: F401 (ImportError -> Keras fallback)

        from anyshape.onnx_graph import keras_to_onnx

        self.onnx_model = keras_to_onnx(self.model)
        data = self.onnx_model.SerializeToString()
        self._single = self._session(data, self.threads)
        self._shared = self._session(data, 1) if self.threads > 1 else self._single
        if self.threads > 1:
            self._pool = ThreadPoolExecutor(self.threads, thread_name_prefix="anyshape-engine")
        self._outputs = [o.name for o in self._single.get_outputs()]

    @staticmethod
    def _session(data: bytes, threads: int):
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.log_severity_level = 3
        return ort.InferenceSession(data, options, providers=["CPUExecutionProvider"])

    @classmethod
    def from_config(cls, *, engine: str = "auto", threads: int | None = None, **inception_v3_kwargs) -> "Predictor":
        """Build `anyshape.InceptionV3(**inception_v3_kwargs)` and wrap it."""
        from anyshape.inception_v3 import InceptionV3

        return cls(InceptionV3(**inception_v3_kwargs), engine=engine, threads=threads)

    def __call__(self, batch: np.ndarray):
        batch = np.ascontiguousarray(batch, dtype=np.float32)
        if self.engine == "keras":
            out = self.model.predict_on_batch(batch)
            return [np.asarray(o) for o in out] if isinstance(out, (list, tuple)) else np.asarray(out)
        n = batch.shape[0]
        if n <= 1 or self._pool is None:
            outs = self._single.run(self._outputs, {"input": batch})
        else:
            pieces = np.array_split(np.arange(n), min(self.threads, n))
            futures = [
                self._pool.submit(self._shared.run, self._outputs, {"input": batch[p[0] : p[-1] + 1]})
                for p in pieces
            ]
            parts = [f.result() for f in futures]
            outs = [np.concatenate([p[i] for p in parts]) for i in range(len(self._outputs))]
        return outs[0] if len(outs) == 1 else outs

    predict_on_batch = __call__

    def run_many(self, batches: list) -> list:
        """Run several batches (of different shapes, e.g. photos at their native sizes); returns
        their outputs in order. Small batches run side by side, each single-threaded on its own
        core, instead of one after the other each split across the cores."""
        if len(batches) <= 1 or self.engine == "keras" or self._pool is None:
            return [self(b) for b in batches]
        if sum(len(b) for b in batches) >= 2 * self.threads * len(batches):
            return [self(b) for b in batches]  # big batches: each is split across the cores anyway

        def run_one(batch):
            outs = self._shared.run(self._outputs, {"input": np.ascontiguousarray(batch, dtype=np.float32)})
            return outs[0] if len(outs) == 1 else outs

        return list(self._pool.map(run_one, batches))

    def save_onnx(self, path) -> None:
        """Write the ONNX model atomically (temp file + rename)."""
        from anyshape.onnx_graph import keras_to_onnx

        proto = getattr(self, "onnx_model", None) or keras_to_onnx(self.model)
        write_bytes_atomically(path, proto.SerializeToString())

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None

    def __repr__(self):
        return f"Predictor(engine={self.engine!r}, threads={self.threads}, data_format={self.data_format!r})"


def feature_model(model, layer: str = "avg_pool", pooling: str | None = "avg"):
    """A Keras model giving the features of `layer` (mixed0..mixed10 or avg_pool), pooled or not.

    "avg_pool" is mixed10 globally average-pooled (the 2048-wide vector); with pooling "avg"
    or "max" a mixedN map is reduced to one vector per image, with None it stays a map
    (channels_last, as the model computes internally).
    """
    import keras

    if layer not in FEATURE_LAYERS:
        raise ValueError(f"layer must be one of {', '.join(FEATURE_LAYERS)}, got {layer!r}")
    if pooling not in ("avg", "max", None):
        raise ValueError(f"pooling must be 'avg', 'max' or None, got {pooling!r}")
    if layer == "avg_pool":
        if pooling != "avg":
            raise ValueError("layer 'avg_pool' is already average-pooled; use --layer mixed10 with "
                             f"--pooling {pooling or 'none'}")
        try:
            existing = model.get_layer("avg_pool")
            return keras.Model(model.inputs, existing.output, name="avg_pool_features")
        except ValueError:
            layer = "mixed10"
    try:
        x = model.get_layer(layer).output
    except ValueError:
        raise ValueError(f"the model has no layer {layer!r} (layers: mixed0..mixed10 in anyshape's InceptionV3)") from None
    if pooling == "avg":
        x = keras.layers.GlobalAveragePooling2D(name=f"{layer}_avg")(x)
    elif pooling == "max":
        x = keras.layers.GlobalMaxPooling2D(name=f"{layer}_max")(x)
    return keras.Model(model.inputs, x, name=f"{layer}_features")


# ---------------------------------------------------------------------------------------------
# Runs over many images
# ---------------------------------------------------------------------------------------------


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
) -> Iterator[ImageResult]:
    """Yield one `ImageResult` per path (in completion order, not input order).

    Images are decoded on a thread pool `workers` wide, `2 * batch_size` ahead of the engine;
    decoded images of the same shape are grouped into batches of up to `batch_size`. A file
    that cannot be used gives a result with `error` (path and reason) and no output.
    """
    paths = list(paths)
    workers = workers or min(4, max(2, _cores()))
    lookahead = max(2 * batch_size, 2 * workers)
    pending: dict[tuple, list[tuple[Path, np.ndarray]]] = {}

    def read(path):
        try:
            return path, reader.read(path), None
        except Exception as e:  # every reason a file is unusable becomes its result
            from anyshape.preprocess import ImageLoadError

            if isinstance(e, (ImageLoadError, ImageTooSmall)):
                return path, None, str(e)
            if isinstance(e, MemoryError):
                return path, None, f"{path}: out of memory while decoding"
            return path, None, f"{path}: cannot be read as an image ({type(e).__name__}: {e})"

    def run(*groups):
        outs = predictor.run_many([np.stack([x for _, x in group]) for group in groups])
        results = []
        for group, out in zip(groups, outs):
            for i, (p, _) in enumerate(group):
                o = [a[i] for a in out] if isinstance(out, list) else out[i]
                results.append(ImageResult(Path(p), o))
        if on_batch is not None and results:
            on_batch(results)
        return results

    with ThreadPoolExecutor(workers, thread_name_prefix="anyshape-decode") as pool:
        queue = deque()
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
                yield ImageResult(Path(path), None, error)
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
            self.stream.write(f"\r[{'#' * filled}{'.' * (width - filled)}] {self.done}/{self.total} "
                              f"{self.label}{bad}  {rate:.1f} img/s")
            self.stream.flush()

    def close(self) -> None:
        if self.enabled:
            self.stream.write("\n")
            self.stream.flush()


# ---------------------------------------------------------------------------------------------
# Feature files: atomic output, resumable runs
# ---------------------------------------------------------------------------------------------

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
    """

    def __init__(self, out, *, resume: bool = False, force: bool = False):
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
        if suffix == ".npz":
            write_atomically(self.out, lambda tmp: np.savez(tmp, features=feats, paths=np.array(paths)))
        elif suffix == ".npy":
            listing = self.out.with_name(self.out.name + ".paths.txt")
            write_bytes_atomically(listing, ("\n".join(paths) + ("\n" if paths else "")).encode("utf-8"))
            write_atomically(self.out, lambda tmp: np.save(tmp, feats))
        else:
            import pyarrow as pa
            import pyarrow.parquet as pq

            flat = feats.reshape(len(paths), -1) if paths else np.zeros((0, 0), np.float32)
            table = pa.table({
                "path": pa.array(paths, pa.string()),
                "feature": pa.array(list(flat), pa.list_(pa.float32())),
            })
            write_atomically(self.out, lambda tmp: pq.write_table(table, tmp))
        self._remove_partial()
        return len(paths)

    def _remove_partial(self) -> None:
        if self.partial.exists():
            for f in self.partial.iterdir():
                f.unlink()
            self.partial.rmdir()


# ---------------------------------------------------------------------------------------------
# Quick timing (the full comparison with peers is benchmarks/bench_inference.py)
# ---------------------------------------------------------------------------------------------


def benchmark(predictor: Predictor, shape_hw: tuple[int, int], batch: int, *, seconds: float = 3.0) -> float:
    """Images per second of `predictor` on random input of `batch` x shape_hw (after one warm-up)."""
    h, w = shape_hw
    c = predictor.channels
    dims = (batch, c, h, w) if predictor.data_format == "channels_first" else (batch, h, w, c)
    x = np.random.default_rng(0).uniform(-1, 1, dims).astype(np.float32)
    predictor(x)
    n, start = 0, time.perf_counter()
    best = math.inf
    while True:
        t = time.perf_counter()
        predictor(x)
        best = min(best, time.perf_counter() - t)
        n += 1
        if time.perf_counter() - start > seconds and n >= 2:
            break
    return batch / best


# ---------------------------------------------------------------------------------------------
# Whole runs, as the `predict` and `features` commands do them
# ---------------------------------------------------------------------------------------------


@dataclass
class RunSummary:
    """What a run over many files did: counts, failures with reasons, time."""

    total: int = 0
    ok: int = 0
    failed: list = field(default_factory=list)  # (path, reason)
    skipped: int = 0  # already in the output (resume)
    seconds: float = 0.0

    @property
    def exit_code(self) -> int:
        return 1 if self.failed else 0

    def line(self) -> str:
        rate = self.ok / self.seconds if self.seconds > 0 else 0.0
        parts = [f"{self.total} file(s): {self.ok} ok", f"{len(self.failed)} failed"]
        if self.skipped:
            parts.append(f"{self.skipped} already done (resumed)")
        return ", ".join(parts) + f" in {self.seconds:.1f} s ({rate:.1f} images/s)"


def default_size(predictor: Predictor, size=None):
    """The size policy: the given one, else the model's fixed size, else "native"."""
    if size is not None:
        size = parse_size(size)
        if size != "native" and predictor.fixed_hw is not None and tuple(size) != tuple(predictor.fixed_hw):
            raise ValueError(f"the model takes {predictor.fixed_hw[0]}x{predictor.fixed_hw[1]} images only; "
                             f"--size {size[0]},{size[1]} cannot be used with it (build it with a free size)")
        if size == "native" and predictor.fixed_hw is not None:
            raise ValueError(f"the model takes {predictor.fixed_hw[0]}x{predictor.fixed_hw[1]} images only; "
                             "--size native needs a model built with a free input size")
        return size
    return predictor.fixed_hw if predictor.fixed_hw is not None else "native"


def make_reader(predictor: Predictor, size=None, *, upscale: bool = False, max_pixels: int | None = None) -> ImageReader:
    return ImageReader(
        channels=predictor.channels,
        size=default_size(predictor, size),
        preprocessing=predictor.preprocessing,
        upscale=upscale,
        max_pixels=max_pixels,
        data_format=predictor.data_format,
    )


def _class_labels(scores: np.ndarray, top: int, label_offset, names: list | None = None) -> list[list[dict]]:
    n = scores.shape[1]
    if names is not None and len(names) != n:
        names = None
    if names is None and n in (1000, 1001):
        from anyshape.labels import decode_predictions

        offset = label_offset if label_offset != "auto" else (1 if n == 1001 else 0)
        decoded = decode_predictions(scores, top=min(top, 1000), label_offset=offset)
        return [
            [{"rank": k + 1, "class_id": int(i), "wnid": wnid, "label": name, "score": score}
             for k, (i, (wnid, name, score)) in enumerate(zip(np.argsort(-s[offset:], kind="stable"), row))]
            for s, row in zip(scores, decoded)
        ]
    return [
        [{"rank": k + 1, "class_id": int(i), "wnid": "", "label": str(names[i]) if names else f"class_{int(i)}",
          "score": float(s[i])} for k, i in enumerate(np.argsort(-s, kind="stable")[:top])]
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
    summary = RunSummary(total=len(files) + len(missing))
    summary.failed.extend((str(p), f"{p}: {why}") for p, why in missing)
    rows = {str(p): {"path": str(p), "predictions": None, "error": f"{p}: {why}"} for p, why in missing}
    bar = Progress(len(files), progress)
    start = time.perf_counter()
    for r in run_images(predictor, reader, files, batch_size=batch_size):
        if r.error is not None:
            summary.failed.append((str(r.path), r.error))
            rows[str(r.path)] = {"path": str(r.path), "predictions": None, "error": r.error}
            bar.update(1, failed=1)
            continue
        scores = r.output[0] if isinstance(r.output, list) else r.output
        rows[str(r.path)] = {"path": str(r.path),
                             "predictions": _class_labels(np.asarray(scores)[None], top, predictor.preprocessing.label_offset,
                                                            predictor.class_names)[0],
                             "error": None}
        summary.ok += 1
        bar.update(1)
    bar.close()
    summary.seconds = time.perf_counter() - start
    order = [str(p) for p, _ in missing] + [str(p) for p in files]
    return [rows[p] for p in order], summary


def format_predictions(rows: list[dict], fmt: str = "table") -> str:
    """Render `predict_paths` rows as "table" (for people), "json" or "csv" (one row per class)."""
    import csv
    import io
    import json

    if fmt == "json":
        return json.dumps(rows, indent=2)
    if fmt == "csv":
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(["path", "rank", "class_id", "wnid", "label", "score", "error"])
        for row in rows:
            if row["error"]:
                w.writerow([row["path"], "", "", "", "", "", row["error"]])
                continue
            for p in row["predictions"]:
                w.writerow([row["path"], p["rank"], p["class_id"], p["wnid"], p["label"], f"{p['score']:.6f}", ""])
        return buf.getvalue()
    if fmt != "table":
        raise ValueError(f"format must be table, json or csv, got {fmt!r}")
    lines = []
    for row in rows:
        if row["error"]:
            continue  # the table is for the images that ran; failures go to stderr with the summary
        lines.append(row["path"])
        for p in row["predictions"]:
            lines.append(f"  {p['rank']:>2}. {p['label']:<28} {p['score']:8.4f}  ({p['wnid'] or p['class_id']})")
    return "\n".join(lines) + ("\n" if lines else "")


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
) -> RunSummary:
    """Write one row (path, features) per readable image under `paths` to `out` (see FeatureStore).

    `predictor` wraps a feature model (see `feature_model`). Interrupting the run (Ctrl-C, a
    crash) leaves `<out>.partial/`; calling again with `resume=True` computes only the images not
    in it. `out` appears only when the run ends, written atomically.
    """
    reader = make_reader(predictor, size, upscale=upscale, max_pixels=max_pixels)
    if len(predictor.model.outputs[0].shape) > 2 and reader.size == "native":
        raise ValueError(
            "unpooled feature maps (--pooling none) of images at their native sizes differ in shape and "
            "cannot share one array: pass --size N (or H,W), or pool them with --pooling avg|max"
        )
    store = FeatureStore(out, resume=resume, force=force)
    files, missing = find_images(paths)
    todo = [p for p in files if str(p) not in store.done]
    summary = RunSummary(total=len(files) + len(missing), skipped=len(files) - len(todo))
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
    finally:
        bar.close()
        summary.seconds = time.perf_counter() - start
    store.finish()
    return summary


def load_or_build(model_path=None, **inception_v3_kwargs):
    """A saved Keras model (`.keras` file) when `model_path` is given, else anyshape.InceptionV3.

    A model file in a run folder of `anyshape train` carries the folder's `classes.json` as
    `model.anyshape_run_info`: predictions are named by its classes and images prepared by its
    preprocessing and resize settings."""
    if model_path is not None:
        import keras

        path = Path(model_path)
        if not path.is_file():
            raise ValueError(f"--model {model_path}: no such file (expected a .keras model file)")
        try:
            model = keras.saving.load_model(path)
        except Exception as e:
            raise ValueError(f"--model {model_path}: cannot be loaded as a Keras model ({type(e).__name__}: {e})") from e
        try:  # a run folder of `anyshape train`: class names and preprocessing in classes.json
            from anyshape.train import read_run_info

            info = read_run_info(path)
        except ImportError:
            info = None
        if info:
            model.anyshape_run_info = info
        return model
    from anyshape.inception_v3 import InceptionV3

    return InceptionV3(**inception_v3_kwargs)


def export_model(model, path, fmt: str, *, force: bool = False) -> Path:
    """Save `model` as "onnx" (anyshape's emitter), "tf_saved_model" (a folder) or "keras", atomically."""
    import shutil

    path = Path(path)
    if fmt not in ("onnx", "tf_saved_model", "keras"):
        raise ValueError(f"format must be onnx, tf_saved_model or keras, got {fmt!r}")
    if fmt == "keras" and path.suffix != ".keras":
        raise ValueError(f"a Keras model file must end in .keras, got {str(path)!r}")
    if path.exists() and not force:
        raise FileExistsError(f"{path} exists; pass --force to overwrite it")
    if not path.parent.is_dir():
        raise ValueError(f"the folder {str(path.parent)!r} does not exist")
    if fmt == "onnx":
        from anyshape.onnx_graph import keras_to_onnx

        write_bytes_atomically(path, keras_to_onnx(model).SerializeToString())
    elif fmt == "keras":
        write_atomically(path, lambda tmp: model.save(tmp))
    else:
        tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
        try:
            model.export(str(tmp), format="tf_saved_model", verbose=False)
            if path.exists():
                shutil.rmtree(path) if path.is_dir() else path.unlink()
            os.replace(tmp, path)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp)
    return path
