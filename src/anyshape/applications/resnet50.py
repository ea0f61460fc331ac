"""keras.applications.resnet50 in anyshape: ResNet50 at any input shape, with the preprocess_input
and decode_predictions of their Keras ImageNet weights (see _keras_modules)."""

from anyshape.applications._keras_modules import constructors, helpers

_NAMES = ("ResNet50",)
(ResNet50,) = constructors(*_NAMES)
preprocess_input, decode_predictions = helpers("resnet50", "resnet50")

__all__ = [*_NAMES, "preprocess_input", "decode_predictions"]
