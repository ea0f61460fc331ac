"""Fast inference: ONNX Runtime sessions made from the Keras model, and runs over image folders.

`Predictor(model)` translates a built Keras model into ONNX with `anyshape.onnx_graph` (dynamic
batch, height and width; no TensorFlow or tf2onnx needed) and runs it with ONNX Runtime. Its
outputs equal the Keras model's to float32 rounding (tests check <= 1e-4 max abs). Without
onnxruntime (or for a layer the emitter does not know) it runs the Keras model itself.

How it is fast on a small CPU (measured by benchmarks/bench_inference.py):

* ONNX Runtime's CPU kernels (MLAS, NCHWc-blocked convolutions) beat Keras' TensorFlow path
  and torchvision eager on this model; the session runs with all graph optimisations.
* Batches are split across the cores (`batch_split`), each piece run by a single-threaded session
  call in its own thread (`InferenceSession.run` is thread-safe and releases the GIL), or on
  OpenVINO by a one-thread stream of a model compiled for throughput. One image per core
  needs no synchronisation between cores inside each layer, which a single session with
  `intra_op_num_threads=cores` must do hundreds of times per image, and keeps its piece's layers
  in that core's cache. A batch of one runs on a second session (a model compiled for latency)
  that splits each layer across the cores instead. Batches of different shapes (photos at their
  native sizes) run side by side, one per core (`Predictor.run_many`), rather than one after the
  other each split across the cores (README, "Inference", has the figures).
* One session serves every input size (dynamic H, W); ONNX Runtime plans each new shape once
  and reuses it. Images of equal shape are grouped into batches by `run_images`.

`run_images` reads, checks, resizes and preprocesses images on a thread pool while the
engine runs the previous batch, so a folder of JPEGs runs at nearly the engine's own rate.
Bad files are returned as results with an error (path and reason) and the run goes on.

The package holds one job per module: `images` (preprocessing metadata, size policy, reading
files), `predictor` (the Predictor), `runs` (runs over many images), `feature_store` (feature
files), `manifest` (what a run computes, for safe resumes), `export` (saving and loading models),
`precision` (which engine and precision to run, from the CPU flags), one module per backend
(`ort_backend`, `openvino_backend`, `keras_backend`) and how they split a run over the cores
(`batch_split`), `graph_model` (the ONNX graph with its
metadata inside, what crosses processes and what `quantize` writes), `quantize` (int8) and
`bench` (images/s of each engine and the fidelity of a precision, `anyshape bench`'s twin).
"""

from anyshape.engine.bench import BenchReport, bench
from anyshape.engine.export import check_export_path, export_model, load_or_build, model_architecture
from anyshape.engine.feature_store import FEATURE_SUFFIXES, FeatureStore, read_features, read_manifest
from anyshape.engine.graph_model import GraphModel
from anyshape.engine.images import ImageReader, ImageTooSmall, Preprocessing, find_images, parse_size, path_key
from anyshape.engine.manifest import ResumeMismatch, RunManifest, weights_digest
from anyshape.engine.precision import PRECISIONS
from anyshape.engine.predictor import (
    ENGINES,
    FEATURE_LAYERS,
    Predictor,
    benchmark,
    feature_layer,
    feature_layers,
    feature_model,
    fidelity,
    random_batches,
)
from anyshape.engine.quantize import quantize
from anyshape.engine.runs import (
    ImageResult,
    Progress,
    RunInterrupted,
    RunSummary,
    check_size,
    default_size,
    extract_features,
    feature_reader,
    format_predictions,
    make_reader,
    predict_paths,
    run_images,
    run_manifest,
)

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
    "bench",
    "BenchReport",
    "predict_paths",
    "format_predictions",
    "extract_features",
    "FeatureStore",
    "RunSummary",
    "Progress",
    "export_model",
    "load_or_build",
    "model_architecture",
    "FEATURE_LAYERS",
    "feature_layer",
    "feature_layers",
    "FEATURE_SUFFIXES",
    "ENGINES",
    "PRECISIONS",
    "GraphModel",
    "fidelity",
    "random_batches",
    "quantize",
    "default_size",
    "feature_reader",
    "make_reader",
    "path_key",
    "read_manifest",
    "read_features",
    "RunManifest",
    "ResumeMismatch",
    "weights_digest",
    "RunInterrupted",
    "check_size",
    "run_manifest",
    "check_export_path",
]
