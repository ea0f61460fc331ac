"""A Ctrl-C that a library swallowed, honoured at the next point where a run can stop.

Python raises KeyboardInterrupt in whatever Python code runs when SIGINT arrives. When that code
was called by an extension that treats any Python error as a "no" and clears it, the interrupt is
gone and the run goes on: TensorFlow's import runs `abc.__instancecheck__` under its C++
`nest.flatten`, and a Ctrl-C landing there (2 cores, one in about 100 interrupts during
`anyshape features`' start) let the run finish and exit 0. The command line's handler
(`remember_interrupts`) therefore also remembers each interrupt, and the points where a run can
stop cleanly (after the backend has loaded, before each batch of images) call
`raise_if_interrupted`: an interrupt that was swallowed is raised there again. An interrupt that
was not swallowed ends the command before it reaches such a point, so it is never raised twice.
"""

from __future__ import annotations

import signal
import threading

__all__ = ["raise_if_interrupted", "remember_interrupts"]

_received = threading.Event()


def _remembering_handler(signum, frame):
    _received.set()
    raise KeyboardInterrupt


def remember_interrupts() -> None:
    """Make Python's Ctrl-C handler remember each interrupt as well as raise it. Only where Python's
    own handler is installed, in the main thread: a SIGINT that is ignored (a command started with
    `&` by a shell without job control) stays ignored."""
    if (
        threading.current_thread() is threading.main_thread()
        and signal.getsignal(signal.SIGINT) is signal.default_int_handler
    ):
        signal.signal(signal.SIGINT, _remembering_handler)


def raise_if_interrupted() -> None:
    """Raise KeyboardInterrupt if a Ctrl-C arrived since `remember_interrupts` (a run goes on only
    when that interrupt was swallowed where it was raised)."""
    if _received.is_set():
        raise KeyboardInterrupt
