"""The ONNX Runtime backend: runs an ONNX graph (float or int8 QDQ) on the CPU provider.

Batches are split across the cores, each piece run by a single-threaded session call in its own
thread (`InferenceSession.run` is thread-safe and releases the GIL); a batch of one runs on a
second session that splits each layer across the cores instead (see `anyshape.engine`).
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np

from anyshape.engine.batch_split import one_per_core, pieces


def _session(data: bytes, threads: int):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.log_severity_level = 3
    return ort.InferenceSession(data, options, providers=["CPUExecutionProvider"])


class OrtBackend:
    name = "onnxruntime"

    def __init__(self, graph: bytes, *, threads: int, precision: str = "fp32"):
        import onnxruntime  # noqa: F401 (ImportError -> the caller falls back)

        if precision == "bf16":
            raise ValueError("ONNX Runtime's CPU provider has no bf16 convolutions; bf16 runs on openvino")
        self.threads = threads
        self._single = _session(graph, threads)
        self._shared = _session(graph, 1) if threads > 1 else self._single
        self._pool = ThreadPoolExecutor(threads, thread_name_prefix="anyshape-ort") if threads > 1 else None
        self._outputs = [o.name for o in self._single.get_outputs()]
        self._input = self._single.get_inputs()[0].name

    def _run(self, session, batch):
        return session.run(self._outputs, {self._input: batch})

    def __call__(self, batch: np.ndarray) -> list:
        n = batch.shape[0]
        if n <= 1 or self._pool is None:
            return self._run(self._single, batch)
        futures = [self._pool.submit(self._run, self._shared, batch[piece]) for piece in pieces(n, self.threads)]
        parts = [f.result() for f in futures]
        return [np.concatenate([p[i] for p in parts]) for i in range(len(self._outputs))]

    def run_many(self, batches: list) -> list:
        if self._pool is None or not one_per_core(batches, self.threads):
            return [self(b) for b in batches]  # each split across the cores
        return list(self._pool.map(lambda b: self._run(self._shared, b), batches))

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None
