"""DenseNet121/169/201 (anyshape.archs.densenet) against keras.applications and torchvision.

Runs on whichever backend KERAS_BACKEND names; checked on TensorFlow, JAX and PyTorch.
- every member has keras.applications' weight layout and layer names (DenseNet121, the smallest,
  with and without the top, and its outputs from Keras' weights at 224 x 224 and at 65 x 97 with
  and without the top, are checked by the family harness, tests/test_family.py);
- channels_first (which keras.applications refuses for DenseNet) equals channels_last on the same
  weights;
- `bn_epsilon=1e-5` changes only the BatchNorm epsilon and makes it torchvision's densenet121 (its
  outputs from its weights);
- the minimum is 29 (three valid 2x2 pools), the feature points sit at strides 2 to 32.
"""

import keras
import pytest
import torch
import torchvision
from model_helpers import (
    images,
    keras_weights_from_torch,
    layer_config_differences,
    randomise_torch_batchnorm,
    randomised_weights,
    relative_error,
    run,
)

import anyshape
from anyshape import applications
from anyshape.archs import get_arch
from anyshape.shapes import explain, minimum_size

ODD = (65, 97, 3)  # odd and non-square, above keras.applications' minimum of 32
BLOCKS = (6, 12, 24, 16)  # DenseNet121


@pytest.fixture(scope="module")
def keras_top():
    """keras.applications.DenseNet121 at 224 with the top, random weights with BatchNorm moved."""
    ref = keras.applications.DenseNet121(weights=None)
    ref.set_weights(randomised_weights(ref))
    return ref


def test_channels_first_equals_channels_last(keras_top):
    h, w, c = ODD
    last = applications.DenseNet121(weights=None, include_top=False, input_shape=ODD)
    first = applications.DenseNet121(
        weights=None, include_top=False, input_shape=(c, h, w), data_format="channels_first"
    )
    last.set_weights(keras_top.get_weights()[:-2])
    first.set_weights(keras_top.get_weights()[:-2])
    x = images(ODD)
    a, b = run(last, x), run(first, x.transpose(0, 3, 1, 2))
    assert b.shape == (2, 1024, 2, 3)
    assert relative_error(b, a.transpose(0, 3, 1, 2)) <= 1e-6
    top = applications.DenseNet121(weights=None, input_shape=(3, 224, 224), data_format="channels_first")
    top.set_weights(keras_top.get_weights())
    x = images((224, 224, 3))
    assert relative_error(run(top, x.transpose(0, 3, 1, 2)), run(keras_top, x)) <= 1e-6


def test_bn_epsilon_is_torchvisions_densenet121():
    shape = (64, 80, 3)
    base = anyshape.create_model("densenet121", input_shape=shape, classifier_activation=None)
    ours = anyshape.create_model("densenet121", input_shape=shape, classifier_activation=None, bn_epsilon=1e-5)
    bns = {layer.name for layer in ours.layers if isinstance(layer, keras.layers.BatchNormalization)}
    assert layer_config_differences(base, ours) == {name: {"epsilon"} for name in bns}
    assert ours.count_params() == explain(shape, arch="densenet121", include_top=True, bn_epsilon=1e-5).params

    torch.manual_seed(0)
    tv = randomise_torch_batchnorm(torchvision.models.densenet121(weights=None)).eval()
    modules = {"conv1_conv": "features.conv0", "conv1_bn": "features.norm0", "bn": "features.norm5"}
    modules["predictions"] = "classifier"
    for i, depth in enumerate(BLOCKS):
        if i > 0:
            tv_transition = f"features.transition{i}"
            modules |= {f"pool{i + 1}_bn": f"{tv_transition}.norm", f"pool{i + 1}_conv": f"{tv_transition}.conv"}
        for j in range(1, depth + 1):
            ours_layer, tv_layer = f"conv{i + 2}_block{j}", f"features.denseblock{i + 1}.denselayer{j}"
            modules |= {f"{ours_layer}_0_bn": f"{tv_layer}.norm1", f"{ours_layer}_1_conv": f"{tv_layer}.conv1"}
            modules |= {f"{ours_layer}_1_bn": f"{tv_layer}.norm2", f"{ours_layer}_2_conv": f"{tv_layer}.conv2"}
    ours.set_weights(keras_weights_from_torch(ours, tv.state_dict(), modules))
    x = images(shape)
    with torch.no_grad():
        expected = tv(torch.from_numpy(x.transpose(0, 3, 1, 2))).numpy()
    assert relative_error(run(ours, x), expected) <= 1e-5


def test_minimum_and_feature_points():
    assert minimum_size("densenet121") == (29, 29)
    assert not explain((28, 29, 3), arch="densenet121").valid
    report = explain((224, 224, 3), arch="densenet121")
    layers = {stage.layer: stage for stage in report.stages}
    assert [layers[p].height for p in get_arch("densenet121").feature_points] == [112, 56, 28, 14, 7]
