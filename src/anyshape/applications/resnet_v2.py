"""keras.applications.resnet_v2 in anyshape: ResNet50V2, ResNet101V2, ResNet152V2 at any input
shape, with the preprocess_input and decode_predictions of their Keras ImageNet weights (see
_keras_modules)."""

from anyshape.applications._keras_modules import constructors, helpers

_NAMES = ("ResNet50V2", "ResNet101V2", "ResNet152V2")
ResNet50V2, ResNet101V2, ResNet152V2 = constructors(*_NAMES)
preprocess_input, decode_predictions = helpers("resnet_v2", "resnet50_v2")

__all__ = [*_NAMES, "preprocess_input", "decode_predictions"]
