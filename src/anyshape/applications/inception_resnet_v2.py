"""keras.applications.inception_resnet_v2 in anyshape: InceptionResNetV2 at any input shape, with
the preprocess_input and decode_predictions of their Keras ImageNet weights (see _keras_modules)."""

from anyshape.applications._keras_modules import constructors, helpers

_NAMES = ("InceptionResNetV2",)
(InceptionResNetV2,) = constructors(*_NAMES)
preprocess_input, decode_predictions = helpers("inception_resnet_v2", "inception_resnet_v2")

__all__ = [*_NAMES, "preprocess_input", "decode_predictions"]
