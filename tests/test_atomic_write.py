"""Atomic writes: the destination holds the old content or the new, never half of either."""

import numpy as np
import pytest

from anyshape.atomic_write import write_atomically, write_bytes_atomically


def test_writes_and_replaces(tmp_path):
    dst = tmp_path / "a.bin"
    write_bytes_atomically(dst, b"first")
    write_bytes_atomically(dst, b"second")
    assert dst.read_bytes() == b"second"
    assert [p.name for p in tmp_path.iterdir()] == ["a.bin"]


def test_failure_leaves_destination_and_no_temporary_file(tmp_path):
    dst = tmp_path / "table.npz"
    dst.write_bytes(b"old")

    def write(tmp):
        with open(tmp, "wb") as f:
            f.write(b"half")
        raise RuntimeError("interrupted")

    with pytest.raises(RuntimeError, match="interrupted"):
        write_atomically(dst, write)
    assert dst.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["table.npz"]


@pytest.mark.parametrize("name", ["f.npz", "f.npy", "model.weights.h5"])
def test_temporary_name_keeps_the_ending(tmp_path, name):
    seen = []
    write_atomically(tmp_path / name, lambda tmp: (seen.append(tmp), open(tmp, "wb").close()))
    assert seen[0].endswith(".weights.h5" if name.endswith(".weights.h5") else name[-4:])
    # numpy does not append another ending, so the file it writes is the one renamed
    write_atomically(tmp_path / "x.npz", lambda tmp: np.savez(tmp, a=np.arange(3)))
    assert np.load(tmp_path / "x.npz")["a"].tolist() == [0, 1, 2]
