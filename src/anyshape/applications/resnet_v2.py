"""keras.applications.resnet_v2 in anyshape: ResNet50V2, ResNet101V2, ResNet152V2 at any input shape, with the
preprocess_input and decode_predictions of their Keras ImageNet weights (see _keras_modules)."""

from anyshape.applications._keras_modules import constructors, helpers

ResNet50V2, ResNet101V2, ResNet152V2 = constructors("ResNet50V2", "ResNet101V2", "ResNet152V2")
preprocess_input, decode_predictions = helpers("resnet_v2", "resnet50_v2")

__all__ = ["ResNet50V2", "ResNet101V2", "ResNet152V2", "preprocess_input", "decode_predictions"]
