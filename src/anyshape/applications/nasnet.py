"""keras.applications.nasnet in anyshape: NASNetMobile, NASNetLarge at any input shape, with the
preprocess_input and decode_predictions of their Keras ImageNet weights (see _keras_modules)."""

from anyshape.applications._keras_modules import constructors, helpers

_NAMES = ("NASNetMobile", "NASNetLarge")
NASNetMobile, NASNetLarge = constructors(*_NAMES)
preprocess_input, decode_predictions = helpers("nasnet", "nasnet_mobile")

__all__ = [*_NAMES, "preprocess_input", "decode_predictions"]
