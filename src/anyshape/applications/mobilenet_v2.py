"""keras.applications.mobilenet_v2 in anyshape: MobileNetV2 at any input shape, with the
preprocess_input and decode_predictions of their Keras ImageNet weights (see _keras_modules)."""

from anyshape.applications._keras_modules import constructors, helpers

_NAMES = ("MobileNetV2",)
(MobileNetV2,) = constructors(*_NAMES)
preprocess_input, decode_predictions = helpers("mobilenet_v2", "mobilenet_v2")

__all__ = [*_NAMES, "preprocess_input", "decode_predictions"]
