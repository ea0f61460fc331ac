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
import time
from pathlib import Path

import numpy as np


def _run(args: list[str], *, capture: bool = False) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "anyshape.cli", *args]
    print(f"\n$ anyshape {shlex.join(args)}", flush=True)
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL=os.environ.get("TF_CPP_MIN_LOG_LEVEL", "3"))
    return subprocess.run(cmd, env=env, text=True, capture_output=capture)


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


def _classify_with_keras(model_path: Path, images: list[tuple[Path, int]]) -> list[str]:
    """Fallback when `anyshape predict` cannot use the run's classes: the Keras model directly."""
    import keras

    from anyshape.datasets import read_image
    from anyshape.preprocess import preprocess_input
    from anyshape.train import read_run_info

    info = read_run_info(model_path)
    h, w, c = info["input_shape"]
    model = keras.saving.load_model(model_path)
    x = np.stack([read_image(p, (h, w), c) for p, _ in images]).astype(np.float32)
    probs = model.predict(preprocess_input(x, "channels_last", **info["preprocess"]), verbose=0)
    return [info["classes"][int(k)] for k in np.argmax(probs, -1)]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m anyshape.demo", description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--output", default=None, help="run folder (default runs/demo-digits-<time>)")
    parser.add_argument("--images", type=int, default=8, help="held-out digits to classify with predict")
    args = parser.parse_args(argv)
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
    pred = _run(["predict", "--model", str(run / "model.keras"), "--top", "1", "--format", "json",
                 str(run / "held-out")], capture=True)
    classes = json.loads((run / "classes.json").read_text())["classes"]
    predicted = None
    if pred.returncode == 0:
        try:
            rows = json.loads(pred.stdout)
            by_path = {Path(r["path"]).name: r["predictions"][0] for r in rows}
            labels = [str(by_path[p.name]["label"]) for p, _ in images]
            if not all(label in classes for label in labels):
                # a predict that does not read RUN/classes.json names outputs class_<index>;
                # the output order is the run's class order
                labels = [classes[int(by_path[p.name]["class_id"])] for p, _ in images]
                print("(predict named the outputs class_<index>; names from RUN/classes.json)")
            predicted = labels
            print(pred.stdout.strip()[:2000] if len(images) <= 3 else f"(predict answered for {len(rows)} images)")
        except (ValueError, KeyError, IndexError, TypeError):
            pass
    if predicted is None:
        print("(`anyshape predict` did not answer with this run's class names"
              + (f"; its error: {pred.stderr.strip().splitlines()[-1]}" if pred.returncode and pred.stderr.strip() else "")
              + "; classifying with the Keras model directly)")
        predicted = _classify_with_keras(run / "model.keras", images)
    right = 0
    for (path, truth), guess in zip(images, predicted):
        right += guess == str(truth)
        print(f"  {path.name:22s} predicted {guess}   {'ok' if guess == str(truth) else 'WRONG (true ' + str(truth) + ')'}")
    print(f"  {right}/{len(images)} correct")

    _run(["explain", "--input-shape", "75,75,1", "--include-top", "--classes", "10"])

    acc = report.get("test_accuracy")
    print("\n== result ==")
    print(f"test accuracy on {report['data']['test']} held-out digits: {acc:.4f}")
    print(f"training: {report['train_seconds']:.0f} s for {len(report['epochs'])} epochs of {report['data']['train']} images "
          f"({report['train_images_per_second']:.1f} img/s), BatchNorm recalibration "
          f"{report['batchnorm_recalibration'].get('seconds', 0):.0f} s, run {report['wall_seconds']:.0f} s")
    print(f"run folder: {run} (model.keras, classes.json, report.json); demo took {time.time() - t0:.0f} s")
    return 0 if acc is not None and acc >= 0.95 else 1


if __name__ == "__main__":
    sys.exit(main())
