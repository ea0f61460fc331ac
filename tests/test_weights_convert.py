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


# --- convert --arch: Keras files of the family's other networks (MobileNet at a quarter width) ------

SMALL_ARCH = ["--arch", "mobilenet", "--option", "alpha=0.25"]


@pytest.fixture(scope="module")
def mobilenet_files(tmp_path_factory):
    """keras.applications' MobileNet (alpha 0.25, random weights moved off their defaults) as Keras'
    published layout with and without the top, and as Keras 3's own .weights.h5 (save_weights) and
    .keras (save)."""
    import keras
    from made_files import write_legacy_h5
    from model_helpers import randomised_weights

    from anyshape.archs import get_arch

    d = tmp_path_factory.mktemp("convert_family")
    keras.utils.set_random_seed(0)
    ref = keras.applications.MobileNet(weights=None, alpha=0.25, input_shape=(128, 128, 3))
    ref.set_weights(randomised_weights(ref))
    files = {
        "top": d / "mobilenet_0.25_top.h5",
        "notop": d / "mobilenet_0.25_notop.h5",
        "keras3": d / "k.weights.h5",
        "keras_model": d / "k.keras",
    }
    write_legacy_h5(ref, files["top"])
    write_legacy_h5(ref, files["notop"], top=False, head=get_arch("mobilenet").classifier)
    ref.save_weights(files["keras3"])
    ref.save(files["keras_model"])
    del ref
    keras.backend.clear_session()
    return {k: str(v) for k, v in files.items()}


def _log(p):
    return np.log(np.maximum(np.asarray(p, np.float64), 1e-30))


def _relative_error(a, b) -> float:
    return float(np.abs(a - b).max() / np.abs(b).max())


def _builds(monkeypatch) -> list:
    """The include_top of every network `convert` builds from now on (anyshape.create_model's calls)."""
    import anyshape.factory

    calls, real = [], anyshape.factory.create_model

    def counted(*args, **kwargs):
        calls.append(kwargs.get("include_top"))
        return real(*args, **kwargs)

    monkeypatch.setattr(anyshape.factory, "create_model", counted)
    return calls


def test_cli_convert_arch_keras_file_at_any_shape_and_channels(mobilenet_files, tmp_path, capsys, monkeypatch):
    """`convert FILE --arch mobilenet`: at RGB the parity report against keras.applications on the
    same file, building the network once (Keras' file names its classifier: the head is known
    before any build); at one channel ("sum") a .keras model that records its network and equals
    the RGB conversion on the gray image copied to R, G and B; the converted .weights.h5 loads as
    `weights=FILE` at another size and channel count (a Keras 3 file, first-conv rules applied)."""
    from anyshape.model_info import load_model, read_keras_info

    rgb = tmp_path / "rgb.weights.h5"
    builds = _builds(monkeypatch)
    assert main(["convert", mobilenet_files["top"], "-o", str(rgb), *SMALL_ARCH, "--input-shape", "96,96,3"]) == 0
    assert builds == [True]
    out = capsys.readouterr().out
    assert "parity vs keras.applications.MobileNet" in out and "result: match" in out, out
    assert "top-5 agreement: 100%" in out and f"wrote {rgb}: mobilenet" in out

    gray = tmp_path / "gray.keras"
    argv = ["convert", mobilenet_files["top"], "-o", str(gray), *SMALL_ARCH, "--input-shape", "none,none,1"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "parity: not computed (the model has 1 input channels" in out
    info = read_keras_info(gray)
    assert info.architecture == "mobilenet" and info.config.alpha == 0.25 and info.data_config.mode == "tf"
    gray_model = load_model(gray)
    assert gray_model.get_layer("conv1").kernel.shape[2] == 1

    g = np.random.default_rng(3).uniform(-1, 1, (1, 70, 90, 1)).astype(np.float32)
    rgb_model = anyshape.create_model("mobilenet", alpha=0.25, weights=str(rgb), input_shape=(70, 90, 3))
    expected = _log(rgb_model.predict_on_batch(np.repeat(g, 3, axis=-1)))
    assert rgb_model.anyshape_weights.arch == "mobilenet" and rgb_model.anyshape_weights.num_classes == 1000
    assert _relative_error(_log(gray_model.predict_on_batch(g)), expected) < 1e-4
    # the converted Keras 3 file as weights=FILE at another size and 4 channels ("mean")
    four = anyshape.create_model(
        "mobilenet", alpha=0.25, weights=str(rgb), input_shape=(70, 90, 4), channel_adapt="mean"
    )
    assert _relative_error(_log(four.predict_on_batch(np.repeat(g, 4, axis=-1))), expected) < 1e-4
    assert main(["convert", mobilenet_files["top"], "-o", str(gray), *SMALL_ARCH]) == 2  # exists: refused
    assert "already exists" in capsys.readouterr().err


def test_convert_arch_without_the_top_and_from_keras3_files(mobilenet_files, tmp_path, monkeypatch):
    """Keras' file without the top converts to a backbone, built once (the backbone that finds no
    classifier in the file is the model); keras.applications' own Keras 3 .weights.h5 (its layers
    paired by class and rank; its classifier found against the backbone, then built with it)
    converts at one channel and equals the conversion of the legacy file, and its .keras file
    loads as weights=FILE the same."""
    builds = _builds(monkeypatch)
    notop = convert(mobilenet_files["notop"], tmp_path / "notop.weights.h5", arch="mobilenet", alpha=0.25)
    assert builds == [False]
    assert notop.weight_set.num_classes is None and notop.parity is None
    assert notop.note == "the file has no classifier"
    backbone = anyshape.create_model(
        "mobilenet", alpha=0.25, include_top=False, weights=notop.path, input_shape=(48, 64, 1)
    )
    from_legacy = anyshape.create_model(
        "mobilenet", alpha=0.25, include_top=False, weights=mobilenet_files["notop"], input_shape=(48, 64, 1)
    )
    x = np.random.default_rng(4).uniform(-1, 1, (1, 48, 64, 1)).astype(np.float32)
    np.testing.assert_allclose(backbone.predict_on_batch(x), from_legacy.predict_on_batch(x), rtol=0, atol=1e-5)

    builds.clear()
    k3 = convert(
        mobilenet_files["keras3"], tmp_path / "k3.weights.h5", arch="mobilenet", alpha=0.25, input_shape=(None, None, 1)
    )
    assert k3.weight_set.num_classes == 1000 and builds == [False, True]
    assert "Keras 3 file" in k3.note  # keras.applications' constructors read the published .h5 only
    ours = anyshape.create_model("mobilenet", alpha=0.25, include_top=False, weights=k3.path, input_shape=(48, 64, 1))
    np.testing.assert_allclose(ours.predict_on_batch(x), from_legacy.predict_on_batch(x), rtol=0, atol=1e-5)
    whole = anyshape.create_model(  # keras.applications' model saved whole, as weights=FILE
        "mobilenet", alpha=0.25, include_top=False, weights=mobilenet_files["keras_model"], input_shape=(48, 64, 1)
    )
    np.testing.assert_allclose(whole.predict_on_batch(x), from_legacy.predict_on_batch(x), rtol=0, atol=1e-5)


def test_convert_arch_refuses_what_it_cannot_do(mobilenet_files, tmp_path, capsys):
    """A PyTorch file for a network without a PyTorch twin is refused naming the networks that have
    one (the twins convert in tests/test_weights_twins.py); a registry set of another network and
    --aux-logits are refused naming them."""
    pth = tmp_path / "weights.pth"
    torch.save({"conv.weight": torch.zeros(1)}, pth)
    assert main(["convert", str(pth), "-o", str(tmp_path / "x.weights.h5"), "--arch", "resnet50_v2"]) == 2
    err = capsys.readouterr().err
    assert "weights.pth is a PyTorch state dict: ResNet50V2 has no PyTorch twin" in err, err
    assert "state dicts convert into inception_v3, " in err and "mobilenet_v2" in err and "resnet50" in err, err
    assert (
        main(["convert", "torchvision.IMAGENET1K_V1", "-o", str(tmp_path / "y.weights.h5"), "--arch", "resnet50"]) == 2
    )
    assert "resnet50" in capsys.readouterr().err
    with pytest.raises(ValueError, match="aux_logits is an option of inception_v3, not of mobilenet"):
        convert(mobilenet_files["top"], tmp_path / "z.weights.h5", arch="mobilenet", aux_logits=True, alpha=0.25)
    assert not list(tmp_path.glob("*.weights.h5"))
