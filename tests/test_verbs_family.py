"""The verbs with --arch on one member per family, end to end (issue 25, item 5).

tests/test_cli_inference.py::test_every_verb_runs_the_network_arch_names runs every verb (export,
predict, features, bench, quantize) through the CLI on MobileNet, MobileNetV3 and ResNet50;
tests/test_training.py runs `train --arch xception`; tests/test_weights_convert.py runs
`convert --arch` on MobileNet. This file covers the model-dependent verbs on each of the other
families' smallest member (`model_helpers.representatives()`; InceptionV3 keeps its own runs),
with one Keras build per family, since building is what costs: the network is built as
`--arch NAME` builds it (`engine.load_or_build(arch=...)`, what export, predict and features
call) and exported to ONNX as `export` does (`engine.export_model`); `anyshape predict` reads that
file with no --arch and must give the Keras model's scores with the network's own preprocessing;
`features` runs as the verb does (`engine.feature_model` on one of the network's feature points,
`engine.extract_features`) and must give the Keras model's features; `features --arch NAME
--layer` with a layer the network lacks is refused through the CLI with the network's list.
All at the network's smallest valid size (at least 32 px). VGG16 is built without its top: its
classifier needs 224 px and holds 120 M parameters; predict refuses that backbone, pointing to
features, which is what the test checks for it.
"""

from __future__ import annotations

import json

import keras
import numpy as np
import pytest
from model_helpers import representatives, run

from anyshape import cli, engine
from anyshape.archs import get_arch
from anyshape.shapes import minimum_size

PIL = pytest.importorskip("PIL.Image")

NO_TOP = {"vgg16"}  # see the module doc
COVERED = {"mobilenet", "mobilenet_v3_small", "resnet50", "inception_v3"}  # every verb elsewhere (see above)
FAMILIES = sorted(set(representatives()) - COVERED)
CLASSES = 3
# int8's mean cosine with fp32 on the calibration image (of the centered logits, or of VGG16's
# features), lowest over the families. Measured on ONNX Runtime: 0.9998 (VGG16), 1.0000 for the
# others; with the activation scales of the int8 graph cut to 1/16 by hand (a wrong scale
# clips), ConvNeXtTiny gave 0.9309, VGG16 0.9832, NASNetMobile 0.9993: below this bound.
COSINE_BOUND = 0.999


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


@pytest.fixture(scope="module", params=FAMILIES)
def built(request, tmp_path_factory):
    """(network, its Keras model as --arch builds it, its ONNX export), once per family."""
    name = request.param
    top = {"include_top": False} if name in NO_TOP else {"include_top": True, "classes": CLASSES}
    keras.utils.set_random_seed(0)
    model = engine.load_or_build(arch=name, weights=None, input_shape=(None, None, 3), **top)
    path = engine.export_model(model, tmp_path_factory.mktemp(f"verbs_{name}") / f"{name}.onnx")
    yield name, model, path
    del model
    keras.backend.clear_session()


def _run(capsys, *argv):
    code = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_export_predict_features_on_each_family(built, photos, capsys, tmp_path):
    """The export records the network and its preprocessing; predict needs no --arch and equals
    the Keras model; features reads the network's own feature point and equals the Keras model."""
    name, model, path = built
    arch = get_arch(name)
    graph = engine.GraphModel.load(path)
    assert (graph.architecture, graph.include_top) == (name, name not in NO_TOP)
    assert graph.preprocessing.mode == arch.preprocessing
    size = _size(name)
    reader = engine.ImageReader(size=(size, size), preprocessing=graph.preprocessing)
    layer = arch.feature_points[-1]
    # the Keras model's scores and feature map in one eager call (no tf.function to trace)
    names = sorted(p.name for p in photos.iterdir())
    outputs = [model.get_layer(layer).output] + ([] if name in NO_TOP else [model.output])
    keras_out = run(keras.Model(model.input, outputs), np.stack([reader.read(photos / n) for n in names]))
    keras_out = keras_out if isinstance(keras_out, list) else [keras_out]

    if name in NO_TOP:
        code, out, err = _run(capsys, "predict", photos, "--model", path, "--size", size)
        assert code == 2 and out == "" and "has no classifier" in err and "anyshape features" in err, err
    else:
        code, out, err = _run(
            capsys, "predict", photos, "--model", path, "--size", size, "--top", 2, "--format", "json", "-q"
        )
        assert code == 0, err
        rows = {r["path"].rsplit("/", 1)[-1]: r for r in json.loads(out)}
        assert sorted(rows) == names
        for n, scores in zip(names, keras_out[1]):
            best = rows[n]["predictions"][0]
            assert best["label"] == f"class_{int(np.argmax(scores))}", (rows[n], scores)
            assert abs(best["score"] - scores.max()) <= 1e-4

    feats = tmp_path / "f.npy"  # as `features --layer` runs: the feature model on the fast engine
    engine.extract_features(engine.Predictor(engine.feature_model(model, layer, "avg")), [photos], feats, size=size)
    got, paths = engine.read_features(feats)
    want = keras_out[0].mean(axis=(1, 2))[[names.index(p.rsplit("/", 1)[-1]) for p in paths]]
    assert got.shape == (2, model.get_layer(layer).output.shape[-1])
    assert np.abs(got - want).max() <= 1e-4 * max(1.0, np.abs(want).max())
    assert engine.read_manifest(feats).options["preprocessing"]["mode"] == arch.preprocessing

    code, _, err = _run(capsys, "features", photos, "--arch", name, "--layer", "mixed7", "-o", tmp_path / "x.npy")
    assert code == 2 and f"not a feature layer of {name}" in err and layer in err


def test_quantize_and_bench_on_each_family(built, photos, capsys, tmp_path):
    """`quantize` and `bench` on each family's smallest member:
    - `quantize` the family's export (which records its network: no --arch needed) with a photo as
      calibration: the int8 file records the same network and preprocessing, and
      `predict --model` scores every photo with it;
    - `bench --arch NAME --weights none` builds the network and times it.
    (`convert --arch` and `train --arch` run on MobileNet and Xception: tests/test_weights_convert.py,
    tests/test_training.py.)"""
    name, model, path = built
    arch = get_arch(name)
    size = _size(name)

    int8 = tmp_path / "int8.onnx"
    code, out, err = _run(
        capsys, "quantize", path, "--calibrate", photos, "--size", size, "--limit", 1, "-o", int8, "-q",
        "--engine", "onnxruntime",  # fidelity measured on ONNX Runtime: OpenVINO compiles cost more CPU
    )  # fmt: skip
    assert code == 0, err
    graph = engine.GraphModel.load(int8)
    assert (graph.architecture, graph.preprocessing.mode) == (name, arch.preprocessing)
    fid = graph.fidelity  # measured on the calibration image, printed and stored in the file
    assert fid is not None and fid["images"] == 1 and fid["engine"] == "onnxruntime", fid
    assert (fid["top1_agreement"] is None) == (name in NO_TOP), fid  # agreement only with a classifier
    assert fid["top1_agreement"] in (None, 0.0, 1.0), fid  # one image
    assert -1 <= fid["min_cosine"] <= fid["mean_cosine"] <= 1, fid
    assert fid["mean_cosine"] >= COSINE_BOUND, fid
    assert f"mean cosine {fid['mean_cosine']:.4f}" in err and "1 calibration image(s)" in err, err
    if name == "mobilenet_v2":  # an int8 file timed alone shows what quantize recorded (once: the reading is shared)
        code, out, err = _run(
            capsys, "bench", "--model", int8, "--input-shape", f"{size},{size},3", "--engine", "onnxruntime",
            "--batch", 1, "--seconds", 0.01,
        )  # fmt: skip
        assert code == 0 and f"recorded by quantize: fidelity of int8 vs fp32 on {fid['engine']}" in out, (out, err)
    if name not in NO_TOP:
        code, out, err = _run(capsys, "predict", photos, "--model", int8, "--size", size, "--format", "json", "-q")
        assert code == 0, err
        assert sorted(r["path"].rsplit("/", 1)[-1] for r in json.loads(out)) == ["a.png", "b.jpg"]

    top = ["--include-top", "--classes", CLASSES] if name not in NO_TOP else []
    code, out, err = _run(
        capsys, "bench", "--arch", name, "--weights", "none", *top, "--input-shape", f"{size},{size},3",
        "--engine", "onnxruntime", "--batch", 1, "--seconds", 0.05,
    )  # fmt: skip
    assert code == 0 and out.startswith(f"input {size}x{size},"), err
