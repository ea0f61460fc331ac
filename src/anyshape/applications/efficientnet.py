"""keras.applications.efficientnet in anyshape: EfficientNetB0, EfficientNetB1, EfficientNetB2,
EfficientNetB3, EfficientNetB4, EfficientNetB5, EfficientNetB6, EfficientNetB7 at any input shape,
with the preprocess_input and decode_predictions of their Keras ImageNet weights (see
_keras_modules)."""

from anyshape.applications._keras_modules import constructors, helpers

_NAMES = (
    "EfficientNetB0",
    "EfficientNetB1",
    "EfficientNetB2",
    "EfficientNetB3",
    "EfficientNetB4",
    "EfficientNetB5",
    "EfficientNetB6",
    "EfficientNetB7",
)
(
    EfficientNetB0,
    EfficientNetB1,
    EfficientNetB2,
    EfficientNetB3,
    EfficientNetB4,
    EfficientNetB5,
    EfficientNetB6,
    EfficientNetB7,
) = constructors(*_NAMES)
preprocess_input, decode_predictions = helpers("efficientnet", "efficientnet_b0")

__all__ = [*_NAMES, "preprocess_input", "decode_predictions"]
