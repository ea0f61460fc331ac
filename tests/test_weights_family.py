"""Keras' ImageNet weights for the family: the 40 constructors with Keras' defaults, any shape and
channel count on one member per family, build overrides, and the offline path.

Pretrained files cannot be downloaded here. Each file is made from keras.applications' own
`weights=None` model (BatchNorm statistics moved off their defaults), written in the layout of
Keras' published files (Keras 2 HDF5: root `layer_names`, per-layer `weight_names`) under the name
anyshape's registry gives, into a temporary Keras cache (KERAS_HOME). The registry's hash is
replaced by the made file's (a made file cannot match the published one); that a wrong hash is
refused is tested below. The reference is keras.applications itself, called with Keras' defaults
(`weights="imagenet"`), its `get_file` made to read the same cache without the published hash: so
the test also checks that Keras asks for the file name, URL and hash anyshape's registry gives.
"""

from __future__ import annotations

import dataclasses
import gc
import os
import re
from collections import defaultdict
from dataclasses import replace

import h5py
import keras
import numpy as np
import pytest
from made_files import digest, md5, write_legacy_h5
from model_helpers import (
    assert_efficientnet_layout,
    assert_keras_drop_in,
    convnext_layout,
    feature_strides,
    randomised,
    randomised_weights,
    relative_error,
    representatives,
    run,
    unknown_record_layers,
    weight_shapes,
    zero_initial_weights,
)

import anyshape
from anyshape.archs import get_arch, list_models
from anyshape.shapes import explain
from anyshape.weights import REGISTRY, WeightDownloadError, WeightFileError, resolve, weight_sets
from anyshape.weights.registry import WeightsForAnotherNetwork

TOL = 1e-4
ODD = (67, 83)  # odd, non-square; VGG's conv head needs >= 224: (229, 241)


def _set_name(arch_name: str) -> str:
    return "imagenet" if arch_name == "inception_v3" else f"{arch_name}.keras_in1k"


def _free():
    keras.backend.clear_session()
    gc.collect()


@pytest.fixture(scope="module")
def keras_home(tmp_path_factory):
    home = tmp_path_factory.mktemp("keras_home")
    (home / "models").mkdir()
    return home


@pytest.fixture
def cache(keras_home, monkeypatch):
    """KERAS_HOME is the module's temporary Keras home; Keras' get_file reads it without a hash."""
    monkeypatch.setenv("KERAS_HOME", str(keras_home))
    from keras.src.utils import file_utils

    asked = []

    def get_file(fname=None, origin=None, file_hash=None, cache_subdir="datasets", **kw):
        asked.append((fname, origin, file_hash))
        return str(keras_home / cache_subdir / fname)

    monkeypatch.setattr(file_utils, "get_file", get_file)
    return keras_home / "models", asked


_MADE: dict[str, str] = {}  # arch name -> the made file's hash
# A made file cannot match the published hash, so the registry is given the made file's, in
# sha256 (2.4 times md5's speed on CPUs with SHA instructions: these files are up to 1.4 GB, and
# the test and the loader each hash them). The loader's md5 check: the no-top file below.
MADE_HASH = "sha256"
IMAGENET_MEAN, IMAGENET_STD = np.array([0.485, 0.456, 0.406], np.float32), np.array([0.229, 0.224, 0.225], np.float32)


def make_file(arch_name: str, models_dir, ref=None) -> str:
    """The with-top file of `arch_name` from keras.applications' model (`ref`, else its
    weights=None model, built here), made once: its weights with BatchNorm moved off its defaults
    (written one array at a time; `ref` itself is left as it was), written to the cache."""
    ws = REGISTRY[_set_name(arch_name)]
    path = str(models_dir / ws.file_name)
    if arch_name in _MADE and os.path.isfile(path):
        return path
    own = ref is None
    if own:
        keras.utils.set_random_seed(0)
        ref = getattr(keras.applications, get_arch(arch_name).keras_name)(weights=None)
    rng = np.random.default_rng(0)
    fixed = {}
    if get_arch(arch_name).family == "efficientnet":  # ImageNet-like statistics in its Normalization
        fixed = {"mean": IMAGENET_MEAN, "variance": IMAGENET_STD**2}

    def value(weight, array):
        # by the layer's kind, not its name: Keras numbers a process's second Normalization layer
        # "normalization_1" (a file made with mean 0 and variance 1 made the 1-channel test's
        # border exact, and its check that the border differs failed on one CI run)
        layer, _, name = weight.path.rpartition("/")
        if fixed and re.fullmatch(r"normalization(_\d+)?", layer) and name in fixed:
            applied.add(name)
            return fixed[name]
        return randomised(weight, array, rng)

    applied: set[str] = set()
    write_legacy_h5(ref, path, value=value)
    assert applied == set(fixed), f"{arch_name}: the Normalization statistics were not written ({applied})"
    if own:
        del ref
        _free()
    _MADE[arch_name] = digest(path, MADE_HASH)
    return path


@pytest.fixture
def made(cache, monkeypatch):
    """make(arch_name) -> path: the made file, with the registry's hash set to its md5."""
    models_dir, _ = cache

    def make(arch_name: str, ref=None) -> str:
        path = make_file(arch_name, models_dir, ref)
        name = _set_name(arch_name)
        monkeypatch.setitem(
            REGISTRY, name, replace(REGISTRY[name], file_hash=_MADE[arch_name], hash_algorithm=MADE_HASH)
        )
        return path

    return make


def _input(arch, shape, seed=0):
    low, high = (0.0, 255.0) if arch.preprocessing in ("raw", "caffe") else (-1.0, 1.0)
    return np.random.default_rng(seed).uniform(low, high, (1, *shape)).astype("float32")


def _log(p):
    return np.log(np.maximum(np.asarray(p, np.float64), 1e-30))


KERAS_NAMES = sorted(get_arch(n).keras_name for n in list_models())
REPRESENTATIVES = set(representatives())


@pytest.mark.parametrize("keras_name", KERAS_NAMES)
def test_each_constructor_with_keras_defaults_equals_keras(keras_name, made, cache, monkeypatch):
    """`anyshape.applications.X()` as users call it (include_top, weights="imagenet", the default
    size) loads Keras' file from the cache and equals `keras.applications.X()` on that file.

    One Keras build: `keras.applications.X()` with Keras' defaults, its `load_weights` held back
    until the test has written the file from that very model's randomised weights.

    Equal: on one member per family (the code every member runs) and InceptionV3, the outputs on
    the same images at the default size; on the other members, every layer holds exactly the arrays
    Keras' own loader put in the layer of the same name (no layer more or less), with the same
    output shape and parameter count. Their layouts (names and shapes) equal Keras' in
    tests/test_family.py and the family files, and the forward pass of a member is its family's
    code at other widths and depths: running it at the default size (EfficientNetB7 at 600 px,
    ConvNeXtXLarge) cost about 100 s of the suite's CPU for no check those do not make.

    The layout of the two models, as the family files checked it on `weights=None` builds of every
    member other than the representative (those builds were the same two models again):
    `_assert_family_layout`."""
    arch = get_arch(keras_name)
    ws = REGISTRY[_set_name(arch.name)]
    models_dir, asked = cache
    load_weights = keras.Model.load_weights
    held = []
    monkeypatch.setattr(keras.Model, "load_weights", lambda self, filepath, *a, **kw: held.append(filepath))
    keras.utils.set_random_seed(0)
    ref = getattr(keras.applications, keras_name)()  # Keras' defaults: weights="imagenet"
    monkeypatch.setattr(keras.Model, "load_weights", load_weights)
    assert asked == [(ws.file_name, ws.url, ws.file_hash)]  # Keras' own name, URL and hash
    assert held == [str(models_dir / ws.file_name)]
    path = made(arch.name, ref)  # from ref's own initial draws, BatchNorm moved; ref is left as it was
    load_weights(ref, path)  # Keras' own legacy-HDF5 loader reads the made file (BatchNorm moved)
    with zero_initial_weights():  # every weight comes from the file: one the loader missed stays zero
        ours = getattr(anyshape.applications, keras_name)()
    assert ours.anyshape_weights.path == path
    assert (
        ours.anyshape_weights.mode == {"caffe": "caffe", "torch": "torch", "tf": "tf", "raw": "raw"}[arch.preprocessing]
    )
    _assert_family_layout(arch, ours, ref)
    if arch.name in REPRESENTATIVES or arch.name == "inception_v3":
        x = _input(arch, (arch.default_size, arch.default_size, 3))
        assert relative_error(_log(run(ours, x)), _log(run(ref, x))) < TOL
    else:
        _assert_same_arrays_and_layout(ours, ref)
    del ours, ref
    _free()
    if arch.name not in REPRESENTATIVES and arch.name != "inception_v3":
        os.remove(path)  # the big ones' files are not needed again


def _assert_family_layout(arch, ours, ref):
    """What the family files asked of each member's layout against Keras' (the representative's,
    with and without the top, on `weights=None` builds: tests/test_family.py)."""
    family = arch.family
    if arch.name != "inception_v3":  # its record names the aux head, built with aux_logits=True only
        assert unknown_record_layers(ours, arch) == []  # the layers its `Arch` record names
    if family == "convnext":
        assert convnext_layout(ours, False, True) == convnext_layout(ref, True, True)
        assert ours.count_params() == explain((224, 224, 3), arch=arch.name, include_top=True).params
        assert feature_strides(arch) == [4, 8, 16, 32]
    elif family in ("densenet", "resnet", "resnet_v2", "vgg", "efficientnet", "efficientnet_v2"):
        assert_keras_drop_in(ours, ref, dropped=("ZeroPadding2D",) if family == "efficientnet" else ())
        assert ours.name == ref.name
        assert tuple(ours.input.shape) == tuple(ref.input.shape)
        if family.startswith("efficientnet"):  # every Dropout's rate, the record's blocks (V2: its preprocessing)
            assert_efficientnet_layout(ours, ref, arch.name, preprocessing=family == "efficientnet_v2")
    elif arch.name == "nasnet_large":
        assert weight_shapes(ours) == weight_shapes(ref)
        weighted = [[layer.name for layer in model.layers if layer.weights] for model in (ours, ref)]
        assert weighted[0] == weighted[1]
        assert ours.count_params() == 88_949_818


def _by_place(model) -> dict:
    """{(layer name, i): the layer's i-th variable}. By the innermost layer's name: Keras nests
    ConvNeXt's stem and downsampling layers in Sequential blocks, anyshape does not (the layers
    inside have the same names); by position in the layer, as Keras' legacy HDF5 files store them
    (the variables' own names may differ: Keras' LayerScale calls its one "variable")."""
    variables, count = {}, defaultdict(int)
    for w in model.weights:
        layer = w.path.split("/")[-2]
        variables[(layer, count[layer])] = w
        count[layer] += 1
    return variables


def _assert_same_arrays_and_layout(ours, ref):
    """Every variable of `ours` holds exactly the array Keras' own loader put in the variable at the
    same place in `ref`'s layer of the same name, no variable more, and the two have the same output
    shape and parameter count. Compared by the backend where they are (ConvNeXtXLarge's 1.4 GB
    copied out to numpy twice was most of this test's time)."""
    got, want = _by_place(ours), _by_place(ref)
    assert sorted(got) == sorted(want)
    for place, value in want.items():
        assert tuple(got[place].shape) == tuple(value.shape), place
        assert bool(keras.ops.all(keras.ops.equal(got[place], value))), place
    assert tuple(ours.output.shape) == tuple(ref.output.shape)
    assert ours.count_params() == ref.count_params()


def _odd_shape(arch, channels):
    h, w = (229, 241) if arch.family == "vgg" else ODD
    h, w = max(h, arch.keras_min_size or 0, 75 if arch.family == "inception_v3" else 0), w
    return (h, w, channels)


def _stem_interior(arch, adapted, rgb, g):
    """The output of the layer after the first convolution (its BatchNorm) of the adapted model on
    `g` repeated to its channels and of the RGB model on `g` repeated to RGB: (relative error
    without the border rows and columns, where the RGB network's zero padding sits; with them)."""
    from anyshape.weights.family import _next_layer

    after = _next_layer(adapted, adapted.get_layer(arch.first_conv)).name
    channels = adapted.get_layer(arch.first_conv).kernel.shape[2]
    a = run(keras.Model(adapted.inputs, adapted.get_layer(after).output), np.repeat(g, channels, axis=-1))
    b = run(keras.Model(rgb.inputs, rgb.get_layer(after).output), np.repeat(g, 3, axis=-1))
    return relative_error(a[:, 1:-1, 1:-1], b[:, 1:-1, 1:-1]), relative_error(a, b)


# where the stem convolution pads after a per-channel in-graph normalisation, "sum" on one channel is
# exact away from the border only (see anyshape.weights.family)
PADDED_PER_CHANNEL_STEM = ("efficientnet", "efficientnet_v2")


def _from_file(name, **kwargs):
    """create_model with the made file ("imagenet"), which gives every weight: the random initial
    ones are zeros (no draws), and one the loader missed would stay zero and break the equality."""
    with zero_initial_weights():
        return anyshape.create_model(name, weights="imagenet", **kwargs)


@pytest.mark.parametrize("name", sorted(REPRESENTATIVES))
def test_family_file_at_an_odd_size_with_one_and_four_channels(name, made, caplog):
    """The file at an odd non-square size: 1 channel ("sum") equals the RGB model on the gray image
    copied to R, G and B, through the in-graph normalisation too; 4 channels ("mean") equal the RGB
    model on the same image in every channel."""
    arch = get_arch(name)
    made(name)
    rgb = _from_file(name, input_shape=_odd_shape(arch, 3))
    gray = _from_file(name, input_shape=_odd_shape(arch, 1))
    assert gray.get_layer(arch.first_conv).kernel.shape[2] == 1
    g = _input(arch, _odd_shape(arch, 1), seed=3)
    expected = run(rgb, np.repeat(g, 3, axis=-1))
    err = relative_error(run(gray, g), expected)
    family_padded = arch.family in PADDED_PER_CHANNEL_STEM
    if family_padded:
        interior, whole = _stem_interior(arch, gray, rgb, g)
        assert interior < TOL < whole  # exact inside; the border is what cannot be exact
    else:
        assert err < TOL, err
    del gray
    _free()
    four = _from_file(name, input_shape=_odd_shape(arch, 4), channel_adapt="mean")
    err4 = relative_error(run(four, np.repeat(g, 4, axis=-1)), expected)
    if not family_padded:
        assert err4 < TOL, err4
    else:
        interior, whole = _stem_interior(arch, four, rgb, g)
        assert interior < TOL < whole
    del four, rgb
    _free()


def test_another_class_count_builds_a_new_head_and_says_so(cache, monkeypatch, caplog):
    """Another class count: the backbone from Keras' file without the top (the head is new
    anyway), as InceptionV3's loader does, and a warning that says so."""
    models_dir, _ = cache
    keras.utils.set_random_seed(0)
    ref = keras.applications.MobileNetV3Small(weights=None)
    ref.set_weights(randomised_weights(ref))
    ws = REGISTRY["mobilenet_v3_small.keras_in1k"]
    path = models_dir / ws.file_name_notop
    write_legacy_h5(ref, path, top=False, head=get_arch("mobilenet_v3_small").classifier)
    monkeypatch.setitem(REGISTRY, ws.name, replace(ws, file_hash_notop=md5(path), hash_algorithm="md5"))
    with caplog.at_level("WARNING", logger="anyshape.weights"):
        model = anyshape.applications.MobileNetV3Small(classes=7, input_shape=(64, 80, 3))
    assert "kept a new, randomly initialised 7-class head" in caplog.text
    assert ws.file_name_notop in caplog.text
    assert model.output.shape[-1] == 7
    for name in ("conv", "expanded_conv_10_project"):  # the backbone is the file's
        np.testing.assert_array_equal(model.get_layer(name).get_weights()[0], ref.get_layer(name).get_weights()[0])
    del ref
    del model
    _free()


# --- weight sets, overrides, names (no model built: the builder is replaced by a recorder) ------------


@pytest.fixture
def recorder(monkeypatch):
    """create_model with a builder and loader that only record the Config (nothing is built)."""
    from types import SimpleNamespace

    import anyshape.archs.keras_ops as keras_ops
    import anyshape.weights as weights

    monkeypatch.setattr(keras_ops, "build", lambda arch, config, tensor: SimpleNamespace())
    loaded = []
    monkeypatch.setattr(weights, "load_weight_set", lambda model, ws, **kw: loaded.append(ws))
    return loaded


OVERRIDES = {(ws.arch, key, value) for ws in weight_sets() for key, value in ws.build_overrides.items()}


def _other_value(arch_name, key, value):
    if isinstance(value, bool):
        return not value
    if isinstance(value, float):  # a BatchNorm epsilon (the torchvision twins, twins' issue 27), a divisor
        return 2 * value
    if value == "symmetric":  # the twins' padding: the network's own default ("tf", MobileNet's "keras")
        return next(f.default for f in dataclasses.fields(get_arch(arch_name).config_class) if f.name == key)
    if value == "same":  # NASNet's max_pool_padding (timm's nasnetalarge)
        return "zeros"
    if key.startswith("normalization_"):  # EfficientNetV2's mean and variance: one value per channel each
        return tuple(2 * v for v in value)
    return ()


@pytest.mark.parametrize("arch_name,key,value", sorted(OVERRIDES, key=repr))
def test_an_explicit_build_option_wins_over_the_weight_set(arch_name, key, value, recorder):
    """For every option any weight set overrides: left None the set's value is used; given, the
    caller's value wins (issue 29: `if kwargs.get(key) is None`)."""
    ws = next(s for s in weight_sets(arch_name) if s.build_overrides.get(key) == value)
    default = anyshape.create_model(arch_name, weights=ws.name, include_top=False)
    assert getattr(default.anyshape_config, key) == value
    other = _other_value(arch_name, key, value)
    given = anyshape.create_model(arch_name, weights=ws.name, include_top=False, **{key: other})
    assert getattr(given.anyshape_config, key) == other
    assert recorder[-1].name == ws.name


def test_every_overridable_option_is_tested():
    keys = {key for _, key, _ in OVERRIDES}
    twins = {"stride_in_3x3", "conv_bias", "bn_epsilon", "padding"}  # torchvision's twins (issue 27)
    twins |= {"alpha", "minimalistic"}  # timm's tf_mobilenetv3 075 and minimal sets (issue 27)
    twins |= {"rescaling_divisor", "normalization_mean", "normalization_variance"}  # timm's tf_efficientnetv2
    twins |= {"max_pool_padding"}  # timm's nasnetalarge
    assert keys == {"bn_scale", "count_include_pad", "stddev_rescaling"} | twins


@pytest.mark.parametrize("name", list_models())
def test_overrides_never_reach_another_network(name, recorder):
    """Keras' defaults build every network (the TypeError of issue 25), and no weight set's
    override reaches a network it was not made for; a set named for another network is refused."""
    arch = get_arch(name)
    model = anyshape.create_model(name, weights="imagenet", include_top=False, input_shape=(None, None, 3))
    assert recorder[-1].arch == name
    assert recorder[-1].name == _set_name(name)
    for ws in weight_sets():
        if ws.arch != name:
            assert ws.build_overrides_for(name) == {}
    assert type(model.anyshape_config) is arch.config_class
    other = "inception_v3.tf_in1k" if name != "inception_v3" else "resnet50.keras_in1k"
    with pytest.raises(WeightsForAnotherNetwork, match=f"not {arch.keras_name}'s"):
        anyshape.create_model(name, weights=other, include_top=False)


def test_files_bring_no_override_to_another_network(tmp_path, recorder):
    """A Keras file that does not say its network brings no override; one that says it was made
    for InceptionV3 (anyshape's metadata) is refused for ResNet50, as a registered name is."""
    from anyshape.weights.keras_h5 import write_metadata

    plain = tmp_path / "plain.h5"
    with h5py.File(plain, "w") as f:
        f.attrs["backend"] = b"tensorflow"
    ws = resolve(str(plain), arch="resnet50")
    assert ws.arch is None and ws.build_overrides_for("resnet50") == {}
    assert anyshape.create_model("resnet50", weights=str(plain), include_top=False).anyshape_arch == "resnet50"
    declared = tmp_path / "inception.h5"
    with h5py.File(declared, "w") as f:
        f.attrs["backend"] = b"tensorflow"
    write_metadata(str(declared), REGISTRY["inception_v3.tf_in1k"])
    with pytest.raises(WeightsForAnotherNetwork, match="InceptionV3's weights"):
        anyshape.create_model("resnet50", weights=str(declared), include_top=False)


def test_registry_names_and_data():
    """`<network>.keras_in1k` for the 39, InceptionV3's names kept; preprocessing per family."""
    assert {ws.arch for ws in weight_sets() if ws.source == "keras"} == set(list_models())
    assert resolve("imagenet").name == "imagenet" == resolve("inception_v3.keras_in1k").name
    assert resolve("imagenet", arch="ResNet50").name == "resnet50.keras_in1k"
    assert resolve("keras", arch="vgg16").name == "vgg16.keras_in1k"
    modes = {name: resolve("imagenet", arch=name).mode for name in list_models()}
    assert {n for n, m in modes.items() if m == "caffe"} == set(list_models("resnet") + list_models("vgg"))
    assert {n for n, m in modes.items() if m == "torch"} == set(list_models("densenet"))
    raw = {n for f in ("efficientnet", "efficientnet_v2", "convnext", "mobilenet_v3") for n in list_models(f)}
    assert {n for n, m in modes.items() if m == "raw"} == raw
    assert resolve("imagenet", arch="densenet121").preprocessing == {
        "mode": "torch",
        "mean": (0.485, 0.456, 0.406),
        "std": (0.229, 0.224, 0.225),
    }
    with pytest.raises(ValueError, match="neither a weight set of resnet50"):
        resolve("banana", arch="resnet50")


def test_mobilenet_files_follow_alpha_and_size_as_keras():
    from anyshape.archs import get_arch as arch_of
    from anyshape.weights.keras_files import NoKerasFile, keras_file

    cfg = arch_of("mobilenet").config(alpha=0.5, input_shape=(160, 160, 3))
    assert keras_file("mobilenet", cfg, False).file_name == "mobilenet_5_0_160_tf_no_top.h5"
    cfg = arch_of("mobilenet").config(alpha=0.25, input_shape=(67, 83, 3))
    assert keras_file("mobilenet", cfg, True).file_name == "mobilenet_2_5_224_tf.h5"
    cfg = arch_of("mobilenet_v2").config(alpha=1.4, input_shape=(96, 96, 3))
    assert (
        keras_file("mobilenet_v2", cfg, True).file_name == "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.4_96.h5"
    )
    cfg = arch_of("mobilenet_v3_small").config(minimalistic=True)
    f = keras_file("mobilenet_v3_small", cfg, False)
    assert f.file_name == "weights_mobilenet_v3_small_minimalistic_224_1.0_float_no_top_v2.h5"
    assert f.file_hash == "cde8136e733e811080d9fcd8a252f7e4"
    with pytest.raises(NoKerasFile, match="alpha"):
        keras_file("mobilenet_v3_large", arch_of("mobilenet_v3_large").config(alpha=0.5), True)


# --- the download path: file:// stands in for Keras' host ------------------------------------------------


def test_download_offline_error_and_wrong_hash(made, cache, monkeypatch, tmp_path):
    """A missing file with no network names the URL and the exact cache path; a file:// URL is
    fetched into the cache, hash-checked; a wrong hash is refused and nothing is written."""
    models_dir, _ = cache
    source = made("mobilenet_v3_small")
    name = "mobilenet_v3_small.keras_in1k"
    ws = REGISTRY[name]
    hosted = tmp_path / "host" / ws.file_name
    hosted.parent.mkdir()
    os.replace(source, hosted)
    try:
        missing = f"file://{tmp_path}/nowhere/{ws.file_name}"
        monkeypatch.setitem(REGISTRY, name, replace(ws, url=missing))
        with pytest.raises(WeightDownloadError) as e:
            anyshape.applications.MobileNetV3Small(input_shape=(64, 64, 3))
        assert missing in str(e.value) and str(models_dir / ws.file_name) in str(e.value)
        assert not (models_dir / ws.file_name).exists()
        monkeypatch.setitem(REGISTRY, name, replace(ws, url=f"file://{hosted}", file_hash="0" * 32))
        with pytest.raises(WeightDownloadError, match="not the published"):
            anyshape.applications.MobileNetV3Small(input_shape=(64, 64, 3))
        assert not (models_dir / ws.file_name).exists()
        monkeypatch.setitem(REGISTRY, name, replace(ws, url=f"file://{hosted}"))
        model = anyshape.applications.MobileNetV3Small(input_shape=(64, 64, 3), progress=False)
        assert model.anyshape_weights.path == str(models_dir / ws.file_name)
        del model
        _free()
    finally:
        if not os.path.exists(source):
            os.replace(hosted, source)


def test_a_file_of_another_architecture_is_refused_whole(made, cache):
    made("mobilenet_v3_small")
    path = str(cache[0] / REGISTRY["mobilenet_v3_small.keras_in1k"].file_name)
    model = anyshape.create_model("mobilenet_v3_large", weights=None, input_shape=(32, 32, 3))
    before = [keras.ops.convert_to_numpy(w) for w in model.weights[:3]]
    with pytest.raises(WeightFileError, match="nothing was loaded"):
        anyshape.weights.load_weight_set(model, resolve(path, arch="mobilenet_v3_large"))
    assert all(np.array_equal(a, keras.ops.convert_to_numpy(w)) for a, w in zip(before, model.weights[:3]))
    del model
    _free()


@pytest.mark.parametrize("name", ["efficientnet_v2_s", "efficientnet_v2_m", "efficientnet_v2_l"])
def test_efficientnet_v2_s_m_l_stem_takes_any_channel_count_exactly(name):
    """EfficientNetV2-S/M/L map every channel alike before the stem (Rescaling to [-1, 1], no
    per-channel Normalization as in the B variants, which the family test's B0 covers): the plain
    first-conv rule is exact at every channel count, border included, and nothing is folded.
    Proved on the stem (the map and the first convolution, as the network builds them: 3x3,
    stride 2, "same" padding, no bias) with the loader's own arrays; no whole network is built."""
    from types import SimpleNamespace

    from anyshape.weights.family import _first_conv, _Plan, input_affine

    arch = get_arch(name)
    assert arch.first_conv == "stem_conv"
    rng = np.random.default_rng(0)
    kernel = rng.normal(0, 0.2, (3, 3, 3, 24)).astype(np.float32)
    image = rng.uniform(0, 255, (1, 21, 26, 3)).astype(np.float32)  # odd: the stride-2 "same" pad is uneven
    gray = image[..., :1]

    def stem(k, x, affine):  # the in-graph map, then the stem convolution
        y = (x * affine[0][0] + affine[1][0]).astype(np.float32)
        return keras.ops.convert_to_numpy(keras.ops.conv(y, k, strides=2, padding="same"))

    rgb = input_affine(arch, arch.config(input_shape=(None, None, 3), include_top=False), 3)
    for channels, rule, x, expected in (
        (1, "sum", gray, stem(kernel, np.repeat(gray, 3, axis=-1), rgb)),
        (4, "mean", np.repeat(gray, 4, axis=-1), stem(kernel, np.repeat(gray, 3, axis=-1), rgb)),
        (3, (2, 1, 0), image[..., ::-1], stem(kernel, image, rgb)),  # BGR input
    ):
        config = arch.config(input_shape=(None, None, channels), include_top=False)
        ours = input_affine(arch, config, channels)
        for values in (*rgb, *ours):  # one map for every channel: Rescaling(1/128, -1)
            assert np.all(values == values[0])
        np.testing.assert_allclose([ours[0][0], ours[1][0]], [1 / 128, -1.0])
        plan = _Plan()
        layer = SimpleNamespace(name="stem_conv")
        (adapted,), offset = _first_conv(plan, None, arch, config, layer, [kernel], None, rule, None, channels)
        assert offset is None and "in-graph normalisation" not in plan.notes[0]  # nothing folded
        assert adapted.shape == (3, 3, channels, 24)
        assert relative_error(stem(adapted, x, ours), expected) < 1e-6  # border rows and columns included


def test_a_keras3_file_loads_at_any_size_and_channel_count(tmp_path, caplog):
    """A Keras 3 .weights.h5 saved from a network (here ResNet50 without its top, as a user saves a
    fine-tuned model) loads as weights=FILE at another size with one channel, the first-conv rule
    applied ("sum": equal to the RGB model on the gray image copied to R, G and B); into another
    network it is refused whole, naming the layers it lacks."""
    keras.utils.set_random_seed(0)
    rgb = anyshape.create_model("resnet50", include_top=False, input_shape=(None, None, 3))
    rgb.set_weights(randomised_weights(rgb))
    path = str(tmp_path / "resnet50_finetuned.weights.h5")
    rgb.save_weights(path)
    with caplog.at_level("WARNING", logger="anyshape.weights"):
        gray = anyshape.create_model("resnet50", include_top=False, weights=path, input_shape=(45, 61, 1))
    assert "first conv (conv1_conv) adapted from 3 to 1 input channels with channel_adapt='sum'" in caplog.text
    g = _input(get_arch("resnet50"), (45, 61, 1), seed=5)
    assert relative_error(run(gray, g), run(rgb, np.repeat(g, 3, axis=-1))) < TOL
    assert gray.anyshape_weights.path == path and gray.anyshape_weights.mode == "caffe"  # ResNet's own
    del gray, rgb
    _free()
    other = anyshape.create_model("mobilenet", alpha=0.25, include_top=False, input_shape=(None, None, 3))
    before = [keras.ops.convert_to_numpy(w) for w in other.weights]
    with pytest.raises(WeightFileError, match="does not fit this MobileNet.*nothing was loaded"):
        anyshape.weights.load_weight_set(other, resolve(path, arch="mobilenet"))
    assert all(np.array_equal(a, keras.ops.convert_to_numpy(w)) for a, w in zip(before, other.weights))
    del other
    _free()
