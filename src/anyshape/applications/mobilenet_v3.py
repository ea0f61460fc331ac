"""keras.applications.mobilenet_v3 in anyshape: MobileNetV3Small, MobileNetV3Large at any input
shape, with the preprocess_input and decode_predictions of their Keras ImageNet weights (see
_keras_modules)."""

from anyshape.applications._keras_modules import constructors, helpers

_NAMES = ("MobileNetV3Small", "MobileNetV3Large")
MobileNetV3Small, MobileNetV3Large = constructors(*_NAMES)
preprocess_input, decode_predictions = helpers("mobilenet_v3", "mobilenet_v3_small")

__all__ = [*_NAMES, "preprocess_input", "decode_predictions"]
