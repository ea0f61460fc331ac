"""`bench`: images per second of each engine that can run a model here, and the fidelity of the
chosen precision against fp32 (the library twin of `anyshape bench`)."""

from __future__ import annotations

from dataclasses import dataclass, field

from anyshape.engine.graph_model import GraphModel
from anyshape.engine.predictor import Predictor, benchmark, fidelity, random_batches


@dataclass
class BenchReport:
    """What `bench` measured: `rates[batch][engine]` in images/s (engines in the order timed:
    Keras fp32, the fast engine at fp32, the engine and precision asked for), `fidelity` of the
    asked precision against fp32 (`top1_agreement`, `min_cosine`, `rows`) when they differ, and
    `no_fast_engine`, the reason when only Keras can run the model."""

    hw: tuple[int, int]
    threads: int
    engines: list[str]
    rates: dict[int, dict[str, float]] = field(default_factory=dict)
    fidelity: dict | None = None
    fidelity_of: str | None = None  # "openvino bf16" against
    fidelity_reference: str | None = None  # "onnxruntime fp32"
    no_fast_engine: str | None = None
    # an int8 file timed alone (no float model to compare with): the fidelity `quantize` measured
    # on its calibration images and stored in the file (GraphModel.fidelity), else None
    recorded_fidelity: dict | None = None


def bench(
    model,
    hw: tuple[int, int],
    *,
    batches=(1, 16),
    seconds: float = 3.0,
    engine: str = "auto",
    precision: str | None = None,
    sample: str | None = None,
) -> BenchReport:
    """Time `model` (a Keras model or a `GraphModel`) on random (H, W) = `hw` inputs at each of
    `batches`, `seconds` per engine and batch: Keras fp32, the fastest engine at fp32, and
    `engine` at `precision` (see `Predictor`). The fidelity of that precision against fp32 is
    measured on the images of the folder `sample` (up to 64), else on 32 random inputs; an int8
    file (a GraphModel) has no float model here, and reports the fidelity `quantize` recorded in it."""
    engines: dict[str, Predictor] = {}
    reference = None
    if not isinstance(model, GraphModel):
        engines["keras fp32"] = Predictor(model, engine="keras", precision="fp32")
        reference = Predictor(model, engine=engine if engine != "keras" else "auto", precision="fp32")
    fast = Predictor(model, engine=engine, precision=precision)
    no_fast = None
    if reference is not None and reference.engine != "keras":
        engines[f"{reference.engine} fp32"] = reference
    elif reference is not None:
        no_fast = reference.fallback_reason
    asked = f"{fast.engine} {fast.precision_text}"
    engines.setdefault(asked, fast)
    report = BenchReport(
        hw=(hw[0], hw[1]),
        threads=next(iter(engines.values())).threads,
        engines=list(engines),
        no_fast_engine=no_fast,
        recorded_fidelity=model.fidelity if isinstance(model, GraphModel) else None,
    )
    images = None  # read before any timing: a folder that cannot be used is refused at once
    if sample is not None:
        from anyshape.engine.quantize import calibration_batches

        images = calibration_batches(fast, sample, size=tuple(hw), limit=64)
    elif reference is not None:
        images = random_batches(fast, hw, 8, count=4)
    for b in batches:
        report.rates[b] = {name: benchmark(pr, hw, b, seconds=seconds) for name, pr in engines.items()}
    if images is not None and reference is not None and asked != f"{reference.engine} fp32":
        report.fidelity = fidelity(reference, fast, images)
        report.fidelity_of, report.fidelity_reference = asked, f"{reference.engine} fp32"
    return report
