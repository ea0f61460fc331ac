"""anyshape: keras.applications' networks for Keras 3 at any input shape.

import anyshape
print(anyshape.explain((150, 150, 3)))         # what each stage does with this shape
model = anyshape.InceptionV3(weights=None, input_shape=(150, 200, 4))
anyshape.list_models()                          # every registered network
model = anyshape.create_model("resnet50", weights=None, input_shape=(96, 160, 1))
"""

from anyshape.archs import list_models
from anyshape.shapes import InvalidInputShape, ShapeReport, explain, minimum_size

__version__ = "0.1.0"

__all__ = [
    "InceptionV3",
    "InvalidInputShape",
    "ShapeReport",
    "explain",
    "minimum_size",
    "list_models",
    "create_model",
    "preprocess_input",
    "decode_predictions",
    "train",
    "recalibrate_batchnorm",
    "Trainer",
    "applications",
]


def __getattr__(name):
    # Keras (and its backend) load only when a model-related name is first used, so that
    # `anyshape.explain` and the CLI's `explain` answer without importing a backend.
    if name == "InceptionV3":
        from anyshape.inception_v3 import InceptionV3

        return InceptionV3
    if name == "applications":  # `import anyshape; anyshape.applications.ResNet50` (loads Keras)
        import importlib

        return importlib.import_module("anyshape.applications")
    if name == "create_model":
        from anyshape.factory import create_model

        return create_model
    if name[:1].isupper():  # keras.applications' constructor names: ResNet50, EfficientNetB0, ...
        from anyshape import applications

        if hasattr(applications, name):
            return getattr(applications, name)
    if name == "preprocess_input":
        from anyshape.weights.preprocessing import preprocess_input  # takes weights= too

        return preprocess_input
    if name == "decode_predictions":
        from anyshape.labels import decode_predictions

        return decode_predictions
    if name in ("train", "recalibrate_batchnorm", "Trainer"):
        # anyshape.train(...) is a function; the training code (Trainer, TrainConfig, ...) lives
        # in the module anyshape.training
        from anyshape import training

        return getattr(training, name)
    raise AttributeError(f"module 'anyshape' has no attribute {name!r}")
