"""A real trained model for tests that need one (precision, quantization): anyshape's InceptionV3
trained by `anyshape.train` on a subset of scikit-learn's digits at 75x75x1 for 5 epochs
(about two minutes on 2 busy cores), with TensorFlow's deterministic ops and one inter-op thread
(set in tests/conftest.py, which says why) so that every run on a machine trains the same model
(another CPU's kernels may round differently and train another). Accuracy is measured on the
1,077 digits it never saw: on the 360 test digits alone one digit is 0.28 points, and bf16 or
int8 losing 2 of them (seen with some trained models) already broke the 0.5-point bound. Used
through the session-scoped `trained_digits` fixture in conftest."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

TRAIN_IMAGES = 720


@dataclass
class TrainedDigits:
    model_path: Path  # model.keras in a run folder (classes.json next to it)
    model: object  # the Keras model loaded from model_path, with its run info
    x_test: np.ndarray  # preprocessed (1077, 75, 75, 1) float32: every digit the model never saw
    y_test: np.ndarray
    calibration: Path  # a folder of training digits as PNG, plus one unreadable file
    test_accuracy: float  # Keras' own accuracy on x_test


def train_digits(root: Path) -> TrainedDigits:
    import keras
    from PIL import Image

    from anyshape.datasets import Dataset, Split, load_digits
    from anyshape.engine import load_or_build
    from anyshape.preprocess import preprocess_input
    from anyshape.training import train

    keras.utils.set_random_seed(0)
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        tf.config.experimental.enable_op_determinism()
    train_split, test_split = load_digits((75, 75, 1))
    order = np.random.default_rng(0).permutation(len(train_split))[:TRAIN_IMAGES]
    data = Dataset(
        Split(train_split.images[order], train_split.labels[order]),
        None,
        test_split,
        [str(d) for d in range(10)],
        1,
        "digits",
    )
    result = train(
        "digits",
        dataset=data,
        output=root / "run",
        input_shape=(75, 75, 1),
        epochs=5,
        batch_size=16,
        augment="none",
        verbose=0,
        log=lambda m: None,
        seed=0,
    )
    model = load_or_build(result.model_path)
    # Evaluated on every digit the model never saw: the test split plus the training images left
    # out of the subset (1,077 images), so that a 0.5-point accuracy bound is 5 images, not 1.8.
    unseen = np.random.default_rng(0).permutation(len(train_split))[TRAIN_IMAGES:]
    images = np.concatenate([test_split.images, train_split.images[unseen]])
    labels = np.concatenate([test_split.labels, train_split.labels[unseen]])
    x_test = preprocess_input(images.astype(np.float32), "channels_last", mode="tf")
    calibration = root / "calibration"
    calibration.mkdir()
    for i, idx in enumerate(order[:300]):
        Image.fromarray(train_split.images[idx][..., 0]).save(calibration / f"digit{i:03d}.png")
    (calibration / "broken.png").write_bytes(b"not a png at all")
    accuracy = float(np.mean(model.predict(x_test, verbose=0).argmax(-1) == labels))
    return TrainedDigits(Path(result.model_path), model, x_test, labels, calibration, accuracy)
