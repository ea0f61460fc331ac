"""The verbs with --arch on one member per family, end to end through the CLI (issue 25, item 5).

tests/test_cli_inference.py::test_every_verb_runs_the_network_arch_names runs every verb (export,
predict, features, bench, quantize) on MobileNet, MobileNetV3 and ResNet50 and compares the scores
with the Keras model; tests/test_training.py runs `train --arch xception`; tests/test_weights_convert.py
runs `convert --arch` on MobileNet. This file covers the model-dependent verbs on each of the other
families' smallest member (`model_helpers.representatives()`), InceptionV3 keeping its own runs:
`export --arch NAME` builds the network and writes an ONNX file that records it, `predict` reads that
file with no --arch, and `features --arch NAME` builds the network again and reads one of its feature
points, both at the network's smallest valid size (at least 32 px) and with the network's own
preprocessing. Two builds per family (a .keras file would cost a third: every verb reading it
rebuilds the Keras model; the ONNX file is read without Keras). VGG16 is exported without its top:
its classifier needs 224 px and holds 120 M parameters (a 500 MB export); predict refuses that
backbone, pointing to features, which is what the test checks for it.
"""

from __future__ import annotations

import json

import keras
import numpy as np
import pytest
from model_helpers import representatives

from anyshape import cli, engine
from anyshape.archs import get_arch
from anyshape.shapes import minimum_size

PIL = pytest.importorskip("PIL.Image")

NO_TOP = {"vgg16"}  # see the module doc
COVERED = {"mobilenet", "mobilenet_v3_small", "resnet50", "inception_v3"}  # every verb elsewhere (see above)
FAMILIES = sorted(set(representatives()) - COVERED)
CLASSES = 3


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
def exported(request, tmp_path_factory):
    """(network, its ONNX file written by `anyshape export --arch NAME`), once per family."""
    name = request.param
    path = tmp_path_factory.mktemp(f"verbs_{name}") / f"{name}.onnx"
    top = [] if name in NO_TOP else ["--include-top", "--classes", str(CLASSES)]
    code = cli.main(
        ["export", "--arch", name, "--weights", "none", *top, "--input-shape", "none,none,3", "-o", str(path)]
    )
    assert code == 0 and path.is_file()
    yield name, path
    keras.backend.clear_session()


def _run(capsys, *argv):
    code = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_export_predict_features_on_each_family(exported, photos, capsys, tmp_path):
    """export records the network and its preprocessing; predict needs no --arch; features builds
    --arch with its feature points; both run at the network's smallest size."""
    name, path = exported
    arch = get_arch(name)
    graph = engine.GraphModel.load(path)
    assert (graph.architecture, graph.include_top) == (name, name not in NO_TOP)
    assert graph.preprocessing.mode == arch.preprocessing
    size = _size(name)

    if name in NO_TOP:
        code, out, err = _run(capsys, "predict", photos, "--model", path, "--size", size)
        assert code == 2 and out == "" and "has no classifier" in err and "anyshape features" in err, err
    else:
        _check_predict(capsys, photos, path, size)

    layer = arch.feature_points[-1]
    feats = tmp_path / "f.npy"
    code, _, err = _run(
        capsys, "features", photos, "--arch", name, "--weights", "none", "--layer", layer, "--size", size,
        "-o", feats, "-q",
    )  # fmt: skip
    assert code == 0, err
    got = np.load(feats)
    assert got.shape[0] == 2 and got.ndim == 2 and got.shape[1] > 0 and np.isfinite(got).all()
    manifest = engine.read_manifest(feats)
    assert manifest.options["arch"] == name and manifest.options["preprocessing"]["mode"] == arch.preprocessing

    code, _, err = _run(capsys, "features", photos, "--arch", name, "--layer", "mixed7", "-o", tmp_path / "x.npy")
    assert code == 2 and f"not a feature layer of {name}" in err and layer in err


def _check_predict(capsys, photos, path, size):
    code, out, err = _run(
        capsys, "predict", photos, "--model", path, "--size", size, "--top", 2, "--format", "json", "-q"
    )
    assert code == 0, err
    rows = json.loads(out)
    assert sorted(r["path"].rsplit("/", 1)[-1] for r in rows) == ["a.png", "b.jpg"]
    for row in rows:
        scores = [p["score"] for p in row["predictions"]]
        labels = {p["label"] for p in row["predictions"]}
        assert len(scores) == 2 and scores == sorted(scores, reverse=True) and 0 < sum(scores) <= 1 + 1e-5
        assert labels <= {f"class_{i}" for i in range(CLASSES)}
