"""ResNet50V2/101V2/152V2 (anyshape.archs.resnet_v2) against keras.applications.

Runs on whichever backend KERAS_BACKEND names; checked on TensorFlow, JAX and PyTorch.
- every member has keras.applications' weight layout and layer names, with and without the top;
- ResNet50V2 (the smallest) computes Keras' outputs from Keras' weights at 224 x 224 and at
  65 x 97, with and without the top;
- the feature points sit at strides 2, 4, 8, 16 and 32 (Keras' v2 reduces in a stage's last block).
"""

import keras
import pytest
from model_helpers import (
    assert_keras_drop_in,
    backend_cases,
    images,
    layout_cases,
    randomised_weights,
    relative_error,
    run,
)

from anyshape import applications
from anyshape.archs import get_arch, list_models
from anyshape.shapes import explain

ODD = (65, 97, 3)  # odd and non-square, above keras.applications' minimum of 32


@pytest.mark.parametrize("name, top", layout_cases("resnet_v2", "resnet50_v2"))
def test_weight_layout_and_names_equal_keras(name, top):
    keras_name = get_arch(name).keras_name
    ref = getattr(keras.applications, keras_name)(weights=None, include_top=top)
    ours = getattr(applications, keras_name)(weights=None, include_top=top)
    assert_keras_drop_in(ours, ref)
    assert ours.name == ref.name
    assert tuple(ours.input.shape) == tuple(ref.input.shape)


@pytest.fixture(scope="module")
def keras_top():
    """keras.applications.ResNet50V2 at 224 with the top, random weights with BatchNorm moved."""
    ref = keras.applications.ResNet50V2(weights=None)
    ref.set_weights(randomised_weights(ref))
    return ref


@pytest.mark.parametrize("shape, top", backend_cases([(224, 224, 3), ODD], [True, False], every_backend=(ODD, True)))
def test_outputs_equal_keras(keras_top, shape, top):
    weights = keras_top.get_weights() if top else keras_top.get_weights()[:-2]
    ref = (
        keras_top
        if top and shape == (224, 224, 3)
        else keras.applications.ResNet50V2(weights=None, include_top=top, input_shape=shape)
    )
    ours = applications.ResNet50V2(weights=None, include_top=top, input_shape=shape)
    ref.set_weights(weights)
    ours.set_weights(weights)
    x = images(shape)  # [-1, 1], as resnet_v2.preprocess_input ("tf") gives
    a, b = run(ours, x), run(ref, x)
    assert a.shape == b.shape
    assert relative_error(a, b) <= 1e-6


@pytest.mark.parametrize("name", list_models("resnet_v2"))
def test_feature_points_one_per_reduction(name):
    report = explain((224, 224, 3), arch=name)
    layers = {stage.layer: stage for stage in report.stages}
    sizes = [layers[point].height for point in get_arch(name).feature_points]
    assert sizes == [112, 56, 28, 14, 7]
