"""int8 post-training quantization calibrated on the user's own images (`anyshape quantize`).

The float ONNX graph (from `anyshape.onnx_graph`) is quantized statically to a QDQ graph:
convolutions and matmuls get int8 weights (per output channel) and int8 activations whose
ranges come from running the calibration images through the float graph. The result is an
.onnx file with anyshape's metadata inside (precision "int8", data format, preprocessing,
class names), which `Predictor` / `--model FILE.onnx` runs on OpenVINO (int8 on VNNI/AMX) or
ONNX Runtime.

Two quantizers produce the QDQ graph: ONNX Runtime's `quantize_static` ("onnxruntime", MinMax
calibration) and NNCF's `nncf.quantize` ("nncf", its default min-max + fast bias correction).
Both are deterministic for a given calibration set: images are read in sorted path order and
no step samples at random. Which one is the default was chosen by measurement (README, int8).
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import tempfile
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from anyshape.atomic_write import write_bytes_atomically
from anyshape.engine.graph_model import GraphModel
from anyshape.engine.images import ImageReader, find_images, parse_size
from anyshape.engine.predictor import MissingExtra, missing_extra
from anyshape.engine.runs import Progress
from anyshape.errors import Message, OutputExistsError, ParameterError, message_of

METHODS = ("onnxruntime", "nncf")
DEFAULT_METHOD = "onnxruntime"


@dataclass
class QuantizeReport:
    path: Path
    method: str
    used: int
    skipped: list = field(default_factory=list)  # (path, reason) of calibration images that could not be read

    def line(self) -> str:
        return f"wrote {self.path} (int8, {self.method}), calibrated on {self.used} image(s)" + (
            f", {len(self.skipped)} unreadable image(s) skipped" if self.skipped else ""
        )


def calibration_batches(
    graph,
    folder,
    *,
    size=None,
    limit: int = 300,
    batch_size: int = 16,
    progress: bool = False,
    skipped: list | None = None,
) -> list:
    """Preprocessed float32 batches of up to `limit` images from `folder` (sorted order) for `graph`
    (a GraphModel or a Predictor: its channels, data format, preprocessing and fixed size), at the
    model's fixed size, else `size`, else the weights' input size, else its network's default size
    (299 for InceptionV3). Unreadable images are
    appended to `skipped` as (path, reason) and left out."""
    if size is not None:
        hw = parse_size(size)
        if hw == "native":
            raise ParameterError("calibration needs one size for all images: pass {size=N} or H,W, not native")
    else:
        hw = graph.fixed_hw or graph.preprocessing.input_size or _network_size(graph)
    if graph.fixed_hw is not None and tuple(hw) != tuple(graph.fixed_hw):
        raise ParameterError(
            "the model takes {h}x{w} images only; {size=*} cannot be used",
            h=graph.fixed_hw[0],
            w=graph.fixed_hw[1],
            size=f"{hw[0]},{hw[1]}",
        )
    files, missing = find_images([folder])
    skipped = skipped if skipped is not None else []
    skipped.extend((str(p), f"{p}: {why}") for p, why in missing)
    reader = ImageReader.for_model(graph, size=tuple(hw), upscale=True)
    rows: list = []
    bar = Progress(min(limit, len(files)), progress, label="calibration images")
    for path in files:
        if len(rows) >= limit:
            break
        try:
            rows.append(reader.read(path))
            bar.update(1)
        except Exception as e:  # unreadable, truncated, not an image: report and go on
            skipped.append(
                (str(path), Message("{path}: {kind}: {error}", path=path, kind=type(e).__name__, error=message_of(e)))
            )
            bar.update(0, failed=1)
    bar.close()
    if not rows:
        raise ParameterError(
            "{calibrate=*}: no readable images (found {found} file(s), "
            "{unreadable} unreadable): give a folder of the images the model will see",
            calibrate=str(folder),
            found=len(files),
            unreadable=len(skipped),
        )
    return [np.stack(rows[i : i + batch_size]).astype(np.float32) for i in range(0, len(rows), batch_size)]


@contextlib.contextmanager
def _without_onnxruntime_advice():
    """ONNX Runtime's quantizer logs advice on the root logger ("Please consider to run
    pre-processing before quantization", twice), and the first such call installs a handler that
    prints it: advice to whoever wrote the quantization step, not to the user of `anyshape
    quantize`. While it runs, its records below ERROR are dropped, and a stand-in handler keeps
    `logging.warning` from installing one."""
    import onnxruntime

    package = os.path.dirname(onnxruntime.__file__)
    root = logging.getLogger()

    def keep(record: logging.LogRecord) -> bool:
        return record.levelno >= logging.ERROR or not record.pathname.startswith(package)

    stand_in = None if root.handlers else logging.NullHandler()
    root.addFilter(keep)
    if stand_in is not None:
        root.addHandler(stand_in)
    try:
        yield
    finally:
        root.removeFilter(keep)
        if stand_in is not None:
            root.removeHandler(stand_in)


def _quantize_onnxruntime(graph: bytes, batches: list) -> bytes:
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    class Reader(CalibrationDataReader):
        def __init__(self):
            self._it = iter(batches)

        def get_next(self):
            batch = next(self._it, None)
            return None if batch is None else {"input": batch}

    import onnx

    first_conv = next(n.name for n in onnx.load_from_string(graph).graph.node if n.op_type == "Conv")
    with tempfile.TemporaryDirectory(prefix="anyshape-quantize-") as tmp:
        src, dst = Path(tmp) / "float.onnx", Path(tmp) / "int8.onnx"
        src.write_bytes(graph)
        # Measured on the digits model (tests/trained_digits.py), top-1 agreement with fp32 on its
        # 360 test images: int8 activations + int8 weights everywhere 97.5 % (ORT) / 80.6 %
        # (OpenVINO); convolutions only, uint8 activations, the first convolution kept in float
        # (it sees the raw image, 1-3 input channels, and costs little): 98.9 % / 98.6 %.
        with _without_onnxruntime_advice():
            quantize_static(
                str(src),
                str(dst),
                Reader(),
                quant_format=QuantFormat.QDQ,
                per_channel=True,
                activation_type=QuantType.QUInt8,
                weight_type=QuantType.QInt8,
                op_types_to_quantize=["Conv"],
                nodes_to_exclude=[first_conv],
                calibrate_method=CalibrationMethod.MinMax,
            )
        return dst.read_bytes()


def _quantize_nncf(graph: bytes, batches: list) -> bytes:
    import nncf
    import onnx

    model = onnx.load_from_string(graph)
    samples = [{"input": b[i : i + 1]} for b in batches for i in range(len(b))]
    quantized = nncf.quantize(model, nncf.Dataset(samples), subset_size=len(samples))
    return quantized.SerializeToString()


def check_method(method: str) -> None:
    """Refuse an unknown quantizer, or one whose package is not installed (before any work)."""
    if method not in METHODS:
        raise ValueError(f"method must be one of {', '.join(METHODS)}, got {method!r}")
    needs = [("onnx", "fast"), ("onnxruntime.quantization", "fast") if method == "onnxruntime" else ("nncf", "nncf")]
    for module, extra in needs:
        reason = missing_extra(module, extra)
        if reason is not None:
            raise MissingExtra(f"quantizing with {method} cannot run: {reason}")


def quantize(
    model,
    calibrate,
    out,
    *,
    method: str = DEFAULT_METHOD,
    size=None,
    limit: int = 300,
    force: bool = False,
    progress: bool = False,
) -> QuantizeReport:
    """Quantize `model` (a Keras model or a float `GraphModel`) to int8 with the images in
    `calibrate` (a folder, searched recursively) and write the .onnx file `out` atomically."""
    check_method(method)
    out = Path(out)
    if out.suffix != ".onnx":
        raise ValueError(f"{out}: the quantized model is an ONNX file; give a name ending in .onnx")
    if out.exists() and not force:
        raise OutputExistsError("{path} exists; pass {force=True} to overwrite it", path=out)
    if not out.parent.is_dir():
        raise ValueError(f"the folder {str(out.parent)!r} does not exist")
    if not Path(calibrate).is_dir():
        raise ParameterError(
            "{calibrate=*}: not a folder (give a folder of calibration images)", calibrate=str(calibrate)
        )
    graph = model if isinstance(model, GraphModel) else GraphModel.from_keras(model)
    if graph.precision == "int8":
        raise ValueError("the model is already quantized to int8: quantize the float model instead")
    skipped: list = []
    batches = calibration_batches(graph, calibrate, size=size, limit=limit, progress=progress, skipped=skipped)
    if progress:
        print(f"quantizing with {method} on {sum(len(b) for b in batches)} image(s) ...", file=sys.stderr)
    # without force, not a file that appeared meanwhile either (another run writing `out`)
    write_bytes_atomically(out, quantize_graph(graph, batches, method=method).to_bytes(), overwrite=force)
    return QuantizeReport(out, method, sum(len(b) for b in batches), skipped)


def quantize_graph(graph: GraphModel, batches: list, *, method: str = DEFAULT_METHOD) -> GraphModel:
    """The int8 GraphModel of a float one, calibrated on preprocessed float32 `batches` (in memory)."""
    data = (_quantize_onnxruntime if method == "onnxruntime" else _quantize_nncf)(graph.graph, batches)
    return replace(graph, graph=data, precision="int8")


def _network_size(graph) -> tuple[int, int]:
    """The default size of the network a model holds (299 x 299 when it does not say)."""
    from anyshape.archs import DEFAULT_ARCH, get_arch

    size = get_arch(getattr(graph, "architecture", None) or DEFAULT_ARCH).default_size
    return (size, size)
