"""Ctrl-C where the libraries under anyshape cannot take it: held back, or remembered.

Where a KeyboardInterrupt would break the library it is raised in (TensorFlow creating variables,
its train step, an extension module initialising), Ctrl-C is held back until the block ends
(`interrupts_held`, `extension_imports_held`).

Elsewhere Python raises KeyboardInterrupt in whatever Python code runs when SIGINT arrives. When
that code was called by an extension that treats any Python error as a "no" and clears it, the
interrupt is gone and the run goes on: TensorFlow's C++ `nest.flatten` calls
`abc.__instancecheck__`, and a Ctrl-C landing there during TensorFlow's import (1 in 120
interrupts at random moments of `anyshape features`' start, 2 cores) let the run finish and exit
0. TensorFlow runs the same code when anyshape translates a model. The
command line's handler (`remember_interrupts`) therefore also remembers each interrupt, and the
points where a run can stop cleanly (after the backend has loaded, before each batch of images)
call `raise_if_interrupted`: an interrupt that was swallowed is raised there again. An interrupt
that was not swallowed ends the command before it reaches such a point, so it is never raised
twice.
"""

from __future__ import annotations

import contextlib
import signal
import threading

__all__ = ["extension_imports_held", "interrupts_held", "raise_if_interrupted", "remember_interrupts"]

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


@contextlib.contextmanager
def interrupts_held():
    """Ctrl-C held back until the block ends, then raised (KeyboardInterrupt) as usual. Yields the
    list of the signals held so far, or None where nothing is held: outside the main thread, or
    where SIGINT is not Python's to handle.

    TensorFlow can crash (SIGSEGV) when a KeyboardInterrupt is raised inside its eager tensor
    conversion, which creating a model's variables calls for every initializer: seen as exit -11
    instead of 130 when a `features --model` run was interrupted while loading its model
    (tests/test_careless_user.py, about 1 in 40 interrupts at that moment). Building or loading a
    model takes seconds, so the CLI's verbs and `anyshape.train` hold Ctrl-C while they do; scripts
    can do the same (`with interrupts_held(): model = anyshape.create_model(...)`)."""
    previous = signal.getsignal(signal.SIGINT)
    if threading.current_thread() is not threading.main_thread() or not callable(previous):
        yield None
        return
    pending: list = []
    signal.signal(signal.SIGINT, lambda signum, frame: pending.append(signum))
    try:
        yield pending
    finally:
        signal.signal(signal.SIGINT, previous)
    if pending:
        raise KeyboardInterrupt


@contextlib.contextmanager
def extension_imports_held():
    """While the block runs, Ctrl-C is held back while each C extension module initialises
    (`interrupts_held` around the extension loader's create_module and exec_module), and raised
    as usual in between. TensorFlow's import imports JAX where it is installed, and a
    KeyboardInterrupt raised while jaxlib's extension module initialised crashed the process
    (SIGSEGV, exit -11: 2 in 130 interrupts of `anyshape features` at random moments of its
    start, 2 cores). Holding Ctrl-C for the whole import instead made it wait for the import, up
    to 11 s; this way it waits for one extension module at most."""
    from importlib.machinery import ExtensionFileLoader

    create, execute = ExtensionFileLoader.create_module, ExtensionFileLoader.exec_module

    def held_create(self, spec):
        with interrupts_held():
            return create(self, spec)

    def held_exec(self, module):
        with interrupts_held():
            return execute(self, module)

    ExtensionFileLoader.create_module, ExtensionFileLoader.exec_module = held_create, held_exec
    try:
        yield
    finally:
        ExtensionFileLoader.create_module, ExtensionFileLoader.exec_module = create, execute
