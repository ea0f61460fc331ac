"""Image side of the engine: preprocessing metadata, size policy, reading files, finding files."""

from __future__ import annotations

import math
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import numpy as np

from anyshape.data_config import DataConfig
from anyshape.shapes import MIN_SIZE, parse_dims

Preprocessing = DataConfig
"""How images must be prepared for a model's weights: `anyshape.data_config.DataConfig`.

`Preprocessing.from_model(model)` reads the model's trained run info or weight set (see
`resolve_data_config`); without either, InceptionV3's Keras/TF-slim convention: pixels scaled to
[-1, 1] ("tf"), evaluation crop 0.875 with bicubic resizing (timm's InceptionV3 config).
"""


def parse_size(text) -> str | tuple[int, int]:
    """`"native"` -> "native"; `"299"` / 299 -> (299, 299); `"150,200"` -> (150, 200)."""
    if text is None or text == "native":
        return "native"
    if isinstance(text, int):
        return (text, text)
    if isinstance(text, (tuple, list)):
        h, w = (int(v) for v in text)
        return (h, w)
    try:
        values = [v for v in parse_dims(text) if v is not None]  # all ints: "none" is not a size here
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

    def read(self, path, data: bytes | IO[bytes] | None = None) -> np.ndarray:
        """The model input for the image file `path` (or for `data`: its bytes, or the file
        opened as a seekable binary file, see `preprocess.load_image`)."""
        from anyshape import preprocess

        kwargs: dict = {} if self.max_pixels is None else {"max_pixels": self.max_pixels}
        image = preprocess.load_image(path, self.channels, data=data, **kwargs)
        h, w = image.shape[:2]
        shorter = min(h, w)
        if shorter < self.min_size:
            if not self.upscale:
                raise ImageTooSmall(
                    f"{path}: {h}x{w} px is below InceptionV3's minimum of {self.min_size} px per side "
                    f"(its feature map would vanish); pass --upscale (upscale=True) to enlarge such images"
                )
            scale = self.min_size / shorter
            image = preprocess.resize(
                image,
                (max(self.min_size, math.ceil(h * scale)), max(self.min_size, math.ceil(w * scale))),
                self.preprocessing.interpolation,
            )
        if self.size != "native":
            image = self._fixed(image)
        x = self.preprocessing.apply(image)
        if self.data_format == "channels_first":
            x = np.ascontiguousarray(np.transpose(x, (2, 0, 1)))
        return x

    def _fixed(self, image: np.ndarray) -> np.ndarray:
        from anyshape import preprocess

        image = preprocess.to_uint8(image)  # resized on Pillow's 8-bit path, as training does
        if isinstance(self.size, str):
            raise ValueError(f"a fixed size is needed here, not {self.size!r}")
        out = preprocess.resize_shorter_and_center_crop(
            image, tuple(self.size), self.preprocessing.crop_pct, self.preprocessing.interpolation
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
                q
                for q in p.rglob("*")
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
