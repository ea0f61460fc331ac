"""Xception against keras.applications.Xception: the weight layout, equal outputs, the true minimum.

Runs on TensorFlow, JAX and PyTorch (KERAS_BACKEND=jax / torch): the outputs are compared on
whichever backend runs the file. The per-network harness (tests/test_archs.py) checks the shapes
stage by stage against Keras' own shape inference, free size against fixed size, and that the
computed minimum is exact.
"""

import keras
import pytest
from model_helpers import images, randomised_weights, relative_error, run

import anyshape
from anyshape.applications import Xception
from anyshape.shapes import InvalidInputShape, explain, minimum_size

DEFAULT = (299, 299, 3)
ODD = (71, 93, 3)  # odd, non-square, at Keras' minimum: the smallest size keras.applications takes


@pytest.fixture(scope="module")
def keras_top():
    """keras.applications.Xception with its top at 299, random weights with moved BN statistics."""
    ref = keras.applications.Xception(weights=None)
    ref.set_weights(randomised_weights(ref))
    return ref


@pytest.fixture(scope="module")
def keras_free(keras_top):
    """Keras' backbone at free size (what it builds without the top), the same weights."""
    ref = keras.applications.Xception(weights=None, include_top=False)
    ref.set_weights(keras_top.get_weights()[:-2])
    return ref


@pytest.fixture(scope="module")
def ours_top(keras_top):
    model = Xception(weights=None)
    model.set_weights(keras_top.get_weights())
    return model


def test_weight_layout_equals_keras(keras_top, keras_free, ours_top):
    assert [w.shape for w in ours_top.get_weights()] == [w.shape for w in keras_top.get_weights()]
    assert ours_top.count_params() == keras_top.count_params() == 22_910_480
    ours = Xception(weights=None, include_top=False)
    assert [w.shape for w in ours.get_weights()] == [w.shape for w in keras_free.get_weights()]


@pytest.mark.every_backend
def test_outputs_equal_keras_with_top(keras_top, ours_top):
    x = images(DEFAULT)
    assert relative_error(run(ours_top, x), run(keras_top, x)) <= 1e-6
    ref = keras.applications.Xception(weights=None, input_shape=ODD)
    ours = Xception(weights=None, input_shape=ODD)
    ref.set_weights(keras_top.get_weights())
    ours.set_weights(keras_top.get_weights())
    x = images(ODD)
    a, b = run(ours, x), run(ref, x)
    assert a.shape == b.shape == (2, 1000)
    assert relative_error(a, b) <= 1e-6


def test_outputs_equal_keras_without_top(keras_free):
    ours = Xception(weights=None, include_top=False, input_shape=(None, None, 3))
    ours.set_weights(keras_free.get_weights())
    for shape in (DEFAULT, ODD):
        x = images(shape)
        a, b = run(ours, x), run(keras_free, x)
        assert a.shape == b.shape == (2, *explain(shape, arch="xception").output_shapes[0])
        assert relative_error(a, b) <= 1e-6


def test_true_minimum_is_7_where_keras_asks_71(keras_free):
    """Keras' 71 is policy: its own layers compute at 7 x 7, and ours equal them there."""
    assert minimum_size("xception") == minimum_size("xception", include_top=True) == (7, 7)
    with pytest.raises(ValueError, match="71"):
        keras.applications.Xception(weights=None, include_top=False, input_shape=(7, 9, 3))
    ours = Xception(weights=None, include_top=False, input_shape=(7, 9, 3))
    ours.set_weights(keras_free.get_weights())
    x = images((7, 9, 3))
    a, b = run(ours, x), run(keras_free, x)
    assert a.shape == b.shape == (2, 1, 1, 2048)
    assert relative_error(a, b) <= 1e-6
    with pytest.raises(InvalidInputShape, match="block1_conv2 collapses") as e:
        anyshape.create_model("xception", include_top=False, input_shape=(6, 9, 3))
    assert "Nearest valid shape: (7, 9, 3)" in str(e.value)
