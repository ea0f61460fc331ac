"""EfficientNet B0 ... B7 (anyshape.archs.efficientnet) against keras.applications.

Every member: Keras' signature, blocks table, weight layout and layer names (with and without the
top). EfficientNetB0, the smallest, stands for the family in the output parity tests: equal outputs
with Keras' weights at Keras' default size and at an odd non-square size, with and without the top;
the free-size model at an odd size equal to Keras' fixed-size one (Keras' own free-size model pads
as for an even size there); Keras' `weights="imagenet"` structure (the extra per-channel Rescaling)
through `stddev_rescaling`; channels_first.

Everything runs on TensorFlow; the free-size parity at an odd size (marked every_backend) runs on
JAX and PyTorch as well (`make test`).
"""

import inspect

import keras
import numpy as np
import pytest
from model_helpers import assert_keras_drop_in, images, layout_cases, randomised_weights, relative_error, run

import anyshape
from anyshape import applications
from anyshape.archs import efficientnet, get_arch, list_models
from anyshape.shapes import explain

NAMES = list_models("efficientnet")
ODD = (67, 45, 3)  # odd and non-square, above Keras' 32


def _keras(name, **kwargs):
    return getattr(keras.applications, get_arch(name).keras_name)(weights=None, **kwargs)


def _weights(model, seed=0):
    """Random weights with BatchNorm moved and the input Normalization's mean and variance set to
    ImageNet-like values (fresh they are 0 and 1, which would leave them untested)."""
    out = randomised_weights(model, seed)
    rng = np.random.default_rng(seed)
    for i, w in enumerate(model.weights):
        if w.path.startswith("normalization") and w.name in ("mean", "variance"):
            out[i] = rng.uniform(0.05, 0.5, w.shape).astype("float32")
    return out


def _set_weights(model, weights):
    """set_weights, then what Keras' weight-file loaders do after it: Normalization computes with a
    copy of its mean and variance made in `finalize_state()`, which set_weights does not call."""
    model.set_weights(weights)
    for layer in model.layers:
        if isinstance(layer, keras.layers.Normalization):
            layer.finalize_state()


def test_members_are_keras_constructors():
    assert NAMES == [f"efficientnet_b{i}" for i in range(8)]
    for name in NAMES:
        arch = get_arch(name)
        keras_params = inspect.signature(getattr(keras.applications, arch.keras_name)).parameters
        assert [(p.name, p.default) for p in keras_params.values()] == list(arch.keras_args)
        params = explain(arch=name, include_top=True).params
        assert f"{params / 1e6:.1f} M parameters" in arch.description


def test_blocks_table_is_keras():
    from keras.src.applications.efficientnet import DEFAULT_BLOCKS_ARGS

    keys = ("kernel_size", "repeats", "filters_in", "filters_out", "expand_ratio", "strides", "se_ratio")
    assert [tuple(row[k] for k in keys) for row in DEFAULT_BLOCKS_ARGS] == [
        (a.kernel, a.repeats, a.filters_in, a.filters_out, a.expand_ratio, a.strides, a.se_ratio)
        for a in efficientnet.BLOCKS_ARGS
    ]
    assert all(row["id_skip"] for row in DEFAULT_BLOCKS_ARGS)


@pytest.mark.parametrize("name, include_top", layout_cases("efficientnet", "efficientnet_b0"))
def test_layout_equals_keras(name, include_top):
    """Keras' default size with the top, free size without (the layout does not depend on it)."""
    theirs = _keras(name, include_top=include_top)
    ours = getattr(applications, get_arch(name).keras_name)(weights=None, include_top=include_top)
    assert_keras_drop_in(ours, theirs, dropped=("ZeroPadding2D",))  # correct_pad's paddings: "same" here
    assert ours.name == theirs.name
    dropouts = {layer.name: layer.rate for layer in theirs.layers if isinstance(layer, keras.layers.Dropout)}
    assert {layer.name: layer.rate for layer in ours.layers if isinstance(layer, keras.layers.Dropout)} == dropouts
    block_outputs = [  # Keras' last layer of each block (block1a_project_bn, block2b_add, ...)
        layer.name
        for layer, after in zip(theirs.layers, theirs.layers[1:])
        if layer.name.startswith("block") and not after.name.startswith(layer.name.split("_")[0] + "_")
    ]
    assert get_arch(name).blocks == ("stem_activation", *block_outputs, "top_activation")


@pytest.fixture(scope="module", params=[True, False], ids=["top", "notop"])
def b0_pair(request):
    """(include_top, Keras' B0 at its default size, anyshape's B0 at free size), same weights."""
    include_top = request.param
    theirs = _keras("efficientnet_b0", include_top=include_top)
    ours = anyshape.create_model("efficientnet_b0", include_top=include_top, input_shape=(None, None, 3))
    weights = _weights(theirs)
    _set_weights(theirs, weights)
    _set_weights(ours, weights)
    return include_top, theirs, ours


def test_b0_equals_keras_at_the_default_size(b0_pair):
    _, theirs, ours = b0_pair
    x = images((224, 224, 3), low=0.0, high=255.0)
    assert relative_error(run(ours, x), run(theirs, x)) <= 1e-6


@pytest.mark.every_backend
def test_b0_free_size_equals_keras_fixed_size_at_an_odd_size(b0_pair):
    """Keras pads by correct_pad, which reads the static size: right for a fixed odd size. Here one
    free-size model pads each call's own size the same way."""
    include_top, theirs, ours = b0_pair
    fixed = _keras("efficientnet_b0", include_top=include_top, input_shape=ODD)
    _set_weights(fixed, theirs.get_weights())
    x = images(ODD, low=0.0, high=255.0)
    assert relative_error(run(ours, x), run(fixed, x)) <= 1e-6
    ours_fixed = anyshape.create_model("efficientnet_b0", include_top=include_top, input_shape=ODD)
    _set_weights(ours_fixed, theirs.get_weights())
    assert relative_error(run(ours_fixed, x), run(fixed, x)) <= 1e-6


def test_stddev_rescaling_builds_keras_imagenet_structure(monkeypatch):
    """Keras' weights="imagenet" model has a third preprocessing layer; built here (file download
    and load stubbed out: the structure is what is compared) it equals anyshape's model with
    stddev_rescaling=IMAGENET_STDDEV_RGB, and differs from the default structure."""
    from keras.src.applications import efficientnet as keras_efficientnet

    monkeypatch.setattr(keras_efficientnet.file_utils, "get_file", lambda *args, **kwargs: "not-downloaded.h5")
    monkeypatch.setattr(keras.Model, "load_weights", lambda self, *args, **kwargs: None)
    theirs = keras.applications.EfficientNetB0(weights="imagenet", include_top=False, input_shape=ODD)
    ours = anyshape.create_model(
        "efficientnet_b0", include_top=False, input_shape=ODD, stddev_rescaling=efficientnet.IMAGENET_STDDEV_RGB
    )
    plain = anyshape.create_model("efficientnet_b0", include_top=False, input_shape=ODD)
    weights = _weights(theirs)
    for model in (theirs, ours, plain):
        _set_weights(model, weights)
    assert_keras_drop_in(ours, theirs, dropped=("ZeroPadding2D",))  # correct_pad's paddings: "same" here
    x = images(ODD, low=0.0, high=255.0)
    assert relative_error(run(ours, x), run(theirs, x)) <= 1e-6
    # (a random network damps the difference towards its output: compared where it enters)
    stem = [keras.Model(m.input, m.get_layer("stem_conv").output) for m in (theirs, plain)]
    assert relative_error(run(stem[1], x), run(stem[0], x)) > 0.1


def test_stddev_rescaling_follows_the_channel_count():
    """With 1 or 4 channels (channel adaptation) every channel gets the stddevs' mean: no mismatch
    between the layer's values and its input."""
    stddevs = efficientnet.IMAGENET_STDDEV_RGB
    for channels in (1, 4):
        report = explain((40, 40, channels), arch="efficientnet_b0", stddev_rescaling=stddevs)
        assert report.valid, report.reason()
    assert efficientnet.per_channel(stddevs, 3) == list(stddevs)
    assert efficientnet.per_channel(stddevs, 2) == [sum(stddevs) / 3] * 2


def test_b0_channels_first_equals_channels_last():
    """With the imagenet structure's per-channel Rescaling, under a global channels_first."""
    stddevs = efficientnet.IMAGENET_STDDEV_RGB
    last = anyshape.create_model("efficientnet_b0", input_shape=ODD, stddev_rescaling=stddevs)
    saved = keras.config.image_data_format()
    try:
        keras.config.set_image_data_format("channels_first")
        first = anyshape.create_model("efficientnet_b0", input_shape=(3, *ODD[:2]), stddev_rescaling=stddevs)
    finally:
        keras.config.set_image_data_format(saved)
    weights = _weights(last)
    _set_weights(last, weights)
    _set_weights(first, weights)
    x = images(ODD, low=0.0, high=255.0)
    assert relative_error(run(first, np.transpose(x, (0, 3, 1, 2))), run(last, x)) <= 1e-6


def test_config_is_checked_in_its_names():
    with pytest.raises(ValueError, match="drop_connect_rate must be in"):
        anyshape.create_model("efficientnet_b0", drop_connect_rate=1.5)
    with pytest.raises(ValueError, match="stddev_rescaling must hold positive numbers"):
        anyshape.create_model("efficientnet_b0", stddev_rescaling=(0.2, 0.0, 0.2))
