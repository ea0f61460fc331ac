"""keras.applications.mobilenet in anyshape: MobileNet at any input shape, with the
preprocess_input and decode_predictions of their Keras ImageNet weights (see _keras_modules)."""

from anyshape.applications._keras_modules import constructors, helpers

(MobileNet,) = constructors("MobileNet")
preprocess_input, decode_predictions = helpers("mobilenet", "mobilenet")

__all__ = ["MobileNet", "preprocess_input", "decode_predictions"]
