"""What one graph rewrite of `anyshape.onnx_graph` is worth: images/s of anyshape's engine on the
graph with every rewrite against the same graph without the one named (issue 26, item 4: a
rewrite stays only with a benchmark line that shows it wins).

    .venv/bin/python benchmarks/bench_rewrites.py                                  # fold_input_affine, four networks
    .venv/bin/python benchmarks/bench_rewrites.py --without fold_batch_norm --networks resnet50
    .venv/bin/python benchmarks/bench_rewrites.py --networks mobilenet_v3_small --points 64b1 --rounds 1  # smoke

Both graphs run in this one process on `engine.Predictor(graph, precision=...)` (default "auto":
the engine and precision auto picks here), pooled features (include_top=False, average
pooling), random weights. Rounds alternate the two (with, without) so load changes hit both
alike; each reports its best call per round, and the ratio is the median over rounds of the
ratio within a round ("paired"). Prefer a quiet machine.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from dataclasses import replace

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_family import parse_points  # noqa: E402
from bench_inference import machine  # noqa: E402

NETWORKS = "mobilenet_v3_large,efficientnet_b0,efficientnet_v2_b0,convnext_tiny"
POINTS = "224b16,224b1,160x320b16"


def _best_call(run, x, seconds: float) -> float:
    best, start = float("inf"), time.perf_counter()
    while True:
        t = time.perf_counter()
        run(x)
        best = min(best, time.perf_counter() - t)
        if time.perf_counter() - start >= seconds:
            return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--without", default="fold_input_affine", help="the rewrite left out of the second graph")
    ap.add_argument("--networks", default=NETWORKS, help=f"comma-separated (default {NETWORKS})")
    ap.add_argument("--points", default=POINTS, help=f"HxWbB or SbB, comma-separated (default {POINTS})")
    ap.add_argument("--precision", default="auto", help="the Predictor's precision (default auto)")
    ap.add_argument("--rounds", type=int, default=5, help="timing rounds per point (default 5)")
    ap.add_argument("--seconds", type=float, default=1.0, help="seconds per graph per round (default 1.0)")
    args = ap.parse_args()

    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    import numpy as np

    import anyshape
    from anyshape import engine
    from anyshape.onnx_graph import REWRITES, keras_to_onnx

    if args.without not in REWRITES:
        ap.error(f"--without: one of {', '.join(REWRITES)}")
    print(machine(), flush=True)
    for network in args.networks.split(","):
        model = anyshape.create_model(
            network, weights=None, include_top=False, pooling="avg", input_shape=(None, None, 3)
        )
        full = engine.GraphModel.from_keras(model)
        rest = [r for r in REWRITES if r != args.without]
        without = replace(full, graph=keras_to_onnx(model, optimize=rest).SerializeToString())
        runs = {"with": engine.Predictor(full, precision=args.precision)}
        runs["without"] = engine.Predictor(without, precision=args.precision)
        what = f"{runs['with'].engine} {runs['with'].precision}"
        for h, w, batch in parse_points(args.points):
            x = np.random.default_rng(0).uniform(0, 255, (batch, h, w, 3)).astype("float32")
            for run in runs.values():
                run(x)  # the first call at a shape plans
            best = {k: [] for k in runs}
            for _ in range(args.rounds):
                for k, run in runs.items():
                    best[k].append(_best_call(run, x, args.seconds))
            paired = statistics.median(b / a for a, b in zip(best["with"], best["without"]))
            rate = {k: batch / min(v) for k, v in best.items()}
            print(
                f"{network} {h}x{w} b{batch} ({what}): with {args.without} {rate['with']:.1f} img/s, "
                f"without {rate['without']:.1f} img/s -> {rate['with'] / rate['without']:.2f}x (paired {paired:.2f}x)",
                flush=True,
            )


if __name__ == "__main__":
    main()
