"""Writing files atomically: a run never leaves half a file under the final name.

Every file anyshape writes for a user (feature tables, ONNX and Keras models, checkpoints,
converted weights, run reports) goes through `write_atomically`: the content is written to a
temporary file in the destination folder, which is then renamed onto the destination with
`os.replace` (atomic on POSIX within one file system). On any error the temporary file is removed
and the destination is untouched. Refusing to overwrite an existing file is the caller's
decision, made before calling.
"""

from __future__ import annotations

import itertools
import os
import threading
from collections.abc import Callable
from pathlib import Path

__all__ = ["write_atomically", "write_bytes_atomically"]

_counter = itertools.count()


def _suffix(name: str) -> str:
    # Keras picks the format from the whole ending (".weights.h5" vs ".h5"); numpy's save and
    # savez append ".npy"/".npz" unless the name already ends so: keep the ending intact.
    return ".weights.h5" if name.endswith(".weights.h5") else Path(name).suffix


def write_atomically(path, write: Callable[[str], object]) -> Path:
    """Call `write(tmp)` with a temporary path beside `path`, then rename it onto `path`."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}-{threading.get_ident()}-{next(_counter)}.tmp{_suffix(path.name)}")
    try:
        write(str(tmp))
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def write_bytes_atomically(path, data: bytes) -> Path:
    """Write `data` to `path` atomically, flushed to disk before the rename."""

    def write(tmp: str) -> None:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())

    return write_atomically(path, write)
