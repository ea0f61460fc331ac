"""Images/s of anyshape's engine against its peers on five networks of the family (issue 26).

    .venv/bin/python benchmarks/bench_family.py                       # the full grid
    .venv/bin/python benchmarks/bench_family.py --networks resnet50 --points 224b1 --rounds 1  # smoke

Networks: resnet50, efficientnet_b0, mobilenet_v3_large, convnext_tiny, densenet121, each as
pooled features (include_top=False, global average pooling; torchvision's twin with its
classifier replaced by Identity), random weights (which do not change the speed).
Points: 224x224 batch 16, 224x224 batch 1, 160x320 batch 16 (`--points 224b16,224b1,160x320b16`).

Engines:
  anyshape_auto  anyshape.engine.Predictor(model, precision="auto") (the engine/precision auto picks here)
  anyshape_int8  anyshape.engine.quantize_graph (calibrated on 32 random inputs: right for speed,
                 not accuracy), run on the engine auto picks for it, its float layers in bf16
                 for the networks `quantize` tries that for (FAMILY_INT8's bf16_remainder: the file
                 runs them so where they kept its fidelity on the user's images)
  keras_tf       the same Keras model's `predict_on_batch` on TensorFlow
  tv_eager_cl    torchvision's twin, eager, channels_last, torch.inference_mode
  tv_bf16_cl     the same under torch.autocast("cpu", dtype=torch.bfloat16)
  ort_tv         ONNX Runtime (default session options) on the twin's torch.onnx export
  ov_default     OpenVINO with its default settings (bf16 where the CPU has it) on the same export

As in bench_inference.py (whose helpers this reuses): one worker process per engine, one network
at a time, timed round-robin (one engine at a time) so load changes hit every engine alike; each
point reports the best call of all rounds; anyshape's ratio is to the best peer (every engine
not named anyshape*). The machine is shared: compare ratios, prefer a quiet machine.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_inference import Worker, flags_line, machine  # noqa: E402  (the CPU line, one engine per process)

ANYSHAPE = ("anyshape_auto", "anyshape_int8")
PEERS = ("keras_tf", "tv_eager_cl", "tv_bf16_cl", "ort_tv", "ov_default")
ENGINES = ANYSHAPE + PEERS
NETWORKS = ("resnet50", "efficientnet_b0", "mobilenet_v3_large", "convnext_tiny", "densenet121")
POINTS = "224b16,224b1,160x320b16"


def parse_points(text: str) -> list[tuple[int, int, int]]:
    """ "224b16,160x320b16" -> [(224, 224, 16), (160, 320, 16)]."""
    out = []
    for item in text.split(","):
        size, _, batch = item.strip().partition("b")
        h, _, w = size.partition("x")
        out.append((int(h), int(w or h), int(batch or 1)))
    return out


def _torchvision_twin(network: str):
    """torchvision's model of the same network, its classifier cut so it returns pooled features."""
    import torch
    import torchvision

    model = getattr(torchvision.models, network)(weights=None).eval()
    if network == "resnet50":
        model.fc = torch.nn.Identity()
    elif network == "convnext_tiny":  # keep its LayerNorm2d + Flatten, drop the Linear
        model.classifier[2] = torch.nn.Identity()
    else:  # efficientnet_b0, mobilenet_v3_large, densenet121: classifier after the pooling
        model.classifier = torch.nn.Identity()
    return model


def _make_engine(name: str, network: str, workdir: str):
    """Returns run(batch) and the layout it wants ("nchw" or "nhwc")."""
    import numpy as np

    if name in ("tv_eager_cl", "tv_bf16_cl", "ort_tv", "ov_default"):
        import torch

        model = _torchvision_twin(network)
        if name in ("tv_eager_cl", "tv_bf16_cl"):
            model = model.to(memory_format=torch.channels_last)
            bf16 = name == "tv_bf16_cl"

            def run(x):
                with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                    t = torch.from_numpy(x).contiguous(memory_format=torch.channels_last)
                    return model(t).float().numpy()

            return run, "nchw"
        path = os.path.join(workdir, f"torchvision_{network}.onnx")
        torch.onnx.export(
            model,
            torch.zeros(1, 3, 224, 224),
            path,
            input_names=["input"],
            output_names=["features"],
            dynamic_axes={"input": {0: "batch", 2: "height", 3: "width"}},
            opset_version=17,
            dynamo=False,
        )
        if name == "ov_default":
            import openvino as ov

            request = ov.Core().compile_model(path, "CPU").create_infer_request()  # OpenVINO's defaults
            return (lambda x: request.infer({0: x})[0]), "nchw"
        import onnxruntime as ort

        session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])  # default options
        return (lambda x: session.run(None, {"input": x})[0]), "nchw"

    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    import anyshape
    from anyshape import engine

    model = anyshape.create_model(network, weights=None, include_top=False, pooling="avg", input_shape=(None, None, 3))
    if name == "keras_tf":
        return (lambda x: np.asarray(model.predict_on_batch(x))), "nhwc"
    if name == "anyshape_auto":
        return engine.Predictor(model, precision="auto"), "nhwc"
    if name == "anyshape_int8":
        import dataclasses

        from anyshape.engine.quantize import bf16_remainder_for, quantize_graph

        rng = np.random.default_rng(0)
        calibration = [rng.uniform(-1, 1, (16, 224, 224, 3)).astype("float32") for _ in range(2)]
        int8 = quantize_graph(engine.GraphModel.from_keras(model), calibration)
        layers = "bf16" if bf16_remainder_for(network) else "fp32"
        return engine.Predictor(dataclasses.replace(int8, float_remainder=layers)), "nhwc"
    raise ValueError(name)


def worker(name: str, network: str) -> None:
    with tempfile.TemporaryDirectory(prefix=f"bench-family-{name}-") as workdir:  # the export goes with it
        _serve(name, network, workdir)


def _serve(name: str, network: str, workdir: str) -> None:
    import numpy as np

    out = sys.stdout
    try:
        run, layout = _make_engine(name, network, workdir)
    except Exception as e:  # e.g. a peer that cannot export this network: reported, the run goes on
        print(json.dumps({"unavailable": f"{type(e).__name__}: {e}"}), file=out, flush=True)
        return
    what = f"{run.engine} {run.precision}" if hasattr(run, "precision") else name
    print(json.dumps({"ready": name, "what": what}), file=out, flush=True)
    inputs = {}
    for line in sys.stdin:
        req = json.loads(line)
        h, w, batch, calls = req["h"], req["w"], req["batch"], req["calls"]
        key = (h, w, batch)
        if key not in inputs:
            shape = (batch, 3, h, w) if layout == "nchw" else (batch, h, w, 3)
            inputs[key] = np.random.default_rng(0).uniform(-1, 1, shape).astype("float32")
            for _ in range(2):  # warm-up: the first calls at a shape trace / plan (anyshape's OpenVINO
                run(inputs[key])  # engine compiles a model for a shape on its second batch)
        times = []
        for _ in range(calls):
            t = time.perf_counter()
            y = run(inputs[key])
            times.append(time.perf_counter() - t)
        y = np.asarray(y)
        assert y.ndim == 2 and y.shape[0] == batch, y.shape
        print(json.dumps({"times": times, "features": int(y.shape[1])}), file=out, flush=True)


def bench_network(network: str, points, engines, rounds: int, seconds: float) -> list[dict]:
    workers = [Worker(n, "--networks", network, script=__file__) for n in engines]
    ready = []
    for w in workers:
        answer = w.wait_ready()
        if "unavailable" in answer:
            print(f"  {network} {w.name}: unavailable ({answer['unavailable']})", flush=True)
            w.close()
        else:
            print(f"  {network} {w.name}: {answer['what']}", flush=True)
            ready.append(w)
    names = [w.name for w in ready]
    ours = [n for n in ANYSHAPE if n in names]
    peers = [n for n in PEERS if n in names]
    rows = []
    for h, w_, batch in points:
        times: dict = {w.name: [] for w in ready}
        estimate = {w.name: max(w.ask(h=h, w=w_, batch=batch, calls=1)["times"][0], 1e-4) for w in ready}
        for _ in range(rounds):
            for w in ready:
                calls = max(1, min(50, int(seconds / estimate[w.name])))
                times[w.name] += w.ask(h=h, w=w_, batch=batch, calls=calls)["times"]
        row = {"network": network, "h": h, "w": w_, "batch": batch}
        row.update({n: batch / min(ts) for n, ts in times.items()})
        if peers:
            best = max(peers, key=lambda n: row[n])
            row["best_peer"] = best
            row.update({f"{n}_vs_best_peer": row[n] / row[best] for n in ours})
        rows.append(row)
        print(
            f"{network} {h}x{w_} b{batch}: "
            + "  ".join(f"{n} {row[n]:.1f}" for n in names)
            + (f"  -> best peer {row['best_peer']}; " if peers else "")
            + ", ".join(f"{n} {row[n + '_vs_best_peer']:.2f}x" for n in ours if n + "_vs_best_peer" in row),
            flush=True,
        )
    for w in ready:
        w.close()
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--worker", choices=ENGINES, help=argparse.SUPPRESS)
    ap.add_argument("--networks", default=",".join(NETWORKS), help=f"comma-separated (default {','.join(NETWORKS)})")
    ap.add_argument("--points", default=POINTS, help=f"HxWbB or SbB, comma-separated (default {POINTS})")
    ap.add_argument("--engines", default=",".join(ENGINES), help="comma-separated subset of the engines")
    ap.add_argument("--rounds", type=int, default=5, help="timing rounds per point (default 5)")
    ap.add_argument("--seconds", type=float, default=1.2, help="target seconds per engine per round")
    ap.add_argument("--json", default=None, help="also write the results to this JSON file")
    args = ap.parse_args()
    networks = [n.strip() for n in args.networks.split(",") if n.strip()]
    if args.worker:
        return worker(args.worker, networks[0])
    unknown = [n for n in networks if n not in NETWORKS]
    engines = [e.strip() for e in args.engines.split(",") if e.strip()]
    if unknown or set(engines) - set(ENGINES):
        ap.error(f"--networks: choose from {', '.join(NETWORKS)}; --engines: choose from {', '.join(ENGINES)}")
    points = parse_points(args.points)

    flags = flags_line(extra=("avx2",))
    print(f"machine: {machine()}\nCPU flags: {flags}\nload average: {os.getloadavg()}", flush=True)
    rows = []
    for network in networks:
        rows += bench_network(network, points, engines, args.rounds, args.seconds)

    names = [e for e in ENGINES if any(e in r for r in rows)]
    ours = [n for n in ANYSHAPE if n in names]
    print(f"\npooled features, random weights, images/s, best of {args.rounds} rounds")
    print(f"machine: {machine()}\nCPU flags: {flags}")
    print(
        "| network | size | batch | " + " | ".join(names) + " | " + " | ".join(f"{n} / best peer" for n in ours) + " |"
    )
    print("|---" * (3 + len(names) + len(ours)) + "|")
    for r in rows:
        print(
            f"| {r['network']} | {r['h']}x{r['w']} | {r['batch']} | "
            + " | ".join(f"{r[n]:.1f}" if n in r else "-" for n in names)
            + " | "
            + " | ".join(f"{r[n + '_vs_best_peer']:.2f}x" if n + "_vs_best_peer" in r else "-" for n in ours)
            + " |"
        )
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"machine": machine(), "flags": flags, "rows": rows}, f, indent=1)


if __name__ == "__main__":
    main()
