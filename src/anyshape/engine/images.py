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
from anyshape.errors import Message
from anyshape.shapes import minimum_size, parse_dims

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
    interpolation; for weights evaluated with crop_mode "squash" each side is resized to
    H/crop_pct and W/crop_pct, ignoring the aspect ratio, before the crop (`DataConfig.resize`). Images whose shorter side is below `min_size` (the network's minimum, 75 px by
    default, where InceptionV3's feature map would collapse; see `for_model`) are refused unless `upscale`, which enlarges them first so the
    shorter side is `min_size`.

    A `.npy` array (one (H, W, C) image, C the model's channels) is read as training reads it:
    values as they are, float32 through a fixed-size resize.

    Channel rule for image files (`preprocess.load_image`): 3 channels: gray is replicated, alpha dropped,
    palette/CMYK converted, 16-bit scaled to 0..255; 1 channel: luminance; 4: RGBA. EXIF
    orientation is applied. Images over `max_pixels` are refused (decompression bomb), as
    decoded and as they would be once enlarged (by `upscale`, or resized for a fixed size); so
    are images holding NaN or Inf (a float TIFF can).
    """

    channels: int = 3
    size: str | tuple = "native"
    preprocessing: Preprocessing = field(default_factory=Preprocessing)
    upscale: bool = False
    min_size: int = field(default_factory=lambda: max(n or 1 for n in minimum_size()))
    max_pixels: int | None = None
    data_format: str = "channels_last"
    # the network whose minimum `min_size` is, named in the message for a smaller image (None:
    # "the model's"); the defaults are InceptionV3's
    network: str | None = "inception_v3"

    @classmethod
    def for_model(cls, model, **kwargs) -> ImageReader:
        """A reader for a `Predictor` or `GraphModel`: its channels, data format, preprocessing,
        minimum size and network (`kwargs`: size, upscale, max_pixels)."""
        return cls(
            channels=model.channels,
            preprocessing=model.preprocessing,
            min_size=max(1, int(model.min_size)),
            data_format=model.data_format,
            network=getattr(model, "architecture", None),
            **kwargs,
        )

    def read(self, path, data: bytes | IO[bytes] | None = None) -> np.ndarray:
        """The model input for the image file or `.npy` array `path` (or for `data`: its bytes, or
        the file opened as a seekable binary file), read as training reads it
        (`preprocess.load_pixels`)."""
        from anyshape import preprocess

        kwargs: dict = {} if self.max_pixels is None else {"max_pixels": self.max_pixels}
        image = preprocess.load_pixels(path, self.channels, data=data, **kwargs)
        if image.dtype.kind == "f" and not np.isfinite(image).all():  # a float TIFF (mode F) can hold them
            raise preprocess.ImageLoadError(
                f"{path}: holds NaN or Inf pixel values, which the network cannot compute with"
            )
        h, w = image.shape[:2]
        shorter = min(h, w)
        if shorter < self.min_size:
            if not self.upscale:
                raise ImageTooSmall(
                    Message(
                        "{path}: {h}x{w} px is below {whose} minimum of {min_size} px per side "
                        "(its feature map would vanish); pass {upscale=True} to enlarge such images",
                        path=path,
                        h=h,
                        w=w,
                        whose=self._whose(),
                        min_size=self.min_size,
                    )
                )
            scale = self.min_size / shorter
            target = (max(self.min_size, math.ceil(h * scale)), max(self.min_size, math.ceil(w * scale)))
            self._check_pixels(path, (h, w), target, "upscaled")
            image = preprocess.resize(image, target, self.preprocessing.interpolation)
        if self.size != "native":
            image = self._fixed(path, image)
        x = self.preprocessing.apply(image)
        if self.data_format == "channels_first":
            x = np.ascontiguousarray(np.transpose(x, (2, 0, 1)))
        return x

    def _whose(self) -> str:
        if self.network is None:
            return "the model's"
        from anyshape.archs import get_arch

        return f"{get_arch(self.network).keras_name}'s"

    def _check_pixels(self, path, hw: tuple[int, int], target: tuple[int, int], how) -> None:
        """Refuse to enlarge an image past `max_pixels`: the limit bounds what the reader holds,
        not only what the file decodes to (a 1x20000 px strip upscaled to 75 px is 75x1500000)."""
        from anyshape import preprocess

        limit = preprocess.DEFAULT_MAX_PIXELS if self.max_pixels is None else self.max_pixels
        pixels = target[0] * target[1]
        if pixels > limit:
            raise preprocess.ImageLoadError(
                Message(
                    "{path}: {h}x{w} px {how} would be {th}x{tw} = {pixels} pixels, over the "
                    "limit of {limit}; pass a larger {max_pixels=}{python:N} if you trust this image",
                    path=path,
                    h=hw[0],
                    w=hw[1],
                    how=how,
                    th=target[0],
                    tw=target[1],
                    pixels=pixels,
                    limit=limit,
                )
            )

    def _fixed(self, path, image: np.ndarray) -> np.ndarray:
        from anyshape import preprocess

        if Path(path).suffix.lower() != ".npy":  # arrays keep their values, as training keeps them
            image = preprocess.to_uint8(image)  # resized on Pillow's 8-bit path, as training does
        if isinstance(self.size, str):
            raise ValueError(f"a fixed size is needed here, not {self.size!r}")
        resized = self.preprocessing.resize_size(image.shape[:2], tuple(self.size))
        how = Message("resized for {size=*}", size=f"{self.size[0]},{self.size[1]}")
        self._check_pixels(path, image.shape[:2], resized, how)
        # the weights' crop_pct, interpolation and crop_mode ("center" keeps the aspect ratio,
        # "squash" does not: timm's eval transform, see anyshape.data_config)
        return self.preprocessing.resize(image, tuple(self.size)).astype(np.float32)


def path_key(path) -> str:
    """The identity of a file for de-duplication and resumes: its absolute path with symbolic
    links, `.` and `..` resolved, so that one file given two ways (`a.jpg`, `./a.jpg`, an absolute
    path, a link) is one row. Output files keep the spelling the user gave."""
    return os.path.realpath(path)


def find_images(paths: Iterable) -> tuple[list[Path], list[tuple[Path, str]]]:
    """Expand files and folders (recursively, sorted, hidden files and folders skipped).

    Returns (files, failed) where failed lists (path, reason) for arguments that do not exist and
    for folders that cannot be listed (permission denied, ...): each is a failure the run reports,
    never a silent gap in its output. A file reached twice (two spellings, a folder and a file in
    it, a link) is listed once, with the first spelling met (see `path_key`).
    """
    files: list[Path] = []
    failed: list[tuple[Path, str]] = []
    seen = set()

    def fail(path: Path, why: str) -> None:
        if path_key(path) not in seen:
            seen.add(path_key(path))
            failed.append((path, why))

    def unlisted(e: OSError) -> None:  # os.walk's report of a folder it cannot list (Path.rglob skips it in silence)
        fail(Path(e.filename), _unreadable(e, "folder cannot be read"))

    for p in map(Path, paths):
        try:
            is_dir = p.is_dir()
            exists = is_dir or p.exists()
        except OSError as e:  # a parent folder that cannot be searched
            fail(p, _unreadable(e, "cannot be reached"))
            continue
        if is_dir:
            found: list[Path] = []
            for root, dirs, names in os.walk(p, onerror=unlisted):
                dirs[:] = [d for d in dirs if not d.startswith(".")]
                found.extend(q for q in (Path(root, n) for n in names if not n.startswith(".")) if q.is_file())
            found.sort()
        elif exists:
            found = [p]
        else:
            fail(p, "no such file or folder")
            continue
        for q in found:
            key = path_key(q)
            if key not in seen:
                seen.add(key)
                files.append(q)
    return files, failed


def _unreadable(error: OSError, what: str) -> str:
    return f"{what} ({(error.strerror or str(error)).lower()})"
