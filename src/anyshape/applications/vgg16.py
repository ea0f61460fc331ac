"""keras.applications.vgg16 in anyshape: VGG16 at any input shape, with the preprocess_input and
decode_predictions of their Keras ImageNet weights (see _keras_modules)."""

from anyshape.applications._keras_modules import constructors, helpers

_NAMES = ("VGG16",)
(VGG16,) = constructors(*_NAMES)
preprocess_input, decode_predictions = helpers("vgg16", "vgg16")

__all__ = [*_NAMES, "preprocess_input", "decode_predictions"]
