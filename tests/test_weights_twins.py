"""The family's PyTorch twins (anyshape.weights.torch_family) against torchvision's and timm's own
models: torchvision's ResNet50, DenseNet121, VGG16 and MobileNetV2 (the smallest member of each
family) and timm's InceptionResNetV2, each torch model built once (random weights, BatchNorm moved
off its defaults) and saved as the .pth (.safetensors for timm's) file the tests load with `weights=`.

- each loads through `create_model(name, weights=FILE.pth, preprocessing="torch")` and equals
  torchvision at relative 1e-4 or better: a free-size model at an odd non-square size and at the
  default size (ResNet50; VGG16: with the top at 224, the one size where torchvision's adaptive pool is the
  identity; without it at an odd size); MobileNetV2 at an even size too, where its symmetric
  padding and Keras' differ; timm's InceptionResNetV2 from a .safetensors at an odd size, and timm's
  tf_efficientnet_b0 at an odd and an even size, on 0..255 pixels (its normalisation in the graph);
- 1 and 4 input channels through the first-conv rules equal torchvision with timm's
  `adapt_input_conv` (the reference rule: sum for 1 channel, RGB tiled and scaled by 3 / C);
- the build overrides land in the model's Config and survive saving and reloading (MobileNetV2);
- a state dict that is not the layout is refused, naming the first tensor missing, left over or
  misshapen; DenseNet's published files' older keys are read;
- the registered sets carry torchvision's published names, hashes, preprocessing and overrides,
  and the download path (hash check, cache, recognised by published name and hash) works on a
  file made here, served from file://.
"""

import copy
import hashlib
import logging
from dataclasses import replace

import numpy as np
import pytest
import torch
import torchvision
from model_helpers import images, randomise_torch_batchnorm, relative_error, run
from timm.models import adapt_input_conv

import anyshape
from anyshape.archs import get_arch, model_config
from anyshape.weights import REGISTRY, PreprocessingUnknown, WeightFileError, resolve, weight_sets
from anyshape.weights.registry import WeightsForAnotherNetwork
from anyshape.weights.torch import read_state_dict
from anyshape.weights.torch_family import TWIN_OVERRIDES, state_dict_to_entries

TOL = 1e-4
ODD = (65, 97)  # odd and non-square


@pytest.fixture(scope="module")
def twins(tmp_path_factory):
    """{network: (torchvision model in eval mode, its .pth)}, made on first use."""
    folder = tmp_path_factory.mktemp("twins")
    made: dict = {}

    def get(name):
        if name not in made:
            torch.manual_seed(0)
            model = randomise_torch_batchnorm(getattr(torchvision.models, name)(weights=None)).eval()
            path = folder / f"{name}.pth"
            torch.save(model.state_dict(), path)
            made[name] = (model, str(path))
        return made[name]

    yield get
    for _, path in made.values():
        import os

        os.remove(path)  # VGG16's is 550 MB


def _torch(model, x):
    with torch.no_grad():
        return model(torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))).numpy()


def _assert_twin(ours, ref, x):
    expected = _torch(ref, x)
    assert np.abs(expected).max() > 0.1  # not a comparison of near-zero outputs
    err = relative_error(run(ours, x), expected)
    assert err <= TOL, f"relative error {err:.2e}"


@pytest.mark.parametrize("name", ["resnet50", "densenet121", "mobilenet_v2"])
def test_free_size_model_equals_torchvision_at_odd_and_default_size(twins, name):
    ref, path = twins(name)
    ours = anyshape.create_model(
        name, weights=path, preprocessing="torch", input_shape=(None, None, 3), classifier_activation=None
    )
    _assert_twin(ours, ref, images((*ODD, 3)))
    if name == "resnet50":  # the function does not depend on the size: the default size once
        _assert_twin(ours, ref, images((224, 224, 3), n=1))
    if name == "mobilenet_v2":  # even: where symmetric padding differs from Keras' "same"
        _assert_twin(ours, ref, images((64, 72, 3), n=1))
    config = model_config(ours)[1]
    for key, value in TWIN_OVERRIDES[get_arch(name).family]:
        assert getattr(config, key) == value
    ws = ours.anyshape_weights
    assert ws.format == "torch" and ws.mode == "torch" and ws.num_classes == 1000 and ws.arch == name


def test_vgg16_with_its_top_at_224_and_features_at_an_odd_size(twins):
    ref, path = twins("vgg16")
    ours = anyshape.create_model("vgg16", weights=path, preprocessing="torch", classifier_activation=None)
    assert ours.get_layer("fc1").kernel.shape == (25088, 4096)  # Keras' Flatten head at 224
    _assert_twin(ours, ref, images((224, 224, 3), n=1))
    features = anyshape.create_model(
        "vgg16", weights=path, preprocessing="torch", include_top=False, input_shape=(*ODD, 3)
    )
    x = images((*ODD, 3))
    with torch.no_grad():
        expected = ref.features(torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))).numpy()
    assert relative_error(run(features, x), expected.transpose(0, 2, 3, 1)) <= TOL


def test_timms_inception_resnet_v2_from_safetensors_at_an_odd_size(tmp_path):
    import timm
    from safetensors.torch import save_file

    torch.manual_seed(0)
    ref = randomise_torch_batchnorm(timm.create_model("inception_resnet_v2")).eval()
    path = tmp_path / "inception_resnet_v2.safetensors"
    save_file({k: v.contiguous() for k, v in ref.state_dict().items()}, path)
    ours = anyshape.create_model(
        "inception_resnet_v2",
        weights=str(path),
        preprocessing="tf",
        input_shape=(None, None, 3),
        classifier_activation=None,
    )
    assert model_config(ours)[1].bn_scale is True and model_config(ours)[1].count_include_pad is False
    _assert_twin(ours, ref, images((75, 89, 3)))  # odd, non-square, the network's minimum height
    ws = resolve("timm/inception_resnet_v2", arch="inception_resnet_v2")
    assert ws.name == "inception_resnet_v2.tf_in1k" and ws.build_overrides == {"bn_scale": True}
    assert ws.url == "https://huggingface.co/timm/inception_resnet_v2.tf_in1k/resolve/main/model.safetensors"
    assert (ws.mode, ws.crop_pct, ws.interpolation, ws.input_size) == ("tf", 0.8975, "bicubic", (299, 299))


def test_timms_tf_efficientnet_b0_keeps_taking_pixels_at_odd_and_even_sizes(tmp_path):
    """timm's TF port pads as TF does ("same", as Keras); the network keeps its in-graph
    normalisation, which takes the mean and std the weights expect: 0..255 pixels in."""
    import timm
    from safetensors.torch import save_file

    torch.manual_seed(0)
    ref = randomise_torch_batchnorm(timm.create_model("tf_efficientnet_b0")).eval()
    path = tmp_path / "tf_efficientnet_b0.safetensors"
    save_file({k: v.contiguous() for k, v in ref.state_dict().items()}, path)
    ours = anyshape.create_model(
        "efficientnet_b0",
        weights=str(path),
        preprocessing="torch",
        input_shape=(None, None, 3),
        classifier_activation=None,
    )
    ws = ours.anyshape_weights
    assert ws.data_config.mode == "raw" and (ws.mean, ws.std) == ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
    mean, std = np.asarray(ws.mean, "float32"), np.asarray(ws.std, "float32")
    for hw in (ODD, (64, 72)):
        pixels = images((*hw, 3), low=0.0, high=255.0)
        expected = _torch(ref, (pixels / 255.0 - mean) / std)
        assert relative_error(run(ours, pixels), expected) <= TOL
    registered = resolve("timm/tf_efficientnet_b0", arch="efficientnet_b0")
    assert registered.name == "efficientnet_b0.tf_in1k" and registered.data_config.mode == "raw"
    assert registered.url == "https://huggingface.co/timm/tf_efficientnet_b0.in1k/resolve/main/model.safetensors"
    assert resolve("efficientnet_b0.tf_ap_in1k").mean == (0.5, 0.5, 0.5)


def _adapted(ref, first_conv: str, channels: int):
    """`ref` with its first convolution adapted to `channels` by timm's adapt_input_conv."""
    twin = copy.deepcopy(ref)
    parent, _, attr = first_conv.rpartition(".")
    owner = twin.get_submodule(parent) if parent else twin
    conv = getattr(owner, attr)
    new = torch.nn.Conv2d(
        channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding, bias=conv.bias is not None
    )
    with torch.no_grad():
        new.weight.copy_(adapt_input_conv(channels, conv.weight))
        if conv.bias is not None:
            new.bias.copy_(conv.bias)
    setattr(owner, attr, new)
    return twin.eval()


@pytest.mark.parametrize(
    "name, first_conv, channels",
    [("resnet50", "conv1", 1), ("resnet50", "conv1", 4), ("mobilenet_v2", "features.0.0", 1)],
)
def test_one_and_four_channels_follow_the_first_conv_rules(twins, name, first_conv, channels, tmp_path):
    ref, path = twins(name)
    ours = anyshape.create_model(
        name, weights=path, preprocessing="torch", input_shape=(*ODD, channels), classifier_activation=None
    )
    x = images((*ODD, channels))
    _assert_twin(ours, _adapted(ref, first_conv, channels), x)
    if name == "mobilenet_v2":  # the build overrides are in the Config, which the model file keeps
        from anyshape.model_info import load_model, save_model

        save_model(ours, tmp_path / "m.keras")
        back = load_model(tmp_path / "m.keras")
        config = model_config(back)[1]
        assert (config.padding, config.bn_epsilon, config.input_shape) == ("symmetric", 1e-5, (*ODD, 1))
        assert relative_error(run(back, x), run(ours, x)) <= 1e-6


def test_densenet_reads_the_published_files_older_keys(twins, tmp_path):
    ref, _ = twins("densenet121")
    old = {}
    for key, value in ref.state_dict().items():  # torchvision's files: "denselayer1.norm.1.weight"
        for new, was in (("norm1", "norm.1"), ("norm2", "norm.2"), ("conv1", "conv.1"), ("conv2", "conv.2")):
            if "denselayer" in key and f".{new}." in key:
                key = key.replace(f".{new}.", f".{was}.")
        old[key] = value
    assert "features.denseblock1.denselayer1.norm.1.weight" in old
    arch = get_arch("densenet121")
    config = arch.checked_config(input_shape=(None, None, 3))
    renamed = state_dict_to_entries({k: v.numpy() for k, v in old.items()}, arch, config)
    plain = state_dict_to_entries({k: v.numpy() for k, v in ref.state_dict().items()}, arch, config)
    assert [e[0] for e in renamed] == [e[0] for e in plain]
    assert all(np.array_equal(a, b) for x, y in zip(renamed, plain) for a, b in zip(x[2], y[2]))


def test_a_state_dict_of_another_layout_is_refused_naming_the_tensor(twins, tmp_path):
    ref, path = twins("resnet50")
    state = read_state_dict(path)
    densenet = get_arch("densenet121")
    with pytest.raises(
        WeightFileError, match=r"no tensor 'features\.conv0\.weight'.*first tensor not yet matched is 'conv1\.weight'"
    ):
        state_dict_to_entries(state, densenet, densenet.checked_config())
    resnet = get_arch("resnet50")
    with pytest.raises(WeightFileError, match=r"tensor 'extra\.weight' has no place in it"):
        state_dict_to_entries({**state, "extra.weight": np.zeros(3, "float32")}, resnet, resnet.checked_config())
    with pytest.raises(WeightFileError, match=r"no tensor 'layer4\.2\.bn3\.running_var'"):
        state_dict_to_entries(
            {k: v for k, v in state.items() if k != "layer4.2.bn3.running_var"}, resnet, resnet.checked_config()
        )

    _, mobilenet = twins("mobilenet_v2")
    bad = {k: torch.from_numpy(v) for k, v in read_state_dict(mobilenet).items()}
    bad["features.3.conv.2.weight"] = bad["features.3.conv.2.weight"][:, :-8].contiguous()  # one project conv narrower
    torch.save(bad, tmp_path / "bad.pth")
    with pytest.raises(
        WeightFileError,
        match=r"tensor 'features\.3\.conv\.2\.weight' gives \(1, 1, 136, 24\) for layer block_2_project",
    ):
        anyshape.create_model(
            "mobilenet_v2", weights=str(tmp_path / "bad.pth"), preprocessing="torch", input_shape=(32, 32, 3)
        )


def test_registered_sets_carry_torchvisions_published_facts():
    tv = {ws.name: ws for ws in weight_sets() if ws.source == "torchvision" and ws.arch != "inception_v3"}
    assert len(tv) == 13
    for ws in tv.values():
        assert ws.url == "https://download.pytorch.org/models/" + ws.file_name
        assert ws.file_name.endswith(f"-{ws.file_hash}.pth") and len(ws.file_hash) == 8
        assert ws.hash_algorithm == "sha256" and ws.format == "torch"
        assert ws.data_config.mode == "torch" and ws.data_config.input_size == (224, 224)
        assert ws.build_overrides == dict(TWIN_OVERRIDES[get_arch(ws.arch).family])
    r50 = resolve("torchvision/resnet50", arch="resnet50")
    assert r50.name == "resnet50.tv2_in1k" and r50.top1 == 80.858 and r50.crop_pct == pytest.approx(224 / 232)
    assert resolve("resnet50.tv_in1k").file_name == "resnet50-0676ba61.pth"
    assert resolve("torchvision/densenet121").file_name == "densenet121-a639ec97.pth"
    assert resolve("vgg16.tv_in1k").build_overrides == {}
    assert resolve("mobilenet_v2.tv_in1k").build_overrides == {"padding": "symmetric", "bn_epsilon": 1e-5}
    with pytest.raises(WeightsForAnotherNetwork, match="ResNet50's weights"):
        resolve("resnet50.tv_in1k", arch="resnet101")


def test_a_file_that_is_not_published_needs_its_preprocessing(twins):
    _, path = twins("mobilenet_v2")
    with pytest.raises(PreprocessingUnknown, match="preprocessing='torch'"):
        resolve(path, arch="mobilenet_v2")
    ws = resolve(path, "torch", arch="mobilenet_v2")
    assert ws.arch == "mobilenet_v2" and ws.build_overrides == {"padding": "symmetric", "bn_epsilon": 1e-5}
    with pytest.raises(anyshape.weights.UnknownWeights, match="no PyTorch twin"):
        resolve(path, "torch", arch="xception")


def test_download_from_the_registry_and_recognised_by_name_and_hash(twins, tmp_path, monkeypatch, caplog):
    ref, path = twins("mobilenet_v2")
    digest = hashlib.sha256(open(path, "rb").read()).hexdigest()
    ws = REGISTRY["mobilenet_v2.tv_in1k"]
    served = replace(ws, url=f"file://{path}", file_hash=digest[:8])
    monkeypatch.setitem(REGISTRY, ws.name, served)
    cache = tmp_path / "cache"
    with caplog.at_level(logging.WARNING, logger="anyshape.weights"):
        ours = anyshape.create_model(
            "mobilenet_v2",
            weights="torchvision/mobilenet_v2.IMAGENET1K_V1",
            input_shape=(*ODD, 3),
            classifier_activation=None,
            cache_dir=str(cache),
            progress=False,
        )
    cached = cache / ws.file_name
    assert ours.anyshape_weights.path == str(cached) and cached.is_file()
    _assert_twin(ours, ref, images((*ODD, 3), n=1))
    recognised = resolve(str(cached), arch="mobilenet_v2")  # no preprocessing needed: its published name and hash
    assert recognised.name == ws.name and recognised.declared and "sha256" in recognised.description
    monkeypatch.setitem(REGISTRY, ws.name, replace(served, file_hash="00000000"))
    with pytest.raises(anyshape.weights.WeightDownloadError):
        anyshape.create_model(
            "mobilenet_v2", weights=ws.name, input_shape=(32, 32, 3), cache_dir=str(tmp_path / "c2"), progress=False
        )
