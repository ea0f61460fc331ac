"""Xception: what is its own. Its layout and its outputs against keras.applications.Xception (at
299 and at an odd size, with and without the top, on TensorFlow, JAX and PyTorch for the odd size
with the top) are checked by the family harness (tests/test_family.py); the per-network harness
(tests/test_archs.py) checks the shapes stage by stage against Keras' own shape inference, free
size against fixed size, and that the computed minimum is exact. Here: Keras asks for 71 pixels
where its own layers compute at 7.
"""

import keras
import pytest
from model_helpers import images, randomised_weights, relative_error, run

import anyshape
from anyshape.applications import Xception
from anyshape.shapes import InvalidInputShape, minimum_size


def test_true_minimum_is_7_where_keras_asks_71():
    """Keras' 71 is policy: its own layers compute at 7 x 7, and ours equal them there."""
    assert minimum_size("xception") == minimum_size("xception", include_top=True) == (7, 7)
    with pytest.raises(ValueError, match="71"):
        keras.applications.Xception(weights=None, include_top=False, input_shape=(7, 9, 3))
    keras_free = keras.applications.Xception(weights=None, include_top=False)  # free size: no check
    keras_free.set_weights(randomised_weights(keras_free))
    ours = Xception(weights=None, include_top=False, input_shape=(7, 9, 3))
    ours.set_weights(keras_free.get_weights())
    x = images((7, 9, 3))
    a, b = run(ours, x), run(keras_free, x)
    assert a.shape == b.shape == (2, 1, 1, 2048)
    assert relative_error(a, b) <= 1e-6
    with pytest.raises(InvalidInputShape, match="block1_conv2 collapses") as e:
        anyshape.create_model("xception", include_top=False, input_shape=(6, 9, 3))
    assert "Nearest valid shape: (7, 9, 3)" in str(e.value)
