"""Every verb with --arch on one member per family, end to end (issue 25, item 5).

tests/test_cli_inference.py::test_every_verb_runs_the_network_arch_names runs export, predict,
features, bench and quantize through the CLI on MobileNet, MobileNetV3 and ResNet50, with their
--option; tests/test_training.py runs `train --arch` on MobileNet and Xception;
tests/test_weights_convert.py runs `convert --arch` on MobileNet. This file runs all seven verbs
on each other family's smallest member (`model_helpers.representatives()`; InceptionV3 keeps its
own runs), chained so that each verb's output is the next one's input and the last ones check
the numbers of the first. Building a network is what costs, so the chain replaces builds rather
than adding them: the Keras model every comparison uses is the one `train` trained (not built
again, not loaded again), and quantize and bench take the ONNX file `export` wrote.

1. `train FOLDER --arch NAME --weights none`, one step on three classes of two images (VGG16 with
   `--option head=flatten`: Keras' Flatten top, the one that builds below 224 px): model.keras
   records the network, its preprocessing and the class names. The model `train` returns (what
   `anyshape.training.train` gives the CLI) is the reference of every comparison below; the step
   moved its BatchNorm statistics off 0 and 1;
2. its weights written in Keras' published .h5 layout, and `convert FILE.h5 --arch NAME` at the
   larger of the network's and keras.applications' minimum size (Xception: Keras asks 71 px):
   the parity report against keras.applications on the same file says "match" (VGG16's file is
   the backbone: "the file has no classifier"); the converted file holds model.keras's arrays,
   every one of them (VGG16: those of its backbone);
3. `export --arch NAME --weights CONVERTED.weights.h5` to ONNX: the file records the network, and
   `predict --model` (no --arch) gives the trained Keras model's scores with the network's own
   preprocessing, which checks steps 1-3 number by number (VGG16: `features --model` gives the
   backbone's features, `predict` refuses the backbone, pointing to features);
4. `features` as the verb runs (`engine.feature_model` on one of the network's feature points,
   `engine.extract_features`) equals the Keras model's features; `features --arch NAME --layer`
   with a layer the network lacks is refused with the network's list;
5. `quantize` of the export (no --arch: the file records its network), `predict --model` of the
   int8 file, and `bench --model` of the export (the network `--arch` builds is what step 3
   exported, through the same `inference_model` that bench --arch calls; `bench --arch` itself:
   tests/test_cli_inference.py, on MobileNet and MobileNetV3).
All at the network's smallest valid size (at least 32 px).
"""

from __future__ import annotations

import contextlib
import io
import json
import re

import h5py
import keras
import numpy as np
import pytest
from model_helpers import representatives, run

from anyshape import cli, engine
from anyshape.archs import get_arch
from anyshape.model_info import read_keras_info
from anyshape.shapes import minimum_size
from anyshape.weights.family_files import read_keras3_groups

PIL = pytest.importorskip("PIL.Image")

NO_TOP = {"vgg16"}  # exported and converted without its top: VGG's other heads need 224 px (120 M parameters)
COVERED = {"mobilenet", "inception_v3"}  # all seven verbs elsewhere (see above)
FAMILIES = sorted(set(representatives()) - COVERED)
CLASSES = ("cat", "cup", "sky")


def _size(name: str) -> int:
    h, w = minimum_size(name)
    return max(h or 1, w or 1, 32)


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    root = tmp_path_factory.mktemp("verbs_photos")
    rng = np.random.default_rng(0)
    PIL.fromarray(rng.integers(0, 256, (80, 100, 3), dtype=np.uint8)).save(root / "a.png")
    PIL.fromarray(rng.integers(0, 256, (96, 80, 3), dtype=np.uint8)).save(root / "b.jpg", quality=95)
    return root


@pytest.fixture(scope="module")
def classes(tmp_path_factory):
    """Three classes of two images each, for `train` (one batch of 6)."""
    root = tmp_path_factory.mktemp("verbs_classes")
    rng = np.random.default_rng(1)
    for i, name in enumerate(CLASSES):
        (root / name).mkdir()
        for j in range(2):
            pixels = np.clip(rng.normal(60 + 70 * i, 40, (80, 96, 3)), 0, 255).astype(np.uint8)
            PIL.fromarray(pixels).save(root / name / f"{j}.png")
    return root


def _keras_group(arch, layer: str) -> str:
    """The layer of keras.applications' model that holds anyshape's `layer` in Keras' .h5 files:
    Keras' ConvNeXt nests its stem and each downsampling in a Sequential (one weighted layer each
    in its files, keras/src/applications/convnext.py), where anyshape's layers are flat
    (anyshape/archs/convnext.py keeps Keras' sublayer names); every other network's weighted
    layers are keras.applications' own, in name and order."""
    if arch.family != "convnext":
        return layer
    layer = re.sub(r"_stem_(conv|layernorm)$", "_stem", layer)
    return re.sub(r"_downsampling_(?:conv|layernorm)_(\d+)$", r"_downsampling_block_\1", layer)


def _write_keras_h5(model, arch, path) -> None:
    """`model`'s weights as Keras' published .h5 of its network (Keras 2 HDF5: layer_names, each
    layer's weight_names, in order): with the top (VGG16: the backbone file, without fc1, fc2 and
    predictions)."""
    head = {*arch.classifier, "fc1", "fc2"} if arch.name in NO_TOP else set()
    groups: dict[str, list] = {}
    for layer in model.layers:
        if layer.weights and layer.name not in head:
            groups.setdefault(_keras_group(arch, layer.name), []).extend(layer.weights)
    with h5py.File(path, "w") as f:
        f.attrs["layer_names"] = [g.encode() for g in groups]
        f.attrs["backend"], f.attrs["keras_version"] = b"tensorflow", b"2.2.4"
        for group, weights in groups.items():
            names = [f"{group}/{w.path}:0" for w in weights]
            f.create_group(group).attrs["weight_names"] = [n.encode() for n in names]
            for n, w in zip(names, weights):
                f[group].create_dataset(n, data=keras.ops.convert_to_numpy(w))


def _cli(*argv) -> tuple[int, str, str]:
    """`anyshape ARGV` in this process: (exit code, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = cli.main([str(a) for a in argv])
    return code, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module", params=FAMILIES)
def built(request, classes, tmp_path_factory):
    """Steps 1-3 of the module doc, once per family: (network, the trained Keras model `train`
    returned, the ONNX file `export --arch` wrote, what each verb printed)."""
    import anyshape.training

    name = request.param
    arch = get_arch(name)
    root = tmp_path_factory.mktemp(f"verbs_{name}")
    size, printed, trained = _size(name), {}, []

    def train(*args, **kwargs):  # the CLI's own call, run as is; its result kept for the comparisons
        trained.append(real_train(*args, **kwargs))
        return trained[-1]

    real_train = anyshape.training.train
    option = ["--option", "head=flatten"] if name == "vgg16" else []
    # One step, eagerly (no tracing: 3-5 times less CPU than compiling it here), with SGD (Adam's
    # per-variable updates cost a third more on NASNet's 740 weights). Without the final BatchNorm
    # recalibration: on six 32 px images it leaves channels of zero variance, whose BatchNorm then
    # multiplies rounding by 1/sqrt(epsilon) (31.6 in MobileNetV2) at each layer, and Keras and ONNX
    # Runtime no longer agree to 1e-4 (MobileNetV2's out_relu: 1e-3 of its 6.0). The step itself
    # moves every BatchNorm statistic off its initial value (momentum), which the comparisons below
    # see. Recalibration: tests/test_training.py.
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(anyshape.training, "train", train)  # cli/train.py imports it when the verb runs
        printed["train"] = _cli(
            "train", classes, "--arch", name, *option, "--weights", "none", "--input-shape", f"{size},{size}",
            "--epochs", 1, "--batch-size", 6, "--val-split", 0, "--test-split", 0, "--run-eagerly",
            "--optimizer", "sgd", "--no-recalibrate", "-o", root / "run", "-q",
        )  # fmt: skip
    assert printed["train"][0] == 0 and len(trained) == 1, printed["train"]
    model = trained[0].model
    assert trained[0].model_path == str(root / "run" / "model.keras")

    legacy, converted = root / f"{name}.h5", root / f"{name}.weights.h5"
    _write_keras_h5(model, arch, legacy)
    at = max(size, arch.keras_min_size or 0)
    printed["convert"] = _cli("convert", legacy, "-o", converted, "--arch", name, "--input-shape", f"{at},{at},3")
    assert printed["convert"][0] == 0, printed["convert"]

    path = root / f"{name}.onnx"
    top = [] if name in NO_TOP else ["--include-top", "--classes", len(CLASSES)]
    printed["export"] = _cli(
        "export", "--arch", name, "--weights", converted, *top, "--input-shape", "none,none,3", "-o", path
    )
    assert printed["export"][0] == 0, printed["export"]
    yield name, model, path, printed
    del model
    trained.clear()
    keras.backend.clear_session()


def _run(capsys, *argv):
    code = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_train_convert_and_export_on_each_family(built):
    """Steps 1-3: what train, convert and export wrote and said; model.keras and the converted
    file hold the same arrays, those of the model train returned."""
    name, model, path, printed = built
    arch = get_arch(name)
    run_dir = path.parent / "run"
    info = read_keras_info(run_dir / "model.keras")
    assert (info.architecture, info.data_config.mode, info.class_names) == (name, arch.preprocessing, CLASSES)
    assert model.anyshape_info.architecture == name and model.output_shape[-1] == len(CLASSES)
    if name == "vgg16":
        assert info.config.head == "flatten"

    # both are Keras 3 files of the same network, keyed alike (VGG16's converted file: the backbone)
    saved, _ = read_keras3_groups(str(run_dir / "model.keras"))
    converted, _ = read_keras3_groups(str(path.parent / f"{name}.weights.h5"))
    assert converted and set(converted) <= set(saved)
    assert (set(saved) - set(converted)) == ({"dense", "dense_1", "dense_2"} if name in NO_TOP else set())
    for key, arrays in converted.items():
        assert len(arrays) == len(saved[key]) and all(np.array_equal(a, b) for a, b in zip(arrays, saved[key])), key
    assert model.count_params() == sum(a.size for v in saved.values() for a in v)  # every weight of it saved

    _, out, _ = printed["convert"]
    assert f"wrote {path.parent / (name + '.weights.h5')}: {name}" in out, out
    if name in NO_TOP:  # VGG16's backbone: no classifier to compare scores of
        assert "the file has no classifier" in out, out
    else:
        assert f"parity vs keras.applications.{arch.keras_name}" in out and "result: match" in out, out
    assert f"anyshape export: wrote {path} (onnx)" in printed["export"][2], printed["export"]


def test_export_predict_features_on_each_family(built, photos, capsys, tmp_path):
    """Steps 3-4: the export records the network and its preprocessing; predict needs no --arch and
    equals the trained Keras model (VGG16: features --model equals its backbone); features reads
    the network's own feature point and equals the Keras model."""
    name, model, path, _ = built
    arch = get_arch(name)
    graph = engine.GraphModel.load(path)
    assert (graph.architecture, graph.include_top) == (name, name not in NO_TOP)
    assert graph.preprocessing.mode == arch.preprocessing
    size = _size(name)
    layer = arch.feature_points[-1]
    # The Keras model's scores and feature map in one eager call (no tf.function to trace), on the
    # photos as each file prepares them: the export (its weights from a .h5, which records no data
    # config) by the network's defaults, the trained model as it was trained (crop 1, bilinear).
    names = sorted(p.name for p in photos.iterdir())
    configs = (graph.preprocessing, model.anyshape_info.data_config)
    x = [engine.ImageReader(size=(size, size), preprocessing=c).read(photos / n) for c in configs for n in names]
    outputs = [model.get_layer(layer).output] + ([] if name in NO_TOP else [model.output])
    keras_out = run(keras.Model(model.inputs[0], outputs), np.stack(x))  # train's model takes a list
    keras_out = keras_out if isinstance(keras_out, list) else [keras_out]
    pooled = keras_out[0].mean(axis=(1, 2))  # the feature map, average-pooled
    exported, trained = slice(0, len(names)), slice(len(names), None)

    if name in NO_TOP:
        code, out, err = _run(capsys, "predict", photos, "--model", path, "--size", size)
        assert code == 2 and out == "" and "has no classifier" in err and "anyshape features" in err, err
        # the backbone's export ends at that feature point: features --model gives its map as is
        code, _, err = _run(capsys, "features", photos, "--model", path, "--size", size, "-o", tmp_path / "g.npy", "-q")
        assert code == 0, err
        got, paths = engine.read_features(tmp_path / "g.npy")
        want = keras_out[0][exported][[names.index(p.rsplit("/", 1)[-1]) for p in paths]]
        assert got.shape == want.shape and np.abs(got - want).max() <= 1e-4 * max(1.0, np.abs(want).max())
    else:
        code, out, err = _run(
            capsys, "predict", photos, "--model", path, "--size", size, "--top", 2, "--format", "json", "-q"
        )
        assert code == 0, err
        rows = {r["path"].rsplit("/", 1)[-1]: r for r in json.loads(out)}
        assert sorted(rows) == names
        for n, scores in zip(names, keras_out[1][exported]):
            best = rows[n]["predictions"][0]
            assert best["label"] == f"class_{int(np.argmax(scores))}", (rows[n], scores)
            assert abs(best["score"] - scores.max()) <= 1e-4

    feats = tmp_path / "f.npy"  # as `features --layer` runs: the feature model on the fast engine
    engine.extract_features(engine.Predictor(engine.feature_model(model, layer, "avg")), [photos], feats, size=size)
    got, paths = engine.read_features(feats)
    want = pooled[trained][[names.index(p.rsplit("/", 1)[-1]) for p in paths]]
    assert got.shape == (2, model.get_layer(layer).output.shape[-1])
    assert np.abs(got - want).max() <= 1e-4 * max(1.0, np.abs(want).max())
    assert engine.read_manifest(feats).options["preprocessing"]["mode"] == arch.preprocessing

    code, _, err = _run(capsys, "features", photos, "--arch", name, "--layer", "mixed7", "-o", tmp_path / "x.npy")
    assert code == 2 and f"not a feature layer of {name}" in err and layer in err


def test_quantize_and_bench_on_each_family(built, photos, capsys, tmp_path):
    """Step 5:
    - `quantize` the family's export (which records its network: no --arch needed) with a photo as
      calibration: the int8 file records the same network and preprocessing, and
      `predict --model` scores every photo with it;
    - `bench --model` times the export at the network's smallest size (the network bench --arch
      builds is the one export --arch built: both call the CLI's `inference_model`)."""
    name, model, path, _ = built
    arch = get_arch(name)
    size = _size(name)

    int8 = tmp_path / "int8.onnx"
    code, out, err = _run(
        capsys, "quantize", path, "--calibrate", photos, "--size", size, "--limit", 1, "-o", int8, "-q"
    )
    assert code == 0, err
    graph = engine.GraphModel.load(int8)
    assert (graph.architecture, graph.preprocessing.mode) == (name, arch.preprocessing)
    if name not in NO_TOP:
        code, out, err = _run(capsys, "predict", photos, "--model", int8, "--size", size, "--format", "json", "-q")
        assert code == 0, err
        assert sorted(r["path"].rsplit("/", 1)[-1] for r in json.loads(out)) == ["a.png", "b.jpg"]

    code, out, err = _run(
        capsys, "bench", "--model", path, "--input-shape", f"{size},{size},3", "--engine", "onnxruntime",
        "--batch", 1, "--seconds", 0.05,
    )  # fmt: skip
    assert code == 0 and out.startswith(f"input {size}x{size},"), err
