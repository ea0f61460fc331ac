"""keras.applications.inception_v3 in anyshape: InceptionV3 at any input shape, with the
preprocess_input and decode_predictions of their Keras ImageNet weights (see _keras_modules)."""

from anyshape.applications._keras_modules import constructors, helpers

(InceptionV3,) = constructors("InceptionV3")
preprocess_input, decode_predictions = helpers("inception_v3", "inception_v3")

__all__ = ["InceptionV3", "preprocess_input", "decode_predictions"]
