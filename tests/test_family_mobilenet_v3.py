"""MobileNetV3Small/Large (anyshape.archs.mobilenet_v3) against keras.applications.

Runs on whichever backend KERAS_BACKEND names; it passes on TensorFlow, JAX and PyTorch
(`KERAS_BACKEND=jax pytest tests/test_family_mobilenet_v3.py`). The per-network harness
(tests/test_archs.py) covers the shape engine, free size == fixed size and the minimum; this file
covers Keras' weight layout for both variants at several widths and minimalistic, the hard
sigmoid's arithmetic, the in-graph rescaling, and the odd sizes where Keras' free-size model goes
wrong (`correct_pad` with 5x5 windows). The family harness (tests/test_family.py) checks
MobileNetV3Small with its defaults against keras.applications: its layout with and without the
top, equal outputs with Keras' weights at 224 and at 67 x 93 with and without the top, the
free-size model with the top at 67 x 93 on JAX and PyTorch too.
"""

import keras
import numpy as np
import pytest
from model_helpers import (
    feature_strides,
    images,
    keras_parity,
    positional_signature,
    randomised_weights,
    relative_error,
    run,
    unknown_record_layers,
    weight_shapes,
)

from anyshape.applications import MobileNetV3Large, MobileNetV3Small
from anyshape.archs import get_arch, keras_ops, mobilenet_v3
from anyshape.shapes import explain

OURS = {"small": MobileNetV3Small, "large": MobileNetV3Large}
KERAS = {"small": keras.applications.MobileNetV3Small, "large": keras.applications.MobileNetV3Large}


def pixels(shape):
    """Images in [0, 255]: MobileNetV3 rescales its input in the graph."""
    return images(shape, low=0.0, high=255.0)


@pytest.mark.parametrize("variant", ["small", "large"])
def test_signature_is_keras(variant):
    assert positional_signature(OURS[variant]) == positional_signature(KERAS[variant])


@pytest.mark.parametrize(
    "variant, kwargs",
    [  # MobileNetV3Small's defaults, with and without the top: tests/test_family.py
        ("small", {"alpha": 0.75}),
        ("small", {"minimalistic": True, "alpha": 1.25}),
        ("large", {}),
        ("large", {"include_top": False}),
        ("large", {"alpha": 0.75, "minimalistic": True}),
        ("large", {"include_preprocessing": False, "dropout_rate": 0.0}),
    ],
)
def test_weight_layout_equals_keras(variant, kwargs):
    ref = KERAS[variant](weights=None, input_shape=(224, 224, 3), **kwargs)
    ours = OURS[variant](weights=None, input_shape=(224, 224, 3), **kwargs)
    assert weight_shapes(ours) == weight_shapes(ref)
    assert [w.path for w in ours.weights] == [w.path for w in ref.weights]
    report = explain((224, 224, 3), arch=f"mobilenet_v3_{variant}", **{"include_top": True, **kwargs})
    assert ours.count_params() == ref.count_params() == report.params


@pytest.fixture(scope="module")
def keras_small_free():
    """keras.applications.MobileNetV3Small at free size, with the top (Keras' default)."""
    return keras.applications.MobileNetV3Small(weights=None)


@pytest.mark.parametrize("shape", [(67, 93, 3), (68, 92, 3)])
def test_odd_size_free_model_equals_keras_fixed_model(keras_small_free, shape):
    """correct_pad (kernels 3 and 5) assumes even sizes on Keras' free-size path, at every strided
    conv: its free-size model is right only where each of them gets an even size (multiples of 32);
    68 x 92 has 17 x 23 at the third. Ours is "same" everywhere."""
    fixed = keras.applications.MobileNetV3Small(weights=None, input_shape=shape)
    ours = MobileNetV3Small(weights=None, input_shape=(None, None, 3))
    x = pixels(shape)
    assert keras_parity(fixed, ours, x) <= 1e-6
    keras_small_free.set_weights(fixed.get_weights())
    assert relative_error(run(keras_small_free, x), run(fixed, x)) > 1e-4  # Keras' own free-size model does not


def test_hard_sigmoid_is_kerass_arithmetic_bit_for_bit():
    """Keras: layers.ReLU(6.0)(x + 3.0) * (1.0 / 6.0); ours: Rescaling(1, 3), ReLU(6), Rescaling(1/6)."""
    x = np.concatenate([np.linspace(-8, 8, 4001), np.random.default_rng(0).normal(0, 3, 4000)]).astype("float32")
    x = x.reshape(1, 1, -1, 1)
    inputs = keras.Input((1, None, 1))
    model = keras.Model(inputs, mobilenet_v3._hard_sigmoid(keras_ops.KerasOps(), inputs, "gate"))
    expected = keras.ops.convert_to_numpy(keras.layers.ReLU(6.0)(keras.ops.convert_to_tensor(x) + 3.0) * (1.0 / 6.0))
    assert np.array_equal(run(model, x), expected)


def test_preprocessing_is_in_the_graph():
    ours = MobileNetV3Small(weights=None, include_top=False)
    rescaling = ours.get_layer("rescaling")
    assert (rescaling.scale, rescaling.offset) == (1.0 / 127.5, -1.0)
    assert ours.layers[2].name == "conv" and ours.layers[1] is rescaling
    plain = MobileNetV3Small(weights=None, include_top=False, include_preprocessing=False)
    assert "rescaling" not in [layer.name for layer in plain.layers]
    plain.set_weights(ours.get_weights())
    x = pixels((40, 40, 3))
    # the same function rounded in another order (numpy's x / 127.5 - 1 against the graph's
    # x * (1 / 127.5) - 1, through every layer): float32's few ulps, 1.02e-6 on an Intel Xeon
    # with AMX (oneDNN's kernels there); a missing Rescaling would feed pixels 127 times larger
    assert relative_error(run(plain, x / 127.5 - 1.0), run(ours, x)) <= 1e-5


def test_keras_default_free_size_with_the_top():
    assert tuple(MobileNetV3Large(weights=None, input_shape=(None, None, 3)).output.shape) == (None, 1000)
    assert tuple(MobileNetV3Large(weights=None).input.shape) == (None, 224, 224, 3)


def test_model_type_is_checked():
    with pytest.raises(ValueError, match="model_type must be one of"):
        MobileNetV3Small(weights=None, model_type="medium")


def test_any_size_from_one_pixel():
    model = MobileNetV3Large(weights=None, input_shape=(1, 2, 3), classes=3)
    model.set_weights(randomised_weights(model))
    assert np.isfinite(run(model, pixels((1, 2, 3)))).all()


@pytest.mark.parametrize("variant", ["large"])  # MobileNetV3Small: tests/test_family.py
def test_records_name_its_layers(variant):
    arch = get_arch(f"mobilenet_v3_{variant}")
    assert unknown_record_layers(OURS[variant](weights=None), arch) == []
    assert feature_strides(arch) == [2, 4, 8, 16, 32]
