"""Image side of the engine: preprocessing metadata, size policy, reading files, finding files."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

import numpy as np

from anyshape.shapes import MIN_SIZE


@dataclass(frozen=True)
class Preprocessing:
    """How images must be prepared for a model's weights.

    Read from the weight set the model was loaded with (`model.anyshape_weights`, set by
    `anyshape.weights`); without one, InceptionV3's Keras/TF-slim convention: pixels scaled to
    [-1, 1] ("tf"), evaluation crop 0.875 with bicubic resizing (timm's InceptionV3 config).
    """

    mode: str = "tf"
    mean: tuple | None = None
    std: tuple | None = None
    input_size: tuple | None = None  # (H, W) the weights were trained at, if known
    crop_pct: float = 0.875
    interpolation: str = "bicubic"
    label_offset: int | str = "auto"

    @classmethod
    def from_model(cls, model) -> "Preprocessing":
        run = getattr(model, "anyshape_run_info", None)
        if run:  # a model trained by `anyshape train`: its classes.json says how it was fed
            prep, resize = dict(run.get("preprocess") or {}), dict(run.get("resize") or {})
            return cls(
                mode=prep.get("mode", "tf"),
                mean=tuple(prep["mean"]) if prep.get("mean") is not None else None,
                std=tuple(prep["std"]) if prep.get("std") is not None else None,
                crop_pct=float(resize.get("crop_pct", 0.875)),
                interpolation=resize.get("interpolation", "bicubic"),
                label_offset=0,
            )
        ws = getattr(model, "anyshape_weights", None)
        if ws is None:
            return cls()
        size = getattr(ws, "input_size", None)
        if size is not None:
            size = tuple(size)
            size = size[-2:] if len(size) == 3 and size[0] in (1, 3, 4) else size[:2]
        mean, std = getattr(ws, "mean", None), getattr(ws, "std", None)
        return cls(
            mode=getattr(ws, "mode", None) or "tf",
            mean=tuple(mean) if mean is not None else None,
            std=tuple(std) if std is not None else None,
            input_size=size,
            crop_pct=float(getattr(ws, "crop_pct", None) or 0.875),
            interpolation=getattr(ws, "interpolation", None) or "bicubic",
            label_offset=getattr(ws, "label_offset", None) if getattr(ws, "label_offset", None) is not None else "auto",
        )

    def apply(self, image_hwc: np.ndarray) -> np.ndarray:
        from anyshape.preprocess import preprocess_input

        kwargs = {}
        if self.mode == "torch":
            kwargs = dict(mean=self.mean, std=self.std)
        return preprocess_input(image_hwc, "channels_last", mode=self.mode, **kwargs)


def parse_size(text) -> str | tuple[int, int]:
    """`"native"` -> "native"; `"299"` / 299 -> (299, 299); `"150,200"` -> (150, 200)."""
    if text is None or text == "native":
        return "native"
    if isinstance(text, int):
        return (text, text)
    if isinstance(text, (tuple, list)):
        h, w = (int(v) for v in text)
        return (h, w)
    parts = [p for p in str(text).replace("x", ",").split(",") if p.strip()]
    try:
        values = [int(p) for p in parts]
    except ValueError:
        values = []
    if len(values) not in (1, 2) or min(values) < 1:
        raise ValueError(f"size must be 'native', N or H,W (e.g. 299 or 150,200), got {text!r}")
    return (values[0], values[0]) if len(values) == 1 else (values[0], values[1])


class ImageTooSmall(ValueError):
    """An image below the network's minimum size, and upscaling was not asked for."""


@dataclass
class ImageReader:
    """Reads one image file into the model's input: decode, convert, size policy, preprocess.

    size: "native" keeps each image's own size (any H, W >= min_size); (H, W) resizes the
    shorter side to H/crop_pct (W/crop_pct) and takes the centre crop (timm's evaluation
    transform, `preprocess.resize_shorter_and_center_crop`), with the weights' crop_pct and
    interpolation. Images whose shorter side is below `min_size` (75 px, where InceptionV3's
    feature map would collapse) are refused unless `upscale`, which enlarges them first so the
    shorter side is `min_size`.

    Channel rule (`preprocess.load_image`): 3 channels: gray is replicated, alpha dropped,
    palette/CMYK converted, 16-bit scaled to 0..255; 1 channel: luminance; 4: RGBA. EXIF
    orientation is applied. Images over `max_pixels` are refused (decompression bomb).
    """

    channels: int = 3
    size: str | tuple = "native"
    preprocessing: Preprocessing = field(default_factory=Preprocessing)
    upscale: bool = False
    min_size: int = MIN_SIZE
    max_pixels: int | None = None
    data_format: str = "channels_last"

    def read(self, path) -> np.ndarray:
        from anyshape import preprocess

        kwargs = {} if self.max_pixels is None else {"max_pixels": self.max_pixels}
        image = preprocess.load_image(path, self.channels, **kwargs)
        h, w = image.shape[:2]
        shorter = min(h, w)
        if shorter < self.min_size:
            if not self.upscale:
                raise ImageTooSmall(
                    f"{path}: {h}x{w} px is below InceptionV3's minimum of {self.min_size} px per side "
                    f"(its feature map would vanish); pass --upscale (upscale=True) to enlarge such images"
                )
            scale = self.min_size / shorter
            image = preprocess.resize(image, (max(self.min_size, math.ceil(h * scale)),
                                              max(self.min_size, math.ceil(w * scale))),
                                      self.preprocessing.interpolation)
        if self.size != "native":
            image = self._fixed(image)
        x = self.preprocessing.apply(image)
        if self.data_format == "channels_first":
            x = np.ascontiguousarray(np.transpose(x, (2, 0, 1)))
        return x

    def _fixed(self, image: np.ndarray) -> np.ndarray:
        from anyshape import preprocess

        # Resize in uint8, Pillow's 8-bit path as timm/torchvision do (exact for 8-bit files;
        # 16-bit files lose less than half a level).
        image = np.clip(np.rint(image), 0, 255).astype(np.uint8)
        out = preprocess.resize_shorter_and_center_crop(
            image, self.size, self.preprocessing.crop_pct, self.preprocessing.interpolation
        )
        return out.astype(np.float32)


def path_key(path) -> str:
    """The identity of a file for de-duplication and resumes: its absolute path with symbolic
    links, `.` and `..` resolved, so that one file given two ways (`a.jpg`, `./a.jpg`, an absolute
    path, a link) is one row. Output files keep the spelling the user gave."""
    return os.path.realpath(path)


def find_images(paths: Iterable) -> tuple[list[Path], list[tuple[Path, str]]]:
    """Expand files and folders (recursively, sorted, hidden files skipped).

    Returns (files, missing) where missing lists (path, reason) for arguments that do not exist.
    A file reached twice (two spellings, a folder and a file in it, a link) is listed once,
    with the first spelling met (see `path_key`).
    """
    files: list[Path] = []
    missing: list[tuple[Path, str]] = []
    seen = set()
    for p in map(Path, paths):
        if p.is_dir():
            found = sorted(
                q for q in p.rglob("*")
                if q.is_file() and not any(part.startswith(".") for part in q.relative_to(p).parts)
            )
        elif p.exists():
            found = [p]
        else:
            missing.append((p, "no such file or folder"))
            continue
        for q in found:
            key = path_key(q)
            if key not in seen:
                seen.add(key)
                files.append(q)
    return files, missing
