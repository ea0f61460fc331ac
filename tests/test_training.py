"""anyshape.train: runs, checkpoints and resumes; freezing; BatchNorm recalibration; aux loss.

The mechanics (checkpoints, resumes bit for bit, early stopping, interrupts, refused resumes,
BatchNorm freezing and recalibration) run on the tests' tiny network (tests/tiny_net.py, about
4,000 parameters), registered through `anyshape.archs.register_arch` like a user's own network, as
timm tests its mechanics on registered `test_*` models: they are Keras mechanics, the same ops at
any size, and a step of the tiny network takes milliseconds where InceptionV3's takes seconds and
its tracing about 40 s. InceptionV3 keeps what is its own: its freeze names and counts
(up-to-mixedN), the aux-logits loss (the compiled smoke run, at 299), and a run from a weights
file with its backbone frozen. MobileNet (alpha 0.25) is trained through `anyshape train --arch`
end to end, as one real family member: its freeze points, its saved model reloading as itself.
"""

from __future__ import annotations

import dataclasses
import json
import types

import keras
import numpy as np
import pytest
import tiny_net
from image_folder import make_image_folder

import anyshape
from anyshape.data_config import DataConfig, resolve_data_config
from anyshape.datasets import Dataset, Split, load_dataset, load_digits, read_image
from anyshape.inception_v3 import InceptionV3
from anyshape.model_info import load_model, read_keras_info
from anyshape.preprocess import preprocess_input
from anyshape.training import (
    _batchnorm_layers,
    freeze_layers,
    parse_stages,
    read_run_info,
    recalibrate_batchnorm,
    train,
)

TINY = tiny_net.NAME
SIZE = 32  # the tiny network's runs: 32 x 32 images


@pytest.fixture(scope="module", autouse=True)
def _tiny_net_registered():
    """The tiny network is registered for this module's tests only (never in anyshape's registry)."""
    with tiny_net.registered():
        yield


def tiny_model(channels: int = 1, classes: int = 4, **options):
    return anyshape.create_model(TINY, input_shape=(SIZE, SIZE, channels), classes=classes, **options)


class Interrupt(Exception):
    pass


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return make_image_folder(tmp_path_factory.mktemp("photos") / "data", per_class=6)


RUN = dict(
    arch=TINY,
    input_shape=(SIZE, SIZE),
    stages=parse_stages("backbone:1,none:1"),
    batch_size=4,
    val_split=0.2,
    test_split=0.2,
    learning_rate=3e-3,
    recalibrate_epoch_steps=2,
    verbose=0,
)


@pytest.fixture(scope="module")
def run(folder, tmp_path_factory):
    """A 2-epoch staged run of the tiny network (backbone frozen, then all), compiled, killed
    after epoch 1, then resumed; the weights it was built with are kept to compare."""
    from anyshape.training import Trainer

    out = tmp_path_factory.mktemp("runs") / "photos"
    messages = []
    built = {}

    def log_and_die(msg):
        messages.append(msg)
        if msg.startswith("epoch 2/"):
            raise Interrupt

    build = Trainer._build_model

    def build_and_keep(self, weights):
        model = build(self, weights)
        built.setdefault("weights", {l.name: [np.array(w) for w in l.weights] for l in model.layers if l.weights})
        return model

    with pytest.MonkeyPatch.context() as m:
        m.setattr(Trainer, "_build_model", build_and_keep)
        with pytest.raises(Interrupt):
            train(folder, output=out, log=log_and_die, **RUN)
    state_after_1 = json.loads((out / "checkpoint.json").read_text())
    after_1 = tiny_model(channels=3, classes=3)
    after_1.load_weights(out / state_after_1["weights"])
    # after the frozen-backbone epoch, every backbone weight (BatchNorm statistics included) is as built
    changed = {
        l.name
        for l in after_1.layers
        if l.weights and not all(np.array_equal(a, np.array(b)) for a, b in zip(built["weights"][l.name], l.weights))
    }
    files_after_1 = sorted(p.name for p in out.iterdir())
    resumed_log = []
    result = train(folder, output=out, resume=True, log=resumed_log.append, verbose=0)
    return dict(
        out=out,
        state1=state_after_1,
        changed_in_1=changed,
        files1=files_after_1,
        result=result,
        log=resumed_log,
        first_log=messages,
    )


@pytest.mark.every_backend
def test_run_checkpoints_after_every_epoch_atomically(run):
    assert run["state1"]["epoch"] == 1
    assert run["files1"] == [
        "checkpoint-e001.optimizer.npz",
        "checkpoint-e001.weights.h5",
        "checkpoint.json",
        "classes.json",
    ]  # no temporary file left behind, no model.keras yet
    files = sorted(p.name for p in run["out"].iterdir())
    assert files == [
        "checkpoint-e002.optimizer.npz",
        "checkpoint-e002.weights.h5",
        "checkpoint.json",
        "classes.json",
        "model.keras",
        "report.json",
    ]  # the epoch-1 checkpoint was replaced


def test_checkpoints_and_model_file_hold_no_optimizer_state_twice(run):
    """The optimizer state lives in the .optimizer.npz only: not in the weights file, not in model.keras."""
    import zipfile

    import h5py

    out = run["out"]
    state = json.loads((out / "checkpoint.json").read_text())
    with h5py.File(out / state["weights"], "r") as f:
        assert "layers" in f and "optimizer" not in f
    with np.load(out / state["optimizer"]) as z:
        assert len(z.files) > 2  # Adam: iteration, learning rate, two moments per trainable variable
    with zipfile.ZipFile(out / "model.keras") as z, z.open("model.weights.h5") as member:
        with h5py.File(member, "r") as f:
            assert "layers" in f and "optimizer" not in f
    assert not json.loads(zipfile.ZipFile(out / "model.keras").read("config.json")).get("compile_config")
    # the returned model is the one the file holds, with the same info
    from anyshape.model_info import read_keras_info

    assert run["result"].model.anyshape_info == read_keras_info(out / "model.keras")


def test_weights_written_with_the_optimizer_inside_still_load(tmp_path):
    """Checkpoints of earlier versions carry the optimizer in the weights file; resuming from one works."""
    import keras

    from anyshape.training import _load_weights_only

    def small():
        inp = keras.Input((4,))
        return keras.Model(inp, keras.layers.Dense(2, name="d")(keras.layers.Dense(3, name="h")(inp)))

    old = small()
    old.compile(optimizer="adam", loss="mse")
    old.fit(np.ones((4, 4)), np.zeros((4, 2)), epochs=1, verbose=0)
    old.save_weights(tmp_path / "old.weights.h5")
    new = small()
    new.compile(optimizer="adam", loss="mse")
    _load_weights_only(new, tmp_path / "old.weights.h5")
    assert all(np.array_equal(a, b) for a, b in zip(old.get_weights(), new.get_weights()))


@pytest.mark.every_backend
def test_frozen_backbone_stays_as_built_and_the_classifier_trains(run):
    """Epoch 1 (freeze=backbone) changed the classifier only: every other weight, BatchNorm
    statistics included, is as built (the InceptionV3 twin from a weights file: below)."""
    assert run["changed_in_1"] == {"predictions"}
    assert any("freeze=backbone (8 frozen layers with weights" in m for m in run["first_log"]), run["first_log"]


@pytest.mark.every_backend
def test_resume_continues_after_the_last_epoch(run):
    report = run["result"].report
    assert any("resuming" in m and "after epoch 1 of 2" in m for m in run["log"])
    assert [e["epoch"] for e in report["epochs"]] == [1, 2]
    assert report["epochs"][0] == run["state1"]["history"][0]  # epoch 1 was not run again
    assert [e["freeze"] for e in report["epochs"]] == ["backbone", "none"]
    assert sum("stage 1/2" in m for m in run["log"]) == 0 and sum("stage 2/2" in m for m in run["log"]) == 1


def test_report_and_run_info(run, folder):
    report = json.loads((run["out"] / "report.json").read_text())
    for key in (
        "config",
        "epochs",
        "test_accuracy",
        "val_accuracy",
        "train_images_per_second",
        "wall_seconds",
        "batchnorm_recalibration",
    ):
        assert key in report
    assert report["config"]["stages"] == [["backbone", 1], ["none", 1]]
    data = report["data"]
    assert (data["train"], data["val"], data["test"]) == (12, 3, 3)  # 18 images, 0.2 / 0.2 held out
    # the test accuracy is the share of the test images model.keras classifies right (a split
    # loaded again with the run's seed is the same split)
    split = load_dataset(folder, (SIZE, SIZE), val_split=0.2, test_split=0.2, seed=0).test
    x = preprocess_input(split.images.astype(np.float32), "channels_last", mode="tf")
    predicted = np.argmax(keras.saving.load_model(run["out"] / "model.keras").predict(x, verbose=0), -1)
    assert report["test_accuracy"] == round(float(np.mean(predicted == split.labels)), 5)
    assert report["test_loss"] > 0
    for epoch in report["epochs"]:  # a share of the 12 images seen in the epoch's 3 steps of 4
        assert epoch["loss"] > 0 and epoch["accuracy"] * 12 == pytest.approx(round(epoch["accuracy"] * 12), abs=1e-4)
        assert epoch["val_accuracy"] * 3 == pytest.approx(round(epoch["val_accuracy"] * 3), abs=1e-4)
    info = read_run_info(run["out"] / "model.keras")
    assert info == read_run_info(run["out"])
    assert info["classes"] == ["chelsea", "coffee", "rocket"]
    assert info["input_shape"] == [SIZE, SIZE, 3] and info["preprocess"] == {"mode": "tf"}
    # model.keras holds the same facts itself (classes.json is the copy for people), with the network
    kept = read_keras_info(run["out"] / "model.keras")
    assert kept.class_names == tuple(info["classes"]) and kept.weights is None
    assert kept.data_config == DataConfig(
        input_size=(SIZE, SIZE), crop_pct=1.0, interpolation="bilinear", label_offset=0
    )
    assert kept.data_config == dataclasses.replace(resolve_data_config(info), input_size=(SIZE, SIZE))
    expected = tiny_net.ARCH.config(input_shape=(SIZE, SIZE, 3), classes=3, data_format="channels_last")
    assert kept.architecture == TINY and kept.config == expected
    # the report and the checkpoint record the network too
    assert report["config"]["arch"] == TINY and report["architecture"] == {
        "name": TINY,
        "config": json.loads(json.dumps(expected.to_dict())),
    }
    state = json.loads((run["out"] / "checkpoint.json").read_text())
    assert state["config"]["arch"] == TINY and state["architecture"]["name"] == TINY
    assert load_model(run["out"] / "model.keras").anyshape_config == expected


@pytest.mark.every_backend
def test_saved_model_predicts_images_as_the_trained_model(run, folder):
    """model.keras + classes.json are all inference needs: same probabilities as in training."""
    info = read_run_info(run["out"])
    loaded = keras.saving.load_model(run["out"] / "model.keras")
    h, w, c = info["input_shape"]
    paths = [sorted((folder / name).iterdir())[0] for name in info["classes"]]
    x = np.stack([read_image(p, (h, w), c) for p in paths]).astype(np.float32)
    x = preprocess_input(x, "channels_last", **info["preprocess"])
    probs = loaded.predict(x, verbose=0)
    np.testing.assert_allclose(probs, run["result"].model.predict(x, verbose=0), atol=1e-5)
    assert probs.shape == (3, 3) and np.allclose(probs.sum(-1), 1.0, atol=1e-5)


def test_resume_without_checkpoint_and_overwrite_are_refused(run, folder, tmp_path):
    with pytest.raises(FileExistsError, match="exists and is not empty"):
        train(folder, output=run["out"], epochs=1, arch=TINY)
    with pytest.raises(FileNotFoundError, match="no checkpoint.json to resume from"):
        train(folder, output=tmp_path, resume=True)


def test_cli_train_reports_data_errors(tmp_path, capsys):
    from anyshape.cli import main

    (tmp_path / "only").mkdir()
    make_image_folder(tmp_path / "only", per_class=2, photos=("coffee",))
    assert main(["train", str(tmp_path / "only"), "--input-shape", "75,75", "-o", str(tmp_path / "r")]) == 2
    assert "only one class" in capsys.readouterr().err
    assert main(["train", "digits", "--freeze", "up-to-mixed11", "-o", str(tmp_path / "r2")]) == 2
    err = capsys.readouterr().err
    assert "--freeze is not a freeze option of inception_v3" in err and "up-to-mixedN (N = 0..10" in err, err
    # another network's freeze points are its own blocks, listed when one is wrong
    assert main(["train", "digits", "--arch", TINY, "--freeze", "up-to-mixed7", "-o", str(tmp_path / "r4")]) == 2
    err = capsys.readouterr().err
    assert f"of {TINY}: use none | backbone | up-to-blockN (N = 1..3;" in err, err
    assert not (tmp_path / "r2").exists() and not (tmp_path / "r4").exists()
    # a channel count image files cannot give: said once, in the flag's words (not "N of N files failed")
    make_image_folder(tmp_path / "rgb", per_class=2, photos=("coffee", "rocket"))
    assert main(["train", str(tmp_path / "rgb"), "--input-shape", "75,75,2", "-o", str(tmp_path / "r3")]) == 2
    err = capsys.readouterr().err
    assert "--input-shape H,W,2" in err and "could not be read" not in err and not (tmp_path / "r3").exists()


@pytest.mark.parametrize(
    ("flag", "option", "value"),
    [
        ("--label-smoothing", "label_smoothing", 2.0),  # with two classes, 2 swaps the targets
        ("--label-smoothing", "label_smoothing", -1.0),
        ("--weight-decay", "weight_decay", -0.1),
        ("--warmup-epochs", "warmup_epochs", -1.0),
        ("--early-stopping", "early_stopping", 0),
        ("--early-stopping", "early_stopping", -1),
        ("--seed", "seed", -1),
        ("--val-split", "val_split", 1.0),
        ("--aux-weight", "aux_weight", -0.4),
    ],
)
def test_invalid_training_options_are_refused_before_any_work(flag, option, value, tmp_path, capsys, monkeypatch):
    from anyshape.cli import main
    from anyshape.training import TrainConfig

    monkeypatch.setattr("anyshape.datasets.load_dataset", lambda *a, **k: pytest.fail("the data was read"))
    out = tmp_path / "run"
    assert main(["train", "digits", "-o", str(out), flag, str(value), "-q"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"anyshape train: {flag} must be ") and f"{option}=" not in err, err
    assert len(err.strip().splitlines()) == 1 and not out.exists()
    with pytest.raises(ValueError, match=rf"^{option}={value!r} must be "):  # the library's own words
        TrainConfig(**{option: value})


def test_training_options_at_their_limits_are_accepted():
    from anyshape.training import TrainConfig

    TrainConfig(label_smoothing=0.0, weight_decay=0.0, warmup_epochs=0.0, early_stopping=1, seed=0, dropout_rate=0.0)
    TrainConfig(label_smoothing=0.99, seed=2**32 - 1, weight_decay=None, early_stopping=None)
    for bad in (float("nan"), float("inf"), "0.1", True):
        with pytest.raises(ValueError, match="label_smoothing="):
            TrainConfig(label_smoothing=bad)
    with pytest.raises(ValueError, match="epochs=2.5"):
        TrainConfig(epochs=2.5)


def test_run_eagerly_contradicts_jit_compile_in_the_words_of_each_interface(capsys):
    from anyshape.cli import main
    from anyshape.training import TrainConfig

    with pytest.raises(ValueError, match=r"^run_eagerly=True and jit_compile contradict") as e:
        TrainConfig(run_eagerly=True, jit_compile=True)
    assert e.value.parameter == "run_eagerly"
    with pytest.raises(ValueError, match=r"^run_eagerly=1 must be True or False"):
        TrainConfig(run_eagerly=1)
    assert main(["train", "digits", "--run-eagerly", "--jit-compile", "-q"]) == 2
    assert "--run-eagerly and --jit-compile contradict" in capsys.readouterr().err


def test_dropout_rate_1_is_a_usage_error_in_train(capsys):
    from anyshape.cli import main

    with pytest.raises(SystemExit) as e:
        main(["train", "digits", "--dropout-rate", "1"])
    assert e.value.code == 2 and "--dropout-rate" in capsys.readouterr().err
    with pytest.raises(ValueError, match=r"^dropout_rate=1\.0 must be"):
        train("digits", dropout_rate=1.0)


# --- freezing ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def small_model():
    return InceptionV3(weights=None, input_shape=(75, 75, 1), classes=4)


def _trainable_names(model):
    return {l.name for l in model.layers if l.trainable and l.weights}


def test_freeze_backbone_leaves_only_the_classifier(small_model):
    frozen = freeze_layers(small_model, "backbone")
    assert _trainable_names(small_model) == {"predictions"}
    assert [v.path for v in small_model.trainable_weights] == ["predictions/kernel", "predictions/bias"]
    assert len(frozen) == 94 * 2  # every conv and BatchNorm of the stem and the 11 blocks
    freeze_layers(small_model, "none")
    assert all(l.trainable for l in small_model.layers)


def test_freeze_up_to_mixed_n_freezes_exactly_stem_and_blocks_up_to_n(small_model):
    freeze_layers(small_model, "up-to-mixed6")
    trainable = _trainable_names(small_model)
    for layer in small_model.layers:
        if not layer.weights:
            continue
        block = next((b for b in ("mixed7", "mixed8", "mixed9", "mixed10") if layer.name.startswith(b + "_")), None)
        assert (layer.name in trainable) == (block is not None or layer.name == "predictions"), layer.name
    report = anyshape.explain((75, 75, 1), include_top=True, classes=4)
    later = sum(s.params for s in report.stages if s.name in ("mixed7", "mixed8", "mixed9", "mixed10", "predictions"))
    n_bn_moving = sum(
        int(np.prod(w.shape))
        for l in small_model.layers
        if l.trainable and isinstance(l, keras.layers.BatchNormalization)
        for w in l.non_trainable_weights
    )
    trainable_params = sum(int(np.prod(v.shape)) for v in small_model.trainable_weights)
    assert trainable_params == later - n_bn_moving  # explain counts moving statistics as parameters
    freeze_layers(small_model, "none")


def test_freeze_rejects_unknown_options(small_model):
    for bad in ("mixed5", "up-to-mixed11", "all", "up-to-block2"):
        with pytest.raises(ValueError, match="is not a freeze option of inception_v3"):
            freeze_layers(small_model, bad)
    with pytest.raises(ValueError, match="expected FREEZE:EPOCHS"):
        parse_stages("backbone")
    with pytest.raises(ValueError, match=f"is not a freeze option of {TINY}"):
        parse_stages("up-to-mixed7:1", arch=TINY)
    assert parse_stages("backbone:1,up-to-block2:2", arch=TINY) == [("backbone", 1), ("up-to-block2", 2)]


@pytest.fixture(scope="module")
def tiny():
    """The tiny network at 32 x 32 x 1 with 4 classes (tests that change it set it back)."""
    return tiny_model()


def test_freeze_points_of_another_network_are_its_blocks(tiny):
    """freeze= reads the network's record: up-to-<block> freezes that block and all it reads;
    backbone everything the classifier reads; the network is the one the model was built as."""
    assert freeze_layers(tiny, "up-to-block1") == ["stem_conv", "stem_bn", "block1_conv", "block1_bn"]
    assert _trainable_names(tiny) == {"block2_conv", "block2_bn", "block3_conv", "block3_bn", "predictions"}
    assert len(freeze_layers(tiny, "backbone")) == 8 and _trainable_names(tiny) == {"predictions"}
    with pytest.raises(ValueError, match=rf"^freeze='up-to-mixed6' is not a freeze option of {TINY}"):
        freeze_layers(tiny, "up-to-mixed6")
    freeze_layers(tiny, "none")
    assert all(l.trainable for l in tiny.layers)


@pytest.mark.every_backend
def test_frozen_batchnorm_and_weights_unchanged_after_an_epoch(tiny):
    """Frozen BN runs in inference mode: its moving statistics do not move while training."""
    model = tiny
    freeze_layers(model, "up-to-block1")
    bns = _batchnorm_layers(model)
    before = {l.name: [np.array(w) for w in l.weights] for l in model.layers if l.weights}
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="sparse_categorical_crossentropy")
    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, (8, SIZE, SIZE, 1)).astype(np.float32)
    model.fit(x, rng.integers(0, 4, 8), batch_size=4, epochs=1, verbose=0)
    frozen_bn = [l.name for l in bns if not l.trainable]
    live_bn = [l for l in bns if l.trainable]
    assert frozen_bn == ["stem_bn", "block1_bn"] and len(live_bn) == 2  # InceptionV3's 60 of 94: above
    for layer in model.layers:
        if not layer.weights:
            continue
        same = all(np.array_equal(a, np.array(b)) for a, b in zip(before[layer.name], layer.weights))
        assert same == (not layer.trainable), layer.name
    for l in live_bn:  # trainable BN did update its moving statistics
        assert not np.array_equal(before[l.name][-2], np.array(l.moving_mean))
    freeze_layers(model, "none")


# --- BatchNorm recalibration -------------------------------------------------------------------


@pytest.mark.every_backend
def test_recalibration_is_the_average_of_batch_statistics(tiny):
    model = tiny
    rng = np.random.default_rng(1)
    x = rng.uniform(-1, 1, (12, SIZE, SIZE, 1)).astype(np.float32)
    first_bn = _batchnorm_layers(model)[0]
    conv = keras.Model(model.inputs, model.get_layer(first_bn.name.replace("_bn", "_conv")).output)
    other = _batchnorm_layers(model)[2]
    other_before = np.array(other.moving_mean)
    other.trainable = False
    try:
        n = recalibrate_batchnorm(model, x, batch_size=4)
    finally:
        other.trainable = True
    assert n == 3
    feats = [conv.predict(x[i : i + 4], verbose=0) for i in range(0, 12, 4)]
    want_mean = np.mean([f.mean(axis=(0, 1, 2)) for f in feats], axis=0)
    want_var = np.mean([f.var(axis=(0, 1, 2)) for f in feats], axis=0)
    np.testing.assert_allclose(np.array(first_bn.moving_mean), want_mean, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(np.array(first_bn.moving_variance), want_var, rtol=1e-3, atol=1e-5)
    assert np.array_equal(np.array(other.moving_mean), other_before)  # a frozen layer is left alone
    assert first_bn.momentum == 0.99 and first_bn.trainable  # flags restored
    assert recalibrate_batchnorm(model, x, steps=1, batch_size=4) == 1


def _scripted_validation(monkeypatch, accuracies: list[float]) -> Dataset:
    """A tiny random two-class dataset whose validation accuracies, epoch by epoch, are `accuracies`."""
    from anyshape.training import Trainer

    scripted = iter(accuracies)

    def fake_evaluate(self, model, pipeline, split, prefix):
        return {f"{prefix}accuracy": next(scripted) if prefix == "val_" else 0.5, f"{prefix}loss": 1.0}

    monkeypatch.setattr(Trainer, "_evaluate", fake_evaluate)
    rng = np.random.default_rng(0)
    split = lambda n: Split(rng.integers(0, 256, (n, SIZE, SIZE, 1), dtype=np.uint8), np.arange(n, dtype=np.int32) % 2)  # noqa: E731
    return Dataset(split(8), split(4), None, ["a", "b"], 1, "random")


def test_recalibration_brings_evaluation_in_line_with_training():
    """From scratch, a few dozen steps leave moving statistics near their initial 0/1 (momentum
    0.99): inference-mode accuracy on the training images is near chance while training-mode
    accuracy is high. Recalibration closes the gap (README, fine-tuning: 0.10 -> 0.978 on digits).
    The tiny network at width 16 shows it as InceptionV3 does (there: 5 epochs, 0.8 / 0.5 bounds
    alike): 40 steps, training mode 0.88, inference mode 0.19 before and 0.91 after."""
    keras.utils.set_random_seed(0)
    train_split, _ = load_digits((SIZE, SIZE, 1))
    n = 64
    x = preprocess_input(train_split.images[:n].astype(np.float32), "channels_last", mode="tf")
    y = train_split.labels[:n]
    model = tiny_model(classes=10, width=16)
    model.compile(optimizer=keras.optimizers.Adam(1e-2), loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    history = model.fit(x, y, batch_size=16, epochs=10, verbose=0, shuffle=True)
    train_mode = history.history["accuracy"][-1]  # accuracy with batch statistics, during the last epoch

    def accuracy():  # inference mode: moving statistics
        return float(np.mean(np.argmax(model.predict(x, batch_size=32, verbose=0), -1) == y))

    bn = _batchnorm_layers(model)[2]
    before_stats = np.array(bn.moving_variance)
    before = accuracy()
    recalibrate_batchnorm(model, x, batch_size=16)
    after = accuracy()
    assert not np.allclose(np.array(bn.moving_variance), before_stats)
    assert train_mode >= 0.8, train_mode
    assert before <= 0.5, before
    assert after >= train_mode - 0.1, (before, after, train_mode)


# --- auxiliary classifier ------------------------------------------------------------------------


def test_aux_loss_trains_at_299(tmp_path):
    """With aux_logits the loss is main + aux_weight * aux, and the aux head learns.

    Also InceptionV3's compiled smoke run (traced train, predict and recalibration steps; the
    mechanics run on the tiny network): model.keras holds the main output and records the network
    as InceptionV3 without the aux head, so that it rebuilds as what it holds."""
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (4, 299, 299, 3), dtype=np.uint8)
    data = Dataset(Split(images, np.array([0, 1, 0, 1], np.int32)), None, None, ["a", "b"], 3, "random")
    result = train(
        "random",
        dataset=data,
        output=tmp_path / "aux",
        input_shape=(299, 299, 3),
        aux_logits=True,
        epochs=3,
        batch_size=4,
        lr_schedule="constant",
        augment="none",
        recalibrate=False,
        verbose=0,
        log=lambda m: None,
    )
    epochs = result.report["epochs"]
    aux = [e["aux_loss"] for e in epochs]
    assert aux[-1] < aux[0], aux
    for e in epochs:  # the total is main + 0.4 * aux (as the paper and torchvision)
        assert e["loss"] == pytest.approx(e["main_loss"] + 0.4 * e["aux_loss"], rel=1e-3, abs=1e-6)
    state = json.loads((tmp_path / "aux" / "checkpoint.json").read_text())
    keras.utils.set_random_seed(0)
    fresh = InceptionV3(weights=None, input_shape=(299, 299, 3), classes=2, aux_logits=True)
    initial = np.array(fresh.get_layer("aux_predictions").kernel)
    fresh.load_weights(tmp_path / "aux" / state["weights"])
    assert not np.allclose(np.array(fresh.get_layer("aux_predictions").kernel), initial)
    # the saved model has the main output only, and says so in its Config
    saved = load_model(tmp_path / "aux" / "model.keras")
    assert len(saved.outputs) == 1 and saved.anyshape_info.architecture == "inception_v3"
    assert saved.anyshape_config.aux_logits is False and saved.anyshape_config.input_shape == (299, 299, 3)
    assert result.report["architecture"]["config"]["aux_logits"] is True  # what the run trained


# the early-stopping runs: 4 epochs of 2 eager steps, patience 1
EARLY_STOPPING_RUN = dict(
    arch=TINY,
    epochs=4,
    batch_size=4,
    early_stopping=1,
    augment="none",
    recalibrate_epoch_steps=1,
    run_eagerly=True,
    verbose=0,
)


def test_early_stopping_stops_and_restores_the_best_epoch(tmp_path, monkeypatch):
    """Validation accuracy scripted 0.5, 0.25, ...: patience 1 stops after epoch 2, epoch 1's weights kept."""
    data = _scripted_validation(monkeypatch, [0.5, 0.25, 0.9, 0.9])
    kept = {}

    def log(msg):
        if msg.startswith("epoch 2/"):  # epoch 1's checkpoint, before epoch 2 replaces it
            kept["kernel"] = _checkpoint_kernel_of(tmp_path / "es", 2)

    result = train("random", dataset=data, output=tmp_path / "es", log=log, **EARLY_STOPPING_RUN)
    assert [e["epoch"] for e in result.report["epochs"]] == [1, 2]
    assert result.report["stopped_early"] and result.report["best"] == {"val_accuracy": 0.5, "epoch": 1}
    assert result.report["config"]["run_eagerly"] is True
    np.testing.assert_array_equal(np.array(result.model.get_layer("predictions").kernel), kept["kernel"])


# --- reliability: resumes end with the checkpoint's weights, failures leave nothing behind ------


@pytest.fixture(scope="module")
def tiny_digits():
    """A small subset of scikit-learn's digits at 32x32x1 (training here takes seconds)."""
    train_split, test_split = load_digits((SIZE, SIZE, 1))
    pick = lambda s, n: Split(s.images[:n], s.labels[:n])  # noqa: E731
    return Dataset(
        pick(train_split, 16),
        pick(test_split, 8),
        pick(test_split, 8),
        [str(i) for i in range(10)],
        1,
        "digits (subset)",
    )


class _Stop(Exception):
    pass


def _kernel(model):
    return np.array(model.get_layer("predictions").kernel)


def _checkpoint_kernel(run_dir):
    return _checkpoint_kernel_of(run_dir, 10)


def test_resume_after_the_last_checkpoint_ends_with_the_checkpoints_weights(tiny_digits, tmp_path):
    def die_after_training(msg):
        if msg.startswith("BatchNorm statistics recalibrated"):  # after the last checkpoint, before model.keras
            raise _Stop

    options = dict(
        arch=TINY,
        dataset=tiny_digits,
        output=tmp_path / "r",
        epochs=1,
        batch_size=8,
        augment="none",
        recalibrate_epoch_steps=1,
        run_eagerly=True,
        verbose=0,
    )
    with pytest.raises(_Stop):
        train("digits", log=die_after_training, **options)
    trained = _checkpoint_kernel(tmp_path / "r")
    untrained = _kernel(tiny_model(classes=10))
    assert not np.allclose(trained, untrained)
    result = train("digits", dataset=tiny_digits, output=tmp_path / "r", resume=True, verbose=0, log=lambda m: None)
    np.testing.assert_array_equal(_kernel(result.model), trained)
    np.testing.assert_array_equal(_kernel(keras.saving.load_model(tmp_path / "r" / "model.keras")), trained)


def test_resume_inside_a_stage_restores_the_optimizer_and_ends_as_an_uninterrupted_run(folder, tmp_path, monkeypatch):
    """Stopped at epoch 2 of a 3-epoch stage: the resumed run starts epoch 2 with the checkpoint's
    optimizer state (iteration count, Adam moments) and the data order of epoch 2, so with
    TensorFlow's deterministic ops it ends with the uninterrupted run's weights, bit for bit."""
    import tensorflow as tf

    from anyshape.training import Trainer

    tf.config.experimental.enable_op_determinism()
    options = dict(input_shape=(SIZE, SIZE), epochs=3, batch_size=4, augment="none", val_split=0, test_split=0)
    options |= dict(arch=TINY, verbose=0)
    whole = train(folder, output=tmp_path / "whole", log=lambda m: None, **options)

    def stop_at_epoch_2(msg):
        if msg.startswith("epoch 2/"):
            raise _Stop

    with pytest.raises(_Stop):
        train(folder, output=tmp_path / "cut", log=stop_at_epoch_2, **options)
    state = json.loads((tmp_path / "cut" / "checkpoint.json").read_text())
    assert state["epoch"] == 1
    with np.load(tmp_path / "cut" / state["optimizer"]) as z:
        saved = [z[k] for k in sorted(z.files)]

    entering = []  # the optimizer variables as the resumed run's first epoch begins
    train_epoch = Trainer._train_epoch

    def record_then_train(self, model, *args):
        if not entering:
            entering.append([keras.ops.convert_to_numpy(v) for v in model.optimizer.variables])
        return train_epoch(self, model, *args)

    monkeypatch.setattr(Trainer, "_train_epoch", record_then_train)
    resumed = train(folder, output=tmp_path / "cut", resume=True, log=lambda m: None, verbose=0)
    assert [e["epoch"] for e in resumed.report["epochs"]] == [1, 2, 3]
    restored = entering[0]
    assert len(restored) == len(saved) > 1  # Adam: the iteration count, then two moments per trainable variable
    steps = whole.report["data"]["train"] // 4
    assert int(restored[0]) == int(saved[0]) == steps  # the iteration count after one epoch
    assert all(np.abs(v).sum() > 0 for v in saved[1:3])  # the moments hold the first epoch's gradients
    for now, then in zip(restored, saved):
        np.testing.assert_array_equal(now, then)
    for a, b in zip(whole.model.weights, resumed.model.weights):
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(a), keras.ops.convert_to_numpy(b))


def test_early_stopping_best_weights_survive_a_resume(tmp_path, monkeypatch):
    data = _scripted_validation(monkeypatch, [0.5, 0.25, 0.9, 0.9, 0.9, 0.9])
    kept = {}

    def log(msg):
        if msg.startswith("epoch 2/"):
            kept["kernel"] = _checkpoint_kernel_of(tmp_path / "es", 2)
        if msg.startswith("early stopping"):  # epoch 2's checkpoint is written: die before the restore
            raise _Stop

    with pytest.raises(_Stop):
        train("random", dataset=data, output=tmp_path / "es", log=log, **EARLY_STOPPING_RUN)
    result = train("random", dataset=data, output=tmp_path / "es", resume=True, verbose=0, log=lambda m: None)
    assert [e["epoch"] for e in result.report["epochs"]] == [1, 2] and result.report["stopped_early"]
    np.testing.assert_array_equal(_kernel(result.model), kept["kernel"])


def _checkpoint_kernel_of(run_dir, classes):
    """The classifier's kernel in the run's checkpoint (a tiny network on 1 channel)."""
    state = json.loads((run_dir / "checkpoint.json").read_text())
    m = tiny_model(classes=classes)
    m.load_weights(run_dir / state["weights"])
    return _kernel(m)


def test_adamw_weight_decay_zero_is_zero():
    from anyshape.training import TrainConfig, Trainer

    model = tiny_model()
    for given, expected in ((0.0, 0.0), (None, 0.004), (0.01, 0.01)):
        trainer = Trainer(TrainConfig(optimizer="adamw", weight_decay=given, lr_schedule="constant", arch=TINY))
        trainer._compile(model, 1, 1)
        assert model.optimizer.weight_decay == pytest.approx(expected), given


def test_a_failed_or_interrupted_run_leaves_no_folder_behind(tmp_path, tiny_digits, monkeypatch, capsys):
    from anyshape.cli import main
    from anyshape.training import Trainer, TrainingInterrupted

    (tmp_path / "only").mkdir()
    make_image_folder(tmp_path / "only", per_class=2, photos=("coffee",))
    assert main(["train", str(tmp_path / "only"), "--input-shape", "75,75", "-o", str(tmp_path / "a" / "r")]) == 2
    assert "only one class" in capsys.readouterr().err
    assert not (tmp_path / "a").exists()

    def ctrl_c(self):
        (self.run_dir / "classes.json").write_text("{}")
        raise KeyboardInterrupt

    monkeypatch.setattr(Trainer, "_run", ctrl_c)
    with pytest.raises(TrainingInterrupted) as e:
        train("digits", output=tmp_path / "b", dataset=tiny_digits)
    assert e.value.run_dir is None and not (tmp_path / "b").exists()
    try:
        code = main(["train", "digits", "-o", str(tmp_path / "c"), "-q"])
    except KeyboardInterrupt:
        pytest.fail("Ctrl-C reached the user as a traceback")
    err = capsys.readouterr().err
    assert code == 130 and "interrupted" in err and "nothing was kept" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "c").exists()


def test_interrupted_cli_train_says_how_to_resume(tmp_path, monkeypatch, capsys):
    from anyshape.cli import main
    from anyshape.training import Trainer

    def ctrl_c_after_a_checkpoint(self):
        record = {"epoch": 3, "config": {}, "history": [], "weights": "w.weights.h5", "optimizer": "o.npz"}
        (self.run_dir / "checkpoint.json").write_text(json.dumps(record))
        raise KeyboardInterrupt

    monkeypatch.setattr(Trainer, "_run", ctrl_c_after_a_checkpoint)
    try:
        code = main(["train", "digits", "-o", str(tmp_path / "run"), "-q"])
    except KeyboardInterrupt:
        pytest.fail("Ctrl-C reached the user as a traceback")
    err = capsys.readouterr().err
    assert code == 130 and "epoch 3" in err and f"--output {tmp_path / 'run'} --resume" in err
    assert (tmp_path / "run" / "checkpoint.json").exists()


def test_output_that_is_a_file_or_inside_the_data_is_refused(tmp_path, folder, capsys):
    from anyshape.cli import main

    (tmp_path / "notes.txt").write_text("mine")
    assert main(["train", "digits", "-o", str(tmp_path / "notes.txt"), "-q"]) == 2
    assert "is a file" in capsys.readouterr().err and (tmp_path / "notes.txt").read_text() == "mine"
    assert main(["train", str(folder), "-o", str(folder / "run"), "-q"]) == 2
    assert "inside the data folder" in capsys.readouterr().err and not (folder / "run").exists()


def test_state_dict_weights_need_preprocessing_and_the_run_records_it(tmp_path):
    from anyshape.data_config import IMAGENET_MEAN, IMAGENET_STD
    from anyshape.datasets import RESIZE_POLICY
    from anyshape.training import TrainConfig, Trainer
    from anyshape.weights import PreprocessingUnknown

    pth = tmp_path / "finetune.pth"
    pth.write_bytes(b"x")
    trainer = Trainer(TrainConfig(weights=str(pth), output=str(tmp_path / "a")))
    trainer.input_shape = (75, 75, 3)
    with pytest.raises(PreprocessingUnknown, match="preprocessing='tf'"):  # Python's words (the CLI's: --preprocessing)
        trainer._data_config()
    for channels, mean, std in [
        (3, IMAGENET_MEAN, IMAGENET_STD),
        (1, pytest.approx(np.mean(IMAGENET_MEAN)), pytest.approx(np.mean(IMAGENET_STD))),
    ]:
        trainer = Trainer(TrainConfig(weights=str(pth), preprocessing="torch", output=str(tmp_path / "b")))
        trainer.input_shape = (75, 75, channels)
        data = trainer._data_config()
        assert data.preprocess_kwargs() == {"mode": "torch", "mean": mean, "std": std}
        assert data.resize_policy() == RESIZE_POLICY  # what the dataset loader applied


def test_train_is_a_function_and_training_its_module():
    """One way in: anyshape.train is the function, anyshape.training the module that holds it."""
    import anyshape.training

    assert anyshape.train is anyshape.training.train
    assert anyshape.Trainer is anyshape.training.Trainer
    assert not isinstance(anyshape.train, types.ModuleType)
    with pytest.raises(TypeError, match="unknown options"):
        anyshape.train("digits", epochz=1)


@pytest.fixture(scope="module")
def stopped_after_epoch_1(tiny_digits, tmp_path_factory):
    """A run of 2 epochs stopped after epoch 1: its checkpoint.json, weights and optimizer state."""

    def stop_at_epoch_2(msg):
        if msg.startswith("epoch 2/"):
            raise _Stop

    run_dir = tmp_path_factory.mktemp("stopped") / "run"
    options = dict(arch=TINY, epochs=2, batch_size=8, augment="none", recalibrate_epoch_steps=1, verbose=0)
    with pytest.raises(_Stop):
        train("digits", dataset=tiny_digits, output=run_dir, log=stop_at_epoch_2, **options)
    return run_dir


@pytest.mark.parametrize("how", ["dotdot", "absolute", "symlink"])
def test_resume_refuses_checkpoint_files_outside_the_run_folder(how, stopped_after_epoch_1, tiny_digits, tmp_path):
    """A checkpoint.json naming files outside its run folder (edited, or a link put in the folder)
    is refused before anything is read: a resume used to load them, then delete them."""
    import shutil

    from anyshape.cli import main

    run_dir = tmp_path / "run"
    shutil.copytree(stopped_after_epoch_1, run_dir)
    state = json.loads((run_dir / "checkpoint.json").read_text())
    outside = tmp_path / "mine"
    outside.mkdir()
    for key in ("weights", "optimizer"):
        target = outside / state[key]
        shutil.move(run_dir / state[key], target)  # someone else's files, which the run must not touch
        if how == "dotdot":
            state[key] = f"../mine/{target.name}"
        elif how == "absolute":
            state[key] = str(target)
        else:
            (run_dir / state[key]).symlink_to(target)
    (run_dir / "checkpoint.json").write_text(json.dumps(state))
    kept = {p.name: p.read_bytes() for p in outside.iterdir()}

    with pytest.raises(ValueError, match="is not a file in the run folder"):
        train("digits", dataset=tiny_digits, output=run_dir, resume=True, verbose=0, log=lambda m: None)
    code = main(["train", "digits", "-o", str(run_dir), "--resume", "-q"])
    assert code == 2
    assert {p.name: p.read_bytes() for p in outside.iterdir()} == kept  # not deleted, not changed
    assert not (run_dir / "model.keras").exists()


def test_resume_refuses_a_damaged_checkpoint_record(stopped_after_epoch_1, tmp_path, capsys):
    import shutil

    from anyshape.cli import main

    run_dir = tmp_path / "run"
    shutil.copytree(stopped_after_epoch_1, run_dir)
    state = json.loads((run_dir / "checkpoint.json").read_text())
    for record, expected in [
        ("{not json", "not a readable checkpoint record"),
        (json.dumps([1, 2]), "not a checkpoint record"),
        (json.dumps({**state, "config": {**state["config"], "label_smoothing": 2}}), "--label-smoothing must be"),
        (json.dumps({**state, "config": {**state["config"], "no_such_option": 1}}), "stored configuration"),
    ]:
        (run_dir / "checkpoint.json").write_text(record)
        assert main(["train", "digits", "-o", str(run_dir), "--resume", "-q"]) == 2
        err = capsys.readouterr().err
        assert expected in err and "cannot be resumed" in err and "Traceback" not in err, err


def test_a_run_killed_in_its_first_epoch_can_be_started_again(tiny_digits, tmp_path, monkeypatch, capsys):
    """A run killed (SIGKILL: no handler runs) during its first epoch leaves its classes.json, and
    perhaps a half-written temporary file, but no checkpoint. --resume has nothing to resume and says
    to start again; starting again used to be refused too ("exists and is not empty")."""
    from anyshape.cli import main
    from anyshape.training import Trainer

    def killed(msg):
        if msg.startswith("epoch 1/"):
            raise _Stop

    run_dir = tmp_path / "run"
    options = dict(arch=TINY, epochs=1, batch_size=8, augment="none", recalibrate_epoch_steps=1, verbose=0)
    with monkeypatch.context() as m:
        m.setattr(Trainer, "_remove_own_files", lambda self, created: None)  # a killed process cleans nothing
        with pytest.raises(_Stop):
            train("digits", dataset=tiny_digits, output=run_dir, log=killed, **options)
    (run_dir / ".checkpoint-e001.weights.h5.4242-1-0.tmp.weights.h5").write_bytes(b"cut short")
    assert sorted(p.name for p in run_dir.iterdir()) == [
        ".checkpoint-e001.weights.h5.4242-1-0.tmp.weights.h5",
        "classes.json",
    ]
    assert main(["train", "digits", "-o", str(run_dir), "--resume", "-q"]) == 2
    assert "start it again without --resume" in capsys.readouterr().err

    # a folder holding anything else is someone's: still refused, and left as it was
    other = tmp_path / "other"
    other.mkdir()
    (other / "classes.json").write_bytes((run_dir / "classes.json").read_bytes())
    (other / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="exists and is not empty"):
        train("digits", dataset=tiny_digits, output=other, **options)
    assert sorted(p.name for p in other.iterdir()) == ["classes.json", "notes.txt"]

    messages = []
    result = train("digits", dataset=tiny_digits, output=run_dir, log=messages.append, **options)
    assert any(
        m.startswith(f"{run_dir}: removed what a run that stopped before its first checkpoint") for m in messages
    )
    assert (run_dir / "model.keras").is_file() and (run_dir / "checkpoint.json").is_file()
    assert not list(run_dir.glob(".*tmp*")) and result.report["epochs"][0]["epoch"] == 1


# --- networks: InceptionV3 from a weights file, MobileNet through --arch, refused combinations -----


def test_inception_v3_trains_from_a_weights_file_with_its_backbone_frozen(folder, tmp_path):
    """ "Pretrained" weights from a file (a random-initialised backbone saved as .weights.h5) load
    into the trained InceptionV3; with freeze=backbone every one of its 188 backbone layers (94
    conv + BatchNorm, statistics included) is the file's after the epoch; the run records the file."""
    reference = InceptionV3(weights=None, include_top=False, input_shape=(75, 75, 3))
    weights_file = tmp_path / "reference.weights.h5"
    reference.save_weights(weights_file)
    messages = []
    options = dict(input_shape=(75, 75), freeze="backbone", epochs=1, batch_size=4, val_split=0.2, test_split=0.2)
    options |= dict(recalibrate_epoch_steps=1, run_eagerly=True, verbose=0, log=messages.append)
    result = train(folder, output=tmp_path / "run", weights=str(weights_file), **options)
    assert any("freeze=backbone (188 frozen layers with weights" in m for m in messages), messages
    state = json.loads((tmp_path / "run" / "checkpoint.json").read_text())
    trained = InceptionV3(weights=None, input_shape=(75, 75, 3), classes=3)
    trained.load_weights(tmp_path / "run" / state["weights"])
    for layer in reference.layers:
        for a, b in zip(layer.weights, trained.get_layer(layer.name).weights):
            np.testing.assert_array_equal(np.array(a), np.array(b), err_msg=layer.name)
    assert state["config"]["weights"].endswith("reference.weights.h5") and state["config"]["arch"] == "inception_v3"
    kept = read_keras_info(tmp_path / "run" / "model.keras")
    assert kept.weights.endswith("reference.weights.h5") and kept.architecture == "inception_v3"
    assert result.report["architecture"]["name"] == "inception_v3"


MOBILENET_FREEZE = "up-to-conv_pw_11_relu"  # MobileNet's 11th of 13 depthwise-separable blocks


def test_train_arch_mobilenet_end_to_end(folder, tmp_path, monkeypatch, capsys):
    """`anyshape train --arch mobilenet --option alpha=0.25`: MobileNet is built, trained with one of
    its own freeze points (its blocks up to conv_pw_11_relu stay as built, blocks 12-13 and its
    conv_preds classifier train), and model.keras reloads as MobileNet alpha 0.25 (its Config
    rebuilds a model that takes the weights and predicts the same)."""
    from anyshape.cli import main
    from anyshape.training import Trainer

    built = {}
    build = Trainer._build_model

    def build_and_keep(self, weights):
        model = build(self, weights)
        built["weights"] = {l.name: [np.array(w) for w in l.weights] for l in model.layers if l.weights}
        return model

    monkeypatch.setattr(Trainer, "_build_model", build_and_keep)
    out = tmp_path / "mobilenet"
    args = ["train", str(folder), "--arch", "mobilenet", "--option", "alpha=0.25", "--input-shape", "32,32"]
    args += ["--freeze", MOBILENET_FREEZE, "--epochs", "1", "--batch-size", "4", "--run-eagerly", "-o", str(out), "-q"]
    assert main(args) == 0, capsys.readouterr().err
    saved = load_model(out / "model.keras")
    info = saved.anyshape_info
    assert info.architecture == "mobilenet" and info.config.alpha == 0.25
    assert info.config.input_shape == (32, 32, 3) and info.config.classes == 3
    report = json.loads((out / "report.json").read_text())
    assert report["config"]["arch"] == "mobilenet" and report["config"]["arch_options"] == {"alpha": 0.25}
    assert report["epochs"][0]["freeze"] == MOBILENET_FREEZE
    frozen = {f"conv{p}_{k}{s}" for k in range(1, 12) for p in ("_dw", "_pw") for s in ("", "_bn")} | {
        "conv1",
        "conv1_bn",
    }
    for layer in saved.layers:
        if layer.weights:
            same = all(np.array_equal(a, np.array(b)) for a, b in zip(built["weights"][layer.name], layer.weights))
            assert same == (layer.name in frozen), layer.name
    again = anyshape.create_model("mobilenet", **dataclasses.asdict(info.config))
    again.set_weights(saved.get_weights())
    x = np.random.default_rng(0).uniform(-1, 1, (2, 32, 32, 3)).astype(np.float32)
    np.testing.assert_allclose(again.predict(x, verbose=0), saved.predict(x, verbose=0), atol=1e-6)


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        (["--arch", "mobilenet", "--freeze", "up-to-mixed7"], "use none | backbone | up-to-conv_pw_1_relu"),
        (["--arch", "mobilenet", "--aux-logits"], "mobilenet has no auxiliary classifier"),
        (["--arch", "mobilenet", "--option", "width=3"], "mobilenet has no build argument 'width'"),
        (["--arch", "mobilenet", "--option", "classes=3"], "training sets it"),
        (["--arch", "mobilenet", "--option", "alpha=-1"], "alpha must be a positive number"),
        (["--arch", "mobilenet", "--dropout-rate", "0.5"], "MobileNet's head dropout is `dropout`"),
        (["--arch", "nonet"], "no network named 'nonet'"),
    ],
)
def test_train_arch_options_are_checked_before_any_work(extra, expected, tmp_path, monkeypatch, capsys):
    from anyshape.cli import main

    monkeypatch.setattr("anyshape.datasets.load_dataset", lambda *a, **k: pytest.fail("the data was read"))
    try:
        code = main(["train", "digits", "-o", str(tmp_path / "run"), "-q", *extra])
    except SystemExit as e:  # argparse's own refusal
        code = e.code
    err = capsys.readouterr().err
    assert code == 2 and expected in err and "Traceback" not in err, err
    assert not (tmp_path / "run").exists()


def test_resume_with_another_network_is_refused_naming_both(stopped_after_epoch_1, tiny_digits, tmp_path, capsys):
    """A run resumes as the network it started with: another arch= (--arch), or other arch_options
    (--option), is refused naming both before anything is read; the same network under another of
    its names (its keras_name) resumes."""
    import shutil

    from anyshape.cli import main

    run_dir = tmp_path / "run"
    shutil.copytree(stopped_after_epoch_1, run_dir)
    before = sorted(p.name for p in run_dir.iterdir())
    with pytest.raises(ValueError, match=rf"^arch='inception_v3': the run in .* trains '{TINY}', not 'inception_v3'"):
        train("digits", dataset=tiny_digits, output=run_dir, resume=True, arch="inception_v3")
    with pytest.raises(ValueError, match=r"^arch_options=\{'width': 4\} differ"):
        train("digits", dataset=tiny_digits, output=run_dir, resume=True, arch_options={"width": 4})
    assert main(["train", "digits", "-o", str(run_dir), "--resume", "--arch", "mobilenet", "-q"]) == 2
    err = capsys.readouterr().err
    assert f"--arch: the run in {run_dir} trains '{TINY}', not 'mobilenet'" in err, err
    assert sorted(p.name for p in run_dir.iterdir()) == before
    result = train(
        "digits", dataset=tiny_digits, output=run_dir, resume=True, arch="TinyTestNet", verbose=0, log=lambda m: None
    )
    assert [e["epoch"] for e in result.report["epochs"]] == [1, 2] and result.report["architecture"]["name"] == TINY


def test_digits_train_at_the_smallest_fixed_size_the_top_takes(tmp_path):
    """`train digits --arch NAME` without --size: the smallest size the network takes with its top
    at a fixed size, at least 32 px. VGG16's top is Keras' Flatten top there (32 px), not its
    free-size fully-convolutional top (224 px: 49 times the pixels per digit)."""
    from anyshape.training import TrainConfig, Trainer

    def size(arch, **options):
        return Trainer(TrainConfig("digits", arch=arch, output=str(tmp_path / arch), **options))._default_size()

    assert size("vgg16") == (32, 32) and size("inception_v3") == (75, 75) and size("resnet50") == (32, 32)


def test_caffe_preprocessing_in_the_training_pipeline_is_keras_own(tmp_path):
    """From scratch a network trains on its own preprocessing: ResNet50's is Keras' caffe mode
    (RGB -> BGR, minus the BGR ImageNet mean), which the tf.data pipeline applies as Keras does."""
    from anyshape.training import TrainConfig, Trainer

    images = np.random.default_rng(0).integers(0, 256, (4, 8, 8, 3), dtype=np.uint8)
    split = Split(images, np.array([0, 1, 0, 1], np.int32))
    trainer = Trainer(
        TrainConfig(str(tmp_path / "photos"), arch="ResNet50", output=str(tmp_path / "run"), augment="none")
    )
    trainer.dataset = Dataset(split, None, None, ["a", "b"], 3, "random")
    trainer.input_shape = (8, 8, 3)
    trainer.preprocess = trainer._data_config().preprocess_kwargs()
    assert trainer.preprocess["mode"] == "caffe" and trainer._default_size() == (224, 224)
    x, _ = next(iter(trainer._pipeline(split, training=False)))
    expected = keras.applications.resnet50.preprocess_input(images.astype(np.float32))
    np.testing.assert_allclose(np.array(x), expected, atol=1e-4)


def test_train_arch_xception_on_gray_48px_from_its_keras_file(tmp_path, monkeypatch):
    """The README's worked example: 48x48 grayscale images fine-tuned from Xception's ImageNet
    file with `anyshape train --arch xception` (Keras asks 71x71x3). The file here is made in
    Keras' published layout and name (the no-top file) from keras.applications' random model and
    put in a temporary Keras cache with its hash, as a real download would leave it; the first
    convolution is the file's summed over RGB (`--channel-adapt sum`), the frozen backbone keeps
    the file's weights, and the saved model is Xception at 48x48x1."""
    from made_files import md5, write_legacy_h5

    from anyshape import cli
    from anyshape.model_info import load_model
    from anyshape.weights.registry import REGISTRY

    home = tmp_path / "keras_home"
    (home / "models").mkdir(parents=True)
    monkeypatch.setenv("KERAS_HOME", str(home))
    keras.utils.set_random_seed(0)
    ref = keras.applications.Xception(weights=None, include_top=False)
    ws = REGISTRY["xception.keras_in1k"]
    path = home / "models" / ws.file_name_notop
    write_legacy_h5(ref, path)
    monkeypatch.setitem(REGISTRY, ws.name, dataclasses.replace(ws, file_hash_notop=md5(path), hash_algorithm="md5"))
    faces = make_image_folder(tmp_path / "faces", per_class=4, gray=True)
    out = tmp_path / "run"
    argv = ["train", faces, "--arch", "xception", "--weights", "imagenet", "--channel-adapt", "sum"]
    argv += ["--input-shape", "48,48", "--freeze", "backbone", "--epochs", "1", "--batch-size", "4"]
    argv += ["--run-eagerly", "--output", out, "--quiet"]
    assert cli.main([str(a) for a in argv]) == 0
    model = load_model(out / "model.keras")
    assert model.input_shape == (None, 48, 48, 1) and model.output_shape == (None, 3)
    assert model.anyshape_arch == "xception"
    kernel = np.array(model.get_layer("block1_conv1").kernel)
    np.testing.assert_allclose(
        kernel, np.array(ref.get_layer("block1_conv1").kernel).sum(axis=2, keepdims=True), rtol=1e-6
    )
    # frozen backbone: a deep layer is the file's, bit for bit
    np.testing.assert_array_equal(
        np.array(model.get_layer("block14_sepconv2").weights[0]), np.array(ref.get_layer("block14_sepconv2").weights[0])
    )
    assert model.anyshape_info.data_config.mode == "tf"  # Xception's [-1, 1], recorded for predict


_CTRL_C_CHILD = """
import json, os, signal
import keras, numpy as np
from anyshape.training.interrupts import interrupts_at_batch_ends

model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
model.compile(optimizer="sgd", loss="mse")
x, y = np.zeros((6, 4), np.float32), np.zeros((6, 2), np.float32)
began, ended, seen = [], [], {}

class Record(keras.callbacks.Callback):
    def on_train_batch_begin(self, batch, logs=None):
        began.append(batch)
        if batch == 1:  # Ctrl-C while batch 1 runs
            os.kill(os.getpid(), signal.SIGINT)

    def on_train_batch_end(self, batch, logs=None):
        ended.append(batch)

try:
    with interrupts_at_batch_ends() as callbacks:
        model.fit(x, y, batch_size=1, epochs=1, verbose=0, callbacks=[Record(), *callbacks])
except KeyboardInterrupt:
    seen["fit"] = "interrupted"
seen["restored"] = signal.getsignal(signal.SIGINT) is signal.default_int_handler
try:
    with interrupts_at_batch_ends():
        os.kill(os.getpid(), signal.SIGINT)
except KeyboardInterrupt:
    seen["after"] = "interrupted"
signal.signal(signal.SIGINT, signal.SIG_IGN)
with interrupts_at_batch_ends() as callbacks:
    seen["ignored"] = callbacks == [] and signal.getsignal(signal.SIGINT) is signal.SIG_IGN

# anyshape.train: a Ctrl-C while the model is built is raised when the build has ended
import tempfile
import tiny_net
import anyshape
from anyshape.training.trainer import Trainer

signal.signal(signal.SIGINT, signal.default_int_handler)
real_build = Trainer._build_model

def build_interrupted(self, weights):
    os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C as the build begins
    seen["build"] = "finished"
    return real_build(self, weights)

Trainer._build_model = build_interrupted
with tiny_net.registered(), tempfile.TemporaryDirectory() as out:
    try:
        anyshape.train("digits", arch=tiny_net.NAME, output=out + "/run", epochs=1, verbose=0, log=lambda m: None)
    except KeyboardInterrupt as e:
        seen["train"] = [type(e).__name__, e.run_dir, os.listdir(out)]
print(json.dumps({"began": began, "ended": ended, **seen}))
"""


def test_ctrl_c_during_fit_is_raised_at_the_end_of_its_batch():
    """A SIGINT that arrives while a batch trains stops the fit when that batch ends (raised from a
    Keras callback, in Python, not inside TensorFlow's step), and the handler is put back; one after
    the last batch is raised when the block ends; an ignored SIGINT is left alone; one while
    `anyshape.train` builds its model is raised when the build ends. In a process of
    its own, with Python's SIGINT handler as at a terminal (a pytest worker's is not always Python's:
    a CI run inherits SIGINT ignored or default, and this test's SIGINT once ended the worker)."""
    import os
    import signal
    import subprocess
    import sys

    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
    done = subprocess.run(
        [sys.executable, "-c", _CTRL_C_CHILD],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    assert done.returncode == 0, done.stderr[-2000:]
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert seen["began"] == [0, 1] and seen["ended"] == [0, 1], seen  # batch 1 finished, batch 2 never began
    assert seen["fit"] == seen["after"] == "interrupted" and seen["restored"] and seen["ignored"], seen
    # anyshape.train: the build ends, then the interrupt stops the run before its first epoch (no folder kept)
    assert seen["build"] == "finished" and seen["train"] == ["TrainingInterrupted", None, []], seen
