"""keras.applications.efficientnet_v2 in anyshape: EfficientNetV2B0, EfficientNetV2B1,
EfficientNetV2B2, EfficientNetV2B3, EfficientNetV2S, EfficientNetV2M, EfficientNetV2L at any input
shape, with the preprocess_input and decode_predictions of their Keras ImageNet weights (see
_keras_modules)."""

from anyshape.applications._keras_modules import constructors, helpers

_NAMES = (
    "EfficientNetV2B0",
    "EfficientNetV2B1",
    "EfficientNetV2B2",
    "EfficientNetV2B3",
    "EfficientNetV2S",
    "EfficientNetV2M",
    "EfficientNetV2L",
)
(
    EfficientNetV2B0,
    EfficientNetV2B1,
    EfficientNetV2B2,
    EfficientNetV2B3,
    EfficientNetV2S,
    EfficientNetV2M,
    EfficientNetV2L,
) = constructors(*_NAMES)
preprocess_input, decode_predictions = helpers("efficientnet_v2", "efficientnet_v2_b0")

__all__ = [*_NAMES, "preprocess_input", "decode_predictions"]
