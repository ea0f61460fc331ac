"""Precision (fp32 / bf16 / int8), the OpenVINO engine and int8 quantization, plus the auto rule
on given CPU flags.

What depends on what a model learned (the accuracy of bf16 and int8, OpenVINO's fp32 parity on
peaked scores, the preprocessing `anyshape.train` writes) runs on InceptionV3 trained on the
digits (tests/trained_digits.py, the session's `trained_digits`); the structure of the int8 graph,
the file's metadata, pickling, the CLI's paths and the no-overwrite rule run on a random
InceptionV3 of the same layout with moved BatchNorm statistics (`random_digits`, seconds to make)."""

import json
import pickle

import numpy as np
import pytest
from trained_digits import random_digits as make_random_digits

from anyshape import cli, engine
from anyshape.engine.precision import choose, cpu_flags, native_bf16

ZEN3 = frozenset({"avx2", "fma", "sse4_2"})  # no bf16 at all
ZEN4 = frozenset({"avx2", "avx512f", "avx512_vnni", "avx512_bf16"})  # this machine: bf16, no AMX
SAPPHIRE = frozenset({"avx512f", "avx512_vnni", "avx512_bf16", "amx_bf16", "amx_int8", "amx_tile"})
ALL = ("onnxruntime", "openvino", "keras")
# The tests below that run bf16 need a CPU that computes it (explicit bf16 is refused elsewhere, and
# OpenVINO may then run f32 whatever it is asked): on other CPUs they check the refusal instead, and
# the OpenVINO paths run in fp32.
NATIVE_BF16 = native_bf16(cpu_flags())
HERE = "bf16" if NATIVE_BF16 else "fp32"
CALIBRATION_LIMIT = 16  # digits the random model's int8 file is calibrated on (structure, not accuracy)


# --- the auto rule, CPU flags given as input -------------------------------------------------------


@pytest.mark.parametrize("flags", [ZEN3, frozenset(), frozenset({"avx512f", "avx512_vnni"})])
def test_auto_never_picks_bf16_on_a_cpu_without_it(flags):
    for engine_name in ("auto", "openvino", "onnxruntime"):
        assert choose(engine_name, "auto", flags=flags, available=ALL).precision == "fp32"
    assert choose("auto", "auto", flags=flags, available=ALL).engine == "onnxruntime"  # today's fp32 engine
    with pytest.raises(ValueError, match="no native bf16"):
        choose("auto", "bf16", flags=flags, available=ALL)


@pytest.mark.parametrize("flags", [ZEN4, SAPPHIRE])
def test_auto_takes_bf16_on_openvino_where_native(flags):
    c = choose("auto", "auto", flags=flags, available=ALL)
    assert (c.engine, c.precision) == ("openvino", "bf16")
    # without OpenVINO installed auto stays fp32 on ONNX Runtime; int8 is never picked for a float model
    assert choose("auto", "auto", flags=flags, available=("onnxruntime", "keras")).precision == "fp32"
    assert choose("onnxruntime", "auto", flags=flags, available=ALL).precision == "fp32"
    with pytest.raises(ValueError, match=r"anyshape\.engine\.quantize\(") as e:  # Python's words
        choose("auto", "int8", flags=flags, available=ALL)
    from anyshape.cli.options import cli_message

    assert "anyshape quantize" in cli_message(e.value)  # the CLI's
    assert choose("auto", "auto", flags=flags, available=ALL, quantized=True).precision == "int8"
    with pytest.raises(ValueError, match="quantized"):
        choose("auto", "fp32", flags=flags, available=ALL, quantized=True)


def test_cpu_flags_read_from_cpuinfo(tmp_path):
    info = tmp_path / "cpuinfo"
    info.write_text(
        "processor\t: 0\nmodel name\t: Some CPU\nflags\t\t: fpu avx2 avx512_bf16 avx512_vnni\n\n"
        "processor\t: 1\nflags\t\t: fpu avx2 avx512_bf16 avx512_vnni\n"
    )
    flags = cpu_flags(info)
    assert {"avx2", "avx512_bf16", "avx512_vnni"} <= flags and native_bf16(flags)
    assert cpu_flags(tmp_path / "missing") == frozenset() and not native_bf16(frozenset())


@pytest.fixture(scope="module")
def random_digits(tmp_path_factory):
    """Random InceptionV3 (75x75x1, 10 classes), saved as train saves it: see tests/trained_digits.py."""
    return make_random_digits(tmp_path_factory.mktemp("random-digits"))


def test_predictor_auto_follows_the_flags_it_is_given(random_digits):
    without = engine.Predictor(random_digits.model, precision="auto", cpu_flags=ZEN3)
    assert (without.engine, without.precision) == ("onnxruntime", "fp32")
    native = engine.Predictor(random_digits.model, precision="auto", cpu_flags=ZEN4)
    assert (native.engine, native.precision) == ("openvino", "bf16")
    with pytest.raises(ValueError, match="no native bf16"):
        engine.Predictor(random_digits.model, precision="bf16", cpu_flags=ZEN3)


# --- accuracy of each precision on the trained model ------------------------------------------------


def _scores(predictor, x, batch=40):
    return np.concatenate([predictor(x[i : i + batch]) for i in range(0, len(x), batch)])


@pytest.fixture(scope="module")
def fp32_scores(trained_digits):
    return _scores(
        engine.Predictor(trained_digits.model, engine="onnxruntime", precision="fp32"), trained_digits.x_test
    )


def _accuracy(scores, y):
    return float(np.mean(scores.argmax(-1) == y))


def test_trained_model_is_a_real_model(trained_digits, fp32_scores):
    """The reference of the accuracy checks below: ONNX Runtime fp32 on every unseen digit, a
    trained model's scores (not random weights: chance is 0.1), equal to Keras' own (on the sample
    Keras scored, see tests/trained_digits.py: within 1e-4 and the same answers)."""
    assert _accuracy(fp32_scores, trained_digits.y_test) >= 0.8
    keras_scores = trained_digits.keras_scores
    sample = fp32_scores[: len(keras_scores)]
    # probabilities: a translation error moves them by far more (a half-trained stand-in gave 8e-5)
    assert np.abs(sample - keras_scores).max() <= 2e-4
    assert (sample.argmax(-1) == keras_scores.argmax(-1)).all()


def test_openvino_fp32_equals_keras(trained_digits):
    p = engine.Predictor(trained_digits.model, engine="openvino", precision="fp32")
    assert (p.engine, p.precision) == ("openvino", "fp32")
    x = trained_digits.x_test[: len(trained_digits.keras_scores)]
    assert np.abs(p(x) - trained_digits.keras_scores).max() <= 1e-4
    assert np.abs(p(x[:1]) - trained_digits.model.predict_on_batch(x[:1])).max() <= 1e-4  # batch 1, same model


def test_bf16_keeps_accuracy_and_top1(trained_digits, fp32_scores):
    if not NATIVE_BF16:  # this CPU: bf16 refused, auto stays fp32
        with pytest.raises(ValueError, match="no native bf16"):
            engine.Predictor(trained_digits.model, precision="bf16")
        auto = engine.Predictor(trained_digits.model)
        assert (auto.engine, auto.precision) == ("onnxruntime", "fp32")
        return
    p = engine.Predictor(trained_digits.model, precision="bf16")  # this CPU has native bf16
    assert (p.engine, p.precision) == ("openvino", "bf16")
    scores = _scores(p, trained_digits.x_test)
    assert np.abs(scores - fp32_scores).max() > 0  # really computed in bf16, not fp32
    y = trained_digits.y_test
    assert _accuracy(scores, y) >= _accuracy(fp32_scores, y) - 0.005
    assert np.mean(scores.argmax(-1) == fp32_scores.argmax(-1)) >= 0.99


@pytest.fixture(scope="module")
def quantized(random_digits, tmp_path_factory):
    """The random model's int8 file: for structure and metadata, calibrated on a few of the
    folder's digits (the trained model's file below is calibrated as users do, on up to 300)."""
    out = tmp_path_factory.mktemp("int8") / "digits-int8.onnx"
    report = engine.quantize(random_digits.model, random_digits.calibration, out, limit=CALIBRATION_LIMIT)
    return out, report


@pytest.fixture(scope="module")
def quantized_trained(trained_digits, tmp_path_factory):
    """The trained model's int8 file, calibrated on 300 of its training digits: for accuracy."""
    out = tmp_path_factory.mktemp("int8-trained") / "digits-int8.onnx"
    report = engine.quantize(trained_digits.model, trained_digits.calibration, out)
    assert report.used == 300
    return out


def test_quantize_skips_unreadable_calibration_images_and_is_deterministic(random_digits, quantized, tmp_path):
    out, report = quantized
    # broken.png sorts first: skipped, and the next CALIBRATION_LIMIT digits read
    assert report.used == CALIBRATION_LIMIT
    assert [p for p, _ in report.skipped] == [str(random_digits.calibration / "broken.png")]
    again = engine.quantize(
        random_digits.model, random_digits.calibration, tmp_path / "again.onnx", limit=CALIBRATION_LIMIT
    )
    assert again.path.read_bytes() == out.read_bytes()
    with pytest.raises(FileExistsError, match="pass force=True") as e:
        engine.quantize(random_digits.model, random_digits.calibration, out, limit=CALIBRATION_LIMIT)
    assert e.value.parameter == "force"


def test_int8_graph_keeps_the_first_convolution_in_float(quantized):
    """The measured choice in engine/quantize.py: the first convolution (the raw image, 1-3 input
    channels) stays float; every later one reads int8 activations and int8 weights, each through a
    DequantizeLinear. The accuracy bounds below are too loose to see the first one quantized."""
    import onnx

    assert quantized[1].fidelity["recipe"] == "conv"  # InceptionV3's recipe (engine/quantize.py), recorded
    assert engine.GraphModel.load(quantized[0]).fidelity["recipe"] == "conv"
    graph = onnx.load(quantized[0]).graph
    made_by = {name: node.op_type for node in graph.node for name in node.output}
    float_weights = {t.name for t in graph.initializer if t.data_type == onnx.TensorProto.FLOAT}
    convs = [node for node in graph.node if node.op_type == "Conv"]
    assert len(convs) == 94  # InceptionV3's convolutions, in graph order: the stem's first one first
    first, *later = convs
    assert "DequantizeLinear" not in (made_by.get(first.input[0]), made_by.get(first.input[1]))
    assert first.input[1] in float_weights
    for conv in later:
        assert [made_by.get(name) for name in conv.input[:2]] == ["DequantizeLinear"] * 2, conv.name


def test_quantize_keeps_onnxruntime_advice_off_the_terminal(tmp_path, capsys, caplog):
    """ONNX Runtime's quantizer logs "Please consider to run pre-processing before quantization"
    on the root logger, twice, and installs a handler that prints it. Under pytest the root logger
    has pytest's handler, so the check is that no such record is logged at all."""
    import logging

    from PIL import Image

    rng = np.random.default_rng(0)
    (tmp_path / "calibrate").mkdir()
    for i in range(2):
        Image.fromarray(rng.integers(0, 255, (80, 80, 3), dtype=np.uint8)).save(tmp_path / "calibrate" / f"{i}.png")
    caplog.set_level(logging.DEBUG)
    argv = ["quantize", "none", "--calibrate", tmp_path / "calibrate", "-o", tmp_path / "q.onnx", "--size", 75]
    assert cli.main([str(a) for a in [*argv, "--features", "-q"]]) == 0
    err = capsys.readouterr().err
    assert "pre-processing" not in err and "wrote" in err and "Traceback" not in err
    assert not [r.getMessage() for r in caplog.records if "onnxruntime" in r.pathname and r.levelno >= logging.INFO]


@pytest.mark.parametrize("engine_name", ["openvino", "onnxruntime"])
def test_int8_file_round_trips(random_digits, quantized, engine_name):
    out, _ = quantized
    graph = engine.load_or_build(out)  # a fresh load: everything predict needs comes from the file
    assert isinstance(graph, engine.GraphModel) and graph.precision == "int8"
    assert graph.class_names == [str(d) for d in range(10)] and graph.fixed_hw == (75, 75) and graph.channels == 1
    # the Keras model's own preprocessing (every engine takes it from the model: keras compiles nothing)
    assert graph.preprocessing == engine.Predictor(random_digits.model, engine="keras").preprocessing
    p = engine.Predictor(graph, engine=engine_name, precision="auto")
    assert (p.engine, p.precision) == (engine_name, "int8")
    assert engine.Predictor(graph, engine=engine_name).precision == "int8"  # the default: the file's own precision
    with pytest.raises(ValueError, match="quantized"):
        engine.Predictor(graph, precision="fp32")


@pytest.mark.parametrize("engine_name", ["openvino", "onnxruntime"])
def test_int8_keeps_accuracy(trained_digits, quantized_trained, fp32_scores, engine_name):
    """On OpenVINO, int8 everywhere (the first convolution too) lost InceptionV3's agreement to
    80.6 % (engine/quantize.py): this bound is where that failure mode shows."""
    p = engine.Predictor(engine.load_or_build(quantized_trained), engine=engine_name)
    assert (p.engine, p.precision) == (engine_name, "int8")
    scores = _scores(p, trained_digits.x_test)
    y = trained_digits.y_test
    assert _accuracy(scores, y) >= _accuracy(fp32_scores, y) - 0.005
    assert np.mean(scores.argmax(-1) == fp32_scores.argmax(-1)) >= 0.99
    assert np.abs(scores - fp32_scores).max() > 0  # really quantized


def test_predictor_pickles_as_graph_and_rebuilds(random_digits, quantized):
    x = np.random.default_rng(2).uniform(-1, 1, (8, 75, 75, 1)).astype("float32")
    for p in (
        engine.Predictor(random_digits.model, engine="openvino", precision=HERE),
        engine.Predictor(engine.load_or_build(quantized[0]), engine="onnxruntime", precision="int8"),
    ):
        q = pickle.loads(pickle.dumps(p))
        assert (q.engine, q.precision, q.class_names) == (p.engine, p.precision, p.class_names)
        np.testing.assert_array_equal(q(x), p(x))


def test_cli_predict_and_features_with_the_int8_file(random_digits, quantized, tmp_path, capsys):
    out, _ = quantized
    folder = random_digits.calibration
    assert (
        cli.main(
            [
                "predict",
                str(folder / "digit000.png"),
                str(folder / "digit001.png"),
                "--model",
                str(out),
                "--format",
                "json",
                "-q",
            ]
        )
        == 0
    )  # no --precision: the file's int8
    captured = capsys.readouterr()
    rows = json.loads(captured.out)
    assert [r["predictions"][0]["label"] in [str(d) for d in range(10)] for r in rows] == [True, True]
    # the file's float layers in bf16 where quantize tried that (every network on a CPU with AMX,
    # with bf16 natively) and it held, else f32: the engine line says which ran
    from anyshape.engine.quantize import bf16_remainder_for, bf16_remainder_holds

    graph = engine.GraphModel.load(out)
    tried = NATIVE_BF16 and bf16_remainder_for(graph.architecture)
    assert ("bf16_remainder" in graph.fidelity) == tried, graph.fidelity
    assert graph.float_remainder == ("bf16" if tried and bf16_remainder_holds(graph.fidelity) else "fp32")
    layers = ", float layers bf16" if graph.float_remainder == "bf16" else ""
    assert f"[openvino int8{layers}]" in captured.err, captured.err
    feats = tmp_path / "f.npz"
    assert (
        cli.main(
            [
                "features",
                str(folder / "digit000.png"),
                "--model",
                str(random_digits.model_path),
                "--engine",
                "openvino",
                "--precision",
                HERE,
                "-o",
                str(feats),
                "-q",
            ]
        )
        == 0
    )
    recorded = engine.read_manifest(feats).options  # what ran is part of the run's manifest
    assert (recorded["engine"], recorded["precision"]) == ("openvino", HERE)


def test_bench_reports_fidelity(random_digits, capsys):
    argv = ["bench", "--model", str(random_digits.model_path), "--input-shape", "75,75,1", "--precision", "bf16"]
    argv += ["--batch", "2", "--seconds", "0.1", "--sample", str(random_digits.calibration)]
    if not NATIVE_BF16:  # this CPU: refused in the CLI's words
        assert cli.main(argv) == 2
        assert "no native bf16" in capsys.readouterr().err
        return
    assert cli.main(argv) == 0
    out = capsys.readouterr().out
    assert "openvino bf16" in out and "onnxruntime fp32" in out
    line = next(l for l in out.splitlines() if l.startswith("fidelity"))
    assert "64 images" in line and "top-1 agreement" in line and "min cosine" in line


def test_features_and_their_int8_file_prepare_images_as_the_trained_model_says(trained_digits, tmp_path, capsys):
    """`features` and `quantize --features` on train's model.keras keep its preprocessing (issue 15, item 1)."""
    trained = engine.Predictor(trained_digits.model, engine="keras").preprocessing
    assert (trained.crop_pct, trained.interpolation) == (1.0, "bilinear")  # not the defaults (0.875, bicubic)
    folder = trained_digits.calibration
    paths = [str(folder / "digit000.png"), str(folder / "digit001.png")]
    feats = tmp_path / "f.npz"
    model = str(trained_digits.model_path)
    assert cli.main(["features", *paths, "--model", model, "--engine", "onnxruntime", "-o", str(feats), "-q"]) == 0
    reader = engine.ImageReader(channels=1, size=(75, 75), preprocessing=trained)
    want = engine.feature_model(trained_digits.model).predict_on_batch(np.stack([reader.read(p) for p in paths]))
    with np.load(feats) as z:
        assert list(z["paths"]) == paths and np.abs(z["features"] - want).max() <= 1e-4

    int8 = tmp_path / "features-int8.onnx"
    argv = ["quantize", model, "--features", "--calibrate", str(folder), "--limit", "8", "-o", str(int8), "-q"]
    assert cli.main(argv) == 0, capsys.readouterr().err
    graph = engine.load_or_build(int8)
    assert graph.preprocessing == trained and graph.class_names is None and graph.output_rank == 2


@pytest.mark.parametrize(
    ("method", "blocked", "extra"),
    [("nncf", ["nncf"], "nncf"), ("onnxruntime", ["onnxruntime", "onnxruntime.quantization"], "fast")],
)
def test_quantize_without_its_quantizer_names_the_extra(method, blocked, extra, tmp_path, capsys, monkeypatch):
    """A missing optional package is one line naming the extra, before the model is built (issue 15, item 13)."""
    import sys

    from PIL import Image

    for name in blocked:
        monkeypatch.setitem(sys.modules, name, None)  # as if it were not installed
    folder = tmp_path / "calibration"
    folder.mkdir()
    Image.new("RGB", (80, 80)).save(folder / "a.png")
    out = tmp_path / "int8.onnx"
    argv = ["quantize", "none", "--input-shape", "75,75,3", "--calibrate", str(folder), "-o", str(out)]
    code = cli.main([*argv, "--method", method, "-q"])
    err = capsys.readouterr().err
    assert code == 2 and f"pip install 'anyshape[{extra}]'" in err and len(err.strip().splitlines()) == 1, err
    assert not out.exists()


def test_quantize_does_not_replace_a_file_written_meanwhile(random_digits, tmp_path, monkeypatch):
    """Without force the no-overwrite rule holds to the end, not only when the run starts (issue 15, item 9)."""
    import sys

    module = sys.modules["anyshape.engine.quantize"]  # `engine.quantize` is the function
    out = tmp_path / "int8.onnx"
    quantize_graph = module.quantize_graph

    def written_meanwhile(*args, **kwargs):  # another run writes out while this one quantizes
        out.write_bytes(b"the other run's file")
        return quantize_graph(*args, **kwargs)

    monkeypatch.setattr(module, "quantize_graph", written_meanwhile)
    with pytest.raises(FileExistsError, match="appeared while"):
        engine.quantize(random_digits.model, random_digits.calibration, out, limit=8)
    assert out.read_bytes() == b"the other run's file" and [p.name for p in tmp_path.iterdir()] == [out.name]


# --- an int8 file's float layers in bf16 on OpenVINO (engine/quantize.py, FAMILY_INT8) --


def test_bf16_float_layers_are_kept_only_within_their_bounds():
    from anyshape.engine.quantize import (
        REMAINDER_AGREEMENT_LOSS,
        REMAINDER_MEAN_COSINE_LOSS,
        bf16_remainder_holds,
    )

    # half a point of agreement, 0.002 of mean cosine (engine/quantize.py, the README): small bounds
    assert 0 < REMAINDER_AGREEMENT_LOSS <= 0.005 and 0 < REMAINDER_MEAN_COSINE_LOSS <= 0.002
    f32 = {"top1_agreement": 0.99, "mean_cosine": 0.999, "min_cosine": 0.99}
    assert bf16_remainder_holds(f32) is False  # not measured (ONNX Runtime, no native bf16, not tried)
    at_bounds = {
        "top1_agreement": 0.99 - REMAINDER_AGREEMENT_LOSS,
        "mean_cosine": 0.999 - REMAINDER_MEAN_COSINE_LOSS,
    }
    assert bf16_remainder_holds({**f32, "bf16_remainder": at_bounds})
    at_bounds["min_cosine"] = 0.5  # one image's cosine does not decide (engine/quantize.py)
    assert bf16_remainder_holds({**f32, "bf16_remainder": at_bounds})
    for key in ("top1_agreement", "mean_cosine"):  # each a little beyond its bound: refused
        assert bf16_remainder_holds({**f32, "bf16_remainder": {**at_bounds, key: at_bounds[key] - 1e-4}}) is False, key
    features = {**f32, "top1_agreement": None}  # no classifier: the cosines decide
    assert bf16_remainder_holds({**features, "bf16_remainder": {**at_bounds, "top1_agreement": None}})


@pytest.fixture(scope="module")
def remainder_files(random_digits, tmp_path_factory):
    """The random model quantized with its float layers tried in bf16 on OpenVINO: as measured
    ("kept"), and with a bound no measurement can meet ("refused"). InceptionV3 is not among the
    families bf16 is tried for (it was measured no faster without AMX), so it is added here (with
    AMX every network is): the mechanics are the same for every network. (The model file records no network: its graph is told it is an
    InceptionV3.) "refused" is quantized from the same int8 graph and measurements as "kept" (the
    same calls give the same results: made once, 3 OpenVINO compiles and a calibration fewer); what
    differs is the bound quantize applies."""
    import dataclasses
    import sys

    module = sys.modules["anyshape.engine.quantize"]
    folder = tmp_path_factory.mktemp("remainder")
    graph = dataclasses.replace(engine.GraphModel.from_keras(random_digits.model), architecture="inception_v3")
    files = {}
    made: dict = {}

    def once(function):
        def call(*args, **kwargs):
            key = (function.__name__, kwargs.get("bf16_remainder"))
            if key not in made:
                made[key] = function(*args, **kwargs)
            return made[key]

        return call

    with pytest.MonkeyPatch.context() as mp:
        mp.setitem(module.FAMILY_INT8, "inception_v3", module.FamilyInt8(bf16_remainder=True))
        mp.setattr(module, "quantize_graph", once(module.quantize_graph))
        mp.setattr(module, "measure_fidelity", once(module.measure_fidelity))
        for name, mean_loss in (("kept", module.REMAINDER_MEAN_COSINE_LOSS), ("refused", -1.0)):
            mp.setattr(module, "REMAINDER_MEAN_COSINE_LOSS", mean_loss)
            out = folder / f"{name}.onnx"
            report = engine.quantize(graph, random_digits.calibration, out, limit=2, engine="openvino")
            files[name] = (engine.GraphModel.load(out), report.line())
        out = folder / "fp32.onnx"  # asked for f32 float layers: bf16 not even measured
        engine.quantize(graph, random_digits.calibration, out, limit=2, engine="openvino", float_remainder="fp32")
        files["fp32"] = (engine.GraphModel.load(out), "")
    return files


def test_quantize_keeps_bf16_float_layers_where_they_hold(remainder_files, random_digits):
    from anyshape.engine.quantize import bf16_remainder_holds

    kept, line = remainder_files["kept"]
    refused, refused_line = remainder_files["refused"]
    assert "bf16_remainder" not in remainder_files["fp32"][0].fidelity
    assert remainder_files["fp32"][0].float_remainder == "fp32"
    if not NATIVE_BF16:  # this CPU computes no bf16: never measured, never used
        assert "bf16_remainder" not in kept.fidelity and kept.float_remainder == "fp32"
        return
    # measured, recorded in the file, printed, and decided by the bounds
    assert set(kept.fidelity["bf16_remainder"]) == {"top1_agreement", "mean_cosine", "min_cosine"}
    assert kept.float_remainder == ("bf16" if bf16_remainder_holds(kept.fidelity) else "fp32")
    assert kept.float_remainder == "bf16", kept.fidelity  # the random model's figures hold (measured)
    assert "its float layers in bf16 (kept): top-1 agreement" in line, line
    assert refused.float_remainder == "fp32" and refused.fidelity["bf16_remainder"], refused.fidelity
    assert "its float layers in bf16 (not kept" in refused_line, refused_line
    # the file runs them in bf16 on OpenVINO: results differ from the f32 float layers' (really bf16)
    x = np.random.default_rng(3).uniform(-1, 1, (4, 75, 75, 1)).astype(np.float32)
    bf16 = engine.Predictor(kept)
    f32 = engine.Predictor(refused)
    assert (bf16.engine, bf16.precision, bf16.float_remainder) == ("openvino", "int8", "bf16")
    assert bf16.precision_text == "int8, float layers bf16" and "float layers in bf16" in bf16.choice_reason
    assert bf16.metadata() == {"engine": "openvino", "precision": "int8", "float_remainder": "bf16"}
    assert (f32.float_remainder, f32.precision_text) == ("fp32", "int8")
    assert np.abs(bf16(x) - f32(x)).max() > 0
    # not on ONNX Runtime (no bf16 there), nor on a CPU without native bf16
    assert engine.Predictor(kept, engine="onnxruntime").float_remainder == "fp32"
    assert engine.Predictor(kept, engine="openvino", cpu_flags=ZEN3).float_remainder == "fp32"
    q = pickle.loads(pickle.dumps(bf16))  # a Ray actor's copy runs it the same way
    assert q.float_remainder == "bf16"
    np.testing.assert_array_equal(q(x), bf16(x))


def test_float_remainder_is_checked_and_stored(random_digits, remainder_files, tmp_path, capsys):
    with pytest.raises(ValueError, match="float_remainder='bf17' is not one of auto, fp32") as e:
        engine.quantize(random_digits.model, random_digits.calibration, tmp_path / "q.onnx", float_remainder="bf17")
    assert e.value.parameter == "float_remainder"
    argv = ["quantize", str(random_digits.model_path), "--calibrate", str(random_digits.calibration)]
    with pytest.raises(SystemExit) as exit_:  # argparse's own refusal
        cli.main([*argv, "-o", str(tmp_path / "q.onnx"), "--float-remainder", "bf16"])
    assert exit_.value.code == 2
    assert "--float-remainder: invalid choice: 'bf16'" in capsys.readouterr().err
    kept = remainder_files["kept"][0]
    import dataclasses

    again = engine.GraphModel.from_bytes(dataclasses.replace(kept, float_remainder="bf16").to_bytes())
    assert again.float_remainder == "bf16"
    with pytest.raises(ValueError, match="float_remainder must be one of fp32, bf16"):
        dataclasses.replace(kept, float_remainder="fp16")
