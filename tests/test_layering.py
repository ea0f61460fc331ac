"""The layers of src/anyshape: no import runs the wrong way, none closes a cycle.

`LAYERS` is the table ARCHITECTURE.md shows (the test reads it there and compares), bottom
first. A module may import from its own layer and the layers before it. Every import counts:
module-level, inside a function (a deferred import still runs, and still ties the modules), and
`importlib.import_module("anyshape....")` with a literal name. Only imports under
`if TYPE_CHECKING:` are left out: they never run (annotations only).

Pure Python (`ast`), no Keras: it reads the source files, it imports none of them.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "src" / "anyshape"

# (layer, paths under src/anyshape): a path ending in "/" is a package and everything in it that
# no more specific entry claims. Bottom first.
LAYERS: list[tuple[str, list[str]]] = [
    ("base", ["atomic_write.py", "errors.py", "interrupts.py"]),
    ("data", ["preprocess.py", "pixel_scaling.py", "image_files.py", "resizing.py", "data_config.py", "labels.py"]),
    ("networks", ["archs/"]),
    ("model", ["archs/keras_ops.py"]),
    ("shapes", ["shapes.py", "input_shapes.py"]),
    ("weights", ["weights/"]),
    ("model info", ["model_info.py"]),
    ("factory", ["factory.py", "inception_v3.py", "applications/"]),
    (
        "conversion",
        ["weights/convert.py", "weights/convert_common.py", "weights/convert_family.py", "weights/convert_twin.py"],
    ),
    ("engine", ["onnx_graph.py", "onnx_emitter.py", "onnx_rewrites.py", "engine/"]),
    ("jobs", ["datasets.py", "distributed.py", "ray_inputs.py", "ray_output.py", "training/"]),
    ("api", ["__init__.py"]),
    ("interface", ["cli/", "demo.py"]),
]


def module_name(path: str) -> str:
    """ "weights/registry.py" -> "anyshape.weights.registry"; "cli/__init__.py" -> "anyshape.cli"."""
    parts = ["anyshape", *path[: -len(".py")].split("/")]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def layer_of(path: str, layers=LAYERS) -> int | None:
    """The index of `path`'s layer: an entry naming the file wins, else the longest package."""
    best: tuple[int, int] | None = None  # (length of the entry, layer index)
    for index, (_, entries) in enumerate(layers):
        for entry in entries:
            if entry == path or (entry.endswith("/") and path.startswith(entry)):
                rank = (len(entry) + (1000 if entry == path else 0), index)
                best = max(best, rank) if best else rank
    return best[1] if best else None


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def imports(path: str, source: str, modules: set[str]) -> list[tuple[int, str]]:
    """(line, imported anyshape module) for every import in `source` that can run."""
    this = module_name(path)
    package = this if path.endswith("__init__.py") else this.rpartition(".")[0]

    def known(name: str) -> str:  # the module itself, or the package that holds the name
        while name not in modules and "." in name:
            name = name.rpartition(".")[0]
        return name

    found: list[tuple[int, str]] = []

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            found.extend((node.lineno, known(a.name)) for a in node.names if a.name.split(".")[0] == "anyshape")
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: from the package, up level - 1
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.split(".")[0] == "anyshape":
                # `from anyshape import preprocess` imports the module anyshape.preprocess
                found.extend((node.lineno, known(f"{target}.{a.name}")) for a in node.names)
        elif isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            value = node.args[0].value
            if name in ("import_module", "__import__") and isinstance(value, str) and value.startswith("anyshape"):
                found.append((node.lineno, known(value)))
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(ast.parse(source, filename=path))
    return [(line, target) for line, target in found if target != this]


def problems(sources: dict[str, str], layers=LAYERS) -> list[str]:
    """Every wrong-way import and every cycle among `sources` ({path under src/anyshape: text})."""
    names = {module_name(p): p for p in sources}
    out = [f"{p}: in no layer of the table" for p in sorted(sources) if layer_of(p, layers) is None]
    graph: dict[str, dict[str, int]] = {m: {} for m in names}
    for path, source in sorted(sources.items()):
        here = layer_of(path, layers)
        for line, target in imports(path, source, set(names)):
            if target not in names:
                continue  # the root package of a synthetic set, or a name no file defines
            graph[module_name(path)].setdefault(target, line)
            there = layer_of(names[target], layers)
            if here is not None and there is not None and there > here:
                out.append(
                    f"{path}:{line}: {module_name(path)} (layer {layers[here][0]}) imports {target} "
                    f"(layer {layers[there][0]}, above it)"
                )
    for group, cycle in _cycles(graph):
        steps = ", ".join(f"{names[a]}:{graph[a][b]} imports {b}" for a, b in zip(cycle, cycle[1:] + cycle[:1]))
        tied = f" (one of the cycles tying {', '.join(sorted(group))})" if len(group) > len(cycle) else ""
        out.append(f"import cycle: {steps}{tied}")
    return out


def _cycles(graph: dict[str, dict[str, int]]) -> list[tuple[set[str], list[str]]]:
    """Each strongly connected group of more than one module (Tarjan), with one cycle through it."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    groups: list[set[str]] = []

    def connect(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph[v]:
            if w not in index:
                connect(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = set()
            while True:
                w = stack.pop()
                group.add(w)
                if w == v:
                    break
            if len(group) > 1:
                groups.append(group)

    for v in sorted(graph):
        if v not in index:
            connect(v)
    cycles = []
    for group in groups:  # the shortest way from the group's first module back to it
        start = min(group)
        parent: dict[str, str] = {}
        queue = [start]
        while start not in parent:
            v = queue.pop(0)
            for w in sorted(graph[v]):
                if w in group and w not in parent:
                    parent[w] = v
                    queue.append(w)
        cycle = [parent[start]]
        while cycle[-1] != start:
            cycle.append(parent[cycle[-1]])
        cycles.append((group, cycle[::-1]))
    return cycles


def source_files() -> dict[str, str]:
    return {p.relative_to(PACKAGE).as_posix(): p.read_text(encoding="utf-8") for p in sorted(PACKAGE.rglob("*.py"))}


def test_no_import_runs_the_wrong_way_or_closes_a_cycle():
    sources = source_files()
    assert len(sources) > 50 and "data_config.py" in sources and "weights/registry.py" in sources
    assert problems(sources) == []


def test_the_table_covers_every_module_and_names_only_files_that_exist():
    sources = source_files()
    assert [p for p in sources if layer_of(p) is None] == []
    for layer, entries in LAYERS:
        for entry in entries:
            if entry.endswith("/"):
                assert (PACKAGE / entry / "__init__.py").is_file(), (layer, entry)
            else:
                assert entry in sources, (layer, entry)
    # an entry a more specific one empties would be a row that claims nothing
    claimed = {LAYERS[layer_of(p)][0] for p in sources}  # type: ignore[index]
    assert claimed == {layer for layer, _ in LAYERS}


def test_architecture_md_shows_this_table():
    text = (ROOT / "ARCHITECTURE.md").read_text(encoding="utf-8")
    section = text.split("## Layers", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| ") and not line.startswith("| layer")]
    shown = [(row.split("|")[1].strip(), re.findall(r"`([^`]+)`", row.split("|")[2])) for row in rows]
    assert shown == LAYERS
    # the README's Development section names the same layers in the same order
    readme = " ".join((ROOT / "README.md").read_text(encoding="utf-8").split())
    assert f"table, bottom up: {', '.join(layer for layer, _ in LAYERS)});" in readme


def test_the_check_catches_a_wrong_way_import_a_cycle_and_skips_type_checking():
    """A synthetic tree: each fault is reported with the module, its line and what it imports."""
    ok = {
        "preprocess.py": "import numpy\n",
        "data_config.py": "from anyshape.preprocess import x\n",
        "weights/__init__.py": "",
        "weights/registry.py": "from anyshape.data_config import DataConfig\n",
    }
    assert problems(ok) == []
    wrong_way = dict(ok, **{"data_config.py": "def f():\n    from anyshape.weights.registry import resolve\n"})
    assert problems(wrong_way) == [  # today's registry imports data_config: the wrong way closes a cycle too
        "data_config.py:2: anyshape.data_config (layer data) imports anyshape.weights.registry (layer weights, above it)",
        "import cycle: data_config.py:2 imports anyshape.weights.registry, weights/registry.py:1 imports anyshape.data_config",
    ]
    # the same import through the package, and through importlib with a literal name
    via_package = dict(ok, **{"preprocess.py": "from anyshape.weights import registry\n"})
    assert problems(via_package)[0].startswith(
        "preprocess.py:1: anyshape.preprocess (layer data) imports anyshape.weights.registry"
    )
    dynamic = dict(ok, **{"preprocess.py": "import importlib\nimportlib.import_module('anyshape.weights.registry')\n"})
    assert problems(dynamic)[0].startswith("preprocess.py:2: anyshape.preprocess")
    cycle = dict(ok, **{"preprocess.py": "def f():\n    from anyshape import data_config\n"})
    assert problems(cycle) == [
        "import cycle: data_config.py:1 imports anyshape.preprocess, preprocess.py:2 imports anyshape.data_config"
    ]
    typing_only = dict(
        ok,
        **{"preprocess.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import anyshape.data_config\n"},
    )
    assert problems(typing_only) == []
    assert problems(dict(ok, **{"nowhere.py": ""})) == ["nowhere.py: in no layer of the table"]


@pytest.mark.parametrize(
    "path, layer",
    [
        ("archs/resnet.py", "networks"),
        ("archs/keras_ops.py", "model"),
        ("weights/registry.py", "weights"),
        ("weights/convert.py", "conversion"),
        ("__init__.py", "api"),
        ("cli/__init__.py", "interface"),
    ],
)
def test_the_most_specific_entry_decides(path, layer):
    assert LAYERS[layer_of(path)][0] == layer  # type: ignore[index]
