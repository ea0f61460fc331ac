"""The README's two per-family tables ("The whole keras.applications family" and "The family's
pretrained weights"), row by row against what the code computes and the tests measure (issue 25:
the family rows are measured by the tests, not typed in). No model is built.

- one row per registered family, no other row;
- minimums: Keras' column is each member's `Arch.keras_min_size`, anyshape's the shape engine's
  `minimum_size` of each member (with the top where the row gives one);
- weight sets: every set the row names is registered for a member of that family, and a row that
  lists its sets (no "...") lists every member's; the preprocessing column is each member's
  `Arch.preprocessing` and its Keras set's mode;
- the channels column says what `tests/test_weights_family.py::test_family_file_at_an_odd_size_with_one_and_four_channels`
  asserts for the family's representative: equal to the RGB model within that test's tolerance,
  or, for the families whose stem pads each channel after its in-graph normalisation
  (`PADDED_PER_CHANNEL_STEM`), equal except the border.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from model_helpers import representatives
from test_weights_family import PADDED_PER_CHANNEL_STEM, TOL

from anyshape.archs import get_arch, list_models
from anyshape.shapes import explain, minimum_size
from anyshape.weights import REGISTRY

README = Path(__file__).resolve().parent.parent / "README.md"


def _families() -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for name in list_models():
        out.setdefault(get_arch(name).family, []).append(name)
    return out


FAMILIES = _families()


def _table(header: str) -> dict[str, list[str]]:
    """{family: its row's cells} of the README table whose header row starts with `header`; a
    row's family is its first cell's first word ("ResNetV2" is the family resnet_v2)."""
    lines = README.read_text(encoding="utf-8").splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(header))
    rows: dict[str, list[str]] = {}
    by_key = {family.replace("_", ""): family for family in FAMILIES}
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        cells = [c.strip() for c in line.strip("|").split("|")]
        key = cells[0].split()[0].lower()
        assert key in by_key, f"README row {cells[0]!r} names no registered family"
        assert by_key[key] not in rows, f"README table {header!r}: two rows for {by_key[key]}"
        rows[by_key[key]] = cells
    assert sorted(rows) == sorted(FAMILIES), f"README table {header!r}: rows {sorted(rows)} != {sorted(FAMILIES)}"
    return rows


MINIMUMS = _table("| family (registry names) | Keras' minimum |")
WEIGHTS = _table("| family | weight sets")


def _first_int(text: str) -> int:
    return int(re.match(r"\d+", text).group())  # type: ignore[union-attr]


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_minimum_row_is_computed(family):
    _, keras_min, ours, _ = MINIMUMS[family]
    top = re.search(r"\((\d+) with the top\)", ours)
    for name in FAMILIES[family]:
        arch = get_arch(name)
        assert arch.keras_min_size == _first_int(keras_min), (name, keras_min)
        n = _first_int(ours)
        assert minimum_size(name) == (n, n), (name, minimum_size(name), ours)
        with_top = int(top.group(1)) if top else n
        assert minimum_size(name, include_top=True) == (with_top, with_top), (name, ours)
        fixed = re.search(r"with the top at a fixed size below \d+, (\d+)", ours)  # VGG's Flatten top
        if fixed:
            m = int(fixed.group(1))
            assert explain((m, m, 3), arch=name, include_top=True).valid, (name, ours)
            assert not explain((m - 1, m, 3), arch=name, include_top=True).valid, (name, ours)


MODES = (("caffe", "caffe"), ("mean/std", "torch"), ("raw 0..255", "raw"), ("[-1, 1]", "tf"))


def _set_name(name: str) -> str:
    return "imagenet" if name == "inception_v3" else f"{name}.keras_in1k"


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_weights_row_is_registered_and_measured(family):
    _, sets, preprocessing, channels = WEIGHTS[family]
    members = FAMILIES[family]
    named = set()  # the sets before the row's notes in parentheses
    for token in re.findall(r"`([^`]+)`", sets.split(" (")[0]):
        if token.endswith(".…"):  # an abbreviation: resnet101_v2.… or, in a range, _b3.…
            stem = token[: -len(".…")]
            token = f"{family if stem.startswith('_') else ''}{stem}.keras_in1k"
        assert token in REGISTRY, (family, token)
        assert REGISTRY[token].arch in members, (family, token, REGISTRY[token].arch)
        named.add(REGISTRY[token].arch)
    if "..." not in sets:
        assert named == set(members), (family, sets)
    modes = [mode for words, mode in MODES if words in preprocessing.split(" (")[0]]
    assert len(modes) == 1, (family, preprocessing)
    for name in members:
        assert get_arch(name).preprocessing == modes[0], (name, preprocessing)
        assert REGISTRY[_set_name(name)].mode == modes[0], (name, REGISTRY[_set_name(name)].mode)

    # what test_weights_family asserts on the family's representative
    assert any(get_arch(r).family == family for r in representatives())
    if family in PADDED_PER_CHANNEL_STEM:
        assert channels.startswith("1 and 4 channels load;") and "except its border rows and columns" in channels
    else:
        stated = re.fullmatch(r"1 and 4 channels: equal to the RGB model \(relative ([0-9.e-]+)\)( \(.*\))?", channels)
        assert stated and float(stated.group(1)) == TOL, (family, channels)
