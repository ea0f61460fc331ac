"""Issue 28's last case: a free-size model below its network's minimum, run through Keras.

A free-size model from `create_model` (and the keras.applications constructors, which call it)
refuses images below its network's minimum with `InvalidInputShape`, naming the input's shape, the
minimum and what to do, instead of the backend's "Negative dimension size" deep inside the
network: `model(x)`, predict, fit, evaluate and the *_on_batch methods. The models are built with
weights=None: no weight file can be downloaded here, and the check does not depend on the weights.
The model is still a plain Keras Functional to everything that copies it (get_config, clone,
pickle, a saved file; the fresh-process load without anyshape: tests/test_saving.py), and on JAX,
whose trainer detaches the variables during predict and fit, it still runs after a refusal.
"""

import pickle
from types import SimpleNamespace

import keras
import numpy as np
import pytest
from keras.src.models.functional import Functional

import anyshape
from anyshape.factory import MinimumSizeCheck
from anyshape.shapes import InvalidInputShape, minimum_size

ALPHA = 0.25  # MobileNet at a quarter width: the small network of the Keras-run checks
LEAST = minimum_size("mobilenet", alpha=ALPHA)[0]  # 31 px (the shape engine's, per configuration)


def _refusal(size: str, least: int) -> str:
    """The end of the message, as a regular expression."""
    return f"has images of {size} px, below the network's minimum of {least} px per side .*: resize or pad the images to at least {least}x{least} px$"


@pytest.fixture(scope="module")
def mobilenet():
    model = anyshape.create_model("mobilenet", weights=None, include_top=False, alpha=ALPHA)
    model.compile(optimizer="sgd", loss="mse")
    return model


class _Batches(keras.utils.PyDataset):
    """Batches whose shape is known only once one is read (what the pre-check cannot see)."""

    def __init__(self, size: int, labels: bool):
        super().__init__()
        self.size, self.labels = size, labels

    def __len__(self):
        return 1

    def __getitem__(self, index):
        x = np.zeros((2, self.size, self.size, 3), np.float32)
        return (x, np.zeros((2, 1, 1, 256), np.float32)) if self.labels else x


def test_inception_v3_refuses_a_size_below_75_px_in_python_words():
    """The issue's case, as the user wrote it: InceptionV3 without its top (free size, keras.applications'
    default) and 40 x 40 images, through model(x) and predict."""
    model = anyshape.InceptionV3(weights=None, include_top=False)
    assert minimum_size("inception_v3") == (75, 75) and model.__class__ is Functional
    x = np.zeros((1, 40, 40, 3), np.float32)
    for run in (model, lambda x: model.predict(x, verbose=0)):
        with pytest.raises(
            InvalidInputShape, match=r"^InceptionV3: an input of shape \(1, 40, 40, 3\) " + _refusal("40x40", 75)
        ):
            run(x)


def test_every_keras_entry_point_refuses_before_the_trainer_starts(mobilenet):
    """A second family (MobileNet, minimum 31 px at alpha=0.25): model(x), predict, fit (and its
    validation_data), evaluate and the *_on_batch methods refuse 30 px, whether the images come
    as an array, a tuple or a tf.data.Dataset (its element_spec, not a batch, is read); a side
    unknown until a batch is read (a PyDataset) is refused when Keras runs the model on it, also
    where TensorFlow's traced function no longer knows the size (MobileNet would return
    uninitialised memory there: anyshape.archs.mobilenet)."""
    import tensorflow as tf

    small = np.zeros((2, LEAST - 1, 40, 3), np.float32)
    y = np.zeros((2, 1, 1, 256), np.float32)
    runs = {
        "call": lambda: mobilenet(small),
        "predict": lambda: mobilenet.predict(small, verbose=0),
        "predict_on_batch": lambda: mobilenet.predict_on_batch(small),
        "fit": lambda: mobilenet.fit(small, y, verbose=0),
        "fit's validation_data": lambda: mobilenet.fit(
            np.zeros((2, LEAST, LEAST, 3), np.float32), y, validation_data=(small, y), verbose=0, epochs=0
        ),
        "evaluate of a dataset": lambda: mobilenet.evaluate(tf.data.Dataset.from_tensors((small, y)), verbose=0),
        "train_on_batch": lambda: mobilenet.train_on_batch(small, y),
        "test_on_batch": lambda: mobilenet.test_on_batch(small, y),
    }
    for run in runs.values():
        with pytest.raises(
            InvalidInputShape, match=r"^MobileNet: an input of shape \(2, 30, 40, 3\) " + _refusal("30x40", LEAST)
        ):
            run()
    # a PyDataset's size is known only once Keras runs the model on a batch: while tracing it, or
    # (TensorFlow, once a second size relaxed the traced shape to None) by an assertion in the graph
    with pytest.raises(
        InvalidInputShape, match=r"^MobileNet: an input of shape \(2, 30, 30, 3\) " + _refusal("30x30", LEAST)
    ):
        mobilenet.predict(_Batches(LEAST - 1, labels=False), verbose=0)
    assert mobilenet.predict(_Batches(LEAST, labels=False), verbose=0).shape == (2, 1, 1, 256)
    with pytest.raises(
        InvalidInputShape, match="^MobileNet: a batch of the input has images below the network's minimum of 31 px"
    ):
        mobilenet.predict(_Batches(LEAST - 1, labels=False), verbose=0)


def test_a_free_size_model_copies_as_a_plain_functional(mobilenet, tmp_path):
    """Keras' own copies (config, clone, pickle, a saved file) are plain Functionals, without the
    check (a reloaded model is a plain Keras model: it fails in the backend again)."""
    assert isinstance(mobilenet, keras.Model) and mobilenet.__class__ is Functional
    assert keras.saving.serialize_keras_object(mobilenet)["class_name"] == "Functional"
    mobilenet.save(tmp_path / "m.keras")
    copies = [keras.models.clone_model(mobilenet), pickle.loads(pickle.dumps(mobilenet))]
    copies.append(keras.saving.load_model(tmp_path / "m.keras"))
    for copy in copies:
        assert type(copy) is Functional and not hasattr(copy, "anyshape_size_check")


@pytest.mark.every_backend
def test_the_model_still_runs_after_a_refusal(mobilenet):
    """On JAX, Keras' trainer detaches the model's variables at the start of predict and fit and
    reattaches them at the end (keras/src/backend/jax/trainer.py): a refusal in between left the
    model unusable. Refused before the trainer starts (an array) and inside it (a PyDataset's
    batches, seen only when traced), the model then predicts, unchanged."""
    ok = np.random.default_rng(0).uniform(-1, 1, (2, LEAST, LEAST, 3)).astype(np.float32)
    before = mobilenet.predict(ok, verbose=0)
    refusals = (
        lambda: mobilenet.predict(ok[:, 1:], verbose=0),
        lambda: mobilenet.predict(_Batches(LEAST - 1, labels=False), verbose=0),
        lambda: mobilenet.fit(_Batches(LEAST - 1, labels=True), verbose=0),
    )
    for refused in refusals:
        with pytest.raises(InvalidInputShape, match="below the network's minimum of 31 px"):
            refused()
        np.testing.assert_array_equal(mobilenet.predict(ok, verbose=0), before)


def test_the_check_is_the_networks_minimum_computed_at_build_time(monkeypatch):
    """Free sizes get their network's minimum from the shape engine (per axis, in the model's data
    format); a fixed size (checked at build time) or a network that takes any size gets none.
    Without building: the factory's check is read from what it would give the model."""
    import anyshape.archs.keras_ops as keras_ops

    monkeypatch.setattr(keras_ops, "build", lambda arch, config, tensor: SimpleNamespace())

    def check(name, **options):
        return anyshape.create_model(name, weights=None, **options).anyshape_size_check

    assert check("inception_v3", include_top=False) == MinimumSizeCheck("InceptionV3", (75, 75), (1, 2))
    first = check("vgg16", include_top=False, data_format="channels_first")
    assert first == MinimumSizeCheck("VGG16", minimum_size("vgg16"), (2, 3)) and first.minimum == (32, 32)
    first((1, 3, 32, 32))
    with pytest.raises(InvalidInputShape, match=r"^VGG16: an input of shape \(1, 3, 31, 64\) has images of 31x64 px"):
        first((1, 3, 31, 64))
    assert check("inception_v3", input_shape=(None, 120, 3), include_top=False).minimum == (75, 75)
    assert check("inception_v3", input_shape=(75, 75, 3), include_top=False) is None
    assert check("inception_v3") is None  # with the top: 299 x 299, fixed
    assert minimum_size("resnet50") == (1, 1) and check("resnet50", include_top=False) is None
    tall = check("inception_v3", input_shape=(None, 120, 3), include_top=False)
    tall((None, None, 75, 3))  # a side unknown while Keras traces is not checked
    with pytest.raises(
        InvalidInputShape, match=r"^InceptionV3: an input of shape \(None, None, 74, 3\) has images of \?x74 px"
    ):
        tall((None, None, 74, 3))
