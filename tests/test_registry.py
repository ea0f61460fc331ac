"""`anyshape.weights.registry` (the weight sets as data, and `resolve`): what the registry's entries
must carry, and how a name or a path given for one network resolves. No network is built and
no weights are read; the files are empty HDF5 files or stand-ins."""

from __future__ import annotations

from pathlib import Path

import h5py
import pytest

from anyshape.weights import REGISTRY, UnknownWeights, resolve, weight_sets
from anyshape.weights.registry import IMAGENET_MEAN, IMAGENET_STD, WeightsForAnotherNetwork


def test_every_set_says_what_it_is_and_every_keras_set_has_both_files():
    for ws in weight_sets():
        assert ws.description, ws.name
    keras_sets = [ws for ws in weight_sets() if ws.source == "keras" and ws.name != "imagenet"]
    assert len(keras_sets) == 39
    for ws in keras_sets:
        if ws.file_name_notop:  # a notop file beside the top one
            assert (ws.url_notop or "").startswith("https://storage.googleapis.com/") and ws.url_notop.endswith(".h5")
    assert REGISTRY["resnet50.keras_in1k"].url_notop.endswith("resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5")


def test_imagenet_means_the_networks_own_set_and_inception_v3_without_a_network():
    assert resolve("imagenet").name == "imagenet"
    assert resolve("keras").name == "imagenet"
    assert resolve("imagenet", arch="mobilenet").name == "mobilenet.keras_in1k"
    assert resolve("ImageNet", arch="ResNet50").name == "resnet50.keras_in1k"


def test_a_network_without_registered_keras_weights_says_so(monkeypatch):
    monkeypatch.delitem(REGISTRY, "mobilenet.keras_in1k")
    with pytest.raises(UnknownWeights, match="no Keras ImageNet weights are registered for mobilenet"):
        resolve("imagenet", arch="mobilenet")


def test_a_set_for_another_network_is_refused_naming_both():
    with pytest.raises(
        WeightsForAnotherNetwork,
        match=r"weights=resnet50.keras_in1k are ResNet50's weights \(resnet50\), not MobileNet's",
    ):
        resolve("resnet50.keras_in1k", arch="mobilenet")
    with pytest.raises(
        WeightsForAnotherNetwork, match=r"'IMAGENET1K_V1' \(torchvision.IMAGENET1K_V1\) are InceptionV3's"
    ):
        resolve("IMAGENET1K_V1", arch="mobilenet")


def test_paths_as_path_objects_directories_and_missing_files(tmp_path):
    pth = tmp_path / "model.pth"
    pth.write_bytes(b"x")
    assert resolve(Path(pth), preprocessing="tf").path == str(pth)
    with pytest.raises(UnknownWeights, match="is a directory; give the weights file inside it"):
        resolve(str(tmp_path))
    with pytest.raises(UnknownWeights, match="weights file 'absent.h5' does not exist"):
        resolve("absent.h5")
    with pytest.raises(UnknownWeights, match="'resnet' is neither a registered weight set nor an existing file"):
        resolve("resnet")
    with pytest.raises(UnknownWeights, match="'resnet' is neither a weight set of mobilenet"):
        resolve("resnet", arch="mobilenet")


def test_a_keras_file_for_a_family_network(tmp_path):
    """Without anyshape's metadata: keras.applications' preprocessing of that network, not
    declared; with it: the set the metadata describes, at that path."""
    from anyshape.weights.keras_h5 import write_metadata

    plain = tmp_path / "plain.h5"
    with h5py.File(plain, "w") as f:
        f.attrs["backend"] = b"tensorflow"
    ws = resolve(str(plain), arch="resnet50")
    own = REGISTRY["resnet50.keras_in1k"]
    assert (ws.mode, ws.mean, ws.std, ws.input_size) == (own.mode, own.mean, own.std, own.input_size)
    assert ws.mode == "caffe" and ws.path == str(plain) and not ws.declared
    assert ws.description == "Keras weights file for resnet50"
    described = tmp_path / "described.h5"
    with h5py.File(described, "w") as f:
        f.attrs["backend"] = b"tensorflow"
    write_metadata(str(described), REGISTRY["mobilenet.keras_in1k"])
    ws = resolve(str(described), arch="mobilenet")
    assert ws.name == "mobilenet.keras_in1k" and ws.path == str(described)


def test_a_state_dict_takes_the_preprocessing_it_is_given(tmp_path):
    pth = tmp_path / "finetuned.pth"
    pth.write_bytes(b"x")
    torch = resolve(pth, preprocessing="torch")
    assert (torch.mode, torch.mean, torch.std) == ("torch", IMAGENET_MEAN, IMAGENET_STD)
    tf = resolve(pth, preprocessing="tf")
    assert (tf.mode, tf.mean, tf.std) == ("tf", None, None)


def test_a_published_file_takes_its_sets_preprocessing(tmp_path):
    """timm's gluon_in1k (ImageNet mean/std) recognised by its own cache name: mean and std,
    input size and crop come from the set."""
    gluon = REGISTRY["inception_v3.gluon_in1k"]
    path = tmp_path / gluon.file_name
    path.write_bytes(b"x")
    ws = resolve(path)
    assert (ws.mode, ws.mean, ws.std) == ("torch", gluon.mean, gluon.std) == ("torch", IMAGENET_MEAN, IMAGENET_STD)
    assert (ws.input_size, ws.crop_pct, ws.interpolation) == (gluon.input_size, gluon.crop_pct, gluon.interpolation)
    assert ws.declared and "recognised as inception_v3.gluon_in1k by its published name" in ws.description
