"""MobileNet (anyshape.archs.mobilenet) against keras.applications.MobileNet.

Runs on whichever backend KERAS_BACKEND names; it passes on TensorFlow, JAX and PyTorch
(`KERAS_BACKEND=jax pytest tests/test_family_mobilenet.py`). The per-network harness
(tests/test_archs.py) covers the shape engine against Keras, free size == fixed size and the
exact minimum; the family harness (tests/test_family.py) checks MobileNet (alpha 1) against
keras.applications: its layout with and without the top, equal outputs with Keras' weights at
224 and at 67 x 93 with and without the top (on JAX and PyTorch too for 67 x 93 with the top).
This file covers what is MobileNet's own: Keras' weight layout at other widths, Keras' top, the
collapse Keras' free-size model runs into, and padding="symmetric" (timm's twin).
"""

import keras
import pytest
from model_helpers import (
    images,
    keras_parity,
    positional_signature,
    run,
    weight_shapes,
)

import anyshape
from anyshape.applications import MobileNet
from anyshape.shapes import InvalidInputShape, explain, minimum_size


def _weighted_names(model) -> list[str]:
    return [layer.name for layer in model.layers if layer.weights]


def test_signature_is_keras():
    assert positional_signature(MobileNet) == positional_signature(keras.applications.MobileNet)


@pytest.mark.parametrize(
    "alpha, depth_multiplier, include_top",
    [(0.75, 1, True), (0.5, 2, True), (0.25, 1, False)],  # alpha 1: tests/test_family.py
)
def test_weight_layout_equals_keras(alpha, depth_multiplier, include_top):
    kwargs = {"alpha": alpha, "depth_multiplier": depth_multiplier, "include_top": include_top}
    ref = keras.applications.MobileNet(weights=None, **kwargs)
    ours = MobileNet(weights=None, **kwargs)
    assert weight_shapes(ours) == weight_shapes(ref)
    assert _weighted_names(ours) == _weighted_names(ref)
    assert ours.count_params() == ref.count_params() == explain((224, 224, 3), arch="mobilenet", **kwargs).params


@pytest.fixture(scope="module")
def keras_free():
    """keras.applications.MobileNet at free size without the top (Keras accepts any size there)."""
    return keras.applications.MobileNet(weights=None, include_top=False, input_shape=(None, None, 3))


def test_top_is_keras_top():
    """Keras' top: keepdims average pool, Dropout(dropout), 1x1 conv_preds, Reshape, Activation."""
    ref = keras.applications.MobileNet(weights=None, dropout=0.25, classes=7)
    ours = MobileNet(weights=None, dropout=0.25, classes=7)
    kinds = lambda m: [type(layer).__name__ for layer in m.layers[-5:]]  # noqa: E731
    assert kinds(ours) == kinds(ref) == ["GlobalAveragePooling2D", "Dropout", "Conv2D", "Reshape", "Activation"]
    assert ours.layers[-5].keepdims and ours.get_layer("dropout").rate == 0.25
    assert [layer.name for layer in ours.layers[-3:]] == ["conv_preds", "reshape_2", "predictions"]
    with pytest.raises(ValueError, match="`dropout`"):
        MobileNet(weights=None, dropout_rate=0.25)


@pytest.mark.parametrize("pooling", ["max", "avgmax", "catavgmax"])
def test_top_takes_any_pooling(pooling):
    ours = MobileNet(weights=None, alpha=0.25, input_shape=(None, None, 3), pooling=pooling, classes=5)
    report = explain((None, None, 3), arch="mobilenet", alpha=0.25, include_top=True, pooling=pooling, classes=5)
    assert ours.count_params() == report.params
    assert run(ours, images((40, 56, 3))).shape == (2, 5)


def test_16x16_is_refused_naming_the_collapse():
    """Keras' free-size MobileNet at 16x16 returns a 2x2 map on TensorFlow (issue 17): conv_dw_12 gets
    a 1x1 map padded to 2x2, smaller than its 3x3 window, and TensorFlow's eager depthwise kernel
    returns uninitialised memory for it. The shape engine sees the window not fit."""
    report = explain((16, 16, 3), arch="mobilenet")
    assert not report.valid
    assert (report.collapse[0].stage, report.collapse[0].layer) == ("block_12", "conv_dw_12")
    with pytest.raises(InvalidInputShape, match=r"(?s)block_12.*conv_dw_12.*Nearest valid shape: \(31, 31, 3\)"):
        MobileNet(weights=None, include_top=False, input_shape=(16, 16, 3))
    assert minimum_size("mobilenet") == (31, 31)


def test_keras_refuses_31_which_works_and_equals_keras_free_size_model(keras_free):
    with pytest.raises(ValueError, match="32"):
        keras.applications.MobileNet(weights=None, include_top=False, input_shape=(31, 31, 3))
    ours = anyshape.create_model("mobilenet", include_top=False, input_shape=(31, 31, 3))
    x = images((31, 31, 3))
    assert keras_parity(keras_free, ours, x) <= 1e-6
    assert run(ours, x).shape == (2, 1, 1, 1024)


def test_symmetric_padding_for_timms_twin_builds_as_it_explains_from_one_pixel():
    """padding="symmetric" and bn_epsilon (timm's mobilenetv1_100, tested against timm in
    tests/test_weights_twins.py): conv1 and the strided depthwise convs pad one pixel on every side,
    the BatchNorms take the epsilon, the model is what `explain` traces, and every size from 1 pixel
    works (Keras' padding: 31). Keras' defaults build Keras' network (tests/test_family.py)."""
    kwargs = {"alpha": 0.25, "include_top": False, "padding": "symmetric", "bn_epsilon": 1e-5}
    ours = MobileNet(weights=None, input_shape=(5, 7, 3), **kwargs)
    report = explain((5, 7, 3), arch="mobilenet", **kwargs)
    assert report.valid and ours.count_params() == report.params
    for stage in report.stages:
        assert tuple(ours.get_layer(stage.layer).output.shape[1:]) == stage.shape
    assert report.stages[-1].shape == (1, 1, 256)  # ceil(n / 2) per stride 2, where Keras' keeps floor(n / 2)
    assert ours.get_layer("conv1_pad").padding == ours.get_layer("conv_pad_12").padding == ((1, 1), (1, 1))
    assert ours.get_layer("conv1").padding == "valid" and ours.get_layer("conv_pw_13_bn").epsilon == 1e-5
    assert minimum_size("mobilenet", padding="symmetric") == (1, 1)
    assert MobileNet(weights=None, alpha=0.25, include_top=False).get_layer("conv_pad_2").padding == ((0, 1), (0, 1))
    with pytest.raises(ValueError, match=r"padding must be one of \('keras', 'symmetric'\), got 'tf'"):
        MobileNet(weights=None, padding="tf")
