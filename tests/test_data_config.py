"""anyshape.data_config: one DataConfig, resolved in one place, read by every other module."""

import json
import re
from types import SimpleNamespace

import pytest

from anyshape import data_config, datasets, engine, preprocess
from anyshape.data_config import (
    DEFAULT_CROP_PCT,
    DEFAULT_INTERPOLATION,
    IMAGENET_MEAN,
    IMAGENET_STD,
    DataConfig,
    resolve_data_config,
)
from anyshape.weights import REGISTRY, WeightSet, data_config_for, preprocessing_for


def test_defaults_are_the_constants_everywhere():
    config = resolve_data_config()
    assert config == DataConfig(mode="tf", crop_pct=0.875, interpolation="bicubic", label_offset="auto")
    assert (DEFAULT_CROP_PCT, DEFAULT_INTERPOLATION) == (0.875, "bicubic")
    # the other modules take their defaults from here, not from literals of their own
    assert engine.Preprocessing is DataConfig
    assert preprocess.IMAGENET_MEAN is IMAGENET_MEAN and preprocess.IMAGENET_STD is IMAGENET_STD
    assert preprocess.resize.__defaults__ == (DEFAULT_INTERPOLATION,)
    assert preprocess.resize_shorter_and_center_crop.__defaults__ == (DEFAULT_CROP_PCT, DEFAULT_INTERPOLATION)
    ws = WeightSet(name="bare")
    assert (ws.crop_pct, ws.interpolation) == (DEFAULT_CROP_PCT, DEFAULT_INTERPOLATION)


def test_registered_sets_keep_their_own_settings():
    for name, interpolation in [
        ("imagenet", "bilinear"),
        ("torchvision.IMAGENET1K_V1", "bilinear"),
        ("inception_v3.tf_in1k", "bicubic"),
        ("inception_v3.gluon_in1k", "bicubic"),
    ]:
        config = data_config_for(name)
        ws = REGISTRY[name]
        assert (config.mode, config.crop_pct, config.interpolation) == (ws.mode, ws.crop_pct, interpolation)
        assert config.preprocess_kwargs() == ws.preprocessing == preprocessing_for(name)
        assert config.input_size == (299, 299) and config.label_offset == 0
    gluon = data_config_for("inception_v3.gluon_in1k")
    assert (gluon.mean, gluon.std) == (IMAGENET_MEAN, IMAGENET_STD)
    assert (
        resolve_data_config(REGISTRY["inception_v3.gluon_in1k"])
        == gluon
        == REGISTRY["inception_v3.gluon_in1k"].data_config
    )


def test_names_are_resolved_by_the_weights_layer_not_the_data_layer(tmp_path):
    """The data layer does not know the registry: a name or a path is refused there, with the
    function that resolves it; `data_config_for` resolves it and gives the same config."""
    for source in ("imagenet", tmp_path / "model.pth"):
        with pytest.raises(TypeError, match=r"anyshape\.weights\.data_config_for\(weights\) resolves it"):
            resolve_data_config(source)
    pth = tmp_path / "model.pth"
    pth.write_bytes(b"x")
    assert data_config_for(pth, preprocessing="torch").preprocess_kwargs() == {
        "mode": "torch",
        "mean": IMAGENET_MEAN,
        "std": IMAGENET_STD,
    }
    assert data_config_for(None) == resolve_data_config(None) == DataConfig()
    # anyshape.preprocess_input takes weights= (resolved up there); the data layer's takes the scaling
    import numpy as np

    import anyshape

    gray = np.full((1, 2, 2, 1), 100.0, np.float32)
    mean, std = sum(IMAGENET_MEAN) / 3, sum(IMAGENET_STD) / 3
    expected = preprocess.preprocess_input(gray, "channels_last", mode="torch", mean=mean, std=std)
    ours = anyshape.preprocess_input(gray, "channels_last", weights="inception_v3.gluon_in1k")
    np.testing.assert_allclose(ours, expected, rtol=1e-6)
    with pytest.raises(ValueError, match="give either weights="):
        anyshape.preprocess_input(gray, "channels_last", weights="imagenet", mode="tf")


def test_other_channel_counts_get_the_average_mean_and_std():
    gray = data_config_for("inception_v3.gluon_in1k", channels=1)
    assert gray.mean == pytest.approx(sum(IMAGENET_MEAN) / 3) and gray.std == pytest.approx(sum(IMAGENET_STD) / 3)
    assert data_config_for("inception_v3.gluon_in1k", channels=3).mean == IMAGENET_MEAN
    assert preprocessing_for("inception_v3.gluon_in1k", 4)["mean"] == pytest.approx(sum(IMAGENET_MEAN) / 3)


def test_trained_run_info_and_models():
    info = {
        "preprocess": {"mode": "torch", "mean": [0.5, 0.4, 0.3], "std": [0.2, 0.2, 0.2]},
        "resize": {"method": "resize_shorter_and_center_crop", "crop_pct": 1.0, "interpolation": "bilinear"},
    }
    from_info = resolve_data_config(info)
    assert from_info == DataConfig("torch", (0.5, 0.4, 0.3), (0.2, 0.2, 0.2), None, 1.0, "bilinear", 0)
    # a model trained by anyshape (run info) wins over its weight set; a plain model gets the defaults
    model = SimpleNamespace(anyshape_run_info=info, anyshape_weights=REGISTRY["imagenet"])
    assert resolve_data_config(model) == from_info == DataConfig.from_model(model)
    assert resolve_data_config(SimpleNamespace(anyshape_weights=REGISTRY["imagenet"])).interpolation == "bilinear"
    assert resolve_data_config(SimpleNamespace(layers=[])) == DataConfig()


def test_training_resize_is_recorded_as_applied():
    training = data_config_for("inception_v3.gluon_in1k").for_training()
    assert training.preprocess_kwargs() == REGISTRY["inception_v3.gluon_in1k"].preprocessing
    assert training.resize_policy() == datasets.RESIZE_POLICY
    assert datasets.RESIZE_POLICY == {
        "method": "resize_shorter_and_center_crop",
        "crop_pct": 1.0,
        "interpolation": "bilinear",
    }
    assert data_config.TRAIN_CROP_PCT == 1.0


def test_random_weights_can_ask_for_mean_std():
    assert resolve_data_config(None, preprocessing="torch").preprocess_kwargs() == {
        "mode": "torch",
        "mean": IMAGENET_MEAN,
        "std": IMAGENET_STD,
    }
    assert resolve_data_config(None, preprocessing="tf") == DataConfig()


def test_an_unknown_mode_is_refused_on_every_way_in(monkeypatch):
    """A mode anyshape does not know (a typo, another case, a crafted file) must not quietly mean "tf"."""
    from dataclasses import replace

    import onnx

    from anyshape.engine.graph_model import METADATA_KEY, GraphModel

    for mode in ("Torch", "TF", "caffe?", "", None):
        with pytest.raises(ValueError, match=re.escape(f"mode={mode!r} is not a preprocessing mode: use one of")) as e:
            DataConfig(mode=mode)
        assert all(repr(known) in str(e.value) for known in data_config.PREPROCESS_MODES)
        with pytest.raises(ValueError, match="not a preprocessing mode"):
            DataConfig.from_dict({"mode": mode})
        with pytest.raises(ValueError, match="not a preprocessing mode"):
            replace(DataConfig(), mode=mode)
    with pytest.raises(ValueError, match="not a preprocessing mode"):  # a run's classes.json
        resolve_data_config({"preprocess": {"mode": "Torch"}, "resize": {}})
    with pytest.raises(ValueError, match="not a preprocessing mode"):  # a converted file's weight set
        resolve_data_config(SimpleNamespace(anyshape_weights=WeightSet(name="crafted", mode="Torch")))
    # an .onnx file whose metadata was edited: refused, naming the file
    graph = onnx.helper.make_model(
        onnx.helper.make_graph(
            [onnx.helper.make_node("Identity", ["x"], ["y"])],
            "g",
            [onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 75, 75, 3])],
            [onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1, 75, 75, 3])],
        )
    )
    good = GraphModel(graph=graph.SerializeToString()).to_bytes()
    assert GraphModel.from_bytes(good).preprocessing == DataConfig()
    meta = dict(GraphModel(graph=b"").metadata(), preprocessing={"mode": "Torch"})
    onnx.helper.set_model_props(graph, {METADATA_KEY: json.dumps(meta)})
    with pytest.raises(ValueError, match=r"crafted.onnx: its anyshape metadata is not valid .*'Torch'"):
        GraphModel.from_bytes(graph.SerializeToString(), source="crafted.onnx")
    # the check reads the one tuple of modes, which grows as modes are added
    monkeypatch.setattr(data_config, "PREPROCESS_MODES", (*data_config.PREPROCESS_MODES, "raw"))
    assert DataConfig(mode="raw").mode == "raw"
    for mode in data_config.PREPROCESS_MODES:
        DataConfig(mode=mode)
