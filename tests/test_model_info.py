"""anyshape.model_info: a saved .keras model keeps its class names, preprocessing and weight set.

The model is a tiny Keras classifier (conv, average pool, softmax), not InceptionV3: what is
tested is the file, and a small model saves and loads in a fraction of a second.
"""

import json
import os
import subprocess
import sys
import zipfile

import keras
import numpy as np
import pytest

from anyshape import engine
from anyshape.data_config import IMAGENET_MEAN, IMAGENET_STD, DataConfig
from anyshape.model_info import MEMBER, ModelInfo, load_model, model_info, read_keras_info, save_model
from anyshape.weights import preprocess_input  # takes weights= (the data layer's takes the scaling)

CLASSES = ("ant", "bee", "cat")
CONFIG = DataConfig(
    mode="torch", mean=IMAGENET_MEAN, std=IMAGENET_STD, input_size=(80, 80), crop_pct=1.0, interpolation="bilinear"
)


def tiny_classifier(classes: int = 3, seed: int = 0):
    keras.utils.set_random_seed(seed)
    x = inputs = keras.Input((None, None, 3))
    x = keras.layers.Conv2D(4, 3, strides=2, activation="relu")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = keras.layers.Dense(classes, activation="softmax", name="predictions")(x)
    return keras.Model(inputs, outputs)


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    path = tmp_path_factory.mktemp("saved") / "tiny.keras"
    model = tiny_classifier()
    save_model(model, path, ModelInfo(CONFIG, CLASSES, "my-weights"))
    return path, model


def test_data_config_dict_round_trip():
    record = CONFIG.to_dict()
    assert json.loads(json.dumps(record)) == record  # JSON-ready
    assert record["mean"] == list(IMAGENET_MEAN) and record["label_offset"] == "auto"
    assert DataConfig.from_dict(record) == CONFIG
    assert DataConfig.from_dict({**DataConfig().to_dict(), "from_a_newer_writer": 1}) == DataConfig()


def test_saved_file_holds_the_info_beside_what_keras_writes(saved):
    path, model = saved
    with zipfile.ZipFile(path) as z:
        names = set(z.namelist())
        record = json.loads(z.read(MEMBER))
    assert {"config.json", "model.weights.h5", MEMBER} <= names
    assert record["class_names"] == list(CLASSES) and record["weights"] == "my-weights"
    assert read_keras_info(path) == ModelInfo(CONFIG, CLASSES, "my-weights")
    assert model.anyshape_info == read_keras_info(path)  # set on the model that was saved too


def test_fresh_process_loads_it_with_keras_alone_then_predicts_with_anyshape(saved, tmp_path):
    """A new interpreter: plain keras.saving.load_model works without anyshape imported;
    anyshape's loader then gives predict the class names and the preprocessing."""
    path, model = saved
    image = tmp_path / "noise.png"
    from PIL import Image

    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (100, 140, 3), dtype=np.uint8)).save(image)
    script = f"""
import json, sys
import keras
plain = keras.saving.load_model({str(path)!r})
assert not any(m == "anyshape" or m.startswith("anyshape.") for m in sys.modules), "anyshape was imported"
out = {{"plain_outputs": int(plain.outputs[0].shape[-1])}}
from anyshape import engine
model = engine.load_or_build({str(path)!r})
predictor = engine.Predictor(model, engine="keras")
out["class_names"] = predictor.class_names
out["preprocessing"] = predictor.preprocessing.to_dict()
rows, _ = engine.predict_paths(predictor, [{str(image)!r}], size=(80, 80), top=1)
out["top"] = rows[0]["predictions"][0]
print("RESULT " + json.dumps(out))
"""
    env = {**os.environ, "KERAS_BACKEND": keras.backend.backend(), "TF_CPP_MIN_LOG_LEVEL": "3"}
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    line = next(ln for ln in done.stdout.splitlines() if ln.startswith("RESULT "))
    out = json.loads(line[len("RESULT ") :])
    assert out["plain_outputs"] == 3
    assert out["class_names"] == list(CLASSES)
    assert DataConfig.from_dict(out["preprocessing"]) == CONFIG
    # the label is the one the model gives the image prepared by CONFIG (torch scaling, whole shorter side)
    x = engine.ImageReader(size=(80, 80), preprocessing=CONFIG).read(image)
    scores = model.predict_on_batch(x[None])[0]
    assert out["top"]["label"] == CLASSES[int(np.argmax(scores))]
    assert abs(out["top"]["score"] - float(scores.max())) <= 1e-4


def test_loaded_model_carries_the_info_and_export_keeps_it(saved, tmp_path):
    path, _ = saved
    loaded = engine.load_or_build(path)
    assert model_info(loaded) == ModelInfo(CONFIG, CLASSES, "my-weights")
    assert DataConfig.from_model(loaded) == CONFIG
    pixels = np.full((1, 4, 4, 3), 128.0, np.float32)  # preprocess_input(weights=model) scales as the file says
    np.testing.assert_allclose(
        preprocess_input(pixels, "channels_last", weights=loaded),
        preprocess_input(pixels, "channels_last", **CONFIG.preprocess_kwargs()),
    )
    again = engine.export_model(loaded, tmp_path / "again.keras")
    assert read_keras_info(again) == ModelInfo(CONFIG, CLASSES, "my-weights")


def test_bare_keras_save_loads_with_the_classes_json_beside_it_or_the_defaults(tmp_path):
    """Files without the member: a run folder's classes.json (older runs) names and prepares; else defaults."""
    model = tiny_classifier()
    (tmp_path / "plain").mkdir()
    model.save(tmp_path / "plain" / "model.keras")
    assert read_keras_info(tmp_path / "plain" / "model.keras") is None
    assert model_info(load_model(tmp_path / "plain" / "model.keras")) == ModelInfo(DataConfig(), None, None)
    (tmp_path / "run").mkdir()
    model.save(tmp_path / "run" / "model.keras")
    run_info = {
        "classes": list(CLASSES),
        "preprocess": {"mode": "torch", "mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD)},
        "resize": {"method": "resize_shorter_and_center_crop", "crop_pct": 1.0, "interpolation": "bilinear"},
    }
    (tmp_path / "run" / "classes.json").write_text(json.dumps(run_info))
    info = model_info(load_model(tmp_path / "run" / "model.keras"))
    assert info.class_names == CLASSES
    assert info.data_config == DataConfig("torch", IMAGENET_MEAN, IMAGENET_STD, None, 1.0, "bilinear", 0)


def test_converted_keras_file_is_prepared_as_its_weight_set_says(tmp_path):
    """`anyshape convert` records the weight set in the member anyshape_weights.json; --model reads it."""
    from anyshape.weights.keras_h5 import write_metadata
    from anyshape.weights.registry import REGISTRY

    path = tmp_path / "converted.keras"
    tiny_classifier().save(path)
    write_metadata(str(path), REGISTRY["inception_v3.gluon_in1k"])
    loaded = load_model(path)
    assert loaded.anyshape_weights.name == "inception_v3.gluon_in1k"
    assert DataConfig.from_model(loaded).mode == "torch" and DataConfig.from_model(loaded).mean == IMAGENET_MEAN
    assert model_info(loaded).weights == "inception_v3.gluon_in1k"


def test_a_damaged_member_says_what_to_do(tmp_path):
    path = tmp_path / "odd.keras"
    tiny_classifier().save(path)
    with zipfile.ZipFile(path, "a") as z:
        z.writestr(MEMBER, json.dumps({"anyshape_model": 99}))
    with pytest.raises(ValueError, match="save the model again"):
        read_keras_info(path)
    with pytest.raises(ValueError, match="model_path=.*save the model again") as e:
        engine.load_or_build(path)
    from anyshape.cli.options import cli_message

    assert cli_message(e.value).startswith(f"--model {path}: ")  # the CLI's words for the same error


def test_a_saved_network_keeps_its_architecture_and_config(tmp_path):
    """A model built by create_model is known on load for what it is (its registered network and
    every build argument), not guessed from its layer names."""
    import anyshape
    from anyshape.archs import model_config

    model = anyshape.InceptionV3(weights=None, input_shape=(75, 91, 2), classes=3, count_include_pad=True)
    path = save_model(model, tmp_path / "m.keras")
    loaded = load_model(path)
    arch, config = model_config(loaded)
    assert arch.name == "inception_v3"
    assert config == model.anyshape_config
    assert config.count_include_pad is True and config.input_shape == (75, 91, 2) and config.classes == 3
    # a file written before models carried their Config still loads, without one
    with zipfile.ZipFile(path) as z:
        record = json.loads(z.read(MEMBER))
    del record["architecture"], record["config"]
    assert ModelInfo.from_dict(record).config is None


def test_a_crafted_preprocessing_mode_is_refused_not_read_as_tf(saved, tmp_path, capsys):
    """A model file whose anyshape_model.json names a mode anyshape does not know is refused
    (before: any unknown mode quietly meant "tf"), in Python and in the CLI (exit 2, no traceback)."""
    from PIL import Image

    from anyshape.cli import main

    crafted = tmp_path / "crafted.keras"
    with zipfile.ZipFile(saved[0]) as src, zipfile.ZipFile(crafted, "w") as dst:
        for item in src.infolist():
            data = src.read(item.filename)
            if item.filename == MEMBER:
                record = json.loads(data)
                record["data_config"]["mode"] = "Torch"
                data = json.dumps(record).encode()
            dst.writestr(item, data)
    with pytest.raises(ValueError, match=r"crafted.keras: anyshape_model.json is not valid .*mode='Torch'"):
        read_keras_info(crafted)
    with pytest.raises(ValueError, match="model_path=.*crafted.keras.*'Torch'"):
        engine.load_or_build(crafted)
    image = tmp_path / "a.png"
    Image.fromarray(np.zeros((80, 80, 3), np.uint8)).save(image)
    assert main(["predict", str(image), "--model", str(crafted)]) == 2
    err = capsys.readouterr().err
    assert "'Torch'" in err and "not a preprocessing mode" in err and "Traceback" not in err
