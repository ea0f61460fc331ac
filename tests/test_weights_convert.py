"""`anyshape convert` and anyshape.weights.convert: torch state dict -> Keras file, with parity."""

import os
import subprocess
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("torchvision")

from reference.torch_inception import predict, run, top5, torchvision_inception  # noqa: E402

import anyshape  # noqa: E402
from anyshape.cli import main  # noqa: E402
from anyshape.weights.convert import convert  # noqa: E402


@pytest.fixture(scope="module")
def tv(tmp_path_factory):
    d = tmp_path_factory.mktemp("convert")
    model = torchvision_inception(aux_logits=True, seed=7)
    pth = d / "tv_inception.pth"
    torch.save(model.state_dict(), pth)
    return model, str(pth), d


def test_cli_convert_prints_parity_and_refuses_to_overwrite(tv, capsys):
    model, pth, d = tv
    dst = d / "converted.weights.h5"
    assert main(["convert", pth, "-o", str(dst), "--source", "torchvision", "--preprocessing", "tf"]) == 0
    out = capsys.readouterr().out
    assert (
        "max abs logit difference" in out
        and "top-5 agreement: 100%" in out
        and "result: match (within float32 rounding)" in out
    )
    assert "aux head max abs logit difference" in out
    diff = float(out.split("max abs logit difference: ")[1].split()[0])
    assert diff <= 1e-4
    stamp = dst.stat().st_mtime_ns
    assert main(["convert", pth, "-o", str(dst)]) == 2  # exists: a usage error, as in every verb
    assert "already exists" in capsys.readouterr().err and "--force" not in out
    assert dst.stat().st_mtime_ns == stamp
    assert not [p for p in d.iterdir() if ".tmp" in p.name]

    # the converted file carries its metadata: the model is built with torch semantics
    ours = anyshape.InceptionV3(weights=str(dst), input_shape=(150, 200, 3), classifier_activation=None)
    ws = ours.anyshape_weights
    assert ws.bn_scale and ws.count_include_pad and ws.mode == "tf" and ws.format == "keras"
    x = np.random.default_rng(0).uniform(-1, 1, (1, 150, 200, 3)).astype(np.float32)
    ref = run(model, x)
    got = predict(ours, x)
    assert np.abs(got - ref).max() <= 1e-4 and np.array_equal(top5(got), top5(ref))


def test_convert_to_keras_model_file(tv, tmp_path):
    import keras

    model, pth, _ = tv
    dst = tmp_path / "tv.keras"
    result = convert(pth, dst, input_shape=(120, 160, 3), parity=True, preprocessing="tf")
    assert result.parity is not None and result.parity.ok and result.parity.input_hw == (120, 160)
    assert result.parity.aux_max_abs_logit_diff is None  # 120 px: no aux head
    loaded = keras.saving.load_model(dst)  # plain Keras, no anyshape needed
    x = np.random.default_rng(1).uniform(-1, 1, (1, 120, 160, 3)).astype(np.float32)
    probs = keras.ops.convert_to_numpy(loaded(x))
    ref = run(model, x)
    ref_probs = np.exp(ref - ref.max()) / np.exp(ref - ref.max()).sum()
    np.testing.assert_allclose(probs, ref_probs, atol=1e-6)
    assert anyshape.weights.resolve(str(dst)).count_include_pad  # metadata survives in the zip


def test_bad_destinations(tv, tmp_path):
    _, pth, _ = tv
    with pytest.raises(ValueError, match=r"\.weights\.h5"):
        convert(pth, tmp_path / "out.h5", preprocessing="tf")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        convert(pth, tmp_path / "missing_dir" / "out.weights.h5", preprocessing="tf")
    with pytest.raises(ValueError, match="not timm|does not fit"):
        convert("torchvision.IMAGENET1K_V1", tmp_path / "x.weights.h5", source="timm")


def test_convert_timm_state_dict_against_timm(tmp_path):
    from reference.torch_inception import calibrated
    from safetensors.torch import save_file

    timm = pytest.importorskip("timm")
    torch.manual_seed(5)
    tm = calibrated(timm.create_model("inception_v3", pretrained=False), seed=5)
    src = tmp_path / "timm.safetensors"
    save_file({k: v.contiguous() for k, v in tm.state_dict().items()}, str(src))
    result = convert(
        src, tmp_path / "timm.weights.h5", source="timm", input_shape=(120, 120, 3), parity_images=1, preprocessing="tf"
    )
    assert result.parity.reference == "timm" and result.parity.ok
    assert result.parity.max_abs_logit_diff <= 1e-4 and result.parity.top5_agreement == 1.0
    assert "result: match (within float32 rounding)" in str(result)


def test_convert_from_python_imports_its_reference_frameworks_itself(tv, tmp_path):
    """A script whose first step is convert() gets the parity report, as the CLI does: convert
    imports torch and torchvision before it loads Keras (importing them after TensorFlow crashes)."""
    _, pth, _ = tv
    dst = tmp_path / "from_python.weights.h5"
    script = (
        "import sys\n"
        "from anyshape.weights.convert import convert\n"
        "assert 'torchvision' not in sys.modules and 'tensorflow' not in sys.modules\n"
        f"r = convert({pth!r}, {str(dst)!r}, source='torchvision', preprocessing='tf', parity_images=2)\n"
        "print(r.parity is not None and r.parity.ok)\n"
    )
    env = {**os.environ, "KERAS_BACKEND": "tensorflow", "TF_CPP_MIN_LOG_LEVEL": "3"}
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip().splitlines()[-1] == "True", done.stdout
    assert dst.is_file()


def test_features_record_the_preprocessing_of_a_converted_file_and_of_a_torch_file(tv, tmp_path):
    """`features` prepares images as the weights say: a .keras from `convert --preprocessing torch`,
    and `--weights X.pth --preprocessing torch` (issue 15, item 1)."""
    from PIL import Image

    from anyshape import engine

    _, pth, _ = tv
    photo = tmp_path / "photo.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (90, 100, 3), dtype=np.uint8)).save(photo)
    converted = tmp_path / "tv.keras"
    argv = ["convert", pth, "-o", str(converted), "--input-shape", "75,75,3", "--preprocessing", "torch", "--no-parity"]
    assert main(argv) == 0
    for i, flags in enumerate((["--model", str(converted)], ["--weights", pth, "--preprocessing", "torch"])):
        out = tmp_path / f"f{i}.npz"
        assert main(["features", str(photo), *flags, "--size", "75", "-o", str(out), "-q"]) == 0
        recorded = engine.read_manifest(out).options["preprocessing"]
        assert (recorded["mode"], recorded["mean"], recorded["std"]) == (
            "torch",
            [0.485, 0.456, 0.406],
            [0.229, 0.224, 0.225],
        )


def test_convert_does_not_replace_a_file_written_meanwhile(tv, tmp_path, monkeypatch):
    """Without --force the no-overwrite rule holds to the end, not only when the run starts (issue 15, item 9)."""
    from anyshape.weights import keras_h5

    _, pth, _ = tv
    dst = tmp_path / "tv.weights.h5"
    write_metadata = keras_h5.write_metadata

    def written_meanwhile(path, weight_set):  # another run writes dst while this one converts
        dst.write_bytes(b"the other run's file")
        write_metadata(path, weight_set)

    monkeypatch.setattr(keras_h5, "write_metadata", written_meanwhile)
    with pytest.raises(FileExistsError, match="appeared while"):
        convert(pth, dst, parity=False, preprocessing="tf", progress=False)
    assert dst.read_bytes() == b"the other run's file" and [p.name for p in tmp_path.iterdir()] == [dst.name]
