"""keras.applications.imagenet_utils in anyshape: preprocess_input (mode "caffe" by default, as
Keras') and decode_predictions."""

from anyshape.applications._keras_modules import imagenet_preprocess_input as preprocess_input
from anyshape.labels import decode_predictions

__all__ = ["preprocess_input", "decode_predictions"]
