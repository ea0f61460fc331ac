"""anyshape.engine.manifest and the rules around a run's outputs: what a `features` run
computes is recorded and a resume that differs is refused before any work; one file given two
ways is one row; nothing the caller did not name is overwritten or deleted; a file's suffix and
its content agree; sizes below 75 px are refused on every engine before any image is read;
only image errors become per-file failures.

Tiny on purpose: 75 px images, a handful of them, one backbone built per module.
"""

import json
import os

import keras
import numpy as np
import pytest
from PIL import Image

from anyshape import engine
from anyshape.engine.feature_store import FeatureStore, read_manifest
from anyshape.engine.manifest import ResumeMismatch, RunManifest
from anyshape.inception_v3 import InceptionV3
from anyshape.shapes import InvalidInputShape

pytest.importorskip("onnxruntime")


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    root = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(0)
    for i in range(5):
        Image.fromarray(rng.integers(0, 255, (80 + 4 * i, 90, 3), dtype=np.uint8)).save(root / f"im{i}.png")
    return root


@pytest.fixture(scope="module")
def backbone():
    return InceptionV3(weights=None, include_top=False, input_shape=(None, None, 3))


@pytest.fixture(scope="module")
def predictor(backbone):
    return engine.Predictor(engine.feature_model(backbone, "avg_pool", "avg"))


def _interrupt_after_first_batch(monkeypatch):
    original = FeatureStore.add
    calls = []

    def add(self, results):
        original(self, results)
        calls.append(1)
        if len(calls) == 1:
            raise KeyboardInterrupt

    monkeypatch.setattr(FeatureStore, "add", add)
    return original


def _chunks(out):
    return sorted(p.name for p in out.parent.glob(out.name + ".partial/chunk-*.npz"))


def test_resume_with_other_options_or_weights_is_refused_before_any_work(images, predictor, tmp_path, monkeypatch):
    out = tmp_path / "f.npz"
    original = _interrupt_after_first_batch(monkeypatch)
    with pytest.raises(engine.RunInterrupted):
        engine.extract_features(predictor, [images], out, size=75, batch_size=2, options={"layer": "avg_pool"})
    monkeypatch.setattr(FeatureStore, "add", original)
    before = _chunks(out)
    assert len(before) == 1

    def no_work(*a, **k):
        raise AssertionError("a refused resume must not compute anything")

    monkeypatch.setattr(engine.runs, "run_images", no_work)
    with pytest.raises(ResumeMismatch, match="size"):
        engine.extract_features(predictor, [images], out, size=90, resume=True, options={"layer": "avg_pool"})
    with pytest.raises(ResumeMismatch, match="layer"):
        engine.extract_features(predictor, [images], out, size=75, resume=True, options={"layer": "mixed10"})
    # the same options with another (random) network: only the weights digest tells
    other = engine.Predictor(
        engine.feature_model(
            InceptionV3(weights=None, include_top=False, input_shape=(None, None, 3)), "avg_pool", "avg"
        )
    )
    with pytest.raises(ResumeMismatch, match="weights differ"):
        engine.extract_features(other, [images], out, size=75, resume=True, options={"layer": "avg_pool"})
    assert _chunks(out) == before and not out.exists()  # the interrupted run's rows are untouched

    monkeypatch.undo()
    summary = engine.extract_features(predictor, [images], out, size=75, resume=True, options={"layer": "avg_pool"})
    assert summary.skipped == 2 and summary.ok == 3
    with np.load(out) as z:
        assert len(set(z["paths"])) == len(z["paths"]) == 5
        recorded = RunManifest.from_json(json.loads(str(z["manifest"])))
    assert recorded.options["size"] == [75, 75] and recorded.options["layer"] == "avg_pool"
    assert recorded.options["precision"] == "fp32" and recorded.options["task"] == "features"
    assert recorded.digest == engine.weights_digest(predictor.model)


def test_resume_with_another_precision_on_the_same_engine_is_refused(images, predictor, tmp_path, monkeypatch):
    """OpenVINO fp32, interrupted, resumed as OpenVINO bf16: the same engine, model and options but
    other numbers. bf16 is chosen as on a CPU with native bf16 (the flags are given: the machine
    running the test may lack it); the refusal comes before that predictor runs anything."""
    pytest.importorskip("openvino")
    model = predictor.model
    fp32 = engine.Predictor(model, engine="openvino", precision="fp32")
    out = tmp_path / "p.npz"
    original = _interrupt_after_first_batch(monkeypatch)
    with pytest.raises(engine.RunInterrupted):
        engine.extract_features(fp32, [images], out, size=75, batch_size=2)
    monkeypatch.setattr(FeatureStore, "add", original)
    before = _chunks(out)
    bf16 = engine.Predictor(model, engine="openvino", precision="bf16", cpu_flags=frozenset({"avx512_bf16"}))
    assert (bf16.engine, bf16.precision) == ("openvino", "bf16")
    with pytest.raises(ResumeMismatch) as refused:
        engine.extract_features(bf16, [images], out, size=75, resume=True)
    assert "precision: bf16 now, fp32 in the interrupted run" in str(refused.value)
    assert "engine" not in str(refused.value) and "weights differ" not in str(refused.value)  # the one difference
    assert _chunks(out) == before and not out.exists()
    assert engine.extract_features(fp32, [images], out, size=75, resume=True).skipped == 2  # fp32 resumes


def test_a_model_file_is_known_by_its_graph(predictor):
    """A model file (an .onnx GraphModel: no Keras weights to hash) is recorded by its ONNX graph:
    the same file read again may resume, a file with one weight changed may not."""
    import dataclasses

    import onnx
    from onnx import numpy_helper

    graph = predictor.graph_model
    proto = onnx.load_from_string(graph.graph)
    first = proto.graph.initializer[0]
    values = numpy_helper.to_array(first).copy()
    values.flat[0] += 1.0
    first.CopyFrom(numpy_helper.from_array(values, first.name))
    file, changed_file = graph.to_bytes(), dataclasses.replace(graph, graph=proto.SerializeToString()).to_bytes()

    def manifest(data):
        return engine.run_manifest(
            engine.Predictor(engine.GraphModel.from_bytes(data)), engine.ImageReader(size=(75, 75))
        )

    recorded = manifest(file)
    assert manifest(file) == recorded
    assert manifest(changed_file).differences(recorded) == ["the model's weights differ from the interrupted run's"]


def test_differences_name_the_options_first_and_the_weights_when_nothing_else_differs():
    from anyshape.cli.options import cli_message

    now = RunManifest({"layer": "mixed7", "weights": "none"}, "digest-1")
    # another layer has other weights too: the option is the difference worth naming, once
    assert now.differences(RunManifest({"layer": "avg_pool", "weights": "none"}, "digest-2")) == [
        "layer: mixed7 now, avg_pool in the interrupted run"
    ]
    (only,) = now.differences(RunManifest({"layer": "mixed7", "weights": "none"}, "digest-2"))
    assert only.startswith("the model's weights differ") and "weights=None builds a new random network" in only
    assert "--weights none builds a new random network" in cli_message(only)  # the CLI's words for it
    assert now.differences(RunManifest({"layer": "mixed7", "weights": "none"}, "digest-1")) == []
    now.check_resume(None, where="a new output")  # nothing recorded: nothing to refuse


def test_a_record_round_trips_through_its_file(tmp_path):
    recorded = RunManifest({"layer": "avg_pool", "size": [75, 75]}, "abc123")
    recorded.write(str(tmp_path / "manifest.json"))  # a str or a Path
    assert RunManifest.read(str(tmp_path / "manifest.json")) == recorded
    assert RunManifest.read(tmp_path / "missing.json") is None
    assert (tmp_path / "manifest.json").read_text().startswith('{\n  "anyshape_manifest": 1,\n')  # indented, for people


@pytest.mark.parametrize("record", ["{}", "[1, 2]", '{"options": 3}', "not json"])
def test_a_damaged_record_refuses_the_resume_in_words(images, predictor, tmp_path, record):
    out = tmp_path / "d.npz"
    partial = tmp_path / "d.npz.partial"
    partial.mkdir()
    (partial / FeatureStore.MANIFEST).write_text(record)
    with pytest.raises(ResumeMismatch, match="cannot be read as the interrupted run's record"):
        engine.extract_features(predictor, [images], out, size=75, resume=True)


def test_a_checkpoint_folder_without_its_record_is_not_resumed(images, predictor, tmp_path):
    out = tmp_path / "old.npz"
    partial = tmp_path / "old.npz.partial"
    partial.mkdir()
    np.savez(
        partial / "chunk-000001.npz",
        features=np.zeros((1, 2048), np.float32),
        paths=np.array([str(images / "im0.png")]),
        keys=np.array([str(images / "im0.png")]),
    )
    with pytest.raises(ResumeMismatch, match="start again with force=True") as e:
        engine.extract_features(predictor, [images], out, size=75, resume=True)
    from anyshape.cli.options import cli_message

    assert cli_message(e.value).endswith("start again with --force")


def test_one_file_given_two_ways_is_one_row_also_across_a_resume(images, predictor, tmp_path, monkeypatch):
    link = tmp_path / "link.png"
    link.symlink_to(images / "im0.png")
    files, _ = engine.find_images([images / "im0.png", link, images / "." / "im0.png", images])
    assert len(files) == 5

    out = tmp_path / "g.npz"
    original = _interrupt_after_first_batch(monkeypatch)
    monkeypatch.chdir(images.parent)
    relative = os.path.relpath(images)
    with pytest.raises(engine.RunInterrupted):
        engine.extract_features(predictor, [relative], out, size=75, batch_size=2)
    monkeypatch.setattr(FeatureStore, "add", original)
    # resumed with the absolute spelling, plus a link to a file already done
    summary = engine.extract_features(predictor, [images, link], out, size=75, resume=True)
    assert summary.skipped == 2
    with np.load(out) as z:
        paths = [str(p) for p in z["paths"]]
    assert len(paths) == 5 and len({os.path.realpath(p) for p in paths}) == 5


def test_npy_side_files_follow_the_rules_of_the_output(images, predictor, tmp_path):
    out = tmp_path / "h.npy"
    listing = tmp_path / "h.npy.paths.jsonl"
    listing.write_text("my own notes\n")
    with pytest.raises(FileExistsError, match="pass force=True") as e:
        engine.extract_features(predictor, [images], out, size=75)
    assert e.value.parameter == "force" and "--" not in str(e.value)
    assert listing.read_text() == "my own notes\n" and not out.exists()
    engine.extract_features(predictor, [images], out, size=75, force=True)
    assert len(listing.read_text().splitlines()) == 5 and read_manifest(out).options["size"] == [75, 75]


def test_force_never_deletes_what_the_run_did_not_write(images, predictor, tmp_path):
    out = tmp_path / "k.npz"
    partial = tmp_path / "k.npz.partial"
    partial.mkdir()
    (partial / "thesis.tex").write_text("years of work")
    with pytest.raises(FileExistsError, match="not an interrupted run"):
        engine.extract_features(predictor, [images], out, size=75, force=True)
    assert (partial / "thesis.tex").read_text() == "years of work"
    (tmp_path / "dir.npz").mkdir()
    with pytest.raises(FileExistsError, match="folder"):
        engine.extract_features(predictor, [images], tmp_path / "dir.npz", size=75, force=True)


def test_a_run_writing_into_the_folder_it_reads_skips_its_own_files(images, predictor, tmp_path):
    import shutil

    folder = tmp_path / "in"
    shutil.copytree(images, folder)
    out = folder / "feats.npz"
    for force in (False, True):  # the second run finds the first one's output in its folder
        summary = engine.extract_features(predictor, [folder], out, size=75, force=force)
        assert summary.exit_code == 0 and summary.total == 5, summary.failed


def test_every_output_format_carries_the_manifest(images, predictor, tmp_path):
    pytest.importorskip("pyarrow")
    for suffix in (".npz", ".npy", ".parquet"):
        out = tmp_path / f"m{suffix}"
        engine.extract_features(predictor, [images / "im1.png"], out, size=75, options={"layer": "avg_pool"})
        m = read_manifest(out)
        assert m.options["layer"] == "avg_pool" and m.digest == engine.weights_digest(predictor.model)
        assert not (tmp_path / f"m{suffix}.partial").exists()


@pytest.mark.parametrize("engine_name", ["keras", "onnxruntime"])
def test_sizes_below_75_are_refused_on_every_engine_before_any_image(backbone, images, engine_name, monkeypatch):
    pred = engine.Predictor(engine.feature_model(backbone, "avg_pool", "avg"), engine=engine_name)

    def no_work(*a, **k):
        raise AssertionError("no image may be run at an invalid size")

    monkeypatch.setattr(engine.runs, "run_images", no_work)
    for size in (50, "74", "80,60"):
        with pytest.raises(InvalidInputShape, match="at least 75"):
            engine.make_reader(pred, size)
        with pytest.raises(InvalidInputShape, match="at least 75"):
            engine.predict_paths(pred, [images], size=size)


def test_a_bug_in_decoding_stops_the_run_instead_of_failing_every_file(images, predictor, monkeypatch):
    def buggy_read(self, path):
        raise TypeError("unsupported operand type(s)")  # a code bug, not a bad file

    monkeypatch.setattr(engine.ImageReader, "read", buggy_read)
    reader = engine.ImageReader(size=(75, 75))
    with pytest.raises(TypeError):
        list(engine.run_images(predictor, reader, sorted(images.iterdir())))


def test_export_suffix_and_content_agree(tmp_path):
    check = engine.check_export_path
    assert check(tmp_path / "m.onnx") == "onnx" and check(tmp_path / "m.keras") == "keras"
    assert check(tmp_path / "saved") == "tf_saved_model"
    with pytest.raises(ValueError, match="suffix"):
        check(tmp_path / "m.keras", "onnx")
    with pytest.raises(ValueError, match="suffix"):
        check(tmp_path / "m.h5")
    (tmp_path / "a_dir.onnx").mkdir()
    with pytest.raises(FileExistsError, match="folder"):
        check(tmp_path / "a_dir.onnx", force=True)
    photos = tmp_path / "photos"
    photos.mkdir()
    (photos / "holiday.jpg").write_bytes(b"precious")
    with pytest.raises(FileExistsError, match="not a TF SavedModel"):
        check(photos, "tf_saved_model", force=True)
    assert (photos / "holiday.jpg").read_bytes() == b"precious"

    inputs = keras.Input((4,))
    tiny = keras.Model(inputs, keras.layers.Dense(2)(inputs))
    path = engine.export_model(tiny, tmp_path / "t.keras")  # the format follows the suffix
    assert keras.saving.load_model(path).output.shape[-1] == 2
    # an existing output, in the words of the interface called: force=True in Python, --force in the CLI
    from anyshape.cli.options import cli_message
    from anyshape.errors import OutputExistsError

    with pytest.raises(OutputExistsError, match=r"t\.keras exists; pass force=True to overwrite it$") as e:
        engine.export_model(tiny, path)
    assert e.value.parameter == "force" and isinstance(e.value, FileExistsError) and "--" not in str(e.value)
    assert cli_message(e.value).endswith("t.keras exists; pass --force to overwrite it")
    with pytest.raises(ValueError, match=r"fmt must be one of .* got 'h5'") as e:
        engine.export_model(tiny, tmp_path / "u.keras", "h5")
    assert e.value.parameter == "fmt" and "--format must be one of" in cli_message(e.value)
