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
"""

from __future__ import annotations

import numpy as np

HINTS = {"fp32": "f32", "bf16": "bf16", "int8": "f32"}


class OpenVinoBackend:
    name = "openvino"

    def __init__(self, graph: bytes, *, threads: int, precision: str = "fp32", float_remainder: str = "fp32"):
        import openvino as ov  # ImportError -> the caller falls back

        self.threads = threads
        core = ov.Core()
        model = core.read_model(graph)  # the ONNX bytes (weights inside)
        config = {
            "INFERENCE_PRECISION_HINT": "bf16"
            if precision == "int8" and float_remainder == "bf16"
            else HINTS[precision],
            "PERFORMANCE_HINT": "LATENCY",
            "INFERENCE_NUM_THREADS": threads,
        }
        self._compiled = core.compile_model(model, "CPU", config)
        self._request = self._compiled.create_infer_request()
        self._n_outputs = len(self._compiled.outputs)

    def __call__(self, batch: np.ndarray) -> list:
        # Without copies in OpenVINO: the request reads the batch where it is (Predictor hands a
        # contiguous float32 array) and its outputs are views of the request's own buffers, which
        # the next call overwrites, so each is copied once here. OpenVINO's default copies the
        # input in and the outputs out (then np.array copied them again): measured 5 to 10 % of
        # MobileNetV3Large's time at 224 batch 1 and 160x320 batch 16 on 2 Zen 4 cores.
        result = self._request.infer({0: batch}, share_inputs=True, share_outputs=True)
        return [np.array(result[i], copy=True) for i in range(self._n_outputs)]

    def run_many(self, batches: list) -> list:
        return [self(b) for b in batches]

    def close(self) -> None:
        self._request = None
