"""Keras weight files -> anyshape: the published legacy .h5 layout, .weights.h5 and .keras.

The reference is keras.applications.InceptionV3 itself with random weights and calibrated,
randomised BatchNorm statistics; the legacy file is written with h5py in the layout of Keras'
published inception_v3_weights_tf_dim_ordering_tf_kernels.h5 (Keras 2: root `layer_names`,
per-layer `weight_names` such as "conv2d_1/kernel:0"), and Keras' own legacy loader reads it.
"""

import logging

import h5py
import keras
import numpy as np
import pytest

import anyshape
from anyshape.weights import WeightFileError, load_weight_set, resolve
from anyshape.weights.keras_h5 import describe_keras_file

TOL = 1e-4


def _keras2_names(model):
    """Keras 2 auto-names, as in the published file: conv2d_1.., batch_normalization_1.., predictions."""
    counts, names = {}, {}
    for layer in model.layers:
        if layer.name in ("predictions", "avg_pool") or not layer.weights:
            names[layer.name] = layer.name
            continue
        base = {"Conv2D": "conv2d", "BatchNormalization": "batch_normalization"}[type(layer).__name__]
        counts[base] = counts.get(base, 0) + 1
        names[layer.name] = f"{base}_{counts[base]}"
    return names


def write_legacy_h5(model, path, *, top=True):
    """Write `model`'s weights in the layout of Keras' published InceptionV3 .h5 files."""
    names = _keras2_names(model)
    layers = [layer for layer in model.layers if top or layer.name != "predictions"]
    with h5py.File(path, "w") as f:
        f.attrs["layer_names"] = [names.get(layer.name, layer.name).encode() for layer in layers]
        f.attrs["backend"] = b"tensorflow"
        f.attrs["keras_version"] = b"2.1.5"
        for layer in layers:
            lname = names.get(layer.name, layer.name)
            g = f.create_group(lname)
            weight_names = [f"{lname}/{w.name}:0" for w in layer.weights]
            g.attrs["weight_names"] = [n.encode() for n in weight_names]
            for n, w in zip(weight_names, layer.weights):
                g.create_dataset(n, data=keras.ops.convert_to_numpy(w))


@pytest.fixture(scope="module")
def keras_app():
    """keras.applications.InceptionV3, random, BatchNorm statistics from a real batch, randomised."""
    keras.utils.set_random_seed(0)
    model = keras.applications.InceptionV3(weights=None, classifier_activation=None)
    bns = [layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)]
    for layer in bns:
        layer.momentum = 0.0  # moving statistics := this batch's statistics
    rng = np.random.default_rng(0)
    model(rng.uniform(-1, 1, (2, 299, 299, 3)).astype(np.float32), training=True)
    for layer in bns:
        layer.momentum = 0.99
        beta, mean, var = layer.get_weights()
        n = beta.shape[0]
        layer.set_weights(
            [
                (0.2 * rng.standard_normal(n)).astype(np.float32),
                (mean + 0.2 * np.sqrt(var) * rng.standard_normal(n)).astype(np.float32),
                (var * rng.uniform(0.7, 1.3, n)).astype(np.float32),
            ]
        )
    dense = model.get_layer("predictions")
    logits = keras.ops.convert_to_numpy(model(rng.uniform(-1, 1, (2, 299, 299, 3)).astype(np.float32)))
    k, b = dense.get_weights()
    dense.set_weights([k * (2 / logits.std()), b * (2 / logits.std())])
    return model


@pytest.fixture(scope="module")
def files(keras_app, tmp_path_factory):
    d = tmp_path_factory.mktemp("kh5")
    legacy, notop, w3 = d / "published_layout.h5", d / "published_layout_notop.h5", d / "app.weights.h5"
    write_legacy_h5(keras_app, legacy)
    write_legacy_h5(keras_app, notop, top=False)
    keras_app.save_weights(w3)
    return {"legacy": str(legacy), "notop": str(notop), "weights_h5": str(w3), "dir": d}


@pytest.fixture(scope="module")
def ours_free(files):
    return anyshape.InceptionV3(weights=files["weights_h5"], input_shape=(None, None, 3), classifier_activation=None)


@pytest.fixture(scope="module")
def ours_small(files):
    """A 10-class, 75 x 75 model: pretrained backbone, new head."""
    return anyshape.InceptionV3(
        weights=files["legacy"], input_shape=(75, 75, 3), classes=10, classifier_activation=None
    )


def _images(n, h, w, seed=0):
    return np.random.default_rng(seed).uniform(-1, 1, (n, h, w, 3)).astype(np.float32)


def _saturated_images(n, h, w, seed=0):
    """Pixels at -1 or 1 only: still in the [-1, 1] input range, with 3x the variance of `_images`."""
    return np.random.default_rng(seed).choice(np.float32([-1, 1]), (n, h, w, 3))


def _close(a, b):
    a, b = keras.ops.convert_to_numpy(a), keras.ops.convert_to_numpy(b)
    assert a.shape == b.shape
    assert np.abs(a - b).max() <= TOL, np.abs(a - b).max()
    assert np.abs(b).max() > 0.5


def test_the_legacy_layout_is_what_keras_reads(keras_app, files):
    """Keras' own legacy loader accepts the file (so the layout is the published one)."""
    before = keras_app.get_weights()
    keras_app.load_weights(files["legacy"])
    assert all(np.array_equal(a, b) for a, b in zip(before, keras_app.get_weights()))
    with h5py.File(files["legacy"]) as f:
        names = [n.decode() if isinstance(n, bytes) else n for n in f.attrs["layer_names"]]
        assert names[1] == "conv2d_1" and names[2] == "batch_normalization_1"
        assert "kernel:0" in f["conv2d_1"]["conv2d_1"]


@pytest.mark.every_backend
def test_legacy_h5_at_299(keras_app, files):
    ours = anyshape.InceptionV3(weights=files["legacy"], classifier_activation=None)
    x = _images(1, 299, 299)
    _close(ours(x), keras_app(x))
    ws = ours.anyshape_weights
    assert ws.format == "keras" and not ws.bn_scale and not ws.count_include_pad and ws.mode == "tf"


def test_weights_h5_at_299_and_other_sizes(keras_app, ours_free):
    x = _images(1, 299, 299, seed=1)
    _close(ours_free(x), keras_app(x))
    # other sizes: keras.applications without the top (it refuses other sizes with it),
    # plus its classifier applied in numpy
    feats = keras.applications.InceptionV3(weights=None, include_top=False, pooling="avg", input_shape=(None, None, 3))
    feats.set_weights(keras_app.get_weights()[:-2])
    k, b = keras_app.get_layer("predictions").get_weights()
    # At 75 x 75 (mixed10 is 1 x 1) this random network's pooled features are ~20x smaller than
    # at 299, where its head was scaled to logits of std 2: uniform noise gives max |logit| 0.3 to
    # 0.8 depending on the backend's random weights (0.33 on torch), too small for `_close`'s
    # guard. Saturated pixels give 2 to 5 on every backend, and the same absolute tolerance.
    for x in [_images(1, 150, 200, seed=2), _saturated_images(1, 75, 75, seed=2)]:
        _close(ours_free(x), keras.ops.convert_to_numpy(feats(x)) @ k + b)


def test_keras_file_saved_by_keras_3(keras_app, ours_free, files):
    """A .keras file (zip with the Keras 3 layout inside) from keras.applications."""
    path = files["dir"] / "app.keras"
    keras_app.save(path)
    load_weight_set(ours_free, resolve(str(path)))
    x = _images(1, 299, 299, seed=3)
    _close(ours_free(x), keras_app(x))


def test_new_head_and_notop_file(keras_app, files, ours_small, caplog):
    names = ["stem_1a_3x3_conv", "mixed5_branch7x7_2_bn", "mixed10_branch_pool_conv"]
    app_names = {"stem_1a_3x3_conv": 0, "mixed10_branch_pool_conv": -1}
    app_convs = [layer for layer in keras_app.layers if isinstance(layer, keras.layers.Conv2D)]
    for name, i in app_names.items():
        np.testing.assert_array_equal(
            keras.ops.convert_to_numpy(ours_small.get_layer(name).kernel),
            keras.ops.convert_to_numpy(app_convs[i].kernel),
        )
    assert ours_small.get_layer(names[1]).get_weights()[0].shape == (160,)
    with caplog.at_level(logging.WARNING, logger="anyshape.weights"):
        load_weight_set(ours_small, resolve(files["notop"]))
    assert "no classifier weights" in caplog.text


def test_described_like_the_published_file(files):
    ws = describe_keras_file(files["legacy"])
    assert (ws.bn_scale, ws.count_include_pad, ws.num_classes, ws.has_aux) == (False, False, 1000, False)
    assert describe_keras_file(files["notop"]).num_classes is None


def test_bad_keras_files_leave_the_model_unchanged(files, ours_small, tmp_path):
    from safetensors.numpy import save_file

    from anyshape.weights.keras_h5 import read_keras_file
    from anyshape.weights.torch import checkpoint_to_state_dict

    before = ours_small.get_weights()
    data = open(files["legacy"], "rb").read()
    truncated = tmp_path / "truncated.h5"
    truncated.write_bytes(data[: len(data) // 3])
    other = keras.Sequential(
        [
            keras.Input((8, 8, 3)),
            keras.layers.Conv2D(4, 3),
            keras.layers.BatchNormalization(),
            keras.layers.Flatten(),
            keras.layers.Dense(2),
        ]
    )
    other_path = tmp_path / "other.weights.h5"
    other.save_weights(other_path)
    # a torch-layout file whose BatchNorms have gammas, into a model built without them
    ck = read_keras_file(files["legacy"], ours_small)
    sd = checkpoint_to_state_dict(ck)
    for k in sd:
        if k.endswith("bn.weight"):
            sd[k] = np.full_like(sd[k], 1.5)
    gamma_path = tmp_path / "with_gamma.safetensors"
    save_file(sd, str(gamma_path))
    cases = [(truncated, "truncated"), (other_path, "another architecture"), (gamma_path, "bn_scale=True")]
    for path, words in cases:
        with pytest.raises((WeightFileError, ValueError)) as e:
            load_weight_set(ours_small, resolve(str(path), preprocessing="tf"))
        assert words in str(e.value), str(e.value)
        assert all(np.array_equal(a, b) for a, b in zip(before, ours_small.get_weights()))


def test_aux_head_without_aux_weights_is_said(files, caplog):
    """Keras' files have no aux head: it stays random, and the log says so."""
    with caplog.at_level(logging.WARNING, logger="anyshape.weights"):
        m = anyshape.InceptionV3(weights=files["legacy"], aux_logits=True)
    assert "no auxiliary-head weights" in caplog.text
    assert len(m.outputs) == 2 and m.anyshape_weights.format == "keras"


def test_imagenet_from_the_keras_cache_offline(files, tmp_path, monkeypatch, caplog):
    """weights="imagenet" is served from keras.utils.get_file's cache (KERAS_HOME/models).

    The stand-in file is our published-layout file; the registry entry gets its md5 (the real
    file is not shipped), the rest of the path is the real one.
    """
    import dataclasses
    import hashlib
    import shutil
    import urllib.request

    from anyshape.weights import REGISTRY

    monkeypatch.setattr(urllib.request, "urlopen", lambda *a, **k: pytest.fail("no network access expected"))
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    (tmp_path / "models").mkdir()
    ws = REGISTRY["imagenet"]
    shutil.copy(files["legacy"], tmp_path / "models" / ws.file_name)
    md5 = hashlib.md5(open(files["legacy"], "rb").read()).hexdigest()
    monkeypatch.setitem(REGISTRY, "imagenet", dataclasses.replace(ws, file_hash=md5))
    with caplog.at_level(logging.WARNING, logger="anyshape.weights"):
        m = anyshape.InceptionV3(weights="imagenet", input_shape=(None, None, 2), classes=5)
    assert m.anyshape_weights.name == "imagenet"
    assert m.anyshape_weights.path == str(tmp_path / "models" / ws.file_name)
    assert "channel_adapt='repeat'" in caplog.text and "5-class head" in caplog.text


def test_not_an_anyshape_model(keras_app, files):
    with pytest.raises(ValueError, match="not a model built by anyshape"):
        load_weight_set(keras_app, resolve(files["legacy"]))
