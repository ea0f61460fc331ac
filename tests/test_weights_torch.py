"""torchvision / timm state dicts -> anyshape, against the real torchvision and timm models.

Reference models are random (seeded) with calibrated, randomised BatchNorm statistics, in eval
mode (tests/reference/torch_inception.py). Parity: max abs logit difference <= 1e-4 and the
same top-5, at 299 x 299 (with the aux head) and at 150 x 200 and 120 x 120 (free-size model).
"""

import logging

import numpy as np
import pytest

torch = pytest.importorskip("torch")
torchvision = pytest.importorskip("torchvision")

from reference.torch_inception import calibrated, predict, run, state_dict_numpy, top5, torchvision_inception  # noqa: E402

import anyshape  # noqa: E402
from anyshape.weights import WeightFileError, load_weight_set, resolve  # noqa: E402
from anyshape.weights.torch import checkpoint_to_state_dict, read_torch_file  # noqa: E402

TOL = 1e-4


@pytest.fixture(scope="module")
def tv(tmp_path_factory):
    """A calibrated torchvision Inception3 with aux head, saved as .pth and .safetensors."""
    from safetensors.torch import save_file

    d = tmp_path_factory.mktemp("tv")
    model = torchvision_inception(aux_logits=True, seed=0)
    pth, st = d / "inception_tv.pth", d / "inception_tv.safetensors"
    torch.save(model.state_dict(), pth)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, st)
    return model, str(pth), str(st), d


@pytest.fixture(scope="module")
def ours_299(tv):
    _, pth, _, _ = tv
    return anyshape.InceptionV3(weights=pth, preprocessing="tf", aux_logits=True, classifier_activation=None)


@pytest.fixture(scope="module")
def ours_free(tv):
    _, _, st, _ = tv
    return anyshape.InceptionV3(weights=st, preprocessing="tf", input_shape=(None, None, 3), classifier_activation=None)


def _images(n, h, w, seed=0):
    return np.random.default_rng(seed).uniform(-1, 1, (n, h, w, 3)).astype(np.float32)


def _assert_parity(ours, ref):
    assert ours.shape == ref.shape
    diff = np.abs(ours - ref).max()
    assert diff <= TOL, f"max abs logit difference {diff}"
    assert np.array_equal(top5(ours), top5(ref))
    assert np.abs(ref).max() > 0.5  # the comparison is not between near-zero logits


def _snapshot(model):
    return [np.array(w) for w in model.get_weights()]


def _assert_unchanged(model, before):
    after = model.get_weights()
    assert all(np.array_equal(a, b) for a, b in zip(before, after))


@pytest.mark.every_backend
def test_pth_at_299_with_aux_head(tv, ours_299):
    model, *_ = tv
    x = _images(1, 299, 299)
    ref, ref_aux = run(model, x, aux=True)
    out, aux = predict(ours_299, x)
    _assert_parity(out, ref)
    _assert_parity(aux, ref_aux)
    ws = ours_299.anyshape_weights
    assert ws.format == "torch" and ws.has_aux and ws.num_classes == 1000
    assert ours_299.get_layer("mixed0_branch_pool_pad") is not None  # count_include_pad=True
    assert ours_299.get_layer("stem_1a_3x3_bn").scale  # bn_scale=True


@pytest.mark.parametrize("hw", [(150, 200), (120, 120)])
def test_safetensors_at_other_sizes(tv, ours_free, hw):
    model, *_ = tv
    x = _images(1, *hw, seed=1)
    _assert_parity(predict(ours_free, x), run(model, x))


def test_pth_and_safetensors_read_the_same(tv):
    _, pth, st, _ = tv
    a, b = read_torch_file(pth), read_torch_file(st)
    assert a.units.keys() == b.units.keys()
    for name in a.units:
        for k in a.units[name]:
            np.testing.assert_array_equal(a.units[name][k], b.units[name][k])
    assert a.has_aux and a.num_classes == 1000 and a.bn_scale
    # the mapping inverts exactly (num_batches_tracked dropped)
    back = checkpoint_to_state_dict(a)
    sd = state_dict_numpy(tv[0])
    assert set(back) == {k for k in sd if not k.endswith("num_batches_tracked")}
    for k, v in back.items():
        np.testing.assert_array_equal(v, sd[k])


def test_transform_input_equivalence(tv, ours_299):
    """Our model + the weight set's preprocessing == torchvision's transform_input=True model."""
    from skimage import data

    model, *_ = tv
    tvt = torchvision.models.inception_v3(weights=None, aux_logits=True, init_weights=False, transform_input=True)
    tvt.load_state_dict(model.state_dict())
    tvt.eval()
    photo = data.astronaut()[100:399, 100:399].astype(np.float32)[None]  # (1, 299, 299, 3), 0..255
    mean, std = np.array([0.485, 0.456, 0.406], np.float32), np.array([0.229, 0.224, 0.225], np.float32)
    ref = run(tvt, (photo / 255 - mean) / std)  # torchvision's documented preprocessing
    x = anyshape.preprocess_input(photo, "channels_last", weights="torchvision.IMAGENET1K_V1")
    out, _ = predict(ours_299, x)
    _assert_parity(out, ref)


def test_timm_state_dict(tv, ours_free, tmp_path):
    """timm's InceptionV3 (ConvNormAct modules, same keys as torchvision) converts exactly."""
    from safetensors.torch import save_file

    timm = pytest.importorskip("timm")
    torch.manual_seed(3)
    tm = calibrated(timm.create_model("inception_v3", pretrained=False, aux_logits=False), seed=3)
    path = tmp_path / "timm_inception.safetensors"
    save_file({k: v.contiguous() for k, v in tm.state_dict().items()}, str(path))
    try:
        load_weight_set(ours_free, resolve(str(path), preprocessing="tf"))
        x = _images(1, 150, 200, seed=4)
        with torch.no_grad():
            ref = tm(torch.from_numpy(x.transpose(0, 3, 1, 2))).numpy()
        _assert_parity(predict(ours_free, x), ref)
    finally:
        load_weight_set(ours_free, resolve(tv[2], preprocessing="tf"))


def test_1001_class_checkpoint_drops_background(tv, ours_free, tmp_path, caplog):
    from safetensors.numpy import save_file

    model, *_ = tv
    sd = {k: v for k, v in state_dict_numpy(model).items() if not k.startswith("AuxLogits")}
    rng = np.random.default_rng(5)
    sd["fc.weight"] = np.concatenate([rng.normal(size=(1, 2048)).astype(np.float32), sd["fc.weight"]])
    sd["fc.bias"] = np.concatenate([np.float32([7.0]), sd["fc.bias"]])
    path = tmp_path / "slim_1001.safetensors"
    save_file(sd, str(path))
    with caplog.at_level(logging.WARNING, logger="anyshape.weights"):
        load_weight_set(ours_free, resolve(str(path), preprocessing="tf"))
    assert "1001 classes" in caplog.text and "background" in caplog.text
    assert ours_free.anyshape_weights.label_offset == 0 and ours_free.anyshape_weights.num_classes == 1000
    x = _images(1, 150, 200, seed=6)
    _assert_parity(predict(ours_free, x), run(model, x))


def _bad_files(tv, d):
    """(name, path, expected words in the error) for files that must be refused."""
    model, pth, st, _ = tv
    from safetensors.numpy import save_file

    out = []
    data = open(pth, "rb").read()
    (d / "truncated.pth").write_bytes(data[: len(data) // 2])
    out.append(("truncated .pth", d / "truncated.pth", "truncated"))
    data = open(st, "rb").read()
    (d / "truncated.safetensors").write_bytes(data[: len(data) // 2])
    out.append(("truncated .safetensors", d / "truncated.safetensors", "truncated"))
    torch.save(torchvision.models.resnet18(weights=None).state_dict(), d / "resnet18.pth")
    out.append(("another architecture", d / "resnet18.pth", "not a torchvision/timm InceptionV3"))
    sd = state_dict_numpy(model)
    sd10 = dict(sd, **{"fc.weight": sd["fc.weight"][:10], "fc.bias": sd["fc.bias"][:10]})
    sd10 = {k: v for k, v in sd10.items() if not k.startswith("AuxLogits")}
    save_file(sd10, str(d / "ten_classes.safetensors"))
    out.append(("wrong class count", d / "ten_classes.safetensors", "classes=10"))
    missing = {k: v for k, v in sd.items() if not k.startswith("Mixed_7c.branch_pool")}
    save_file(missing, str(d / "missing.safetensors"))
    out.append(("missing keys", d / "missing.safetensors", "missing"))
    wrong = dict(sd, **{"Mixed_6b.branch1x1.conv.weight": sd["Mixed_6b.branch1x1.conv.weight"][:, :100]})
    save_file(wrong, str(d / "wrong_shape.safetensors"))
    out.append(("wrong shape", d / "wrong_shape.safetensors", "does not fit"))
    torch.save({"state_dict": model.state_dict(), "extra": _NeedsCode()}, d / "needs_code.pth")
    out.append(("pickle needing code", d / "needs_code.pth", "needs Python code"))
    return out


class _NeedsCode:
    def __reduce__(self):
        return (print, ("this must never run",))


def test_bad_files_leave_the_model_unchanged(tv, ours_free, tmp_path, capsys):
    before = _snapshot(ours_free)
    for what, path, words in _bad_files(tv, tmp_path):
        with pytest.raises(WeightFileError) as e:
            load_weight_set(ours_free, resolve(str(path), preprocessing="tf"))
        assert words in str(e.value), (what, str(e.value))
        assert str(path) in str(e.value), what  # the message names the file
        _assert_unchanged(ours_free, before)
    assert "this must never run" not in capsys.readouterr().out


def test_pickle_payload_is_never_executed(tmp_path):
    torch.save({"x": _NeedsCode()}, tmp_path / "evil.pt")
    with pytest.raises(WeightFileError, match="never runs code"):
        read_torch_file(str(tmp_path / "evil.pt"))


def test_new_head_for_other_class_count(tv, caplog):
    """Pretrained backbone + a new head when classes != 1000, with a log message."""
    _, _, st, _ = tv
    with caplog.at_level(logging.WARNING, logger="anyshape.weights"):
        m = anyshape.InceptionV3(
            weights=st, preprocessing="tf", classes=7, input_shape=(75, 75, 1), classifier_activation=None
        )
    assert "new, randomly initialised 7-class head" in caplog.text
    assert "channel_adapt='sum'" in caplog.text
    ck = read_torch_file(st)
    np.testing.assert_array_equal(
        m.get_layer("stem_1a_3x3_conv").kernel.numpy()[:, :, 0], ck.units["stem_1a_3x3"]["kernel"].sum(axis=2)
    )
    np.testing.assert_array_equal(
        m.get_layer("mixed10_branch_pool_conv").kernel.numpy(), ck.units["mixed10_branch_pool"]["kernel"]
    )
    assert m.output.shape[-1] == 7


def test_registry_set_from_the_cache_offline(tv, tmp_path, monkeypatch):
    """A timm set already in the cache loads without network, with its preprocessing metadata."""
    import shutil
    import urllib.request

    from anyshape.weights import REGISTRY

    monkeypatch.setattr(urllib.request, "urlopen", lambda *a, **k: pytest.fail("no network access expected"))
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    (tmp_path / "models").mkdir()
    ws = REGISTRY["inception_v3.gluon_in1k"]
    shutil.copy(tv[2], tmp_path / "models" / ws.file_name)  # a stand-in with the same layout
    m = anyshape.InceptionV3(weights="inception_v3.gluon_in1k", input_shape=(120, 120, 3), classifier_activation=None)
    assert m.anyshape_weights.preprocessing == {
        "mode": "torch",
        "mean": (0.485, 0.456, 0.406),
        "std": (0.229, 0.224, 0.225),
    }
    x = _images(1, 120, 120, seed=1)
    _assert_parity(predict(m, x), run(tv[0], x))


def test_a_newer_pickle_protocol_is_named_without_torchs_warning(tmp_path, capsys):
    """torch warns about a file pickled with protocol 4 (advice to its own developers); the CLI
    says instead, in its one line, why such a file cannot be read and what to do."""
    import warnings

    from anyshape import cli

    torch.save({"fc.weight": torch.zeros(3, 2)}, tmp_path / "p4.pth", pickle_protocol=4)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        code = cli.main(["predict", str(tmp_path), "--weights", str(tmp_path / "p4.pth"), "--preprocessing", "tf"])
    err = capsys.readouterr().err
    assert not [w for w in caught if "pickle protocol" in str(w.message)]  # what would reach the terminal
    assert code == 2 and "Traceback" not in err and "Detected pickle protocol" not in err
    assert "pickled with a protocol torch's safe loader cannot read (pickle opcode 149)" in err
