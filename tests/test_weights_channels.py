"""Pretrained weights at any channel count: each channel_adapt rule's equivalence, numerically.

A random RGB model's weights are saved once; models with 1, 4 and 6 input channels load them
with each rule, and their pooled features are compared with the RGB model's on the equivalent
RGB image (75 x 75 to keep it cheap: the identities do not depend on the size).
"""

import logging

import keras
import numpy as np
import pytest

import anyshape
from anyshape.weights import load_weight_set, resolve
from anyshape.weights.channels import RULES, adapt_kernel

TOL = 2e-5
HW = (75, 75)


def _build(channels, weights, **kw):
    return anyshape.InceptionV3(weights=weights, include_top=False, pooling="avg", input_shape=(*HW, channels), **kw)


@pytest.fixture(scope="module")
def rgb(tmp_path_factory):
    """An RGB model with random weights (non-trivial BatchNorm statistics), and its weights file."""
    import keras

    keras.utils.set_random_seed(1)
    model = _build(3, None)
    rng = np.random.default_rng(1)
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            beta, mean, var = layer.get_weights()
            n = beta.shape[0]
            layer.set_weights(
                [
                    0.1 * rng.standard_normal(n).astype(np.float32),
                    0.1 * rng.standard_normal(n).astype(np.float32),
                    rng.uniform(0.5, 1.5, n).astype(np.float32),
                ]
            )
    path = tmp_path_factory.mktemp("rgb") / "rgb.weights.h5"
    model.save_weights(path)
    return model, str(path)


@pytest.fixture(scope="module")
def images():
    rng = np.random.default_rng(2)
    return rng.uniform(-1, 1, (2, *HW, 6)).astype(np.float32)


def _f(model, x):
    return keras.ops.convert_to_numpy(model(x, training=False))


def _close(a, b):
    assert a.shape == b.shape
    diff = np.abs(a - b).max()
    assert diff <= TOL * max(1.0, np.abs(b).max()), diff
    assert np.abs(b).max() > 0.1


def _first_kernel(model):
    return keras.ops.convert_to_numpy(model.get_layer("stem_1a_3x3_conv").kernel)


@pytest.mark.every_backend
def test_sum_gray_equals_replicated_rgb(rgb, images, caplog):
    model, path = rgb
    with caplog.at_level(logging.WARNING, logger="anyshape.weights"):
        gray = _build(1, path)  # default rule for one channel: "sum"
    assert "channel_adapt='sum'" in caplog.text and "from 3 to 1 input channels" in caplog.text
    g = images[..., :1]
    _close(_f(gray, g), _f(model, np.repeat(g, 3, axis=-1)))
    # "mean" with one channel is the same kernel
    np.testing.assert_allclose(adapt_kernel(_first_kernel(model), 1, "mean"), _first_kernel(gray), rtol=1e-6)


def test_zero_rgb_plus_extra_equals_rgb(rgb, images):
    model, path = rgb
    m4 = _build(4, path, channel_adapt="zero")
    x = images[..., :4]
    _close(_f(m4, x), _f(model, x[..., :3]))
    # an explicit mapping with None gives the same kernel
    np.testing.assert_array_equal(adapt_kernel(_first_kernel(model), 4, (0, 1, 2, None)), _first_kernel(m4))
    # the first conv is the only layer that changed
    for layer in m4.layers:
        if layer.weights and layer.name != "stem_1a_3x3_conv":
            for a, b in zip(layer.get_weights(), model.get_layer(layer.name).get_weights()):
                np.testing.assert_array_equal(a, b)


def test_repeat_and_mean_on_six_channels(rgb, images, caplog):
    model, path = rgb
    with caplog.at_level(logging.WARNING, logger="anyshape.weights"):
        m6 = _build(6, path)  # default for 6 channels: "repeat"
    assert "channel_adapt='repeat'" in caplog.text
    rgb_x = images[..., :3]
    _close(_f(m6, np.concatenate([rgb_x, rgb_x], axis=-1)), _f(model, rgb_x))
    # "mean": the model on any 6-channel image == the RGB model on its channel mean, replicated
    load_weight_set(m6, resolve(path), channel_adapt="mean")
    mean = images.mean(axis=-1, keepdims=True)
    _close(_f(m6, images), _f(model, np.repeat(mean, 3, axis=-1)))


def test_random_reinitialises_only_the_first_conv(rgb, caplog):
    model, path = rgb
    m4 = _build(4, None)
    with caplog.at_level(logging.WARNING, logger="anyshape.weights"):
        load_weight_set(m4, resolve(path), channel_adapt="random", seed=3)
    assert "channel_adapt='random'" in caplog.text
    k = _first_kernel(m4)
    limit = np.sqrt(6 / (9 * 4 + 9 * 32))
    assert k.shape == (3, 3, 4, 32) and np.abs(k).max() <= limit and k.std() > limit / 4
    np.testing.assert_array_equal(
        keras.ops.convert_to_numpy(m4.get_layer("mixed0_branch1x1_conv").kernel),
        keras.ops.convert_to_numpy(model.get_layer("mixed0_branch1x1_conv").kernel),
    )


def test_mapping_makes_a_bgr_model(rgb, images):
    model, path = rgb
    x = images[..., :3]
    expected = _f(model, x)
    kernel = _first_kernel(model)
    try:
        load_weight_set(model, resolve(path), channel_adapt=(2, 1, 0))
        _close(_f(model, x[..., ::-1]), expected)
    finally:
        model.get_layer("stem_1a_3x3_conv").set_weights([kernel])


def test_kernel_rules_on_arrays():
    k = np.random.default_rng(0).standard_normal((3, 3, 3, 32)).astype(np.float32)
    np.testing.assert_allclose(adapt_kernel(k, 1, "sum")[:, :, 0], k.sum(axis=2), rtol=1e-6)
    np.testing.assert_allclose(adapt_kernel(k, 5, "mean")[:, :, 4], k.sum(axis=2) / 5, rtol=1e-6)
    r = adapt_kernel(k, 5, "repeat")
    np.testing.assert_allclose(r[:, :, 3], k[:, :, 0] * 3 / 5, rtol=1e-6)
    np.testing.assert_array_equal(adapt_kernel(k, 2, "zero"), k[:, :, :2])
    np.testing.assert_array_equal(adapt_kernel(k, 3, "repeat"), k)
    assert set(RULES) == {"sum", "mean", "repeat", "zero", "random"}


@pytest.mark.parametrize("bad", ["average", (0, 1), (0, 1, 3), (0, 1, "g")])
def test_bad_rules_are_refused_before_loading(rgb, bad):
    model, path = rgb
    before = model.get_weights()
    with pytest.raises(ValueError, match="channel_adapt"):
        load_weight_set(model, resolve(path), channel_adapt=bad)
    assert all(np.array_equal(a, b) for a, b in zip(before, model.get_weights()))


def test_unknown_options_are_refused(rgb):
    model, path = rgb
    with pytest.raises(ValueError, match="unknown weight option"):
        load_weight_set(model, resolve(path), channel_adapted="sum")
