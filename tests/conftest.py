"""Shared test setup.

torch and torchvision are imported before Keras loads its backend: `import torchvision` after
TensorFlow is loaded segfaults in one process on this stack (torch._dynamo pulls in triton,
whose native library clashes with TensorFlow's); the other order is fine.

TensorFlow runs one op at a time (TF_NUM_INTEROP_THREADS=1, read when its runtime starts), so
that training is repeatable: with its default of running independent ops side by side,
InceptionV3's parallel branches finish in a varying order and two trainings of the digits model
(tests/trained_digits.py) with the same seed and deterministic ops differed after one epoch; its
test accuracy ranged 0.951-0.975 over 12 trainings. With one inter-op thread two runs gave the
same weights. On 2 cores the intra-op threads keep both busy.
"""

import json
import os
import statistics
import time
from collections import defaultdict
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("TF_NUM_INTEROP_THREADS", "1")


def _threads_per_worker() -> int | None:
    """Cores per pytest-xdist worker when the workers fill the machine (`make test`: two workers
    on two cores), else None (one pytest process: each framework takes every core as usual).

    Each framework sizes its thread pools to the machine, so two workers on two cores ran four
    TensorFlow threads, four ONNX Runtime threads (which spin while they wait) and four OpenMP
    threads on two cores, each stealing time from the other worker."""
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "0") or 0)
    if not os.environ.get("PYTEST_XDIST_WORKER") or workers < 2:
        return None
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return max(1, cores // workers) if workers >= cores else None


THREADS = _threads_per_worker()
if THREADS is not None:  # read when each runtime starts, so set before any of them loads
    for name in ("TF_NUM_INTRAOP_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ.setdefault(name, str(THREADS))
    # ONNX Runtime and OpenVINO: anyshape.engine.Predictor's default thread count
    os.environ.setdefault("ANYSHAPE_THREADS", str(THREADS))

try:  # optional: parity tests against torchvision skip cleanly without it
    import torch  # noqa: F401
    import torchvision  # noqa: F401
except ImportError:
    pass


import pytest  # noqa: E402


def pytest_collection_finish(session):
    """Every test module is imported (TensorFlow, Keras, JAX or torch, ONNX Runtime, OpenVINO, ...):
    their millions of long-lived objects go to the garbage collector's permanent generation
    (`gc.freeze`), so that a collection no longer scans them. Building a Keras model creates
    enough objects to start a full collection several times, and each one scanned every object
    those imports made: measured on Zen 4, one thread, `gc.collect()` after the imports 0.39 s ->
    0.006 s, EfficientNetB0 built in 1.30 s -> 0.92 s, DenseNet121 1.65 s -> 1.37 s. The objects the
    tests make are collected as before."""
    import gc

    gc.collect()
    gc.freeze()


# Modules whose models start from Keras' own random draws: training's outcomes (what a run
# learns from its initial weights) are Keras' as a user gets them.
KERAS_DRAWS = {"test_training"}


@pytest.fixture(scope="module", autouse=True)
def numpy_initial_weights(request):
    """Models built by a test module draw their initial weights with numpy from the distribution of
    each layer's Keras initializer (`model_helpers.numpy_initializers`): the tests set the weights
    they compare, and Keras' draws made JAX compile a random-number program per weight shape
    (building DenseNet121, ConvNeXtTiny, EfficientNetB0 and NASNetMobile on one core: JAX 69 s ->
    6 s, TensorFlow 6.7 s -> 6.1 s, Zen 4). Autouse and module-scoped: it starts before the
    module's own fixtures build anything."""
    if request.module.__name__ in KERAS_DRAWS:
        yield
        return
    from model_helpers import numpy_initializers

    with numpy_initializers():
        yield


@pytest.fixture(scope="session", autouse=True)
def temporary_files_in_the_session_folder(tmp_path_factory):
    """Temporary files go under pytest's session folder, which pytest removes when the run passes
    (pyproject's tmp_path_retention_policy) and which the next runs clean up after a failure: Keras
    extracts every .keras file it loads into a tempfile folder, and a run killed on purpose (the
    Ctrl-C tests) or a crash leaves such folders in /tmp for good; CI once ran out of /tmp. TMPDIR
    covers the subprocesses the tests start; Ray keeps its own folder in /tmp (RAY_TMPDIR: its
    socket paths must stay short)."""
    import tempfile

    folder = tmp_path_factory.mktemp("tmp")
    saved = {name: os.environ.get(name) for name in ("TMPDIR", "RAY_TMPDIR")}
    os.environ["RAY_TMPDIR"] = saved["RAY_TMPDIR"] or tempfile.gettempdir()
    os.environ["TMPDIR"] = str(folder)
    tempfile.tempdir = str(folder)
    yield folder
    tempfile.tempdir = None
    _restore_environ(saved)


def _restore_environ(saved: dict) -> None:
    """Put back the environment variables `saved` holds (name: value, None: was not set)."""
    for name, value in saved.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


@pytest.fixture(scope="module")
def s3():
    """A moto S3 server on 127.0.0.1 (started here, stopped at the module's end); the AWS variables
    are set while it runs (and before `local_ray` starts, in a module that asks for both, so that
    Ray's worker processes inherit them). Yields the endpoint URL."""
    import socket

    moto_server = pytest.importorskip("moto.server")
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    names = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION", "AWS_ENDPOINT_URL")
    saved = {k: os.environ.get(k) for k in names}
    os.environ.update(
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",
        AWS_DEFAULT_REGION="us-east-1",
        AWS_ENDPOINT_URL=f"http://127.0.0.1:{port}",
    )
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()
        _restore_environ(saved)


@pytest.fixture(scope="module")
def local_ray(request):
    """One local Ray per test module that asks for it (tests/test_distributed.py,
    tests/test_engine_family.py): on the loopback only (127.0.0.1), bounded (2 CPUs, a 100 MB
    object store: larger objects, e.g. InceptionResNetV2's graph, go to disk; no dashboard),
    started by the module's first test that asks for it and stopped at the module's end. A module
    that sets `LOCAL_RAY_WITH_S3 = True` gets the `s3` server started first, so that Ray's worker
    processes inherit its AWS variables (pytest then stops Ray before the server)."""
    import logging

    ray = pytest.importorskip("ray")
    if getattr(request.module, "LOCAL_RAY_WITH_S3", False):
        request.getfixturevalue("s3")
    ray.init(
        num_cpus=2,
        include_dashboard=False,
        object_store_memory=100 * 1024**2,
        log_to_driver=False,
        logging_level=logging.ERROR,
        _node_ip_address="127.0.0.1",
    )
    try:
        yield
    finally:
        ray.shutdown()


@pytest.fixture(scope="session")
def trained_digits(tmp_path_factory):
    """InceptionV3 trained on digits (75x75x1) by anyshape.train: see tests/trained_digits.py."""
    from trained_digits import train_digits

    return train_digits(tmp_path_factory.mktemp("trained-digits"))


def pytest_sessionfinish(session, exitstatus):
    """Writes tests/durations.json when ANYSHAPE_WRITE_DURATIONS=1 (see below). And:

    a skipped test fails the run: a skip because a dependency is missing hides a broken install.

    Every test of this suite runs on a machine with the test extra installed (`make test`); a test
    that does not apply to a Keras backend is deselected by that run's file list, not skipped.
    Set ANYSHAPE_ALLOW_SKIPS=1 to run a partial install on purpose.
    """
    _write_durations(session.config)
    _write_cpu_profile(session.config)
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    skipped = reporter.stats.get("skipped", []) if reporter is not None else []
    if skipped and os.environ.get("ANYSHAPE_ALLOW_SKIPS") != "1" and exitstatus == 0:
        reporter.ensure_newline()
        reasons = sorted({str(r.longrepr[-1]) if isinstance(r.longrepr, tuple) else str(r.longrepr) for r in skipped})
        reporter.write_line(
            f"{len(skipped)} test(s) skipped, which this suite treats as a failure (a missing dependency?): "
            + "; ".join(reasons[:5]),
            red=True,
        )
        session.exitstatus = 1


# --------------------------------------------------------------------------------------------
# `make test` runs this suite on two pytest-xdist workers with `--dist loadgroup
# --no-loadscope-reorder`: a file's tests stay together on one worker (its module fixtures, a
# trained model or a training run, are made once), except the per-network harness, whose tests
# share nothing and go one by one to whichever worker is free. Files start longest first (seconds
# on TensorFlow, measured on 2 cores with `--durations`), and the harness's short tests fill the
# end, so that both workers finish together (longest processing time first).
SPLIT_FILES = {"test_archs.py", "test_weights_family.py"}  # independent tests, one network each
# their tests of one network stay together, whatever the parameter's spelling ("ResNet50V2",
# "resnet50_v2"), so that a network's cached model (test_archs) or made weights file
# (test_weights_family) is made once, on one worker
SPLIT_PARAMS = ("name", "keras_name")
# files whose tests share a module fixture per parameter: grouped by that parameter, so the groups
# spread over both workers and each keeps its models (test_family.py: one representative per family)
GROUP_BY_PARAM = {
    "test_family.py": "family",
    # each family's chain (train -> convert -> export -> predict, quantize, bench) is made once
    "test_verbs_family.py": "built",
}
# files that mostly wait on processes of their own (a local Ray: its raylet, GCS and actors), which
# a loaded machine slows several times over: they start after the other files, once the JAX and
# PyTorch runs beside (about 5 and 10 minutes) have ended, and before the harness's short tests
# (test_distributed.py on a clean clone: 338 s started first, 89 s alone). test_engine_family.py
# too, for its `--ray` test of each family: started while the JAX and PyTorch runs were still going
# (clean-clone run 48, AMX Xeon) those took 3-4 times run 47's (EfficientNetB0 10 -> 33 s,
# ConvNeXtTiny 20 -> 36 s; about 100 s more in all)
AFTER_THE_BACKENDS = {"test_distributed.py", "test_distributed_cluster.py", "test_engine_family.py"}
# ... and one after the other on one worker (one xdist group): in run 49 test_distributed's first
# Ray test took 25 s (8 s in run 47) while test_engine_family's Ray could run on the other worker
RAY_GROUP = "local Ray"
# Seconds per file on TensorFlow (setup, call and teardown of its tests, summed over the file):
# tests/durations.json, written by the suite itself when asked (see pytest_sessionfinish below),
# so the order follows the suite as it is, not a table kept by hand. A file not in it yet (a new
# one) counts as the median file: neither first nor last.
DURATIONS = Path(__file__).with_name("durations.json")
WRITE_DURATIONS = "ANYSHAPE_WRITE_DURATIONS"  # =1: the run records its files' seconds into DURATIONS


def _file_seconds() -> dict[str, float]:
    try:
        return {str(k): float(v) for k, v in json.loads(DURATIONS.read_text()).items()}
    except (OSError, ValueError, AttributeError):
        return {}


FILE_SECONDS = _file_seconds()
DEFAULT_SECONDS = statistics.median(FILE_SECONDS.values()) if FILE_SECONDS else 0.0


@pytest.hookimpl(tryfirst=True)  # before pytest-xdist's own hook, which reads the xdist_group marks
def pytest_collection_modifyitems(config, items):
    for item in items:
        if item.path.name in SPLIT_FILES:
            params = getattr(getattr(item, "callspec", None), "params", {})
            network = next((params[p] for p in SPLIT_PARAMS if isinstance(params.get(p), str)), None)
            if network is not None:
                item.add_marker(pytest.mark.xdist_group(f"{item.path.name}::{network.lower().replace('_', '')}"))
            continue
        if item.path.name in AFTER_THE_BACKENDS:  # one local Ray at a time: these files in turn, on one worker
            item.add_marker(pytest.mark.xdist_group(RAY_GROUP))
            continue
        group = item.path.name
        param = GROUP_BY_PARAM.get(group)
        callspec = getattr(item, "callspec", None)
        if param and callspec is not None and param in callspec.params:
            group = f"{group}::{callspec.params[param]}"  # one representative's tests, its models built once
        item.add_marker(pytest.mark.xdist_group(group))
    items.sort(
        key=lambda item: (
            item.path.name in SPLIT_FILES,
            item.path.name in AFTER_THE_BACKENDS,
            -FILE_SECONDS.get(item.path.name, DEFAULT_SECONDS),
        )
    )


_measured: dict[str, float] = defaultdict(float)


def pytest_runtest_logreport(report):
    """Each test's setup, call and teardown, added to its file (under xdist the controller gets
    every worker's reports, so the sums cover the whole run)."""
    _measured[report.nodeid.split("::")[0].rsplit("/", 1)[-1]] += report.duration


# ANYSHAPE_CPU_PROFILE=DIR: each pytest process (a worker, or a run without xdist) writes the CPU
# seconds of each test (its own threads plus the subprocesses it waited for: getrusage) to
# DIR/<backend>-<worker>.json, with its start and end (Unix time): [cpu, start, end]. Unlike wall
# time, CPU seconds hardly change when the three backends' runs share the cores, so one `make test`
# says where the suite's CPU goes; the start and end say when a worker waited or sat idle.
CPU_PROFILE = "ANYSHAPE_CPU_PROFILE"
_cpu: dict[str, list[float]] = {}


def _cpu_seconds() -> float:
    import resource

    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item, nextitem):
    if not os.environ.get(CPU_PROFILE):
        return (yield)
    start, wall = _cpu_seconds(), time.time()
    try:
        return (yield)
    finally:
        _cpu[item.nodeid] = [round(_cpu_seconds() - start, 2), round(wall, 1), round(time.time(), 1)]


def _write_cpu_profile(config) -> None:
    folder = os.environ.get(CPU_PROFILE)
    if not folder:
        return
    worker = getattr(config, "workerinput", {}).get("workerid", "main")
    path = Path(folder) / f"{os.environ.get('KERAS_BACKEND', 'tensorflow')}-{worker}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(_cpu, indent=1) + "\n")


def _write_durations(config) -> None:
    if os.environ.get(WRITE_DURATIONS) != "1" or hasattr(config, "workerinput"):  # the controller writes
        return
    if os.environ["KERAS_BACKEND"] != "tensorflow":  # the order is the TensorFlow run's
        return
    merged = {**_file_seconds(), **{name: round(seconds, 1) for name, seconds in _measured.items()}}
    ordered = dict(sorted(merged.items(), key=lambda kv: (-kv[1], kv[0])))
    tmp = DURATIONS.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(ordered, indent=1) + "\n")
    tmp.replace(DURATIONS)
