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
        match=r"weights='resnet50.keras_in1k' are ResNet50's weights \(resnet50\), not MobileNet's",
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
    assert not torch.declared and not tf.declared  # the caller's word, not the file's


def test_a_state_dict_for_efficientnet_keeps_pixels_and_normalises_in_its_graph(tmp_path):
    """EfficientNet normalises in its graph: a state dict for it keeps taking 0..255 pixels (mode
    "raw") and its Normalization takes the mean / std the weights expect: ImageNet's for "torch",
    0.5 / 0.5 (pixels to [-1, 1]) for "tf"."""
    pth = tmp_path / "finetuned.pth"
    pth.write_bytes(b"x")
    torch = resolve(pth, arch="efficientnet_b0", preprocessing="torch")
    assert (torch.mode, torch.mean, torch.std, torch.declared) == ("raw", IMAGENET_MEAN, IMAGENET_STD, False)
    tf = resolve(pth, arch="efficientnet_b0", preprocessing="tf")
    assert (tf.mode, tf.mean, tf.std) == ("raw", (0.5,) * 3, (0.5,) * 3)


def test_a_keras_file_for_a_family_network_takes_the_preprocessing_given(tmp_path):
    """A Keras file without metadata only assumes its network's preprocessing (ResNet50: caffe);
    preprocessing= given replaces the assumption."""
    plain = tmp_path / "plain.h5"
    with h5py.File(plain, "w") as f:
        f.attrs["backend"] = b"tensorflow"
    torch = resolve(str(plain), arch="resnet50", preprocessing="torch")
    assert (torch.mode, torch.mean, torch.std) == ("torch", IMAGENET_MEAN, IMAGENET_STD)
    tf = resolve(str(plain), arch="resnet50", preprocessing="tf")
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


def test_keras_sets_override_only_efficientnets_stddev_rescaling():
    """keras/src/applications/efficientnet.py adds Rescaling(1 / sqrt(stddev)) with weights="imagenet"
    (tensorflow#49930): every EfficientNet B0-B7 Keras set asks for it, no other family Keras set overrides."""
    from anyshape.archs.efficientnet import IMAGENET_STDDEV_RGB

    keras_sets = [ws for ws in weight_sets() if ws.name.endswith(".keras_in1k")]
    overriding = {ws.name: dict(ws.build_overrides) for ws in keras_sets if ws.build_overrides}
    assert overriding == {f"efficientnet_b{i}.keras_in1k": {"stddev_rescaling": IMAGENET_STDDEV_RGB} for i in range(8)}
    assert REGISTRY["efficientnet_b0.keras_in1k"].build_overrides_for("efficientnet_b0") == {
        "stddev_rescaling": IMAGENET_STDDEV_RGB
    }


def test_inception_v3s_published_accuracies():
    """The top-1 accuracies `anyshape weights list` prints: keras.io/api/applications' table for
    Keras' InceptionV3 (77.9 %), torchvision's Inception_V3_Weights.IMAGENET1K_V1 meta (77.294 %)."""
    assert REGISTRY["imagenet"].top1 == 77.9
    assert REGISTRY["torchvision.IMAGENET1K_V1"].top1 == 77.294


def test_torchvision_sets_crop_as_their_transforms():
    """torchvision's IMAGENET1K_V1 transforms are ImageClassification(crop_size=224) with its default
    resize_size=256, the V2 ones resize_size=232 (torchvision/models/resnet.py, mobilenetv2.py)."""
    tv = [ws for ws in weight_sets() if ws.source == "torchvision" and ws.name.endswith("_in1k")]
    assert len(tv) == 13
    for ws in tv:
        resize = 256 if ws.name.endswith(".tv_in1k") else 232
        assert (ws.input_size, ws.crop_pct) == ((224, 224), 224 / resize), ws.name


def test_every_set_can_be_fetched_and_crops_a_fraction():
    """Every registered set has a file to fetch (a URL and a cache name) or a path; timm's sets are
    the hub's model.safetensors of the timm name the cache name carries (legacy_xception's, which
    timm's default_cfgs give no hf_hub_id, its GitHub release file); crop_pct, where given, is
    the fraction of the resized image the centre crop keeps (timm's data config: 0 < crop_pct <= 1)."""
    for ws in weight_sets():
        assert ws.path or (ws.url and ws.file_name), ws.name
        assert ws.crop_pct is None or 0 < ws.crop_pct <= 1, ws.name
        if ws.source == "timm" and ws.file_name.endswith(".safetensors"):
            timm_name = ws.file_name.removeprefix("timm_").removesuffix(".safetensors")
            assert ws.url == f"https://huggingface.co/timm/{timm_name}/resolve/main/model.safetensors", ws.name
        elif ws.source == "timm":  # a set timm still fetches from its GitHub releases (legacy_xception: no hf_hub_id)
            assert (
                ws.url
                == f"https://github.com/rwightman/pytorch-image-models/releases/download/v0.1-cadene/{ws.file_name}"
            )
