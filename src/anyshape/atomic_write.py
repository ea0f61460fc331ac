"""Writing files atomically: a run never leaves half a file under the final name.

Every file anyshape writes for a user (feature tables, ONNX and Keras models, checkpoints,
converted weights, run reports) goes through `write_atomically`: the content is written to a
temporary file in the destination folder, which is then renamed onto the destination with
`os.replace` (atomic on POSIX within one file system). On any error the temporary file is removed
and the destination is untouched; a Ctrl-C that broke the writer comes out as the interrupt, even
when the writer's cleanup failed after it.

Refusing to overwrite an existing file is the caller's decision, made before calling (so that
nothing is computed for an output that would be refused), and kept by passing
`overwrite=False`: then the check and the move are one step, so an output that appears while
this one is written (two runs writing one name at once) is not replaced either. A file is
hard-linked into place (`os.link` fails when the name exists), a folder renamed (`os.rename`
fails onto a file or a folder holding anything).
"""

from __future__ import annotations

import errno
import itertools
import os
import shutil
import threading
from collections.abc import Callable
from pathlib import Path

__all__ = ["write_atomically", "write_bytes_atomically"]

_counter = itertools.count()


def _suffix(name: str) -> str:
    # Keras picks the format from the whole ending (".weights.h5" vs ".h5"); numpy's save and
    # savez append ".npy"/".npz" unless the name already ends so: keep the ending intact.
    return ".weights.h5" if name.endswith(".weights.h5") else Path(name).suffix


def _appeared(path: Path) -> FileExistsError:
    return FileExistsError(
        f"{path} exists (it appeared while this output was being written, e.g. by another run); it was not replaced"
    )


def _move_new(tmp: Path, path: Path) -> None:
    """Move `tmp` to `path` only if nothing is there, in one step."""
    if tmp.is_dir():
        try:
            os.rename(tmp, path)
        except OSError as e:
            if e.errno in (errno.EEXIST, errno.ENOTEMPTY, errno.ENOTDIR, errno.EISDIR):
                raise _appeared(path) from None
            raise
        return
    try:
        os.link(tmp, path)
    except FileExistsError:
        raise _appeared(path) from None
    except OSError as e:
        if e.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EMLINK):
            raise
        # a file system without hard links: claim the name by creating it exclusively, then
        # replace the (empty) claim by the content
        try:
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644))
        except FileExistsError:
            raise _appeared(path) from None
        os.replace(tmp, path)


def _interrupt_behind(error: BaseException) -> KeyboardInterrupt | None:
    """The Ctrl-C that broke a writer mid-file when the writer's own cleanup then failed on the
    half-written file and hid it (zipfile's close, under np.savez: "Can't close the ZIP file while
    there is an open writing handle on it", a ValueError the CLI reported as exit 2 instead of
    the interrupt's 130; a clean-clone run of tests/test_careless_user.py); None when no interrupt
    is behind `error`."""
    seen: set[int] = set()
    cause = error.__context__
    while cause is not None and id(cause) not in seen:
        if isinstance(cause, KeyboardInterrupt):
            return cause
        seen.add(id(cause))
        cause = cause.__context__
    return None


def write_atomically(path, write: Callable[[str], object], *, overwrite: bool = True) -> Path:
    """Call `write(tmp)` with a temporary path beside `path`, then move it onto `path`.

    `write` makes a file there, or a folder (a TF SavedModel). With `overwrite=True` a file
    replaces a file in one rename, and a folder a folder (the old one is moved aside, then
    removed); with `overwrite=False` an existing `path` is kept and FileExistsError raised.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}-{threading.get_ident()}-{next(_counter)}.tmp{_suffix(path.name)}")
    old = tmp.with_name(tmp.name + ".old")
    try:
        try:
            write(str(tmp))
        except Exception as e:
            interrupt = _interrupt_behind(e)
            if interrupt is not None:
                raise interrupt from None
            raise
        if not overwrite:
            _move_new(tmp, path)
        elif tmp.is_dir() and path.is_dir():
            os.replace(path, old)
            os.replace(tmp, path)
        else:
            os.replace(tmp, path)
    finally:
        for leftover in (tmp, old):
            if leftover.is_dir():
                shutil.rmtree(leftover)
            elif leftover.exists():
                leftover.unlink()
    return path


def write_bytes_atomically(path, data: bytes, *, overwrite: bool = True) -> Path:
    """Write `data` to `path` atomically, flushed to disk before the rename."""

    def write(tmp: str) -> None:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())

    return write_atomically(path, write, overwrite=overwrite)
