"""Ctrl-C while a model trains, raised where TensorFlow can take it: at the end of a batch."""

from __future__ import annotations

import contextlib

from anyshape.interrupts import interrupts_held


@contextlib.contextmanager
def interrupts_at_batch_ends():
    """Yields the Keras callbacks to give `model.fit`: a SIGINT that arrives in the block is held
    back (`interrupts_held`) and raised (KeyboardInterrupt) at the end of the training batch it
    arrived in, or when the block ends (after the checkpoint an epoch writes), never inside
    TensorFlow's train step.

    A KeyboardInterrupt raised by Python's own handler while TensorFlow's compiled step was calling
    back into Python came out as `SystemError: Objects/listobject.c:338: bad argument to internal
    function` (a clean-clone run of tests/test_careless_user.py, `train` interrupted in its first
    epoch), which the CLI can only report as an internal error. Outside the main thread, or where
    SIGINT is not Python's to handle, nothing is held back and no callback is given."""
    with interrupts_held() as pending:
        if pending is None:
            yield []
            return
        import keras

        class RaiseAtBatchEnd(keras.callbacks.Callback):
            def on_train_batch_end(self, batch, logs=None):
                if pending:
                    raise KeyboardInterrupt

        yield [RaiseAtBatchEnd()]
