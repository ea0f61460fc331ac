"""EfficientNet B0 ... B7 (anyshape.archs.efficientnet) against keras.applications.

Every member: Keras' signature, blocks table, weight layout and layer names. EfficientNetB0, the
smallest, stands for the family in the family harness (tests/test_family.py): its layout with and
without the top, equal outputs with Keras' weights at Keras' default size, and the free-size model
at an odd non-square size equal to Keras' fixed-size one with and without the top (Keras' own
free-size model pads as for an even size there; with the top on JAX and PyTorch as well). Here:
Keras' `weights="imagenet"` structure (the extra per-channel Rescaling) through
`stddev_rescaling`; channels_first.
"""

import inspect

import keras
import numpy as np
import pytest
from model_helpers import (
    assert_keras_drop_in,
    efficientnet_weights,
    images,
    relative_error,
    run,
    set_weights,
)

import anyshape
from anyshape.archs import efficientnet, get_arch, list_models
from anyshape.shapes import explain

NAMES = list_models("efficientnet")
ODD = (67, 45, 3)  # odd and non-square, above Keras' 32


def _keras(name, **kwargs):
    return getattr(keras.applications, get_arch(name).keras_name)(weights=None, **kwargs)


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
    weights = efficientnet_weights(theirs)
    for model in (theirs, ours, plain):
        set_weights(model, weights)
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
    weights = efficientnet_weights(last)
    set_weights(last, weights)
    set_weights(first, weights)
    x = images(ODD, low=0.0, high=255.0)
    assert relative_error(run(first, np.transpose(x, (0, 3, 1, 2))), run(last, x)) <= 1e-6


def test_config_is_checked_in_its_names():
    with pytest.raises(ValueError, match="drop_connect_rate must be in"):
        anyshape.create_model("efficientnet_b0", drop_connect_rate=1.5)
    with pytest.raises(ValueError, match="stddev_rescaling must hold positive numbers"):
        anyshape.create_model("efficientnet_b0", stddev_rescaling=(0.2, 0.0, 0.2))
