"""`make demo`: train InceptionV3 from scratch on 75 x 75 x 1 digits, classify PNGs with it, explain the shape.

    python -m anyshape.demo [--epochs 4] [--output runs/demo-digits-...]

Every step is the `anyshape` command a user would type (printed before it runs):

1. `anyshape train digits --input-shape 75,75,1 --epochs 4 -o RUN`: scikit-learn's handwritten
   digits (1,437 train / 360 test images, 8 x 8 upsampled to 75 x 75, one channel), random
   initialisation, BatchNorm statistics recalibrated at the end;
2. eight held-out test digits written as PNG files, then
   `anyshape predict --model RUN/model.keras RUN/held-out`;
3. `anyshape explain --input-shape 75,75,1 --include-top --classes 10`: what each stage does
   with the trained shape.
It ends with the test accuracy, training time and throughput from RUN/report.json.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

_NOISE = ("I0000 ", "W0000 ", "WARNING: All log messages before absl::InitializeLog()")


def _is_noise(line: str) -> bool:
    """TensorFlow's C++ start-up lines (oneDNN, CUDA stubs), printed before TF_CPP_MIN_LOG_LEVEL applies."""
    return line.startswith(_NOISE) or "cpu_feature_guard" in line or line.startswith("To enable the following")


def _run(args: list[str], *, capture: bool = False) -> subprocess.CompletedProcess:
    """Run `anyshape ARGS` as a user would; its stdout goes to the terminal (progress bar) unless captured."""
    cmd = [sys.executable, "-m", "anyshape.cli", *args]
    print(f"\n$ anyshape {shlex.join(args)}", flush=True)
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL=os.environ.get("TF_CPP_MIN_LOG_LEVEL", "3"))
    proc = subprocess.Popen(
        cmd, env=env, text=True, stderr=subprocess.PIPE, stdout=subprocess.PIPE if capture else None
    )
    errors = []

    def pump():
        for line in proc.stderr:
            if not _is_noise(line):
                errors.append(line)
                if not capture:
                    sys.stderr.write(line)
                    sys.stderr.flush()

    thread = threading.Thread(target=pump, daemon=True)
    thread.start()
    out = proc.stdout.read() if capture and proc.stdout is not None else None
    proc.wait()
    thread.join()
    return subprocess.CompletedProcess(cmd, proc.returncode, out, "".join(errors))


def _run_python(args: list[str]) -> list:
    """Run `python ARGS` quietly (TensorFlow start-up lines dropped) and parse its JSON output."""
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL=os.environ.get("TF_CPP_MIN_LOG_LEVEL", "3"))
    done = subprocess.run([sys.executable, *args], env=env, text=True, capture_output=True)
    if done.returncode != 0:
        errors = [line for line in done.stderr.splitlines() if not _is_noise(line)]
        raise RuntimeError(f"python {shlex.join(args)} failed: " + "\n".join(errors[-5:]))
    return json.loads(done.stdout)


def _write_held_out_pngs(folder: Path, count: int) -> list[tuple[Path, int]]:
    """The first `count` test-split digits, at the training size, as 8-bit grayscale PNGs."""
    from PIL import Image

    from anyshape.datasets import load_digits

    _, test = load_digits((75, 75, 1))
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for i in range(count):
        path = folder / f"test{i:03d}-digit{int(test.labels[i])}.png"
        Image.fromarray(test.images[i, :, :, 0]).save(path)
        written.append((path, int(test.labels[i])))
    return written


def _classify_with_keras(model_path: Path, images: list[Path]) -> list[str]:
    """Class names for image files from a run's model.keras on the Keras engine, with the class
    names and preprocessing stored in the file and the image reader `anyshape predict` uses."""
    from anyshape.engine import ImageReader, load_or_build
    from anyshape.model_info import model_info

    model = load_or_build(model_path)
    info = model_info(model)
    if info.class_names is None:
        raise SystemExit(f"{model_path}: holds no class names (not a model saved by anyshape train)")
    h, w, c = model.inputs[0].shape[1:]
    reader = ImageReader(channels=c, size=(h, w), preprocessing=info.data_config)
    probs = model.predict(np.stack([reader.read(p) for p in images]), verbose=0)
    return [info.class_names[int(k)] for k in np.argmax(probs, -1)]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m anyshape.demo", description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--output", default=None, help="run folder (default runs/demo-digits-<time>)")
    parser.add_argument("--images", type=int, default=8, help="held-out digits to classify with predict")
    parser.add_argument(
        "--classify",
        nargs="+",
        default=None,
        metavar="MODEL IMAGE",
        help="print (as JSON) the class names a run's MODEL gives IMAGE files, and exit",
    )
    return parser


def _predict_labels(run: Path, images) -> list[str] | None:
    """The labels `anyshape predict --model RUN/model.keras` gives the images, or None (said why)."""
    pred = _run(
        ["predict", "--model", str(run / "model.keras"), "--top", "1", "--format", "json", str(run / "held-out")],
        capture=True,
    )
    if pred.returncode == 0:
        try:  # predict names the classes from model.keras itself (its stored class names)
            rows = {Path(r["path"]).name: r["predictions"][0] for r in json.loads(pred.stdout)}
            return [str(rows[p.name]["label"]) for p, _ in images]
        except (ValueError, KeyError, IndexError, TypeError):
            pass
    last = pred.stderr.strip().splitlines()[-1] if pred.stderr.strip() else f"exit code {pred.returncode}"
    print(f"anyshape demo: `anyshape predict` gave no usable answer: {last}", file=sys.stderr)
    return None


def _print_table(images, by_predict: list[str], direct: list[str]) -> None:
    print(f"\n  {'image':22s} {'predict':>8s} {'keras':>6s}")
    right = 0
    for i, (path, truth) in enumerate(images):
        right += by_predict[i] == str(truth)
        mark = "ok" if by_predict[i] == str(truth) else f"WRONG (true {truth})"
        print(f"  {path.name:22s} {by_predict[i]:>8s} {direct[i]:>6s}   {mark}")
    print(f"  {right}/{len(images)} correct")


def _print_result(report: dict, run: Path, t0: float) -> None:
    print("\n== result ==")
    print(f"test accuracy on {report['data']['test']} held-out digits: {report['test_accuracy']:.4f}")
    print(
        f"training: {report['train_seconds']:.0f} s for {len(report['epochs'])} epochs of {report['data']['train']} images "
        f"({report['train_images_per_second']:.1f} img/s), BatchNorm recalibration "
        f"{report['batchnorm_recalibration'].get('seconds', 0):.0f} s, run {report['wall_seconds']:.0f} s"
    )
    print(f"run folder: {run} (model.keras, classes.json, report.json); demo took {time.time() - t0:.0f} s")


def main(argv=None) -> int:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    args = _parser().parse_args(argv)
    if args.classify:
        print(json.dumps(_classify_with_keras(Path(args.classify[0]), [Path(p) for p in args.classify[1:]])))
        return 0
    run = Path(args.output or f"runs/demo-digits-{time.strftime('%Y%m%d-%H%M%S')}")
    t0 = time.time()

    print("anyshape demo: InceptionV3 trained from scratch at 75x75x1 on scikit-learn's digits")
    train = _run(["train", "digits", "--input-shape", "75,75,1", "--epochs", str(args.epochs), "-o", str(run)])
    if train.returncode != 0:
        print(f"anyshape demo: training failed (exit code {train.returncode})", file=sys.stderr)
        return train.returncode
    report = json.loads((run / "report.json").read_text())

    images = _write_held_out_pngs(run / "held-out", args.images)
    print(f"\nwrote {len(images)} held-out test digits as PNG files to {run / 'held-out'}")
    by_predict = _predict_labels(run, images)
    if by_predict is None:
        return 1
    # the same images through the Keras model with the run's own preprocessing (stored in model.keras)
    direct = _run_python(["-m", "anyshape.demo", "--classify", str(run / "model.keras"), *(str(p) for p, _ in images)])
    _print_table(images, by_predict, direct)

    _run(["explain", "--input-shape", "75,75,1", "--include-top", "--classes", "10"])
    _print_result(report, run, t0)
    acc = report.get("test_accuracy")
    return 0 if acc is not None and acc >= 0.95 else 1


if __name__ == "__main__":
    sys.exit(main())
