"""InceptionResNetV2: what is its own. Its layout and its outputs against
keras.applications.InceptionResNetV2 (at 299 and at an odd size, with and without the top, on
TensorFlow, JAX and PyTorch for the odd size with the top) are checked by the family harness
(tests/test_family.py); the per-network harness (tests/test_archs.py) checks the shapes stage by
stage against Keras' own shape inference, free size against fixed size, and that the computed
minimum is exact. Here: the scaled residual in built-in layers, the sizes that crash Keras, and
the build options of the torch twin (timm's BatchNorm gamma, PyTorch's average pool).
"""

import keras
import numpy as np
import pytest

import anyshape
from anyshape.applications import InceptionResNetV2
from anyshape.shapes import InvalidInputShape, explain, minimum_size

ODD = (75, 89, 3)  # odd, non-square, at Keras' minimum (75)


@pytest.fixture(scope="module")
def ours_free():
    """anyshape's model without the top at free size (its layers are what is read here)."""
    return InceptionResNetV2(weights=None, include_top=False, input_shape=(None, None, 3))


def test_scaled_residual_is_built_in_layers(ours_free):
    """Keras' CustomScaleLayer (x + up * scale) is Rescaling + Add: no custom layer to register."""
    assert ours_free.get_layer("block35_1_scale").scale == 0.17
    assert ours_free.get_layer("block17_20_scale").scale == 0.1
    assert ours_free.get_layer("block8_10_scale").scale == 1.0
    custom = {type(layer).__module__ for layer in ours_free.layers if not type(layer).__module__.startswith("keras.")}
    assert custom == set()


def test_sizes_that_crash_keras_are_refused_by_explain():
    """keras.applications' free-size model at 8 x 8 kills the process (SIGFPE, issue 17); here the
    shape is refused before anything runs, naming the stage, with the computed minimum."""
    assert minimum_size("inception_resnet_v2") == (75, 75)
    report = explain((8, 8, 3), arch="inception_resnet_v2")
    assert not report.valid
    assert report.collapse[0].stage == "stem_pool1"
    assert "Nearest valid shape: (75, 75, 3)" in report.reason()
    with pytest.raises(InvalidInputShape, match="stem_pool1 collapses"):
        anyshape.create_model("inception_resnet_v2", include_top=False, input_shape=(8, 8, 3))
    assert not explain((74, 300, 3), arch="inception_resnet_v2").valid
    assert explain((75, 300, 3), arch="inception_resnet_v2").valid


def test_bn_scale_gives_timms_batchnorm_layout():
    """timm's BasicConv2d has a BatchNorm gamma; Keras' conv2d_bn has scale=False."""
    plain = explain(ODD, arch="inception_resnet_v2")
    scaled = explain(ODD, arch="inception_resnet_v2", bn_scale=True)
    assert scaled.stage("conv_7b").params - plain.stage("conv_7b").params == 1536
    model = InceptionResNetV2(weights=None, include_top=False, input_shape=ODD, bn_scale=True)
    assert [w.name for w in model.get_layer("conv_7b_bn").weights] == [
        "gamma",
        "beta",
        "moving_mean",
        "moving_variance",
    ]
    assert model.count_params() == scaled.params


def test_count_include_pad_divides_the_border_by_9():
    """Keras' (and timm's) mixed_5b pool divides by the real pixels (parity above); with
    count_include_pad=True, by 9 (zeros padded: PyTorch's default AvgPool2d)."""
    model = InceptionResNetV2(weights=None, include_top=False, input_shape=ODD, count_include_pad=True)
    inner = keras.Input(shape=(7, 7, 1))
    x = model.get_layer("mixed_5b_branch3_pool")(model.get_layer("mixed_5b_branch3_pad")(inner))
    out = keras.ops.convert_to_numpy(keras.Model(inner, x)(np.ones((1, 7, 7, 1), "float32")))[0, :, :, 0]
    assert out.shape == (7, 7)
    np.testing.assert_allclose([out[3, 3], out[0, 3], out[0, 0]], [1.0, 6 / 9, 4 / 9], rtol=1e-6)
