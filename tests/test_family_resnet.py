"""ResNet50/101/152 (anyshape.archs.resnet) against keras.applications, and torchvision's options.

Runs on whichever backend KERAS_BACKEND names; checked on TensorFlow, JAX and PyTorch.
- every member has keras.applications' weight layout and layer names (ResNet50, the smallest, with
  and without the top, and its outputs from Keras' weights at 224 x 224 and at 65 x 97 with and
  without the top, are checked by the family harness, tests/test_family.py);
- each of the options the PyTorch weights need (`stride_in_3x3`, `conv_bias`, `bn_epsilon`)
  changes only what it says (and the shape tracer still counts the built model's parameters),
  and the three together are torchvision's resnet50 (its outputs from its weights), at an even
  size (where TF's "same" padding and torch's differ) and an odd one.
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
    relative_error,
    run,
)

import anyshape
from anyshape.archs import get_arch, list_models
from anyshape.shapes import explain, minimum_size

ODD = (65, 97, 3)  # odd and non-square, above keras.applications' minimum of 32
TORCH_OPTIONS = {"stride_in_3x3": True, "conv_bias": False, "bn_epsilon": 1e-5}


@pytest.fixture(scope="module")
def resnet50_free():
    return anyshape.create_model("resnet50", input_shape=(None, None, 3))


@pytest.mark.parametrize("option", sorted(TORCH_OPTIONS))
def test_each_torch_option_changes_only_what_it_says(resnet50_free, option):
    base = resnet50_free
    changed = anyshape.create_model("resnet50", input_shape=(None, None, 3), **{option: TORCH_OPTIONS[option]})
    assert (
        changed.count_params()
        == explain((None, None, 3), arch="resnet50", include_top=True, **{option: TORCH_OPTIONS[option]}).params
    )
    diff = layer_config_differences(base, changed)
    convs = {layer.name for layer in base.layers if isinstance(layer, keras.layers.Conv2D)}
    bns = {layer.name for layer in base.layers if isinstance(layer, keras.layers.BatchNormalization)}
    if option == "bn_epsilon":
        assert diff == {name: {"epsilon"} for name in bns}
        assert {changed.get_layer(n).epsilon for n in bns} == {1e-5}
    elif option == "conv_bias":
        assert diff == {name: {"use_bias"} for name in convs}
        assert base.count_params() - changed.count_params() == sum(base.get_layer(n).filters for n in convs)
    else:  # the stride moves from the first 1x1 conv to the 3x3 conv of each reducing block
        expected: dict = {}
        for stage in ("conv3", "conv4", "conv5"):
            expected[f"{stage}_block1_1_conv"] = {"strides"}
            expected[f"{stage}_block1_2_conv"] = {"strides", "padding"}
            expected[f"{stage}_block1_2_pad"] = "added"
            assert changed.get_layer(f"{stage}_block1_2_conv").strides == (2, 2)
            assert changed.get_layer(f"{stage}_block1_1_conv").strides == (1, 1)
        assert diff == expected
        assert changed.count_params() == base.count_params()


@pytest.mark.parametrize("shape", [(64, 64, 3), ODD])
def test_torch_options_are_torchvisions_resnet50(shape):
    torch.manual_seed(0)
    tv = randomise_torch_batchnorm(torchvision.models.resnet50(weights=None)).eval()
    modules = {"conv1_conv": "conv1", "conv1_bn": "bn1", "predictions": "fc"}
    for i, depth in enumerate((3, 4, 6, 3)):
        for b in range(depth):
            ours_block, tv_block = f"conv{i + 2}_block{b + 1}", f"layer{i + 1}.{b}"
            if b == 0:
                modules |= {f"{ours_block}_0_conv": f"{tv_block}.downsample.0"}
                modules |= {f"{ours_block}_0_bn": f"{tv_block}.downsample.1"}
            for k in (1, 2, 3):
                modules |= {
                    f"{ours_block}_{k}_conv": f"{tv_block}.conv{k}",
                    f"{ours_block}_{k}_bn": f"{tv_block}.bn{k}",
                }
    ours = anyshape.create_model("resnet50", input_shape=shape, classifier_activation=None, **TORCH_OPTIONS)
    ours.set_weights(keras_weights_from_torch(ours, tv.state_dict(), modules))
    x = images(shape)
    with torch.no_grad():
        expected = tv(torch.from_numpy(x.transpose(0, 3, 1, 2))).numpy()
    assert relative_error(run(ours, x), expected) <= 1e-5


@pytest.mark.parametrize("name", list_models("resnet"))
def test_feature_points_one_per_reduction(name):
    report = explain((224, 224, 3), arch=name)
    layers = {stage.layer: stage for stage in report.stages}
    assert [layers[p].height for p in get_arch(name).feature_points] == [112, 56, 28, 14, 7]
    assert minimum_size(name) == (1, 1)
