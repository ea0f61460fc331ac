"""The Keras implementation of the layer vocabulary (anyshape.archs.keras_ops).

Backend-dependent (it runs Keras layers): in the Makefile's BACKEND_TESTS, so it also runs on JAX
and PyTorch.
"""

import keras
import numpy as np
import pytest
from model_helpers import images, run

from anyshape.archs.keras_ops import KerasOps


def _per_channel_rescaling():
    """A model that scales each of its 3 channels by its own factor, as the vocabulary builds it."""
    x = keras.Input((5, 7, 3))
    return keras.Model(x, KerasOps().rescaling(x, (2.0, 3.0, 5.0), name="scale"))


@pytest.mark.every_backend
def test_per_channel_rescaling_scales_the_last_axis_whatever_the_global_data_format():
    """Keras' Rescaling reshapes a per-channel scale to (C, 1, 1) when keras.config's
    image_data_format is channels_first, but anyshape's networks compute in channels_last either
    way (a channels_first model transposes its input once): the scale must stay on the last axis."""
    x = images((5, 7, 3))
    expected = x * np.array([2.0, 3.0, 5.0], "float32")
    saved = keras.config.image_data_format()
    try:
        keras.config.set_image_data_format("channels_first")
        got = run(_per_channel_rescaling(), x)
    finally:
        keras.config.set_image_data_format(saved)
    np.testing.assert_allclose(got, expected, rtol=1e-6)
    np.testing.assert_allclose(run(_per_channel_rescaling(), x), expected, rtol=1e-6)
