"""The `anyshape` command. Argument parsing only: every verb calls the Python API.

Each verb is a pair of functions: `_add_<verb>(subparsers)` declares its arguments and
`_run_<verb>(args) -> int` calls the library and returns the exit code. They live by topic:
`explain` (explain, summary), `train`, `inference` (predict, features), `deploy` (export, bench, quantize)
and `convert` (convert, weights); `options` holds the flag groups they share, `arg_types` the
argument types.
Keras is imported only by verbs that build a model, so `anyshape explain` answers at once.

What every verb shares lives in one place, `_call`: the exit codes (0 ok, 1 some inputs failed,
the shape is invalid, or a bug in anyshape, 2 usage error: the command cannot run as given, 130
interrupted), the one-line messages in CLI words for a user's mistake (a bug keeps its traceback),
Ctrl-C, and quiet backend start-up unless --verbose.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import traceback
from collections.abc import Sequence

from anyshape.cli import convert, deploy, explain, inference, train
from anyshape.cli.arg_types import parse_channel_adapt, parse_shape
from anyshape.cli.options import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE, HelpFormatter, cli_message
from anyshape.interrupts import extension_imports_held, raise_if_interrupted, remember_interrupts

__all__ = ["main", "build_parser", "cli_message", "parse_shape", "parse_channel_adapt"]
__all__ += ["EXIT_OK", "EXIT_FAILED", "EXIT_USAGE", "EXIT_INTERRUPTED"]

# in the order `anyshape --help` lists them
VERBS = {**explain.VERBS, **train.VERBS, **inference.VERBS, **deploy.VERBS, **convert.VERBS}


# verbs that load a deep-learning backend (its start-up messages are hidden unless --verbose)
BACKEND_VERBS = {"summary", "train", "predict", "features", "export", "bench", "quantize", "convert"}


class _Subparsers(argparse._SubParsersAction):
    """Subcommands that share the main parser's help formatter and accept --verbose after the verb."""

    def add_parser(self, name, **kwargs):
        kwargs.setdefault("formatter_class", HelpFormatter)
        p = super().add_parser(name, **kwargs)
        p.add_argument(
            "--verbose",
            action="store_true",
            default=argparse.SUPPRESS,
            help="show the backend's start-up messages and the traceback of an error",
        )
        return p


def build_parser() -> argparse.ArgumentParser:
    from anyshape import __version__

    parser = argparse.ArgumentParser(
        prog="anyshape",
        description="InceptionV3 for Keras 3 at any input shape. "
        "Exit codes: 0 ok, 1 some inputs failed, the shape is invalid or an internal error, "
        "2 usage error, 130 interrupted.",
        formatter_class=HelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"anyshape {__version__}")
    parser.add_argument(
        "--verbose", action="store_true", help="show the backend's start-up messages and the traceback of an error"
    )
    parser.register("action", "parsers", _Subparsers)
    sub = parser.add_subparsers(dest="verb", required=True, metavar="VERB")
    for add, _ in VERBS.values():
        add(sub)
    return parser


_UNSET = object()


def _given(argv: Sequence[str]) -> set[str]:
    """The destinations of the flags present on the command line (not left at their defaults)."""
    parser = build_parser()
    # argparse keeps the verbs' parsers on its private _subparsers group
    subparsers = parser._subparsers._group_actions[0]  # type: ignore[union-attr]
    for action in subparsers.choices.values():  # type: ignore[union-attr]
        for a in action._actions:
            if a.option_strings and a.default is not argparse.SUPPRESS:
                a.default = _UNSET
        for dest in action._defaults:  # a verb's set_defaults (features' include_top=False, ...) are not flags
            action._defaults[dest] = _UNSET
    args = parser.parse_args(argv)
    return {k for k, v in vars(args).items() if v is not _UNSET}


@contextlib.contextmanager
def _stderr_hidden():
    """Standard error's file descriptor on /dev/null for the block (what C code writes too)."""
    sys.stderr.flush()
    saved, devnull = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    try:
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def _backend_start(verb: str, source: str | None = None, *, quiet: bool = True) -> None:
    """Load the backend before the verb runs, with its start-up messages hidden when `quiet`.

    TF_CPP_MIN_LOG_LEVEL=3 silences TensorFlow's C++ logging, but the messages written before
    absl's logging is initialised (oneDNN, CUDA drivers) ignore it: standard error's file
    descriptor points at /dev/null while the backend loads (`--verbose` shows them all).

    Ctrl-C is held back while each extension module initialises (`extension_imports_held`: one
    of jaxlib's crashed the process when a KeyboardInterrupt was raised in it), and raised as
    usual between them."""
    if quiet:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    if "keras" in sys.modules:
        return
    with _stderr_hidden() if quiet else contextlib.nullcontext(), extension_imports_held():
        if verb == "convert":  # before TensorFlow, or importing them later crashes
            from anyshape.weights.reference import import_reference_frameworks

            import_reference_frameworks(source or "torchvision")
        try:
            import keras  # noqa: F401  (loads the backend)
        except Exception:  # noqa: BLE001 -- the verb imports it again and reports the error
            pass


def _interrupted_line(verb: str, e: KeyboardInterrupt) -> str:
    kept = getattr(e, "kept", None) or "nothing was written (outputs appear only when complete)"
    return f"anyshape {verb}: interrupted; {kept}"


def _user_errors() -> tuple[type[BaseException], ...]:
    """What anyshape raises for a user's mistake: a value (an option, a shape, a weight name), a
    file (missing, existing, unreadable; OSError covers WeightDownloadError), an optional package
    not installed (MissingExtra), a layer of the user's model the ONNX emitter cannot translate
    (UnsupportedLayer). Those two modules are consulted only when imported: an error of theirs
    cannot occur otherwise."""
    out: list[type[BaseException]] = [ValueError, OSError]
    for module, name in (("anyshape.engine.predictor", "MissingExtra"), ("anyshape.onnx_graph", "UnsupportedLayer")):
        if module in sys.modules:
            out.append(getattr(sys.modules[module], name))
    return tuple(out)


def _call(verb: str, run, args) -> int:
    """Run one verb with the rules every verb shares: exit codes, messages, Ctrl-C.

    A user's mistake is one line (exit 2; exit 1 for an input shape the network cannot take);
    anything else is a bug in anyshape (or in a library under it): its traceback and a line
    saying so, exit 1, so that it is reported rather than taken for a wrong option."""
    import warnings

    from anyshape.shapes import InvalidInputShape, TransposedShapeWarning

    verbose = getattr(args, "verbose", False)
    shown = warnings.showwarning

    def show(message, category, filename, lineno, file=None, line=None):
        if issubclass(category, TransposedShapeWarning):  # anyshape's advice: one line, in CLI words
            print(f"anyshape {verb}: warning: {cli_message(message)}", file=sys.stderr)
        else:
            shown(message, category, filename, lineno, file, line)

    try:
        with warnings.catch_warnings():
            warnings.showwarning = show
            return run(args)
    except KeyboardInterrupt as e:
        print(_interrupted_line(verb, e), file=sys.stderr)
        return EXIT_INTERRUPTED
    except InvalidInputShape as e:
        if verbose:
            raise
        print(f"anyshape {verb}: {cli_message(e)}", file=sys.stderr)
        return EXIT_FAILED
    except Exception as e:  # noqa: BLE001 -- sorted below: a user's mistake or a bug
        if not isinstance(e, _user_errors()):
            traceback.print_exc()
            print(
                f"anyshape {verb}: internal error {type(e).__name__}: {e}\n"
                "This is a bug in anyshape (or a library it uses), not a problem with your command: "
                "please report it with the command line and the traceback above.",
                file=sys.stderr,
            )
            return EXIT_FAILED
        # the command cannot run as given (an option, a file, the weights): a usage error
        if verbose:
            raise
        print(f"anyshape {verb}: {cli_message(e)}", file=sys.stderr)
        return EXIT_USAGE


def _deliver_swallowed_interrupts() -> None:
    """A Ctrl-C that lands inside a garbage-collector callback (JAX registers one) is swallowed
    by Python and printed as "Exception ignored in ..." with a traceback, and the run goes on.
    Such an interrupt is signalled again a moment later from another thread, so that it stops
    the run at the next Python line outside the callback (raising it inside the hook would be
    swallowed the same way)."""
    import signal
    import threading

    previous = sys.unraisablehook

    def hook(unraisable):
        if unraisable.exc_type is not None and issubclass(unraisable.exc_type, KeyboardInterrupt):
            timer = threading.Timer(0.01, os.kill, (os.getpid(), signal.SIGINT))
            timer.daemon = True
            timer.start()
            return
        previous(unraisable)

    sys.unraisablehook = hook


def _main(argv: list, state: dict) -> int:
    args = build_parser().parse_args(argv)
    args.given = _given(argv)
    state["verb"] = args.verb
    if args.verb in BACKEND_VERBS:
        try:
            _backend_start(args.verb, getattr(args, "source", None), quiet=not getattr(args, "verbose", False))
            raise_if_interrupted()  # a Ctrl-C that a library swallowed so far
        except KeyboardInterrupt as e:
            print(_interrupted_line(args.verb, e), file=sys.stderr)
            state["reported"] = True
            return EXIT_INTERRUPTED
    code = _call(args.verb, VERBS[args.verb][1], args)
    state["reported"] = code == EXIT_INTERRUPTED
    return code


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line `argv` (default: the program's own, as the `anyshape` command)."""
    if argv is not None:
        return _main(list(argv), {})
    import signal

    remember_interrupts()
    _deliver_swallowed_interrupts()
    state: dict = {}
    try:
        code = _main(sys.argv[1:], state)
    except KeyboardInterrupt as e:  # a second Ctrl-C, or one outside a verb's own handling
        if not state.get("reported"):
            print(_interrupted_line(state.get("verb", "(starting)"), e), file=sys.stderr)
        code = EXIT_INTERRUPTED
    finally:
        # the work is done and reported: a Ctrl-C while the process shuts down (TensorFlow's
        # teardown takes a moment) must not turn the exit code into a death by signal
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    if code == EXIT_INTERRUPTED:
        # A Ctrl-C that landed inside code an extension ran through PyRun_String (pybind11's
        # py::exec while TensorFlow loads) sets CPython's "unhandled KeyboardInterrupt" flag even
        # though the interrupt was handled here, and Py_RunMain then ends the process by SIGINT
        # after finalising (exit status -2, not 130). Every verb has already written or removed
        # its files and printed its line by now, so the process ends here with 130.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    return code
