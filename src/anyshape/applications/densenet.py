"""keras.applications.densenet in anyshape: DenseNet121, DenseNet169, DenseNet201 at any input
shape, with the preprocess_input and decode_predictions of their Keras ImageNet weights (see
_keras_modules)."""

from anyshape.applications._keras_modules import constructors, helpers

_NAMES = ("DenseNet121", "DenseNet169", "DenseNet201")
DenseNet121, DenseNet169, DenseNet201 = constructors(*_NAMES)
preprocess_input, decode_predictions = helpers("densenet", "densenet121")

__all__ = [*_NAMES, "preprocess_input", "decode_predictions"]
