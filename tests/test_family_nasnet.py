"""NASNetMobile and NASNetLarge against keras.applications: the weight layout, equal outputs, and
what keras.applications cannot do (free size, sizes below 32, channels_first).

Runs on TensorFlow, JAX and PyTorch (KERAS_BACKEND=jax / torch): the outputs are compared on
whichever backend runs the file. keras.applications.NASNetMobile refuses the torch backend ("not
available with the torch backend at this time due to an outstanding bug"); there the reference is
the function it calls, keras.src.applications.nasnet.NASNet, with NASNetMobile's arguments: the
same layers. The per-network harness (tests/test_archs.py) checks the shapes stage by stage against
Keras' own shape inference, free size against fixed size at an odd size, and that the computed
minimum is exact.
"""

import keras
import numpy as np
import pytest
from keras.src.applications import nasnet as keras_nasnet
from model_helpers import images, randomised_weights, relative_error, run

import anyshape
from anyshape.applications import NASNetLarge, NASNetMobile
from anyshape.archs import get_arch
from anyshape.shapes import InvalidInputShape, explain, minimum_size

DEFAULT = (224, 224, 3)
ODD = (33, 45, 3)  # odd, non-square, just above Keras' minimum (32)
MOBILE = get_arch("nasnet_mobile").defaults


def keras_mobile(**kwargs):
    """keras.applications.NASNetMobile(weights=None, **kwargs), also on torch (see the docstring)."""
    if keras.backend.backend() != "torch":
        return keras.applications.NASNetMobile(weights=None, **kwargs)
    include_top = kwargs.pop("include_top", True)
    shape = kwargs.pop("input_shape", None) or (None if include_top else DEFAULT)  # as NASNetMobile
    return keras_nasnet.NASNet(
        shape, **MOBILE, include_top=include_top, weights=None, default_size=224, name="nasnet_mobile", **kwargs
    )


@pytest.fixture(scope="module")
def keras_top():
    """NASNetMobile with its top at 224, random weights with moved BatchNorm statistics."""
    ref = keras_mobile()
    ref.set_weights(randomised_weights(ref))
    return ref


@pytest.fixture(scope="module")
def keras_notop(keras_top):
    """NASNetMobile without its top (Keras builds it at 224), the same weights."""
    ref = keras_mobile(include_top=False)
    ref.set_weights(keras_top.get_weights()[:-2])
    return ref


@pytest.fixture(scope="module")
def ours_top(keras_top):
    model = NASNetMobile(weights=None)
    model.set_weights(keras_top.get_weights())
    return model


@pytest.fixture(scope="module")
def ours_free(keras_top):
    """Ours without the top at free size, the same weights: Keras' free-size NASNet fails at every size."""
    model = NASNetMobile(weights=None, include_top=False, input_shape=(None, None, 3))
    model.set_weights(keras_top.get_weights()[:-2])
    return model


def test_mobile_weight_layout_equals_keras(keras_top, keras_notop, ours_top, ours_free):
    assert [w.shape for w in ours_top.get_weights()] == [w.shape for w in keras_top.get_weights()]
    assert [layer.name for layer in ours_top.layers if layer.weights] == [
        layer.name for layer in keras_top.layers if layer.weights
    ]
    assert ours_top.count_params() == keras_top.count_params() == 5_326_716
    # the free-size model has the layout of Keras' fixed-size one (Keras' own free-size model has not)
    assert [w.shape for w in ours_free.get_weights()] == [w.shape for w in keras_notop.get_weights()]


def test_large_weight_layout_equals_keras():
    for include_top, params in ((True, 88_949_818), (False, 84_916_818)):
        # at its default size: without the top Keras would build it at free size, with the layout
        # its width comparisons give there (projections where the cells need reductions)
        ref = keras.applications.NASNetLarge(weights=None, include_top=include_top, input_shape=(331, 331, 3))
        ours = NASNetLarge(weights=None, include_top=include_top)
        assert [w.shape for w in ours.get_weights()] == [w.shape for w in ref.get_weights()]
        assert [layer.name for layer in ours.layers if layer.weights] == [
            layer.name for layer in ref.layers if layer.weights
        ]
        assert ours.count_params() == ref.count_params() == params


def test_outputs_equal_keras_with_top(keras_top, ours_top):
    for shape in (DEFAULT, ODD):
        ref, ours = keras_top, ours_top
        if shape != DEFAULT:
            ref, ours = keras_mobile(input_shape=shape), NASNetMobile(weights=None, input_shape=shape)
            ref.set_weights(keras_top.get_weights())
            ours.set_weights(keras_top.get_weights())
        x = images(shape)
        a, b = run(ours, x), run(ref, x)
        assert a.shape == b.shape == (2, 1000)
        assert relative_error(a, b) <= 1e-6, shape


@pytest.mark.every_backend
def test_free_size_model_equals_keras_fixed_size_models(keras_notop, ours_free):
    """Without the top, at 224 and at an odd size: correct_pad's parity and the adjust block's
    reduction are decided at any size as Keras decides them at the sizes it builds."""
    odd = keras_mobile(include_top=False, input_shape=ODD)
    odd.set_weights(keras_notop.get_weights())
    for shape, ref in ((DEFAULT, keras_notop), (ODD, odd)):
        x = images(shape)
        a, b = run(ours_free, x), run(ref, x)
        assert a.shape == b.shape == (2, *explain(shape, arch="nasnet_mobile").output_shapes[0])
        assert relative_error(a, b) <= 1e-6, shape


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
