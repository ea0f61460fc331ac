"""VGG16/19 (anyshape.archs.vgg) against keras.applications, and its classifier at any size.

Runs on whichever backend KERAS_BACKEND names; checked on TensorFlow, JAX and PyTorch.
- every member has keras.applications' weight layout and layer names (at 224 x 224 the default
  head is Keras' Flatten head); VGG16 (the smallest) with and without the top, and its outputs
  from Keras' weights at 224 x 224 and at 65 x 97 with and without the top (at 65 x 97 with
  `head="flatten"`, which is what Keras builds there), are checked by the family harness
  (tests/test_family.py);
- the fully-convolutional head with the Flatten head's weights (converted by
  `convert_head_weights`) equals Keras at 224, and takes any larger size, free size included;
- "auto" picks the Flatten head exactly at 224 x 224; the conv head refuses what it cannot take.
"""

import keras
import numpy as np
import pytest
from model_helpers import (
    images,
    relative_error,
    run,
    vgg_weights,
)

import anyshape
from anyshape import applications
from anyshape.archs import get_arch, list_models
from anyshape.archs.vgg import convert_head_kernel, convert_head_weights
from anyshape.shapes import explain, minimum_size

ODD = (65, 97, 3)  # odd and non-square, above keras.applications' minimum of 32


@pytest.fixture(scope="module")
def keras_top():
    """keras.applications.VGG16 at 224 with the top, random weights and biases."""
    ref = keras.applications.VGG16(weights=None)
    ref.set_weights(vgg_weights(ref))
    return ref


def test_conv_head_equals_keras_at_224_and_takes_any_larger_size(keras_top):
    model = applications.VGG16(weights=None, input_shape=(None, None, 3))  # head "auto": conv at free size
    assert isinstance(model.get_layer("fc1"), keras.layers.Conv2D)
    weights = keras_top.get_weights()
    model.set_weights(convert_head_weights(weights, "conv"))
    assert tuple(model.get_layer("fc1").kernel.shape) == (7, 7, 512, 4096)
    x = images((224, 224, 3), high=150.0, low=-120.0)
    # a 7x7 convolution sums its 25,088 products in another order than Dense: float32 rounding
    # (1.03e-6 was seen on CI), still far below any mistake in the head's conversion
    assert relative_error(run(model, x), run(keras_top, x)) <= 1e-5
    big = run(model, images((256, 289, 3), high=150.0, low=-120.0))  # a 2 x 3 map of class scores
    assert big.shape == (2, 1000)
    assert np.allclose(big.sum(axis=1), 1.0, atol=1e-5)  # the softmax of the averaged scores
    back = convert_head_weights(convert_head_weights(weights, "conv"), "flatten")
    assert all(np.array_equal(a, b) for a, b in zip(back, weights))


def test_convert_head_kernel_refuses_what_is_no_head_kernel():
    kernel = np.arange(25088 * 3, dtype="float32").reshape(25088, 3)
    conv = convert_head_kernel(kernel, "fc1", "conv")
    assert conv.shape == (7, 7, 512, 3)
    assert conv[1, 2, 5, 0] == kernel[(1 * 7 + 2) * 512 + 5, 0]  # Flatten's (h, w, c) order
    assert convert_head_kernel(kernel[:4096], "fc2", "conv").shape == (1, 1, 4096, 3)
    with pytest.raises(ValueError, match="converts only at 224"):
        convert_head_kernel(kernel[:3072], "fc1", "conv")  # fc1 of a Flatten head at 65 x 97
    with pytest.raises(ValueError, match="4 axes"):
        convert_head_kernel(kernel, "fc1", "flatten")
    with pytest.raises(ValueError, match="layer must be one of"):
        convert_head_kernel(kernel, "block1_conv1", "conv")


def test_head_choice_and_the_sizes_it_takes():
    def fc1(shape, **kw):
        return explain(shape, arch="vgg16", include_top=True, **kw).stage("fc1").what

    assert fc1((224, 224, 3)).startswith("dense")  # the drop-in case: Keras' Flatten head
    assert fc1((3, 224, 224), data_format="channels_first").startswith("dense")
    assert fc1((224, 224, 3), head="conv").startswith("7x7 conv")
    assert fc1((None, None, 3)).startswith("7x7 conv")
    assert fc1((224, 225, 3)).startswith("7x7 conv")
    assert fc1(ODD, head="flatten") == "dense 4096"
    assert minimum_size("vgg16") == (32, 32)
    assert minimum_size("vgg16", include_top=True) == (224, 224)

    below = explain((223, 300, 3), arch="vgg16", include_top=True)
    assert not below.valid and below.collapse[0].layer == "fc1"
    assert "head='flatten'" in below.reason() and "Nearest valid shape: (224, 300, 3)" in below.reason()
    with pytest.raises(anyshape.InvalidInputShape, match="fc1"):
        anyshape.create_model("vgg16", input_shape=ODD)
    assert any(
        "Flatten" in p for p in explain((None, None, 3), arch="vgg16", include_top=True, head="flatten").problems
    )
    assert "head must be one of" in explain((224, 224, 3), arch="vgg16", head="dense").reason()
    assert "class-score map" in explain((256, 256, 3), arch="vgg16", include_top=True, pooling="catavgmax").reason()


@pytest.mark.parametrize("name", list_models("vgg"))
def test_feature_points_one_per_reduction(name):
    report = explain((224, 224, 3), arch=name)
    layers = {stage.layer: stage for stage in report.stages}
    assert [layers[p].height for p in get_arch(name).feature_points] == [112, 56, 28, 14, 7]
