"""Tests for anyshape.labels: the packaged ImageNet class index and decode_predictions."""

import hashlib
from importlib import resources

import numpy as np
import pytest

from anyshape.labels import class_index, class_names, decode_predictions

# md5 that keras.applications checks when it downloads imagenet_class_index.json.
KERAS_CLASS_INDEX_MD5 = "c2c37ea517e94d9795004a39431a14cb"


def test_packaged_class_index_is_byte_identical_to_keras_file():
    data = resources.files("anyshape").joinpath("data", "imagenet_class_index.json").read_bytes()
    assert hashlib.md5(data).hexdigest() == KERAS_CLASS_INDEX_MD5


def test_class_index_contents():
    index = class_index()
    assert len(index) == 1000
    assert index[0] == ("n01440764", "tench")
    assert index[999] == ("n15075141", "toilet_tissue")
    assert index[281] == ("n02123045", "tabby")
    wnids = [wnid for wnid, _ in index]
    assert len(set(wnids)) == 1000
    assert wnids == sorted(wnids)  # ImageNet class ids follow sorted wnids
    assert all(w.startswith("n") and len(w) == 9 for w in wnids)


def test_class_names_matches_index_and_is_a_fresh_list():
    names = class_names()
    assert names == [name for _, name in class_index()]
    names[0] = "changed"
    assert class_names()[0] == "tench"
    # Names are not unique in Keras' file; wnids are.
    assert names.count("crane") == 2


@pytest.mark.parametrize("class_id", [0, 1, 281, 517, 999])
def test_one_hot_decodes_to_its_class(class_id):
    preds = np.zeros((1, 1000), np.float32)
    preds[0, class_id] = 1.0
    (top,) = decode_predictions(preds, top=1)
    wnid, name, score = top[0]
    assert (wnid, name) == class_index()[class_id]
    assert score == 1.0 and isinstance(score, float)


def test_top_k_sorted_by_score_per_sample():
    rng = np.random.default_rng(0)
    preds = rng.random((3, 1000)).astype(np.float32)
    decoded = decode_predictions(preds)  # top=5 by default
    assert len(decoded) == 3
    index = class_index()
    for sample, sample_scores in zip(decoded, preds):
        assert len(sample) == 5
        expected_ids = np.argsort(sample_scores)[::-1][:5]
        assert [entry[:2] for entry in sample] == [index[i] for i in expected_ids]
        scores = [entry[2] for entry in sample]
        assert scores == sorted(scores, reverse=True)
        assert scores[0] == pytest.approx(float(sample_scores.max()))


def test_top_all_classes_and_ties_keep_class_order():
    decoded = decode_predictions(np.zeros((1, 1000)), top=1000)[0]
    assert [name for _, name, _ in decoded] == class_names()


def test_1001_columns_drop_background_class():
    preds = np.zeros((2, 1001), np.float32)
    preds[:, 0] = 5.0  # background: must be ignored
    preds[0, 1] = 0.9  # ImageNet class 0
    preds[1, 1000] = 0.8  # ImageNet class 999
    decoded = decode_predictions(preds, top=1)
    assert decoded[0][0][:2] == ("n01440764", "tench")
    assert decoded[1][0][:2] == ("n15075141", "toilet_tissue")
    assert decoded[1][0][2] == pytest.approx(0.8)
    # Explicit offset gives the same answer.
    assert decode_predictions(preds, top=1, label_offset=1) == decoded


@pytest.mark.parametrize(
    "shape, offset",
    [((1000,), "auto"), ((2, 10), "auto"), ((2, 1000, 1), "auto"), ((2, 2048), "auto"), ((2, 1001), 0), ((2, 1000), 1)],
)
def test_wrong_shape_raises_clear_value_error(shape, offset):
    with pytest.raises(ValueError, match=r"\(N, 1000\)|1000 ImageNet classes") as info:
        decode_predictions(np.zeros(shape), label_offset=offset)
    assert f"got shape {shape}" in str(info.value)


@pytest.mark.parametrize("top", [0, -1, 1001, 2.5])
def test_invalid_top_raises(top):
    with pytest.raises(ValueError, match="top must be"):
        decode_predictions(np.zeros((1, 1000)), top=top)


def test_invalid_label_offset_raises():
    with pytest.raises(ValueError, match="label_offset"):
        decode_predictions(np.zeros((1, 1000)), label_offset=-1)


def test_accepts_lists_and_backend_tensors():
    import keras

    preds = np.zeros((1, 1000), np.float32)
    preds[0, 7] = 1.0
    expected = decode_predictions(preds, top=2)
    assert decode_predictions(preds.tolist(), top=2) == expected
    assert decode_predictions(keras.ops.convert_to_tensor(preds), top=2) == expected


def test_same_result_as_keras_applications(monkeypatch):
    """keras' decode_predictions, fed our packaged file instead of its download, agrees."""
    import json

    from keras.src.applications import imagenet_utils

    packaged = json.loads(resources.files("anyshape").joinpath("data", "imagenet_class_index.json").read_text())
    monkeypatch.setattr(imagenet_utils, "CLASS_INDEX", packaged)
    rng = np.random.default_rng(1)
    preds = rng.random((4, 1000)).astype(np.float32)
    theirs = imagenet_utils.decode_predictions(preds, top=7)
    ours = decode_predictions(preds, top=7)
    assert [[(w, n, float(s)) for w, n, s in sample] for sample in theirs] == ours
