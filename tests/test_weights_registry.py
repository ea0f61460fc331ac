"""The weight-set registry and resolve(): data, names, paths, preprocessing (no model built)."""

import json

import numpy as np
import pytest

from anyshape.weights import REGISTRY, UnknownWeights, WeightSet, resolve, weight_sets
from anyshape.weights.registry import IMAGENET_MEAN, IMAGENET_STD


def test_every_public_set_is_registered():
    # InceptionV3's sets; every other network has its Keras set (tests/test_weights_family.py), and
    # 13 of torchvision's files and 112 of timm's are twins of family networks (tests/test_weights_twins.py)
    others = {ws.name for ws in weight_sets()} - {ws.name for ws in weight_sets("inception_v3")}
    assert len({name for name in others if name.endswith(".keras_in1k")}) == 39
    assert len({name for name in others if name.endswith((".tv_in1k", ".tv2_in1k"))}) == 13
    assert {name for name in others if name.startswith("inception_resnet_v2.tf_")} == {
        "inception_resnet_v2.tf_in1k",
        "inception_resnet_v2.tf_ens_adv_in1k",
    }
    assert len({name for name in others if name.startswith("efficientnet_b0.tf_")}) == 4
    assert len({name for name in others if name.startswith("efficientnet_b") and ".tf_" in name}) == 32
    assert len({name for name in others if name.startswith("mobilenet_v3_") and ".tf_" in name}) == 6
    # ConvNeXt: Facebook's fb_in1k, fb_in22k (21,841 classes), fb_in22k_ft_in1k and its 384 px sets
    assert len({name for name in others if name.startswith("convnext_") and ".fb_" in name}) == 19
    assert {name for name in others if name.startswith("convnext_") and ".in12k" in name} == {
        f"convnext_{size}.{tag}"
        for size in ("tiny", "small")
        for tag in ("in12k", "in12k_ft_in1k", "in12k_ft_in1k_384")
    }
    # timm's own ResNet50/101/152 and DenseNet121 tags (torchvision's layout: tests/test_weights_twins.py)
    timm_resnets = {
        name
        for name in others
        if name.startswith(("resnet50.", "resnet101.", "resnet152.", "densenet121."))
        and not name.endswith((".keras_in1k", ".tv_in1k", ".tv2_in1k"))
    }
    assert len(timm_resnets) == 27 and "resnet50.a1_in1k" in timm_resnets and "densenet121.ra_in1k" in timm_resnets
    assert {name for name in others if name.startswith("xception.") and not name.endswith(".keras_in1k")} == {
        "xception.tf_in1k"
    }
    assert len({name for name in others if name.startswith("efficientnet_v2_") and ".tf_" in name}) == 15
    assert {name for name in others if name.startswith("nasnet_") and not name.endswith(".keras_in1k")} == {
        "nasnet_large.tf_in1k"
    }
    assert {name for name in others if name.startswith("mobilenet_v2.") and ".tv" not in name} == {
        "mobilenet_v2.keras_in1k",
        "mobilenet_v2.ra_in1k",  # timm's mobilenetv2_100
    }
    assert {name for name in others if name.startswith("mobilenet.") and not name.endswith(".keras_in1k")} == {
        "mobilenet.ra4_e3600_r224_in1k",  # timm's mobilenetv1_100
        "mobilenet.ra4_e3600_r224_125_in1k",  # timm's mobilenetv1_125 (alpha 1.25)
    }
    assert len(others) == 39 + 13 + 2 + 32 + 15 + 6 + 19 + 6 + 1 + 1 + 27 + 1 + 2
    names = {ws.name for ws in weight_sets("inception_v3")}
    assert names == {
        "imagenet",
        "torchvision.IMAGENET1K_V1",
        "inception_v3.tv_in1k",
        "inception_v3.tf_in1k",
        "inception_v3.tf_adv_in1k",
        "inception_v3.gluon_in1k",
    }
    for ws in weight_sets("inception_v3"):
        assert ws.url and ws.url.startswith("https://") and ws.file_name
        assert ws.num_classes == 1000 and ws.label_offset == 0
        assert ws.mode in ("tf", "torch") and 0.8 < ws.crop_pct <= 1
        assert ws.interpolation in ("bilinear", "bicubic")
        # torch sets need gamma and padding-counting pools; Keras' set neither
        assert ws.bn_scale == ws.count_include_pad == (ws.format == "torch")


def test_published_locations_and_hashes():
    keras = REGISTRY["imagenet"]
    assert keras.url.endswith("inception_v3/inception_v3_weights_tf_dim_ordering_tf_kernels.h5")
    assert keras.file_hash == "9a0d58056eeedaa3f26cb7ebd46da564" and keras.hash_algorithm == "md5"
    assert keras.url_notop.endswith("_notop.h5") and keras.file_hash_notop == "bcbd6486424b2319ff4ef7d526e38f63"
    assert keras.file_name == "inception_v3_weights_tf_dim_ordering_tf_kernels.h5"  # keras.utils.get_file's name
    tv = REGISTRY["torchvision.IMAGENET1K_V1"]
    assert tv.url == "https://download.pytorch.org/models/inception_v3_google-0cc3c7bd.pth"
    assert (tv.file_hash, tv.hash_algorithm) == ("0cc3c7bd", "sha256") and tv.has_aux
    for tag in ("tv_in1k", "tf_in1k", "tf_adv_in1k", "gluon_in1k"):
        ws = REGISTRY[f"inception_v3.{tag}"]
        assert ws.url == f"https://huggingface.co/timm/inception_v3.{tag}/resolve/main/model.safetensors"
        assert ws.has_aux == (tag == "tv_in1k") and ws.interpolation == "bicubic" and ws.crop_pct == 0.875


def test_preprocessing_per_set():
    assert REGISTRY["imagenet"].preprocessing == {"mode": "tf"}
    assert REGISTRY["torchvision.IMAGENET1K_V1"].preprocessing == {"mode": "tf"}  # == transform_input=True
    assert REGISTRY["inception_v3.tf_in1k"].preprocessing == {"mode": "tf"}
    gluon = REGISTRY["inception_v3.gluon_in1k"].preprocessing
    assert gluon == {"mode": "torch", "mean": IMAGENET_MEAN, "std": IMAGENET_STD}


def test_torchvision_transform_input_is_what_the_registry_says():
    """torchvision's InceptionV3 weights are registered with mode "tf": its model, built with
    transform_input=True, maps ImageNet mean/std-normalised pixels back to [-1, 1] before the first
    conv. So anyshape's "tf" preprocessing of the raw pixels must equal what torchvision's own
    `_transform_input` makes of its "torch" preprocessing of the same pixels."""
    import torch
    from torchvision.models import inception_v3

    from anyshape.preprocess import preprocess_input

    ws = resolve("torchvision.IMAGENET1K_V1")
    pixels = np.random.default_rng(0).uniform(0, 255, (2, 9, 11, 3)).astype("float32")
    normalised = preprocess_input(pixels, mode="torch", mean=IMAGENET_MEAN, std=IMAGENET_STD)
    model = inception_v3(weights=None, aux_logits=False, init_weights=False, transform_input=True)
    seen = model._transform_input(torch.from_numpy(np.transpose(normalised, (0, 3, 1, 2)).copy()))
    ours = preprocess_input(pixels, **ws.preprocessing)
    np.testing.assert_allclose(np.transpose(seen.numpy(), (0, 2, 3, 1)), ours, atol=1e-5)


@pytest.mark.parametrize(
    "alias", ["IMAGENET1K_V1", "torchvision", "imagenet1k_v1", "timm/inception_v3.tf_in1k", "keras"]
)
def test_aliases(alias):
    assert resolve(alias).name in REGISTRY


def test_a_framework_name_alone_is_its_default_set_of_the_network():
    """`weights="torchvision"` / `"timm"` with a network: the set torchvision's weights="DEFAULT"
    and timm's pretrained=True load (their aliases "torchvision/<arch>", "timm/<arch>"), in any
    case; for a network that framework has no weights of, the error says so and lists its sets;
    InceptionV3's "torchvision" stays torchvision's IMAGENET1K_V1."""
    assert resolve("torchvision", arch="resnet50").name == "resnet50.tv2_in1k"  # ResNet50_Weights.DEFAULT
    assert resolve("TorchVision", arch="vgg16").name == "vgg16.tv_in1k"
    assert resolve("timm", arch="resnet50").name == "resnet50.a1_in1k"
    assert resolve("timm", arch="convnext_tiny").name == "convnext_tiny.in12k_ft_in1k"
    assert (
        resolve("torchvision", arch="inception_v3").name == resolve("torchvision").name == "torchvision.IMAGENET1K_V1"
    )
    # timm's twin of another name: its default tag (tf_efficientnet_b0's first, ns_jft_in1k)
    assert resolve("timm", arch="efficientnet_b0").name == "efficientnet_b0.tf_ns_jft_in1k"
    assert resolve("timm", arch="mobilenet").name == "mobilenet.ra4_e3600_r224_in1k"  # mobilenetv1_100's
    with pytest.raises(UnknownWeights) as e:
        resolve("torchvision", arch="efficientnet_b0")
    assert "weights='torchvision': no torchvision weights are registered for efficientnet_b0" in str(e.value)
    assert "'imagenet' (Keras' ImageNet weights), efficientnet_b0.keras_in1k" in str(e.value)


def test_paths(tmp_path):
    pth = tmp_path / "model.pth"
    pth.write_bytes(b"x")
    ws = resolve(pth, preprocessing="tf")
    assert ws.format == "torch" and ws.bn_scale and ws.count_include_pad and ws.path == str(pth)
    st = tmp_path / "model.safetensors"
    st.write_bytes(b"x")
    assert resolve(str(st), preprocessing="tf").format == "torch"


@pytest.mark.parametrize(
    "bad, words",
    [
        ("imagenett", "neither a registered weight set nor an existing file"),
        ("/no/such/file.h5", "does not exist"),
        ("missing.weights.h5", "does not exist"),
        (3, "must be None, a weight set name or a file path"),
    ],
)
def test_unknown(bad, words):
    with pytest.raises(UnknownWeights, match=words):
        resolve(bad)


def test_unknown_kind_of_file(tmp_path):
    p = tmp_path / "weights.npz"
    p.write_bytes(b"x")
    with pytest.raises(UnknownWeights, match="unknown kind"):
        resolve(str(p))


def test_json_round_trip():
    ws = REGISTRY["inception_v3.gluon_in1k"]
    back = WeightSet.from_json(ws.to_json())
    assert back == ws
    assert json.loads(ws.to_json())["mean"] == list(IMAGENET_MEAN)


def test_preprocess_input_follows_the_weight_set():
    from types import SimpleNamespace

    from anyshape.weights import preprocess_input  # anyshape.preprocess_input: takes weights=

    x = np.random.default_rng(0).uniform(0, 255, (2, 8, 8, 3)).astype(np.float32)
    tf = preprocess_input(x, "channels_last", mode="tf")
    torch = preprocess_input(x, "channels_last", mode="torch")
    for name in ("imagenet", "torchvision.IMAGENET1K_V1", "inception_v3.tv_in1k", "inception_v3.tf_adv_in1k"):
        np.testing.assert_array_equal(preprocess_input(x, "channels_last", weights=name), tf)
    np.testing.assert_array_equal(preprocess_input(x, "channels_last", weights="inception_v3.gluon_in1k"), torch)
    # a model loaded by anyshape carries its weight set
    model = SimpleNamespace(anyshape_weights=REGISTRY["inception_v3.gluon_in1k"])
    np.testing.assert_array_equal(preprocess_input(x, "channels_last", weights=model), torch)
    # one channel with a mean/std set: the channel means of mean and std
    gray = preprocess_input(x[..., :1], "channels_last", weights="inception_v3.gluon_in1k")
    np.testing.assert_allclose(gray, (x[..., :1] / 255 - np.mean(IMAGENET_MEAN)) / np.mean(IMAGENET_STD), rtol=1e-5)
    with pytest.raises(ValueError, match="not both"):
        preprocess_input(x, "channels_last", weights="imagenet", mode="tf")
    with pytest.raises(ValueError, match="no anyshape weight metadata"):
        preprocess_input(x, "channels_last", weights=SimpleNamespace(layers=[]))


def test_cli_lists_the_weight_sets(capsys):
    from anyshape.cli import main

    assert main(["weights"]) == 0
    out = capsys.readouterr().out
    for ws in weight_sets():
        assert ws.name in out
    assert "ImageNet mean/std" in out and "[-1, 1]" in out
    # one table: the source column starts at one offset in every row, the longest name's included
    lines = out.splitlines()
    longest = max(weight_sets(), key=lambda ws: len(ws.name))
    assert len(longest.name) > 28  # wider than the column was (efficientnet_v2_b3.tf_in21k_ft_in1k)
    header = lines[0].index("source")
    for line, ws in zip(lines[1:], weight_sets()):
        assert line.startswith(ws.name + " ") and line[header:].startswith(ws.source + " "), line


# --------------------------------------------------------------------------------------------
# PyTorch state dicts: preprocessing recognised from a published file, else asked for


def test_unrecognised_state_dict_needs_preprocessing(tmp_path):
    from anyshape.weights import PreprocessingUnknown

    pth = tmp_path / "my_finetune.pth"
    pth.write_bytes(b"x")
    with pytest.raises(PreprocessingUnknown, match="preprocessing='tf'") as e:
        resolve(pth)
    assert str(pth) in str(e.value) and "preprocessing='torch'" in str(e.value) and "--" not in str(e.value)
    tf = resolve(pth, preprocessing="tf")
    assert tf.preprocessing == {"mode": "tf"} and not tf.declared
    torch = resolve(pth, preprocessing="torch")
    assert torch.preprocessing == {"mode": "torch", "mean": IMAGENET_MEAN, "std": IMAGENET_STD}
    with pytest.raises(ValueError, match="must be 'tf'"):
        resolve(pth, preprocessing="caffe")


def test_published_torchvision_file_is_recognised_by_name_and_hash(tmp_path, monkeypatch):
    import hashlib
    from dataclasses import replace

    from anyshape.weights import PreprocessingUnknown
    from anyshape.weights.registry import REGISTRY as registry

    data = b"stand-in for torchvision's file"
    tv = registry["torchvision.IMAGENET1K_V1"]
    monkeypatch.setitem(registry, tv.name, replace(tv, file_hash=hashlib.sha256(data).hexdigest()[:8]))
    path = tmp_path / tv.file_name
    path.write_bytes(data)
    ws = resolve(path)  # no preprocessing needed: the published set declares it
    assert ws.declared and ws.mode == "tf" and ws.path == str(path) and "IMAGENET1K_V1" in ws.description
    assert (ws.crop_pct, ws.interpolation) == (tv.crop_pct, "bilinear")
    with pytest.raises(ValueError, match="contradicts"):
        resolve(path, preprocessing="torch")
    path.write_bytes(data + b"!")  # the published name on other contents is not that set
    with pytest.raises(PreprocessingUnknown):
        resolve(path)


def test_timm_files_are_recognised_by_cache_location(tmp_path):
    hub = tmp_path / "models--timm--inception_v3.gluon_in1k" / "snapshots" / "0123abc"
    hub.mkdir(parents=True)
    (hub / "model.safetensors").write_bytes(b"x")
    gluon = resolve(hub / "model.safetensors")
    assert gluon.preprocessing == {"mode": "torch", "mean": IMAGENET_MEAN, "std": IMAGENET_STD}
    assert gluon.interpolation == "bicubic"
    ours = tmp_path / REGISTRY["inception_v3.tf_in1k"].file_name  # anyshape's own cache name
    ours.write_bytes(b"x")
    assert resolve(ours).preprocessing == {"mode": "tf"}


def test_registered_sets_refuse_contradicting_preprocessing():
    assert resolve("imagenet", preprocessing="tf") is REGISTRY["imagenet"]
    with pytest.raises(ValueError, match="contradicts imagenet"):
        resolve("imagenet", preprocessing="torch")
    with pytest.raises(ValueError, match="contradicts inception_v3.gluon_in1k"):
        resolve("inception_v3.gluon_in1k", preprocessing="tf")
