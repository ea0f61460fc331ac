"""VGG16/19 (anyshape.archs.vgg) against keras.applications, and its classifier at any size.

Runs on whichever backend KERAS_BACKEND names; checked on TensorFlow, JAX and PyTorch.
- every member has keras.applications' weight layout and layer names (at 224 x 224 the default
  head is Keras' Flatten head); VGG16 (the smallest) with and without the top, and its outputs
  from Keras' weights at 224 x 224 and at 65 x 97 with and without the top (at 65 x 97 with
  `head="flatten"`, which is what Keras builds there), are checked by the family harness
  (tests/test_family.py);
- the fully-convolutional head with the Flatten head's weights (converted by
  `convert_head_weights`) equals Keras at 224, and takes any larger size, free size included;
- "auto" picks the Flatten head exactly at 224 x 224; the conv head refuses what it cannot take.
"""

import keras
import numpy as np
import pytest
from model_helpers import (
    assert_keras_drop_in,
    images,
    relative_error,
    run,
    vgg_weights,
)

import anyshape
from anyshape import applications
from anyshape.archs import get_arch, list_models
from anyshape.archs.vgg import convert_head_kernel, convert_head_weights
from anyshape.shapes import explain, minimum_size

ODD = (65, 97, 3)  # odd and non-square, above keras.applications' minimum of 32


@pytest.fixture(scope="module")
def keras_top():
    """keras.applications.VGG16 at 224 with the top, random weights and biases."""
    ref = keras.applications.VGG16(weights=None)
    ref.set_weights(vgg_weights(ref))
    return ref


def test_conv_head_equals_keras_at_224_and_takes_any_larger_size(keras_top):
    model = applications.VGG16(weights=None, input_shape=(None, None, 3))  # head "auto": conv at free size
    assert isinstance(model.get_layer("fc1"), keras.layers.Conv2D)
    weights = keras_top.get_weights()
    model.set_weights(convert_head_weights(weights, "conv"))
    assert tuple(model.get_layer("fc1").kernel.shape) == (7, 7, 512, 4096)
    x = images((224, 224, 3), high=150.0, low=-120.0)
    # a 7x7 convolution sums its 25,088 products in another order than Dense: float32 rounding
    # (1.03e-6 was seen on CI), still far below any mistake in the head's conversion
    assert relative_error(run(model, x), run(keras_top, x)) <= 1e-5
    big = run(model, images((256, 289, 3), high=150.0, low=-120.0))  # a 2 x 3 map of class scores
    assert big.shape == (2, 1000)
    assert np.allclose(big.sum(axis=1), 1.0, atol=1e-5)  # the softmax of the averaged scores
    back = convert_head_weights(convert_head_weights(weights, "conv"), "flatten")
    assert all(np.array_equal(a, b) for a, b in zip(back, weights))


def test_convert_head_kernel_refuses_what_is_no_head_kernel():
    kernel = np.arange(25088 * 3, dtype="float32").reshape(25088, 3)
    conv = convert_head_kernel(kernel, "fc1", "conv")
    assert conv.shape == (7, 7, 512, 3)
    assert conv[1, 2, 5, 0] == kernel[(1 * 7 + 2) * 512 + 5, 0]  # Flatten's (h, w, c) order
    assert convert_head_kernel(kernel[:4096], "fc2", "conv").shape == (1, 1, 4096, 3)
    with pytest.raises(ValueError, match="converts only at 224"):
        convert_head_kernel(kernel[:3072], "fc1", "conv")  # fc1 of a Flatten head at 65 x 97
    with pytest.raises(ValueError, match="4 axes"):
        convert_head_kernel(kernel, "fc1", "flatten")
    with pytest.raises(ValueError, match="layer must be one of"):
        convert_head_kernel(kernel, "block1_conv1", "conv")


def test_head_choice_and_the_sizes_it_takes():
    def fc1(shape, **kw):
        return explain(shape, arch="vgg16", include_top=True, **kw).stage("fc1").what

    assert fc1((224, 224, 3)).startswith("dense")  # the drop-in case: Keras' Flatten head
    assert fc1((3, 224, 224), data_format="channels_first").startswith("dense")
    assert fc1((224, 224, 3), head="conv").startswith("7x7 conv")
    assert fc1((None, None, 3)).startswith("7x7 conv")
    assert fc1((224, 225, 3)).startswith("7x7 conv")
    assert fc1(ODD, head="flatten") == "dense 4096"
    # below 224 "auto" builds what Keras builds there: its Flatten top (the conv head has no window)
    assert fc1(ODD) == fc1((32, 32, 3)) == fc1((223, 300, 3)) == "dense 4096"
    assert minimum_size("vgg16") == (32, 32)
    assert minimum_size("vgg16", include_top=True) == (224, 224)  # the free-size model's conv head
    assert explain(ODD, arch="vgg16", include_top=True).min_hw == (32, 32)  # fixed sizes: the Flatten top's

    below = explain((223, 300, 3), arch="vgg16", include_top=True, head="conv")
    assert not below.valid and below.collapse[0].layer == "fc1"
    assert "head='flatten'" in below.reason() and "Nearest valid shape: (224, 300, 3)" in below.reason()
    partly_free = explain((None, 100, 3), arch="vgg16", include_top=True)  # Flatten needs both sides fixed
    assert not partly_free.valid and "Nearest valid shape: (None, 224, 3)" in partly_free.reason()
    small = explain((31, 64, 3), arch="vgg16", include_top=True)
    assert not small.valid and "at least 32, and fixed, with the top below 224" in small.reason()
    assert "Nearest valid shape: (32, 64, 3)" in small.reason()
    with pytest.raises(anyshape.InvalidInputShape, match="fc1"):
        anyshape.create_model("vgg16", input_shape=ODD, head="conv")
    assert any(
        "Flatten" in p for p in explain((None, None, 3), arch="vgg16", include_top=True, head="flatten").problems
    )
    assert "head must be one of" in explain((224, 224, 3), arch="vgg16", head="dense").reason()
    assert "class-score map" in explain((256, 256, 3), arch="vgg16", include_top=True, pooling="catavgmax").reason()


@pytest.mark.parametrize("name", list_models("vgg"))
def test_feature_points_one_per_reduction(name):
    report = explain((224, 224, 3), arch=name)
    layers = {stage.layer: stage for stage in report.stages}
    assert [layers[p].height for p in get_arch(name).feature_points] == [112, 56, 28, 14, 7]


def test_keras_from_scratch_call_below_224_builds_keras_flatten_top():
    """`VGG16(weights=None, input_shape=(32, 32, 3), classes=10)`, Keras' call for a model trained
    from scratch on small images: keras.applications builds its Flatten top at that size (fc1 of
    1 x 1 x 512 inputs), and so does anyshape, with the same layers, weights and outputs."""
    theirs = keras.applications.VGG16(weights=None, input_shape=(32, 32, 3), classes=10)
    ours = applications.VGG16(weights=None, input_shape=(32, 32, 3), classes=10)
    assert_keras_drop_in(ours, theirs)
    assert tuple(ours.get_layer("fc1").kernel.shape) == (512, 4096) and ours.count_params() == theirs.count_params()
    ours.set_weights(vgg_weights(theirs))
    theirs.set_weights(ours.get_weights())
    x = images((32, 32, 3), high=150.0, low=-120.0)
    assert relative_error(run(ours, x), run(theirs, x)) <= 1e-6


def test_a_top_trained_at_224_is_refused_below_it_before_any_download(tmp_path, monkeypatch, capsys):
    """Keras' ImageNet top (fc1 a Dense of 7 x 7 x 512 inputs) fits 224 x 224 and, as the conv head,
    any larger size; below 224 the model's top is Keras' Flatten top of another shape: the registered
    set is refused before its file is fetched (the URL here leads nowhere: a download would say so),
    naming what to give instead, in Python's words and in the CLI's."""
    from dataclasses import replace

    from anyshape.weights import REGISTRY

    ws = REGISTRY["vgg16.keras_in1k"]
    monkeypatch.setitem(REGISTRY, ws.name, replace(ws, url=f"file://{tmp_path}/nowhere.h5"))
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    with pytest.raises(ValueError) as e:
        applications.VGG16(input_shape=(64, 64, 3))
    message = str(e.value)
    assert "classifier of weights='vgg16.keras_in1k'" in message and "trained at 224 x 224" in message
    assert "2048 inputs" in message and "give include_top=False" in message and "at least 224 x 224" in message
    assert not (tmp_path / "keras").exists()
    tv = REGISTRY["vgg16.tv_in1k"]  # torchvision's top (its classifier.0) is trained at 224 too
    monkeypatch.setitem(REGISTRY, tv.name, replace(tv, url=f"file://{tmp_path}/nowhere.pth"))
    with pytest.raises(ValueError, match="classifier of weights='vgg16.tv_in1k'"):
        applications.VGG16(weights="torchvision", input_shape=(64, 64, 3))
    assert not (tmp_path / "keras").exists()
    from anyshape.cli import main

    (tmp_path / "a.png").write_bytes(b"")  # refused before any image is read
    assert main(["predict", "--arch", "vgg16", "--input-shape", "64,64,3", str(tmp_path / "a.png")]) == 2
    err = capsys.readouterr().err
    assert "classifier of --weights vgg16.keras_in1k" in err and "give no --include-top (anyshape features)" in err
    assert "include_top" not in err and not (tmp_path / "keras").exists()


def test_a_file_top_trained_at_224_is_named_as_the_problem_below_it():
    """A weights file's fc1 kernel of 7 x 7 x 512 rows into the Flatten top at another size: the
    problem the loader reports is that one, in words (its other problems are listed with it)."""
    from types import SimpleNamespace

    from anyshape.weights.family import _head_values, _Plan

    arch = get_arch("vgg16")
    config = arch.config(input_shape=(64, 64, 3), classes=2)
    plan = _Plan()
    layer = SimpleNamespace(name="fc1")
    values = _head_values(plan, arch, config, layer, [np.zeros((25088, 2)), np.zeros(2)], [(2048, 2), (2,)])
    assert values is None and len(plan.problems) == 1
    assert (
        plan.problems[0].startswith("fc1: the pretrained top was trained at 224 x 224") and "2048" in plan.problems[0]
    )
