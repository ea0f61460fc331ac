"""Images/s of anyshape's engine against its peers, in one run, printed as ratios.

    .venv/bin/python benchmarks/bench_inference.py            # the full grid (~10 min on 2 cores)
    .venv/bin/python benchmarks/bench_inference.py --quick    # 75 px only, a smoke run

Engines (all InceptionV3, include_top=False, global average pooling, random weights,
which do not change the speed):

  anyshape       anyshape.engine.Predictor, precision fp32 (ONNX Runtime on the graph anyshape emits), NHWC
  anyshape_auto  the same, precision="auto" (the engine and precision auto picks on this CPU)
  anyshape_bf16  precision="bf16" (OpenVINO bf16; absent on a CPU without avx512_bf16 / amx_bf16)
  anyshape_int8  an int8 GraphModel (anyshape.engine.quantize_graph, calibrated on 64 random
                 inputs: right for speed, not for accuracy), run on the engine auto picks for it,
                 its float layers in bf16 where `quantize` tries that on this CPU (AMX)
  keras_tf       keras.applications.InceptionV3 `predict_on_batch` on TensorFlow
  ort_tv         ONNX Runtime (default session options) on torchvision's inception_v3 exported
                 with torch.onnx (fc replaced by Identity: the pooled 2048-d features)
  tv_eager_cl    torchvision eager, channels_last memory format, torch.inference_mode
  tv_bf16_cl     the same under torch.autocast("cpu", dtype=torch.bfloat16)
  ov_default     OpenVINO with its default settings (bf16 where the CPU has it) on torchvision's export
  ov_f32         OpenVINO with INFERENCE_PRECISION_HINT f32 on torchvision's export

Each anyshape variant is compared with the best peer (every engine not named anyshape*).

Each engine lives in its own worker process (torchvision must not be imported after
TensorFlow in one process, and thread pools must not fight), but only one works at a time:
this process sends one timing request to each in turn, round after round, so a change in the
machine's load during the run hits every engine alike. Each point reports the best
(shortest) call of all rounds, the measure least disturbed by other processes on a shared
machine, and the median.

The fp32 ceiling is numpy's sgemm rate (a 2048^3 product, best of several, in GFLOP/s)
divided by 2 x the model's multiply-accumulates per image (anyshape.explain): the rate a
perfect implementation would reach if every convolution ran at BLAS speed.

On a shared machine every engine's rate swings with the other processes' load (the run prints
the load average): compare the ratios, and prefer runs started on a quiet machine. As root,
`nice -n -10 .venv/bin/python benchmarks/bench_inference.py` lets other processes disturb all
engines less.

End to end: `anyshape.engine.predict_paths` (what `anyshape predict` runs) over a folder of
JPEG photos at 299 px, against the same engine's rate on ready batches, in the same worker.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time

ANYSHAPE = ("anyshape", "anyshape_auto", "anyshape_bf16", "anyshape_int8")
PEERS = ("keras_tf", "ort_tv", "tv_eager_cl", "tv_bf16_cl", "ov_default", "ov_f32")
ENGINES = ANYSHAPE + PEERS
GRID = [(299, 16), (299, 1), (150, 16), (150, 1), (75, 16), (75, 1)]


# ---------------------------------------------------------------------------------------------
# Worker side: one engine per process, answering timing requests on stdin
# ---------------------------------------------------------------------------------------------


def _make_engine(name: str, workdir: str):
    """Returns run(batch_nchw_or_nhwc_array) and the layout it wants ("nchw" or "nhwc")."""
    import numpy as np

    if name in ("ort_tv", "tv_eager_cl", "tv_bf16_cl", "ov_default", "ov_f32"):
        import torch
        import torchvision

        model = torchvision.models.inception_v3(weights=None, aux_logits=False, init_weights=False).eval()
        model.fc = torch.nn.Identity()
        if name in ("tv_eager_cl", "tv_bf16_cl"):
            model = model.to(memory_format=torch.channels_last)
            bf16 = name == "tv_bf16_cl"

            def run(x):
                with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                    t = torch.from_numpy(x).contiguous(memory_format=torch.channels_last)
                    return model(t).float().numpy()

            return run, "nchw"
        path = os.path.join(workdir, "torchvision_inception_v3.onnx")
        torch.onnx.export(
            model,
            torch.zeros(1, 3, 299, 299),
            path,
            input_names=["input"],
            output_names=["features"],
            dynamic_axes={"input": {0: "batch", 2: "height", 3: "width"}},
            opset_version=17,
            dynamo=False,
        )
        if name.startswith("ov_"):
            import openvino as ov

            config = {"INFERENCE_PRECISION_HINT": "f32"} if name == "ov_f32" else {}  # else OpenVINO's defaults
            compiled = ov.Core().compile_model(path, "CPU", config)
            request = compiled.create_infer_request()
            return (lambda x: request.infer({0: x})[0]), "nchw"
        import onnxruntime as ort

        session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])  # default options
        return (lambda x: session.run(None, {"input": x})[0]), "nchw"

    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    if name == "keras_tf":
        import keras

        model = keras.applications.InceptionV3(
            weights=None, include_top=False, pooling="avg", input_shape=(None, None, 3)
        )
        return (lambda x: np.asarray(model.predict_on_batch(x))), "nhwc"
    if name.startswith("anyshape"):
        import dataclasses

        from anyshape import engine
        from anyshape.engine.quantize import bf16_remainder_for, quantize_graph
        from anyshape.inception_v3 import InceptionV3

        model = InceptionV3(weights=None, include_top=False, pooling="avg")
        if name == "anyshape":
            return engine.Predictor(model, engine="onnxruntime", precision="fp32"), "nhwc"
        if name == "anyshape_auto":
            return engine.Predictor(model, precision="auto"), "nhwc"
        if name == "anyshape_bf16":
            return engine.Predictor(model, precision="bf16"), "nhwc"
        rng = np.random.default_rng(0)
        calibration = [rng.uniform(-1, 1, (16, 299, 299, 3)).astype("float32") for _ in range(4)]
        graph = quantize_graph(engine.GraphModel.from_keras(model), calibration)
        # its float layers in bf16 where `quantize` tries that on this CPU (with AMX), as bench_family's
        layers = "bf16" if bf16_remainder_for(graph.architecture) else "fp32"
        return engine.Predictor(dataclasses.replace(graph, float_remainder=layers), precision="auto"), "nhwc"
    raise ValueError(name)


def _end_to_end(predictor, workdir: str, count: int) -> dict:
    """predict_paths over `count` JPEG photos at 299 px vs the engine on ready 299 px batches."""
    import numpy as np
    from PIL import Image

    from anyshape import engine

    folder = os.path.join(workdir, "photos")
    os.makedirs(folder, exist_ok=True)
    photos = []
    try:
        import skimage.data as sd

        photos += [sd.astronaut(), sd.coffee(), sd.chelsea(), sd.rocket()]
    except ImportError:
        pass
    try:
        from sklearn.datasets import load_sample_images

        photos += list(load_sample_images().images)
    except ImportError:
        pass
    if not photos:
        return {"skipped": "needs scikit-image or scikit-learn for photos"}
    for i in range(count):
        image = photos[i % len(photos)]
        if i // len(photos) % 2:
            image = image[:, ::-1]  # a different file, same content
        Image.fromarray(np.ascontiguousarray(image)).save(os.path.join(folder, f"photo_{i:03d}.jpg"), quality=90)
    engine.predict_paths(predictor, [folder], size=299, top=5)  # warm-up (shape planning, page cache)
    x = np.random.default_rng(0).uniform(-1, 1, (16, 299, 299, 3)).astype("float32")
    predictor(x)
    e2e = ready = 0.0
    for _ in range(3):  # alternate, best of each: both see the same machine load
        start = time.perf_counter()
        _, summary = engine.predict_paths(predictor, [folder], size=299, top=5)
        e2e = max(e2e, summary.ok / (time.perf_counter() - start))
        start = time.perf_counter()
        for _ in range(count // 16):
            predictor(x)
        ready = max(ready, 16 * (count // 16) / (time.perf_counter() - start))
    return {"photos": count, "end_to_end": e2e, "engine": ready, "ratio": e2e / ready}


def worker(name: str) -> None:
    with tempfile.TemporaryDirectory(prefix=f"bench-{name}-") as workdir:  # the export and photos go with it
        _serve(name, workdir)


def _serve(name: str, workdir: str) -> None:
    import numpy as np

    out = sys.stdout
    try:
        run, layout = _make_engine(name, workdir)
    except Exception as e:  # e.g. bf16 on a CPU without it: reported, the run goes on without it
        print(json.dumps({"unavailable": f"{type(e).__name__}: {e}"}), file=out, flush=True)
        return
    what = f"{run.engine} {run.precision}" if hasattr(run, "precision") else name
    print(json.dumps({"ready": name, "what": what}), file=out, flush=True)
    inputs = {}
    for line in sys.stdin:
        req = json.loads(line)
        if req.get("cmd") == "e2e":
            print(json.dumps(_end_to_end(run, workdir, req["count"])), file=out, flush=True)
            continue
        hw, batch, calls = req["hw"], req["batch"], req["calls"]
        key = (hw, batch)
        if key not in inputs:
            shape = (batch, 3, hw, hw) if layout == "nchw" else (batch, hw, hw, 3)
            inputs[key] = np.random.default_rng(0).uniform(-1, 1, shape).astype("float32")
            for _ in range(2):  # warm-up: the first calls at a shape trace / plan (anyshape's OpenVINO
                run(inputs[key])  # engine compiles a model for a shape on its second batch)
        times = []
        for _ in range(calls):
            t = time.perf_counter()
            y = run(inputs[key])
            times.append(time.perf_counter() - t)
        assert np.asarray(y).shape == (batch, 2048), np.asarray(y).shape
        print(json.dumps({"times": times}), file=out, flush=True)


# ---------------------------------------------------------------------------------------------
# Orchestrator
# ---------------------------------------------------------------------------------------------


def sgemm_gflops(n: int = 2048, repeats: int = 25) -> float:
    import numpy as np

    a = np.random.default_rng(0).standard_normal((n, n), dtype=np.float32)
    b = np.random.default_rng(1).standard_normal((n, n), dtype=np.float32)
    a @ b
    best = min(_timed(lambda: a @ b) for _ in range(repeats))
    return 2 * n**3 / best / 1e9


def _timed(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


class Worker:
    """One engine in a process of its own: `script --worker NAME *args` (this script by default;
    bench_family.py's workers take their network)."""

    def __init__(self, name: str, *args: str, script: str = __file__):
        env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", KERAS_BACKEND="tensorflow")
        self.name = name
        self.proc = subprocess.Popen(
            [sys.executable, script, "--worker", name, *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            env=env,
        )

    def wait_ready(self) -> dict:
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"worker {self.name} failed to start (run it with --worker {self.name} to see why)")
        return json.loads(line)

    def ask(self, **req) -> dict:
        self.proc.stdin.write(json.dumps(req) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"worker {self.name} died")
        return json.loads(line)

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait(timeout=60)


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    import numpy as np
    import onnxruntime

    return (
        f"{cpu}, {cores} cores, Python {platform.python_version()}, numpy {np.__version__}, "
        f"onnxruntime {onnxruntime.__version__}"
    )


def flags_line(extra: tuple = ()) -> str:
    """This CPU's flags that decide anyshape's precisions (AMX, AVX512-BF16, VNNI; and `extra`)."""
    from anyshape.engine.precision import cpu_flags

    wanted = ("amx", "avx512_bf16", "avx512_vnni", *extra)
    return " ".join(sorted(f for f in cpu_flags() if f.startswith(wanted)))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--worker", choices=ENGINES, help=argparse.SUPPRESS)
    ap.add_argument("--quick", action="store_true", help="75 px only, fewer rounds")
    ap.add_argument("--rounds", type=int, default=5, help="timing rounds per point (default 5)")
    ap.add_argument("--seconds", type=float, default=1.2, help="target seconds per engine per round")
    ap.add_argument("--photos", type=int, default=64, help="JPEG photos for the end-to-end run (0: skip)")
    ap.add_argument("--json", default=None, help="also write the results to this JSON file")
    args = ap.parse_args()
    if args.worker:
        return worker(args.worker)

    from anyshape import explain

    grid = [p for p in GRID if p[0] == 75] if args.quick else GRID
    rounds = 2 if args.quick else args.rounds
    started = time.perf_counter()
    print(f"machine: {machine()}", flush=True)
    load_before = os.getloadavg()
    workers = [Worker(n) for n in ENGINES]  # start all (imports and exports run in parallel) ...
    ready = []
    for w in workers:
        answer = w.wait_ready()
        if "unavailable" in answer:
            print(f"{w.name}: unavailable ({answer['unavailable']})", flush=True)
            w.close()
        else:
            print(f"{w.name}: {answer['what']}", flush=True)
            ready.append(w)
    workers = ready
    names = [w.name for w in workers]
    ours = [n for n in ANYSHAPE if n in names]
    peers = [n for n in PEERS if n in names]
    print(f"workers ready in {time.perf_counter() - started:.0f} s", flush=True)
    gflops = sgemm_gflops()
    print(f"numpy sgemm: {gflops:.0f} GFLOP/s", flush=True)

    results = []
    for hw, batch in grid:
        macs = explain((hw, hw, 3), include_top=False, pooling="avg").macs
        ceiling = gflops * 1e9 / (2 * macs)
        times = {w.name: [] for w in workers}
        estimate = {}
        for w in workers:  # one probe call each: warm-up and an estimate of the call time
            probe = w.ask(hw=hw, batch=batch, calls=1)["times"][0]
            estimate[w.name] = max(probe, 1e-4)
        per_round = []
        for _ in range(rounds):  # ... round-robin, one engine at a time
            best_in_round = {}
            for w in workers:
                calls = max(1, min(50, int(args.seconds / estimate[w.name])))
                ts = w.ask(hw=hw, batch=batch, calls=calls)["times"]
                times[w.name] += ts
                best_in_round[w.name] = batch / min(ts)
            per_round.append(best_in_round)
        row = {"size": hw, "batch": batch, "macs": macs, "ceiling": ceiling}
        for name, ts in times.items():
            row[name] = batch / min(ts)
            row[name + "_median"] = batch / statistics.median(ts)
        best_peer = max(peers, key=lambda n: row[n])
        row["best_peer"] = best_peer
        for n in ours:
            row[f"{n}_vs_best_peer"] = row[n] / row[best_peer]
            # the same ratio within each round (engines timed back to back), median over rounds:
            # less sensitive to load that changes during the run
            row[f"{n}_vs_best_peer_paired"] = statistics.median(r[n] / max(r[p] for p in peers) for r in per_round)
        row["vs_best_peer"], row["vs_best_peer_paired"] = (
            row["anyshape_vs_best_peer"],
            row["anyshape_vs_best_peer_paired"],
        )
        row["of_ceiling"] = row["anyshape"] / ceiling
        results.append(row)
        print(
            f"{hw:>3} px b{batch:<2}: "
            + "  ".join(f"{n} {row[n]:.1f}" for n in names)
            + f"  ceiling {ceiling:.1f}  -> best peer {best_peer}; "
            + ", ".join(
                f"{n} {row[n + '_vs_best_peer']:.2f}x (paired {row[n + '_vs_best_peer_paired']:.2f}x)" for n in ours
            ),
            flush=True,
        )

    e2e = None
    if args.photos and not args.quick and "anyshape" in names:
        e2e = workers[names.index("anyshape")].ask(cmd="e2e", count=args.photos)
    for w in workers:
        w.close()

    print()
    print(f"InceptionV3 features (include_top=False, avg pooling), images/s, best of {rounds} rounds")
    print(f"machine: {machine()}")
    print(f"CPU flags: {flags_line()}")
    print(
        "| size | batch | "
        + " | ".join(names)
        + " | fp32 ceiling | "
        + " | ".join(f"{n} / best peer (paired)" for n in ours)
        + " |"
    )
    print("|---" * (3 + len(names) + len(ours)) + "|")
    for r in results:
        print(
            f"| {r['size']} | {r['batch']} | "
            + " | ".join(f"{r[n]:.1f}" for n in names)
            + f" | {r['ceiling']:.1f} | "
            + " | ".join(f"{r[n + '_vs_best_peer']:.2f}x ({r[n + '_vs_best_peer_paired']:.2f}x)" for n in ours)
            + " |"
        )
    if e2e:
        if "skipped" in e2e:
            print(f"end to end: skipped ({e2e['skipped']})")
        else:
            print(
                f"end to end: predict over {e2e['photos']} JPEG photos at 299 px: {e2e['end_to_end']:.1f} img/s, "
                f"engine on ready batches {e2e['engine']:.1f} img/s: {100 * e2e['ratio']:.0f}%"
            )
    load_after = os.getloadavg()
    print(
        f"load average (1 min) before/after: {load_before[0]:.1f} / {load_after[0]:.1f} "
        f"(above ~0.5 other processes shared the cores: compare ratios only)"
    )
    print(f"total time {time.perf_counter() - started:.0f} s")
    if args.json:
        with open(args.json + ".tmp", "w") as f:
            json.dump(
                {
                    "machine": machine(),
                    "load_average": [load_before[0], load_after[0]],
                    "sgemm_gflops": gflops,
                    "grid": results,
                    "end_to_end": e2e,
                },
                f,
                indent=2,
            )
        os.replace(args.json + ".tmp", args.json)


if __name__ == "__main__":
    main()
