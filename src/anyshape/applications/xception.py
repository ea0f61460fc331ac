"""keras.applications.xception in anyshape: Xception at any input shape, with the preprocess_input
and decode_predictions of their Keras ImageNet weights (see _keras_modules)."""

from anyshape.applications._keras_modules import constructors, helpers

_NAMES = ("Xception",)
(Xception,) = constructors(*_NAMES)
preprocess_input, decode_predictions = helpers("xception", "xception")

__all__ = [*_NAMES, "preprocess_input", "decode_predictions"]
