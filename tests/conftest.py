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

import os

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("TF_NUM_INTEROP_THREADS", "1")

try:  # optional: parity tests against torchvision skip cleanly without it
    import torch  # noqa: F401
    import torchvision  # noqa: F401
except ImportError:
    pass


import pytest  # noqa: E402


@pytest.fixture(scope="session")
def trained_digits(tmp_path_factory):
    """InceptionV3 trained on digits (75x75x1) by anyshape.train: see tests/trained_digits.py."""
    from trained_digits import train_digits

    return train_digits(tmp_path_factory.mktemp("trained-digits"))


def pytest_sessionfinish(session, exitstatus):
    """A skipped test fails the run: a skip because a dependency is missing hides a broken install.

    Every test of this suite runs on a machine with the test extra installed (`make test`); a test
    that does not apply to a Keras backend is deselected by that run's file list, not skipped.
    Set ANYSHAPE_ALLOW_SKIPS=1 to run a partial install on purpose.
    """
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
SPLIT_FILES = {"test_archs.py"}
FILE_SECONDS: dict[str, float] = {  # the files above a minute, from a run of 2026-11-29 (Xeon, 2 cores)
    "test_training.py": 1100,
    "test_precision.py": 610,
    "test_cli_inference.py": 380,
    "test_onnx_family.py": 330,
    "test_readme.py": 250,
    "test_distributed.py": 200,
    "test_inception_v3.py": 160,
    "test_family_nasnet.py": 150,
    "test_engine.py": 145,
    "test_family_efficientnet.py": 140,
    "test_weights_convert.py": 120,
    "test_family_convnext.py": 115,
    "test_family_efficientnet_v2.py": 115,
    "test_family_inception_resnet_v2.py": 110,
    "test_family_densenet.py": 100,
    "test_careless_user.py": 95,
    "test_family_mobilenet_v3.py": 60,
    "test_family_resnet.py": 60,
    "test_weights_keras_h5.py": 60,
}


@pytest.hookimpl(tryfirst=True)  # before pytest-xdist's own hook, which reads the xdist_group marks
def pytest_collection_modifyitems(config, items):
    for item in items:
        if item.path.name not in SPLIT_FILES:
            item.add_marker(pytest.mark.xdist_group(item.path.name))
    items.sort(key=lambda item: (item.path.name in SPLIT_FILES, -FILE_SECONDS.get(item.path.name, 0.0)))
