"""`anyshape.create_model`'s own decisions (src/anyshape/factory.py), without building a network:
the Keras builder and the weight loader are replaced by recorders, so each test sees the Config
create_model hands to the builder and the weight set it hands to the loader. What the builder
does with a Config is tested in test_archs.py and the family tests; here: the input shape taken
from the arguments, the tensor or Keras' defaults, the data format, the weights argument's
checks, the weight set's overrides, and the weight options refused without weights."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import keras
import pytest

import anyshape
from anyshape.weights import REGISTRY


@pytest.fixture
def recorder(monkeypatch):
    """create_model with a builder that returns an empty object (nothing is built) and a loader
    that records the weight set and the loader's options it is given."""
    import anyshape.archs.keras_ops as keras_ops
    import anyshape.weights as weights

    built = []

    def build(arch, config, tensor):
        built.append(tensor)
        return SimpleNamespace()

    monkeypatch.setattr(keras_ops, "build", build)
    loaded = []
    monkeypatch.setattr(weights, "load_weight_set", lambda model, ws, **kw: loaded.append((ws, kw)))
    return SimpleNamespace(built=built, loaded=loaded)


def test_keras_defaults_give_the_top_at_the_default_size(recorder):
    """`create_model(name)` is keras.applications' call: the classifier at the network's default
    size (channels_first: channels first), no weights loaded; without the top, any size."""
    model = anyshape.create_model("mobilenet")
    assert model.anyshape_config.include_top is True
    assert model.anyshape_config.input_shape == (224, 224, 3)
    assert model.anyshape_arch == "mobilenet" and recorder.loaded == []
    first = anyshape.create_model("mobilenet", data_format="channels_first")
    assert first.anyshape_config.input_shape == (3, 224, 224)
    assert first.anyshape_config.data_format == "channels_first"
    assert anyshape.create_model("mobilenet", include_top=False).anyshape_config.input_shape == (None, None, 3)


def test_data_format_defaults_to_keras_setting_and_is_checked(recorder, monkeypatch):
    monkeypatch.setattr(keras.config, "image_data_format", lambda: "channels_first")
    assert anyshape.create_model("mobilenet", include_top=False).anyshape_config.data_format == "channels_first"
    last = anyshape.create_model("mobilenet", include_top=False, data_format="channels_last")
    assert last.anyshape_config.data_format == "channels_last"
    with pytest.raises(ValueError, match="data_format must be 'channels_last' or 'channels_first', got 'nchw'"):
        anyshape.create_model("mobilenet", data_format="nchw")


def test_the_input_tensor_gives_the_shape(recorder):
    tensor = keras.Input(shape=(96, 80, 3))
    model = anyshape.create_model("mobilenet", input_tensor=tensor, include_top=False)
    assert model.anyshape_config.input_shape == (96, 80, 3)
    assert recorder.built[-1] is tensor
    same = anyshape.create_model("mobilenet", input_tensor=tensor, input_shape=(96, 80, 3), include_top=False)
    assert same.anyshape_config.input_shape == (96, 80, 3)
    with pytest.raises(ValueError, match=r"input_shape=\(64, 64, 3\) conflicts with input_tensor"):
        anyshape.create_model("mobilenet", input_tensor=tensor, input_shape=(64, 64, 3), include_top=False)
    with pytest.raises(ValueError, match="input_tensor must be a 4-D Keras tensor"):
        anyshape.create_model("mobilenet", input_tensor=keras.Input(shape=(96, 3)), include_top=False)
    with pytest.raises(ValueError, match="input_tensor must be a 4-D Keras tensor .* got list"):
        anyshape.create_model("mobilenet", input_tensor=[1, 2], include_top=False)


def test_weights_must_be_none_a_name_or_a_path(recorder, tmp_path):
    with pytest.raises(ValueError, match="weights must be None, a weight set name or a file path, got 5"):
        anyshape.create_model("mobilenet", weights=5)
    anyshape.create_model("mobilenet", weights="imagenet", include_top=False)
    assert recorder.loaded[-1][0].name == "mobilenet.keras_in1k"
    missing = Path(tmp_path) / "absent.h5"  # a path is taken as a path: resolve says it is missing
    with pytest.raises(Exception, match="absent.h5") as raised:
        anyshape.create_model("mobilenet", weights=missing)
    assert "weights must be" not in str(raised.value)


def test_the_weight_set_is_loaded_with_the_loader_options(recorder):
    model = anyshape.create_model("mobilenet", weights="imagenet", include_top=False, channel_adapt="mean", seed=3)
    ws, options = recorder.loaded[-1]
    assert ws is REGISTRY["mobilenet.keras_in1k"]
    assert options == {"channel_adapt": "mean", "seed": 3}
    assert not hasattr(model.anyshape_config, "seed")


def test_a_weight_sets_override_applies_unless_the_caller_gives_the_option(recorder):
    """The first override in the registry: taken when the option is left out; the caller's explicit
    value wins (the guard of issue 29; every override: test_weights_family.py)."""
    ws, key, value = next((s, k, v) for s in anyshape.weights.weight_sets() for k, v in s.build_overrides.items())
    assert getattr(anyshape.create_model(ws.arch, weights=ws.name, include_top=False).anyshape_config, key) == value
    other = not value if isinstance(value, bool) else ()
    given = anyshape.create_model(ws.arch, weights=ws.name, include_top=False, **{key: other})
    assert getattr(given.anyshape_config, key) == other


def test_weight_options_without_weights_are_refused_by_name(recorder):
    with pytest.raises(ValueError, match=r"\['seed', 'preprocessing'\] only apply with pretrained weights"):
        anyshape.create_model("mobilenet", seed=1, preprocessing="tf")
    with pytest.raises(ValueError, match=r"\['channel_adapt'\] only apply with pretrained weights"):
        anyshape.create_model("mobilenet", channel_adapt="mean")


def test_a_transposed_shape_warning_names_the_callers_line(recorder):
    """The TransposedShapeWarning is attributed to the first caller outside anyshape: this file,
    whether it called create_model or a constructor (one more anyshape frame between)."""
    from anyshape.applications import ResNet50
    from anyshape.shapes import TransposedShapeWarning

    options = {"input_shape": (64, 64, 3), "include_top": False, "data_format": "channels_first"}
    with pytest.warns(TransposedShapeWarning) as direct:
        anyshape.create_model("resnet50", **options)
    with pytest.warns(TransposedShapeWarning) as through:
        ResNet50(weights=None, **options)
    assert [w.filename for w in (*direct, *through)] == [__file__, __file__]


def test_an_explicit_none_keeps_its_meaning(recorder):
    """None for the options where Keras gives it a meaning is kept, not taken for "the default":
    classifier_activation=None is the logits (the default is softmax)."""
    assert anyshape.create_model("mobilenet").anyshape_config.classifier_activation == "softmax"
    logits = anyshape.create_model("mobilenet", classifier_activation=None)
    assert logits.anyshape_config.classifier_activation is None


def test_refusals_name_the_network(recorder):
    """classes without the top, and a transposed shape with pretrained weights (without
    channel_adapt): refused before anything is built or loaded, the message naming the network."""
    from anyshape.archs.base import ConfigValueError

    with pytest.raises(ConfigValueError, match=r"^MobileNet: classes=10 sizes the classifier, which is built only"):
        anyshape.create_model("mobilenet", include_top=False, classes=10)
    transposed = {"input_shape": (64, 64, 3), "include_top": False, "data_format": "channels_first"}
    with pytest.raises(ValueError, match=r"^ResNet50: .*\. With pretrained weights that would adapt the first conv"):
        anyshape.create_model("resnet50", weights="imagenet", **transposed)
    assert recorder.built == [] and recorder.loaded == []
