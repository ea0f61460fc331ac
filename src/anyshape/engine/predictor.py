"""The predictor: one object that runs a model on the fastest engine and precision this machine
offers (ONNX Runtime or OpenVINO, Keras as the fallback), and a quick timer."""

from __future__ import annotations

import importlib
import math
import os
import time
from collections.abc import Callable

import numpy as np

from anyshape.engine.graph_model import GraphModel, describe_keras
from anyshape.engine.images import Preprocessing
from anyshape.engine.precision import PRECISIONS, choose, cpu_flags, native_bf16

FEATURE_LAYERS = ("avg_pool",) + tuple(f"mixed{i}" for i in range(11))
ENGINES = ("auto", "onnxruntime", "openvino", "keras")
FAST_ENGINES = (
    "onnxruntime",
    "openvino",
)  # fp32 order: ONNX Runtime first (OpenVINO f32 is not faster, see precision.py)


def _cores() -> int:
    """The cores this process may run on, or ANYSHAPE_THREADS when set (tests/conftest.py sets it
    to one per pytest-xdist worker, so that two workers do not run four threads on two cores)."""
    threads = os.environ.get("ANYSHAPE_THREADS", "").strip()
    if threads.isdigit() and int(threads) > 0:
        return int(threads)
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


class MissingExtra(RuntimeError):
    """An optional package a run needs is not installed (the message names the extra to install):
    the user's to fix, so the CLI reports it in one line (exit 2), not as a bug."""


def missing_extra(module: str, extra: str) -> str | None:
    """None when the optional `module` imports, else why not and the extra of anyshape that
    installs it (pyproject.toml's optional-dependencies), for a message instead of a traceback."""
    try:
        importlib.import_module(module)
    except ImportError as e:
        return f"{module.split('.')[0]} is not installed ({e}); pip install 'anyshape[{extra}]'"
    return None


def _installed(name: str) -> str | None:
    """None when the engine's package imports, else why not."""
    return missing_extra(name, "fast" if name == "onnxruntime" else "openvino")


def _backend(name: str, graph: GraphModel | None, model, threads: int, precision: str, float_remainder: str = "fp32"):
    if name == "keras":
        from anyshape.engine.keras_backend import KerasBackend

        return KerasBackend(model)
    if graph is None:
        raise ValueError(f"the {name} engine runs an ONNX graph, and this model has none")
    if name == "onnxruntime":
        from anyshape.engine.ort_backend import OrtBackend

        return OrtBackend(graph.graph, threads=threads, precision=precision)
    from anyshape.engine.openvino_backend import OpenVinoBackend

    return OpenVinoBackend(
        graph.graph,
        threads=threads,
        precision=precision,
        float_remainder=float_remainder,
        data_format=graph.data_format,
    )


class Predictor:
    """Runs a model fast: ONNX Runtime or OpenVINO when available, Keras otherwise.

    Args:
        model: a built `keras.Model` (anyshape's InceptionV3, a feature model from
            `feature_model`, keras.applications' InceptionV3, ...) or a `GraphModel` (an .onnx
            file from `anyshape quantize` / `anyshape export`, via `load_or_build`).
        engine: "auto", "onnxruntime", "openvino" (raise if it cannot be used) or "keras".
        precision: None (the default: the model's own, fp32 for a Keras model, int8 for a
            quantized file), "auto" (bf16 where the CPU runs it natively, else fp32; see
            `anyshape.engine.precision`), "fp32" (Keras' results to float32 rounding), "bf16"
            or "int8" (a quantized model file only).
        threads: cores to use (default: the cores this process may run on).
        cpu_flags: the CPU flags to decide by (default: /proc/cpuinfo).

    `engine` and `precision` say what actually runs; `choice_reason` says why. Call it on a
    preprocessed float32 batch in the model's data format; it returns a numpy array (or a list
    for several outputs), like `model.predict_on_batch`. A batch the model cannot take (another
    rank or channel count, a side below `min_size` or other than a fixed size, NaN or Inf) is
    refused with one ValueError whatever the engine; a batch of 0 images gives outputs of 0 rows.

    A Predictor pickles as its ONNX graph + metadata + engine + precision and rebuilds its
    sessions on arrival (e.g. in a Ray worker); a Keras-engine Predictor cannot be pickled.
    """

    # what the model takes and gives, set from the Keras model or the GraphModel's metadata
    data_format: str
    channels: int
    fixed_hw: tuple | None
    output_rank: int
    min_size: int
    preprocessing: Preprocessing
    class_names: list | None
    architecture: str | None  # the registered network, when the model says
    include_top: bool | None  # whether it ends in its classifier, when the model says
    graph_model: GraphModel | None

    def __init__(
        self,
        model,
        *,
        engine: str = "auto",
        precision: str | None = None,
        threads: int | None = None,
        cpu_flags: frozenset | None = None,
    ):
        if engine not in ENGINES:
            raise ValueError(f"engine must be one of {ENGINES}, got {engine!r}")
        if precision is None:
            precision = model.precision if isinstance(model, GraphModel) else "fp32"
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
        if not isinstance(model, GraphModel) and not (hasattr(model, "outputs") and hasattr(model, "inputs")):
            raise TypeError(
                f"Predictor takes a Keras model (anyshape.create_model, model_info.load_model) or a GraphModel "
                f"(an .onnx file: engine.load_or_build), got {'None' if model is None else type(model).__name__}"
            )
        self.threads = threads or _cores()
        self.fallback_reason = None
        if isinstance(model, GraphModel):
            self.model, self.graph_model = None, model
            desc = {
                k: getattr(model, k)
                for k in (
                    "data_format",
                    "channels",
                    "fixed_hw",
                    "output_rank",
                    "min_size",
                    "preprocessing",
                    "class_names",
                    "architecture",
                    "include_top",
                )
            }
        else:
            self.model, self.graph_model = model, None
            desc = describe_keras(model)
            if engine != "keras":
                try:
                    self.graph_model = GraphModel.from_keras(model)
                except ImportError as e:
                    self.fallback_reason = f"onnx is not installed ({e}); pip install 'anyshape[fast]'"
                except NotImplementedError as e:
                    self.fallback_reason = f"the model cannot be translated to ONNX: {e}"
        for key, value in desc.items():
            setattr(self, key, value)
        self._flags = cpu_flags
        self._requested = (engine, precision)
        self._start()

    def _start(self) -> None:
        engine, precision = self._requested
        flags = cpu_flags() if self._flags is None else self._flags
        available, why_not = [], []
        if self.graph_model is not None and engine != "keras":
            for name in FAST_ENGINES:
                reason = _installed(name)
                (why_not.append(reason) if reason else available.append(name))
        if self.model is not None:
            available.append("keras")
        if engine in FAST_ENGINES and engine not in available:
            reason = self.fallback_reason or "; ".join(w for w in why_not if w.startswith(engine))
            raise MissingExtra(f"engine={engine!r} unavailable: {reason}")
        quantized = self.graph_model is not None and self.graph_model.precision == "int8"
        choice = choose(engine, precision, flags=flags, available=tuple(available), quantized=quantized)
        if choice.engine == "keras" and engine != "keras" and self.fallback_reason is None and why_not:
            self.fallback_reason = "; ".join(why_not)
        # an int8 file's float layers in bf16 on OpenVINO where quantize measured it keeps the file's
        # fidelity (GraphModel.float_remainder) and this CPU computes bf16; else fp32
        bf16_layers = (
            choice.engine == "openvino"
            and choice.precision == "int8"
            and self.graph_model is not None
            and self.graph_model.float_remainder == "bf16"
            and native_bf16(flags)
        )
        self.float_remainder = "bf16" if bf16_layers else "fp32"
        self._backend = _backend(
            choice.engine, self.graph_model, self.model, self.threads, choice.precision, self.float_remainder
        )
        reason = choice.reason + (", its float layers in bf16 as quantize measured" if bf16_layers else "")
        self.engine, self.precision, self.choice_reason = choice.engine, choice.precision, reason

    def __call__(self, batch: np.ndarray):
        x = self._checked(batch)
        outs = self._empty_outputs(x) if len(x) == 0 else self._backend(x)
        return outs[0] if len(outs) == 1 else outs

    predict_on_batch = __call__

    def run_many(self, batches: list) -> list:
        """Run several batches (of different shapes, e.g. photos at their native sizes); returns
        their outputs in order. On ONNX Runtime small batches run side by side, each
        single-threaded on its own core, instead of one after the other each split across the cores."""
        xs = [self._checked(b) for b in batches]
        ran = iter(self._backend.run_many([x for x in xs if len(x)]))
        outs = [self._empty_outputs(x) if len(x) == 0 else next(ran) for x in xs]
        return [o[0] if len(o) == 1 else o for o in outs]

    def _checked(self, batch) -> np.ndarray:
        """The batch as contiguous float32, or a ValueError saying what is wrong with it, the same
        on every engine: the backends' own errors differ (ONNX Runtime's, OpenVINO's, Keras'), NaN
        gives NaN on one and numbers on another, and OpenVINO's compiled model fails every later
        call once it has refused a shape."""
        x = np.ascontiguousarray(batch, dtype=np.float32)
        first = self.data_format == "channels_first"
        layout = f"(N, {self.channels}, H, W)" if first else f"(N, H, W, {self.channels})"
        if x.ndim != 4:
            raise ValueError(
                f"the model takes a batch of images shaped {layout} ({self.data_format}); got an array of shape {x.shape}"
            )
        c, h, w = (x.shape[1], x.shape[2], x.shape[3]) if first else (x.shape[3], x.shape[1], x.shape[2])
        if c != self.channels:
            raise ValueError(
                f"the model takes {self.channels}-channel images, a batch shaped {layout} ({self.data_format}); "
                f"got {c} channel(s) in a batch of shape {x.shape}"
            )
        if self.fixed_hw is not None and (h, w) != tuple(self.fixed_hw):
            raise ValueError(f"the model takes {self.fixed_hw[0]}x{self.fixed_hw[1]} images only; got {h}x{w}")
        if min(h, w) < self.min_size:
            raise ValueError(
                f"{h}x{w} px is below the model's minimum of {self.min_size} px per side (its feature map would vanish)"
            )
        if not np.isfinite(x).all():
            raise ValueError("the batch holds NaN or Inf values; the model computes only with finite numbers")
        return x

    def _empty_outputs(self, x: np.ndarray) -> list:
        """The outputs of a batch of no images, of the shapes the model gives at this image size,
        without calling the backend (OpenVINO's compiled model fails later calls after one)."""
        if self.graph_model is not None:
            shapes = self.graph_model.output_shapes(x.shape)
        else:  # the Keras engine without onnx: a Predictor holds a graph, a Keras model or both
            shapes = self.model.compute_output_shape(x.shape)  # type: ignore[union-attr]
            shapes = list(shapes) if isinstance(shapes[0], (tuple, list)) else [shapes]
        return [np.zeros((0, *s[1:]), np.float32) for s in shapes]

    @property
    def precision_text(self) -> str:
        """The precision as runs and benches print it: "int8, float layers bf16" for an int8 file
        whose float layers run in bf16 (GraphModel.float_remainder), else the precision."""
        return self.precision + (", float layers bf16" if self.float_remainder == "bf16" else "")

    def metadata(self) -> dict:
        """What ran, for output files: engine and precision (and an int8 file's float layers in bf16)."""
        ran = {"engine": self.engine, "precision": self.precision}
        return ran if self.float_remainder == "fp32" else {**ran, "float_remainder": self.float_remainder}

    def __getstate__(self):
        if self.graph_model is None:
            raise TypeError(
                "a Predictor on the keras engine cannot be sent to another process: "
                "it needs an ONNX graph (install anyshape[fast])"
            )
        return {
            "graph": self.graph_model.to_bytes(),
            "requested": (self.engine, self.precision),
            "threads": self.threads,
            "flags": self._flags,
        }

    def __setstate__(self, state):
        graph = GraphModel.from_bytes(state["graph"])
        self.__init__(
            graph,
            engine=state["requested"][0],
            precision=state["requested"][1],
            threads=state["threads"],
            cpu_flags=state["flags"],
        )

    def close(self) -> None:
        self._backend.close()

    def __repr__(self):
        return (
            f"Predictor(engine={self.engine!r}, precision={self.precision!r}, threads={self.threads}, "
            f"data_format={self.data_format!r})"
        )


def feature_layers(arch=None) -> tuple[str, ...]:
    """The layers `feature_model` reads for the network `arch` (default InceptionV3): "avg_pool"
    (the last map, globally pooled), then its blocks and its feature points (its `Arch` record:
    mixed0 .. mixed10 for InceptionV3, conv2_block1_out .. and the stages for ResNet50)."""
    from anyshape.archs import DEFAULT_ARCH, get_arch

    a = get_arch(arch or DEFAULT_ARCH)
    return tuple(dict.fromkeys(("avg_pool", *a.blocks, *a.feature_points)))


def feature_layer(layer: str = "avg_pool", pooling: str | None = "avg", arch=None) -> str:
    """The layer whose output `feature_model(model, layer, pooling)` reads, checked against the
    layers of the network `arch` (default InceptionV3; `feature_layers`): a name it has not is
    refused with the list of those it has.

    "avg_pool" is the network's last map globally average-pooled; asked with pooling "max" or
    None it means that map with that pooling (its map, or its max), the same channels pooled
    another way: for InceptionV3 that is mixed10, its last block, which names it.
    """
    from anyshape.archs import DEFAULT_ARCH, get_arch

    a = get_arch(arch or DEFAULT_ARCH)
    names = feature_layers(a)
    if layer not in names:
        raise ValueError(f"layer {layer!r} is not a feature layer of {a.name}; its layers are: {', '.join(names)}")
    if pooling not in ("avg", "max", None):
        raise ValueError(f"pooling must be 'avg', 'max' or None, got {pooling!r}")
    if layer == "avg_pool" and pooling != "avg" and a.name == DEFAULT_ARCH:
        return "mixed10"
    return layer


def _last_map(model):
    """The last feature map of a model (the one its global pooling reads): the input of its
    "avg_pool" layer, or its own output when that is a map."""
    try:
        return model.get_layer("avg_pool").input
    except ValueError:
        pass
    if len(model.outputs[0].shape) == 4:
        return model.outputs[0]
    return None


def feature_model(model, layer: str = "avg_pool", pooling: str | None = "avg"):
    """A Keras model giving the features of `layer` (`feature_layers` of the model's network:
    "avg_pool", or one of its blocks: mixed0..mixed10 for InceptionV3), pooled or not.

    "avg_pool" is the last map globally average-pooled (the 2048-wide vector of InceptionV3;
    with pooling "max" or None, that map pooled that way: see `feature_layer`); with pooling
    "avg" or "max" a block's map is reduced to one vector per image, with None it stays a map
    (channels_last, as the model computes internally). A layer name the model's network does not
    have is refused with the list of those it has.

    The new model carries the source model's `ModelInfo` (how its images are prepared, its
    network, its weight set) without the class names, which name the classifier's outputs, not
    features: a plain `keras.Model` knows none of it, and the defaults would prepare the images
    otherwise. Its Config says include_top=False: it ends before the classifier.
    """
    import dataclasses

    import keras

    from anyshape.model_info import model_info

    info = model_info(model)
    info = dataclasses.replace(
        info,
        class_names=None,
        config=info.config.replace(include_top=False, pooling=None) if info.config is not None else None,
    )
    arch = info.architecture
    layer = feature_layer(layer, pooling, arch)
    names = feature_layers(arch)

    def _features(x, name):
        features = keras.Model(model.inputs, x, name=name)
        info.attach(features)
        return features

    if layer == "avg_pool":
        if pooling == "avg":
            try:
                return _features(model.get_layer("avg_pool").output, "avg_pool_features")
            except ValueError:
                pass
        x = _last_map(model)
        if x is None:
            raise ValueError(
                "the model has no feature map to pool (no avg_pool layer, and its output is not a map): "
                f"name a layer, one of {', '.join(names[1:])}"
            )
        name = "last_map"
    else:
        try:
            x = model.get_layer(layer).output
        except ValueError:
            raise ValueError(
                f"the model has no layer {layer!r} (the feature layers of {arch or 'inception_v3'}: {', '.join(names)})"
            ) from None
        name = layer
    if pooling == "avg":
        x = keras.layers.GlobalAveragePooling2D(name=f"{name}_avg")(x)
    elif pooling == "max":
        x = keras.layers.GlobalMaxPooling2D(name=f"{name}_max")(x)
    return _features(x, f"{name}_features")


def benchmark(predictor: Predictor, shape_hw: tuple[int, int], batch: int, *, seconds: float = 3.0) -> float:
    """Images per second of `predictor` on random input of `batch` x shape_hw, its best call (after
    two warm-up calls: OpenVINO's backend compiles a model for a shape on its second batch)."""
    x = random_batches(predictor, shape_hw, batch)[0]
    for _ in range(2):
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


def fidelity(reference: Callable, candidate: Callable, batches: list) -> dict:
    """How closely `candidate` (e.g. bf16 or int8) follows `reference` (fp32) on `batches` (two
    Predictors, or callables of a batch):
    top-1 agreement (share of rows whose argmax is the same) and the minimum and mean cosine
    similarity between their output rows (features or scores)."""
    agree = total = 0
    cosines = []
    for batch in batches:
        a = np.asarray(reference(batch), np.float64).reshape(len(batch), -1)
        b = np.asarray(candidate(batch), np.float64).reshape(len(batch), -1)
        agree += int((a.argmax(1) == b.argmax(1)).sum())
        total += len(batch)
        norms = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
        cosines.extend((a * b).sum(1) / np.maximum(norms, 1e-30))
    return {
        "top1_agreement": agree / max(total, 1),
        "min_cosine": float(min(cosines)),
        "mean_cosine": float(np.mean(cosines)),
        "rows": total,
    }


def random_batches(predictor: Predictor, shape_hw: tuple[int, int], batch: int, count: int = 1, seed: int = 0) -> list:
    """`count` batches of uniform [-1, 1] input in the predictor's layout (the sample when no images are given)."""
    h, w = shape_hw
    c = predictor.channels
    dims = (batch, c, h, w) if predictor.data_format == "channels_first" else (batch, h, w, c)
    rng = np.random.default_rng(seed)
    return [rng.uniform(-1, 1, dims).astype(np.float32) for _ in range(count)]
