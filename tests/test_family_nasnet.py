"""NASNetMobile and NASNetLarge against keras.applications: what keras.applications cannot do (free
size, sizes below 32, channels_first), NASNetLarge's layout and Keras' private NASNet parameters.

The family harness (tests/test_family.py) checks NASNetMobile against keras.applications: its
layout with and without the top (5,326,716 parameters with it), equal outputs at 224 with and
without the top, and the free-size model equal to Keras' models built at an odd size (33 x 45)
with and without the top (correct_pad's parity and the adjust block's reduction decided at any size
as Keras decides them at the sizes it builds), on JAX and PyTorch too with the top.
keras.applications.NASNetMobile refuses the torch backend ("not available with the torch backend
at this time due to an outstanding bug"); there the harness calls the function it calls,
keras.src.applications.nasnet.NASNet, with NASNetMobile's arguments. The per-network harness
(tests/test_archs.py) checks the shapes stage by stage against Keras' own shape inference, free
size against fixed size at an odd size, and that the computed minimum is exact.
"""

import keras
import numpy as np
import pytest
from keras.src.applications import nasnet as keras_nasnet
from model_helpers import images, randomised_weights, relative_error, run, weight_shapes, zero_initial_weights

import anyshape
from anyshape.applications import NASNetLarge, NASNetMobile
from anyshape.shapes import InvalidInputShape, minimum_size

ODD = (33, 45, 3)  # odd, non-square, just above Keras' minimum (32)


@pytest.fixture(scope="module")
def ours_free():
    """Ours without the top at free size (Keras' free-size NASNet fails at every size), random
    weights with moved BatchNorm statistics."""
    model = NASNetMobile(weights=None, include_top=False, input_shape=(None, None, 3))
    model.set_weights(randomised_weights(model))
    return model


def test_large_weight_layout_equals_keras():
    """Without the top (with it: tests/test_weights_family.py, on the models Keras' defaults build),
    at its default size: without the top Keras would build it at free size, with the layout its
    width comparisons give there (projections where the cells need reductions)."""
    with zero_initial_weights():  # a layout has no values
        ref = keras.applications.NASNetLarge(weights=None, include_top=False, input_shape=(331, 331, 3))
        ours = NASNetLarge(weights=None, include_top=False)
    assert weight_shapes(ours) == weight_shapes(ref)
    assert [layer.name for layer in ours.layers if layer.weights] == [
        layer.name for layer in ref.layers if layer.weights
    ]
    assert ours.count_params() == ref.count_params() == 84_916_818


def test_keras_private_parameters_are_config_fields():
    """A small NASNet with skip_reduction=True (Large's wiring), against Keras' own NASNet()."""
    small = dict(penultimate_filters=192, num_blocks=1, stem_block_filters=8, skip_reduction=True, filter_multiplier=2)
    ref = keras_nasnet.NASNet(ODD, **small, include_top=False, weights=None, default_size=331)
    ours = anyshape.create_model("nasnet_large", include_top=False, input_shape=ODD, **small)
    assert [layer.name for layer in ours.layers if layer.weights] == [
        layer.name for layer in ref.layers if layer.weights
    ]
    weights = randomised_weights(ref)
    ref.set_weights(weights)
    ours.set_weights(weights)
    x = images(ODD)
    assert relative_error(run(ours, x), run(ref, x)) <= 1e-6


@pytest.mark.parametrize(
    "config,needle",
    [
        (dict(penultimate_filters=1000), "penultimate_filters must be a multiple of 24 \\* filter_multiplier"),
        (dict(penultimate_filters=72, filter_multiplier=1), "penultimate_filters / 24 must be even"),
        (dict(num_blocks=0), "num_blocks must be a positive integer"),
    ],
)
def test_configs_that_define_no_network_are_refused(config, needle):
    with pytest.raises(ValueError, match=needle):
        anyshape.create_model("nasnet_mobile", include_top=False, input_shape=ODD, **config)


def test_takes_sizes_below_keras_minimum_and_channels_first(ours_free):
    """Keras asks for 32 where the network needs 3, and refuses channels_first for NASNet."""
    assert minimum_size("nasnet_mobile") == minimum_size("nasnet_large") == (3, 3)
    with pytest.raises(InvalidInputShape, match="stem collapses"):
        NASNetMobile(weights=None, include_top=False, input_shape=(2, 9, 3))
    x = images((3, 9, 3))
    assert run(ours_free, x).shape == (2, 1, 1, 1056)
    first = NASNetMobile(weights=None, include_top=False, input_shape=(3, 33, 45), data_format="channels_first")
    first.set_weights(ours_free.get_weights())
    x = images(ODD)
    a, b = run(ours_free, x), run(first, x.transpose(0, 3, 1, 2))
    assert b.shape == (2, 1056, 1, 2)
    assert np.abs(a.transpose(0, 3, 1, 2) - b).max() <= 1e-5
