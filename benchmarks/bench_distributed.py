"""`features --ray` against the local `features` on one machine, in one run, as ratios.

    python benchmarks/bench_distributed.py                      # 2,000 images; memory at 2,000 and 20,000
    python benchmarks/bench_distributed.py --images 500 --memory-images 500,5000

Each measurement runs in a fresh process (so peak memory is that run's own): the local
`engine.extract_features`, and `anyshape.distributed.features` on a local Ray with 1 and with 2
actors (1 CPU each). The images are random-noise JPEGs of 100-140 px written once into a temporary
folder; features are InceptionV3 avg-pooled at --size (random weights: speed does not depend on
them). Peak memory is the driver's VmHWM and the highest VmRSS any Ray actor process reached
(sampled every 0.2 s from /proc).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path


def _make_images(folder: Path, n: int) -> None:
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)
    have = len(list(folder.glob("*.jpg")))
    for i in range(have, n):
        h, w = rng.integers(100, 141, 2)
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(folder / f"{i:06d}.jpg", quality=90)


def _rss_kib(pid: int, field: str = "VmRSS") -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


class _ActorMemory(threading.Thread):
    """Samples the resident memory of Ray's actor processes (their title starts with ray::)."""

    def __init__(self):
        super().__init__(daemon=True)
        self.peak_kib, self.stop = 0, threading.Event()

    def run(self):
        while not self.stop.wait(0.2):
            for d in Path("/proc").iterdir():
                if not d.name.isdigit():
                    continue
                try:
                    cmd = (d / "cmdline").read_bytes()
                except OSError:
                    continue
                if b"MapWorker" in cmd or b"_ImageJob" in cmd:
                    self.peak_kib = max(self.peak_kib, _rss_kib(int(d.name)))


def _one(mode: str, folder: str, n: int, size: int, batch: int) -> dict:
    from anyshape import distributed, engine
    from anyshape.inception_v3 import InceptionV3

    files = sorted(str(p) for p in Path(folder).glob("*.jpg"))[:n]
    model = InceptionV3(weights=None, include_top=False, input_shape=(None, None, 3))
    predictor = engine.Predictor(engine.feature_model(model, "avg_pool", "avg"))
    out = tempfile.mkdtemp(prefix="bench-distributed-")
    watcher = _ActorMemory()
    watcher.start()
    start = time.perf_counter()
    if mode == "local":
        summary = engine.extract_features(predictor, files, os.path.join(out, "f.npz"), size=size, batch_size=batch)
    else:
        summary = distributed.features(
            predictor,
            files,
            os.path.join(out, "f"),
            size=size,
            batch_size=batch,
            actors=int(mode[-1]),
            cpus_per_actor=1,
            rows_per_part=1024,
        )
    seconds = time.perf_counter() - start
    watcher.stop.set()
    return {
        "mode": mode,
        "images": n,
        "ok": summary.ok,
        "seconds": seconds,
        "images_per_s": summary.ok / seconds,
        "driver_peak_mib": _rss_kib(os.getpid(), "VmHWM") / 1024,
        "actor_peak_mib": watcher.peak_kib / 1024,
    }


def _run(mode, folder, n, size, batch) -> dict:
    cmd = [
        sys.executable,
        __file__,
        "--one",
        mode,
        "--folder",
        folder,
        "--images",
        str(n),
        "--size",
        str(size),
        "--batch",
        str(batch),
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    lines = [x for x in done.stdout.splitlines() if x.startswith("{")]
    if done.returncode != 0 or not lines:
        raise SystemExit(f"{mode} failed:\n{done.stderr[-3000:]}")
    return json.loads(lines[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--images", type=int, default=2000)
    ap.add_argument("--memory-images", default="2000,20000", help="image counts for the memory comparison")
    ap.add_argument("--size", type=int, default=75)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--folder", default=None, help="image folder (default: a temporary one, made once)")
    ap.add_argument("--one", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:
        print(json.dumps(_one(args.one, args.folder, args.images, args.size, args.batch)))
        return
    counts = [int(c) for c in args.memory_images.split(",")]
    folder = args.folder or os.path.join(tempfile.gettempdir(), "anyshape-bench-distributed")
    _make_images(Path(folder), max([args.images, *counts]))
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        "?",
    )
    print(f"CPU: {cpu}, {os.cpu_count()} cores; {args.images} JPEGs (100-140 px) at {args.size} px, batch {args.batch}")
    results = {mode: _run(mode, folder, args.images, args.size, args.batch) for mode in ("local", "ray1", "ray2")}
    base = results["local"]["images_per_s"]
    print(f"{'run':<22} {'images/s':>9} {'vs local':>9} {'driver MiB':>11} {'actor MiB':>10}")
    names = {"local": "local features", "ray1": "--ray, 1 actor", "ray2": "--ray, 2 actors"}
    for mode, r in results.items():
        print(
            f"{names[mode]:<22} {r['images_per_s']:>9.1f} {r['images_per_s'] / base:>8.2f}x "
            f"{r['driver_peak_mib']:>11.0f} {r['actor_peak_mib']:>10.0f}"
        )
    print(f"\npeak memory of --ray (2 actors) over {' vs '.join(map(str, counts))} images:")
    mem = [_run("ray2", folder, n, args.size, args.batch) for n in counts]
    for r in mem:
        print(
            f"  {r['images']:>7} images: driver {r['driver_peak_mib']:.0f} MiB, largest actor "
            f"{r['actor_peak_mib']:.0f} MiB, {r['images_per_s']:.1f} images/s"
        )
    if len(mem) > 1:
        print(
            f"  growth: driver {mem[-1]['driver_peak_mib'] / mem[0]['driver_peak_mib']:.2f}x, "
            f"actor {mem[-1]['actor_peak_mib'] / max(mem[0]['actor_peak_mib'], 1):.2f}x"
        )
    per_million_h = 1e6 / results["ray2"]["images_per_s"] / 3600
    print(f"\none million images at this rate: {per_million_h:.1f} hours on this {os.cpu_count()}-core machine")


if __name__ == "__main__":
    main()
