"""`anyshape.weights.family`, the loader of Keras' files into the family's networks, in its parts:
the in-graph input maps (`input_affine`), the first convolution folded through a per-channel
normalisation, VGG's head kernels, the file Keras would pick, and the load itself on the smallest
network (MobileNet alpha=0.25 at 32 x 32: a made Keras 2 file, a Keras 3 .weights.h5 file, a
file of another configuration). Each against the module's documented rule; the whole path on one
network per family against keras.applications: test_weights_family.py."""

from __future__ import annotations

import logging
from types import SimpleNamespace

import keras
import numpy as np
import pytest
from made_files import write_legacy_h5

import anyshape
from anyshape.archs import get_arch
from anyshape.weights import REGISTRY, WeightFileError
from anyshape.weights import family as loader


def test_input_affine_of_the_rescaling_and_normalisation_families():
    v3 = get_arch("mobilenet_v3_small")
    a, b = loader.input_affine(v3, v3.config(), 2)  # Rescaling(1 / 127.5, offset=-1)
    np.testing.assert_allclose(a, [1 / 127.5] * 2)
    np.testing.assert_allclose(b, [-1.0] * 2)
    a, b = loader.input_affine(v3, v3.config(include_preprocessing=False), 3)
    np.testing.assert_array_equal(a, np.ones(3))
    np.testing.assert_array_equal(b, np.zeros(3))
    v2 = get_arch("efficientnet_v2_b0")
    config = v2.config()
    sd = np.sqrt(np.asarray(config.normalization_variance))
    a, b = loader.input_affine(v2, config, 3)  # Rescaling(1/255) then Normalization(mean, variance)
    np.testing.assert_allclose(a, 1 / (255 * sd))
    np.testing.assert_allclose(b, -np.asarray(config.normalization_mean) / sd)
    a, b = loader.input_affine(v2, config, 1)  # another channel count: Rescaling(1/128, offset=-1)
    np.testing.assert_allclose(a, [1 / 128])
    np.testing.assert_allclose(b, [-1.0])


def test_first_conv_is_adapted_as_seen_from_the_pixels():
    """EfficientNet's Normalization with per-channel variance (mean 0): the one-channel kernel is
    sum_c k_c * a_c / a', so the gray image gives what the RGB network gives on it copied to R,
    G and B, even where a'(gray) equals a_R."""
    arch = get_arch("efficientnet_b0")
    config = arch.config()
    var = np.array([1.0, 0.5, 1.5])  # its mean is 1: the gray channel's scale equals the red one's
    norm = ((np.zeros(3), var), (np.zeros(1), np.ones(1)))
    kernel = np.random.default_rng(0).normal(size=(3, 3, 3, 4)).astype(np.float32)
    plan = loader._Plan()
    layer = SimpleNamespace(name="stem_conv")
    (adapted,), offset = loader._first_conv(plan, None, arch, config, layer, [kernel], norm, "sum", None, 1)
    rgb_a = 1 / (255 * np.sqrt(var))
    expected = (kernel * rgb_a[None, None, :, None]).sum(axis=2, keepdims=True) * 255
    np.testing.assert_allclose(adapted, expected, rtol=1e-5)
    np.testing.assert_allclose(offset, np.zeros(4), atol=1e-12)
    assert "seen from the pixels through the network's in-graph normalisation" in plan.notes[0]
    assert plan.notes[0].endswith("but for the constant the normalisation adds (folded in after the conv)")


def test_first_conv_without_an_in_graph_map_takes_the_plain_rule():
    """MobileNet (no in-graph map): "sum" adds the RGB kernels, no constant, and the note says so."""
    arch = get_arch("mobilenet")
    kernel = np.random.default_rng(0).normal(size=(3, 3, 3, 4)).astype(np.float32)
    plan = loader._Plan()
    layer = SimpleNamespace(name="conv1")
    (adapted,), offset = loader._first_conv(plan, None, arch, arch.config(), layer, [kernel], None, "sum", None, 1)
    np.testing.assert_allclose(adapted, kernel.sum(axis=2, keepdims=True), rtol=1e-6)
    assert offset is None
    assert plan.notes == [
        "first conv (conv1) adapted from 3 to 1 input channels with channel_adapt='sum'; no other layer changed"
    ]


def test_input_affine_of_efficientnet_with_its_stddev_rescaling():
    """EfficientNet with Keras' ImageNet weights: Rescaling(1/255), Normalization(mean, variance),
    then Rescaling(1/sqrt(stddev)) per channel (keras/src/applications/efficientnet.py divides by
    the square root of IMAGENET_STDDEV_RGB); another channel count averages the stddevs."""
    arch = get_arch("efficientnet_b0")
    stddev = (0.229, 0.224, 0.225)
    config = arch.config(stddev_rescaling=stddev)
    mean, var = np.array([0.4, 0.5, 0.6]), np.array([0.04, 0.09, 0.16])
    a, b = loader.input_affine(arch, config, 3, (mean, var))
    np.testing.assert_allclose(a, 1 / (255 * np.sqrt(var)) / np.sqrt(stddev))
    np.testing.assert_allclose(b, -mean / np.sqrt(var) / np.sqrt(stddev))
    a, b = loader.input_affine(arch, config, 1, (np.array([0.5]), np.array([0.09])))
    np.testing.assert_allclose(a, [1 / (255 * 0.3) / np.sqrt(np.mean(stddev))])


def test_normalization_values_for_another_channel_count_are_the_rgb_averages():
    mean, var, count = np.array([0.4, 0.5, 0.6], np.float32), np.array([1.0, 2.0, 6.0], np.float32), np.array(9)
    same = loader._normalization_values([mean, var, count], 3)
    assert same[0] is mean and same[1] is var and same[2] is count
    one, four = loader._normalization_values([mean, var, count], 1), loader._normalization_values([mean, var, count], 4)
    np.testing.assert_allclose(one[0], [0.5], rtol=1e-6)
    np.testing.assert_allclose(one[1], [3.0], rtol=1e-6)
    np.testing.assert_allclose(four[1], [3.0] * 4, rtol=1e-6)
    assert one[2] is count


def test_the_folded_constant_goes_into_the_first_convs_bias():
    """ConvNeXt's stem convolution has a bias: the constant of its in-graph normalisation is added
    to it; the kernel is left as it is."""
    arch = get_arch("convnext_tiny")
    kernel, bias = np.ones((4, 4, 1, 2), np.float32), np.array([1.0, 2.0], np.float32)
    plan = loader._Plan()
    plan.values[arch.first_conv] = [kernel, bias]
    model = SimpleNamespace(get_layer=lambda name: SimpleNamespace(name=name, use_bias=True))
    loader._place_offset(plan, model, arch, np.array([0.5, -0.25]))
    assert len(plan.values[arch.first_conv]) == 2 and plan.values[arch.first_conv][0] is kernel
    np.testing.assert_allclose(plan.values[arch.first_conv][1], [1.5, 1.75])


def test_vgg_head_kernels_take_the_heads_form():
    vgg = get_arch("vgg16")
    kernel, bias = np.arange(40, dtype=np.float32).reshape(8, 5), np.ones(5, np.float32)
    layer = SimpleNamespace(name="predictions")
    plan = loader._Plan()
    flat = loader._head_values(plan, vgg, None, layer, [kernel, bias], [(8, 5), (5,)])  # the Flatten head
    np.testing.assert_array_equal(flat[0], kernel)
    conv = loader._head_values(plan, vgg, None, layer, [kernel, bias], [(1, 1, 8, 5), (5,)])  # the conv head
    np.testing.assert_array_equal(conv[0], kernel.reshape(1, 1, 8, 5))
    assert plan.problems == [] and plan.notes == []


def test_a_head_of_another_class_count_is_kept_new_only_for_imagenets_file():
    """The classifier of a file of ImageNet's 1000 classes into a model of 5: the model keeps its
    new head and says so; a file of 10 classes into it is refused, naming both counts."""
    arch = get_arch("resnet50")
    layer = SimpleNamespace(name="predictions")
    plan = loader._Plan()
    imagenet = [np.zeros((8, 1000), np.float32), np.zeros(1000, np.float32)]
    assert loader._head_values(plan, arch, None, layer, imagenet, [(8, 5), (5,)]) is None
    assert plan.notes[0].startswith("predictions: classes=5 differs from the weight set's 1000 ImageNet classes")
    ten = [np.zeros((8, 10), np.float32), np.zeros(10, np.float32)]
    with pytest.raises(WeightFileError, match=r"\(predictions\) has 10 classes but the model was built with classes=5"):
        loader._head_values(plan, arch, None, layer, ten, [(8, 5), (5,)])


def test_keras_file_is_picked_by_alpha_and_size(tmp_path, monkeypatch):
    """MobileNet alpha=0.5 at 160 reads mobilenet_5_0_160_tf.h5, not the registry's default file."""
    from anyshape.weights import download

    monkeypatch.setattr(download, "_other_caches", lambda url: [])
    monkeypatch.setattr(download, "fetch", lambda *a, **k: pytest.fail(f"a download was tried: {a}"))
    for name in ("mobilenet_5_0_160_tf.h5", "mobilenet_1_0_224_tf.h5"):
        (tmp_path / name).write_bytes(b"stand-in")
    arch, ws = get_arch("mobilenet"), REGISTRY["mobilenet.keras_in1k"]
    config = arch.config(alpha=0.5, input_shape=(160, 160, 3))
    assert loader.family_weight_file(ws, arch, config, True, str(tmp_path)) == str(tmp_path / "mobilenet_5_0_160_tf.h5")
    default = loader.family_weight_file(ws, arch, arch.config(), True, str(tmp_path))
    assert default == str(tmp_path / "mobilenet_1_0_224_tf.h5")


def _mobilenet(alpha=0.25, **kwargs):
    return anyshape.create_model("mobilenet", alpha=alpha, include_top=False, input_shape=(32, 32, 3), **kwargs)


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    """A MobileNet alpha=0.25 with random weights (BatchNorm statistics too), saved as Keras' published
    layout (legacy .h5) and as a Keras 3 .weights.h5 file."""
    folder = tmp_path_factory.mktemp("family_loader")
    keras.utils.set_random_seed(1)
    model = _mobilenet()
    rng = np.random.default_rng(1)
    model.set_weights([rng.uniform(0.5, 1.5, w.shape).astype("float32") for w in model.get_weights()])
    write_legacy_h5(model, str(folder / "mobilenet_025.h5"))
    model.save_weights(str(folder / "mobilenet_025.weights.h5"))
    return model.get_weights(), folder, model


def test_a_keras_file_loads_every_layer(source, caplog):
    values, folder, _ = source
    with caplog.at_level(logging.WARNING, logger="anyshape.weights"):
        model = _mobilenet(weights=str(folder / "mobilenet_025.h5"))
    assert len(model.get_weights()) == len(values)
    assert all(np.array_equal(a, b) for a, b in zip(model.get_weights(), values))
    assert model.anyshape_weights.path == str(folder / "mobilenet_025.h5")
    keras3 = _mobilenet(weights=str(folder / "mobilenet_025.weights.h5"))
    assert all(np.array_equal(a, b) for a, b in zip(keras3.get_weights(), values))


def test_files_that_do_not_fit_are_refused_whole(source):
    _, folder, _ = source
    with pytest.raises(WeightFileError, match="does not fit this MobileNet: .* nothing was loaded"):
        _mobilenet(alpha=0.5, weights=str(folder / "mobilenet_025.h5"))
    with pytest.raises(WeightFileError, match="nothing was loaded"):  # a Keras 3 file of another alpha too
        _mobilenet(alpha=0.5, weights=str(folder / "mobilenet_025.weights.h5"))


def test_a_keras3_file_of_another_network_is_refused_naming_the_layers_it_lacks(source, tmp_path):
    """A Keras 3 file that holds only a convolution of conv1's shape: MobileNet's other layers have
    no group of their class and rank, so nothing is paired (not conv1 alone)."""
    _, _, model = source
    other = keras.Sequential([keras.Input((32, 32, 3)), keras.layers.Conv2D(8, 3, use_bias=False)])
    path = str(tmp_path / "other.weights.h5")
    other.save_weights(path)
    arch = get_arch("mobilenet")
    with pytest.raises(
        WeightFileError, match=r"no weights for conv1_bn, conv_dw_1, conv_dw_1_bn, conv_pw_1 \(and \d+ more\)"
    ):
        loader.file_pairs(model, arch, anyshape.archs.model_config(model)[1], path)


def test_file_classes_reads_the_last_dense_group_of_a_keras3_file(source, tmp_path):
    """A Keras 3 file whose groups beyond the backbone are ConvNeXt's head form, a
    LayerNormalization then the Dense classifier: the class count is the Dense's (7), not the
    normalisation's channel count (8); the backbone's own file has no classifier (None)."""
    import shutil

    import h5py

    _, folder, model = source
    arch = get_arch("mobilenet")
    assert loader.file_classes(str(folder / "mobilenet_025.weights.h5"), model, arch) is None
    path = str(tmp_path / "with_head.weights.h5")
    shutil.copy(folder / "mobilenet_025.weights.h5", path)
    with h5py.File(path, "a") as f:
        for key, arrays in (
            ("layer_normalization", [np.ones(8), np.zeros(8)]),
            ("dense", [np.ones((8, 7)), np.zeros(7)]),
        ):
            group = f["layers"].create_group(key).create_group("vars")
            for i, a in enumerate(arrays):
                group.create_dataset(str(i), data=a.astype("float32"))
    assert loader.file_classes(path, model, arch) == 7
