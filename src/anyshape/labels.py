"""ImageNet-1k class labels and ``decode_predictions``.

The class index ships inside the package (``anyshape/data/imagenet_class_index.json``), a
byte-identical copy of the file Keras downloads for ``keras.applications`` (md5
``c2c37ea517e94d9795004a39431a14cb``), so decoding works offline. Its format is
``{"0": ["n01440764", "tench"], ..., "999": ["n15075141", "toilet_tissue"]}``.

Names are not unique in that file ("crane" is both 134 and 517, "maillot" both 638 and 639);
use the WordNet id (wnid) when you need a unique key.
"""

from __future__ import annotations

import functools
import json
from importlib import resources
from typing import Any, Literal

import numpy as np

NUM_IMAGENET_CLASSES = 1000
CLASS_INDEX_RESOURCE = "imagenet_class_index.json"

Prediction = tuple[str, str, float]
"""One decoded prediction: ``(wnid, class_name, score)``."""


@functools.lru_cache(maxsize=1)
def _load_class_index() -> tuple[tuple[str, str], ...]:
    """Read and check the packaged class index once; returns ``((wnid, name), ...)`` by class id."""
    text = resources.files("anyshape").joinpath("data", CLASS_INDEX_RESOURCE).read_text("utf-8")
    raw: dict[str, list[str]] = json.loads(text)
    expected_keys = {str(i) for i in range(NUM_IMAGENET_CLASSES)}
    if set(raw) != expected_keys:
        raise RuntimeError(
            f"The packaged {CLASS_INDEX_RESOURCE} is damaged: expected keys '0'..'999', "
            f"got {len(raw)} keys. Reinstall anyshape."
        )
    return tuple((raw[str(i)][0], raw[str(i)][1]) for i in range(NUM_IMAGENET_CLASSES))


def class_index() -> list[tuple[str, str]]:
    """Return the 1000 ImageNet classes as ``(wnid, name)`` pairs, indexed by class id."""
    return list(_load_class_index())


def class_names() -> list[str]:
    """Return the 1000 ImageNet class names (e.g. ``"tench"``), indexed by class id."""
    return [name for _, name in _load_class_index()]


def _to_numpy(preds: Any) -> np.ndarray:
    """Convert a numpy array, list or backend tensor (TF, JAX, torch) to a numpy array."""
    if isinstance(preds, np.ndarray):
        return preds
    if hasattr(preds, "detach"):  # torch tensor, possibly on GPU or requiring grad
        return preds.detach().cpu().numpy()
    return np.asarray(preds)


def decode_predictions(
    preds: Any,
    top: int = 5,
    *,
    label_offset: int | Literal["auto"] = "auto",
) -> list[list[Prediction]]:
    """Decode ImageNet class scores into the ``top`` best ``(wnid, name, score)`` per sample.

    Same result as ``keras.applications.imagenet_utils.decode_predictions``: one list per sample,
    sorted by decreasing score.

    Args:
        preds: scores of shape ``(N, 1000)``, or ``(N, 1001)`` for checkpoints with a
            "background" class at index 0 (TF-slim and some timm InceptionV3 weights). A numpy
            array, nested list or backend tensor.
        top: how many classes to return per sample, 1..1000.
        label_offset: how many leading columns to drop before column ``k`` means ImageNet class
            ``k``. ``"auto"`` (default) uses 0 for 1000 columns and 1 for 1001 columns.

    Returns:
        ``[[(wnid, name, score), ...], ...]``, ``N`` lists of ``top`` tuples; scores are Python
        floats.

    Raises:
        ValueError: if ``preds`` is not 2-D with ``1000 + label_offset`` columns, or ``top`` is
            out of range.
    """
    scores = _to_numpy(preds)
    if scores.ndim != 2:
        raise ValueError(
            f"decode_predictions expects a batch of class scores of shape (N, 1000), got shape "
            f"{tuple(scores.shape)}. It decodes the output of a model built with "
            f"include_top=True and classes=1000; for a single sample, pass preds[None]."
        )
    num_columns = scores.shape[1]
    if label_offset == "auto":
        offset = 1 if num_columns == NUM_IMAGENET_CLASSES + 1 else 0
    elif isinstance(label_offset, int) and label_offset >= 0:
        offset = label_offset
    else:
        raise ValueError(f"label_offset must be 'auto' or an int >= 0, got {label_offset!r}.")
    if num_columns != NUM_IMAGENET_CLASSES + offset:
        raise ValueError(
            f"decode_predictions expects {NUM_IMAGENET_CLASSES + offset} class scores per sample "
            f"(1000 ImageNet classes after dropping {offset} leading column(s)), got shape "
            f"{tuple(scores.shape)}. Pass the output of a model with include_top=True and "
            f"classes=1000 (or 1001 with a background class at index 0); outputs of "
            f"include_top=False or fine-tuned heads are not ImageNet classes."
        )
    if not isinstance(top, (int, np.integer)) or not 1 <= top <= NUM_IMAGENET_CLASSES:
        raise ValueError(f"top must be an int in 1..{NUM_IMAGENET_CLASSES}, got {top!r}.")

    imagenet_scores = scores[:, offset:]
    index = _load_class_index()
    decoded: list[list[Prediction]] = []
    for sample_scores in imagenet_scores:
        # Stable sort on the negated scores: ties keep the lower class id first.
        best_ids = np.argsort(-sample_scores, kind="stable")[: int(top)]
        decoded.append([(index[i][0], index[i][1], float(sample_scores[i])) for i in best_ids])
    return decoded
