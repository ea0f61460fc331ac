"""EfficientNetV2 B0 ... B3, S, M, L (anyshape.archs.efficientnet_v2) against keras.applications.

Every member: Keras' signature, blocks tables, weight layout, layer names and in-graph
preprocessing. EfficientNetV2B0, the smallest, stands for the family in the family harness
(tests/test_family.py): its layout and preprocessing with and without the top, equal outputs with
Keras' weights at Keras' default size and at an odd non-square size, with and without the top (on
JAX and PyTorch as well at the odd size with the top). Here: Keras' other preprocessing branches
(one channel: [-1, 1]; include_preprocessing=False).
"""

import inspect

import keras
import pytest
from model_helpers import (
    images,
    preprocessing_constants,
    randomised_weights,
    relative_error,
    run,
)

import anyshape
from anyshape.archs import efficientnet_v2, get_arch, list_models
from anyshape.shapes import explain

NAMES = list_models("efficientnet_v2")
ODD = (67, 45, 3)  # odd and non-square, above Keras' 32


def _keras(name, **kwargs):
    return getattr(keras.applications, get_arch(name).keras_name)(weights=None, **kwargs)


def test_members_are_keras_constructors():
    suffixes = ["b0", "b1", "b2", "b3", "l", "m", "s"]
    assert NAMES == [f"efficientnet_v2_{s}" for s in suffixes]
    for name in NAMES:
        arch = get_arch(name)
        keras_params = inspect.signature(getattr(keras.applications, arch.keras_name)).parameters
        assert [(p.name, p.default) for p in keras_params.values()] == list(arch.keras_args)
        params = explain(arch=name, include_top=True).params
        assert f"{params / 1e6:.1f} M parameters" in arch.description


def test_blocks_tables_are_keras():
    from keras.src.applications.efficientnet_v2 import DEFAULT_BLOCKS_ARGS

    keys = ("kernel_size", "num_repeat", "input_filters", "output_filters", "expand_ratio", "strides", "se_ratio")
    for name in NAMES:
        arch = get_arch(name)
        table = DEFAULT_BLOCKS_ARGS[applications_name(arch)]
        ours = efficientnet_v2.BLOCKS_ARGS[arch.defaults["blocks_args"]]
        assert [(*(row[k] for k in keys), row["conv_type"]) for row in table] == [
            (a.kernel, a.repeats, a.filters_in, a.filters_out, a.expand_ratio, a.strides, a.se_ratio, a.conv_type)
            for a in ours
        ]


def applications_name(arch) -> str:
    """Keras' model name, which keys its blocks tables ("efficientnetv2-b0")."""
    return dict(arch.keras_args)["name"]


def _pair(input_shape, **kwargs):
    """Keras' V2B0 and anyshape's (free size), with the same random weights."""
    theirs = _keras("efficientnet_v2_b0", input_shape=input_shape, **kwargs)
    ours = anyshape.create_model("efficientnet_v2_b0", input_shape=(None, None, input_shape[-1]), **kwargs)
    weights = randomised_weights(theirs)
    theirs.set_weights(weights)
    ours.set_weights(weights)
    return theirs, ours


@pytest.mark.parametrize("channels, include_preprocessing", [(1, True), (3, False)])
def test_b0_other_preprocessing_equals_keras(channels, include_preprocessing):
    """Keras scales a b variant's input to [-1, 1] when it has other than 3 channels, and builds no
    preprocessing with include_preprocessing=False."""
    shape = (*ODD[:2], channels)
    theirs, ours = _pair(shape, include_top=False, include_preprocessing=include_preprocessing)
    assert preprocessing_constants(ours) == preprocessing_constants(theirs)
    x = images(shape, low=0.0, high=255.0)
    assert relative_error(run(ours, x), run(theirs, x)) <= 1e-6


def test_normalization_follows_the_config():
    """A weight set adapted to one channel keeps the mean/std normalisation by giving its values."""
    report = explain((40, 40, 1), arch="efficientnet_v2_b0", normalization_mean=(0.45,), normalization_variance=(0.05,))
    assert report.stage("preprocessing").what == "/ 255, normalise"
    assert explain((40, 40, 1), arch="efficientnet_v2_b0").stage("preprocessing").what == "to [-1, 1]"
    with pytest.raises(ValueError, match="normalization_mean and normalization_variance must have one value"):
        anyshape.create_model("efficientnet_v2_b0", normalization_mean=(0.45,))
    with pytest.raises(ValueError, match="blocks_args must be one of"):
        anyshape.create_model("efficientnet_v2_b0", blocks_args="xl")
