"""Ray's C++ core lines kept off the terminal while a Ray job runs (`predict/features --ray`)."""

from __future__ import annotations

import contextlib
import os
import re
import sys
import threading

__all__ = ["without_ray_core_lines"]

# the prefix of a line Ray's C++ core logs: [2026-11-28 19:57:47,058 E 7261 7261] core_worker.cc:2465:
_RAY_CORE_LINE = re.compile(rb"\[\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d+ [A-Z] \d+ \d+\] [\w.]+:\d+: ")
_RAY_CORE_PREFIX = 64  # longer than any such prefix: a held line this long that does not match is not one


@contextlib.contextmanager
def without_ray_core_lines():
    """Keep the lines Ray's C++ core writes to standard error off the terminal while a job runs.

    They bypass Python's logging: the core writes them to file descriptor 2 itself. A Ray Data
    run gives one per actor pool ("has constructor arguments in the object store and max_restarts
    > 0", ray-project/ray#57733), however small its arguments; RAY_BACKEND_LOG_LEVEL cannot hide
    it and prints a line of its own. So descriptor 2 goes through a pipe whose reader drops those
    lines and passes every other byte on as it comes (progress bars and warnings included).
    `--verbose` runs without it."""
    sys.stderr.flush()
    terminal = os.dup(2)
    read_end, write_end = os.pipe()
    os.dup2(write_end, 2)
    os.close(write_end)

    def write(data: bytes) -> None:
        try:
            while data:
                data = data[os.write(terminal, data) :]
        except OSError:  # standard error closed: the rest is dropped, and the pipe keeps draining
            pass

    def pump() -> None:
        held = b""
        while chunk := os.read(read_end, 65536):
            held += chunk
            while held:
                end = held.find(b"\n") + 1
                if not end and held.startswith(b"[") and (len(held) < _RAY_CORE_PREFIX or _RAY_CORE_LINE.match(held)):
                    break  # (perhaps) a Ray line, not ended yet: wait for its end
                cut = end or len(held)
                if not _RAY_CORE_LINE.match(held[:cut]):
                    write(held[:cut])
                held = held[cut:]
        if not _RAY_CORE_LINE.match(held):
            write(held)
        os.close(read_end)
        os.close(terminal)

    reader = threading.Thread(target=pump, name="anyshape-ray-stderr", daemon=True)
    reader.start()
    try:
        yield
    finally:
        sys.stderr.flush()
        saved = os.dup(terminal)
        os.dup2(saved, 2)  # the pipe's last write end closes: the reader passes on what is left and ends
        os.close(saved)
        reader.join(timeout=10)
