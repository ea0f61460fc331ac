"""The family's PyTorch twins (anyshape.weights.torch_family, torch_sets, convert_twin) against
torchvision's and timm's own models: torchvision's ResNet50, DenseNet121, VGG16 and MobileNetV2 (the
smallest member of each family) and timm's InceptionResNetV2, tf_efficientnet_b0,
tf_efficientnetv2_b0, tf_mobilenetv3_small_100, a small ConvNeXt and a small NASNetALarge, each torch model built once (random weights,
BatchNorm, LayerNorm and layer scales moved off their defaults) and saved as the .pth (.safetensors
for timm's) file the tests load with `weights=`.

- each loads through `create_model(name, weights=FILE, preprocessing=...)` and equals the torch
  model at relative 1e-4 or better: a free-size model at an odd non-square size and at the
  default size (ResNet50; VGG16: with the top at 224, the one size where torchvision's adaptive pool is the
  identity; without it at an odd size); MobileNetV2 at an even size too, where its symmetric
  padding and Keras' differ; timm's InceptionResNetV2 from a .safetensors at an odd size, timm's
  tf_efficientnet_b0 at an odd and an even size, tf_efficientnetv2_b0 on ImageNet-scaled and
  [-1, 1] weights (x / 127.5 - 1, where Keras' EfficientNetV2 divides by 128) and
  tf_mobilenetv3_small_100 at an odd size, on 0..255 pixels (their scaling in the graph);
  ConvNeXt at an odd size with its top and, without it, as timm's pooled features; timm's
  nasnetalarge on a small configuration at an odd size, where its SAME max pools differ from Keras';
  timm's mobilenetv1_100 (Keras' MobileNet with symmetric padding) at odd, even and 1 x 3 sizes;
- 1 and 4 input channels through the first-conv rules equal torchvision with timm's
  `adapt_input_conv` (the reference rule: sum for 1 channel, RGB tiled and scaled by 3 / C), and
  timm's tf_efficientnetv2_b0 and small nasnetalarge created with in_chans 1 and 4 (as timm's
  pretrained loader adapts them);
- the build overrides land in the model's Config and survive saving and reloading (MobileNetV2);
- a state dict that is not the layout is refused, naming the first tensor missing, left over or
  misshapen; DenseNet's published files' older keys are read;
- `convert FILE --arch` (CLI and Python): refusals in the interface's words, the parity report
  against torchvision's MobileNetV2 and timm's EfficientNet-B0, the written file rebuilding the twin,
  a registered set converted by name into a .keras that records the overrides;
- the registered sets carry torchvision's and timm's published names, hashes, preprocessing and
  overrides; timm's EfficientNet B1-B7, EfficientNetV2 (every member), MobileNetV3, MobileNet (alpha
  1.25), ConvNeXt and NASNetLarge state dicts (built on torch's meta device) hold exactly the tensors the loader reads, and as many numbers as the network has
  parameters; the download path (hash check, cache, recognised by published name and hash) works
  on a file made here, served from file://.
"""

import copy
import hashlib
import logging
from dataclasses import replace

import numpy as np
import pytest
import torch
import torchvision
from model_helpers import images, randomise_torch_batchnorm, relative_error, run, zero_initial_weights
from timm.models import adapt_input_conv

import anyshape
from anyshape.archs import get_arch, model_config
from anyshape.cli import main
from anyshape.weights import REGISTRY, PreprocessingUnknown, WeightFileError, resolve, weight_sets
from anyshape.weights.convert import convert
from anyshape.weights.convert_twin import twin_difference
from anyshape.weights.registry import WeightsForAnotherNetwork
from anyshape.weights.torch import read_state_dict
from anyshape.weights.torch_family import TWIN_OVERRIDES, state_dict_to_entries, twin_layout
from anyshape.weights.torch_sets import HF_URL, pixel_scaling
from anyshape.weights.twin_note import twin_note
from anyshape.weights.twin_reference import reference_model

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
    with zero_initial_weights():  # every weight is loaded (one the loader missed stays zero: parity sees it)
        ours = anyshape.create_model("vgg16", weights=path, preprocessing="torch", classifier_activation=None)
    assert ours.get_layer("fc1").kernel.shape == (25088, 4096)  # Keras' Flatten head at 224
    _assert_twin(ours, ref, images((224, 224, 3), n=1))
    del ours
    with zero_initial_weights():
        features = anyshape.create_model(
            "vgg16", weights=path, preprocessing="torch", include_top=False, input_shape=(*ODD, 3)
        )
    x = images((*ODD, 3))
    with torch.no_grad():
        expected = ref.features(torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))).numpy()
    assert relative_error(run(features, x), expected.transpose(0, 2, 3, 1)) <= TOL


def _timm_twin(tmp_path, timm_name: str, arch: str, preprocessing: str):
    """(timm's random model with BatchNorm moved, anyshape's free-size `arch` built from its state
    dict saved as .safetensors, the file's path)."""
    import timm
    from safetensors.torch import save_file

    torch.manual_seed(0)
    ref = randomise_torch_batchnorm(timm.create_model(timm_name)).eval()
    path = tmp_path / f"{timm_name}.safetensors"
    save_file({k: v.contiguous() for k, v in ref.state_dict().items()}, path)
    ours = anyshape.create_model(
        arch, weights=str(path), preprocessing=preprocessing, input_shape=(None, None, 3), classifier_activation=None
    )
    return ref, ours, path


def _timm_in_chans(ref, make, timm_name: str, channels: int):
    """timm's model `make(in_chans=channels)` holding `ref`'s weights, its first conv (the pretrained
    cfg's `first_conv`) adapted by adapt_input_conv, as timm's pretrained loader does
    (timm/models/_builder.py load_pretrained; timm/models/_manipulate.py adapt_input_conv: the sum
    for 1 channel, the RGB kernels tiled and scaled by 3 / C for C > 3)."""
    from timm.models import get_pretrained_cfg

    state = ref.state_dict()
    key = f"{get_pretrained_cfg(timm_name).first_conv}.weight"
    state[key] = adapt_input_conv(channels, state[key])
    model = make(in_chans=channels)
    model.load_state_dict(state)
    return model.eval()


def test_timms_inception_resnet_v2_from_safetensors_at_an_odd_size(tmp_path):

    ref, ours, path = _timm_twin(tmp_path, "inception_resnet_v2", "inception_resnet_v2", "tf")
    assert model_config(ours)[1].bn_scale is True and model_config(ours)[1].count_include_pad is False
    _assert_twin(ours, ref, images((75, 89, 3)))  # odd, non-square, the network's minimum height
    ws = resolve("timm/inception_resnet_v2", arch="inception_resnet_v2")
    assert ws.name == "inception_resnet_v2.tf_in1k" and ws.build_overrides == {"bn_scale": True}
    assert ws.url == "https://huggingface.co/timm/inception_resnet_v2.tf_in1k/resolve/main/model.safetensors"
    assert (ws.mode, ws.crop_pct, ws.interpolation, ws.input_size) == ("tf", 0.8975, "bicubic", (299, 299))


def _legacy_xception_block3(ref, x):
    """timm legacy_xception's block3 output (Keras' block4_add) for NHWC images `x`, as NHWC."""
    with torch.no_grad():
        t = torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))
        for name in ("conv1", "bn1", "act1", "conv2", "bn2", "act2", "block1", "block2", "block3"):
            t = getattr(ref, name)(t)
    return t.numpy().transpose(0, 2, 3, 1)


def test_timms_legacy_xception_at_an_odd_size_where_its_pools_see_even_sizes(tmp_path):
    """timm's legacy_xception (symmetric reduction pools, BatchNorm eps 1e-5): at 35 x 39 the pools
    of blocks 3, 4 and 13 see even heights, where Keras' "same" pads (0, 1) and timm (1, 1). The
    overrides make the two equal there; with Keras' pools (padding="tf", a value given wins) block4's
    output is not (compared there: a random network's logits barely depend on its input)."""
    import keras

    ref, ours, path = _timm_twin(tmp_path, "legacy_xception", "xception", "tf")
    assert (model_config(ours)[1].padding, model_config(ours)[1].bn_epsilon) == ("symmetric", 1e-5)
    x = images((35, 39, 3))
    _assert_twin(ours, ref, x)
    expected = _legacy_xception_block3(ref, x)
    assert relative_error(run(keras.Model(ours.input, ours.get_layer("block4_add").output), x), expected) <= TOL
    del ours
    keras_pools = anyshape.create_model(
        "xception", weights=str(path), preprocessing="tf", include_top=False, input_shape=(35, 39, 3), padding="tf"
    )
    got = run(keras.Model(keras_pools.input, keras_pools.get_layer("block4_add").output), x)
    assert relative_error(got, expected) > 10 * TOL
    ws = resolve("timm/legacy_xception", arch="xception")
    assert ws.name == "xception.tf_in1k" and ws.build_overrides == {"padding": "symmetric", "bn_epsilon": 1e-5}
    assert ws.url.endswith("/v0.1-cadene/xception-43020ad28.pth")
    assert reference_model(get_arch("xception"), ws) == ("timm", "legacy_xception")
    assert (ws.mode, ws.crop_pct, ws.interpolation, ws.input_size) == ("tf", 0.8975, "bicubic", (299, 299))


def test_timms_tf_efficientnet_b0_keeps_taking_pixels_at_odd_and_even_sizes(tmp_path):
    """timm's TF port pads as TF does ("same", as Keras); the network keeps its in-graph
    normalisation, which takes the mean and std the weights expect: 0..255 pixels in."""

    ref, ours, path = _timm_twin(tmp_path, "tf_efficientnet_b0", "efficientnet_b0", "torch")
    ws = ours.anyshape_weights
    assert ws.data_config.mode == "raw" and (ws.mean, ws.std) == ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
    mean, std = np.asarray(ws.mean, "float32"), np.asarray(ws.std, "float32")
    for hw in (ODD, (64, 72)):
        pixels = images((*hw, 3), low=0.0, high=255.0)
        expected = _torch(ref, (pixels / 255.0 - mean) / std)
        assert relative_error(run(ours, pixels), expected) <= TOL
    # `convert FILE --arch`: the report compares with timm's model, which takes the pixels normalised
    result = convert(
        str(path),
        tmp_path / "b0.weights.h5",
        arch="efficientnet_b0",
        preprocessing="torch",
        input_shape=(*ODD, 3),
        parity_images=1,
    )
    assert result.parity is not None and result.parity.ok, result
    assert (result.parity.reference, result.parity.input_hw) == ("timm tf_efficientnet_b0", ODD)
    assert result.weight_set.mode == "raw" and result.weight_set.mean == ws.mean


def test_timms_tf_efficientnetv2_b0_on_imagenet_and_on_half_scaled_weights(tmp_path):
    """timm's TF port of EfficientNetV2-B0 (TF "same" padding, BatchNorm eps 1e-3, as Keras') from a
    .safetensors, 0..255 pixels in: with "tf" (mean = std = 0.5, as timm's S, M, L and B3-21k
    configs) the Normalization takes 0.5 and 0.25, at an odd size (Keras' 1 / 128 would be off),
    and one channel gets Rescaling(1 / 127.5, offset -1) (`rescaling_divisor`, S, M and L's
    scaling), as 4 channels do, and each equals timm's model created with that in_chans (its stem
    adapted by adapt_input_conv, which another rule's kernel would not); with "torch" Keras' own Normalization (ImageNet's)
    at an even size. `convert` reports parity against timm's model on the pixels it normalises."""
    import timm

    ref, ours, path = _timm_twin(tmp_path, "tf_efficientnetv2_b0", "efficientnet_v2_b0", "tf")
    config = model_config(ours)[1]
    assert (config.normalization_mean, config.normalization_variance) == ((0.5,) * 3, (0.25,) * 3)
    assert config.rescaling_divisor == 127.5 and ours.anyshape_weights.mode == "raw"
    pixels = images((*ODD, 3), low=0.0, high=255.0)
    expected = _torch(ref, pixels / 127.5 - 1.0)
    assert relative_error(run(ours, pixels), expected) <= TOL
    assert relative_error(run(ours, pixels * (127.5 / 128.0)), expected) > 5 * TOL  # what 1 / 128 computes
    del ours
    for channels in (1, 4):  # timm's model made for that in_chans, its stem adapted by adapt_input_conv
        other = anyshape.create_model(
            "efficientnet_v2_b0",
            weights=str(path),
            preprocessing="tf",
            input_shape=(*ODD, channels),
            classifier_activation=None,
        )
        assert other.get_layer("rescaling").scale == 1 / 127.5 and "normalization" not in [x.name for x in other.layers]
        twin = _timm_in_chans(
            ref, lambda **kw: timm.create_model("tf_efficientnetv2_b0", **kw), "tf_efficientnetv2_b0", channels
        )
        pixels = images((*ODD, channels), low=0.0, high=255.0)
        expected = _torch(twin, pixels / 127.5 - 1.0)
        got = run(other, pixels)
        assert relative_error(got, expected) <= TOL
        with torch.no_grad():  # another rule's kernel (the mean; tiled without 3 / C): off by more than 1e-3
            twin.conv_stem.weight.mul_(1 / 3 if channels == 1 else 4 / 3)
        assert relative_error(got, _torch(twin, pixels / 127.5 - 1.0)) > 10 * TOL
        del other
    imagenet = anyshape.create_model(
        "efficientnet_v2_b0",
        weights=str(path),
        preprocessing="torch",
        input_shape=(64, 72, 3),
        classifier_activation=None,
    )
    ws = imagenet.anyshape_weights
    assert ws.mode == "raw" and (ws.mean, ws.std) == ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)) and not ws.overrides
    pixels = images((64, 72, 3), low=0.0, high=255.0)
    mean, std = np.asarray(ws.mean, "float32"), np.asarray(ws.std, "float32")
    assert relative_error(run(imagenet, pixels), _torch(ref, (pixels / 255.0 - mean) / std)) <= TOL
    del imagenet
    result = convert(
        str(path), tmp_path / "v2.weights.h5", arch="efficientnet_v2_b0", preprocessing="tf", input_shape=(*ODD, 3)
    )
    assert result.parity is not None and result.parity.ok, result
    assert result.parity.reference == "timm tf_efficientnetv2_b0"
    assert dict(result.weight_set.overrides)["rescaling_divisor"] == 127.5


def test_timms_tf_efficientnetv2_sets_and_the_layouts_of_every_member():
    """timm's tf_efficientnetv2 sets (timm/models/efficientnet.py default_cfgs): [-1, 1] for S, M, L
    and B3's 21k set, built with rescaling_divisor=127.5; ImageNet's mean/std, Keras' own graph, for
    B0-B2 and B3's in1k; timm's test size (Keras' default) and crop; `timm/tf_efficientnetv2_<m>`
    names timm's default tag; each set's crop_pct and crop_mode are its pretrained cfg's. Each member's state dict (torch's meta device) holds exactly the tensors
    the loader reads, as many numbers as the network has parameters."""
    import timm
    from timm.models import get_pretrained_cfg

    sets = {
        ws.name: ws for ws in weight_sets() if ws.source == "timm" and (ws.arch or "").startswith("efficientnet_v2")
    }
    assert len(sets) == 15  # 11 fine-tuned on ImageNet-1k, 4 with the 21k head (B3, S, M, L)
    for ws in sets.values():
        member = ws.arch.rsplit("_", 1)[1]
        timm_name = f"tf_efficientnetv2_{member}.{ws.name.split('.', 1)[1][3:]}"
        assert ws.url == HF_URL.format(timm_name) and ws.data_config.mode == "raw"
        cfg = get_pretrained_cfg(timm_name)  # timm's eval crop, "squash" for M, L and B3's 21k set
        assert (ws.crop_pct, ws.data_config.crop_mode) == (cfg.crop_pct, cfg.crop_mode), ws.name
        assert ws.input_size == (get_arch(ws.arch).default_size,) * 2 and ws.interpolation == "bicubic"
        half = member in ("s", "m", "l") or "21k" in ws.name
        assert (ws.mean == (0.5,) * 3) is half and (ws.build_overrides.get("rescaling_divisor") == 127.5) is half
        assert reference_model(get_arch(ws.arch), ws) == ("timm", f"tf_efficientnetv2_{member}")
    b3 = sets["efficientnet_v2_b3.tf_in21k_ft_in1k"].build_overrides  # its Normalization: 0.5, 0.25
    assert (b3["normalization_mean"], b3["normalization_variance"]) == ((0.5,) * 3, (0.25,) * 3)
    assert (sets["efficientnet_v2_s.tf_in1k"].crop_pct, sets["efficientnet_v2_b1.tf_in1k"].crop_pct) == (1.0, 0.882)
    assert resolve("timm/tf_efficientnetv2_s").name == "efficientnet_v2_s.tf_in21k_ft_in1k"
    assert resolve("timm/tf_efficientnetv2_b3").name == "efficientnet_v2_b3.tf_in21k_ft_in1k"
    assert resolve("timm/tf_efficientnetv2_l.in1k").name == "efficientnet_v2_l.tf_in1k"
    assert resolve("timm/tf_efficientnetv2_m.in21k").num_classes == 21843
    for member in ("b0", "b1", "b2", "b3", "s", "m", "l"):
        arch = get_arch(f"efficientnet_v2_{member}")
        with torch.device("meta"):
            ref = timm.create_model(f"tf_efficientnetv2_{member}")
        state = {k: v for k, v in ref.state_dict().items() if not k.endswith("num_batches_tracked")}
        keys = [k for unit in twin_layout(arch, arch.checked_config()) for k in unit.keys()]
        assert sorted(keys) == sorted(state) and len(keys) == len(set(keys)), member
        report = anyshape.explain((arch.default_size,) * 2 + (3,), arch=arch.name, include_top=True)
        assert report.params == sum(v.numel() for v in state.values()), member


class _ZeroPaddedMaxPool(torch.nn.Module):
    """timm's MaxPool2dSame over a zero-padded map (Keras' NASNet reduction pools) instead of -inf."""

    def __init__(self, pool):
        super().__init__()
        self.pool = pool

    def forward(self, x):
        from timm.layers.padding import pad_same

        return torch.nn.functional.max_pool2d(pad_same(x, self.pool.kernel_size, self.pool.stride), 3, 2)


# timm's NASNetALarge on a small configuration anyshape's NASNetLarge also builds (timm's
# num_features and stem_size are penultimate_filters and stem_block_filters)
_NASNET_SMALL = {"num_classes": 10, "stem_size": 8, "num_features": 192}
_NASNET_SMALL_OURS = {"penultimate_filters": 192, "stem_block_filters": 8, "classes": 10}


@pytest.fixture(scope="module")
def nasnet(tmp_path_factory):
    """(timm's small NASNetALarge, random, BatchNorm moved; its state dict saved as .safetensors)."""
    from safetensors.torch import save_file
    from timm.models.nasnet import NASNetALarge

    torch.manual_seed(0)
    ref = randomise_torch_batchnorm(NASNetALarge(**_NASNET_SMALL)).eval()
    path = tmp_path_factory.mktemp("nasnet") / "nasnet.safetensors"
    save_file({k: v.contiguous() for k, v in ref.state_dict().items()}, path)
    return ref, path


def test_timms_nasnetalarge_on_a_small_configuration_at_an_odd_size(nasnet, tmp_path):
    """timm's nasnetalarge (Cadene's port of TF-slim's NASNet-A Large) on a small configuration both
    sides build (timm's num_features and stem_size are penultimate_filters and stem_block_filters),
    from a .safetensors, at 65 x 97, where the stem cells' stride-2 max pools see even sizes: equal
    with the set's max_pool_padding="same" (TF's SAME pool), where Keras pools a zero-padded map
    (timm's model with such pools is another function). The full-size state dict (torch's meta
    device) holds exactly the tensors the loader reads, as many numbers as NASNetLarge has
    parameters; the registered set is timm's default_cfgs'."""
    import timm
    from timm.layers.pool2d_same import MaxPool2dSame

    ref, path = nasnet
    ours = anyshape.create_model(
        "nasnet_large",
        weights=str(path),
        preprocessing="tf",
        **_NASNET_SMALL_OURS,
        input_shape=(None, None, 3),
        classifier_activation=None,
    )
    assert model_config(ours)[1].max_pool_padding == "same"
    x = images((*ODD, 3))
    _assert_twin(ours, ref, x)
    zero_padded = copy.deepcopy(ref)
    for name, module in list(zero_padded.named_modules()):
        if isinstance(module, MaxPool2dSame):
            parent, _, attr = name.rpartition(".")
            setattr(zero_padded.get_submodule(parent), attr, _ZeroPaddedMaxPool(module))
    assert relative_error(run(ours, x), _torch(zero_padded, x)) > 10 * TOL
    del ours
    # convert: the report against timm's NASNetALarge of the same widths, on [-1, 1] input
    result = convert(
        str(path),
        tmp_path / "n.weights.h5",
        arch="nasnet_large",
        preprocessing="tf",
        input_shape=(*ODD, 3),
        parity_images=1,
        penultimate_filters=192,
        stem_block_filters=8,
    )
    assert result.parity is not None and result.parity.ok and result.parity.reference == "timm nasnetalarge", result
    arch = get_arch("nasnet_large")
    with torch.device("meta"):
        full = timm.create_model("nasnetalarge")
    state = {k: v for k, v in full.state_dict().items() if not k.endswith("num_batches_tracked")}
    keys = [k for unit in twin_layout(arch, arch.checked_config()) for k in unit.keys()]
    assert sorted(keys) == sorted(state) and len(keys) == len(set(keys))
    assert anyshape.explain((331, 331, 3), arch="nasnet_large", include_top=True).params == sum(
        v.numel() for v in state.values()
    )
    ws = resolve("timm/nasnetalarge", arch="nasnet_large")
    assert ws.name == "nasnet_large.tf_in1k" and ws.build_overrides == {"max_pool_padding": "same"}
    assert ws.url == HF_URL.format("nasnetalarge.tf_in1k") and reference_model(arch, ws) == ("timm", "nasnetalarge")
    assert (ws.mode, ws.crop_pct, ws.interpolation, ws.input_size) == ("tf", 0.911, "bicubic", (331, 331))
    with pytest.raises(WeightFileError, match="no PyTorch twin"):  # timm has no NASNet-A Mobile
        twin_layout(get_arch("nasnet_mobile"), get_arch("nasnet_mobile").checked_config())


@pytest.mark.parametrize("channels", [1, 4])
def test_timms_nasnetalarge_on_one_and_four_channels_as_timm_adapts_them(nasnet, channels):
    """The small NASNetALarge built for 1 and 4 channels from the 3-channel file equals timm's model
    created with that in_chans, its first conv adapted by adapt_input_conv (anyshape's default rules
    "sum" and "repeat"), at an odd size on [-1, 1] input. A random NASNet's logits barely depend on
    the input (a kernel scaled by 4 / 3 moves them by less than 1e-4), so the stem's output, where
    the adapted kernel acts, is compared too, and the wrong scale is seen there."""
    import keras
    from timm.models.nasnet import NASNetALarge

    ref, path = nasnet
    ours = anyshape.create_model(
        "nasnet_large",
        weights=str(path),
        preprocessing="tf",
        **_NASNET_SMALL_OURS,
        input_shape=(*ODD, channels),
        classifier_activation=None,
    )
    twin = _timm_in_chans(ref, lambda **kw: NASNetALarge(**_NASNET_SMALL, **kw), "nasnetalarge", channels)
    x = images((*ODD, channels))
    _assert_twin(ours, twin, x)
    stem = run(keras.Model(ours.input, ours.get_layer("stem_bn1").output), x)
    with torch.no_grad():
        expected = twin.conv0(torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))).numpy()
        assert relative_error(stem, expected.transpose(0, 2, 3, 1)) <= TOL
        twin.conv0.conv.weight.mul_(4 / 3)  # another rule's kernel: the stem sees it
        wrong = twin.conv0(torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))).numpy()
    assert relative_error(stem, wrong.transpose(0, 2, 3, 1)) > 10 * TOL


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
        resolve(path, "torch", arch="resnet50_v2")  # ResNetV2: no twin
    # networks that scale in their graph: the preprocessing named is theirs (0..255 pixels in), or
    # they are built without that scaling and take the input so prepared
    assert (resolve(path, "tf", arch="mobilenet_v3_small").mode, resolve(path, "torch", arch="convnext_tiny").mode) == (
        "raw",
        "raw",
    )
    for arch, other in (("mobilenet_v3_small", "torch"), ("convnext_tiny", "tf")):
        ws = resolve(path, other, arch=arch)
        assert ws.mode == other and ws.build_overrides == {"include_preprocessing": False}
    mean_std = {
        name: pixel_scaling(get_arch(name), REGISTRY[f"{name}.{tag}"])
        for name, tag in (
            ("convnext_tiny", "fb_in1k"),
            ("mobilenet_v3_large", "tf_in1k"),
            ("efficientnet_b2", "tf_ap_in1k"),
        )
    }
    assert mean_std["convnext_tiny"] == ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
    assert mean_std["mobilenet_v3_large"] == mean_std["efficientnet_b2"] == ((0.5,) * 3, (0.5,) * 3)


def test_download_from_the_registry_and_recognised_by_name_and_hash(twins, tmp_path, monkeypatch, caplog):
    """A registered set served from file://: downloaded into the cache with its hash checked, recognised
    there by name and hash, converted by name; a wrong hash is refused."""
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
    # `convert NAME --arch`: the registered set, from the cache, into a one-channel .keras model that
    # records its network, the twin's overrides and the set's preprocessing (no parity: the twin is RGB)
    from anyshape.model_info import read_keras_info

    gray = tmp_path / "gray.keras"
    result = convert(
        ws.name, gray, arch="mobilenet_v2", input_shape=(None, None, 1), cache_dir=str(cache), progress=False
    )
    assert result.parity is None and "1 input channels" in result.note
    info = read_keras_info(gray)
    assert (info.architecture, info.config.padding, info.config.bn_epsilon, info.data_config.mode) == (
        "mobilenet_v2",
        "symmetric",
        1e-5,
        "torch",
    )
    monkeypatch.setitem(REGISTRY, ws.name, replace(served, file_hash="00000000"))
    with pytest.raises(anyshape.weights.WeightDownloadError):
        anyshape.create_model(
            "mobilenet_v2", weights=ws.name, input_shape=(32, 32, 3), cache_dir=str(tmp_path / "c2"), progress=False
        )


def test_convert_arch_a_torchvision_state_dict_with_its_parity_report(twins, tmp_path, capsys):
    """`convert FILE.pth --arch mobilenet_v2`: refused without --preprocessing (a state dict cannot
    say) and with another --source, in the CLI's words; then written with the parity report against
    torchvision's model, and the file records the twin's overrides, so `weights=OUT` builds the twin
    at another size."""
    ref, path = twins("mobilenet_v2")
    out = tmp_path / "mobilenet_v2.weights.h5"
    argv = ["convert", path, "-o", str(out), "--arch", "mobilenet_v2", "--input-shape", "65,97,3"]
    assert main(argv) == 2
    assert "--preprocessing torch" in capsys.readouterr().err
    assert main([*argv, "--preprocessing", "torch", "--source", "timm"]) == 2
    err = capsys.readouterr().err
    assert "--source timm" in err and "torchvision's mobilenet_v2 layout" in err, err
    assert not out.exists()
    assert main([*argv, "--preprocessing", "torch"]) == 0
    text = capsys.readouterr().out
    assert "parity vs torchvision.models.mobilenet_v2 (2 random images at 65x97, eval mode, same state dict)" in text
    assert "result: match" in text and "built with padding='symmetric', bn_epsilon=1e-05" in text, text
    ours = anyshape.create_model("mobilenet_v2", weights=str(out), input_shape=(64, 72, 3), classifier_activation=None)
    assert (model_config(ours)[1].padding, ours.anyshape_weights.mode) == ("symmetric", "torch")
    _assert_twin(ours, ref, images((64, 72, 3), n=1))  # even: where symmetric padding matters


def test_twins_reference_models_and_where_a_twin_differs():
    assert reference_model(get_arch("resnet50")) == ("torchvision", "resnet50")
    assert reference_model(get_arch("inception_resnet_v2"), REGISTRY["inception_resnet_v2.tf_ens_adv_in1k"]) == (
        "timm",
        "inception_resnet_v2",
    )
    assert reference_model(get_arch("efficientnet_b3"), REGISTRY["efficientnet_b3.tf_ap_in1k"]) == (
        "timm",
        "tf_efficientnet_b3",
    )
    assert reference_model(get_arch("efficientnet_b3")) == ("timm", "tf_efficientnet_b3")  # a file that does not say
    vgg = get_arch("vgg16")
    assert twin_difference(vgg, (224, 224), True) is None and twin_difference(vgg, (256, 320), False) is None
    assert "adaptive average pool" in twin_difference(vgg, (256, 320), True)
    assert twin_difference(get_arch("resnet50"), (65, 97), True) is None


def test_explain_with_a_twins_weights_says_where_it_differs_and_builds_as_they_need(capsys):
    """`anyshape explain --weights NAME` (no model built, no weights read): the twin's build
    overrides in the report as create_model applies them (a flag given wins), and a note where the
    network is not the twin's function; `twin_note` (weights layer) gives the same note."""
    base = ["explain", "--arch", "vgg16", "--include-top", "--weights", "vgg16.tv_in1k"]
    assert main([*base, "--input-shape", "256,320,3"]) == 0
    assert "note: with weights vgg16.tv_in1k: VGG16's top differs" in capsys.readouterr().out
    assert main([*base, "--input-shape", "224,224,3"]) == 0 and "note:" not in capsys.readouterr().out
    assert main([*base[:-2], "--input-shape", "256,320,3", "--weights", "vgg16.keras_in1k"]) == 0
    assert "note:" not in capsys.readouterr().out  # Keras' own weights: no twin
    assert "adaptive average pool" in twin_note(
        "vgg19.tv_in1k", (3, 225, 224), arch="vgg19", data_format="channels_first"
    )
    assert "adaptive average pool" in twin_note("vgg16.tv_in1k", None, arch="vgg16")  # a free size
    assert twin_note("vgg16.tv_in1k", (3, 224, 224), arch="vgg16", data_format="channels_first") is None
    assert twin_note("vgg16.tv_in1k", (256, 320, 3), arch="vgg16", include_top=False) is None

    resnet = ["explain", "--arch", "resnet50", "--input-shape", "65,97,3", "--weights", "resnet50.tv2_in1k"]
    twin = anyshape.explain(
        (65, 97, 3), arch="resnet50", include_top=False, **REGISTRY["resnet50.tv2_in1k"].build_overrides
    )
    assert twin.params != anyshape.explain((65, 97, 3), arch="resnet50", include_top=False).params
    assert main(resnet) == 0
    text = capsys.readouterr().out
    assert f"total: {twin.params:,} parameters" in text and "stride_in_3x3=True, conv_bias=False" in text, text
    assert main([*resnet, "--option", "conv_bias=true"]) == 0  # a value given wins
    text = capsys.readouterr().out
    assert "stride_in_3x3=True" in text and "conv_bias" not in text, text  # Keras' default, not shown
    assert main(["explain", "--arch", "resnet50", "--weights", "vgg16.tv_in1k"]) == 2  # another network's set
    assert "not ResNet50's" in capsys.readouterr().err


def test_timms_efficientnet_sets_follow_timms_configs():
    """timm's tf_efficientnet_b<N> ports (timm/models/efficientnet.py default_cfgs): the tags each
    member has, hub addresses, timm's default tag (the first listed, ns_jft_in1k), and data configs:
    Keras' input size, crop growing with the size, bicubic, ap_in1k's [-1, 1] mean and std."""
    sets = [ws for ws in weight_sets() if ws.source == "timm" and (ws.arch or "").startswith("efficientnet_b")]
    tags = {f"efficientnet_b{n}": set() for n in range(8)}
    for ws in sets:
        tags[ws.arch].add(ws.name.split(".", 1)[1])
        timm_name = f"tf_{ws.arch}.{ws.name.split('.', 1)[1][3:]}"
        assert ws.url == HF_URL.format(timm_name) and ws.file_name == f"timm_{timm_name}.safetensors"
        assert ws.file_hash is None and ws.format == "torch" and ws.overrides == ()  # the hub publishes no hash
        config = ws.data_config
        assert config.mode == "raw" and config.input_size == (get_arch(ws.arch).default_size,) * 2
        assert config.interpolation == "bicubic" and 0.875 <= config.crop_pct < 0.95
        assert (ws.mean, ws.std) == (
            ((0.5,) * 3,) * 2 if "_ap_" in ws.name else ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
        )
    every = {"tf_ns_jft_in1k", "tf_ap_in1k", "tf_aa_in1k"}
    assert all(tags[f"efficientnet_b{n}"] == every | {"tf_in1k"} for n in range(5))
    assert tags["efficientnet_b5"] == every | {"tf_in1k", "tf_ra_in1k"}
    assert tags["efficientnet_b6"] == every and tags["efficientnet_b7"] == every | {"tf_ra_in1k"}
    crops = [REGISTRY[f"efficientnet_b{n}.tf_aa_in1k"].crop_pct for n in range(8)]
    assert crops == sorted(crops) and len(set(crops)) == 8
    for n in range(8):
        assert (
            resolve(f"timm/tf_efficientnet_b{n}", arch=f"efficientnet_b{n}").name == f"efficientnet_b{n}.tf_ns_jft_in1k"
        )
        assert resolve(f"timm/tf_efficientnet_b{n}.ap_in1k").name == f"efficientnet_b{n}.tf_ap_in1k"


def test_timms_efficientnet_b1_to_b7_have_the_layout_the_loader_reads():
    """The state dicts of timm's tf_efficientnet_b1 ... b7 (built on torch's meta device: shapes, no
    arrays) hold exactly the tensors the loader reads for anyshape's network of the same name (B0's
    are converted above), and as many numbers as the network has parameters beyond its
    Normalization's (the same count for every member)."""
    import timm

    extra = set()
    for n in range(1, 8):
        arch = get_arch(f"efficientnet_b{n}")
        with torch.device("meta"):
            ref = timm.create_model(f"tf_efficientnet_b{n}")
        state = {k: v for k, v in ref.state_dict().items() if not k.endswith("num_batches_tracked")}
        keys = [k for unit in twin_layout(arch, arch.checked_config()) for k in unit.keys()]
        assert sorted(keys) == sorted(state) and len(keys) == len(set(keys))
        report = anyshape.explain((arch.default_size, arch.default_size, 3), arch=arch.name, include_top=True)
        extra.add(report.params - sum(v.numel() for v in state.values()))
    assert len(extra) == 1 and 0 <= extra.pop() <= 7  # the Normalization's mean, variance and count


def test_timms_tf_mobilenetv3_small_at_an_odd_size_with_its_top(tmp_path):
    """timm's TF port of MobileNetV3-Small (TF "same" padding, hard swish, SE with a hard sigmoid gate,
    the 1x1 conv head with a bias and a Linear classifier, which is Keras' 1x1 logits conv) from a
    .safetensors: 0..255 pixels in, Keras' in-graph Rescaling giving the [-1, 1] timm's weights expect."""

    ref, ours, path = _timm_twin(tmp_path, "tf_mobilenetv3_small_100", "mobilenet_v3_small", "tf")
    assert ours.anyshape_weights.data_config.mode == "raw"
    pixels = images((*ODD, 3), low=0.0, high=255.0)
    assert relative_error(run(ours, pixels), _torch(ref, pixels / 127.5 - 1.0)) <= TOL


def test_timms_mobilenetv3_sets_and_the_layouts_of_the_other_five():
    """The six tf_mobilenetv3 sets (timm/models/mobilenetv3.py default_cfgs: 224, crop 0.875,
    bilinear, [-1, 1]) with the width and minimalistic overrides they need; the state dicts of the
    five other than small_100 (checked above), built on torch's meta device, hold exactly the tensors
    the loader reads for the network their set builds, and as many numbers as it has parameters."""
    import timm

    for model_type in ("large", "small"):
        arch = get_arch(f"mobilenet_v3_{model_type}")
        assert resolve(f"timm/tf_mobilenetv3_{model_type}_100", arch=arch.name).name == f"{arch.name}.tf_in1k"
        for tag in ("tf_in1k", "tf_075_in1k", "tf_minimal_in1k"):
            ws = REGISTRY[f"{arch.name}.{tag}"]
            config = ws.data_config
            assert (config.mode, config.input_size, config.crop_pct, config.interpolation) == (
                "raw",
                (224, 224),
                0.875,
                "bilinear",
            )
            framework, name = reference_model(arch, ws)
            assert ws.url == HF_URL.format(f"{name}.in1k") and framework == "timm"
            if (model_type, tag) == ("small", "tf_in1k"):
                continue
            with torch.device("meta"):
                ref = timm.create_model(name)
            state = {k: v for k, v in ref.state_dict().items() if not k.endswith("num_batches_tracked")}
            built = arch.checked_config(**ws.build_overrides)
            keys = [k for unit in twin_layout(arch, built) for k in unit.keys()]
            assert sorted(keys) == sorted(state), name
            report = anyshape.explain((224, 224, 3), arch=arch.name, include_top=True, **ws.build_overrides)
            assert report.params == sum(v.numel() for v in state.values()), name
    assert REGISTRY["mobilenet_v3_large.tf_075_in1k"].build_overrides == {"alpha": 0.75}
    assert REGISTRY["mobilenet_v3_small.tf_minimal_in1k"].build_overrides == {"minimalistic": True}


def test_timms_convnext_at_an_odd_size_with_and_without_its_top(tmp_path):
    """timm's ConvNeXt (conv_mlp=False, the official files' layout) on a small configuration both
    sides build (depths and widths are Config options), layer scales and LayerNorms moved off their
    initial values: 0..255 pixels in, Keras' in-graph ImageNet normalisation being timm's mean/std;
    without the top the features are timm's pooled features normalised by head.norm."""
    from safetensors.torch import save_file
    from timm.models.convnext import ConvNeXt

    torch.manual_seed(0)
    depths, dims = (1, 1, 2, 1), (16, 24, 32, 40)
    ref = ConvNeXt(depths=depths, dims=dims, num_classes=10).eval()
    with torch.no_grad():
        for name, p in ref.named_parameters():
            if (
                name.endswith("gamma")
                or ".norm." in name
                or "downsample.0" in name
                or name.startswith(("stem.1", "head.norm"))
            ):
                p.copy_(torch.empty_like(p).uniform_(0.5, 1.5) if "bias" not in name else 0.1 * torch.randn_like(p))
    path = tmp_path / "convnext.safetensors"
    save_file({k: v.contiguous() for k, v in ref.state_dict().items()}, path)
    options = dict(weights=str(path), preprocessing="torch", depths=depths, projection_dims=dims)
    ours = anyshape.create_model(
        "convnext_tiny", classes=10, input_shape=(None, None, 3), classifier_activation=None, **options
    )
    assert ours.anyshape_weights.data_config.mode == "raw"
    pixels = images((*ODD, 3), low=0.0, high=255.0)
    mean, std = np.asarray((0.485, 0.456, 0.406), "float32"), np.asarray((0.229, 0.224, 0.225), "float32")
    normalised = (pixels / 255.0 - mean) / std
    assert relative_error(run(ours, pixels), _torch(ref, normalised)) <= TOL
    backbone = anyshape.create_model(
        "convnext_tiny", include_top=False, pooling="avg", input_shape=(*ODD, 3), **options
    )
    with torch.no_grad():
        x = torch.from_numpy(np.ascontiguousarray(normalised.transpose(0, 3, 1, 2)))
        features = ref.forward_head(ref.forward_features(x), pre_logits=True).numpy()
    assert relative_error(run(backbone, pixels), features) <= TOL
    # convert: the report against timm's ConvNeXt of the same depths and widths, on pixels it normalises
    result = convert(
        str(path),
        tmp_path / "c.weights.h5",
        arch="convnext_tiny",
        input_shape=(*ODD, 3),
        preprocessing="torch",
        depths=depths,
        projection_dims=dims,
    )
    assert result.parity is not None and result.parity.ok and result.parity.reference == "timm convnext_tiny", result


def test_timms_convnext_sets_and_their_layouts():
    """The official ConvNeXt files as timm publishes them (timm/models/convnext.py default_cfgs
    `convnext_<size>.fb_in1k`, `.fb_in22k_ft_in1k`, `.fb_in22k_ft_in1k_384` and the 21,841-class
    `.fb_in22k`) and timm's own tiny and small `.in12k_ft_in1k`, `.in12k_ft_in1k_384` and the
    11,821-class `.in12k` (each set's data config and class count: the cfg test below);
    `timm/convnext_<size>` names timm's default tag (timm.models.get_pretrained_cfg). Each size's
    state dict, built on torch's meta device, holds exactly the tensors the loader reads for
    anyshape's network of that name, and as many numbers as it has parameters."""
    import timm
    from timm.models import get_pretrained_cfg

    sizes = ("tiny", "small", "base", "large", "xlarge")
    sets = [ws for ws in weight_sets() if ws.source == "timm" and (ws.arch or "").startswith("convnext_")]
    fb = ("fb_in22k_ft_in1k", "fb_in22k_ft_in1k_384", "fb_in22k")
    assert {ws.name for ws in sets} == {f"convnext_{s}.{tag}" for s in sizes for tag in fb} | {
        f"convnext_{s}.fb_in1k" for s in sizes[:4]
    } | {f"convnext_{s}.{tag}" for s in sizes[:2] for tag in ("in12k_ft_in1k", "in12k_ft_in1k_384", "in12k")}
    for ws in sets:
        assert ws.data_config.mode == "raw" and ws.data_config.input_size == (
            (384,) * 2 if "384" in ws.name else (224,) * 2
        )
        assert ws.url == HF_URL.format(ws.name) and reference_model(get_arch(ws.arch), ws) == ("timm", ws.arch)
    for size in sizes:  # a timm-style name without a tag: timm's default for that model
        default = get_pretrained_cfg(f"convnext_{size}")
        ws = resolve(f"timm/convnext_{size}")
        assert ws.name == f"convnext_{size}.{default.tag}" and ws.crop_pct == default.crop_pct
        assert resolve(f"timm:convnext_{size}.{default.tag}").name == ws.name
    for size in sizes:
        arch = get_arch(f"convnext_{size}")
        with torch.device("meta"):
            ref = timm.create_model(arch.name)
        state = ref.state_dict()
        keys = [k for unit in twin_layout(arch, arch.checked_config()) for k in unit.keys()]
        assert sorted(keys) == sorted(state), arch.name
        report = anyshape.explain((224, 224, 3), arch=arch.name, include_top=True)
        assert report.params == sum(v.numel() for v in state.values()), arch.name


def _timm_name(ws) -> str | None:
    """The timm `<model>.<tag>` a set is (its `timm:` alias), or None."""
    return next((alias[5:] for alias in ws.aliases if alias.startswith("timm:")), None)


# timm tags of the registered models that are no set (torch_sets says why): a backbone without a
# classifier and licence, torchvision's DenseNet file under timm's bicubic crop, ConvNeXt-Base's CLIP
# weights (CLIP's mean/std), the DINOv3 and EUPE backbones
_NOT_REGISTERED = ("resnet50.bamboo", "densenet121.tv_in1k")
_NOT_REGISTERED_KINDS = ("clip_", "dinov3_", "eupe_")


def test_every_twin_set_with_a_timm_name_is_timms_pretrained_cfg():
    """Every family set that is a timm pretrained tag (its `timm:<model>.<tag>` alias) carries that
    tag's cfg (timm.models.get_pretrained_cfg): the file (the hub's `timm/<model>.<tag>`, or the
    cfg's url: torchvision's file for resnet<N>.tv_in1k / tv2_in1k, a GitHub release for
    legacy_xception), the class count, the licence, and timm's data config at Keras' size
    (timm/data/config.py resolve_data_config: input_size and crop_pct, or test_input_size and
    test_crop_pct where timm trained below Keras' size): size, crop, crop mode, interpolation and
    the mean/std applied before the model or in its graph. `timm/<model>` names timm's default tag.
    Every tag timm lists for those models is registered but the few _NOT_REGISTERED names."""
    import timm
    from timm.data import resolve_data_config
    from timm.models import get_pretrained_cfg

    named = {}
    for ws in weight_sets():
        timm_name = _timm_name(ws)
        if timm_name is None or ws.arch in (None, "inception_v3"):  # InceptionV3's: test_weights_registry
            continue
        named[timm_name] = ws
        cfg, arch = get_pretrained_cfg(timm_name), get_arch(ws.arch)
        if cfg.hf_hub_id is not None and ws.source == "timm":
            assert cfg.hf_hub_id == f"timm/{timm_name}" and ws.url == HF_URL.format(timm_name), timm_name
        else:
            assert ws.url == cfg.url, timm_name
        assert (ws.num_classes, ws.license) == (cfg.num_classes, cfg.license), timm_name
        data = resolve_data_config(
            {}, pretrained_cfg=cfg.to_dict(), use_test_size=cfg.input_size[-1] < arch.default_size
        )
        config = ws.data_config
        assert config.input_size == tuple(data["input_size"][1:]), timm_name
        # torchvision's tv2 crop 224 / 232 = 0.9655, timm's 0.965
        assert config.crop_pct == pytest.approx(data["crop_pct"], abs=1e-3 if ws.source == "torchvision" else 1e-9)
        assert (config.crop_mode, config.interpolation) == (data["crop_mode"], data["interpolation"]), timm_name
        if config.mode == "raw":
            mean, std = pixel_scaling(arch, ws)
        else:
            mean, std = (ws.mean, ws.std) if config.mode == "torch" else ((0.5,) * 3, (0.5,) * 3)
        assert (mean, std) == (pytest.approx(data["mean"]), pytest.approx(data["std"])), timm_name
    assert len(named) == 118
    models = {name.split(".")[0] for name in named}
    for model in models:  # timm's default tag; every tag of the model
        assert resolve(f"timm/{model}").name == named[f"{model}.{get_pretrained_cfg(model).tag}"].name, model
        listed = {
            name
            for name in timm.list_pretrained(f"{model}.*")
            if name not in _NOT_REGISTERED and not name.split(".")[1].startswith(_NOT_REGISTERED_KINDS)
        }
        assert listed == {name for name in named if name.startswith(f"{model}.")}, model
    assert resolve("torchvision/resnet50").name == "resnet50.tv2_in1k"  # torchvision's DEFAULT, not timm's
    assert resolve("timm/resnet50.tv_in1k").name == "resnet50.tv_in1k"
    # one alias, one set
    aliases = [(alias.lower(), ws.name) for ws in weight_sets() for alias in ws.aliases]
    assert len(dict(aliases)) == len(set(aliases))


def test_timm_sets_with_the_21k_and_12k_heads_build_timms_head():
    """The sets whose class count is not 1000 (ConvNeXt's fb_in22k, 21,841 classes, and in12k,
    11,821; EfficientNetV2's in21k, 21,843): timm's model with that class count (torch's meta
    device) holds exactly the tensors the loader reads for the network built with classes=<the
    set's>, its classifier has that many classes, and anyshape's network so built has as many
    parameters (`explain`, no build). A model built with Keras' default 1000 refuses the file and
    says which classes to give (anyshape.weights.family)."""
    import timm

    from anyshape.weights.torch_family import head_classes

    sets = [ws for ws in weight_sets() if ws.format == "torch" and ws.num_classes not in (None, 1000)]
    assert len(sets) == 11 and {ws.num_classes for ws in sets} == {21841, 11821, 21843}
    for ws in sets:
        arch = get_arch(ws.arch)
        _, name = reference_model(arch, ws)
        with torch.device("meta"):
            ref = timm.create_model(name, num_classes=ws.num_classes)
        state = {k: v for k, v in ref.state_dict().items() if not k.endswith("num_batches_tracked")}
        config = arch.checked_config(classes=ws.num_classes, **ws.build_overrides)
        keys = [k for unit in twin_layout(arch, config) for k in unit.keys()]
        assert sorted(keys) == sorted(state) and head_classes(state, arch, config) == ws.num_classes, ws.name
        size = ws.input_size + (3,)
        report = anyshape.explain(size, arch=arch.name, include_top=True, classes=ws.num_classes, **ws.build_overrides)
        assert report.params == sum(v.numel() for v in state.values()), ws.name


@pytest.mark.parametrize("name", ["resnet50", "densenet121"])
def test_timms_resnet_and_densenet_are_torchvisions_function(twins, name):
    """timm's resnet50 and densenet121 (the networks of the timm sets resnet<N>.<tag> and
    densenet121.ra_in1k) take torchvision's random state dict (BatchNorm moved) strictly and compute
    torchvision's function at an odd size, so these sets load through torchvision's layout and
    overrides, tested above against anyshape's network. timm's resnet101 and resnet152 (the same
    Bottleneck code, more blocks) have torchvision's keys and shapes (torch's meta device)."""
    import timm

    ref, _ = twins(name)
    ours = timm.create_model(name)
    ours.load_state_dict(ref.state_dict(), strict=True)
    x = images((*ODD, 3))
    assert relative_error(_torch(ours.eval(), x), _torch(ref, x)) <= 1e-6
    if name == "resnet50":
        for deeper in ("resnet101", "resnet152"):
            with torch.device("meta"):
                a, b = timm.create_model(deeper), getattr(torchvision.models, deeper)()
            assert {k: v.shape for k, v in a.state_dict().items()} == {k: v.shape for k, v in b.state_dict().items()}


def test_timms_mobilenetv2_100_under_its_own_names_equals_timm(tmp_path):
    """timm's mobilenetv2_100 (the set mobilenet_v2.ra_in1k) names its modules as timm's EfficientNet
    builder does (conv_stem, blocks.S.J.conv_pw ...): a random one (BatchNorm moved), saved as timm
    publishes it (.safetensors), loads into anyshape's MobileNetV2 (its keys renamed to
    torchvision's, the twin's overrides from the set) and equals timm's model at an odd and an even
    size (where symmetric padding differs from Keras' "same"); the set's hub name resolves to it."""
    import timm
    from safetensors.torch import save_file

    torch.manual_seed(0)
    ref = randomise_torch_batchnorm(timm.create_model("mobilenetv2_100")).eval()
    path = tmp_path / "mobilenetv2_100.safetensors"
    save_file({k: v.contiguous() for k, v in ref.state_dict().items()}, path)
    ws = resolve("timm/mobilenetv2_100")
    assert ws.name == "mobilenet_v2.ra_in1k" and ws.build_overrides == {"padding": "symmetric", "bn_epsilon": 1e-5}
    ours = anyshape.create_model(
        "mobilenet_v2",
        weights=str(path),
        preprocessing="torch",
        input_shape=(None, None, 3),
        classifier_activation=None,
        **ws.build_overrides,
    )
    _assert_twin(ours, ref, images((*ODD, 3)))
    _assert_twin(ours, ref, images((64, 72, 3), n=1))


def test_timms_mobilenetv1_100_equals_timm_and_converts_with_its_parity_report(tmp_path):
    """timm's mobilenetv1_100 (the set mobilenet.ra4_e3600_r224_in1k: Keras' MobileNet with torch's
    padding=1 on its stride-2 convs, BatchNorm eps 1e-5 and a Linear classifier): a random one
    (BatchNorm moved), saved as timm publishes it (.safetensors), loads into anyshape's free-size
    MobileNet under timm's own names with the twin's overrides and equals timm's model at an odd
    non-square size, at an even size and at 1 x 3 (its minimum is 1 pixel, Keras' network's 31);
    with Keras' padding (a value given wins) it does not. `convert FILE --arch mobilenet` compares
    with timm's mobilenetv1_100 on the same file."""
    ref, ours, path = _timm_twin(tmp_path, "mobilenetv1_100", "mobilenet", "tf")
    assert (model_config(ours)[1].padding, model_config(ours)[1].bn_epsilon) == ("symmetric", 1e-5)
    _assert_twin(ours, ref, images((*ODD, 3)))
    _assert_twin(ours, ref, images((64, 72, 3), n=1))
    x = images((1, 3, 3), n=1)
    assert relative_error(run(ours, x), _torch(ref, x)) <= TOL
    del ours
    keras_padding = anyshape.create_model(
        "mobilenet",
        weights=str(path),
        preprocessing="tf",
        input_shape=(*ODD, 3),
        classifier_activation=None,
        padding="keras",
    )
    x = images((*ODD, 3))
    assert relative_error(run(keras_padding, x), _torch(ref, x)) > 10 * TOL  # another function
    del keras_padding
    ws = resolve("timm/mobilenetv1_100")
    assert ws.name == "mobilenet.ra4_e3600_r224_in1k" and ws.arch == "mobilenet"
    assert ws.build_overrides == {"padding": "symmetric", "bn_epsilon": 1e-5}
    assert (ws.mode, ws.input_size, ws.crop_pct, ws.interpolation) == ("tf", (224, 224), 0.875, "bicubic")
    assert (
        reference_model(get_arch("mobilenet"), ws)
        == reference_model(get_arch("mobilenet"))
        == (
            "timm",
            "mobilenetv1_100",
        )
    )
    result = convert(
        str(path),
        tmp_path / "m.weights.h5",
        arch="mobilenet",
        preprocessing="tf",
        input_shape=(*ODD, 3),
        parity_images=1,
    )
    assert result.parity is not None and result.parity.ok, result
    assert (result.parity.reference, result.parity.input_hw) == ("timm mobilenetv1_100", ODD)


def test_timms_mobilenetv1_125_has_the_layout_the_loader_reads_and_depth_multiplier_has_no_twin():
    """timm's mobilenetv1_125 (the set mobilenet.ra4_e3600_r224_125_in1k, alpha=1.25: timm's
    round_channels gives Keras' int(filters * alpha)), built on torch's meta device, holds exactly
    the tensors the loader reads for anyshape's MobileNet built with the set's overrides, and as
    many numbers as that network has parameters (`explain`, no build); so does mobilenetv1_100.
    Keras' depth_multiplier (two filters per channel) has no timm twin: the layout refuses it."""
    import timm

    arch = get_arch("mobilenet")
    for name, alpha in (("mobilenetv1_100", 1.0), ("mobilenetv1_125", 1.25)):
        ws = resolve(f"timm/{name}")
        assert ws.build_overrides == {
            "padding": "symmetric",
            "bn_epsilon": 1e-5,
            **({"alpha": alpha} if alpha != 1 else {}),
        }
        assert reference_model(arch, ws) == reference_model(arch, None, {"alpha": alpha}) == ("timm", name)
        with torch.device("meta"):
            ref = timm.create_model(name)
        state = {k: v for k, v in ref.state_dict().items() if not k.endswith("num_batches_tracked")}
        keys = [k for unit in twin_layout(arch, arch.checked_config(**ws.build_overrides)) for k in unit.keys()]
        assert sorted(keys) == sorted(state), name
        report = anyshape.explain((224, 224, 3), arch="mobilenet", include_top=True, **ws.build_overrides)
        assert report.params == sum(v.numel() for v in state.values()), name
    assert REGISTRY["mobilenet.ra4_e3600_r224_125_in1k"].crop_pct == 0.9
    with pytest.raises(WeightFileError, match="depth_multiplier=2 and no PyTorch twin"):
        twin_layout(arch, arch.checked_config(depth_multiplier=2))
