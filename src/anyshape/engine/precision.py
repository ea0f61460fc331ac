"""Which engine and numeric precision to run: CPU flags in, a decision out (a pure function).

`choose(requested_engine, requested_precision, flags=..., ...)` is what `Predictor` asks; the CPU
flags come from /proc/cpuinfo (`cpu_flags()`), but tests pass their own, so the rule can be
checked for any CPU.

The rule for `precision="auto"` (measured with benchmarks/bench_inference.py, see README):

* bf16 only where the CPU computes it natively: `amx_bf16` (Intel AMX tiles) or `avx512_bf16`
  (Intel Cooper Lake+, AMD Zen 4+). Never emulated: without these flags auto stays fp32.
* bf16 runs on OpenVINO (ONNX Runtime's CPU provider has no bf16 convolutions). With AMX,
  OpenVINO bf16 is several times ONNX Runtime fp32; with avx512_bf16 but no AMX (AMD Zen 4)
  it was measured faster than ONNX Runtime fp32 too, so auto takes it there as well.
* Without native bf16, auto is fp32 on ONNX Runtime: there OpenVINO f32 was not faster than
  ONNX Runtime (AMD Zen 3; about equal on Zen 4), so auto is never slower than the fp32 ONNX
  Runtime engine.
* int8 is never picked by auto for a float model: only when asked for (`precision="int8"`) or
  when the model file is itself quantized (`anyshape quantize`), because int8 changes results
  more than bf16 does and needs calibration on the user's images.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from anyshape.errors import ParameterError

PRECISIONS = ("auto", "fp32", "bf16", "int8")
NATIVE_BF16_FLAGS = ("amx_bf16", "avx512_bf16")


def cpu_flags(cpuinfo: str | Path = "/proc/cpuinfo") -> frozenset:
    """The CPU feature flags of this machine (the `flags` line of /proc/cpuinfo); empty if unknown."""
    try:
        text = Path(cpuinfo).read_text()
    except OSError:
        return frozenset()
    for line in text.splitlines():
        if line.startswith("flags"):
            return frozenset(line.split(":", 1)[1].split())
    return frozenset()


def native_bf16(flags) -> bool:
    """True when the CPU computes bf16 in hardware (AMX or AVX512_BF16)."""
    return any(f in flags for f in NATIVE_BF16_FLAGS)


@dataclass(frozen=True)
class Choice:
    engine: str  # "onnxruntime" | "openvino" | "keras"
    precision: str  # "fp32" | "bf16" | "int8"
    reason: str


def choose(engine: str, precision: str, *, flags, available: tuple, quantized: bool = False) -> Choice:
    """The engine and precision to run.

    Args:
        engine: what the user asked: "auto", "onnxruntime", "openvino" or "keras".
        precision: what the user asked: "auto", "fp32", "bf16" or "int8".
        flags: the CPU flags (see `cpu_flags`).
        available: the engines that can run this model here, fastest fp32 first, e.g.
            ("onnxruntime", "openvino", "keras").
        quantized: the model is an int8 file written by `anyshape quantize`.

    Raises:
        ValueError: the request cannot be met (what, why, and what to do).
    """
    if precision not in PRECISIONS:
        raise ParameterError(
            "{precision} must be one of {choices}, got {value!r}", choices=", ".join(PRECISIONS), value=precision
        )
    if quantized:
        return _choose_quantized(engine, precision, available)
    if precision == "int8":
        raise ParameterError(
            "int8 needs a model calibrated on your images: {python:anyshape.engine.quantize(model, "
            "calibrate=FOLDER, out=FILE.onnx)}{cli:run `anyshape quantize MODEL --calibrate FOLDER -o FILE.onnx`}, "
            "then pass {model_path=FILE.onnx}",
            parameter="precision",
        )
    bf16_ok = native_bf16(flags)
    if precision == "bf16":
        return _choose_bf16(engine, available, bf16_ok)
    if precision == "fp32":
        if engine == "auto":
            return Choice(available[0], "fp32", "asked for fp32")
        if engine not in available:
            raise ValueError(f"engine {engine!r} cannot run this model here")
        return Choice(engine, "fp32", "asked for fp32")
    # auto
    if engine in ("auto", "openvino") and bf16_ok and "openvino" in available:
        flag = "amx_bf16" if "amx_bf16" in flags else "avx512_bf16"
        return Choice("openvino", "bf16", f"auto: the CPU has {flag}, OpenVINO bf16 measured fastest")
    if engine == "auto":
        return Choice(
            available[0],
            "fp32",
            "auto: no native bf16 on this CPU" if not bf16_ok else "auto: OpenVINO is not installed",
        )
    if engine not in available:
        raise ValueError(f"engine {engine!r} cannot run this model here")
    return Choice(engine, "fp32", "auto: fp32 on the engine asked for")


def _choose_quantized(engine: str, precision: str, available: tuple) -> Choice:
    """An int8 file from `anyshape quantize`: int8 on OpenVINO or ONNX Runtime, nothing else."""
    if precision not in ("auto", "int8"):
        raise ParameterError(
            "the model file is quantized to int8; {precision=*} cannot run it: "
            "pass {precision='int8'} (or auto), or use the float model",
            precision=precision,
        )
    if engine == "keras":
        raise ParameterError("a quantized model file runs on onnxruntime or openvino, not keras: pass {engine='auto'}")
    for e in ("openvino", "onnxruntime") if engine == "auto" else (engine,):
        if e in available:
            return Choice(e, "int8", "the model file is quantized to int8")
    raise ValueError(
        f"a quantized model needs {'openvino or onnxruntime' if engine == 'auto' else engine}, "
        "which is not installed: pip install 'anyshape[fast]'"
    )


def _choose_bf16(engine: str, available: tuple, bf16_ok: bool) -> Choice:
    """precision="bf16" asked: OpenVINO on a CPU that runs bf16 natively, else refused."""
    if not bf16_ok:
        raise ParameterError(
            "this CPU has no native bf16 (neither avx512_bf16 nor amx_bf16 in /proc/cpuinfo), "
            "so bf16 would be emulated and slower: use {precision='fp32'} or auto"
        )
    if engine not in ("auto", "openvino"):
        raise ParameterError(
            "bf16 runs on the openvino engine only, not {value}: pass {engine='auto'} or openvino", value=engine
        )
    if "openvino" not in available:
        raise ValueError("bf16 needs OpenVINO, which is not installed: pip install 'anyshape[openvino]'")
    return Choice("openvino", "bf16", "asked for bf16; the CPU runs it natively")
