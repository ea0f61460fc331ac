"""Atomic writes: the destination holds the old content or the new, never half of either."""

import errno
import os
from pathlib import Path

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


def _write_theirs_meanwhile(dst, folder=False):
    """A `write` that also makes `dst` itself, as another run writing the same output would."""

    def write(tmp):
        if folder:
            os.mkdir(tmp)
            (Path(tmp) / "saved_model.pb").write_bytes(b"ours")
            os.mkdir(dst)
            (dst / "saved_model.pb").write_bytes(b"theirs")
        else:
            Path(tmp).write_bytes(b"ours")
            dst.write_bytes(b"theirs")

    return write


@pytest.mark.parametrize("folder", [False, True])
def test_without_overwrite_an_output_that_appears_meanwhile_is_kept(tmp_path, folder):
    """The no-overwrite rule is one step with the move, not a check before it (issue 15, item 9)."""
    dst = tmp_path / "out"
    with pytest.raises(FileExistsError, match="appeared while"):
        write_atomically(dst, _write_theirs_meanwhile(dst, folder), overwrite=False)
    assert (dst / "saved_model.pb" if folder else dst).read_bytes() == b"theirs"
    assert [p.name for p in tmp_path.iterdir()] == ["out"]
    write_bytes_atomically(tmp_path / "new", b"x", overwrite=False)  # an absent name is written
    assert (tmp_path / "new").read_bytes() == b"x"


def test_without_hard_links_the_name_is_claimed_exclusively(tmp_path, monkeypatch):
    def no_links(src, dst):
        raise OSError(errno.EPERM, "Operation not permitted")

    monkeypatch.setattr(os, "link", no_links)
    write_bytes_atomically(tmp_path / "a", b"first", overwrite=False)
    assert (tmp_path / "a").read_bytes() == b"first"
    dst = tmp_path / "b"
    with pytest.raises(FileExistsError, match="appeared while"):
        write_atomically(dst, _write_theirs_meanwhile(dst), overwrite=False)
    assert dst.read_bytes() == b"theirs" and sorted(p.name for p in tmp_path.iterdir()) == ["a", "b"]


def test_a_folder_replaces_a_folder(tmp_path):
    dst = tmp_path / "saved"
    dst.mkdir()
    (dst / "old.pb").write_bytes(b"old")

    def write(tmp):
        os.mkdir(tmp)
        (Path(tmp) / "new.pb").write_bytes(b"new")

    write_atomically(dst, write)
    assert [p.name for p in dst.iterdir()] == ["new.pb"] and [p.name for p in tmp_path.iterdir()] == ["saved"]


def test_an_interrupt_hidden_by_the_writers_cleanup_comes_out_as_the_interrupt(tmp_path):
    """Ctrl-C while np.savez has a member open: ZipFile's close then raises ValueError ("Can't
    close the ZIP file while there is an open writing handle"), which hid the interrupt (the CLI
    exited 2, not 130). write_atomically raises the KeyboardInterrupt, and leaves nothing behind;
    a writer's own error without an interrupt behind it is raised as it is."""
    import zipfile

    opened = []  # closed at the end, so that no half-closed archive is left to the garbage collector

    def interrupted(tmp):
        with zipfile.ZipFile(tmp, "w") as archive:
            handle = archive.open("features.npy", "w")
            opened.append((archive, handle))
            handle.write(b"half a row")
            raise KeyboardInterrupt  # the handle still open when the archive closes

    with pytest.raises(KeyboardInterrupt):
        write_atomically(tmp_path / "feats.npz", interrupted)
    assert list(tmp_path.iterdir()) == []

    def broken(tmp):
        with zipfile.ZipFile(tmp, "w") as archive:
            handle = archive.open("features.npy", "w")
            opened.append((archive, handle))
            handle.write(b"half a row")

    with pytest.raises(ValueError, match="open writing handle"):
        write_atomically(tmp_path / "feats.npz", broken)
    assert list(tmp_path.iterdir()) == []
    for archive, handle in opened:
        handle.close()
        archive.close()
