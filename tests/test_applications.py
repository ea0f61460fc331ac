"""`anyshape.applications`: keras.applications' constructors, each with Keras' signature and a thin
call of `create_model`. Nothing is built: the Keras builder and the weight loader are replaced by
recorders, so each test sees the Config and the weight set a constructor call leads to (the
constructors building and loading for real with Keras' defaults: test_weights_family.py)."""

from __future__ import annotations

import inspect
from types import SimpleNamespace

import keras
import pytest

import anyshape.applications as applications
from anyshape.archs import get_arch, list_models

KERAS_NAMES = sorted(get_arch(n).keras_name for n in list_models())


@pytest.fixture
def recorder(monkeypatch):
    import anyshape.archs.keras_ops as keras_ops
    import anyshape.weights as weights

    monkeypatch.setattr(keras_ops, "build", lambda arch, config, tensor: SimpleNamespace())
    loaded = []
    monkeypatch.setattr(weights, "load_weight_set", lambda model, ws, **kw: loaded.append(ws))
    return loaded


def test_there_is_one_constructor_per_network_named_as_keras():
    assert sorted(applications.__all__) == KERAS_NAMES
    for name in KERAS_NAMES:
        constructor = getattr(applications, name)
        assert constructor.__name__ == constructor.__qualname__ == name
        assert constructor.__module__ == "anyshape.applications" or name == "InceptionV3"


@pytest.mark.parametrize("name", [n for n in KERAS_NAMES if n != "InceptionV3"])
def test_signature_is_keras_then_the_keyword_extras(name):
    """Keras' parameters in Keras' order with Keras' defaults, then data_format and
    preprocessing (keyword-only, default None) and **kwargs; the docstring names both."""
    ours = inspect.signature(getattr(applications, name)).parameters.values()
    theirs = inspect.signature(getattr(keras.applications, name)).parameters.values()
    plain = [(p.name, p.default) for p in ours if p.kind is inspect.Parameter.POSITIONAL_OR_KEYWORD]
    assert plain == [(p.name, p.default) for p in theirs]
    extras = [(p.name, p.kind, p.default) for p in ours if p.kind is not inspect.Parameter.POSITIONAL_OR_KEYWORD]
    assert extras == [
        ("data_format", inspect.Parameter.KEYWORD_ONLY, None),
        ("preprocessing", inspect.Parameter.KEYWORD_ONLY, None),
        ("kwargs", inspect.Parameter.VAR_KEYWORD, inspect.Parameter.empty),
    ]
    doc = getattr(applications, name).__doc__
    assert f"keras.applications.{name}'s arguments" in doc
    assert f"anyshape.create_model('{get_arch(name).name}', ...)" in doc


def test_keras_defaults_load_imagenet_at_the_default_size(recorder):
    """`MobileNet()` as Keras users call it: top, 224x224x3, alpha 1, the ImageNet set."""
    model = applications.MobileNet()
    config = model.anyshape_config
    assert (config.include_top, config.input_shape, config.alpha, config.classes) == (True, (224, 224, 3), 1.0, 1000)
    assert model.anyshape_arch == "mobilenet"
    assert [ws.name for ws in recorder] == ["mobilenet.keras_in1k"]


def test_positional_keyword_and_extra_arguments_reach_create_model(recorder):
    model = applications.MobileNet((96, 64, 3), 0.5, weights=None, include_top=False)
    config = model.anyshape_config
    assert (config.input_shape, config.alpha, config.include_top) == ((96, 64, 3), 0.5, False)
    assert recorder == []
    first = applications.ResNet50(
        weights=None, input_shape=(3, 64, 64), include_top=False, data_format="channels_first", dropout_rate=0.25
    )
    assert first.anyshape_config.data_format == "channels_first" and first.anyshape_arch == "resnet50"
    assert first.anyshape_config.dropout_rate == 0.25
    with pytest.raises(TypeError, match="multiple values for argument 'alpha'"):
        applications.MobileNet((96, 64, 3), 0.5, alpha=0.25)


KERAS_MODULES = sorted(
    name for name in dir(keras.applications) if inspect.ismodule(getattr(keras.applications, name)) and name[0] != "_"
)


@pytest.mark.parametrize("module", KERAS_MODULES)
def test_keras_import_lines_work_with_anyshape(module):
    """`from anyshape.applications.resnet50 import ResNet50, preprocess_input, decode_predictions`:
    each of keras.applications' modules has its anyshape twin, with every name Keras' has (and
    mobilenet_v3 its two constructors, which Keras' module leaves out), the constructors being
    anyshape's, decode_predictions anyshape's, and preprocess_input Keras' result on RGB pixels
    (the pass-through of the networks that scale inside the graph included) for both data formats."""
    import importlib

    import numpy as np

    import anyshape

    ours, theirs = importlib.import_module(f"anyshape.applications.{module}"), getattr(keras.applications, module)
    public = {n for n in dir(theirs) if not n.startswith("_")}
    assert public <= set(ours.__all__) and set(ours.__all__) <= set(dir(ours))
    for name in set(ours.__all__) - {"preprocess_input", "decode_predictions"}:
        assert getattr(ours, name) is getattr(applications, name)
    if module == "mobilenet_v3":
        assert {"MobileNetV3Small", "MobileNetV3Large"} <= set(ours.__all__)
    assert ours.decode_predictions is anyshape.decode_predictions
    x = np.random.default_rng(0).uniform(0, 255, (2, 5, 7, 3)).astype("float32")
    for data_format, batch in (("channels_last", x), ("channels_first", x.transpose(0, 3, 1, 2))):
        expected = np.asarray(theirs.preprocess_input(batch.copy(), data_format=data_format))
        got = ours.preprocess_input(batch, data_format=data_format)
        assert got.dtype == np.float32 and got.shape == batch.shape
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-4)


def test_keras_module_preprocess_input_takes_any_channel_count():
    """Where Keras' caffe and torch modes need 3 channels, a gray image gets the average of the
    per-channel mean (and std), as predict gives a one-channel model of those weights."""
    import numpy as np

    from anyshape.applications import densenet, imagenet_utils, resnet50
    from anyshape.preprocess import CAFFE_MEAN, IMAGENET_MEAN, IMAGENET_STD

    gray = np.full((1, 4, 4, 1), 120.0, np.float32)
    np.testing.assert_allclose(resnet50.preprocess_input(gray), gray - np.mean(CAFFE_MEAN), rtol=1e-6)
    np.testing.assert_allclose(
        densenet.preprocess_input(gray), (gray / 255 - np.mean(IMAGENET_MEAN)) / np.mean(IMAGENET_STD), rtol=1e-6
    )
    rgb = np.full((1, 4, 4, 3), 120.0, np.float32)
    np.testing.assert_allclose(imagenet_utils.preprocess_input(rgb), rgb - np.array(CAFFE_MEAN), rtol=1e-6)
    np.testing.assert_allclose(imagenet_utils.preprocess_input(rgb, mode="tf"), rgb / 127.5 - 1, rtol=1e-6)
