"""MobileNetV2 (anyshape.archs.mobilenet_v2) against keras.applications.MobileNetV2 and torchvision.

Runs on whichever backend KERAS_BACKEND names; it passes on TensorFlow, JAX and PyTorch
(`KERAS_BACKEND=jax pytest tests/test_family_mobilenet_v2.py`). The per-network harness
(tests/test_archs.py) covers the shape engine, free size == fixed size and the minimum; the family
harness (tests/test_family.py) checks MobileNetV2 (alpha 1) against keras.applications: its layout
with and without the top, equal outputs with Keras' weights at 224 and at 67 x 93 with and without
the top (on JAX and PyTorch too for 67 x 93 with the top). This file covers Keras' weight layout at
other widths, the odd sizes where Keras' free-size model goes wrong (`correct_pad`), and
padding="symmetric" against torchvision's mobilenet_v2.
"""

import keras
import numpy as np
import pytest
import torch
import torchvision
from model_helpers import (
    images,
    keras_parity,
    positional_signature,
    randomised_weights,
    relative_error,
    run,
    weight_shapes,
)

from anyshape.applications import MobileNetV2
from anyshape.shapes import explain


def test_signature_is_keras():
    assert positional_signature(MobileNetV2) == positional_signature(keras.applications.MobileNetV2)


@pytest.mark.parametrize("alpha, include_top", [(0.35, True), (1.4, True)])  # alpha 1: tests/test_family.py
def test_weight_layout_equals_keras(alpha, include_top):
    ref = keras.applications.MobileNetV2(weights=None, alpha=alpha, include_top=include_top)
    ours = MobileNetV2(weights=None, alpha=alpha, include_top=include_top)
    assert weight_shapes(ours) == weight_shapes(ref)
    assert [w.path for w in ours.weights] == [w.path for w in ref.weights]
    report = explain((224, 224, 3), arch="mobilenet_v2", alpha=alpha, include_top=include_top)
    assert ours.count_params() == ref.count_params() == report.params


def test_odd_size_free_model_equals_keras_fixed_model():
    """correct_pad reads the static shape; on Keras' free-size path it assumes an even size. Ours
    uses "same" on the strided convs: its free-size model equals Keras' fixed-size model."""
    shape = (67, 93, 3)
    fixed = keras.applications.MobileNetV2(weights=None, include_top=False, pooling="avg", input_shape=shape)
    keras_free = keras.applications.MobileNetV2(weights=None, include_top=False, pooling="avg")
    ours = MobileNetV2(weights=None, include_top=False, pooling="avg", input_shape=(None, None, 3))
    fixed.set_weights(randomised_weights(fixed))
    keras_free.set_weights(fixed.get_weights())
    x = images(shape)
    assert keras_parity(fixed, ours, x) <= 1e-6 or pytest.fail("ours differs from Keras' fixed-size model")
    assert relative_error(run(keras_free, x), run(fixed, x)) > 1e-3  # Keras' own free-size model does not


def _torchvision_twin(ours):
    """torchvision's mobilenet_v2 with our weights (the same layers in the same order) and our
    BatchNorm epsilon (Keras' 1e-3 where torchvision has 1e-5)."""
    twin = torchvision.models.mobilenet_v2(num_classes=ours.output.shape[-1]).eval()
    modules = [m for m in twin.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.BatchNorm2d, torch.nn.Linear))]
    layers = [layer for layer in ours.layers if layer.weights]
    assert len(modules) == len(layers)
    for module, layer in zip(modules, layers):
        w = [keras.ops.convert_to_numpy(v.value) for v in layer.weights]
        if isinstance(module, torch.nn.BatchNorm2d):
            module.eps = layer.epsilon
            for name, value in zip(("weight", "bias", "running_mean", "running_var"), w):
                getattr(module, name).data = torch.from_numpy(value)
        elif isinstance(module, torch.nn.Linear):
            module.weight.data, module.bias.data = torch.from_numpy(w[0].T.copy()), torch.from_numpy(w[1])
        elif module.groups > 1:  # depthwise: (kh, kw, C, 1) -> (C, 1, kh, kw)
            module.weight.data = torch.from_numpy(w[0].transpose(2, 3, 0, 1).copy())
        else:
            module.weight.data = torch.from_numpy(w[0].transpose(3, 2, 0, 1).copy())
    return twin


def test_symmetric_padding_builds_explains_and_equals_torchvision():
    shape = (64, 72, 3)  # even: where "symmetric" and "tf" padding differ
    ours = MobileNetV2(weights=None, input_shape=shape, padding="symmetric", classes=10, classifier_activation=None)
    report = explain(shape, arch="mobilenet_v2", include_top=True, padding="symmetric", classes=10)
    for stage in report.stages:
        assert tuple(ours.get_layer(stage.layer).output.shape[1:]) == stage.shape
    assert ours.count_params() == report.params
    assert ours.get_layer("block_1_pad").padding == ((1, 1), (1, 1))
    ours.set_weights(randomised_weights(ours))
    x = images(shape)
    with torch.no_grad():
        expected = _torchvision_twin(ours)(torch.from_numpy(x.transpose(0, 3, 1, 2).copy())).numpy()
    assert relative_error(run(ours, x), expected) <= 2e-6
    tf_padding = MobileNetV2(weights=None, input_shape=shape, classes=10, classifier_activation=None)
    tf_padding.set_weights(ours.get_weights())
    assert relative_error(run(tf_padding, x), expected) > 2e-5  # Keras' padding is another function


def test_padding_is_checked():
    with pytest.raises(ValueError, match="padding must be one of"):
        MobileNetV2(weights=None, padding="same")


def test_any_size_from_one_pixel():
    ours = MobileNetV2(weights=None, include_top=False, input_shape=(1, 3, 3), pooling="avg")
    assert np.isfinite(run(ours, images((1, 3, 3)))).all()
