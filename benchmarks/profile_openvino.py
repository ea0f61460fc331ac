"""Where anyshape's OpenVINO engines spend their time, by OpenVINO's own counters (issue 26, item 1:
which layers run in int8, which fall back to float, where reorders appear).

    .venv/bin/python benchmarks/profile_openvino.py                                   # the five, 224 batch 16
    .venv/bin/python benchmarks/profile_openvino.py --networks inception_v3 --points 299b16,299b1

For each network and point, anyshape's `auto` and `int8` engines, built as benchmarks/bench_family.py
builds its anyshape_auto and anyshape_int8 (pooled features, random weights; int8 calibrated on
random inputs, its float layers in bf16 where `quantize` tries that), run the batch twice (the
model a job at that size runs is then the one compiled for its shape) and then `--runs` times with
OpenVINO's per-node counters on (openvino_backend.PERF_COUNT, `OpenVinoBackend.profile`). Printed
per engine: milliseconds per image by kind of node (OpenVINO's layer type, the precision it
computed in, its kernel family), the convolutions and matmuls that ran in int8 and in float, and
the slowest nodes with the graph's layers fused into each. A batch split across the cores runs
its pieces side by side, so the counters (summed over the pieces) add up to CPU time, not wall
time: compare engines by their shares and totals, time them with bench_family.py. One process
runs everything: run it on a quiet machine.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from collections import defaultdict

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_family import _make_engine, parse_points  # noqa: E402  (the engines bench_family times)
from bench_inference import flags_line, machine  # noqa: E402  (the CPU lines)

NETWORKS = "resnet50,efficientnet_b0,mobilenet_v3_large,convnext_tiny,densenet121"
ENGINES = {"auto": "anyshape_auto", "int8": "anyshape_int8"}
WEIGHTED = ("Convolution", "FullyConnected", "MatMul", "GroupConvolution", "Deconvolution")


def profile(predictor, batch, runs: int) -> list[dict]:
    """`OpenVinoBackend.profile`'s rows for `batch`, their ms averaged over `runs` calls after two
    warm-up calls (the second compiles the model for the batch's shape)."""
    backend = predictor._backend
    for _ in range(2):
        predictor(batch)
    rows: dict[str, dict] = {}
    for _ in range(runs):
        predictor(batch)
        for row in backend.profile():
            kept = rows.setdefault(row["node"], {**row, "ms": 0.0})
            kept["ms"] += row["ms"] / runs
    return list(rows.values())


def kernel_family(kernel: str) -> str:
    """ "brgconv_avx512_1x1_I8" -> "brgconv"; "jit_avx512_bf16" -> "jit"."""
    return kernel.split("_")[0] if kernel else "-"


def report(rows: list[dict], images: int, top: int) -> None:
    total = sum(r["ms"] for r in rows) / images
    print(f"  {total:.3f} ms per image in the counters")
    kinds: dict[tuple, float] = defaultdict(float)
    for r in rows:
        kinds[(r["type"], r["precision"], kernel_family(r["kernel"]))] += r["ms"] / images
    print(f"  {'kind (layer type, precision, kernel)':45s} {'ms/image':>9s} {'share':>6s}")
    for (kind, precision, kernel), ms in sorted(kinds.items(), key=lambda item: -item[1]):
        if ms >= 0.0005:
            print(f"  {kind + ' ' + precision + ' ' + kernel:45s} {ms:9.3f} {100 * ms / total:5.1f}%")
    weighted = [r for r in rows if r["type"] in WEIGHTED]
    int8 = [r for r in weighted if r["precision"] in ("u8", "i8")]
    floats = [r for r in weighted if r["precision"] not in ("u8", "i8")]
    print(
        f"  convolutions and matmuls: {len(int8)} in int8 ({sum(r['ms'] for r in int8) / images:.3f} ms/image), "
        f"{len(floats)} in float ({sum(r['ms'] for r in floats) / images:.3f} ms/image)"
    )
    reorders = [r for r in rows if r["type"] == "Reorder" and r["ms"] > 0]
    print(f"  reorders that ran: {len(reorders)} ({sum(r['ms'] for r in reorders) / images:.3f} ms/image)")
    print(f"  the {top} slowest nodes: ms/image, type, precision, kernel, the graph's layers in it")
    for r in sorted(rows, key=lambda r: -r["ms"])[:top]:
        print(f"  {r['ms'] / images:8.3f} {r['type']:14s} {r['precision']:5s} {r['kernel']:28s} {r['layers'][:110]}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--networks", default=NETWORKS, help=f"comma-separated (default {NETWORKS})")
    ap.add_argument("--points", default="224b16", help="HxWbB or SbB, comma-separated (default 224b16)")
    ap.add_argument("--engines", default="auto,int8", help="auto, int8 or both (default auto,int8)")
    ap.add_argument("--runs", type=int, default=5, help="profiled calls per point, averaged (default 5)")
    ap.add_argument("--top", type=int, default=15, help="slowest nodes listed per engine (default 15)")
    args = ap.parse_args()
    engines = [e.strip() for e in args.engines.split(",") if e.strip()]
    if set(engines) - set(ENGINES) or not engines:
        ap.error(f"--engines: choose from {', '.join(ENGINES)}")
    if args.runs < 1 or args.top < 0:
        ap.error("--runs must be at least 1 and --top at least 0")
    points = parse_points(args.points)

    import numpy as np

    from anyshape.engine import openvino_backend

    openvino_backend.PERF_COUNT = True  # every model compiled from here on counts per node
    flags = flags_line()
    print(f"machine: {machine()}\nCPU flags: {flags or '(no amx, avx512_bf16 or avx512_vnni)'}")
    print(f"load average: {os.getloadavg()}", flush=True)
    for network in [n.strip() for n in args.networks.split(",") if n.strip()]:
        for engine_name in engines:
            with tempfile.TemporaryDirectory(prefix="profile-openvino-") as workdir:
                predictor, _ = _make_engine(ENGINES[engine_name], network, workdir)
                if predictor.engine != "openvino":
                    print(f"== {network} {engine_name}: runs on {predictor.engine} here, not OpenVINO: no counters")
                    continue
                for h, w, b in points:
                    x = np.random.default_rng(0).uniform(-1, 1, (b, h, w, 3)).astype("float32")
                    print(f"\n== {network} {h}x{w} batch {b}, {engine_name} ({predictor.precision})", flush=True)
                    report(profile(predictor, x, args.runs), b, args.top)
                predictor.close()


if __name__ == "__main__":
    main()
