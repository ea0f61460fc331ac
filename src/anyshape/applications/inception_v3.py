"""keras.applications.inception_v3 in anyshape: InceptionV3 at any input shape, with the
preprocess_input and decode_predictions of their Keras ImageNet weights (see _keras_modules)."""

from anyshape.applications._keras_modules import constructors, helpers

_NAMES = ("InceptionV3",)
(InceptionV3,) = constructors(*_NAMES)
preprocess_input, decode_predictions = helpers("inception_v3", "inception_v3")

__all__ = [*_NAMES, "preprocess_input", "decode_predictions"]
