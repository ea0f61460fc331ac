"""ConvNeXt Tiny ... XLarge (anyshape.archs.convnext) against keras.applications.

Runs on whichever backend KERAS_BACKEND names (`KERAS_BACKEND=jax pytest tests/test_family_convnext.py`);
`make test` runs it on TensorFlow and its odd-size parity (marked every_backend) on JAX and
PyTorch as well. The per-network harness
(tests/test_archs.py) covers the shape engine, free size == fixed size and the minimum; the family
harness (tests/test_family.py) checks ConvNeXtTiny against keras.applications: its layout with and
without the top, its layers' names in the record, equal outputs with Keras' weights at 224 and at
65 x 87 with and without the top (on JAX and PyTorch too at 65 x 87 with the top). This file
covers Keras' weight layout for the other members, channels_first (which Keras refuses), the
in-graph Normalization, stochastic depth. ConvNeXtXLarge (350 M parameters, 1.4 GB) gets the
layout only.
"""

import keras
import numpy as np
import pytest
from keras.src.applications import convnext as keras_convnext
from model_helpers import (
    images,
    keras_parity,
    positional_signature,
    randomised_weights,
    relative_error,
    run,
    weight_shapes,
)

import anyshape
from anyshape import applications
from anyshape.archs import get_arch, list_models
from anyshape.archs.convnext import IMAGENET_MEAN, IMAGENET_VARIANCE
from anyshape.shapes import explain

NAMES = list_models("convnext")
SMALL_CONFIG = {"depths": (1, 1, 2, 1), "projection_dims": (8, 16, 24, 32)}


def pixels(shape):
    """Images in [0, 255]: ConvNeXt normalises its input in the graph."""
    return images(shape, low=0.0, high=255.0)


def test_the_family_is_all_five():
    assert NAMES == ["convnext_base", "convnext_large", "convnext_small", "convnext_tiny", "convnext_xlarge"]


@pytest.mark.parametrize("name", NAMES)
def test_signature_is_keras(name):
    keras_name = get_arch(name).keras_name
    assert positional_signature(getattr(applications, keras_name)) == positional_signature(
        getattr(keras.applications, keras_name)
    )


def test_channels_first_which_keras_refuses_equals_channels_last(monkeypatch):
    monkeypatch.setattr(keras.config, "image_data_format", lambda: "channels_first")
    monkeypatch.setattr(keras_convnext.backend, "image_data_format", lambda: "channels_first")
    with pytest.raises(ValueError, match="channels_first"):
        keras.applications.ConvNeXtTiny(weights=None, include_top=False)
    first = anyshape.create_model("convnext_tiny", include_top=False, input_shape=(3, 64, 96))
    monkeypatch.undo()
    last = anyshape.create_model("convnext_tiny", include_top=False, input_shape=(64, 96, 3))
    assert first.anyshape_config.data_format == "channels_first"
    weights = randomised_weights(last)
    last.set_weights(weights)
    first.set_weights(weights)
    x = pixels((64, 96, 3))
    a, b = run(last, x), run(first, x.transpose(0, 3, 1, 2))
    assert b.shape == (2, 768, 2, 3)
    assert relative_error(b, a.transpose(0, 3, 1, 2)) <= 1e-6


@pytest.mark.parametrize("channels", [3, 1, 4])
def test_normalization_at_the_input(channels):
    """ImageNet's constants for 3 channels (Keras' PreStem); the average channel's for any other
    count, where Keras leaves the step out."""
    model = anyshape.create_model("convnext_tiny", include_top=False, input_shape=(32, 32, channels), **SMALL_CONFIG)
    norm = model.get_layer("convnext_tiny_prestem_normalization")
    assert model.layers[2].name == "convnext_tiny_stem_conv" and model.layers[1] is norm
    mean, variance = np.ravel(norm.mean), np.ravel(norm.variance)
    if channels == 3:
        np.testing.assert_allclose(mean, IMAGENET_MEAN, rtol=1e-7)
        np.testing.assert_allclose(variance, IMAGENET_VARIANCE, rtol=1e-7)
    else:
        np.testing.assert_allclose(mean, [np.mean(IMAGENET_MEAN)] * channels, rtol=1e-7)
        np.testing.assert_allclose(variance, [np.mean(IMAGENET_VARIANCE)] * channels, rtol=1e-7)
    plain = anyshape.create_model(
        "convnext_tiny", include_top=False, input_shape=(32, 32, channels), include_preprocessing=False, **SMALL_CONFIG
    )
    assert "convnext_tiny_prestem_normalization" not in [layer.name for layer in plain.layers]


def test_stochastic_depth_equals_kerass_convnext():
    """drop_path_rate > 0: Keras' StochasticDepth where a block's rate is > 0, here a Dropout that
    drops whole samples (noise_shape (batch, 1, 1, 1)) and scales the others by 1 / (1 - rate)."""
    shape = (40, 56, 3)
    ref = keras_convnext.ConvNeXt(
        depths=list(SMALL_CONFIG["depths"]),
        projection_dims=list(SMALL_CONFIG["projection_dims"]),
        drop_path_rate=0.3,
        name="convnext_tiny",
        input_shape=shape,
    )
    ours = anyshape.create_model("convnext_tiny", input_shape=shape, drop_path_rate=0.3, **SMALL_CONFIG)
    assert weight_shapes(ours) == weight_shapes(ref)
    assert keras_parity(ref, ours, pixels(shape)) <= 1e-6
    blocks = [f"convnext_tiny_stage_{i}_block_{j}" for i, d in enumerate(SMALL_CONFIG["depths"]) for j in range(d)]
    rates = np.linspace(0.0, 0.3, len(blocks))
    assert isinstance(ours.get_layer(f"{blocks[0]}_identity"), keras.layers.Activation)
    for block, rate in zip(blocks[1:], rates[1:]):
        drop = ours.get_layer(f"{block}_stochastic_depth")
        assert drop.rate == float(rate) and tuple(drop.noise_shape) == (None, 1, 1, 1)
    out = keras.ops.convert_to_numpy(drop(np.ones((64, 2, 2, 3), "float32"), training=True)).reshape(64, -1)
    assert (out == out[:, :1]).all()  # each sample's branch is dropped or kept whole
    np.testing.assert_allclose(np.unique(out), [0.0, 1 / (1 - 0.3)], rtol=1e-6)


def test_report_header_names_only_options_given():
    """The variant's own depths are no option the user gave; a changed drop_path_rate is."""
    assert "depths" not in str(explain((64, 64, 3), arch="convnext_small")).splitlines()[0]
    assert "drop_path_rate=0.1" in str(explain((64, 64, 3), arch="convnext_small", drop_path_rate=0.1)).splitlines()[0]


def test_saved_model_loads_with_keras(tmp_path):
    """The layer scale is Keras' own EinsumDense, the Normalization keeps its constants and the
    stochastic depth Dropout its noise shape: `keras.saving.load_model` rebuilds the same model."""
    model = anyshape.create_model("convnext_tiny", input_shape=(None, None, 3), drop_path_rate=0.2, **SMALL_CONFIG)
    model.set_weights(randomised_weights(model))
    path = tmp_path / "convnext.keras"
    model.save(path)
    again = keras.saving.load_model(path)
    x = pixels((40, 56, 3))
    assert relative_error(run(again, x), run(model, x)) == 0.0
    assert tuple(again.get_layer("convnext_tiny_stage_3_block_0_stochastic_depth").noise_shape) == (None, 1, 1, 1)
    assert np.ravel(again.get_layer("convnext_tiny_prestem_normalization").mean).tolist() == pytest.approx(
        IMAGENET_MEAN
    )
