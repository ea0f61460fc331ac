"""Mutation testing of one module: do its tests notice a realistic bug? (`make mutate`; not in CI.)

    python tools/mutate.py src/anyshape/engine/manifest.py tests/test_engine_manifest.py --max 20

Each mutant is one small change a programmer could make by mistake: an operator swapped
(+ -, * /, and or), a comparison flipped (< >=, == !=, in / not in), a constant off by one
(or True / False), a condition negated or one operand of `and` / `or` dropped, a statement
deleted, `return X` made `return None`, a keyword argument left out of a call. The tests run
against each mutant (`pytest -x -q`, with a time limit); a mutant is killed when they fail and
survives when they pass. A survivor is a change the tests cannot see: either a hole in the tests
or an equivalent mutant (one that changes nothing observable), which a person has to tell apart.

Mutants are made on the source text (an operator or a node's text replaced, with the positions
the `ast` module gives), so each is a one-place edit with the rest of the file as written. They
run in a copy of the project in a temporary folder (its `src/` first on PYTHONPATH, no bytecode
cache), so the working tree is never modified, also when the run is interrupted or killed; the
copy is deleted at the end. `--max N` runs a seeded sample of N mutants (all of them: `--max 0`);
`--list` prints the mutants without running anything; `--only 2,5` runs only those mutants of
the sample (their numbers in a run's `[i/N]` lines), e.g. a run's survivors again with new tests.
"""

from __future__ import annotations

import argparse
import ast
import bisect
import difflib
import os
import random
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

# The operator swaps: each operator's realistic slip, and how it is spelt in the source.
BINARY = {ast.Add: "-", ast.Sub: "+", ast.Mult: "/", ast.Div: "*", ast.FloorDiv: "/", ast.Mod: "//"}
COMPARE = {
    ast.Eq: "!=",
    ast.NotEq: "==",
    ast.Lt: ">=",
    ast.LtE: ">",
    ast.Gt: "<=",
    ast.GtE: "<",
    ast.In: "not in",
    ast.NotIn: "in",
    ast.Is: "is not",
    ast.IsNot: "is",
}
BOUNDARY = {ast.Lt: "<=", ast.LtE: "<", ast.Gt: ">=", ast.GtE: ">"}  # off-by-one comparisons
SPELLING = {
    ast.Add: r"\+",
    ast.Sub: r"-",
    ast.Mult: r"\*",
    ast.Div: r"/",
    ast.FloorDiv: r"//",
    ast.Mod: r"%",
    ast.Eq: r"==",
    ast.NotEq: r"!=",
    ast.Lt: r"<",
    ast.LtE: r"<=",
    ast.Gt: r">",
    ast.GtE: r">=",
    ast.In: r"in",
    ast.NotIn: r"not\s+in",
    ast.Is: r"is",
    ast.IsNot: r"is\s+not",
    ast.And: r"and",
    ast.Or: r"or",
}
DELETABLE = (ast.Expr, ast.Assign, ast.AugAssign, ast.AnnAssign, ast.Return, ast.Raise, ast.If, ast.Assert)


@dataclass(frozen=True)
class Mutant:
    line: int  # 1-based line of the change in the original file
    what: str  # e.g. "< -> >="
    source: str  # the whole mutated module
    old: str  # the changed line as written ...
    new: str  # ... and as mutated


class _Source:
    """The module's text with ast positions (UTF-8 byte columns) turned into offsets."""

    def __init__(self, text: str):
        self.data = text.encode()
        self.starts = [0]
        for line in self.data.splitlines(keepends=True):
            self.starts.append(self.starts[-1] + len(line))

    def offset(self, line: int, col: int) -> int:
        return self.starts[line - 1] + col

    def span(self, node) -> tuple[int, int]:
        return self.offset(node.lineno, node.col_offset), self.offset(node.end_lineno, node.end_col_offset)

    def text(self, start: int, end: int) -> str:
        return self.data[start:end].decode()

    def replace(self, start: int, end: int, new: str) -> str:
        return (self.data[:start] + new.encode() + self.data[end:]).decode()


def _operator(src: _Source, start: int, end: int, op, after: str = "") -> tuple[int, int] | None:
    """Where the operator `op` is spelt between two operands (only brackets and spaces around it;
    `after`: what follows it, "=" for an augmented assignment)."""
    gap = src.text(start, end)
    m = re.fullmatch(rf"[\s()\\]*({SPELLING[type(op)]}){after}[\s()\\]*", gap)
    if m is None:
        return None
    before = len(gap[: m.start(1)].encode())
    return start + before, start + before + len(m.group(1).encode())


def _edits(tree: ast.Module, src: _Source):
    """(start, end, replacement, description) for every mutation of the module: the byte range
    of the source to replace."""
    # Not mutated: annotations (with postponed evaluation they never run), docstrings, and
    # f-strings (before Python 3.12 the positions of the expressions inside them are unreliable).
    skip: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.JoinedStr):
            skip.update(id(n) for n in ast.walk(node))
        for ann in (getattr(node, "annotation", None), getattr(node, "returns", None)):
            if ann is not None:
                skip.update(id(n) for n in ast.walk(ann))
        body = getattr(node, "body", None)
        if isinstance(body, list) and body and isinstance(body[0], ast.Expr):
            if isinstance(body[0].value, ast.Constant) and isinstance(body[0].value.value, str):
                skip.update(id(n) for n in ast.walk(body[0]))
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.BinOp) and type(node.op) in BINARY:
            where = _operator(src, src.span(node.left)[1], src.span(node.right)[0], node.op)
            if where:
                yield *where, BINARY[type(node.op)], f"{src.text(*where)} -> {BINARY[type(node.op)]}"
        elif isinstance(node, ast.AugAssign) and type(node.op) in BINARY:
            where = _operator(src, src.span(node.target)[1], src.span(node.value)[0], node.op, after="=")
            if where:
                yield *where, BINARY[type(node.op)], f"{src.text(*where)}= -> {BINARY[type(node.op)]}="
        elif isinstance(node, ast.Compare):
            left = node.left
            for op, right in zip(node.ops, node.comparators):
                where = _operator(src, src.span(left)[1], src.span(right)[0], op)
                if where:
                    for new in (COMPARE[type(op)], BOUNDARY.get(type(op))):
                        if new:
                            yield *where, new, f"{src.text(*where)} -> {new}"
                left = right
        elif isinstance(node, ast.BoolOp):
            other = "or" if isinstance(node.op, ast.And) else "and"
            for a, b in zip(node.values, node.values[1:]):
                where = _operator(src, src.span(a)[1], src.span(b)[0], node.op)
                if where:
                    yield *where, other, f"{src.text(*where)} -> {other}"
            start, end = src.span(node)
            for i, value in enumerate(node.values):  # one condition left out
                rest = node.values[:i] + node.values[i + 1 :]
                kept = ast.BoolOp(node.op, rest) if len(rest) > 1 else rest[0]
                yield start, end, f"({ast.unparse(kept)})", f"condition dropped: {ast.unparse(value)}"
        elif isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
            start, end = src.span(node)
            yield start, end, f"({src.text(*src.span(node.operand))})", "not dropped"
        elif isinstance(node, ast.Constant) and type(node.value) in (int, float, bool):
            start, end = src.span(node)
            if isinstance(node.value, bool):
                yield start, end, repr(not node.value), f"{node.value} -> {not node.value}"
            else:
                for new in (node.value + 1, node.value - 1):
                    yield start, end, f"({new!r})" if new < 0 else repr(new), f"{node.value!r} -> {new!r}"
        elif isinstance(node, ast.Call):
            parts = sorted([*node.args, *node.keywords], key=lambda n: (n.lineno, n.col_offset))
            for i, part in enumerate(parts):
                if not isinstance(part, ast.keyword):
                    continue
                if i + 1 < len(parts):
                    start, end = src.span(part)[0], src.span(parts[i + 1])[0]
                elif i > 0:
                    start, end = src.span(parts[i - 1])[1], src.span(part)[1]
                else:
                    start, end = src.span(part)
                yield start, end, "", f"keyword dropped: {ast.unparse(part)}"
        if isinstance(node, ast.If):
            start, end = src.span(node.test)
            yield start, end, f"not ({src.text(start, end)})", "condition negated"
        if isinstance(node, ast.Return) and node.value is not None:
            if not (isinstance(node.value, ast.Constant) and node.value.value is None):
                start, end = src.span(node.value)
                yield start, end, "None", "returns None"
        if isinstance(node, DELETABLE) and not _is_all(node):
            start, end = src.span(node)
            yield start, end, "pass", f"deleted: {src.text(start, end).splitlines()[0].strip()}"


def _is_all(node) -> bool:
    return isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "__all__" for t in node.targets)


def mutants(text: str, filename: str = "<module>") -> list[Mutant]:
    """Every distinct mutant of the module `text` that compiles, in order of line."""
    tree = ast.parse(text)
    src = _Source(text)
    seen = {text}
    out = []
    for start, end, new, what in _edits(tree, src):
        source = src.replace(start, end, new)
        if source in seen:
            continue
        seen.add(source)
        try:
            compile(source, filename, "exec")
        except SyntaxError:
            continue
        old_line, new_line = _changed_lines(text, source)
        line = bisect.bisect_right(src.starts, start)  # the line the change starts on
        out.append(Mutant(line, what, source, old_line, new_line))
    return sorted(out, key=lambda m: m.line)


def _changed_lines(old: str, new: str) -> tuple[str, str]:
    """The first line the mutation removed and the first it wrote (a deletion may write none)."""
    diff = list(difflib.unified_diff(old.splitlines(), new.splitlines(), n=0, lineterm=""))
    removed = next((d[1:] for d in diff[2:] if d.startswith("-")), "")
    added = next((d[1:] for d in diff[2:] if d.startswith("+")), "")
    return removed.strip(), added.strip()


# ---------------------------------------------------------------------------------------------
# running the tests against each mutant, in a copy of the project
# ---------------------------------------------------------------------------------------------

IGNORED = shutil.ignore_patterns(
    ".git", ".venv", "venv", "__pycache__", "*.egg-info", "build", ".mypy_cache", ".ruff_cache"
)


def _copy_project(root: Path, dest: Path) -> None:
    """The project's files (git's tracked and untracked-not-ignored ones, else the folder without
    virtualenvs and caches) into `dest`."""
    try:
        listed = subprocess.run(
            ["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=root, capture_output=True, check=True
        ).stdout.decode()
    except (OSError, subprocess.CalledProcessError):
        shutil.copytree(root, dest, ignore=IGNORED, symlinks=True)
        return
    for name in filter(None, listed.split("\0")):
        path = root / name
        if path.is_file() or path.is_symlink():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, dest / name, follow_symlinks=False)


def _run_tests(copy: Path, tests: list[str], timeout: float | None, pytest_args: list[str]) -> tuple[str, float]:
    """'passed', 'failed' or 'timeout' (the tests' whole process group is killed), and the seconds.
    The tests' output goes to `last-run.log` beside the copy."""
    env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1")
    src = copy / "src"
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(src) if src.is_dir() else "", env.get("PYTHONPATH", "")) if p)
    cmd = [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", f"--basetemp={copy.parent / 'pytest'}"]
    t0 = time.perf_counter()
    # Ctrl-C is held back while the process starts: a KeyboardInterrupt inside Popen (between fork
    # and exec) would leave a started test run with no handle to stop it
    held = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        with open(copy.parent / "last-run.log", "wb") as log:
            proc = subprocess.Popen(
                [*cmd, *pytest_args, *tests],
                cwd=copy,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # Ctrl-C reaches this script, which stops the tests itself
            )
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, held)
    try:
        code = proc.wait(timeout=timeout)
        return ("passed" if code == 0 else "failed"), time.perf_counter() - t0
    except subprocess.TimeoutExpired:
        return "timeout", time.perf_counter() - t0
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def _check_imports_the_copy(copy: Path, module: str) -> None:
    """A module under src/ must be imported from the copy, not from an installed version."""
    rel = Path(module)
    if rel.parts[0] != "src":
        return
    name = ".".join(rel.with_suffix("").parts[1:])
    env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1", PYTHONPATH=str(copy / "src"))
    code = f"import importlib.util; print(importlib.util.find_spec({name!r}).origin)"
    found = subprocess.run([sys.executable, "-c", code], cwd=copy, env=env, capture_output=True, text=True)
    if Path(found.stdout.strip()).resolve() != (copy / rel).resolve():
        raise SystemExit(f"mutate: {name} is imported from {found.stdout.strip() or found.stderr}, not the copy")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("module", help="the file to mutate, relative to --root (e.g. src/anyshape/engine/manifest.py)")
    parser.add_argument("tests", nargs="+", help="the test files (or pytest node ids) that cover it")
    parser.add_argument("--root", default=".", help="the project folder (default: the current one)")
    parser.add_argument(
        "--max", type=int, default=20, help="run a seeded sample of this many mutants; 0: all (default 20)"
    )
    parser.add_argument("--seed", type=int, default=0, help="the sample's seed (default 0)")
    parser.add_argument(
        "--timeout", type=float, help="seconds per mutant before it counts as killed (default: 3x the clean run + 30)"
    )
    parser.add_argument("--list", action="store_true", help="print the mutants and stop")
    parser.add_argument(
        "--only", help="run only these mutants of the sample, by their numbers in a run's [i/N] lines: e.g. 2,5"
    )
    parser.add_argument("--pytest-args", default="", help="more pytest arguments, e.g. \"-k 'resume'\"")
    args = parser.parse_args(argv)

    root = Path(args.root).resolve()
    path = root / args.module
    if not path.is_file() or path.suffix != ".py":
        parser.error(f"{args.module}: not a Python file under {root}")
    every = mutants(path.read_text(), str(path))
    chosen = every if args.max <= 0 or args.max >= len(every) else random.Random(args.seed).sample(every, args.max)
    chosen = sorted(chosen, key=lambda m: m.line)
    numbers = list(range(1, len(chosen) + 1))
    if args.only:
        try:
            numbers = sorted({int(n) for n in args.only.split(",")})
        except ValueError:
            parser.error(f"--only takes numbers separated by commas, got {args.only!r}")
        if not all(1 <= n <= len(chosen) for n in numbers):
            parser.error(f"--only: the sample has mutants 1 to {len(chosen)}, got {args.only}")
    total = len(chosen)
    picked = [(n, chosen[n - 1]) for n in numbers]
    print(
        f"{args.module}: {len(every)} mutants, running {len(picked)} of a sample of {total} (seed {args.seed})",
        flush=True,
    )
    if args.list:
        for n, m in picked:
            print(f"[{n}/{total}] {args.module}:{m.line}: {m.what}\n    - {m.old}\n    + {m.new}")
        return 0

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # a kill still deletes the copy (finally below)
    work = Path(tempfile.mkdtemp(prefix="anyshape-mutate-"))
    results: list[tuple[Mutant, str]] = []
    try:
        copy = work / "project"
        _copy_project(root, copy)
        _check_imports_the_copy(copy, args.module)
        pytest_args = shlex.split(args.pytest_args)
        outcome, seconds = _run_tests(copy, args.tests, None, pytest_args)  # the time limit is for mutants
        if outcome != "passed":
            tail = (work / "last-run.log").read_text(errors="replace").splitlines()[-30:]
            print("\n".join(tail), file=sys.stderr)
            print(f"the tests do not pass on the unmutated code ({outcome}): fix that first", file=sys.stderr)
            return 1
        timeout = args.timeout or 3 * seconds + 30
        print(f"clean run: passed in {seconds:.1f} s; limit per mutant {timeout:.0f} s", flush=True)
        target = copy / args.module
        for i, m in picked:
            target.write_text(m.source)
            outcome, seconds = _run_tests(copy, args.tests, timeout, pytest_args)
            status = {"passed": "SURVIVED", "failed": "killed", "timeout": "killed (timeout)"}[outcome]
            print(f"[{i}/{total}] {status:<16} {args.module}:{m.line}: {m.what} ({seconds:.1f} s)", flush=True)
            results.append((m, outcome))
    except KeyboardInterrupt:
        print("interrupted: the results so far", file=sys.stderr)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    _report(args.module, results)
    return 0 if len(results) == len(picked) else 130


def _report(module: str, results: list) -> None:
    if not results:
        return
    killed = sum(outcome != "passed" for _, outcome in results)
    timeouts = sum(outcome == "timeout" for _, outcome in results)
    print(
        f"\nkill rate: {killed}/{len(results)} ({100 * killed / len(results):.0f} %)"
        + (f", {timeouts} by the time limit" if timeouts else "")
    )
    survivors = [m for m, outcome in results if outcome == "passed"]
    if survivors:
        print("survivors (a hole in the tests, or a change nothing can observe):")
    for m in survivors:
        print(f"{module}:{m.line}: {m.what}\n    - {m.old}\n    + {m.new}")


if __name__ == "__main__":
    sys.exit(main())
