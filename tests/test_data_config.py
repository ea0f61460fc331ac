"""anyshape.data_config: one DataConfig, resolved in one place, read by every other module."""

import json
import re
from dataclasses import replace
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
    # Keras' caffe-mode sets (ResNet, VGG): one channel gets the average of the BGR mean, as
    # predict gives a one-channel model (data_config_for(weights, channels)); three are Keras' own
    caffe = float(np.mean(preprocess.CAFFE_MEAN))
    for name in ("resnet50.keras_in1k", "vgg16.keras_in1k"):
        ours = anyshape.preprocess_input(gray, "channels_last", weights=name)
        np.testing.assert_allclose(ours, gray - caffe, rtol=1e-6)
        assert data_config_for(name, channels=1).preprocess_kwargs() == {"mode": "caffe", "mean": pytest.approx(caffe)}
    rgb = np.random.default_rng(0).uniform(0, 255, (1, 2, 2, 3)).astype(np.float32)
    np.testing.assert_allclose(
        anyshape.preprocess_input(rgb, weights="resnet50.keras_in1k"), rgb[..., ::-1] - preprocess.CAFFE_MEAN, rtol=1e-6
    )


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


def _timm_eval(timm_name: str, image):
    """timm's own evaluation transform for `timm_name`'s pretrained cfg at its test size
    (timm.data.resolve_data_config, create_transform) applied to the PIL image: (C, H, W) numpy."""
    from timm.data import create_transform
    from timm.data import resolve_data_config as timm_data_config
    from timm.models import get_pretrained_cfg

    config = timm_data_config({}, pretrained_cfg=get_pretrained_cfg(timm_name).to_dict(), use_test_size=True)
    return config, create_transform(**config)(image).numpy()


@pytest.mark.parametrize(
    "name, timm_name",
    [
        ("efficientnet_v2_m.tf_in1k", "tf_efficientnetv2_m.in1k"),  # squash, crop 1.0
        ("efficientnet_v2_b3.tf_in21k_ft_in1k", "tf_efficientnetv2_b3.in21k_ft_in1k"),  # squash, crop 0.9
        ("efficientnet_v2_b0.tf_in1k", "tf_efficientnetv2_b0.in1k"),  # center, crop 0.875
    ],
)
def test_a_non_square_image_is_cropped_as_timm_evaluates_the_weights(name, timm_name, tmp_path):
    """A 91 x 211 image file read at the set's size by the engine's reader, with the set's
    DataConfig: equal to timm's eval transform of that pretrained cfg (its crop_mode, crop_pct,
    interpolation, test size) on the PIL image, to float rounding; the set's crop_mode is timm's.
    Squash keeps the whole image (the other mode's crop differs); center is as it was."""
    import numpy as np
    from PIL import Image

    from anyshape.engine.images import ImageReader

    pixels = np.random.default_rng(3).integers(0, 256, (91, 211, 3), dtype=np.uint8)
    pixels[:, :20] = 255  # a bright band at the left edge: squash keeps it, the centre crop cuts it
    path = tmp_path / "wide.png"
    Image.fromarray(pixels).save(path)
    timm_config, expected = _timm_eval(timm_name, Image.open(path).convert("RGB"))
    config = data_config_for(name)
    assert config.crop_mode == timm_config["crop_mode"] and config.crop_pct == timm_config["crop_pct"]
    assert config.input_size == timm_config["input_size"][1:] and config.mode == "raw"
    got = ImageReader(size=config.input_size, preprocessing=config).read(path)  # 0..255: the graph scales
    mean, std = (np.asarray(timm_config[k], np.float32) for k in ("mean", "std"))
    ours = ((got / 255.0 - mean) / std).transpose(2, 0, 1)
    assert ours.shape == expected.shape
    np.testing.assert_allclose(ours, expected, atol=1e-5)
    other = replace(config, crop_mode="center" if config.crop_mode == "squash" else "squash")
    assert np.abs(other.resize(pixels, config.input_size).astype(np.float32) - got).max() > 50
    if config.crop_mode == "center":  # as before the mode existed
        same = preprocess.resize_shorter_and_center_crop(pixels, config.input_size, config.crop_pct, "bicubic")
        np.testing.assert_array_equal(got, same.astype(np.float32))


def test_the_crop_mode_is_recorded_wherever_the_config_is(tmp_path):
    """crop_mode round-trips through DataConfig's dict (model files' anyshape_model.json, .onnx
    metadata), a converted file's weight set JSON, a run's classes.json (the resize method), a run
    manifest and a published state dict recognised by its name; records written before it existed
    read as "center" (an old manifest still resumes); a mode anyshape does not apply is refused,
    naming the ones it does."""
    from anyshape.model_info import ModelInfo
    from anyshape.weights import resolve

    squash = data_config_for("efficientnet_v2_l.tf_in1k")
    assert squash.crop_mode == "squash" and DataConfig().crop_mode == "center"
    assert DataConfig.from_dict(squash.to_dict()) == squash
    old = {k: v for k, v in squash.to_dict().items() if k != "crop_mode"}
    assert DataConfig.from_dict(old).crop_mode == "center"
    info = ModelInfo(squash, None, "efficientnet_v2_l.tf_in1k")
    assert ModelInfo.from_dict(json.loads(json.dumps(info.to_dict()))).data_config == squash
    ws = REGISTRY["efficientnet_v2_l.tf_in1k"]
    assert WeightSet.from_json(ws.to_json()).data_config == squash
    before = {k: v for k, v in json.loads(ws.to_json()).items() if k != "crop_mode"}
    assert WeightSet.from_json(json.dumps(before)).data_config.crop_mode == "center"
    # a run: its resize method names the mode; training itself always centre-crops
    policy = squash.resize_policy()
    assert policy["method"] == "squash_and_center_crop" and squash.for_training().crop_mode == "center"
    run = {"preprocess": squash.preprocess_kwargs(), "resize": policy}
    assert resolve_data_config(run).crop_mode == "squash"
    assert resolve_data_config({"preprocess": {"mode": "tf"}, "resize": {"crop_pct": 1.0}}).crop_mode == "center"
    with pytest.raises(ValueError, match="resize method 'letterbox' is not one anyshape applies"):
        resolve_data_config({"preprocess": {"mode": "tf"}, "resize": {"method": "letterbox"}})
    # a run manifest written before: its recorded preprocessing is the centre crop, and resumes
    from anyshape.engine.manifest import RunManifest

    now = RunManifest({"preprocessing": json.loads(json.dumps(DataConfig().to_dict()))}, "d")
    recorded = {k: v for k, v in now.options["preprocessing"].items() if k != "crop_mode"}
    assert now.differences(RunManifest.from_json({"options": {"preprocessing": recorded}, "weights_digest": "d"})) == []
    squashed = RunManifest({"preprocessing": json.loads(json.dumps(squash.to_dict()))}, "d")
    assert "crop_mode" in squashed.differences(now)[0]
    # timm's file under its published name is recognised as the set, its crop mode with it
    published = tmp_path / ws.file_name
    published.write_bytes(b"not read here")
    assert resolve(published, arch="efficientnet_v2_l").data_config.crop_mode == "squash"
    for mode in ("border", "Squash", None):
        with pytest.raises(ValueError, match=r"crop_mode=.* is not a crop mode: use one of 'center', 'squash'"):
            DataConfig(crop_mode=mode)
