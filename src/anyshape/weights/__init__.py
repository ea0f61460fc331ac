"""Weight sets: every public InceptionV3 weight set, converted exactly, at any shape and channel count.

    from anyshape.weights import resolve, weight_sets
    ws = resolve("inception_v3.tf_in1k")     # registry name, alias, or a local file path
    ws.preprocessing                          # {"mode": "tf"} -> anyshape.preprocess_input(**...)

Modules:
    registry    the weight sets as data; resolve(weights) -> WeightSet (no I/O beyond a peek)
    download    cache (keras_home()/models), progress, hash check, atomic write
    torch       torchvision/timm state dicts -> Keras layout (never runs pickled code)
    torch_family  the family's PyTorch twins: torchvision's ResNet, DenseNet, VGG, MobileNetV2 and
                timm's InceptionResNetV2, EfficientNet, MobileNetV3, ConvNeXt, Xception state dicts -> Keras layout
    torch_layouts  the twins' layouts: which torch module each Keras layer takes its tensors from
    torch_sets  the twins' weight sets and build overrides, as data
    twin_reference  which torch model a twin's state dict is the parity reference of; where a twin-built network differs
    twin_note   where a network built for a twin's weights is not the twin's function (explain --weights)
    keras_h5    Keras files: the published legacy .h5, .weights.h5, .keras
    channels    first-conv adaptation to any channel count
    checkpoint  the numpy form every file is read into before anything is assigned
    loader      load_weight_set: read, check all, then assign
    preprocessing  data_config_for / preprocessing_for / preprocess_input(weights=...): a set's scaling
    convert     convert(): a torch/Keras weight set -> a Keras file, with a parity report (the
                family's Keras files: convert_family; the twins' state dicts: convert_twin)
"""

from anyshape.weights.checkpoint import Checkpoint, WeightFileError
from anyshape.weights.download import WeightDownloadError
from anyshape.weights.loader import load_weight_set
from anyshape.weights.preprocessing import data_config_for, preprocess_input, preprocessing_for
from anyshape.weights.registry import (
    REGISTRY,
    PreprocessingUnknown,
    UnknownWeights,
    WeightSet,
    resolve,
    weight_sets,
)

__all__ = [
    "WeightSet",
    "REGISTRY",
    "resolve",
    "weight_sets",
    "load_weight_set",
    "Checkpoint",
    "WeightFileError",
    "WeightDownloadError",
    "UnknownWeights",
    "PreprocessingUnknown",
    "preprocessing_for",
    "data_config_for",
    "preprocess_input",
]
