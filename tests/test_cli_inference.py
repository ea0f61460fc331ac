"""`anyshape predict | features | export | bench | quantize` end to end, on real photos.

The photos ship with scikit-image (astronaut, coffee, chelsea, camera: gray) and scikit-learn
(china, flower); they are written into a folder tree in tmp_path as JPEG and PNG. Bad files of
every kind sit beside good ones: each must be reported with its path and reason while the rest
still run.

Paths, formats, exit codes, resumes and Ctrl-C run on a small saved model (`small_top`,
`small_notop`: MobileNet at a quarter of its width, 0.2 M parameters, a registered network whose
minimum, 31 px, is not InceptionV3's 75: every size rule must come from the model's own network).
InceptionV3 keeps its end-to-end runs (predict, features, export) on weight files made here, and
every verb runs with --arch on networks of other families (mobilenet, mobilenet_v3_small,
resnet50) at small sizes.
"""

import csv
import io
import json
import sys

import keras
import numpy as np
import pytest

from anyshape import cli, create_model, engine
from anyshape.archs import get_arch
from anyshape.engine.manifest import RunManifest
from anyshape.engine.quantize import recipe_for, signed_activations_for
from anyshape.inception_v3 import InceptionV3
from anyshape.model_info import ModelInfo, save_model

pytest.importorskip("onnxruntime")
skimage_data = pytest.importorskip("skimage.data")
sklearn_datasets = pytest.importorskip("sklearn.datasets")
from PIL import Image  # noqa: E402

SIZE = "75"  # InceptionV3's smallest valid size keeps its end-to-end runs fast
SMALL = {"alpha": 0.25}  # the small network: MobileNet at a quarter width (--arch mobilenet --option alpha=0.25)
SMALL_ARGS = ["--arch", "mobilenet", "--option", "alpha=0.25"]
SMALL_MIN = 31  # its minimum size (anyshape.minimum_size("mobilenet", alpha=0.25))
S = "40"  # the size its runs use
# not the defaults (crop 0.875, bicubic, [-1, 1]) in any of the three ways images are prepared
ODD_PREP = engine.Preprocessing(
    mode="torch", mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225), crop_pct=1.0, interpolation="bilinear"
)


def _randomise_batch_norm(model, seed=0):
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.set_weights(
                [
                    rng.uniform(0.5, 2.0, w.shape).astype("float32")
                    if "variance" in w.path
                    else rng.normal(0.0, 0.3, w.shape).astype("float32")
                    for w in layer.weights
                ]
            )
    return model


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    root = tmp_path_factory.mktemp("photos")
    (root / "cats").mkdir()
    Image.fromarray(skimage_data.astronaut()).save(root / "astronaut.jpg", quality=90)
    Image.fromarray(skimage_data.coffee()).save(root / "coffee.png")
    Image.fromarray(skimage_data.chelsea()).save(root / "cats" / "chelsea.jpg", quality=90)
    Image.fromarray(skimage_data.camera()).save(root / "camera_gray.png")  # mode L
    samples = sklearn_datasets.load_sample_images()
    for name, image in zip(("china", "flower"), samples.images):
        Image.fromarray(image).save(root / f"{name}.jpg", quality=90)
    return root


@pytest.fixture(scope="module")
def top_weights(tmp_path_factory):
    """A classifier's weights file (random init, random BN statistics) and the model itself."""
    model = _randomise_batch_norm(InceptionV3(weights=None, include_top=True, input_shape=(None, None, 3)))
    path = tmp_path_factory.mktemp("weights") / "classifier.weights.h5"
    model.save_weights(path)
    return path, model


@pytest.fixture(scope="module")
def notop_weights(tmp_path_factory):
    model = _randomise_batch_norm(InceptionV3(weights=None, include_top=False, input_shape=(None, None, 3)), 1)
    path = tmp_path_factory.mktemp("weights") / "backbone.weights.h5"
    model.save_weights(path)
    return path


def _small(seed, **kwargs):
    """The small network with random BatchNorm statistics, at a free size."""
    kwargs.setdefault("input_shape", (None, None, 3))
    return _randomise_batch_norm(create_model("mobilenet", weights=None, **SMALL, **kwargs), seed)


@pytest.fixture(scope="module")
def small_top(tmp_path_factory):
    """The small network with its 1000-class top, saved by anyshape (its network inside): (path, model)."""
    model = _small(5, include_top=True)
    path = tmp_path_factory.mktemp("small") / "classifier.keras"
    save_model(model, path)
    return path, model


@pytest.fixture(scope="module")
def small_notop(tmp_path_factory):
    """The small network without its top, saved by anyshape: (path, model)."""
    model = _small(6, include_top=False)
    path = tmp_path_factory.mktemp("small") / "backbone.keras"
    save_model(model, path)
    return path, model


@pytest.fixture(scope="module")
def bad_folder(tmp_path_factory, photos):
    """One good photo, the unusable files, and the odd-but-usable modes."""
    root = tmp_path_factory.mktemp("mixed")
    rng = np.random.default_rng(0)
    good = skimage_data.chelsea()
    Image.fromarray(good).save(root / "good.jpg")
    jpeg = (root / "good.jpg").read_bytes()
    bad = {
        "corrupt.jpg": jpeg[:20] + rng.integers(0, 255, 4000, dtype=np.uint8).tobytes(),
        "truncated.jpg": jpeg[: len(jpeg) // 2],
        "empty.png": b"",
        "notes.txt": b"these are not pixels\n",
    }
    for name, data in bad.items():
        (root / name).write_bytes(data)
    Image.fromarray(good[:20, :24]).save(root / "tiny.png")  # below 31 px, the small network's minimum
    Image.new("1", (9500, 9500)).save(root / "bomb.png")  # 90 Mpx of zeros in a few kB
    # usable after conversion
    Image.fromarray((rng.integers(0, 65535, (90, 100))).astype(np.uint16)).save(root / "depth16.png")
    Image.fromarray(good).convert("P").save(root / "palette.png")
    Image.fromarray(good).convert("CMYK").save(root / "cmyk.jpg")
    Image.fromarray(good).convert("RGBA").save(root / "rgba.png")
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90 degrees to display
    Image.fromarray(good[:100, :160]).save(root / "rotated.jpg", exif=exif.tobytes())
    return root, {"corrupt.jpg", "truncated.jpg", "empty.png", "notes.txt", "tiny.png", "bomb.png"}


def _run(capsys, *argv):
    code = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def _expected_scores(model, path, size):
    reader = engine.ImageReader(size=engine.parse_size(size))
    return model.predict_on_batch(reader.read(path)[None])[0]


def test_predict_json_on_photos_equals_keras(capsys, photos, top_weights):
    weights, model = top_weights
    code, out, err = _run(
        capsys, "predict", photos, "--weights", weights, "--size", SIZE, "--top", 3, "--format", "json", "-q"
    )
    assert code == 0, err
    rows = json.loads(out)
    names = sorted(p.name for p in photos.rglob("*.*"))
    assert sorted(r["path"].rsplit("/", 1)[-1] for r in rows) == names
    assert "6 file(s): 6 ok, 0 failed" in err
    for row in rows:
        assert row["error"] is None and [p["rank"] for p in row["predictions"]] == [1, 2, 3]
        scores = _expected_scores(model, row["path"], SIZE)
        top = row["predictions"][0]
        assert abs(top["score"] - scores[top["class_id"]]) <= 1e-4
        assert scores[top["class_id"]] >= scores.max() - 1e-5  # Keras agrees it is the best class
        assert top["label"] and top["wnid"].startswith("n")


def test_predict_csv_and_table(capsys, photos, small_top):
    model, _ = small_top
    code, out, err = _run(
        capsys,
        "predict",
        photos / "cats",
        photos / "astronaut.jpg",
        "--model",
        model,
        "--size",
        "80,96",
        "--top",
        2,
        "--format",
        "csv",
    )
    assert code == 0, err
    table = list(csv.DictReader(io.StringIO(out)))
    assert len(table) == 4 and {r["rank"] for r in table} == {"1", "2"}
    assert all(0.0 <= float(r["score"]) <= 1.0 for r in table)
    assert "\r" not in err  # stderr is not a terminal under pytest: no progress bar
    code, out, _ = _run(
        capsys,
        "predict",
        photos / "camera_gray.png",
        "--model",
        model,
        "--size",
        S,
        "--top",
        1,
        "--format",
        "table",
    )
    assert code == 0 and out.splitlines()[0].endswith("camera_gray.png") and " 1. " in out


def test_predict_reports_every_bad_file_and_goes_on(capsys, bad_folder, small_top):
    root, bad = bad_folder
    model, _ = small_top
    code, out, err = _run(capsys, "predict", root, "--model", model, "--size", S, "--format", "json", "-q")
    assert code == 1
    rows = {r["path"].rsplit("/", 1)[-1]: r for r in json.loads(out)}
    failed = {name for name, r in rows.items() if r["error"]}
    assert failed == bad
    for name in bad:
        assert f"FAILED {root / name}" in err  # each reported with its path ...
    reasons = {name: rows[name]["error"] for name in bad}
    assert "empty" in reasons["empty.png"]
    assert "not an image" in reasons["notes.txt"]
    assert "truncated" in reasons["truncated.jpg"] or "corrupt" in reasons["truncated.jpg"]
    # the minimum of the model's own network (MobileNet at alpha 0.25), not InceptionV3's 75 px
    assert "below MobileNet's minimum of 31 px" in reasons["tiny.png"] and "--upscale" in reasons["tiny.png"]
    assert "decompression bomb" in reasons["bomb.png"]
    ok = set(rows) - bad
    assert ok == {"good.jpg", "depth16.png", "palette.png", "cmyk.jpg", "rgba.png", "rotated.jpg"}
    assert all(rows[n]["predictions"] for n in ok)
    assert f"{len(rows)} file(s): {len(ok)} ok, {len(bad)} failed" in err  # ... and counted


def test_predict_reads_npy_arrays_as_training_does(capsys, small_top, tmp_path):
    """A model trained on .npy arrays predicts on them: inference reads a file with training's
    reader (`preprocess.load_pixels`). An array of a photo's pixels scores as the photo does
    (native size); at a fixed size the reader gives what training's `datasets.read_image` gives
    (float32, not rounded), prepared the same way; the wrong channel count fails with both."""
    from anyshape.data_config import DataConfig
    from anyshape.datasets import read_image

    pixels = skimage_data.coffee()[100:180, 150:250]  # (80, 100, 3) uint8
    Image.fromarray(pixels).save(tmp_path / "coffee.png")
    np.save(tmp_path / "coffee.npy", pixels.astype(np.float32))
    np.save(tmp_path / "five.npy", np.zeros((60, 60, 5), np.float32))
    args = ["--model", small_top[0], "--size", "native", "--top", 3, "--format", "json", "-q"]
    code, out, err = _run(capsys, "predict", *(tmp_path / n for n in ("coffee.png", "coffee.npy", "five.npy")), *args)
    assert code == 1, err  # five.npy failed, the others ran
    rows = {r["path"].rsplit("/", 1)[-1]: r for r in json.loads(out)}
    assert rows["coffee.npy"]["error"] is None and len(rows["coffee.npy"]["predictions"]) == 3
    assert rows["coffee.npy"]["predictions"] == rows["coffee.png"]["predictions"]
    assert "the array has 5 channels, the model takes 3" in rows["five.npy"]["error"]
    # a fixed size: arrays keep their float values (rounded to 8 bits, these would be the PNG's pixels)
    fractional = tmp_path / "fractional.npy"
    np.save(fractional, pixels.astype(np.float32) + 0.4)
    training = DataConfig().for_training()
    reader = engine.ImageReader(size=(40, 48), preprocessing=training)
    expected = training.apply(read_image(fractional, (40, 48), 3))
    np.testing.assert_array_equal(reader.read(fractional), expected)
    assert not np.array_equal(reader.read(fractional), reader.read(tmp_path / "coffee.png"))


def test_odd_modes_are_converted_by_the_stated_rule(bad_folder):
    root, _ = bad_folder
    reader = engine.ImageReader(size="native")
    rotated = reader.read(root / "rotated.jpg")
    assert rotated.shape == (160, 100, 3)  # EXIF orientation applied: 100x160 stored, shown 160x100
    gray16 = reader.read(root / "depth16.png")
    assert gray16.shape == (90, 100, 3) and np.array_equal(gray16[..., 0], gray16[..., 2])
    assert reader.read(root / "cmyk.jpg").shape == reader.read(root / "palette.png").shape == (300, 451, 3)


def test_upscale_lets_small_images_through(capsys, bad_folder, small_top):
    root, _ = bad_folder
    model, _ = small_top
    code, out, err = _run(
        capsys,
        "predict",
        root / "tiny.png",
        "--model",
        model,
        "--size",
        "native",
        "--upscale",
        "--format",
        "json",
        "-q",
    )
    assert code == 0, err
    assert json.loads(out)[0]["predictions"]


def test_features_npz_then_refuses_to_overwrite(capsys, photos, notop_weights, tmp_path):
    out = tmp_path / "feats.npz"
    code, _, err = _run(capsys, "features", photos, "--weights", notop_weights, "--size", SIZE, "--out", out, "-q")
    assert code == 0, err
    with np.load(out) as z:
        feats, paths = z["features"], list(z["paths"])
    assert feats.shape == (6, 2048) and len(set(paths)) == 6 and paths == sorted(paths)
    model = InceptionV3(weights=str(notop_weights), include_top=False, pooling="avg", input_shape=(None, None, 3))
    reader = engine.ImageReader(size=(75, 75))
    want = model.predict_on_batch(np.stack([reader.read(p) for p in paths]))
    assert np.abs(feats - want).max() <= 1e-4
    before = out.read_bytes()
    code, _, err = _run(capsys, "features", photos, "--weights", notop_weights, "--out", out)
    assert code == 2 and "--force" in err and out.read_bytes() == before


def test_features_npy_with_mixed_layer(capsys, photos, small_notop, tmp_path):
    """--layer names a block of the model's own network (a block of MobileNet: conv_pw_11_relu, 128
    channels at alpha 0.25), read from the model file without --arch."""
    out = tmp_path / "block11.npy"
    code, _, err = _run(
        capsys,
        "features",
        photos / "cats",
        photos / "coffee.png",
        "--model",
        small_notop[0],
        "--size",
        S,
        "--layer",
        "conv_pw_11_relu",
        "--pooling",
        "max",
        "--out",
        out,
        "-q",
    )
    assert code == 0, err
    assert np.load(out).shape == (2, 128)
    features, listed = engine.read_features(out)
    reader = engine.ImageReader(size=(40, 40))
    want = engine.feature_model(small_notop[1], "conv_pw_11_relu", "max").predict_on_batch(
        np.stack([reader.read(p) for p in listed])
    )
    assert np.abs(features - want).max() <= 1e-4
    assert features.shape == (2, 128) and [p.rsplit("/", 1)[-1] for p in listed] == ["chelsea.jpg", "coffee.png"]


def test_features_parquet(capsys, photos, small_notop, tmp_path, monkeypatch):
    model = small_notop[0]
    out = tmp_path / "f.parquet"
    try:
        import pyarrow.parquet as pq
    except ImportError:
        pq = None
    if pq is None:  # without pyarrow: a clear error, nothing written
        code, _, err = _run(capsys, "features", photos, "--model", model, "--out", out)
        assert code == 2 and "pyarrow" in err and not out.exists()
        return
    code, _, err = _run(
        capsys,
        "features",
        photos / "cats",
        photos / "china.jpg",
        "--model",
        model,
        "--size",
        S,
        "--out",
        out,
        "-q",
    )
    assert code == 0, err
    table = pq.read_table(out).to_pydict()
    assert [p.rsplit("/", 1)[-1] for p in table["path"]] == ["chelsea.jpg", "china.jpg"]
    assert [len(f) for f in table["feature"]] == [256, 256]
    monkeypatch.setitem(sys.modules, "pyarrow", None)  # as if it were not installed
    code, _, err = _run(capsys, "features", photos, "--model", model, "--out", tmp_path / "g.parquet")
    assert code == 2 and "pip install pyarrow" in err and not (tmp_path / "g.parquet").exists()


def test_interrupted_features_resume_gives_one_row_per_image(capsys, photos, small_notop, tmp_path, monkeypatch):
    out = tmp_path / "resumed.npz"
    calls = []
    original_add = engine.FeatureStore.add

    def add_then_interrupt(self, results):
        original_add(self, results)
        calls.append(len(results))
        if len(calls) == 1:
            raise KeyboardInterrupt  # as Ctrl-C after the first batch

    monkeypatch.setattr(engine.FeatureStore, "add", add_then_interrupt)
    args = ["features", photos, "--model", small_notop[0], "--size", S, "--batch-size", 2, "--out", out, "-q"]
    code, _, err = _run(capsys, *args)
    assert code == 130 and "--resume" in err
    assert not out.exists()  # nothing written half
    partial = tmp_path / "resumed.npz.partial"
    assert len(list(partial.glob("chunk-*.npz"))) == 1
    monkeypatch.setattr(engine.FeatureStore, "add", original_add)

    code, _, err = _run(capsys, *args)
    assert code == 2 and "--resume" in err  # an interrupted run is not silently restarted
    code, _, err = _run(capsys, *args, "--resume")
    assert code == 0, err
    assert "2 already done" in err
    with np.load(out) as z:
        paths, feats = list(z["paths"]), z["features"]
    assert len(paths) == len(set(paths)) == 6 and feats.shape == (6, 256)
    assert not partial.exists()

    fresh = tmp_path / "fresh.npz"
    assert _run(capsys, "features", photos, "--model", small_notop[0], "--size", S, "--out", fresh, "-q")[0] == 0
    with np.load(fresh) as z:
        assert list(z["paths"]) == paths
        assert np.abs(z["features"] - feats).max() <= 1e-5


def test_resume_recomputes_the_rows_of_unreadable_chunks(capsys, photos, small_notop, tmp_path, monkeypatch):
    """A truncated or empty chunk is a missing chunk, not a traceback (issue 15, item 11)."""
    out = tmp_path / "r.npz"
    original_add = engine.FeatureStore.add
    calls = []

    def add_then_interrupt(self, results):
        original_add(self, results)
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt

    monkeypatch.setattr(engine.FeatureStore, "add", add_then_interrupt)
    args = ["features", photos, "--model", small_notop[0], "--size", S, "--batch-size", 2, "--out", out, "-q"]
    assert _main_without_traceback(capsys, *args)[0] == 130
    monkeypatch.setattr(engine.FeatureStore, "add", original_add)
    chunks = sorted((tmp_path / "r.npz.partial").glob("chunk-*.npz"))
    assert len(chunks) == 3
    chunks[0].write_bytes(chunks[0].read_bytes()[:100])  # truncated
    chunks[1].write_bytes(b"")  # empty
    code, _, err = _main_without_traceback(capsys, *args, "--resume")
    assert code == 0 and "2 already done" in err, err
    fresh = tmp_path / "fresh.npz"
    assert _main_without_traceback(capsys, *_replace_option(args, "--out", fresh))[0] == 0
    with np.load(out) as z, np.load(fresh) as want:
        assert list(z["paths"]) == list(want["paths"]) and len(set(z["paths"])) == 6
        assert np.abs(z["features"] - want["features"]).max() <= 1e-5


def test_a_second_run_on_a_live_runs_output_is_refused(capsys, photos, small_notop, tmp_path, monkeypatch):
    """Two `features --resume` of one live run: the second says so and changes nothing (issue 15, item 9)."""
    out = tmp_path / "live.npz"
    args = ["features", photos, "--model", small_notop[0], "--size", S, "--batch-size", 2, "--out", out, "-q"]
    original_add = engine.FeatureStore.add
    second = []

    def add_then_run_again(self, results):
        original_add(self, results)
        if not second:  # the first run is live: a second one starts in the same output
            chunks = sorted(self.partial.iterdir())
            second.append(_main_without_traceback(capsys, *args, "--resume"))
            assert sorted(self.partial.iterdir()) == chunks
            with pytest.raises(OSError, match="another run is using it"):
                engine.FeatureStore(out, resume=True)

    monkeypatch.setattr(engine.FeatureStore, "add", add_then_run_again)
    code, _, err = _main_without_traceback(capsys, *args)
    assert code == 0, err
    ((code2, _, err2),) = second
    assert code2 == 2 and "another run is using it" in err2 and len(err2.strip().splitlines()) == 1
    with np.load(out) as z:
        assert len(set(z["paths"])) == len(z["paths"]) == 6
    assert not (tmp_path / "live.npz.partial").exists()


def test_export_onnx_and_keras(capsys, tmp_path, notop_weights):
    import onnxruntime as ort

    onnx_path = tmp_path / "model.onnx"
    code, _, err = _run(
        capsys, "export", "--weights", notop_weights, "--pooling", "avg", "--format", "onnx", "-o", onnx_path
    )
    assert code == 0, err
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    x = np.random.default_rng(0).uniform(-1, 1, (1, 90, 110, 3)).astype("float32")
    model = InceptionV3(weights=str(notop_weights), include_top=False, pooling="avg")
    assert np.abs(session.run(None, {"input": x})[0] - model.predict_on_batch(x)).max() <= 1e-4
    code, _, err = _run(capsys, "export", "--weights", notop_weights, "--format", "onnx", "-o", onnx_path)
    assert code == 2 and "--force" in err

    keras_path = tmp_path / "model.keras"
    code, _, err = _run(
        capsys, "export", "--weights", "none", "--include-top", "--classes", 5, "--format", "keras", "-o", keras_path
    )
    assert code == 0, err
    loaded = keras.saving.load_model(keras_path)
    assert loaded.output.shape[-1] == 5 and [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_two_exports_to_one_name_at_once_replace_nothing(capsys, tmp_path, monkeypatch):
    """The second export to finish is refused, not silently swapped in (issue 15, item 9)."""
    from anyshape.engine.graph_model import GraphModel

    out = tmp_path / "same.onnx"
    to_bytes = GraphModel.to_bytes

    def finished_meanwhile(self):  # the other export writes its file while this one translates
        out.write_bytes(b"the other export")
        return to_bytes(self)

    monkeypatch.setattr(GraphModel, "to_bytes", finished_meanwhile)
    code, _, err = _main_without_traceback(
        capsys, "export", *SMALL_ARGS, "--weights", "none", "--input-shape", "40,40,3", "-o", out
    )
    assert code == 2 and "appeared while" in err and "not replaced" in err
    assert out.read_bytes() == b"the other export" and [p.name for p in tmp_path.iterdir()] == ["same.onnx"]


def test_export_of_an_onnx_model_file(capsys, tmp_path):
    """`export --model X.onnx` copies the graph with its metadata, or refuses another format (issue 15, item 10)."""
    src, copy = tmp_path / "src.onnx", tmp_path / "copy.onnx"
    model = create_model("mobilenet", weights=None, include_top=False, pooling="avg", input_shape=(40, 40, 3), **SMALL)
    model.anyshape_info = ModelInfo(ODD_PREP)
    engine.export_model(model, src)
    code, _, err = _main_without_traceback(capsys, "export", "--model", src, "-o", copy)
    assert code == 0, err
    assert engine.GraphModel.load(copy) == engine.GraphModel.load(src)
    assert engine.GraphModel.load(copy).preprocessing == ODD_PREP
    code, _, err = _main_without_traceback(capsys, "export", "--model", src, "-o", tmp_path / "m.keras")
    assert code == 2 and "exports as ONNX only" in err and not (tmp_path / "m.keras").exists()


def test_predict_with_a_saved_model_file(capsys, tmp_path, photos):
    """A plain Keras save (no anyshape member): the defaults, then a run folder's classes.json."""
    model = _small(3, include_top=True, classes=4)
    path = tmp_path / "four.keras"
    model.save(path)
    code, out, err = _run(
        capsys, "predict", photos / "cats", "--model", path, "--size", S, "--top", 2, "--format", "json", "-q"
    )
    assert code == 0, err
    row = json.loads(out)[0]
    scores = _expected_scores(model, row["path"], S)
    assert row["predictions"][0]["label"] == f"class_{int(np.argmax(scores))}"
    assert abs(row["predictions"][0]["score"] - scores.max()) <= 1e-4

    # in a run folder of `anyshape train`, classes.json names the classes and sets the preprocessing
    run_info = {
        "classes": ["ant", "bee", "cat", "dog"],
        "preprocess": {"mode": "torch"},
        "resize": {"method": "resize_shorter_and_center_crop", "crop_pct": 1.0, "interpolation": "bilinear"},
    }
    (tmp_path / "classes.json").write_text(json.dumps(run_info))
    code, out, err = _run(
        capsys, "predict", photos / "cats", "--model", path, "--size", S, "--top", 1, "--format", "json", "-q"
    )
    assert code == 0, err
    top = json.loads(out)[0]["predictions"][0]
    prep = engine.Preprocessing(mode="torch", crop_pct=1.0, interpolation="bilinear")
    x = engine.ImageReader(size=(40, 40), preprocessing=prep).read(photos / "cats" / "chelsea.jpg")
    scores = model.predict_on_batch(x[None])[0]
    assert top["label"] == run_info["classes"][int(np.argmax(scores))]
    assert abs(top["score"] - scores.max()) <= 1e-4


def test_predict_with_a_model_file_that_keeps_its_classes_and_preprocessing(capsys, tmp_path, photos):
    """A .keras file saved by anyshape (as `anyshape train` saves model.keras) needs nothing beside it."""
    from anyshape.model_info import ModelInfo, save_model

    keras.utils.set_random_seed(3)
    inputs = keras.Input((None, None, 3))
    x = keras.layers.Conv2D(4, 3, strides=2, activation="relu")(inputs)
    x = keras.layers.GlobalAveragePooling2D()(x)
    model = keras.Model(inputs, keras.layers.Dense(3, activation="softmax")(x))
    prep = engine.Preprocessing(mode="torch", mean=(0.4, 0.5, 0.6), std=(0.2, 0.3, 0.25), crop_pct=1.0)
    path = tmp_path / "alone" / "model.keras"
    path.parent.mkdir()
    save_model(model, path, ModelInfo(prep, ("ant", "bee", "cat")))
    assert sorted(p.name for p in path.parent.iterdir()) == ["model.keras"]  # no classes.json beside it
    code, out, err = _run(
        capsys, "predict", photos / "cats", "--model", path, "--size", SIZE, "--top", 1, "--format", "json", "-q"
    )
    assert code == 0, err
    top = json.loads(out)[0]["predictions"][0]
    x = engine.ImageReader(size=(75, 75), preprocessing=prep).read(photos / "cats" / "chelsea.jpg")
    scores = model.predict_on_batch(x[None])[0]
    assert top["label"] == ("ant", "bee", "cat")[int(np.argmax(scores))]
    assert abs(top["score"] - scores.max()) <= 1e-4


def test_features_prepare_images_as_the_model_file_says(capsys, tmp_path, photos):
    """A feature model keeps the preprocessing of the model it reads (issue 15, item 1)."""
    from anyshape.model_info import save_model

    model = _small(4, classes=3, input_shape=(40, 40, 3))
    path = tmp_path / "odd.keras"
    save_model(model, path, ModelInfo(ODD_PREP, ("ant", "bee", "cat")))
    out = tmp_path / "f.npz"
    code, _, err = _run(capsys, "features", photos / "cats", photos / "coffee.png", "--model", path, "-o", out, "-q")
    assert code == 0, err
    with np.load(out) as z:
        feats, paths = z["features"], list(z["paths"])
    reader = engine.ImageReader(size=(40, 40), preprocessing=ODD_PREP)
    want = engine.feature_model(model).predict_on_batch(np.stack([reader.read(p) for p in paths]))
    assert np.abs(feats - want).max() <= 1e-4
    assert engine.read_manifest(out).options["preprocessing"] == json.loads(json.dumps(ODD_PREP.to_dict()))


def test_bench_prints_both_engines_and_the_ratio(capsys):
    code, out, err = _run(capsys, "bench", *SMALL_ARGS, "--input-shape", "40,40,3", "--batch", "2", "--seconds", "0.1")
    assert code == 0, err
    lines = out.splitlines()
    assert "keras" in lines[1] and "onnxruntime" in lines[1]
    assert lines[2].split()[0] == "2" and lines[2].endswith("x")


def test_bench_times_a_fixed_size_model_at_its_size(capsys, tmp_path):
    """bench --model used to time every model at 299 x 299 x 3: a 75 x 75 x 1 model (an int8 file of
    the digits model) failed inside the engine. Here a 40 x 40 x 1 model of the small network, whose
    minimum (31 px) is the rule for a size no model takes, not InceptionV3's collapse table."""
    onnx_file = tmp_path / "digits.onnx"
    code, _, err = _run(
        capsys,
        "export",
        *SMALL_ARGS,
        "--weights",
        "none",
        "--input-shape",
        "40,40,1",
        "--include-top",
        "--classes",
        10,
        "-o",
        onnx_file,
    )
    assert code == 0, err
    code, out, err = _run(capsys, "bench", "--model", onnx_file, "--batch", "2", "--seconds", "0.1")
    assert code == 0, err
    assert out.splitlines()[0].startswith("input 40x40,") and out.splitlines()[2].split()[0] == "2", out
    code, _, err = _run(capsys, "bench", "--model", onnx_file, "--input-shape", "150,150,1", "--seconds", "0.1")
    assert code == 2 and "takes 40x40 images only" in err and "Traceback" not in err
    code, _, err = _run(capsys, "bench", "--model", onnx_file, "--input-shape", "20,20,1")
    assert code == 1 and "at least 31" in err  # a size no model takes, as without --model


def test_usage_errors_say_what_to_do(capsys, photos, small_top, small_notop):
    code, _, err = _run(capsys, "features", photos, "--weights", "none", "--out", "/tmp/x.csv")
    assert code == 2 and ".npy, .npz, .parquet" in err
    code, _, err = _run(capsys, "predict", photos / "nope.jpg", "--model", small_top[0], "--size", S, "-q")
    assert code == 1 and "no such file" in err
    code, _, err = _run(
        capsys,
        "features",
        photos,
        "--model",
        small_notop[0],
        "--layer",
        "conv_pw_5_relu",
        "--pooling",
        "none",
        "--out",
        photos.parent / "maps.npz",
    )
    assert code == 2 and "--size N" in err and not (photos.parent / "maps.npz").exists()


def test_failures_say_what_failed_and_what_to_do_in_cli_words(capsys, tmp_path, monkeypatch):
    """A file this user may not read says "permission denied" (it said "corrupt or truncated
    image"); a .npy array and an image over --max-pixels get hints a CLI user can follow."""
    import builtins
    import errno
    from pathlib import Path

    folder = tmp_path / "in"
    folder.mkdir()
    Image.fromarray(skimage_data.chelsea()).save(folder / "good.jpg")
    Image.fromarray(skimage_data.chelsea()).save(folder / "locked.jpg")
    Image.fromarray(skimage_data.astronaut()).save(folder / "big.png")  # 512 x 512 px
    np.save(folder / "scan.npy", np.zeros((80, 80, 5), np.float32))
    real_open = builtins.open

    def open_(file, *args, **kwargs):  # what the OS answers for a chmod 000 file (root is never refused)
        if isinstance(file, (str, Path)) and Path(file).name == "locked.jpg":
            raise PermissionError(errno.EACCES, "Permission denied", str(file))
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", open_)
    args = ["predict", folder, *SMALL_ARGS, "--weights", "none", "--size", S, "--max-pixels", 200_000, "-q"]
    code, _, err = _run(capsys, *args)
    assert code == 1, err
    failed = {line.split()[3].rstrip(":").rsplit("/", 1)[-1]: line for line in err.splitlines() if "FAILED" in line}
    assert sorted(failed) == ["big.png", "locked.jpg", "scan.npy"], err
    assert "permission denied" in failed["locked.jpg"] and "corrupt" not in failed["locked.jpg"]
    assert "raise the limit: --max-pixels" in failed["big.png"] and "max_pixels" not in failed["big.png"]
    # a .npy array is read (as training reads it): a 5-channel one fails for a 3-channel model, saying both
    assert "the array has 5 channels, the model takes 3" in failed["scan.npy"]


# --- reliability: Ctrl-C keeps work, offline weights and resumes answer in one line -------------


def _main_without_traceback(capsys, *argv):
    try:
        code = cli.main([str(a) for a in argv])
    except BaseException as e:  # noqa: BLE001 -- anything escaping main is a traceback for the user
        pytest.fail(f"{type(e).__name__} escaped anyshape {argv[0]}: {e}")
    out, err = capsys.readouterr()
    assert "Traceback" not in err
    return code, out, err


def test_ctrl_c_during_predict_prints_the_rows_already_classified(capsys, photos, small_top, monkeypatch):
    original = engine.Predictor.run_many
    calls = []

    def run_then_interrupt(self, batches):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return original(self, batches)

    monkeypatch.setattr(engine.Predictor, "run_many", run_then_interrupt)
    code, out, err = _main_without_traceback(
        capsys,
        "predict",
        photos,
        "--model",
        small_top[0],
        "--size",
        S,
        "--batch-size",
        2,
        "--format",
        "json",
        "-q",
    )
    rows = json.loads(out)
    assert code == 130 and len(rows) == 2 and all(r["predictions"] for r in rows)
    assert len(err.strip().splitlines()) == 1 and "interrupted" in err and "2 image(s)" in err


def test_offline_default_weights_give_one_message_on_every_verb(capsys, photos, tmp_path, monkeypatch):
    import urllib.error
    import urllib.request

    def offline(*a, **k):
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras_home"))
    monkeypatch.setattr(urllib.request, "urlopen", offline)
    for argv in (
        ["predict", photos, "--size", SIZE, "-q"],
        ["features", photos, "--size", SIZE, "--out", tmp_path / "f.npz", "-q"],
        ["export", "-o", tmp_path / "m.onnx"],
    ):
        code, _, err = _main_without_traceback(capsys, *argv)
        assert code == 2 and "could not download" in err and "offline" in err, (argv, err)
        assert len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "f.npz").exists() and not (tmp_path / "m.onnx").exists()


def test_features_resume_with_other_options_is_refused_and_the_original_still_finishes(
    capsys, photos, small_notop, tmp_path, monkeypatch
):
    out = tmp_path / "r.npz"
    original_add = engine.FeatureStore.add

    def add_then_interrupt(self, results):
        original_add(self, results)
        raise KeyboardInterrupt

    monkeypatch.setattr(engine.FeatureStore, "add", add_then_interrupt)
    args = ["features", photos, "--model", small_notop[0], "--size", S, "--batch-size", 2, "--out", out, "-q"]
    code, _, err = _main_without_traceback(capsys, *args)
    assert code == 130 and "--resume" in err
    monkeypatch.setattr(engine.FeatureStore, "add", original_add)
    chunks = sorted((tmp_path / "r.npz.partial").glob("chunk-*"))
    other = tmp_path / "other.keras"  # the same network with other weights
    save_model(_small(9, include_top=False), other)

    for changed in (["--layer", "conv_pw_11_relu"], ["--pooling", "max"], ["--model", other], ["--size", "50"]):
        argv = _replace_option(args, *changed)
        code, _, err = _main_without_traceback(capsys, *argv, "--resume")
        assert code == 2 and "cannot resume" in err and changed[0].lstrip("-") in err, (changed, err)
        assert sorted((tmp_path / "r.npz.partial").glob("chunk-*")) == chunks and not out.exists()

    code, _, err = _main_without_traceback(capsys, *args, "--resume")
    assert code == 0 and "already done" in err
    with np.load(out) as z:
        assert len(set(z["paths"])) == len(z["paths"]) == 6


def _replace_option(argv, flag, value):
    argv = list(argv)
    if flag in argv:
        argv[argv.index(flag) + 1] = value
    else:
        argv += [flag, value]
    return argv


def test_resume_of_a_random_network_is_refused(capsys, photos, tmp_path, monkeypatch):
    """--weights none is a new network every run; a resume with another --arch or --option is refused
    naming both networks (the manifest records the network), before any model is built."""
    out = tmp_path / "rand.npz"
    original_add = engine.FeatureStore.add

    def add_then_interrupt(self, results):
        original_add(self, results)
        raise KeyboardInterrupt

    monkeypatch.setattr(engine.FeatureStore, "add", add_then_interrupt)
    args = ["features", photos / "cats", *SMALL_ARGS, "--weights", "none", "--size", S, "--out", out, "-q"]
    assert _main_without_traceback(capsys, *args)[0] == 130
    monkeypatch.setattr(engine.FeatureStore, "add", original_add)
    code, _, err = _main_without_traceback(capsys, *args, "--resume")
    assert code == 2 and "new random network" in err
    assert RunManifest.read(tmp_path / "rand.npz.partial" / "manifest.json").options["arch"] == "mobilenet"

    def no_model_is_built(*a, **k):
        raise AssertionError("a refused resume built a model")

    monkeypatch.setattr(engine, "load_or_build", no_model_is_built)
    code, _, err = _main_without_traceback(capsys, *_replace_option(args, "--arch", "mobilenet_v2"), "--resume")
    assert code == 2 and "cannot resume" in err and "arch: mobilenet_v2 now, mobilenet in the interrupted run" in err, (
        err
    )
    code, _, err = _main_without_traceback(capsys, *_replace_option(args, "--option", "alpha=0.5"), "--resume")
    assert code == 2 and "MobileNet(alpha=0.5) now, MobileNet(alpha=0.25) in the interrupted run" in err, err


def test_per_file_reasons_speak_the_cli(capsys, bad_folder, small_top):
    code, _, err = _main_without_traceback(
        capsys, "predict", bad_folder[0] / "tiny.png", "--model", small_top[0], "--size", S, "-q"
    )
    assert code == 1 and "pass --upscale to enlarge" in err and "upscale=True" not in err


# --- reliability, second pass: odd file names, unreadable folders, NaN, enlarging past --max-pixels --


def test_a_folder_that_cannot_be_read_is_a_failure(capsys, photos, small_top, small_notop, tmp_path, monkeypatch):
    """chmod 000 on a folder (faked where the listing happens: the tests run as root, who reads it
    anyway): `predict dir` reports it and exits 1, as `predict locked/` does, not "0 file(s)"."""
    import os
    import shutil

    shutil.copytree(photos, tmp_path / "photos")
    locked = tmp_path / "photos" / "cats"
    scandir = os.scandir

    def refusing(path="."):  # Keras lists folders by descriptor while it loads a model: those pass
        if not isinstance(path, int) and os.fspath(path) == str(locked):
            raise PermissionError(13, "Permission denied", os.fspath(path))
        return scandir(path)

    monkeypatch.setattr(os, "scandir", refusing)
    model = small_top[0]
    code, out, err = _main_without_traceback(capsys, "predict", tmp_path / "photos", "--model", model, "--size", S)
    assert code == 1 and f"FAILED {locked}: folder cannot be read (permission denied)" in err
    assert "6 file(s): 5 ok, 1 failed" in err and "chelsea" not in out
    code, out, err = _main_without_traceback(capsys, "predict", locked, "--model", model, "--format", "json", "-q")
    assert code == 1 and json.loads(out) == [
        {"path": str(locked), "predictions": None, "error": f"{locked}: folder cannot be read (permission denied)"}
    ]
    assert "1 file(s): 0 ok, 1 failed" in err
    args = ["features", tmp_path / "photos", "--model", small_notop[0], "--size", S, "--out", tmp_path / "f.npz"]
    code, _, err = _main_without_traceback(capsys, *args)
    assert code == 1 and "folder cannot be read" in err and "wrote 5 row(s)" in err


def test_upscale_cannot_get_past_max_pixels(capsys, small_top, tmp_path):
    """A 1 x 2000 px strip is 2,000 pixels on disk and 31 x 62,000 once upscaled to the small
    network's minimum: --max-pixels bounds the latter (a 60 KB 1 x 20000 PNG used 5.6 GB)."""
    Image.fromarray(np.zeros((1, 2000, 3), np.uint8)).save(tmp_path / "strip.png")
    args = ["predict", tmp_path / "strip.png", "--model", small_top[0], "--size", S, "--upscale"]
    code, _, err = _main_without_traceback(capsys, *args, "--max-pixels", 1_000_000)
    assert code == 1 and "1x2000 px upscaled would be 31x62000 = 1922000 pixels, over the limit of 1000000" in err
    assert "pass a larger --max-pixels if you trust this image" in err and "max_pixels" not in err


def test_non_finite_scores_and_features_are_failures(capsys, photos, tmp_path):
    """A model whose outputs hold NaN: every image is a failed row (exit 1), not "ok", and the json
    holds no NaN (which is not JSON)."""
    broken = _small(0, include_top=True)
    classifier = broken.get_layer(get_arch("mobilenet").classifier[0])
    kernel, bias = classifier.get_weights()
    kernel[..., 0, 0] = np.nan
    classifier.set_weights([kernel, bias])
    save_model(broken, tmp_path / "nan.keras")
    code, out, err = _main_without_traceback(
        capsys, "predict", photos / "cats", "--model", tmp_path / "nan.keras", "--size", S, "--format", "json"
    )
    rows = json.loads(out, parse_constant=lambda c: pytest.fail(f"{c} in the json output"))
    assert code == 1 and "1 file(s): 0 ok, 1 failed" in err and "NaN or Inf" in err
    assert rows[0]["predictions"] is None and "holds NaN or Inf" in rows[0]["error"]
    backbone = _small(0, include_top=False)
    backbone.set_weights([np.full_like(w, np.inf) if w.ndim == 4 else w for w in backbone.get_weights()])
    save_model(backbone, tmp_path / "inf.keras")
    args = ["features", photos, "--model", tmp_path / "inf.keras", "--size", S, "--out", tmp_path / "f.npz"]
    code, _, err = _main_without_traceback(capsys, *args)
    assert code == 1 and "6 file(s): 0 ok, 6 failed" in err and "wrote 0 row(s)" in err


# names a file system allows that a line- or UTF-8-minded writer mangles; one is not UTF-8
ODD_NAMES = ["cr\rname.png", "lf\nname.png", "crlf\r\n.png", '"quoted".png', " space.png", "tab\t.png", "ünï,x.png"]
NOT_UTF8 = b"caf\xe9.png"


@pytest.fixture(scope="module")
def odd_names(tmp_path_factory):
    """A folder of images whose names hold CR, LF, quotes, a leading space, a tab, a comma, and
    bytes that are not UTF-8; returns (folder, the names as Python holds them)."""
    import os

    root = tmp_path_factory.mktemp("odd")
    rng = np.random.default_rng(3)
    names = ODD_NAMES + [os.fsdecode(NOT_UTF8)]
    for name in names:
        with open(os.fsencode(root) + b"/" + os.fsencode(name), "wb") as f:
            Image.fromarray(rng.integers(0, 255, (80, 84, 3), dtype=np.uint8)).save(f, format="PNG")
    return root, sorted(str(root / n) for n in names)


def _table_paths(text: str) -> list[str]:
    """The file names of a predict table: the lines that are not ranks, JSON strings decoded."""
    return [
        json.loads(line) if line.startswith('"') else line for line in text.split("\n") if line[:2] not in ("  ", "")
    ]


def test_every_predict_format_gives_back_any_file_name(capfdbinary, odd_names, small_top):
    """table, json and csv name each file exactly (CR and LF split csv rows before; a name that is
    not UTF-8 failed the print), and the csv on stdout carries the name's own bytes."""
    import os

    root, names = odd_names
    rows, summary = engine.predict_paths(engine.Predictor(small_top[1]), [root], size=40, top=2)
    assert summary.ok == len(names) and sorted(r["path"] for r in rows) == names
    assert sorted(r["path"] for r in json.loads(engine.format_predictions(rows, "json"))) == names
    assert sorted(_table_paths(engine.format_predictions(rows, "table"))) == names
    code = cli.main(["predict", str(root), "--model", str(small_top[0]), "--size", S, "--top", "2", "--format", "csv"])
    out = capfdbinary.readouterr().out
    assert code == 0
    table = list(csv.DictReader(io.StringIO(out.decode("utf-8", "surrogateescape"), newline="")))
    assert len(table) == 2 * len(names) and sorted({r["path"] for r in table}) == names
    assert os.fsencode(root) + b"/" + NOT_UTF8 + b"," in out  # the bytes as they are on disk
    code = cli.main(["predict", str(root), "--model", str(small_top[0]), "--size", S, "--top", "1"])
    out = capfdbinary.readouterr().out
    assert code == 0 and sorted(_table_paths(out.decode("utf-8"))) == names  # odd names as JSON strings


def test_every_feature_file_gives_back_any_file_name(odd_names, small_notop, tmp_path):
    """.npz and .npy keep every name (the .npy listing misaligned every row after a name with a line
    break); Parquet text is UTF-8, so a .parquet run refuses a name that is not, before any work."""
    import os

    root, names = odd_names
    predictor = engine.Predictor(engine.feature_model(small_notop[1]))
    reference = None
    for suffix in (".npz", ".npy"):
        summary = engine.extract_features(predictor, [root], tmp_path / f"f{suffix}", size=40)
        features, paths = engine.read_features(tmp_path / f"f{suffix}")
        assert summary.ok == len(names) and paths == names
        reference = features if reference is None else reference
        np.testing.assert_array_equal(features, reference)
    assert os.fsencode(root) + b"/" + NOT_UTF8 in [os.fsencode(p) for p in paths]  # the bytes come back
    with pytest.raises(
        ValueError, match=r"1 file name\(s\) are not valid UTF-8, .*caf\\xe9.png; rename them, or write"
    ):
        engine.extract_features(predictor, [root], tmp_path / "f.parquet", size=40)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.npy", "f.npy.manifest.json", "f.npy.paths.jsonl", "f.npz"]
    utf8 = [i for i, n in enumerate(names) if "caf" not in n]
    engine.extract_features(predictor, [names[i] for i in utf8], tmp_path / "f.parquet", size=40)
    features, paths = engine.read_features(tmp_path / "f.parquet")
    assert paths == [names[i] for i in utf8]
    np.testing.assert_array_equal(features, reference[utf8])


# --- every verb on other networks: --arch and --option, and a model file that says its network ----

ARCH_RUNS = [  # (network, its own options): three families, three preprocessings (tf, raw, caffe)
    ("mobilenet", ["--option", "alpha=0.25"]),
    ("mobilenet_v3_small", ["--option", "alpha=0.75"]),
    ("resnet50", []),
]


@pytest.mark.parametrize(("arch", "options"), ARCH_RUNS, ids=[a for a, _ in ARCH_RUNS])
def test_every_verb_runs_the_network_arch_names(arch, options, capsys, photos, tmp_path):
    """export, predict, features, bench and quantize build --arch with its --option; the exported
    .keras file records its network and that network's preprocessing, so predict and features
    --model need no --arch and prepare the images as its network expects (caffe for ResNet50, raw
    pixels for MobileNetV3, [-1, 1] for MobileNet), and --layer takes that network's blocks."""
    from anyshape.model_info import load_model, read_keras_info

    a = get_arch(arch)
    top = tmp_path / f"{arch}.keras"
    code, _, err = _run(
        capsys, "export", "--arch", arch, *options, "--weights", "none", "--include-top", "--classes", 10,
        "--input-shape", "none,none,3", "-o", top,
    )  # fmt: skip
    assert code == 0, err
    info = read_keras_info(top)
    assert info.architecture == arch and info.data_config.mode == a.preprocessing
    if options:  # the --option is in the network's recorded Config
        assert info.config.alpha == float(options[1].split("=")[1])
    model = load_model(top)

    code, out, err = _run(
        capsys, "predict", photos / "cats", photos / "coffee.png", "--model", top, "--size", 48, "--top", 2,
        "--format", "json", "-q",
    )  # fmt: skip
    assert code == 0, err
    reader = engine.ImageReader(size=(48, 48), preprocessing=info.data_config)
    for row in json.loads(out):
        scores = model.predict_on_batch(reader.read(row["path"])[None])[0]
        best = row["predictions"][0]
        assert best["label"] == f"class_{int(np.argmax(scores))}" and abs(best["score"] - scores.max()) <= 1e-4

    layer = a.feature_points[2]  # a stage of this network, named as its record names it
    feats = tmp_path / "f.npz"
    code, _, err = _run(
        capsys, "features", photos / "cats", photos / "coffee.png", "--model", top, "--layer", layer,
        "--size", 48, "-o", feats, "-q",
    )  # fmt: skip
    assert code == 0, err
    got, paths = engine.read_features(feats)
    want = engine.feature_model(model, layer, "avg").predict_on_batch(np.stack([reader.read(p) for p in paths]))
    assert got.shape == (2, model.get_layer(layer).output.shape[-1]) and np.abs(got - want).max() <= 1e-4
    assert engine.read_manifest(feats).options["arch"] == arch

    built = tmp_path / "built.npy"  # the same verb building the network from --arch and --option
    code, _, err = _run(
        capsys, "features", photos / "cats", "--arch", arch, *options, "--weights", "none", "--layer", layer,
        "--size", 48, "-o", built, "-q",
    )  # fmt: skip
    assert code == 0 and np.load(built).shape == (1, got.shape[1]), err
    assert engine.read_manifest(built).options["preprocessing"]["mode"] == a.preprocessing

    code, _, err = _run(capsys, "features", photos, "--model", top, "--layer", "mixed7", "-o", tmp_path / "x.npz")
    assert code == 2 and f"not a feature layer of {arch}" in err and not (tmp_path / "x.npz").exists()
    assert all(name in err for name in engine.feature_layers(arch)), err

    if arch != "resnet50":  # bench and quantize on the two smaller networks (ResNet50 is 25 M parameters)
        code, out, err = _run(
            capsys, "bench", "--arch", arch, *options, "--input-shape", "48,48,3", "--batch", 1, "--seconds", 0.05
        )
        assert code == 0 and out.startswith("input 48x48,"), err
        q = tmp_path / "q.onnx"
        if arch == "mobilenet":  # from the saved model
            code, _, err = _run(capsys, "quantize", top, "--calibrate", photos / "cats", "-o", q, "--size", 48, "-q")
        else:  # from --arch and --option
            code, _, err = _run(
                capsys, "quantize", "none", "--arch", arch, *options, "--calibrate", photos / "cats",
                "-o", q, "--size", 48, "-q",
            )  # fmt: skip
        assert code == 0, err
        graph = engine.GraphModel.load(q)
        assert (graph.precision, graph.architecture, graph.include_top) == ("int8", arch, True)
        assert graph.preprocessing.mode == a.preprocessing
        recipe, signed = recipe_for(arch), signed_activations_for(arch)  # engine/quantize.py's tables
        assert (graph.fidelity["recipe"], graph.fidelity["signed_activations"]) == (recipe, signed)
        if arch == "mobilenet":  # its depthwise convolutions and 1x1-conv head (the last Conv) in float
            import onnx

            assert recipe == "conv+matmul, depthwise+pooled float"
            proto = onnx.load(str(q)).graph
            made_by = {out: n.op_type for n in proto.node for out in n.output}
            convs = [n for n in proto.node if n.op_type == "Conv"]
            int8 = {n.name for n in convs if made_by.get(n.input[1]) == "DequantizeLinear"}
            grouped = {n.name for n in convs if any(at.name == "group" and at.i > 1 for at in n.attribute)}
            assert int8 and grouped and not grouped & int8 and convs[-1].name not in int8


def test_predict_refuses_a_model_without_its_top(capsys, photos, small_notop, tmp_path):
    """A backbone's outputs are features, not class scores: predict says so and points to features,
    for a .keras file and for its .onnx export alike (it printed features as scores, exit 0)."""
    onnx_file = tmp_path / "backbone.onnx"
    engine.export_model(engine.feature_model(small_notop[1]), onnx_file)
    for model in (small_notop[0], onnx_file):
        code, out, err = _main_without_traceback(capsys, "predict", photos / "cats", "--model", model, "--size", S)
        assert code == 2 and out == "" and "has no classifier" in err and "anyshape features" in err, err


def test_a_model_file_says_its_network(capsys, photos, small_top, tmp_path):
    """--model needs no --arch; an --arch that names another network is refused naming both, in the
    CLI and in the Python API; load_or_build builds any network at its default size with its top."""
    code, _, err = _main_without_traceback(
        capsys, "predict", photos / "cats", "--model", small_top[0], "--arch", "resnet50", "--size", S
    )
    assert code == 2 and "holds a mobilenet network, but --arch resnet50" in err, err
    code, _, err = _main_without_traceback(
        capsys, "predict", photos / "cats", "--model", small_top[0], "--arch", "MobileNet", "--size", S, "-q"
    )
    assert code == 0, err  # keras.applications' name of the same network
    with pytest.raises(ValueError, match="holds a mobilenet network, but arch='inception_v3'") as info:
        engine.load_or_build(small_top[0], arch="inception_v3")  # in Python's words: no flag
    assert "--" not in str(info.value) and info.value.parameter == "arch", info.value
    with pytest.raises(ValueError, match="complete model; weights would not be used"):
        engine.load_or_build(small_top[0], weights=None)
    code, _, err = _main_without_traceback(capsys, "predict", photos, "--model", small_top[0], "--option", "alpha=1")
    assert code == 2 and "--option" in err and "complete model" in err
    built = engine.load_or_build(arch="mobilenet", weights=None, include_top=True, **SMALL)
    assert tuple(built.inputs[0].shape[1:]) == (224, 224, 3)  # MobileNet's default size, as keras.applications
    free = engine.load_or_build(arch="mobilenet", size=40, weights=None, include_top=True, **SMALL)
    assert tuple(free.inputs[0].shape[1:]) == (None, None, 3)
    assert engine.Predictor(free, engine="keras").min_size == SMALL_MIN
    code, _, err = _main_without_traceback(capsys, "predict", photos, *SMALL_ARGS, "--option", "depth=2")
    assert code == 2 and "--arch mobilenet has no option depth" in err and "alpha" in err
