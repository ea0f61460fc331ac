"""The OpenVINO backend: compiles the ONNX graph that `anyshape.onnx_graph` emits (or an int8
QDQ graph from `anyshape quantize`) for the CPU, in f32 or bf16.

One compiled model serves every batch and image size (dynamic N, H, W). A shape that comes back
(a batch of the same size as one before it: a job at one image size) gets a model compiled for
exactly that shape on its STATIC_AFTER-th batch, kept for the next (the STATIC_MODELS last used):
OpenVINO's CPU plugin optimises a static graph further (it fuses the input's Transpose with the
Reorder to the first convolution's layout, a dynamic Transpose never: MergeTransposeAndReorder in
its graph_optimizer.cpp skips dynamic nodes; and it fuses eltwise chains). Measured on 2 Zen 4
cores, images/s static / dynamic, paired rounds, the Predictor's own path (streams for batch 16),
224 px batch 16 / batch 1 / 160x320 batch 16: float (bf16) MobileNetV3Large 1.05 / 1.11 / 1.06,
EfficientNetB0 1.08 / 1.11 / 1.06, ResNet50 1.12 / 1.09 / 1.11, DenseNet121 1.03 / 1.06 / 1.03,
ConvNeXtTiny 1.10 / 1.12 / 1.11, InceptionV3 at 299 px batch 16 / 1 1.00 / 1.03; int8
MobileNetV3Large 1.06 / 1.09 (with the input shift below), EfficientNetB0 1.03 / 1.07 / 1.07,
DenseNet121 1.01 / 1.27 / 1.02, ConvNeXtTiny 1.08 / 1.13 / 1.17, InceptionV3 1.00 / 1.02, but
ResNet50 0.75 / 0.80 / 0.75: for a static shape OpenVINO turns a strided 1x1 convolution into a
MaxPool and a 1x1 convolution, and the int8 chain breaks there (6 of its convolutions ran in f32).
So an int8 graph with a strided 1x1 convolution keeps the dynamic model (`static_shapes_help`).
The compile costs 0.15-0.6 s (MobileNetV3Large to ConvNeXtTiny), once per shape; a job whose
shapes never repeat (photos at their own sizes) never pays it; a graph over STATIC_MAX_GRAPH_BYTES
never does (memory). In a static model the input's
per-channel shift (`onnx_rewrites`' folded Rescaling, on the NCHW side of the Transpose) moves
before the Transpose (`input_shift_first`), so the Transpose fuses away and the shift joins the
conversion to bf16 (MobileNetV3Large int8 224 px batch 16: static 1.03 -> 1.06x; on a dynamic
model the same move was slower, an unfused f32 Add on 3 channels: 3.6 against 0.7 ms).

Precision is OpenVINO's `INFERENCE_PRECISION_HINT`: "f32" gives Keras' results to float32
rounding; "bf16" computes convolutions in bf16 on AVX512_BF16 / AMX. OpenVINO's own default on a
CPU with avx512_bf16 is bf16 (observed with OpenVINO 2026.4 on Zen 4), so fp32 is always set
explicitly. For an int8 QDQ graph OpenVINO runs the quantized convolutions in int8 (VNNI/AMX)
and the rest (the graph's float layers) in f32, or in bf16 when `float_remainder` is "bf16"
(`GraphModel.float_remainder`: what `anyshape quantize` measured to keep its fidelity).

A batch of one image runs on a model compiled for latency, each layer split across the cores. A
larger batch is split across the cores, each piece run by a one-thread stream of a second model
compiled for throughput (`NUM_STREAMS` = cores), as the ONNX Runtime backend splits it across
single-threaded session calls: the pieces' working sets stay in each core's cache where one
request's layers, split across the cores, stream the whole batch through memory. That second model
is compiled on the first batch of more than one image (a batch-1 user never pays for it). Measured
on 2 Zen 4 cores, batch 16 at 224 px, images/s split -> whole (benchmarks/bench_family.py's
engines; the README's tables): MobileNetV3Large gains about 10 %, EfficientNetB0 and DenseNet121
5-8 %, ResNet50, ConvNeXtTiny and InceptionV3 (compute-bound) run the same.

One case is routed around a fault of OpenVINO's CPU plugin (2026.4, found on an AMX Xeon): in a
dynamic-shape model, an int8 1x1 convolution with a residual sum and a per-channel scale and shift
fused after it (ResNetV2's pre-activation BatchNorm after each block's sum) gives wrong values when
it writes one pixel in all: a batch of one whose map has come down to 1 x 1. ResNet50V2 int8 at 32
px: its scores off by 0.15 (a relative error of 0.65 from conv5's first block on; ONNX Runtime and
OpenVINO's static model agree to 1e-3); a batch of two, or a 2 x 1 map, and float graphs are right.
So an int8 request of one image no larger than ONE_PIXEL_SIDE each way (a 1 x 1 map after a
network's 32-fold stride) runs on a model compiled for its exact shape at once, and a batch of such
images is never cut into pieces of one (tests/test_engine.py reproduces it on a small network).
"""

from __future__ import annotations

from collections import Counter, OrderedDict

import numpy as np

from anyshape.engine.batch_split import one_per_core, pieces

HINTS = {"fp32": "f32", "bf16": "bf16", "int8": "f32"}
STATIC_AFTER = 2  # a shape's second batch compiles a model for exactly that shape
STATIC_MODELS = 2  # static models kept (each a compiled model of its own), the least recently used dropped
# A graph larger than this gets no static model: each compiled model held about twice the graph's
# size in memory (ConvNeXtBase, a 0.35 GB graph, bf16: the static latency model +0.85 GB, the
# static streams' +0.70 GB, beside the dynamic two), so ConvNeXtLarge / XLarge, VGG16 with its
# head and the like keep their two dynamic models only.
STATIC_MAX_GRAPH_BYTES = 400 * 2**20
_SHAPES_COUNTED = 64  # shapes counted towards STATIC_AFTER before the count starts over
# OpenVINO's per-node counters (PERF_COUNT) in every model compiled while this is set: what
# `OpenVinoBackend.profile` reads (benchmarks/profile_openvino.py sets it); off, they cost time.
PERF_COUNT = False
# An int8 request of one image at most this many pixels high and wide runs on a static model (the
# module's doc: the 1 x 1 map OpenVINO's dynamic int8 model gets wrong; 32: the largest total stride
# of the family, so any input that could leave one pixel)
ONE_PIXEL_SIDE = 32


class OpenVinoBackend:
    name = "openvino"

    def __init__(
        self,
        graph: bytes,
        *,
        threads: int,
        precision: str = "fp32",
        float_remainder: str = "fp32",
        data_format: str = "channels_last",
    ):
        import openvino as ov  # ImportError -> the caller falls back

        self.threads = threads
        self._graph = graph  # the caller's bytes (GraphModel.graph): kept for the later compiles
        self._core = ov.Core()
        self._hint = "bf16" if precision == "int8" and float_remainder == "bf16" else HINTS[precision]
        self._compiled = self._compile("LATENCY")
        self._request = self._compiled.create_infer_request()
        self._n_outputs = len(self._compiled.outputs)
        self._streams: list | None = None  # one request per stream, made by _stream_requests
        self._streams_compiled = None  # (kept with its requests)
        self._int8 = precision == "int8"
        self._hw_axes = (2, 3) if data_format == "channels_first" else (1, 2)  # of a batch's shape
        # whether shapes that come back get static models: not for a large graph; for an int8 one,
        # static_shapes_help, asked when a shape first comes back
        self._static_ok: bool | None = None if len(graph) <= STATIC_MAX_GRAPH_BYTES else False
        self._seen: Counter = Counter()  # (hint, shape) -> batches run on the dynamic model
        self._static: OrderedDict = OrderedDict()  # (hint, shape) -> (compiled model, its requests)
        self._ran: list = []  # the requests that ran the last batch's pieces (`profile`)

    def _compile(self, hint: str, shape: tuple | None = None, model=None):
        """The graph (or `model`, read from it) compiled with `hint`: "LATENCY", each layer split
        across the cores, or "THROUGHPUT", a one-thread stream per core; for exactly `shape`, its
        input shift moved first (`input_shift_first`), or with N, H, W dynamic."""
        if model is None:
            model = self._core.read_model(self._graph)  # the ONNX bytes (weights inside)
        if shape is not None:
            model.reshape(list(shape))
            input_shift_first(model)
        config = {
            "INFERENCE_PRECISION_HINT": self._hint,
            "PERFORMANCE_HINT": hint,
            "INFERENCE_NUM_THREADS": self.threads,
            **({"NUM_STREAMS": self.threads} if hint == "THROUGHPUT" else {}),
            **({"PERF_COUNT": True} if PERF_COUNT else {}),
        }
        return self._core.compile_model(model, "CPU", config)

    def _requests(self, compiled, hint: str) -> list:
        """A request per stream of `compiled` (one for "LATENCY")."""
        return [compiled.create_infer_request() for _ in range(self.threads if hint == "THROUGHPUT" else 1)]

    def _stream_requests(self) -> list:
        if self._streams is None:
            self._streams_compiled = self._compile("THROUGHPUT")
            self._streams = self._requests(self._streams_compiled, "THROUGHPUT")
        return self._streams

    def _tiny_images(self, shape: tuple) -> bool:
        """Whether a batch of `shape` holds images of an int8 graph at most ONE_PIXEL_SIDE each way."""
        h, w = (shape[axis] for axis in self._hw_axes)
        return self._int8 and h <= ONE_PIXEL_SIDE and w <= ONE_PIXEL_SIDE

    def _one_pixel(self, shape: tuple) -> bool:
        """Whether a request of `shape` is one the dynamic int8 model may get wrong (the module's
        doc): one image of an int8 graph, both sides at most ONE_PIXEL_SIDE."""
        return shape[0] == 1 and self._tiny_images(shape)

    def _came_enough(self, key: tuple) -> bool:
        """Counts a request of `key` (hint, shape); whether that makes STATIC_AFTER (its count then
        ends). Many shapes with few repeats start the count over, so it stays bounded."""
        if len(self._seen) >= _SHAPES_COUNTED and key not in self._seen:
            self._seen.clear()
        self._seen[key] += 1
        if self._seen[key] < STATIC_AFTER:
            return False
        del self._seen[key]
        return True

    def _static_requests(self, hint: str, shape: tuple) -> list | None:
        """The requests of the model compiled for exactly `shape` (with `hint`), compiling it when
        the shape comes for the STATIC_AFTER-th time, or at once where the dynamic model may be wrong
        (`_one_pixel`); None while it has not, or never will."""
        key = (hint, tuple(int(d) for d in shape))
        if key in self._static:
            self._static.move_to_end(key)
            return self._static[key][1]
        at_once = self._one_pixel(key[1])
        if not at_once and (self._static_ok is False or not self._came_enough(key)):
            return None
        model = self._core.read_model(self._graph)
        if self._static_ok is None and not at_once:
            self._static_ok = not self._int8 or static_shapes_help(model)
            if not self._static_ok:
                return None
        compiled = self._compile(hint, key[1], model)
        self._static[key] = (compiled, self._requests(compiled, hint))
        while len(self._static) > STATIC_MODELS:
            self._static.popitem(last=False)
        return self._static[key][1]

    def __call__(self, batch: np.ndarray) -> list:
        n = batch.shape[0]
        if n <= 1 or self.threads <= 1 or self._tiny_images(batch.shape):  # (tiny: not in pieces of one)
            # Without copies in OpenVINO: the request reads the batch where it is (Predictor hands a
            # contiguous float32 array) and its outputs are views of the request's own buffers, which
            # the next call overwrites, so each is copied once here. OpenVINO's default copies the
            # input in and the outputs out (then np.array copied them again): measured 5 to 10 % of
            # MobileNetV3Large's time at 224 batch 1 and 160x320 batch 16 on 2 Zen 4 cores.
            request = (self._static_requests("LATENCY", batch.shape) or [self._request])[0]
            result = request.infer({0: batch}, share_inputs=True, share_outputs=True)
            self._ran = [request]
            return [np.array(result[i], copy=True) for i in range(self._n_outputs)]
        cut = [batch[piece] for piece in pieces(n, self.threads)]
        static = None
        if all(c.shape == cut[0].shape for c in cut):  # one shape: one static model runs every piece
            static = self._static_requests("THROUGHPUT", cut[0].shape)
        requests = self._ran = self._side_by_side(cut, static)
        # one copy of each output: the pieces' views of the requests' buffers joined
        return [np.concatenate([r.get_output_tensor(i).data for r in requests]) for i in range(self._n_outputs)]

    def _side_by_side(self, batches: list, requests: list | None = None) -> list:
        """Runs up to one batch per stream at once (of the dynamic streams' model, or on `requests`);
        returns their requests, done (their outputs are valid until a request runs again)."""
        requests = (requests or self._stream_requests())[: len(batches)]
        started = []
        try:
            for request, batch in zip(requests, batches):
                request.start_async({0: batch}, share_inputs=True)
                started.append(request)
        finally:
            for request in started:  # every started request ends before its batch can be freed
                request.wait()
        return requests

    def run_many(self, batches: list) -> list:
        if not one_per_core(batches, self.threads) or any(self._one_pixel(b.shape) for b in batches):
            return [self(b) for b in batches]  # each split across the cores (or on its static model)
        outs = []
        for start in range(0, len(batches), self.threads):  # small batches side by side, one per stream
            self._ran = self._side_by_side(batches[start : start + self.threads])
            for request in self._ran:
                outs.append([np.array(request.get_output_tensor(i).data, copy=True) for i in range(self._n_outputs)])
        return outs

    def profile(self) -> list[dict]:
        """OpenVINO's counters for the last batch (or the last side-by-side batches of `run_many`),
        run on models compiled while PERF_COUNT was set ([] otherwise): a row per node of the compiled
        model that ran, its time summed over the requests that ran the pieces, in the model's order:
        {"node": its name, "type": OpenVINO's layer type ("Convolution", "Reorder", "Subgraph", ...),
        "precision": what it computed in ("u8"/"i8": int8, "bf16", "f32"), "kernel": the
        implementation ("brgconv_avx512_1x1_I8", ...), "ms", "layers": the graph's layers fused
        into it}."""
        if not self._ran:
            return []
        compiled = self._ran[0].get_compiled_model()  # every piece of a batch runs on one model
        if compiled.get_property("PERF_COUNT") != "YES":  # a string, "YES" or "NO"
            return []
        nodes = {op.get_friendly_name(): op.get_rt_info() for op in compiled.get_runtime_model().get_ordered_ops()}
        rows: dict[str, dict] = {}
        for request in self._ran:
            for info in request.get_profiling_info():
                facts = nodes.get(info.node_name)
                row = rows.setdefault(
                    info.node_name,
                    {
                        "node": info.node_name,
                        "type": _rt_text(facts, "layerType") or info.node_type,
                        "precision": _rt_text(facts, "runtimePrecision"),
                        "kernel": info.exec_type,
                        "ms": 0.0,
                        "layers": _rt_text(facts, "originalLayersNames"),
                    },
                )
                row["ms"] += info.real_time.total_seconds() * 1e3
        return list(rows.values())

    def close(self) -> None:
        self._request = self._streams = self._streams_compiled = None
        self._static.clear()
        self._ran = []


def _rt_text(info, key: str) -> str:
    """A runtime model node's fact `key` (its rt_info) as text; "" when it has none."""
    if info is None or key not in info:
        return ""
    value = info[key]
    return str(value.astext() if hasattr(value, "astext") else value.value)


def static_shapes_help(model) -> bool:
    """Whether models compiled for exact shapes run an int8 graph faster than the dynamic one (the
    module's measurements; a float graph's always did): yes, but with a strided 1x1 convolution,
    which OpenVINO cuts out of the int8 chain for a static shape (ResNet50: 0.75x). `model` is the
    ov.Model read from the graph."""
    for op in model.get_ordered_ops():
        if op.get_type_name() != "Convolution":
            continue
        kernel = op.input(1).get_partial_shape()
        strided = any(s > 1 for s in op.get_attributes()["strides"])
        if strided and kernel.is_static and all(d == 1 for d in kernel.to_shape()[2:]):
            return False
    return True


def input_shift_first(model) -> None:
    """In `model` (read from the graph, reshaped to a static shape), an input read by a Transpose
    to NCHW and then by a constant Add (the per-channel shift `onnx_rewrites` leaves of a folded
    Rescaling or Normalization) is shifted first, in NHWC, and transposed after: the same values,
    and OpenVINO fuses the Transpose with its Reorder to the convolution's layout (the module's
    measurements). Any other input is left as it is."""
    import openvino.opset13 as ops

    parameters = model.get_parameters()
    if len(parameters) != 1:
        return
    parameter = parameters[0]
    readers = list(parameter.output(0).get_target_inputs())
    transpose = readers[0].get_node() if len(readers) == 1 else None
    if transpose is None or transpose.get_type_name() != "Transpose":
        return
    order = transpose.input_value(1).get_node()
    if order.get_type_name() != "Constant" or list(order.get_data()) != [0, 3, 1, 2]:
        return
    readers = list(transpose.output(0).get_target_inputs())
    add = readers[0].get_node() if len(readers) == 1 else None
    if add is None or add.get_type_name() != "Add" or readers[0].get_index() != 0:
        return
    constant = add.input_value(1).get_node()
    if constant.get_type_name() != "Constant":
        return
    shift = constant.get_data()
    channels = parameter.get_partial_shape()[3]
    if (
        shift.dtype != np.float32
        or parameter.get_element_type().to_dtype() != np.float32
        or shift.ndim != 4
        or shift.shape[0] != 1
        or shift.shape[2:] != (1, 1)
        or not channels.is_static
    ):
        return
    if shift.shape[1] not in (1, channels.get_length()):
        return
    shifted = ops.add(parameter.output(0), ops.constant(np.ascontiguousarray(shift.reshape(1, 1, 1, -1))))
    transpose.input(0).replace_source_output(shifted.output(0))
    add.output(0).replace(transpose.output(0))
