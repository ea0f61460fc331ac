"""Training throughput: anyshape (Keras 3) against torchvision's inception_v3 on torch eager.

    .venv/bin/python benchmarks/bench_train.py [--sizes 75,150] [--channels 1] [--rounds 3]
        [--engines anyshape-tf,torch-cl,torch-nchw] [--steps 6]

Images/s of one training step (forward + backward + optimizer update, Adam, batch 32,
10 classes, random initialisation) at each size, for:

  anyshape-tf        what `anyshape train` runs: Keras fit on TensorFlow, compiled by
                     anyshape.training.Trainer (tf.function, no XLA)
  anyshape-tf-xla    the same with jit_compile=True (XLA; compiling takes minutes on 2 cores)
  anyshape-tf-spe8   steps_per_execution=8 (eight steps per tf.function call)
  anyshape-jax       Keras on the JAX backend (jit)
  torch-cl           torchvision.models.inception_v3, eager, channels_last memory format
  torch-nchw         the same in the default NCHW layout

Each engine is a worker process (Keras picks its backend once per process; torchvision must
not be imported after TensorFlow). The workers build and warm up their models first, then
the coordinator measures them in turns, round after round, so background load on this shared
machine falls on all of them alike; the table gives the median round and the ratio to
torch channels_last. Data is an in-memory batch (no input pipeline in the timing). torch workers run with
OMP_WAIT_POLICY=PASSIVE unless --omp-active: with spinning OpenMP threads torch training
collapses when the 2 cores are shared with other jobs (see _spawn).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

BATCH = 32
CLASSES = 10


# --------------------------------------------------------------------------------------------
# workers
# --------------------------------------------------------------------------------------------


def _torch_worker(sizes, channels, channels_last: bool):
    import torch
    import torchvision

    torch.manual_seed(0)
    steps = {}
    for size in sizes:
        model = torchvision.models.inception_v3(
            weights=None, aux_logits=False, init_weights=True, transform_input=False, num_classes=CLASSES
        )
        if channels != 3:  # the same first conv with another number of input channels
            model.Conv2d_1a_3x3.conv = torch.nn.Conv2d(channels, 32, kernel_size=3, stride=2, bias=False)
        model.train()
        x = torch.rand(BATCH, channels, size, size)
        y = torch.randint(0, CLASSES, (BATCH,))
        if channels_last:
            model = model.to(memory_format=torch.channels_last)
            x = x.contiguous(memory_format=torch.channels_last)
        opt = torch.optim.Adam(model.parameters(), lr=1e-3)
        loss_fn = torch.nn.CrossEntropyLoss()

        def step(n, model=model, x=x, y=y, opt=opt, loss_fn=loss_fn):
            for _ in range(n):
                opt.zero_grad(set_to_none=True)
                loss = loss_fn(model(x), y)
                loss.backward()
                opt.step()

        step(2)
        steps[size] = step
    return steps


def _keras_worker(sizes, channels, jit_compile=False, steps_per_execution=1):
    import numpy as np
    import tensorflow as tf

    from anyshape.inception_v3 import InceptionV3
    from anyshape.training import TrainConfig, Trainer

    rng = np.random.default_rng(0)
    steps = {}
    for size in sizes:
        model = InceptionV3(weights=None, input_shape=(size, size, channels), classes=CLASSES)
        trainer = Trainer(
            TrainConfig(
                jit_compile=jit_compile,
                steps_per_execution=steps_per_execution,
                lr_schedule="constant",
                output="unused",
            )
        )
        trainer._compile(model, steps_per_epoch=100, stage_epochs=1)  # what `anyshape train` compiles
        x = rng.uniform(-1, 1, (BATCH, size, size, channels)).astype("float32")
        y = np.eye(CLASSES, dtype="float32")[rng.integers(0, CLASSES, BATCH)]
        if os.environ["KERAS_BACKEND"] == "tensorflow":
            data = tf.data.Dataset.from_tensors((x, y)).repeat()
        else:
            data = None

        def step(n, model=model, data=data, x=x, y=y):
            n = max(n, steps_per_execution) // steps_per_execution * steps_per_execution
            if data is not None:
                model.fit(data, steps_per_epoch=n, epochs=1, verbose=0, shuffle=False)
            else:
                model.fit(np.repeat(x, n, 0), np.repeat(y, n, 0), batch_size=BATCH, epochs=1, verbose=0, shuffle=False)
            return n

        step(2 * steps_per_execution)
        steps[size] = step
    return steps


def worker(engine: str, sizes, channels: int) -> None:
    if engine.startswith("torch"):
        steps = _torch_worker(sizes, channels, channels_last=engine == "torch-cl")
    elif engine == "anyshape-tf":
        steps = _keras_worker(sizes, channels)
    elif engine == "anyshape-tf-xla":
        steps = _keras_worker(sizes, channels, jit_compile=True)
    elif engine == "anyshape-tf-spe8":
        steps = _keras_worker(sizes, channels, steps_per_execution=8)
    elif engine == "anyshape-jax":
        steps = _keras_worker(sizes, channels)
    else:
        raise SystemExit(f"unknown engine {engine}")
    print("READY", flush=True)
    for line in sys.stdin:
        size, n = (int(v) for v in line.split())
        t = time.perf_counter()
        done = steps[size](n) or n
        dt = time.perf_counter() - t
        print(json.dumps({"size": size, "steps": done, "seconds": dt, "img_s": done * BATCH / dt}), flush=True)


# --------------------------------------------------------------------------------------------
# coordinator
# --------------------------------------------------------------------------------------------


def _spawn(engine, sizes, channels, omp_active=False):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    env["KERAS_BACKEND"] = "jax" if engine == "anyshape-jax" else "tensorflow"
    if engine.startswith("torch") and not omp_active:
        # torch's OpenMP threads spin while they wait (OMP_WAIT_POLICY=ACTIVE behaviour): on a
        # 2-core machine shared with other jobs that collapses torch training (measured here at
        # load ~4: 2 img/s spinning, 50 img/s passive, at 75 px). PASSIVE is the fair setting.
        env.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    cmd = [
        sys.executable,
        __file__,
        "--worker",
        engine,
        "--sizes",
        ",".join(map(str, sizes)),
        "--channels",
        str(channels),
    ]
    return subprocess.Popen(
        cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", default="75,150")
    p.add_argument("--channels", type=int, default=1)
    p.add_argument("--engines", default="anyshape-tf,torch-cl,torch-nchw")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--steps", type=int, default=16, help="training steps per measurement at 75 px (half at 150 px)")
    p.add_argument(
        "--omp-active",
        action="store_true",
        help="leave torch's OpenMP threads spinning (default: OMP_WAIT_POLICY=PASSIVE for torch)",
    )
    p.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = p.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    if args.worker:
        worker(args.worker, sizes, args.channels)
        return
    engines = args.engines.split(",")
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(
        f"training img/s, batch {BATCH}, {args.channels} channel(s), Adam, {CLASSES} classes; "
        f"{args.rounds} interleaved rounds; {os.cpu_count()} CPUs, load average {load:.1f} at start; "
        f"torch OMP_WAIT_POLICY={'default' if args.omp_active else 'PASSIVE'}",
        flush=True,
    )
    t = time.time()
    procs = {}
    for e in engines:  # start one at a time: building and warming up is itself heavy
        procs[e] = _spawn(e, sizes, args.channels, args.omp_active)
        line = procs[e].stdout.readline().strip()
        if line != "READY":
            raise SystemExit(f"worker {e} failed to start (exit {procs[e].poll()})")
        print(f"  {e} ready after {time.time() - t:.0f} s", flush=True)
    results = {(e, s): [] for e in engines for s in sizes}
    for r in range(args.rounds):
        for s in sizes:
            n = max(2, round(args.steps * (75 / s) ** 2 * 2)) if s > 75 else args.steps
            for e in engines:
                procs[e].stdin.write(f"{s} {n}\n")
                procs[e].stdin.flush()
                res = json.loads(procs[e].stdout.readline())
                results[(e, s)].append(res["img_s"])
        print(
            f"  round {r + 1}: " + ", ".join(f"{e}@{s} {results[(e, s)][-1]:.1f}" for s in sizes for e in engines),
            flush=True,
        )
    for proc in procs.values():
        proc.stdin.close()
        proc.wait()
    ref = "torch-cl" if "torch-cl" in engines else engines[-1]
    print()
    print("| engine | " + " | ".join(f"{s} px img/s | vs {ref}" for s in sizes) + " |")
    print("|---|" + "---|---|" * len(sizes))
    for e in engines:
        cells = []
        for s in sizes:
            med = statistics.median(results[(e, s)])
            cells += [f"{med:.1f}", f"{med / statistics.median(results[(ref, s)]):.2f}x"]
        print(f"| {e} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
