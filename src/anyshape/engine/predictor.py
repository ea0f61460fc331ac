"""The predictor: one object that runs a Keras model fast (ONNX Runtime, else Keras), and a quick timer."""

from __future__ import annotations

import math
import os
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from anyshape.atomic_write import write_bytes_atomically
from anyshape.engine.images import Preprocessing

FEATURE_LAYERS = ("avg_pool",) + tuple(f"mixed{i}" for i in range(11))
ENGINES = ("auto", "onnxruntime", "keras")


def _cores() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


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
