"""The CLI driven the way a careless user drives it: Ctrl-C at random moments (real SIGINTs to a
real `anyshape` process), resumes with changed options, outputs written into the folder being
read, sizes the network cannot take on every engine. Whatever happens, no output mixes two
computations and no traceback reaches the user: every stop is one line and an exit code.

Random points come from a seeded generator (reproducible); every outcome a point can lead to
(stopped while TensorFlow loads, while the model is built, between batches, after the end) is
checked by the same rules. Kept small: a small saved network (MobileNet at a quarter width, whose
minimum is 31 px), 40 px images, a few dozen of them.
"""

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from PIL import Image

from anyshape import cli, create_model, engine
from anyshape.model_info import load_model, save_model

pytest.importorskip("onnxruntime")

SIZE = "40"
SMALL_ARGS = ["--arch", "mobilenet", "--option", "alpha=0.25"]  # the small network, built from flags
# A features run over them at batch size 1 lasts some seconds after its first checkpointed rows
# (about 3 s on 2 Zen 4 cores): time for the interrupt to land mid-run under load. With 160 a run
# ended 0.2 s after its first chunk, and a busy test process sent SIGINT after the run had written
# its output and printed its summary: it exited 0, correctly (the work was done), failing the test.
N_IMAGES = 960


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    root = tmp_path_factory.mktemp("careless") / "photos"
    (root / "more").mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(N_IMAGES):
        pixels = rng.integers(0, 255, (78 + i % 7, 84, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(root / ("more" if i % 3 == 0 else ".") / f"p{i:02d}.png")
    return root


def _small_backbone():
    return create_model("mobilenet", weights=None, alpha=0.25, include_top=False, input_shape=(None, None, 3))


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    """The small network saved by anyshape (its network inside), and another with other weights."""
    root = tmp_path_factory.mktemp("w")
    for name in ("backbone.keras", "other.keras"):
        save_model(_small_backbone(), root / name)
    return root / "backbone.keras"


@pytest.fixture(scope="module")
def reference(photos, weights):
    """Features of every image from the Keras model itself, keyed by resolved path."""
    model = engine.feature_model(load_model(weights))
    reader = engine.ImageReader(size=(40, 40))
    files, _ = engine.find_images([photos])
    rows = model.predict(np.stack([reader.read(p) for p in files]), batch_size=256, verbose=0)
    return {os.path.realpath(p): row for p, row in zip(files, rows)}


def _env():
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
    env.pop("TF_CPP_MIN_LOG_LEVEL", None)  # the CLI must hide start-up noise itself
    return env


def sigint_as_at_a_terminal():
    """In the child before it starts: Ctrl-C stops it as it does at a terminal, also when this test
    run itself ignores SIGINT (a shell without job control starts a command run with `&` with
    SIGINT ignored, children inherit that, and Python then installs no KeyboardInterrupt handler:
    a clean-clone run started that way saw every interrupted run here end with exit 0)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _interrupt(argv, *, after=None, when=None, timeout=300):
    """Run `anyshape argv` and send SIGINT `after` seconds, or as soon as `when()` is true.

    Fails the test when the process ended before the signal could be sent: a careless-user test
    that was never interrupted would check nothing it claims to."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "anyshape.cli", *map(str, argv)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=_env(),
        preexec_fn=sigint_as_at_a_terminal,
    )
    start = time.monotonic()
    try:
        while proc.poll() is None and time.monotonic() - start < timeout:
            if (after is not None and time.monotonic() - start >= after) or (when is not None and when()):
                proc.send_signal(signal.SIGINT)
                break
            time.sleep(0.005)
        else:
            pytest.fail(f"anyshape {argv[0]} ended (or timed out) before it could be interrupted")
        out, err = proc.communicate(timeout=timeout)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    return proc.returncode, out, err


def _assert_clean_stop(code, err):
    assert "Traceback" not in err, err
    if code == 130:  # one line says so, last (train's log lines may come before it)
        lines = err.strip().splitlines()
        assert "interrupted;" in lines[-1] and sum("interrupted" in line for line in lines) == 1, err


def _cli(capsys, *argv):
    try:
        code = cli.main([str(a) for a in argv])
    except BaseException as e:  # noqa: BLE001 -- anything escaping main is a traceback for the user
        pytest.fail(f"{type(e).__name__} escaped anyshape {argv[0]}: {e}")
    out, err = capsys.readouterr()
    assert "Traceback" not in err
    return code, out, err


def _check_output(out, reference, size=40):
    """One row per image, each equal to the Keras model's features, and the manifest of one run."""
    with np.load(out) as z:
        paths, feats, record = [str(p) for p in z["paths"]], z["features"], json.loads(str(z["manifest"]))
    keys = [os.path.realpath(p) for p in paths]
    assert len(keys) == len(set(keys)) == len(reference)
    for key, row in zip(keys, feats):
        assert np.abs(row - reference[key]).max() <= 1e-4
    assert record["options"]["size"] == [size, size]


CHANGES = [("--size", "90"), ("--layer", "conv_pw_11_relu"), ("--pooling", "max"), ("--model", "other.keras")]


def _with(argv, flag, value):
    argv = list(argv)
    if flag in argv:
        argv[argv.index(flag) + 1] = value
    else:
        argv += [flag, value]
    return argv


@pytest.mark.parametrize("seed", [0, 1])
def test_features_interrupted_at_a_random_point_then_resumed_carelessly(
    seed, photos, weights, reference, tmp_path, capsys
):
    rng = np.random.default_rng(seed)
    t0 = time.monotonic()
    out = tmp_path / "feats.npz"
    partial = tmp_path / "feats.npz.partial"
    argv = ["features", photos, "--model", weights, "--size", SIZE, "--batch-size", 1, "--out", out, "-q"]
    if seed == 0:  # at a random moment of the start (loading TensorFlow, building, translating)
        after = float(rng.uniform(0.5, 8.0))  # or at the first checkpointed rows, if the start was quicker
        code, _, err = _interrupt(argv, when=lambda: any(partial.glob("chunk-*.npz")) or time.monotonic() - t0 >= after)
    else:  # at a random moment after the first rows are checkpointed
        extra = float(rng.uniform(0.0, 0.02))
        seen = {}

        def rows_written():
            if "t" not in seen and any(partial.glob("chunk-*.npz")):
                seen["t"] = time.monotonic()
            return "t" in seen and time.monotonic() - seen["t"] >= extra

        code, _, err = _interrupt(argv, when=rows_written)
    assert code == 130, err
    _assert_clean_stop(code, err)
    assert not [p for p in tmp_path.rglob(".*tmp*")]  # no temporary file left behind
    if seed == 1:  # rows were checkpointed before the stop: they are kept for the resume
        assert partial.exists() and not out.exists()

    if partial.exists():
        chunks = sorted(partial.glob("chunk-*"))
        for flag, value in [CHANGES[i] for i in rng.permutation(len(CHANGES))[:2]]:
            value = weights.parent / value if flag == "--model" else value
            code, _, err = _cli(capsys, *_with(argv, flag, value), "--resume")
            assert code == 2 and "cannot resume" in err, (flag, err)
            assert sorted(partial.glob("chunk-*")) == chunks and not out.exists()
        code, _, err = _cli(capsys, *argv)  # forgetting --resume does not restart silently
        assert code == 2 and "--resume" in err
    if not out.exists():
        code, _, err = _cli(capsys, *argv, "--resume")
        assert code == 0, err
    _check_output(out, reference)
    assert not partial.exists()


def test_predict_and_train_interrupted_at_random_points_stop_in_one_line(photos, tmp_path):
    rng = np.random.default_rng(7)
    code, out, err = _interrupt(  # while TensorFlow loads and the model is built and translated
        [
            "predict",
            photos,
            *SMALL_ARGS,
            "--weights",
            "none",
            "--size",
            SIZE,
            "--batch-size",
            1,
            "--format",
            "json",
            "-q",
        ],
        after=float(rng.uniform(0.5, 2.0)),
    )
    assert code == 130, err
    _assert_clean_stop(code, err)
    if code == 130 and out.strip():
        assert all(row["predictions"] for row in json.loads(out))  # what was printed is whole

    run_dir = tmp_path / "run"
    code, _, err = _interrupt(
        ["train", "digits", "-o", run_dir, "--epochs", 1, "-q"], after=float(rng.uniform(0.5, 12.0))
    )
    assert code == 130, err
    _assert_clean_stop(code, err)
    # either the run folder holds a checkpoint to resume, or it is not there at all
    assert (run_dir / "checkpoint.json").exists() or not run_dir.exists(), sorted(run_dir.iterdir())


def test_outputs_written_into_the_folder_being_read(photos, weights, reference, tmp_path, capsys):
    folder = tmp_path / "photos"
    shutil.copytree(photos, folder)
    out = folder / "feats.npz"
    argv = ["features", folder, "--model", weights, "--size", SIZE, "--out", out, "-q"]
    assert _cli(capsys, *argv)[0] == 0
    code, _, err = _cli(capsys, *argv, "--force")  # again: its own output is now in the folder
    assert code == 0, err
    _check_output(out, {os.path.realpath(folder / os.path.relpath(k, photos)): v for k, v in reference.items()})
    code, _, err = _cli(capsys, "export", "--model", weights, "-o", folder, "--force")
    assert code == 2 and "not a TF SavedModel" in err and len(list(folder.rglob("*.png"))) == N_IMAGES


@pytest.mark.parametrize("engine_name", ["auto", "onnxruntime", "keras"])
def test_sizes_the_network_cannot_take_on_every_engine(engine_name, photos, weights, tmp_path, capsys):
    """By the rule of the network the flags name (predict and bench: --arch's collapse table, before
    any model is built) or of the model file (features --model: its own minimum), never InceptionV3's."""
    for size in ("20", "30", "25,60"):
        for argv in (
            ["predict", photos, "--size", size, *SMALL_ARGS, "--weights", "none"],
            ["features", photos, "--size", size, "--model", weights, "--out", tmp_path / "f.npz"],
        ):
            code, _, err = _cli(capsys, *argv, "--engine", engine_name, "-q")
            assert code == 1 and "at least 31" in err and err.startswith(f"anyshape {argv[0]}: --size"), (argv, err)
    assert not (tmp_path / "f.npz").exists() and not (tmp_path / "f.npz.partial").exists()
    code, _, err = _cli(
        capsys, "bench", *SMALL_ARGS, "--input-shape", "30,30,3", "--engine", engine_name, "--seconds", "0.1"
    )
    assert code == 1 and "at least 31" in err


def _run_patched(tmp_path, patch: str, argv: list, timeout: float = 300) -> subprocess.CompletedProcess:
    """`anyshape argv` run as the command runs (`python -m`: with -c, sys.exit ends the process
    early; SIGINT as at a terminal) after the lines `patch`, which may call `interrupt_self()`: a
    real SIGINT that returns True when the KeyboardInterrupt it raised was caught there (False
    when none came within 2 s)."""
    script = (
        "import os, signal, sys, time\n"
        "from anyshape import cli\n"
        "def interrupt_self():\n"
        "    try:\n"
        "        os.kill(os.getpid(), signal.SIGINT)\n"
        "        time.sleep(2)\n"
        "    except KeyboardInterrupt:\n"
        "        return True\n"
        "    return False\n"
        f"{patch}"
        f"sys.argv = ['anyshape', *{[str(a) for a in argv]!r}]\n"
        "sys.exit(cli.main())\n"
    )
    (tmp_path / "patched_cli.py").write_text(script)
    env = _env()
    env["PYTHONPATH"] = os.pathsep.join([str(tmp_path), env["PYTHONPATH"]])
    return subprocess.run(
        [sys.executable, "-m", "patched_cli"],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=tmp_path,
        preexec_fn=sigint_as_at_a_terminal,
    )


def test_an_interrupt_inside_an_extensions_eval_still_exits_130(tmp_path):
    """A Ctrl-C that lands while an extension runs Python through PyRun_String (pybind11's
    py::exec, as TensorFlow's loading does) leaves CPython's "unhandled KeyboardInterrupt" flag
    set; the CLI handles the interrupt, and the process must still end with 130, not be killed by
    SIGINT at exit (seen as exit status -2 when the careless-user run above hit that moment)."""
    patch = (
        "import ctypes\n"
        "def start(verb, source=None, **kwargs):\n"
        "    ctypes.pythonapi.PyRun_SimpleString(b'raise KeyboardInterrupt')  # what an interrupted eval leaves\n"
        "    raise KeyboardInterrupt\n"
        "cli._backend_start = start\n"
    )
    argv = ["features", tmp_path, "--weights", "none", "--out", tmp_path / "f.npz"]
    done = _run_patched(tmp_path, patch, argv, timeout=120)
    assert done.returncode == 130, (done.returncode, done.stderr[-2000:])
    assert done.stderr.strip().splitlines()[-1].startswith("anyshape features: interrupted;"), done.stderr
    assert not (tmp_path / "f.npz").exists()


SWALLOWING = {
    # as an extension that clears the error of the Python code it called (TensorFlow's C++
    # nest.flatten calling abc.__instancecheck__): the interrupt is caught there, the caller goes on
    "start": (
        "real = cli._backend_start\n"
        "def start(verb, source=None, **kwargs):\n"
        "    assert interrupt_self()\n"
        "    real(verb, source, **kwargs)\n"
        "cli._backend_start = start\n"
    ),
    "run": (
        "from anyshape.engine.predictor import Predictor\n"
        "real = Predictor.run_many\n"
        "def run_many(self, batches):\n"
        "    if not hasattr(Predictor, 'swallowed'):\n"
        "        Predictor.swallowed = interrupt_self()\n"
        "    return real(self, batches)\n"
        "Predictor.run_many = run_many\n"
    ),
}


@pytest.mark.parametrize("where", sorted(SWALLOWING))
def test_an_interrupt_a_library_swallowed_stops_the_run_at_its_next_safe_point(where, photos, weights, tmp_path):
    """A Ctrl-C raised inside Python code that an extension called and whose error it cleared is
    lost to Python; the CLI remembers it and stops at the next point where a run can stop: after
    the backend has loaded (nothing written), or before the next batch (the rows done are kept)."""
    out = tmp_path / "feats.npz"
    argv = ["features", photos, "--model", weights, "--size", SIZE, "--batch-size", 1, "--out", out, "-q"]
    done = _run_patched(tmp_path, SWALLOWING[where], argv)
    assert done.returncode == 130, (done.returncode, done.stderr[-2000:])
    _assert_clean_stop(done.returncode, done.stderr)
    assert not out.exists()
    partial = tmp_path / "feats.npz.partial"
    if where == "start":
        assert "nothing was written" in done.stderr and not partial.exists()
    else:  # the first batch's rows, kept for --resume
        assert "--resume" in done.stderr and len(list(partial.glob("chunk-*.npz"))) == 1


@pytest.mark.parametrize("verbose", [False, True])
def test_an_interrupt_while_an_extension_module_initialises_waits_for_it(verbose, tmp_path):
    """A KeyboardInterrupt raised while jaxlib's extension module initialised (TensorFlow's import
    imports JAX) crashed the process with SIGSEGV: while the backend loads, Ctrl-C is held back
    until the extension module being initialised is done, then the command stops in one line;
    with --verbose too (the start-up messages shown). Here the interrupt comes while `_codecs_kr`
    (a codec that nothing imports before) initialises, imported where `convert` imports torch
    before TensorFlow."""
    patch = (
        "from importlib.machinery import ExtensionFileLoader\n"
        "create = ExtensionFileLoader.create_module\n"
        "def create_module(self, spec):\n"
        "    if spec.name == '_codecs_kr':\n"
        f"        open({str(tmp_path / 'held')!r}, 'w').write(str(not interrupt_self()))\n"
        "    return create(self, spec)\n"
        "ExtensionFileLoader.create_module = create_module\n"
        "from anyshape.weights import reference\n"
        "def import_reference_frameworks(source='torchvision'):\n"
        "    import _codecs_kr\n"
        f"    open({str(tmp_path / 'after')!r}, 'w').write('imported')\n"
        "    return []\n"
        "reference.import_reference_frameworks = import_reference_frameworks\n"
    )
    out = tmp_path / "w.weights.h5"
    argv = ["convert", tmp_path / "missing.pth", "-o", out] + (["--verbose"] if verbose else [])
    done = _run_patched(tmp_path, patch, argv)
    assert (tmp_path / "held").read_text() == "True"  # the interrupt did not come inside the module's start
    assert not (tmp_path / "after").exists()  # it came right after it, in the import
    assert done.returncode == 130, (done.returncode, done.stderr[-2000:])
    _assert_clean_stop(done.returncode, done.stderr)
    assert done.stderr.strip().splitlines()[-1].startswith("anyshape convert: interrupted;")
    assert not out.exists()
