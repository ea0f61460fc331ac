"""anyshape.distributed on a real local Ray (one per module) and a real S3 server (moto, 127.0.0.1).

Small images (75-90 px), few of them, and a small network (MobileNet at a quarter width, a
registered network whose minimum is 31 px) keep this module short on 2 cores.
"""

from __future__ import annotations

import os
import signal
import sys
import threading

import numpy as np
import pytest
from PIL import Image

ray = pytest.importorskip("ray")
pa = pytest.importorskip("pyarrow")
pytest.importorskip("moto.server")  # conftest's `s3`

from anyshape import create_model, distributed, engine  # noqa: E402
from anyshape.engine.manifest import ResumeMismatch  # noqa: E402
from anyshape.engine.runs import RunInterrupted  # noqa: E402

LOCAL_RAY_WITH_S3 = True  # conftest's `local_ray` starts conftest's `s3` (moto) first
N_GOOD = 10
SMALL_ARGS = ["--arch", "mobilenet", "--option", "alpha=0.25"]  # the small network on the command line


def _small(**kwargs):
    kwargs.setdefault("input_shape", (None, None, 3))
    return create_model("mobilenet", weights=None, alpha=0.25, **kwargs)


def _write_images(root):
    rng = np.random.default_rng(0)
    root.mkdir(parents=True, exist_ok=True)
    for i in range(N_GOOD):
        h, w = 75 + 2 * i, 90 - i
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(root / f"img{i:02d}.png")
    (root / "notes.txt").write_text("not an image")
    Image.fromarray(rng.integers(0, 256, (20, 20, 3), dtype=np.uint8)).save(root / "tiny.png")  # below 31 px
    good = (root / "img00.png").read_bytes()
    (root / "truncated.png").write_bytes(good[: len(good) // 2])
    return root


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    return _write_images(tmp_path_factory.mktemp("distributed") / "photos")


@pytest.fixture(scope="module")
def backbone():
    return _small(include_top=False)


@pytest.fixture(scope="module")
def feature_predictor(backbone):
    return engine.Predictor(engine.feature_model(backbone, "avg_pool", "avg"))


def _rows(out):
    table = distributed.read_output(out)
    return {
        p: (f, e)
        for p, f, e in zip(
            table.column("path").to_pylist(), table.column("features").to_pylist(), table.column("error").to_pylist()
        )
    }


def test_features_equal_the_local_run_and_bad_images_become_rows(local_ray, images, feature_predictor, tmp_path):
    out = tmp_path / "feats"
    summary = distributed.features(
        feature_predictor, [str(images)], str(out), size=80, batch_size=4, options={"weights": "none"}
    )
    rows = _rows(out)
    assert len(rows) == N_GOOD + 3 and summary.ok == N_GOOD and len(summary.failed) == 3
    assert summary.exit_code == 1 and (out / "manifest.json").is_file()
    errors = {os.path.basename(p): e for p, (f, e) in rows.items() if e is not None}
    assert set(errors) == {"notes.txt", "tiny.png", "truncated.png"}
    assert "not an image" in errors["notes.txt"] and "below MobileNet's minimum of 31 px" in errors["tiny.png"]
    assert all(rows[p][0] is None for p in rows if rows[p][1] is not None)

    local = engine.extract_features(feature_predictor, [str(images)], tmp_path / "local.npz", size=80)
    assert local.ok == N_GOOD
    with np.load(tmp_path / "local.npz") as z:
        expected = dict(zip(z["paths"].tolist(), z["features"]))
    for path, feats in expected.items():
        np.testing.assert_allclose(np.array(rows[path][0], np.float32), feats, atol=1e-5, rtol=0)


def test_features_prepare_images_as_the_source_model_says(local_ray, images, tmp_path):
    """The feature model sent to Ray keeps its source model's preprocessing (issue 15, item 1)."""
    import json

    from anyshape.model_info import ModelInfo

    odd = engine.Preprocessing(
        mode="torch", mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225), crop_pct=1.0, interpolation="bilinear"
    )
    model = _small(include_top=False, input_shape=(75, 75, 3))
    model.anyshape_info = ModelInfo(odd)
    features = engine.feature_model(model, "avg_pool", "avg")
    out = tmp_path / "feats"
    paths = [str(images / "img01.png"), str(images / "img05.png")]
    summary = distributed.features(engine.Predictor(features), paths, str(out))
    assert summary.ok == 2
    rows = _rows(out)
    reader = engine.ImageReader(size=(75, 75), preprocessing=odd)
    want = features.predict_on_batch(np.stack([reader.read(p) for p in paths]))
    got = np.array([rows[p][0] for p in paths], np.float32)
    np.testing.assert_allclose(got, want, atol=1e-5, rtol=0)
    recorded = json.loads((out / "manifest.json").read_text())
    assert recorded["options"]["preprocessing"] == json.loads(json.dumps(odd.to_dict()))


def _bytes_read() -> int:
    """Bytes this process has read so far (Linux: rchar of /proc/self/io)."""
    with open("/proc/self/io") as f:
        return int(next(line for line in f if line.startswith("rchar")).split()[1])


def test_files_are_checked_on_the_driver_and_never_read_whole(local_ray, images, feature_predictor, tmp_path):
    """A FIFO is refused as the local reader refuses it, instead of blocking an actor for ever; a
    large file that is not an image costs its header, not its size (issue 15, item 12)."""
    fifo = tmp_path / "pipe.png"
    os.mkfifo(fifo)
    stop = threading.Event()

    def release_blocked_readers():  # an actor that opened the FIFO gets end-of-file: the test fails, not hangs
        while not stop.is_set():
            try:
                os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
            except OSError:
                pass
            stop.wait(0.2)

    valve = threading.Thread(target=release_blocked_readers, daemon=True)
    valve.start()
    try:
        summary = distributed.features(
            feature_predictor, [str(fifo), str(images / "img00.png")], str(tmp_path / "out"), size=80
        )
    finally:
        stop.set()
        valve.join()
    local = engine.extract_features(feature_predictor, [str(fifo)], tmp_path / "local.npz", size=80)
    assert summary.ok == 1 and [e for _, e in summary.failed] == [e for _, e in local.failed]
    assert "not a regular file" in summary.failed[0][1]

    big = tmp_path / "big.png"
    with open(big, "wb") as f:
        f.write(b"not an image")
        f.truncate(256 * 2**20)  # sparse: no disk space used
    job = distributed._ImageJob(feature_predictor, engine.feature_reader(feature_predictor, 80), "features", 5, 2)
    before = _bytes_read()
    row = job(pa.table({"path": [str(big)]})).to_pylist()[0]
    assert "not an image" in row["error"] and _bytes_read() - before < 32 * 2**20


def test_a_missing_or_failed_ray_is_one_line_and_leaves_nothing_behind(
    local_ray, images, feature_predictor, tmp_path, capsys, monkeypatch
):
    """No traceback without ray, and a run that could not start Ray leaves no manifest.json that
    would refuse the retry (issue 15, item 13)."""
    from anyshape.cli import main

    out = tmp_path / "feats"
    one = str(images / "img00.png")
    with monkeypatch.context() as m:
        m.setitem(sys.modules, "ray", None)  # as if ray were not installed
        m.setitem(sys.modules, "ray.data", None)
        code = main(["features", one, "--ray", "--out", str(out), "--weights", "none", "--size", "80", "-q"])
    err = capsys.readouterr().err
    assert code == 2 and "pip install 'anyshape[ray]'" in err and len(err.strip().splitlines()) == 1, err
    assert not out.exists()

    def cannot_start(address):
        raise ConnectionError(f"could not connect to a Ray cluster at {address}")

    with monkeypatch.context() as m:
        m.setattr(distributed, "_start_ray", cannot_start)
        with pytest.raises(ConnectionError):
            distributed.features(feature_predictor, [one], str(out), size=80, address="auto")
    assert not (out / "manifest.json").exists()
    assert distributed.features(feature_predictor, [one], str(out), size=80).ok == 1  # the retry is not refused


def test_predict_writes_the_top_classes_of_the_local_run(local_ray, images, tmp_path):
    model = _small(classes=7)
    predictor = engine.Predictor(model)
    out = tmp_path / "pred"
    summary = distributed.predict(
        predictor, [str(images / "img01.png"), str(images / "img02.png")], str(out), top=3, size=80
    )
    assert summary.ok == 2 and summary.exit_code == 0
    table = distributed.read_output(out)
    local, _ = engine.predict_paths(predictor, [images / "img01.png", images / "img02.png"], size=80, top=3)
    for path, ids, scores, row in zip(
        table.column("path").to_pylist(),
        table.column("class_ids").to_pylist(),
        table.column("scores").to_pylist(),
        local,
    ):
        assert path == row["path"]
        assert ids == [p["class_id"] for p in row["predictions"]]
        np.testing.assert_allclose(scores, [p["score"] for p in row["predictions"]], atol=1e-5)


def test_resume_after_an_interruption_gives_exactly_one_row_per_image(local_ray, images, feature_predictor, tmp_path):
    out = tmp_path / "feats"
    missing = str(images / "gone.png")  # listed again on resume, so only the part writer keeps it to one row

    def stop_after_first_part(summary, table):
        raise KeyboardInterrupt

    with pytest.raises(RunInterrupted) as stopped:
        distributed.features(
            feature_predictor,
            [str(images), missing],
            str(out),
            size=80,
            batch_size=2,
            rows_per_part=3,
            on_part=stop_after_first_part,
        )
    first_parts = sorted(p.name for p in out.glob("part-*.parquet"))
    assert len(first_parts) == 1 and stopped.value.summary.parts == 1
    kept = set(_rows(out))

    summary = distributed.features(
        feature_predictor, [str(images), missing], str(out), size=80, batch_size=2, rows_per_part=3, resume=True
    )
    assert len(kept) == 3 and missing in kept and summary.skipped == 2  # the first part's rows are not computed again
    table = distributed.read_output(out)
    paths = table.column("path").to_pylist()
    assert len(paths) == len(set(paths)) == N_GOOD + 4
    assert set(first_parts) <= {p.name for p in out.glob("part-*.parquet")}  # the first part was kept as it was
    assert summary.exit_code == 1 and [p for p, _ in summary.failed].count(missing) == 1  # and still count once


class _Parts:
    """Stands in for an OutputFolder: keeps the part tables it is given."""

    def __init__(self):
        self.tables = []

    def write_part(self, table):
        self.tables.append(table)


def test_part_writer_keeps_one_row_per_path_the_first_answer(tmp_path):
    done, image = str(tmp_path / "done.png"), str(tmp_path / "a.png")
    summary = distributed.DistributedSummary()
    parts = _Parts()
    writer = distributed._PartWriter(
        "features", parts, summary, {distributed._key(done)}, rows_per_part=2, on_part=None
    )
    writer.add({"path": done, "features": [0.0], "error": None})  # already in a part file
    writer.add({"path": image, "features": [1.0, 2.0], "error": None, "_node": "n1"})
    writer.add({"path": image, "features": None, "error": "a retried task's second answer", "_node": "n2"})
    writer.add({"path": f"{tmp_path}/./a.png", "features": [3.0], "error": None})  # the same file, spelt otherwise
    writer.flush()
    assert pa.concat_tables(parts.tables).to_pylist() == [{"path": image, "features": [1.0, 2.0], "error": None}]
    assert (summary.ok, summary.failed, summary.parts) == (1, [], 1)


def test_resume_with_other_options_is_refused_before_any_work(local_ray, images, feature_predictor, backbone, tmp_path):
    out = tmp_path / "feats"
    distributed.features(
        feature_predictor, [str(images / "img00.png")], str(out), size=80, options={"layer": "avg_pool"}
    )
    before = sorted(p.name for p in out.iterdir())
    with pytest.raises(ResumeMismatch, match="size"):
        distributed.features(
            feature_predictor, [str(images)], str(out), size=90, resume=True, options={"layer": "avg_pool"}
        )
    other = engine.Predictor(engine.feature_model(backbone, "conv_pw_11_relu", "avg"))
    with pytest.raises(ResumeMismatch, match="layer"):
        distributed.features(other, [str(images)], str(out), size=80, resume=True, options={"layer": "conv_pw_11_relu"})
    with pytest.raises(FileExistsError, match="pass resume=True"):
        distributed.features(feature_predictor, [str(images)], str(out), size=80, options={"layer": "avg_pool"})
    assert sorted(p.name for p in out.iterdir()) == before


def test_an_actor_killed_mid_run_still_gives_exactly_one_row_per_image(local_ray, images, feature_predictor, tmp_path):
    out = tmp_path / "feats"
    killed = []

    def kill_an_actor(summary, table):
        if not killed:
            pid = sorted(summary.actor_pids)[0]
            os.kill(pid, signal.SIGKILL)
            killed.append(pid)

    summary = distributed.features(
        feature_predictor,
        [str(images)],
        str(out),
        size=80,
        batch_size=1,
        rows_per_part=1,
        actors=2,
        on_part=kill_an_actor,
    )
    assert killed
    with pytest.raises(ProcessLookupError):
        os.kill(killed[0], 0)  # the actor process is really gone
    paths = distributed.read_output(out).column("path").to_pylist()
    assert len(paths) == len(set(paths)) == N_GOOD + 3
    assert summary.ok == N_GOOD


def test_reads_from_and_writes_to_s3(local_ray, s3, images, feature_predictor, tmp_path):
    import boto3

    client = boto3.client("s3")
    client.create_bucket(Bucket="photos")
    for name in ("img00.png", "img01.png", "img02.png", "notes.txt"):
        client.put_object(Bucket="photos", Key=f"in/{name}", Body=(images / name).read_bytes())
    client.put_object(Bucket="photos", Key="in/.hidden.png", Body=(images / "img03.png").read_bytes())

    summary = distributed.features(feature_predictor, ["s3://photos/in"], "s3://photos/out/feats", size=80)
    assert summary.ok == 3 and len(summary.failed) == 1
    keys = {o["Key"] for o in client.list_objects_v2(Bucket="photos", Prefix="out/feats/")["Contents"]}
    assert "out/feats/manifest.json" in keys and any(k.endswith(".parquet") for k in keys)
    rows = _rows("s3://photos/out/feats")
    assert set(rows) == {f"s3://photos/in/{n}" for n in ("img00.png", "img01.png", "img02.png", "notes.txt")}

    local = engine.extract_features(feature_predictor, [images / "img01.png"], tmp_path / "one.npz", size=80)
    assert local.ok == 1
    with np.load(tmp_path / "one.npz") as z:
        np.testing.assert_allclose(
            np.array(rows["s3://photos/in/img01.png"][0], np.float32), z["features"][0], atol=1e-5, rtol=0
        )


def _only_anyshapes_lines(err: str, verb: str) -> bool:
    lines = [line for line in err.splitlines() if line.strip()]
    return bool(lines) and all(line.startswith(f"anyshape {verb}: ") for line in lines)


def test_cli_features_and_predict_with_ray(local_ray, images, tmp_path, capfd):
    """The CLI's Ray runs, and the only lines they show are anyshape's: Ray Data's log lines
    ("Progress bars disabled", "Dataset ... execution finished") and the line Ray's C++ core writes
    to standard error for every actor pool stay off the terminal (captured at the file descriptors,
    where the C++ core writes)."""
    from anyshape.cli import main

    out = tmp_path / "feats"
    args = ["features", str(images), "--ray", "--out", str(out), *SMALL_ARGS, "--weights", "none", "--size", "80", "-q"]
    assert main(args) == 1  # three bad files: rows with their errors, exit code 1 as locally
    err = capfd.readouterr().err
    assert "13 row(s) in" in err and "FAILED" in err and "Traceback" not in err
    assert _only_anyshapes_lines(err, "features"), err
    assert len(distributed.read_output(out)) == N_GOOD + 3
    # --weights none is a new random network every run: resuming would mix two networks
    assert main(args + ["--resume"]) == 2
    assert "weights differ" in capfd.readouterr().err
    # the network is recorded: a resume with another --arch is refused naming both
    assert main([*args[:5], "--arch", "mobilenet_v3_small", *args[9:], "--resume"]) == 2
    assert "arch: mobilenet_v3_small now, mobilenet in the interrupted run" in capfd.readouterr().err
    assert main(["predict", str(images), "--out", str(tmp_path / "p"), "--weights", "none"]) == 2
    assert "--ray" in capfd.readouterr().err
    assert (
        main(
            [
                "predict",
                str(images / "img00.png"),
                "--ray",
                "--out",
                str(tmp_path / "p"),
                *SMALL_ARGS,
                "--weights",
                "none",
                "--size",
                "80",
                "--classes",
                "5",
                "--top",
                "2",
                "-q",
            ]
        )
        == 0
    )
    err = capfd.readouterr().err
    assert _only_anyshapes_lines(err, "predict"), err
    table = distributed.read_output(tmp_path / "p")
    assert table.column("labels").to_pylist()[0][0].startswith("class_") and len(table.column("scores")[0]) == 2


def test_names_parquet_cannot_hold_are_refused_before_any_work(feature_predictor, tmp_path):
    """Every row names its file in a Parquet string column, which is UTF-8 only: a name whose bytes
    are not is refused before Ray starts or the output folder is made (not a failure at the end)."""
    photos = tmp_path / "photos"
    photos.mkdir()
    Image.fromarray(np.zeros((80, 80, 3), np.uint8)).save(photos / "ok.png")
    with open(os.fsencode(photos) + b"/caf\xe9.png", "wb") as f:
        Image.fromarray(np.zeros((80, 80, 3), np.uint8)).save(f, format="PNG")
    with pytest.raises(
        ValueError,
        match=r"not valid UTF-8, which the Parquet rows of a Ray run cannot store: .*caf\\xe9.*run on one machine",
    ):
        distributed.features(feature_predictor, [str(photos)], str(tmp_path / "out"), size=80)
    assert not (tmp_path / "out").exists()
