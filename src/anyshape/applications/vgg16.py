"""keras.applications.vgg16 in anyshape: VGG16 at any input shape, with the
preprocess_input and decode_predictions of their Keras ImageNet weights (see _keras_modules)."""

from anyshape.applications._keras_modules import constructors, helpers

(VGG16,) = constructors("VGG16")
preprocess_input, decode_predictions = helpers("vgg16", "vgg16")

__all__ = ["VGG16", "preprocess_input", "decode_predictions"]
