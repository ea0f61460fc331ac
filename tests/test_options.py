"""A network's build arguments are read as their Config's types, the same in Python and on the CLI.

Booleans are booleans (`--option stride_in_3x3=false` builds the Keras network, "yes" in Python is
refused), numbers are finite, choices are listed, a key is given once; arguments that are wrong
whatever the shape (classes=0, head="banana") are a ValueError, not InvalidInputShape; the
input_shape and list_models arguments take what a user passes (numpy integers, a family in any
case). Every check here is pure Python (the Config and the shape engine) except the few that
show `create_model` refuses before any layer is built.
"""

import math
import re

import numpy as np
import pytest

import anyshape
from anyshape.archs import get_arch, list_models
from anyshape.archs.base import ConfigValueError
from anyshape.cli import main
from anyshape.cli.options import typed_options
from anyshape.shapes import InvalidInputShape


def _no_build(monkeypatch):
    """Make building any Keras layer fail the test: the checks must come first."""
    from anyshape.archs import keras_ops

    monkeypatch.setattr(keras_ops, "build", lambda *a, **k: pytest.fail("a model was built"))


# --- Python: the Config's field types -------------------------------------------------------------


@pytest.mark.parametrize(
    ("arch", "kwargs", "needle"),
    [
        ("resnet50", {"stride_in_3x3": "yes"}, "stride_in_3x3 must be True or False, got 'yes'"),
        ("resnet50", {"conv_bias": "false"}, "conv_bias must be True or False, got 'false'"),
        ("resnet50", {"conv_bias": 0}, "conv_bias must be True or False, got 0"),
        ("inception_v3", {"aux_logits": "True"}, "aux_logits must be True or False"),
        ("mobilenet", {"alpha": float("nan")}, "alpha must be a finite number, got nan"),
        ("mobilenet_v2", {"alpha": math.inf}, "alpha must be a finite number, got inf"),
        ("mobilenet", {"alpha": "0.5"}, "alpha must be a finite number, got '0.5'"),
        ("densenet121", {"bn_epsilon": float("nan")}, "bn_epsilon must be a finite number"),
        ("densenet121", {"growth_rate": 2.5}, "growth_rate must be a whole number, got 2.5"),
        ("resnet50", {"depths": (3, "4", 6, 3)}, "depths must be a tuple of whole numbers"),
        ("convnext_tiny", {"include_preprocessing": None}, "include_preprocessing must be True or False"),
    ],
)
def test_a_value_of_the_wrong_type_is_refused_naming_the_parameter(arch, kwargs, needle):
    with pytest.raises(ConfigValueError, match=re.escape(needle)) as e:
        get_arch(arch).config(**kwargs)
    assert isinstance(e.value, TypeError) and isinstance(e.value, ValueError)
    assert e.value.parameter == next(iter(kwargs))


def test_numbers_of_any_kind_become_the_configs_own():
    """numpy scalars become Python's (a Config is saved as JSON), a list a tuple (Configs are hashed)."""
    cfg = get_arch("resnet50").config(depths=[np.int64(2), 2, 2, 2], bn_epsilon=np.float32(1e-5), conv_bias=False)
    assert cfg.depths == (2, 2, 2, 2) and all(type(d) is int for d in cfg.depths)
    assert type(cfg.bn_epsilon) is float and cfg.conv_bias is False and hash(cfg)
    assert get_arch("mobilenet").config(alpha=1).alpha == 1  # an int is a number


@pytest.mark.parametrize(
    ("arch", "kwargs", "needle"),
    [
        ("resnet50", {"include_top": True, "classes": 0}, "classes must be a positive integer"),
        ("vgg16", {"head": "banana"}, "head must be one of ('auto', 'flatten', 'conv'), got 'banana'"),
        ("mobilenet_v2", {"padding": "same"}, "padding must be one of ('tf', 'symmetric')"),
        ("mobilenet_v3_small", {"model_type": "tiny"}, "model_type must be one of ('small', 'large')"),
        ("mobilenet", {"alpha": -1.0}, "alpha must be a positive number"),
        ("densenet121", {"bn_epsilon": 0.0}, "bn_epsilon must be a positive number"),
    ],
)
def test_wrong_arguments_that_are_not_shapes_are_no_invalid_input_shape(arch, kwargs, needle, monkeypatch):
    """create_model (and the keras.applications constructors) refuse them with a plain
    ValueError before any layer is built; explain still reports them in its table."""
    with pytest.raises(ValueError, match=re.escape(needle)) as e:
        get_arch(arch).checked_config(**kwargs)
    assert not isinstance(e.value, InvalidInputShape)
    _no_build(monkeypatch)
    with pytest.raises(ValueError, match=re.escape(needle)) as e:
        anyshape.create_model(arch, weights=None, input_shape=(64, 64, 3), **kwargs)
    assert not isinstance(e.value, InvalidInputShape)
    report = anyshape.explain((64, 64, 3), arch=arch, **kwargs)
    assert not report.valid and needle in report.reason()


def test_keras_constructors_refuse_a_string_for_a_boolean(monkeypatch):
    _no_build(monkeypatch)
    with pytest.raises(TypeError, match="stride_in_3x3 must be True or False, got 'yes'"):
        anyshape.ResNet50(weights=None, stride_in_3x3="yes")
    with pytest.raises(ValueError, match="alpha must be a finite number, got nan"):
        anyshape.MobileNet(weights=None, alpha=float("nan"))


# --- the CLI: --option typed by --arch's Config ---------------------------------------------------


@pytest.mark.parametrize(
    ("text", "value"),
    [("false", False), ("False", False), ("NO", False), ("0", False), ("true", True), ("Yes", True), ("1", True)],
)
def test_option_booleans(text, value):
    for arch, key in (
        ("resnet50", "stride_in_3x3"),
        ("resnet101", "conv_bias"),
        ("mobilenet_v3_small", "minimalistic"),
    ):
        # the values as --option's parser gives them (a Python literal where the text is one)
        parsed = build_option(f"{key}={text}")
        assert typed_options(arch, [parsed]) == {key: value}, (arch, text)


def build_option(text):
    from anyshape.cli.options import _option

    return _option(text)


@pytest.mark.parametrize(
    ("arch", "option", "needle"),
    [
        ("resnet50", "stride_in_3x3=banana", "stride_in_3x3 is true or false (also yes/no, 1/0), got 'banana'"),
        ("resnet50", "conv_bias=2", "conv_bias is true or false"),
        ("mobilenet", "alpha=nan", "alpha must be a finite number, got 'nan'"),
        ("mobilenet", "alpha=half", "alpha must be a finite number, got 'half'"),
        ("densenet121", "bn_epsilon=inf", "bn_epsilon must be a finite number"),
        ("densenet121", "growth_rate=2.5", "growth_rate must be a whole number, got '2.5'"),
        ("mobilenet", "depth_multiplier=True", "depth_multiplier must be a whole number"),
    ],
)
def test_option_values_of_the_wrong_type_are_refused(arch, option, needle):
    with pytest.raises(ValueError, match=re.escape(f"--option {option}: {needle}")):
        typed_options(arch, [build_option(option)])


def test_option_numbers_and_choices_keep_their_type():
    assert typed_options("mobilenet", [build_option("alpha=1"), build_option("depth_multiplier=2")]) == {
        "alpha": 1.0,
        "depth_multiplier": 2,
    }
    assert typed_options("vgg16", [build_option("head=conv")]) == {"head": "conv"}
    assert typed_options("resnet50", [build_option("depths=(2, 2, 2, 2)")]) == {"depths": (2, 2, 2, 2)}


def _explain(capsys, *argv):
    code = main(["explain", "--input-shape", "64,64,3", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_booleans_build_what_they_say(capsys):
    """`--option stride_in_3x3=false` (and no, 0) is the Keras network, yes/true/1 torchvision's;
    explain's header names the options that differ from the defaults."""
    for text in ("false", "no", "0", "False"):
        code, out, _ = _explain(capsys, "--arch", "resnet50", "--option", f"stride_in_3x3={text}")
        assert code == 0 and "stride_in_3x3" not in out.splitlines()[0], text
    for text in ("yes", "true", "1", "TRUE"):
        code, out, _ = _explain(capsys, "--arch", "resnet50", "--option", f"stride_in_3x3={text}")
        assert code == 0 and "stride_in_3x3=True" in out.splitlines()[0], text
    code, out, _ = _explain(capsys, "--arch", "resnet152", "--option", "conv_bias=false")
    assert code == 0 and "conv_bias=False" in out.splitlines()[0]
    code, out, _ = _explain(capsys, "--arch", "mobilenet_v3_small", "--option", "minimalistic=yes")
    assert code == 0 and "minimalistic=True" in out.splitlines()[0]


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (
            ["--arch", "resnet50", "--option", "stride_in_3x3=banana"],
            "--option stride_in_3x3=banana: stride_in_3x3 is true or false",
        ),
        (["--arch", "mobilenet", "--option", "alpha=nan"], "--option alpha=nan: alpha must be a finite number"),
        (
            ["--arch", "densenet121", "--option", "bn_epsilon=abc"],
            "--option bn_epsilon=abc: bn_epsilon must be a finite number",
        ),
        (["--arch", "mobilenet", "--option", "alpha=0.5", "--option", "alpha=0.25"], "--option alpha is given twice"),
        (["--arch", "vgg16", "--option", "head=conv", "--option", "head=conv"], "--option head is given twice"),
    ],
)
def test_cli_refuses_bad_option_values_in_one_line(capsys, argv, needle):
    code, _, err = _explain(capsys, *argv)
    assert code == 2 and needle in err and "Traceback" not in err and len(err.strip().splitlines()) == 1, err


def test_cli_bad_option_values_are_refused_before_a_model_is_built(capsys, monkeypatch):
    _no_build(monkeypatch)
    for argv in (
        ["summary", "--arch", "resnet50", "--option", "conv_bias=maybe"],
        ["summary", "--arch", "mobilenet", "--option", "alpha=inf"],
        ["summary", "--arch", "vgg16", "--option", "head=banana"],
    ):
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert "Traceback" not in err and ("conv_bias" in err or "alpha" in err or "head must be one of" in err), err


# --- input_shape and list_models -------------------------------------------------------------------


@pytest.mark.parametrize("arch", ["resnet50", "mobilenet"])
def test_an_int_input_shape_is_a_clear_value_error(arch, monkeypatch):
    _no_build(monkeypatch)
    for call in (
        lambda: anyshape.create_model(arch, weights=None, input_shape=64),
        lambda: anyshape.explain(64, arch=arch),
    ):
        with pytest.raises(ValueError, match=r"input_shape must be a tuple such as \(224, 224, 3\).*got 64"):
            call()


@pytest.mark.parametrize("arch", ["resnet50", "densenet121"])
def test_numpy_integers_in_input_shape_are_taken(arch):
    shape = (np.int64(64), np.int32(64), np.int64(3))
    report = anyshape.explain(shape, arch=arch)
    assert report.valid and report.input_shape == (64, 64, 3) and type(report.input_shape[0]) is int
    assert get_arch(arch).config(input_shape=shape).input_shape == (64, 64, 3)


def test_numpy_integers_in_input_shape_build_a_model():
    model = anyshape.create_model(
        "mobilenet", weights=None, alpha=0.25, include_top=False, input_shape=np.array([32, 32, 3])
    )
    assert model.input_shape == (None, 32, 32, 3)


def test_list_models_takes_a_family_in_any_case():
    assert list_models("ResNet") == list_models("resnet") == ["resnet101", "resnet152", "resnet50"]
    assert list_models("ResNetV2") == list_models("resnet_v2") == ["resnet101_v2", "resnet152_v2", "resnet50_v2"]
    assert list_models("DENSENET") == ["densenet121", "densenet169", "densenet201"]
    assert anyshape.list_models("MobileNet") == ["mobilenet"]
    with pytest.raises(ValueError, match="no family 'resnt'; the families are: convnext, densenet"):
        list_models("resnt")


@pytest.mark.parametrize(
    ("options", "needle"),
    [
        (["stride_in_3x3=banana"], "--option stride_in_3x3=banana: stride_in_3x3 is true or false"),
        (["conv_bias=no", "conv_bias=yes"], "--option conv_bias is given twice"),
    ],
)
def test_train_reads_option_values_the_same_way(options, needle, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr("anyshape.datasets.load_dataset", lambda *a, **k: pytest.fail("the data was read"))
    argv = ["train", "digits", "-o", str(tmp_path / "run"), "-q", "--arch", "resnet50"]
    for option in options:
        argv += ["--option", option]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert needle in err and "Traceback" not in err, err
    assert not (tmp_path / "run").exists()
