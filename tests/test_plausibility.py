"""A user's mistake is caught before any layer is built, in words that say what to do (issue 28).

- item 6: sizes and counts checked by the shape engine (parameters, weight memory) and refused
  above a limit the user can raise (`max_params=`, the environment variable ANYSHAPE_MAX_PARAMS);
- item 5: a shape that looks transposed for its data format warns (Python and CLI), and is
  refused with pretrained weights unless `channel_adapt` says how to adapt the first convolution;
- item 7: options that were ignored without a word (`classes` without the top, `classes=None`),
  VGG's nearest valid shape for a free-size Flatten top, save_model's messages, the repr of an
  ONNX model, `Predictor(None)`.

Everything here is refused before a layer is built, except two shallow ResNets (one block per
stage) and a quarter-width MobileNet built once.
"""

import contextlib
import io
import re
import warnings

import keras
import numpy as np
import pytest

from anyshape import cli, create_model, engine, explain
from anyshape.archs.base import ConfigValueError
from anyshape.model_info import save_model
from anyshape.shapes import MAX_PARAMS_ENV, ImplausibleModel, TransposedShapeWarning

SHALLOW = {"resnet50": {"depths": (1, 1, 1, 1)}, "resnet50_v2": {"depths": (2, 2, 2, 2)}}


def _cli(*argv):
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = cli.main([str(a) for a in argv])
    return code, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def small():
    return create_model("mobilenet", alpha=0.25, include_top=False, input_shape=(None, None, 3))


# --- item 6: plausibility --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("arch", "options", "where"),
    [
        ("mobilenet", {"alpha": 1e9}, "alpha=1000000000.0"),
        ("resnet50", {"classes": 10**7}, "predictions"),
        ("efficientnet_b0", {"width_coefficient": 1e4}, "width_coefficient"),
    ],
)
def test_absurd_sizes_are_refused_before_any_layer_with_the_limit_to_raise(arch, options, where):
    before = keras.backend.get_uid("input_layer")
    with pytest.raises(ImplausibleModel) as e:
        create_model(arch, **options)
    message = str(e.value)
    assert where in message and "max_params=" in message and MAX_PARAMS_ENV in message
    assert "\n" not in message
    assert keras.backend.get_uid("input_layer") == before + 1  # get_uid counts: no Input was created
    assert isinstance(e.value, ValueError)  # the CLI reports it as a usage error


def test_the_limit_is_the_users_parameter_or_environment(monkeypatch):
    report = explain((64, 64, 3), arch="mobilenet", alpha=0.25)  # 0.2 M parameters
    assert report.size_problem() is None
    assert "more than the limit of 1e+05" in report.size_problem(max_params=100_000)
    with pytest.raises(ImplausibleModel):
        create_model("mobilenet", alpha=0.25, include_top=False, max_params=100_000)
    monkeypatch.setenv(MAX_PARAMS_ENV, "1e5")
    assert report.size_problem() is not None
    with pytest.raises(ImplausibleModel):
        create_model("resnet50", include_top=False, **SHALLOW["resnet50"])
    assert (
        explain((224, 224, 3), arch="resnet50", include_top=True, classes=10**7).size_problem(max_params=1e11) is None
    )
    monkeypatch.setenv(MAX_PARAMS_ENV, "lots")
    with pytest.raises(ValueError, match=f"{MAX_PARAMS_ENV}='lots' is not a number"):
        report.size_problem()
    with pytest.raises(ValueError, match="max_params must be a positive number"):
        report.size_problem(max_params=float("nan"))


def test_cli_refuses_in_one_line_and_explain_says_too_large():
    code, _, err = _cli("summary", "--arch", "mobilenet", "--option", "alpha=1e9", "--input-shape", "224,224,3")
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert "3.14e+24 parameters" in err and MAX_PARAMS_ENV in err and "Traceback" not in err
    code, out, _ = _cli("explain", "--arch", "resnet50", "--include-top", "--classes", 10**7)
    assert "TOO LARGE to build" in out and "valid: output" not in out


def test_predictor_of_none_says_what_it_takes():
    with pytest.raises(TypeError, match="Predictor takes a Keras model .* got None"):
        engine.Predictor(None)


# --- item 5: transposed shapes ---------------------------------------------------------------------


@pytest.mark.parametrize("arch", list(SHALLOW))
def test_a_transposed_shape_warns_and_names_the_shape_meant(arch):
    options = {"weights": None, "include_top": False, **SHALLOW[arch]}
    with pytest.warns(TransposedShapeWarning, match=re.escape("pass input_shape=(3, 64, 64)")) as caught:
        create_model(arch, input_shape=(64, 64, 3), data_format="channels_first", **options)
    assert caught[0].filename == __file__  # attributed to the caller, not to anyshape
    with pytest.warns(TransposedShapeWarning, match=re.escape("pass input_shape=(28, 28, 1)")):
        create_model(arch, input_shape=(1, 28, 28), **options)
    with warnings.catch_warnings():
        warnings.simplefilter("error", TransposedShapeWarning)  # the usual shapes: no warning
        create_model(arch, input_shape=(3, 64, 64), data_format="channels_first", **options)
        create_model(arch, input_shape=(64, 64, 12), **options)


@pytest.mark.parametrize("arch", list(SHALLOW))
def test_a_transposed_shape_with_pretrained_weights_is_refused_before_loading(arch):
    with pytest.raises(ValueError, match="channel_adapt"):
        create_model(arch, weights="imagenet", include_top=False, input_shape=(64, 64, 3), data_format="channels_first")


def test_cli_warns_in_one_line():
    code, _, err = _cli(
        "summary", "--arch", "resnet50", "--option", "depths=(1,1,1,1)", "--input-shape", "64,64,3",
        "--data-format", "channels_first",
    )  # fmt: skip
    assert code == 0, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert lines == [next(line for line in lines if line.startswith("anyshape summary: warning: ResNet50:"))], err
    assert "pass --input-shape 3,64,64, or --data-format channels_last" in lines[0]  # the CLI's words
    code, out, _ = _cli("explain", "--arch", "resnet50_v2", "--input-shape", "1,28,28")  # no backend
    assert code == 0 and "warning: input_shape=(1, 28, 28) with data_format='channels_last'" in out, out


# --- item 7: options ignored without a word, messages ------------------------------------------------


@pytest.mark.parametrize("arch", ["mobilenet", "resnet50"])
def test_classes_without_the_top_or_none_is_refused(arch):
    with pytest.raises(ValueError, match=r"classes=10 .* built only with include_top=True"):
        create_model(arch, include_top=False, classes=10)
    with pytest.raises(ConfigValueError, match="got None: give it, or leave classes out"):
        create_model(arch, classes=None)


def test_cli_classes_without_include_top_is_a_usage_error():
    code, _, err = _cli("summary", "--arch", "mobilenet", "--option", "alpha=0.25", "--classes", 10)
    assert (
        code == 2
        and "--classes 10 sizes the classifier, which is built only with --include-top: add --include-top" in err
    ), err


@pytest.mark.parametrize("arch", ["vgg16", "vgg19"])
def test_vgg_flatten_top_at_free_size_gets_a_fixed_nearest_shape(arch):
    report = explain((None, 300, 3), arch=arch, include_top=True, head="flatten")
    assert not report.valid
    reason = report.reason()
    assert "Nearest valid shape: (224, 300, 3)." in reason and "otherwise free" not in reason
    assert explain((224, 300, 3), arch=arch, include_top=True, head="flatten").valid


def test_save_model_names_the_users_file(small, tmp_path):
    with pytest.raises(ValueError, match=r"ends in \.keras; got .*model\.h5.*: name it model\.keras"):
        save_model(small, tmp_path / "model.h5")
    with pytest.raises(FileNotFoundError, match=r"the folder .*missing does not exist") as e:
        save_model(small, tmp_path / "missing" / "m.keras")
    assert ".tmp" not in str(e.value)
    with pytest.raises(ValueError, match="is a folder"):
        save_model(small, tmp_path)
    (tmp_path / "kept.keras").write_bytes(b"mine")
    with pytest.raises(FileExistsError, match="exists and overwrite=False") as e:
        save_model(small, tmp_path / "kept.keras", overwrite=False)
    assert "appeared" not in str(e.value)
    assert (tmp_path / "kept.keras").read_bytes() == b"mine"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["kept.keras"]  # no temporary file left


def test_save_model_failing_midway_names_the_users_file_and_leaves_nothing(small, tmp_path, monkeypatch):
    import errno

    def full_disk(self, filepath, *args, **kwargs):  # what a full disk makes Keras' save raise
        raise OSError(errno.ENOSPC, "No space left on device", str(filepath))

    monkeypatch.setattr(type(small), "save", full_disk)
    with pytest.raises(OSError, match=r"cannot save .*m\.keras: No space left on device; nothing was written") as e:
        save_model(small, tmp_path / "m.keras")
    assert e.value.errno == errno.ENOSPC and ".tmp" not in str(e.value) and e.value.filename is None
    assert list(tmp_path.iterdir()) == []


def test_repr_of_an_onnx_model_is_short(small):
    graph = engine.GraphModel.from_keras(small)
    text = repr(graph)
    assert len(text) < 400 and f"graph={len(graph.graph):,} bytes" in text and "mobilenet" in text
    assert np.isfinite(engine.Predictor(graph)(np.zeros((1, 40, 40, 3), np.float32))[0]).all()
