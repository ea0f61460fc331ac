"""keras.applications.convnext in anyshape: ConvNeXtTiny, ConvNeXtSmall, ConvNeXtBase,
ConvNeXtLarge, ConvNeXtXLarge at any input shape, with the preprocess_input and decode_predictions
of their Keras ImageNet weights (see _keras_modules)."""

from anyshape.applications._keras_modules import constructors, helpers

_NAMES = ("ConvNeXtTiny", "ConvNeXtSmall", "ConvNeXtBase", "ConvNeXtLarge", "ConvNeXtXLarge")
ConvNeXtTiny, ConvNeXtSmall, ConvNeXtBase, ConvNeXtLarge, ConvNeXtXLarge = constructors(*_NAMES)
preprocess_input, decode_predictions = helpers("convnext", "convnext_tiny")

__all__ = [*_NAMES, "preprocess_input", "decode_predictions"]
