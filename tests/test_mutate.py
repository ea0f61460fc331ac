"""tools/mutate.py (`make mutate`) on a tiny project written into tmp_path: a mutant that breaks
the function is killed, an equivalent one survives and is listed, a mutant that hangs is stopped
by the time limit, and neither a finished nor an interrupted run leaves the source changed or
its temporary copy behind."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

TOOL = Path(__file__).resolve().parents[1] / "tools" / "mutate.py"

CLAMP = '''\
def clamp(x, lo, hi):
    """x, or the nearest bound."""
    if x < lo:
        return lo
    return min(x, hi)
'''

CLAMP_TESTS = """\
from calc import clamp


def test_clamp():
    assert clamp(5, 0, 10) == 5
    assert clamp(-1, 0, 10) == 0
    assert clamp(11, 0, 10) == 10
"""

WAIT = """\
def wait_until(ready):
    while not ready():
        pass
    return True
"""

WAIT_TESTS = """\
from calc import wait_until


def test_wait_until():
    assert wait_until(lambda: True) is True
"""


def _project(tmp_path, module, tests):
    root = tmp_path / "project"
    root.mkdir()
    (root / "calc.py").write_text(module)
    (root / "test_calc.py").write_text(tests)
    (tmp_path / "tmp").mkdir()
    # no third-party pytest plugins in the tiny project's runs: hypothesis' alone takes seconds to import
    return root, dict(os.environ, TMPDIR=str(tmp_path / "tmp"), PYTEST_DISABLE_PLUGIN_AUTOLOAD="1")


def _mutate(root, *args):
    return [sys.executable, str(TOOL), "calc.py", "test_calc.py", "--root", str(root), *args]


def test_a_real_bug_is_killed_and_an_equivalent_change_survives(tmp_path):
    root, env = _project(tmp_path, CLAMP, CLAMP_TESTS)
    listed = subprocess.run(_mutate(root, "--list", "--max", "0"), capture_output=True, text=True, env=env)
    assert "calc.py:3: < -> <=" in listed.stdout and "calc.py:4: returns None" in listed.stdout
    assert "x, or the nearest bound" not in listed.stdout  # docstrings are not mutated
    total = listed.stdout.count("\n[")
    assert f"[{total}/{total}] calc.py:" in listed.stdout
    # --only: the sample's mutants by their numbers, e.g. the survivors of a run again
    first = listed.stdout.split("[1/")[1].split("\n")[0].split("] ", 1)[1]
    only = subprocess.run(_mutate(root, "--list", "--max", "0", "--only", "1"), capture_output=True, text=True, env=env)
    assert only.stdout.count("\n[") == 1 and f"[1/{total}] {first}" in only.stdout

    run = subprocess.run(_mutate(root, "--max", "0"), capture_output=True, text=True, env=env)
    assert run.returncode == 0, run.stderr
    out = run.stdout
    assert "killed           calc.py:4: returns None" in out  # clamp(-1, 0, 10) would be None
    survivors = out.split("survivors")[1]
    # x == lo returns lo either way: an equivalent mutant, the one survivor
    assert survivors.count("calc.py:") == 1 and "calc.py:3: < -> <=" in survivors
    assert "- if x < lo:" in survivors and "+ if x <= lo:" in survivors
    n = out.count("killed")
    assert f"kill rate: {n}/{n + 1} " in out
    assert (root / "calc.py").read_text() == CLAMP and not list((tmp_path / "tmp").iterdir())


def test_a_hanging_mutant_is_stopped_and_ctrl_c_leaves_nothing_behind(tmp_path):
    root, env = _project(tmp_path, WAIT, WAIT_TESTS)
    # the hanging mutant spins a core until the limit: 3 s is the shortest limit that still lets
    # the other mutants' runs (a tiny project, no plugins: a fraction of a second) end by themselves;
    # one of them that hit the limit under load would still count as killed, which this test allows
    run = subprocess.run(_mutate(root, "--max", "0", "--timeout", "3"), capture_output=True, text=True, env=env)
    assert "killed (timeout) calc.py:2: not dropped" in run.stdout  # `while ready():` never ends
    assert "by the time limit" in run.stdout

    proc = subprocess.Popen(
        _mutate(root, "--max", "0", "--timeout", "60"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        preexec_fn=lambda: signal.signal(
            signal.SIGINT, signal.SIG_DFL
        ),  # see test_careless_user's sigint_as_at_a_terminal
    )
    for line in proc.stdout:
        if line.startswith("clean run"):
            break
    proc.send_signal(signal.SIGINT)  # while the first mutant (the hanging one) runs
    out, err = proc.communicate(timeout=180)  # seconds on an idle machine; minutes allowed under load
    assert proc.returncode == 130 and "interrupted" in err
    assert (root / "calc.py").read_text() == WAIT and not list((tmp_path / "tmp").iterdir())
