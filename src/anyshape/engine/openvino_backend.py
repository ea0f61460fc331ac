"""The OpenVINO backend: compiles the ONNX graph that `anyshape.onnx_graph` emits (or an int8
QDQ graph from `anyshape quantize`) for the CPU, in f32 or bf16.

One compiled model serves every batch and image size (dynamic N, H, W): a model reshaped to the
exact input shape was measured no faster than the dynamic one (benchmarks/bench_inference.py),
so per-shape compilation and its cache are not worth their compile time.

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
"""

from __future__ import annotations

import numpy as np

from anyshape.engine.batch_split import one_per_core, pieces

HINTS = {"fp32": "f32", "bf16": "bf16", "int8": "f32"}


class OpenVinoBackend:
    name = "openvino"

    def __init__(self, graph: bytes, *, threads: int, precision: str = "fp32", float_remainder: str = "fp32"):
        import openvino as ov  # ImportError -> the caller falls back

        self.threads = threads
        self._graph = graph  # the caller's bytes (GraphModel.graph): kept for the streams' compile
        self._core = ov.Core()
        self._hint = "bf16" if precision == "int8" and float_remainder == "bf16" else HINTS[precision]
        self._compiled = self._compile("LATENCY")
        self._request = self._compiled.create_infer_request()
        self._n_outputs = len(self._compiled.outputs)
        self._streams: list | None = None  # one request per stream, made by _stream_requests
        self._streams_compiled = None  # (kept with its requests)

    def _compile(self, hint: str, **config):
        model = self._core.read_model(self._graph)  # the ONNX bytes (weights inside)
        config = {
            "INFERENCE_PRECISION_HINT": self._hint,
            "PERFORMANCE_HINT": hint,
            "INFERENCE_NUM_THREADS": self.threads,
            **config,
        }
        return self._core.compile_model(model, "CPU", config)

    def _stream_requests(self) -> list:
        if self._streams is None:
            compiled = self._compile("THROUGHPUT", NUM_STREAMS=self.threads)  # a thread per stream
            self._streams_compiled = compiled
            self._streams = [compiled.create_infer_request() for _ in range(self.threads)]
        return self._streams

    def __call__(self, batch: np.ndarray) -> list:
        n = batch.shape[0]
        if n <= 1 or self.threads <= 1:
            # Without copies in OpenVINO: the request reads the batch where it is (Predictor hands a
            # contiguous float32 array) and its outputs are views of the request's own buffers, which
            # the next call overwrites, so each is copied once here. OpenVINO's default copies the
            # input in and the outputs out (then np.array copied them again): measured 5 to 10 % of
            # MobileNetV3Large's time at 224 batch 1 and 160x320 batch 16 on 2 Zen 4 cores.
            result = self._request.infer({0: batch}, share_inputs=True, share_outputs=True)
            return [np.array(result[i], copy=True) for i in range(self._n_outputs)]
        requests = self._side_by_side([batch[piece] for piece in pieces(n, self.threads)])
        # one copy of each output: the pieces' views of the requests' buffers joined
        return [np.concatenate([r.get_output_tensor(i).data for r in requests]) for i in range(self._n_outputs)]

    def _side_by_side(self, batches: list) -> list:
        """Runs up to one batch per stream at once; returns their requests, done (their outputs
        are valid until a request runs again)."""
        requests = self._stream_requests()[: len(batches)]
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
        if not one_per_core(batches, self.threads):
            return [self(b) for b in batches]  # each split across the cores
        outs = []
        for start in range(0, len(batches), self.threads):  # small batches side by side, one per stream
            for request in self._side_by_side(batches[start : start + self.threads]):
                outs.append([np.array(request.get_output_tensor(i).data, copy=True) for i in range(self._n_outputs)])
        return outs

    def close(self) -> None:
        self._request = self._streams = self._streams_compiled = None
