"""The `anyshape` command: explain and summary, and the rules every verb shares (exit codes, messages, help)."""

import os
import subprocess
import sys

import pytest

from anyshape.cli import build_parser, main, parse_channel_adapt, parse_shape


def test_parse_shape():
    assert parse_shape("150,150,3") == (150, 150, 3)
    assert parse_shape("none,none,1") == (None, None, 1)
    assert parse_shape("3x299x299") == (3, 299, 299)


def test_explain_valid(capsys):
    assert main(["explain", "--input-shape", "150,150,3"]) == 0
    out = capsys.readouterr().out
    assert "mixed10" in out and "3x3x2048" in out and "valid: output (3, 3, 2048)" in out


def test_explain_with_top_and_aux(capsys):
    assert main(["explain", "--input-shape", "299,299,3", "--include-top", "--aux-logits"]) == 0
    out = capsys.readouterr().out
    assert "aux_predictions" in out and "valid: output (1000), (1000)" in out


def test_explain_invalid_exits_1_with_reason(capsys):
    assert main(["explain", "--input-shape", "3,150,150"]) == 1
    out = capsys.readouterr().out
    assert "INVALID" in out and "looks like channels_first" in out
    assert main(["explain", "--input-shape", "3,150,150", "--data-format", "channels_first"]) == 0


def test_explain_malformed_exits_2(capsys):
    assert main(["explain", "--input-shape", "150,150"]) == 2
    assert "3 entries" in capsys.readouterr().err


def test_explain_does_not_import_keras():
    code = "import sys; from anyshape.cli import main; main(['explain', '--input-shape', '75,75,1']); assert 'keras' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)


def test_summary(capsys):
    assert main(["summary", "--input-shape", "80,90,2", "--include-top", "--classes", "4"]) == 0
    out = capsys.readouterr().out
    assert "predictions" in out and "mixed10" in out


def test_summary_invalid(capsys):
    assert main(["summary", "--input-shape", "70,90,2"]) == 1
    assert "mixed8 collapses" in capsys.readouterr().err


def test_explain_and_summary_take_any_registered_network(capsys):
    assert main(["explain", "--arch", "xception", "--input-shape", "48,48,1"]) == 0  # Keras asks 71
    out = capsys.readouterr().out
    assert out.startswith("Xception at input (48, 48, 1)") and "valid: output (2, 2, 2048)" in out
    assert main(["explain", "--arch", "nasnet_mobile", "--input-shape", "2,3,3"]) == 1
    assert "stem_conv1" in capsys.readouterr().out
    assert main(["explain", "--arch", "vgg16", "--input-shape", "64,64,3", "--option", "head=conv"]) == 0
    assert "include_top=False, pooling=None, head=conv" in capsys.readouterr().out.splitlines()[0]
    assert main(["explain", "--arch", "mobilenet", "--option", "alpha=0.5", "--input-shape", "64,64,3"]) == 0
    assert "alpha=0.5" in capsys.readouterr().out.splitlines()[0]
    assert main(["explain", "--arch", "mobilenet", "--option", "foo=1"]) == 2
    assert "--option foo: --arch mobilenet has no option foo; its options are alpha" in capsys.readouterr().err
    assert main(["explain", "--arch", "resnet50", "--aux-logits"]) == 2
    assert "--aux-logits is an option of inception_v3, not of --arch resnet50" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["explain", "--option", "alpha"])
    assert "expected KEY=VALUE" in capsys.readouterr().err
    assert main(["summary", "--arch", "mobilenet_v3_small", "--input-shape", "33,47,4", "--include-top"]) == 0
    out = capsys.readouterr().out
    assert "predictions" in out and "expanded_conv_10_project" in out


def test_bad_shape_argument():
    with pytest.raises(SystemExit):
        main(["explain", "--input-shape", "a,b,c"])


def test_channel_adapt_argument_is_parsed_the_same_for_train_and_convert():
    assert parse_channel_adapt("sum") == "sum"
    assert parse_channel_adapt("2,1,0") == (2, 1, 0)
    assert parse_channel_adapt("0,1,2,none") == (0, 1, 2, None)
    parser = build_parser()
    assert parser.parse_args(["train", "digits", "--channel-adapt", "2,1,0"]).channel_adapt == (2, 1, 0)
    assert parser.parse_args(["convert", "a.pth", "-o", "b.keras", "--channel-adapt", "0,none"]).channel_adapt == (
        0,
        None,
    )
    with pytest.raises(SystemExit):
        parser.parse_args(["train", "digits", "--channel-adapt", "1,x"])


# --- one set of rules for every verb (exit codes, messages, help, --version, quiet start-up) ---


def _no_model_may_be_built(monkeypatch):
    """Make building or loading a model fail loudly: argument errors must come before it."""
    from anyshape import engine

    def refuse(*a, **k):
        raise AssertionError("the model was built before the arguments were checked")

    monkeypatch.setattr(engine, "load_or_build", refuse)
    monkeypatch.setattr("anyshape.engine.export.load_or_build", refuse)


def test_argument_errors_are_reported_before_the_model_is_built(tmp_path, monkeypatch, capsys):
    _no_model_may_be_built(monkeypatch)
    img = tmp_path / "a.png"
    img.write_bytes(b"")
    assert main(["features", str(img), "--out", str(tmp_path / "feats.csv")]) == 2
    assert ".npy, .npz, .parquet" in capsys.readouterr().err
    assert main(["predict", str(img), "--size", "50"]) == 1  # shape invalid: explain's reason
    err = capsys.readouterr().err
    assert "at least 75" in err and "--size 50,50" in err
    (tmp_path / "out.npz").write_bytes(b"x")
    assert main(["features", str(img), "--out", str(tmp_path / "out.npz")]) == 2
    assert "--force" in capsys.readouterr().err
    (tmp_path / "folder").mkdir()
    assert main(["export", "-o", str(tmp_path / "folder"), "--format", "onnx"]) == 2
    assert "suffix" in capsys.readouterr().err
    (tmp_path / "dir.onnx").mkdir()
    assert main(["export", "-o", str(tmp_path / "dir.onnx"), "--force"]) == 2
    assert "is a folder" in capsys.readouterr().err
    assert main(["export", "-o", str(tmp_path / "m.keras"), "--format", "onnx"]) == 2  # suffix and content agree
    assert "suffix" in capsys.readouterr().err
    # a layer the network has not: refused before any model is built, with the network's own layers
    assert main(["features", str(img), "--out", "f.npz", "--layer", "bogus"]) == 2
    err = capsys.readouterr().err
    assert "'bogus' is not a feature layer of inception_v3" in err and "mixed0, mixed1" in err and "mixed10" in err
    assert main(["features", str(img), "--out", "f.npz", "--arch", "resnet50", "--layer", "mixed7"]) == 2
    assert "conv4_block6_out" in capsys.readouterr().err
    for argv in (
        ["predict", str(img), "--top", "0"],
        ["bench", "--batch", "x"],
        ["predict", str(img), "--batch-size", "0"],
    ):
        with pytest.raises(SystemExit) as e:
            main(argv)
        assert e.value.code == 2, argv
        assert "Traceback" not in capsys.readouterr().err


def test_options_that_would_be_ignored_are_refused(tmp_path, monkeypatch, capsys):
    _no_model_may_be_built(monkeypatch)
    model = tmp_path / "m.keras"
    model.write_bytes(b"")
    assert (
        main(["predict", str(tmp_path), "--model", str(model), "--weights", "imagenet", "--input-shape", "80,80,3"])
        == 2
    )
    err = capsys.readouterr().err
    assert "--weights" in err and "--input-shape" in err and "complete model" in err
    # an .onnx model is a graph as exported: --pooling and --layer would not be used (with a .keras
    # model they choose the feature layer and its pooling: see test_cli_inference.py)
    graph = tmp_path / "m.onnx"
    graph.write_bytes(b"")
    for flags in (["--pooling", "max"], ["--layer", "avg_pool"]):
        argv = ["features", str(tmp_path), "--model", str(graph), *flags, "--out", str(tmp_path / "f.npz")]
        assert main(argv) == 2
        assert flags[0] in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:  # predict always runs the classifier: no silent no-op flag
        main(["predict", str(tmp_path), "--include-top"])
    assert e.value.code == 2


def test_one_exit_code_rule_for_every_verb(capsys):
    # shape invalid: 1 (explain, summary and bench alike); malformed option: 2
    assert main(["explain", "--input-shape", "70,90,3"]) == 1
    assert main(["summary", "--input-shape", "70,90,3"]) == 1
    assert main(["bench", "--input-shape", "70,90,3"]) == 1
    assert main(["explain", "--input-shape", "150,150"]) == 2
    assert main(["summary", "--input-shape", "150,150"]) == 2
    assert "Traceback" not in capsys.readouterr().err


def test_dropout_rate_of_1_is_a_usage_error_in_every_verb(capsys):
    """A dropout rate must be >= 0 and < 1: outside that it is a bad option (exit 2), not an invalid shape."""
    for argv in (
        ["explain", "--input-shape", "75,75,3", "--include-top"],
        ["summary", "--input-shape", "75,75,3", "--include-top"],
        ["export", "-o", "m.onnx", "--include-top"],
        ["bench", "--include-top"],
        ["train", "digits"],
    ):
        for value in ("1", "-0.5", "nan", "x"):
            with pytest.raises(SystemExit) as e:
                main([*argv, "--dropout-rate", value])
            err = capsys.readouterr().err
            assert e.value.code == 2 and "argument --dropout-rate: expected a number >= 0 and < 1" in err, (argv, err)
    assert build_parser().parse_args(["summary", "--dropout-rate", "0.5"]).dropout_rate == 0.5


def test_pooling_means_the_same_in_every_verb(capsys):
    parser = build_parser()
    for argv in (["explain"], ["summary"], ["export", "-o", "m.onnx"], ["bench"]):
        assert parser.parse_args(argv + ["--pooling", "none"]).pooling is None
    assert parser.parse_args(["features", "x", "--out", "f.npz", "--pooling", "none"]).pooling is None
    assert main(["explain", "--input-shape", "75,75,3", "--pooling", "none"]) == 0
    assert "(1, 1, 2048)" in capsys.readouterr().out


def test_every_flag_has_help_with_its_default_and_there_is_a_version(capsys):
    import argparse

    parser = build_parser()
    for name, sub in parser._subparsers._group_actions[0].choices.items():
        formatter = sub.formatter_class(name)
        for action in sub._actions:
            if isinstance(action, argparse._HelpAction):
                continue
            text = formatter._get_help_string(action)
            assert text, f"{name} {action.dest} has no help"
            if action.option_strings and action.default not in (None, False, argparse.SUPPRESS):
                assert "default" in text, f"{name} {action.dest}: help does not state the default"
    with pytest.raises(SystemExit) as e:
        main(["--version"])
    assert e.value.code == 0
    from anyshape import __version__

    assert capsys.readouterr().out.strip() == f"anyshape {__version__}"


def test_messages_speak_the_cli(capsys):
    """A library message names parameters; str() reads them in Python's words, the CLI renders
    them as its flags through one table (cli.options.FLAGS), without rewriting any text."""
    from anyshape.cli import cli_message
    from anyshape.errors import Message, OutputExistsError, ParameterError

    e = OutputExistsError("{path} exists; pass {force=True} to overwrite it", path="x{y}--z.onnx")
    assert str(e) == "x{y}--z.onnx exists; pass force=True to overwrite it" and e.parameter == "force"
    assert cli_message(e) == "x{y}--z.onnx exists; pass --force to overwrite it"  # the value is not rewritten
    assert isinstance(e, FileExistsError)
    e = ParameterError("pass {upscale=True} to enlarge, or {size=@n} or more", n=75)
    assert str(e) == "pass upscale=True to enlarge, or size=75 or more" and e.parameter == "upscale"
    assert cli_message(e) == "pass --upscale to enlarge, or --size 75 or more"
    e = ParameterError("{model_path=*} or {resume=True}; {learning_rate=*}", model_path="m.keras", learning_rate=0.1)
    assert str(e) == "model_path='m.keras' or resume=True; learning_rate=0.1"
    assert cli_message(e) == "--model m.keras or --resume; --lr 0.1"
    m = Message("{weights=None}{python: (Python only)}{cli: (CLI only)}")
    assert (str(m), cli_message(m)) == ("weights=None (Python only)", "--weights none (CLI only)")
    assert cli_message(ValueError("plain text, --kept (as=is)")) == "plain text, --kept (as=is)"


def test_backend_start_up_noise_is_hidden_unless_verbose():
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    env["PYTHONPATH"] = os.pathsep.join(sys.path)
    run = subprocess.run(
        [sys.executable, "-m", "anyshape.cli", "summary", "--input-shape", "75,75,3"],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert run.returncode == 0 and "mixed10" in run.stdout
    assert run.stderr.strip() == "", run.stderr
    run = subprocess.run(
        [sys.executable, "-m", "anyshape.cli", "--verbose", "explain", "--input-shape", "75,75,3"],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert run.returncode == 0


def test_preprocessing_option_where_weights_take_a_file(tmp_path, capsys):
    parser = build_parser()
    for verb in (
        ["predict", "x.png"],
        ["features", "x.png", "-o", "f.npz"],
        ["train", "digits"],
        ["convert", "a.pth", "-o", "b.keras"],
    ):
        assert parser.parse_args([*verb, "--preprocessing", "torch"]).preprocessing == "torch", verb
        assert parser.parse_args(verb).preprocessing is None, verb
    with pytest.raises(SystemExit):
        parser.parse_args(["predict", "x.png", "--preprocessing", "caffe"])
    # a state dict anyshape does not recognise: the error asks for --preprocessing
    pth = tmp_path / "finetune.pth"
    pth.write_bytes(b"not read before the preprocessing is known")
    assert main(["convert", str(pth), "-o", str(tmp_path / "out.weights.h5")]) == 2  # a usage error, as in every verb
    err = capsys.readouterr().err
    assert "--preprocessing tf " in err and "--preprocessing torch " in err and str(pth) in err
    assert "preprocessing='tf'" not in err  # the CLI's words, not Python's
    # with it, the file itself is read (and refused here for what it is, not for its preprocessing)
    assert main(["convert", str(pth), "-o", str(tmp_path / "out.weights.h5"), "--preprocessing", "torch"]) == 2
    err = capsys.readouterr().err
    assert "--preprocessing" not in err and str(pth) in err
    assert not (tmp_path / "out.weights.h5").exists()
    # predict and features say the same before building anything (a usage error: exit 2)
    for verb in (["predict", str(pth)], ["features", str(pth), "-o", str(tmp_path / "f.npy")]):
        assert main([*verb, "--weights", str(pth)]) == 2, verb
        err = capsys.readouterr().err
        assert "--preprocessing tf " in err and "--preprocessing torch " in err, verb


def test_every_verb_takes_arch_and_option(capsys):
    """--arch (a registered name or keras.applications' name) and --option KEY=VALUE on every verb
    that builds a model; an unknown network is refused by the parser with the list."""
    parser = build_parser()
    for argv in (
        ["predict", "x"],
        ["features", "x", "--out", "f.npz"],
        ["export", "-o", "m.onnx"],
        ["bench"],
        ["quantize", "none", "--calibrate", "c", "-o", "q.onnx"],
        ["convert", "src", "-o", "dst.keras"],
        ["explain"],
        ["summary"],
    ):
        args = parser.parse_args([*argv, "--arch", "ResNet50", "--option", "stride_in_3x3=True", "--option", "a=1"])
        assert (args.arch, args.option) == ("resnet50", [("stride_in_3x3", True), ("a", 1)]), argv
        assert parser.parse_args(argv).arch == "inception_v3"
        with pytest.raises(SystemExit) as e:
            parser.parse_args([*argv, "--arch", "resnet5"])
        assert e.value.code == 2 and "no network named 'resnet5'" in capsys.readouterr().err


def _verb_raising(monkeypatch, error: BaseException) -> None:
    """`anyshape explain` whose run function raises `error` (as a bug inside anyshape would)."""
    from anyshape import cli

    add, _ = cli.VERBS["explain"]

    def run(args):
        raise error

    monkeypatch.setitem(cli.VERBS, "explain", (add, run))


@pytest.mark.parametrize(
    "error", [RuntimeError("boom"), NotImplementedError("boom"), KeyError("boom"), TypeError("boom")]
)
def test_an_internal_error_keeps_its_traceback_and_says_it_is_a_bug(monkeypatch, capsys, error):
    """An error anyshape does not raise for a user's mistake is a bug: exit 1, its traceback, and
    a line saying to report it (not a usage error without a trace)."""
    _verb_raising(monkeypatch, error)
    assert main(["explain"]) == 1
    err = capsys.readouterr().err
    assert "Traceback (most recent call last)" in err and f"{type(error).__name__}: " in err, err
    assert f"anyshape explain: internal error {type(error).__name__}" in err
    assert "This is a bug in anyshape" in err and "please report it" in err


def test_a_users_mistake_stays_one_line_with_exit_2(monkeypatch, capsys):
    """A real usage error (a malformed shape, a file, a missing optional package, a layer the ONNX
    emitter cannot translate) is one line, exit 2; an invalid shape exit 1; Ctrl-C 130."""
    assert main(["explain", "--input-shape", "150,150"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("anyshape explain: input_shape must have 3 entries") and len(err.strip().splitlines()) == 1
    from anyshape.engine.predictor import MissingExtra
    from anyshape.onnx_graph import UnsupportedLayer

    for error in (
        FileNotFoundError("no such file: x.keras"),
        ValueError("--top must be positive"),
        MissingExtra("the Ray job cannot run: ray is not installed; pip install 'anyshape[ray]'"),
        UnsupportedLayer("layer 'x' of type Foo has no ONNX translation here"),
    ):
        _verb_raising(monkeypatch, error)
        assert main(["explain"]) == 2, error
        err = capsys.readouterr().err
        assert err == f"anyshape explain: {error}\n", err
    _verb_raising(monkeypatch, KeyboardInterrupt())
    assert main(["explain"]) == 130
    assert capsys.readouterr().err.startswith("anyshape explain: interrupted;")


def test_the_cli_states_no_default_of_its_own(monkeypatch):
    """A flag left out gives the library's default, by construction: train's flags are TrainConfig's
    (parsed with no flags they give TrainConfig() itself, and a changed TrainConfig default is the
    CLI's at once), predict's --top and --batch-size predict_paths', features' --layer
    feature_model's, quantize's --limit quantize's, --cpus-per-actor the Ray runs', --classes and
    --dropout-rate every network's Config's, and --data-format is left to the library
    (keras.config.image_data_format(), as create_model reads it)."""
    import dataclasses
    import inspect

    from anyshape import distributed, engine
    from anyshape.archs.base import ArchConfig
    from anyshape.cli.train import train_options
    from anyshape.training import TrainConfig

    def default(function, name):
        return inspect.signature(function).parameters[name].default

    options = train_options(build_parser().parse_args(["train", "digits"]))
    assert options.pop("resume") is False
    assert TrainConfig(data="digits", **options) == TrainConfig(data="digits")
    monkeypatch.setattr(TrainConfig.__dataclass_fields__["epochs"], "default", 7)
    monkeypatch.setattr(TrainConfig.__dataclass_fields__["optimizer"], "default", "sgd")
    changed = build_parser().parse_args(["train", "digits"])
    assert (changed.epochs, changed.optimizer) == (7, "sgd")
    monkeypatch.undo()

    config = {f.name: f.default for f in dataclasses.fields(ArchConfig)}
    parser = build_parser()
    predict = parser.parse_args(["predict", "x.jpg"])
    assert (predict.top, predict.batch_size) == (
        default(engine.predict_paths, "top"),
        default(engine.predict_paths, "batch_size"),
    )
    assert (predict.classes, predict.dropout_rate, predict.data_format) == (
        config["classes"],
        config["dropout_rate"],
        None,
    )
    assert predict.cpus_per_actor == distributed.RayJob().cpus_per_actor
    features = parser.parse_args(["features", "x.jpg", "-o", "f.npy"])
    assert (features.layer, features.batch_size, features.data_format) == (
        default(engine.feature_model, "layer"),
        default(engine.extract_features, "batch_size"),
        None,
    )
    quantize = parser.parse_args(["quantize", "m.keras", "--calibrate", "d", "-o", "q.onnx"])
    assert quantize.limit == default(engine.quantize, "limit")
    assert parser.parse_args(["explain"]).data_format is None
