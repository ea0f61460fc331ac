"""The verbs with --arch on one member per family, end to end (issue 25, item 5).

tests/test_cli_inference.py::test_every_verb_runs_the_network_arch_names runs every verb (export,
predict, features, bench, quantize) through the CLI on MobileNet, MobileNetV3 and ResNet50;
tests/test_training.py runs `train --arch` on MobileNet and Xception; tests/test_weights_convert.py
runs `convert --arch` on MobileNet. This file covers the model-dependent verbs on each of the other
families' smallest member (`model_helpers.representatives()`; InceptionV3 keeps its own runs),
with one Keras build per family, since building is what costs: the network is built as
`--arch NAME` builds it (`engine.load_or_build(arch=...)`, what export, predict and features
call) and exported to ONNX as `export` does (`engine.export_model`); `anyshape predict` reads that
file with no --arch and must give the Keras model's scores with the network's own preprocessing;
`features` runs as the verb does (`engine.feature_model` on one of the network's feature points,
`engine.extract_features`) and must give the Keras model's features; `features --arch NAME
--layer` with a layer the network lacks is refused through the CLI with the network's list;
`convert FILE --arch NAME` and `train --arch NAME` run on the same models (their tests say what
they check on which family: `train` steps on every family).
All at the network's smallest valid size (at least 32 px). VGG16 is built without its top: its
Dense classifier (Keras' Flatten top, 19 M parameters at 32 px, 124 M at 224) would more than
double the model; predict refuses that backbone, pointing to features, which is what the test
checks for it.
"""

from __future__ import annotations

import json

import keras
import numpy as np
import pytest
from model_helpers import move_batch_norm_statistics, representatives, run

from anyshape import cli, engine
from anyshape.archs import get_arch
from anyshape.engine.precision import cpu_flags, native_bf16
from anyshape.engine.predictor import fidelity
from anyshape.engine.quantize import (
    RECIPES,
    bf16_remainder_holds,
    family_int8,
    recipe_for,
    signed_activations_for,
)
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


def _centered_log(scores) -> np.ndarray:
    """Softmax scores as quantize compares them (engine.quantize's `_centered_log`): log-scores less
    their row mean, the logits less their mean (near-equal scores would give cosine ~ 1 whatever)."""
    z = np.log(np.maximum(np.asarray(scores, np.float64), 1e-30))
    return z - z.mean(axis=-1, keepdims=True)


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
    # Keras' initial weights give MobileNetV2's and both EfficientNets' heads the same score for
    # every class (their features vanish with depth): BatchNorm moved off its defaults keeps them
    # apart, so that comparing two engines' scores (int8 with fp32, predict with Keras) means something
    move_batch_norm_statistics(model)
    path = engine.export_model(model, tmp_path_factory.mktemp(f"verbs_{name}") / f"{name}.onnx")
    yield name, model, path
    del model
    keras.backend.clear_session()


def _activation_zero_points(path) -> set[tuple[str, int, bool]]:
    """The (dtype, value) of the zero point of every per-tensor QuantizeLinear (the activations) of
    an int8 file, and whether a Gemm reads the tensor (through its DequantizeLinear)."""
    import onnx
    from onnx import numpy_helper

    graph = onnx.load(str(path)).graph
    inits = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    gemm_inputs = {name for n in graph.node if n.op_type == "Gemm" for name in n.input}
    dequantized_by = {n.input[0]: n.output[0] for n in graph.node if n.op_type == "DequantizeLinear"}
    return {
        (inits[n.input[2]].dtype.name, int(inits[n.input[2]]), dequantized_by.get(n.output[0]) in gemm_inputs)
        for n in graph.node
        if n.op_type == "QuantizeLinear" and len(n.input) > 2 and inits[n.input[2]].size == 1
    }


def _int8_nodes(path) -> set[str]:
    """The Conv, MatMul and Gemm nodes of an int8 file that read their weight through a DequantizeLinear."""
    import onnx

    graph = onnx.load(path).graph
    made_by = {out: node.op_type for node in graph.node for out in node.output}
    return {
        n.name
        for n in graph.node
        if n.op_type in ("Conv", "MatMul", "Gemm") and made_by.get(n.input[1]) == "DequantizeLinear"
    }


def _weighted_nodes(path, recipe: str) -> set[str]:
    """The weighted nodes of a float file that `recipe` quantizes: its op types, less the nodes it keeps in float."""
    import onnx

    from anyshape.engine.quantize import RECIPES, kept_in_float

    proto = onnx.load(path)
    chosen = RECIPES[recipe]
    nodes = {
        n.name for n in proto.graph.node if n.op_type in chosen.op_types and n.op_type in ("Conv", "MatMul", "Gemm")
    }
    return nodes - set(kept_in_float(proto, chosen))


def _joins(path) -> tuple[int, int]:
    """(Concat nodes, those that join int8 tensors: every input through a DequantizeLinear) of a file."""
    import onnx

    graph = onnx.load(path).graph
    made_by = {out: node.op_type for node in graph.node for out in node.output}
    concats = [n for n in graph.node if n.op_type == "Concat" and len(n.input) > 1]
    return len(concats), sum(all(made_by.get(i) == "DequantizeLinear" for i in n.input) for n in concats)


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


def test_quantize_and_bench_on_each_family(built, photos, capsys, tmp_path, monkeypatch):
    """`quantize` and `bench` on each family's smallest member:
    - `quantize` the family's export (which records its network: no --arch needed) with a photo as
      calibration, its fidelity measured on ONNX Runtime (on OpenVINO for the families that try
      their float layers in bf16 on every CPU, which they then run in where they held): the int8 file records the same network
      and preprocessing, and `predict --model` scores every photo with it on OpenVINO (what auto
      picks here), agreeing with the Keras model (same top class, centered log-scores' cosine);
    - `bench --arch NAME --weights none` asks for the network with its head at the size given (the
      build answered by the module's model, a free-size build of the same network and head, since
      building is what costs: `_answer_builds`), exports it and times it.
    (`convert --arch` and `train --arch`: the tests below.)"""
    name, model, path = built
    arch = get_arch(name)
    size = _size(name)

    int8 = tmp_path / "int8.onnx"
    # fidelity measured on ONNX Runtime (OpenVINO's compiles cost more CPU: NASNetMobile's test took
    # 18.6 s so, 43.4 s on OpenVINO, alone on the AMX Xeon), but on OpenVINO for the families that try their float layers in bf16 on every CPU
    # (engine/quantize.py's FAMILY_INT8; a CPU with AMX tries it for every network: the same
    # mechanics, tests/test_precision.py and tests/test_quantize_recipes.py)
    on = "openvino" if family_int8(name).bf16_remainder else "onnxruntime"
    code, out, err = _run(
        capsys, "quantize", path, "--calibrate", photos, "--size", size, "--limit", 1, "-o", int8, "-q",
        "--engine", on,
    )  # fmt: skip
    assert code == 0, err
    graph = engine.GraphModel.load(int8)
    assert (graph.architecture, graph.preprocessing.mode) == (name, arch.preprocessing)
    fid = graph.fidelity  # measured on the calibration image, printed and stored in the file
    assert fid is not None and fid["images"] == 1 and fid["engine"] == on, fid
    # bf16 float layers measured where tried and the CPU computes bf16, kept where they held
    assert ("bf16_remainder" in fid) == (on == "openvino" and native_bf16(cpu_flags())), fid
    assert graph.float_remainder == ("bf16" if bf16_remainder_holds(fid) else "fp32"), fid
    assert (fid["top1_agreement"] is None) == (name in NO_TOP), fid  # agreement only with a classifier
    assert fid["top1_agreement"] in (None, 0.0, 1.0), fid  # one image
    assert -1 <= fid["min_cosine"] <= fid["mean_cosine"] <= 1, fid
    assert fid["mean_cosine"] >= COSINE_BOUND, fid
    assert f"mean cosine {fid['mean_cosine']:.4f}" in err and "1 calibration image(s)" in err, err
    recipe = recipe_for(name)  # the network's recipe (engine/quantize.py's table), recorded and printed
    signed = signed_activations_for(name)  # and how it stores activations that go below 0
    assert (fid["recipe"], fid["signed_activations"]) == (recipe, signed), fid
    assert f"recipe {recipe}, {signed} signed activations:" in err, err
    quantized = _int8_nodes(int8)
    assert quantized and quantized == _weighted_nodes(path, recipe), recipe
    if "Concat" in RECIPES[recipe].op_types:  # DenseNet's recipe: every join of int8 tensors
        concats, int8_joins = _joins(int8)  # (with "conv", only where each input also feeds a convolution)
        assert concats > 0 and int8_joins == concats, (concats, int8_joins)
    zero_points = _activation_zero_points(int8)  # every activation's (dtype, zero point, read by a Gemm)
    if signed == "symmetric":  # no uint8 with a zero point left but a Gemm's input: int8 at 0 for the signed ones
        assert all(z == 0 for _, z, gemm in zero_points if not gemm), zero_points
        assert ("int8", 0, False) in zero_points, zero_points
        # a Gemm's input stays uint8: ONNX Runtime's Gemm erred with int8
        assert all(d == "uint8" for d, _, gemm in zero_points if gemm), zero_points
    else:  # uint8 throughout (and a zero point above 0 where a range goes below 0)
        assert {d for d, _, _ in zero_points} == {"uint8"}, zero_points
    if name == "mobilenet_v2":  # an int8 file timed alone shows what quantize recorded (once: the reading is shared)
        code, out, err = _run(
            capsys, "bench", "--model", int8, "--input-shape", f"{size},{size},3", "--engine", "onnxruntime",
            "--batch", 1, "--seconds", 0.01,
        )  # fmt: skip
        assert code == 0 and f"recorded by quantize: fidelity of int8 vs fp32 on {fid['engine']}" in out, (out, err)
    # The int8 file on the engine auto picks (OpenVINO here) follows the float model on both photos:
    # its outputs against the Keras model's (fp32), by the measure quantize records (the centered
    # log-scores' cosine and the top class); no model compiled beyond the run the test makes anyway.
    reader = engine.ImageReader(size=(size, size), preprocessing=graph.preprocessing)
    names = ["a.png", "b.jpg"]
    float_out = run(model, np.stack([reader.read(photos / n) for n in names]))
    if name in NO_TOP:  # no classifier: its int8 file run by a Predictor with its defaults (auto)
        int8_run = engine.Predictor(graph)
        assert (int8_run.engine, int8_run.precision) == ("openvino", "int8"), int8_run.choice_reason
        int8_out = int8_run(np.stack([reader.read(photos / n) for n in names]))
    else:
        code, out, err = _run(capsys, "predict", photos, "--model", int8, "--size", size, "--format", "json")
        ran = "[openvino int8, float layers bf16]" if graph.float_remainder == "bf16" else "[openvino int8]"
        assert code == 0 and ran in err, err
        rows = {r["path"].rsplit("/", 1)[-1]: r["predictions"] for r in json.loads(out)}
        assert sorted(rows) == names
        int8_out = np.zeros_like(float_out)  # every class's score: --top (5) is above the 3 classes
        for i, n in enumerate(names):
            for p in rows[n]:
                int8_out[i, p["class_id"]] = p["score"]
        assert np.abs(float_out.sum(-1) - 1).max() <= 1e-4  # softmax scores: the network's default head
        float_out, int8_out = _centered_log(float_out), _centered_log(int8_out)
    on_openvino = fidelity(lambda _: float_out, lambda _: int8_out, [np.zeros((len(names), 1))])
    assert on_openvino["mean_cosine"] >= COSINE_BOUND and on_openvino["top1_agreement"] == 1.0, on_openvino

    top = ["--include-top", "--classes", CLASSES] if name not in NO_TOP else []
    calls = _answer_builds(monkeypatch, model)  # the build bench asks for, answered by the module's model
    code, out, err = _run(
        capsys, "bench", "--arch", name, "--weights", "none", *top, "--input-shape", f"{size},{size},3",
        "--engine", "onnxruntime", "--batch", 1, "--seconds", 0.05,
    )  # fmt: skip
    assert code == 0 and out.startswith(f"input {size}x{size},"), err
    head = {"include_top": False} if name in NO_TOP else {"include_top": True, "classes": CLASSES}
    wanted = dict(weights=None, input_shape=(size, size, 3), data_format="channels_last", pooling=None, **head)
    assert [(n, {k: kw.get(k) for k in wanted}) for n, kw in calls] == [(name, wanted)], calls


# --- convert --arch and train --arch on the same models ---------------------------------------------

KERAS_MIN = {"xception": 71}  # keras.applications.Xception refuses less (ours takes 7 px)
TRAINED = set(FAMILIES) - NO_TOP  # a real `train --arch` step: see its test
FREEZE_AT = {"nasnet_mobile": -3}  # its second-to-last block (normal_concat_12) leaves only the classifier


def _weights(model) -> dict:
    return {layer.name: [np.array(w) for w in layer.weights] for layer in model.layers if layer.weights}


@pytest.fixture
def kept(built):
    """The module's model given back its weights, trainable flags and records after the test."""
    _, model, _ = built
    weights = [np.array(w) for w in model.weights]
    attrs = {k: getattr(model, k, None) for k in ("anyshape_config", "anyshape_weights")}
    activations = {layer.name: layer.activation for layer in model.layers if hasattr(layer, "activation")}
    trainable = {layer.name: layer.trainable for layer in model.layers}
    yield model
    for w, a in zip(model.weights, weights):
        w.assign(a)
    for layer in model.layers:
        layer.trainable = trainable[layer.name]
        if layer.name in activations:
            layer.activation = activations[layer.name]
    for k, v in attrs.items():
        setattr(model, k, v)


def _answer_builds(monkeypatch, model, logits: bool = False) -> list:
    """anyshape.create_model answered by `model` (the call's arguments recorded): what the verbs
    build is the network the module built by --arch, with the same head; building is what costs."""
    import anyshape.factory
    from anyshape.weights.convert_common import set_classifier_activation

    calls: list = []

    def build(arch_name, **kwargs):
        calls.append((arch_name, kwargs))
        if logits:  # as the call asks (classifier_activation=None)
            set_classifier_activation(model, get_arch(arch_name), None)
        return model

    monkeypatch.setattr(anyshape.factory, "create_model", build)
    return calls


def test_convert_arch_on_each_family(built, kept, tmp_path, capsys, monkeypatch):
    """`convert FILE --arch NAME --input-shape S,S,3` on each family's smallest member, FILE in
    Keras' published layout (Keras 2 HDF5, as keras.applications' files) made from the module's
    model; the network convert builds (asked once, with the head the file names, for logits, at S)
    is the module's model, a free-size build of that network and head (see `_answer_builds`):
    - with the top (3 classes; BatchNorm statistics, scales and offsets moved off their defaults,
      so every array counts; ConvNeXt's file from keras.applications' model, as Keras nests its
      stem and downsampling layers and its file does): the verb finds the classifier in the file
      by the network's record, loads the file and reports parity against keras.applications.X
      loaded from the same file, at the network's smallest size (Xception: Keras' own minimum, 71
      px): a match (else it writes nothing and fails); the .weights.h5 it writes records the
      network, the file's 3 classes and the network's preprocessing;
    - VGG16 without the top (see the module doc; no parity: "the file has no classifier"): the
      backbone is built, and loading the file (made from the model's own arrays) changes none of
      them; the file records the network, no classes and caffe preprocessing."""
    from made_files import write_legacy_h5
    from model_helpers import randomised

    from anyshape.weights import resolve

    name, model, _ = built
    arch = get_arch(name)
    size = max(_size(name), KERAS_MIN.get(name, 0))
    src, dst = tmp_path / f"{name}_keras.h5", tmp_path / f"{name}.weights.h5"
    if name in NO_TOP:
        write_legacy_h5(model, src)
        before = _weights(model)
    else:
        rng = np.random.default_rng(0)
        source = model
        if arch.family == "convnext":
            source = getattr(keras.applications, arch.keras_name)(weights=None, input_shape=(size, size, 3), classes=3)
        write_legacy_h5(source, src, value=lambda w, a: randomised(w, a, rng))
        del source
    calls = _answer_builds(monkeypatch, model, logits=name not in NO_TOP)
    code, out, err = _run(capsys, "convert", src, "--arch", name, "--input-shape", f"{size},{size},3", "-o", dst)
    assert code == 0, err
    head = {"include_top": False} if name in NO_TOP else {"include_top": True, "classes": CLASSES}
    assert calls == [(name, dict(input_shape=(size, size, 3), classifier_activation=None, **head))]
    assert f"wrote {dst}: {name}" in out, out
    ws = resolve(str(dst))
    assert (ws.arch, ws.mode) == (name, arch.preprocessing)
    if name in NO_TOP:
        assert "parity: not computed (the file has no classifier)" in out and ws.num_classes is None, out
        after = _weights(model)
        assert all(np.array_equal(a, b) for n in before for a, b in zip(before[n], after[n]))
    else:
        assert f"parity vs keras.applications.{arch.keras_name} (2 random images at {size}x{size}" in out, out
        assert "top-5 agreement: 100%" in out and "result: match" in out, out
        assert ws.num_classes == CLASSES


@pytest.fixture(scope="module")
def classes_folder(tmp_path_factory):
    """One photo per class, 3 classes (the module's models have 3): one training step of 3 images."""
    from image_folder import make_image_folder

    return make_image_folder(tmp_path_factory.mktemp("verbs_train") / "data", per_class=1)


def _train_one_step(capsys, folder, name: str, size: int, block: str, out) -> None:
    """`anyshape train --arch NAME` for one eager step of 3 images at SIZE, frozen up to BLOCK."""
    code, _, err = _run(
        capsys, "train", folder, "--arch", name, "--input-shape", f"{size},{size}",
        "--freeze", f"up-to-{block}", "--epochs", 1, "--batch-size", 3, "--val-split", 0, "--test-split", 0,
        "--augment", "none", "--run-eagerly", "-o", out, "-q",
    )  # fmt: skip
    assert code == 0, err


def test_train_arch_on_each_family(built, kept, classes_folder, tmp_path, capsys, monkeypatch):
    """`train --arch NAME` on each family's smallest member, with one of the network's own freeze
    points: up to the second-to-last block of its record (NASNet: the third-to-last, so that
    BatchNorm layers train) (S: its smallest size, at least 32).

    On every family, without a training step (what is the network's own in a run):
    - `Trainer` accepts that freeze point (its record's blocks) and asks `anyshape.create_model`
      for NAME with a 3-class softmax head at S, no weights; the run records the network
      (`_network_record`);
    - `freeze_layers` with it freezes exactly the weighted layers the block's output depends on;
      with `backbone`, the classifier's weights are the only trainable ones.
    VGG16 (built here without its top, whose Dense head needs 224 px and 120 M parameters): the
    freeze point freezes blocks 1-4; its step, with the top at 224 px, is
    `test_train_arch_steps_the_other_families`.

    On every family but VGG16, the whole run through the CLI: one eager step of 3 images at S,
    then BatchNorm recalibration (the build answered by the module's model, arguments checked:
    `_answer_builds`): each family's training graph (EfficientNet's in-graph normalisation of raw
    pixels, drop-connect and squeeze-excitation; ConvNeXt, the family without BatchNorm: LayerNorm
    and layer scale train, recalibration finds nothing to do and the report says 0 batches;
    the others' BatchNorm in training mode). ResNet and MobileNetV3 (whose other verbs run in
    tests/test_cli_inference.py) and VGG16 with its 224 px top: `test_train_arch_steps_the_other_families`
    below; MobileNet and Xception train in tests/test_training.py. Checked (on ConvNeXt, LayerNorm in place of BatchNorm): the layers the freeze point depends on keep every array (BatchNorm statistics
    included); only layers after it changed, the classifier and BatchNorm statistics among them,
    the statistics re-estimated on 1 batch; report.json and checkpoint.json record the network;
    model.keras records it with its 3 classes, the trained size and the network's preprocessing
    (raw pixels)."""
    import types

    from anyshape.model_info import read_keras_info
    from anyshape.training import TrainConfig, Trainer, freeze_layers
    from anyshape.training.network import _network_record

    name, model, _ = built
    arch = get_arch(name)
    block = arch.blocks[FREEZE_AT.get(name, -2)]
    weighted = {layer.name for layer in model.layers if layer.weights}
    frozen = weighted & {layer.name for layer in keras.Model(model.input, model.get_layer(block).output).layers}
    size = _size(name)
    trainer = Trainer(TrainConfig(str(classes_folder), arch=name, freeze=f"up-to-{block}", input_shape=(size, size)))
    assert set(freeze_layers(model, f"up-to-{block}", name)) == frozen
    assert {layer.name for layer in model.layers if layer.weights and not layer.trainable} == frozen
    if name in NO_TOP:
        vgg = {f"block{b}_conv{i}" for b, n in ((1, 2), (2, 2), (3, 3), (4, 3)) for i in range(1, n + 1)}
        assert frozen == vgg
        return
    freeze_layers(model, "backbone", name)
    assert {id(w) for w in model.trainable_weights} == {
        id(w) for w in model.get_layer(arch.classifier[0]).trainable_weights
    }
    calls = _answer_builds(monkeypatch, model)
    trainer.input_shape, trainer.dataset = (size, size, 3), types.SimpleNamespace(num_classes=CLASSES)
    assert trainer._build_model(None) is model and _network_record(model)["name"] == name
    expected = dict(
        weights=None,
        preprocessing=None,
        input_shape=(size, size, 3),
        include_top=True,
        classes=CLASSES,
        classifier_activation="softmax",
        data_format="channels_last",
    )
    assert calls == [(name, expected)]
    if name not in TRAINED:
        return

    calls.clear()
    before, out = _weights(model), tmp_path / "run"
    _train_one_step(capsys, classes_folder, name, size, block, out)
    assert calls == [(name, expected)]
    after = _weights(model)
    changed = {n for n in weighted if not all(np.array_equal(a, b) for a, b in zip(before[n], after[n]))}
    assert changed <= weighted - frozen and arch.classifier[0] in changed, changed
    bn = {n for n in weighted - frozen if isinstance(model.get_layer(n), keras.layers.BatchNormalization)}
    report = json.loads((out / "report.json").read_text())
    if arch.family == "convnext":  # LayerNorm only: nothing to recalibrate, and the run says 0 batches
        assert not bn and report["batchnorm_recalibration"]["batches"] == 0, report
        assert any("layernorm" in n for n in changed), changed  # its normalisation trained
    else:
        assert bn & changed, bn
        assert report["batchnorm_recalibration"]["batches"] == 1, report
    assert report["config"]["arch"] == name and report["architecture"]["name"] == name
    assert report["epochs"][0]["freeze"] == f"up-to-{block}"
    state = json.loads((out / "checkpoint.json").read_text())
    assert state["config"]["arch"] == name and state["architecture"]["name"] == name
    info = read_keras_info(out / "model.keras")
    assert (info.architecture, info.config.classes) == (name, CLASSES)
    assert info.class_names == ("chelsea", "coffee", "rocket")
    assert info.data_config.mode == arch.preprocessing and info.data_config.input_size == (size, size)


@pytest.mark.parametrize("name", ["resnet50", "mobilenet_v3_small", "vgg16"])
def test_train_arch_steps_the_other_families(name, classes_folder, tmp_path, capsys):
    """`train --arch NAME` on the two families whose other verbs run in
    tests/test_cli_inference.py, and on VGG16 with its top (Keras' Flatten top at 32 px; the
    module's VGG16 is a backbone), end to end through the CLI with a real build (no weights, 3
    classes, the smallest size the head takes): one eager step of 3 images with the backbone
    frozen up to the second-to-last block, BatchNorm recalibration on 1 batch (VGG16 has none: 0);
    the run records the network and model.keras loads back as it with its 3 classes and the
    trained size."""
    from anyshape.model_info import load_model

    arch = get_arch(name)
    size, block = _size(name), arch.blocks[-2]
    out = tmp_path / "run"
    _train_one_step(capsys, classes_folder, name, size, block, out)
    report = json.loads((out / "report.json").read_text())
    assert report["config"]["arch"] == name and report["architecture"]["name"] == name
    batches = 0 if name in NO_TOP else 1  # VGG16 has no BatchNorm
    assert report["batchnorm_recalibration"]["batches"] == batches and report["epochs"][0]["freeze"] == f"up-to-{block}"
    trained = load_model(out / "model.keras")
    assert trained.anyshape_info.architecture == name and trained.anyshape_config.classes == CLASSES
    assert trained.anyshape_info.data_config.input_size == (size, size)
    frozen = {layer.name for layer in keras.Model(trained.input, trained.get_layer(block).output).layers}
    assert not any(trained.get_layer(n).trainable for n in frozen if trained.get_layer(n).weights)
