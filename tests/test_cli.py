"""The `anyshape` command's explain and summary verbs."""

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


def test_bad_shape_argument():
    with pytest.raises(SystemExit):
        main(["explain", "--input-shape", "a,b,c"])


def test_channel_adapt_argument_is_parsed_the_same_for_train_and_convert():
    assert parse_channel_adapt("sum") == "sum"
    assert parse_channel_adapt("2,1,0") == (2, 1, 0)
    assert parse_channel_adapt("0,1,2,none") == (0, 1, 2, None)
    parser = build_parser()
    assert parser.parse_args(["train", "digits", "--channel-adapt", "2,1,0"]).channel_adapt == (2, 1, 0)
    assert parser.parse_args(["convert", "a.pth", "-o", "b.keras", "--channel-adapt", "0,none"]).channel_adapt == (0, None)
    with pytest.raises(SystemExit):
        parser.parse_args(["train", "digits", "--channel-adapt", "1,x"])


def test_preprocessing_option_where_weights_take_a_file(tmp_path, capsys):
    parser = build_parser()
    for verb in (["predict", "x.png"], ["features", "x.png", "-o", "f.npz"], ["train", "digits"],
                 ["convert", "a.pth", "-o", "b.keras"]):
        assert parser.parse_args([*verb, "--preprocessing", "torch"]).preprocessing == "torch", verb
        assert parser.parse_args(verb).preprocessing is None, verb
    with pytest.raises(SystemExit):
        parser.parse_args(["predict", "x.png", "--preprocessing", "caffe"])
    # a state dict anyshape does not recognise: the error asks for --preprocessing
    pth = tmp_path / "finetune.pth"
    pth.write_bytes(b"not read before the preprocessing is known")
    assert main(["convert", str(pth), "-o", str(tmp_path / "out.weights.h5")]) == 1
    err = capsys.readouterr().err
    assert "--preprocessing tf|torch" in err and str(pth) in err
    # with it, the file itself is read (and refused here for what it is, not for its preprocessing)
    assert main(["convert", str(pth), "-o", str(tmp_path / "out.weights.h5"), "--preprocessing", "torch"]) == 1
    err = capsys.readouterr().err
    assert "--preprocessing" not in err and str(pth) in err
    assert not (tmp_path / "out.weights.h5").exists()
    # predict and features say the same before building anything (a usage error: exit 2)
    for verb in (["predict", str(pth)], ["features", str(pth), "-o", str(tmp_path / "f.npy")]):
        assert main([*verb, "--weights", str(pth)]) == 2, verb
        assert "--preprocessing tf|torch" in capsys.readouterr().err, verb
