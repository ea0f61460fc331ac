"""keras.applications.vgg19 in anyshape: VGG19 at any input shape, with the preprocess_input and
decode_predictions of their Keras ImageNet weights (see _keras_modules)."""

from anyshape.applications._keras_modules import constructors, helpers

_NAMES = ("VGG19",)
(VGG19,) = constructors(*_NAMES)
preprocess_input, decode_predictions = helpers("vgg19", "vgg19")

__all__ = [*_NAMES, "preprocess_input", "decode_predictions"]
