"""Resizing and centre-cropping one ``(H, W, C)`` image with Pillow, as timm's and torchvision's
evaluation transforms do (``resize``, ``shorter_side_resize_size``, ``center_crop``,
``resize_shorter_and_center_crop``). numpy and Pillow only.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from PIL import Image

DEFAULT_CROP_PCT = 0.875
DEFAULT_INTERPOLATION = "bicubic"

_RESAMPLING: dict[str, Image.Resampling] = {
    "nearest": Image.Resampling.NEAREST,
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "lanczos": Image.Resampling.LANCZOS,
    "box": Image.Resampling.BOX,
    "hamming": Image.Resampling.HAMMING,
}


def _resampling(interpolation: str) -> Image.Resampling:
    try:
        return _RESAMPLING[interpolation]
    except KeyError:
        raise ValueError(f"interpolation must be one of {sorted(_RESAMPLING)}, got {interpolation!r}.") from None


def _check_size_hw(size_hw: Any) -> tuple[int, int]:
    if isinstance(size_hw, (int, np.integer)):
        size_hw = (size_hw, size_hw)
    try:
        height, width = (int(v) for v in size_hw)
    except (TypeError, ValueError):
        raise ValueError(f"size_hw must be (height, width) or an int, got {size_hw!r}.") from None
    if height < 1 or width < 1 or (height, width) != tuple(size_hw):
        raise ValueError(f"size_hw must be positive integers (height, width), got {size_hw!r}.")
    return height, width


def _as_hwc(img: np.ndarray) -> np.ndarray:
    img = np.asarray(img)
    if img.ndim == 2:
        img = img[:, :, None]
    if img.ndim != 3 or 0 in img.shape:
        raise ValueError(
            f"Expected one image of shape (H, W, C) or (H, W), got shape {img.shape}. "
            f"Resize a batch one image at a time."
        )
    return img


def resize(img: np.ndarray, size_hw: tuple[int, int] | int, interpolation: str = DEFAULT_INTERPOLATION) -> np.ndarray:
    """Resize one image ``(H, W, C)`` (or ``(H, W)``) to ``size_hw = (height, width)`` with Pillow.

    uint8 images with 1, 3 or 4 channels are resized as Pillow L/RGB/RGBA images and stay
    uint8 (rounded and clipped by Pillow, as in torchvision/timm). Everything else is resized
    per channel in Pillow's float mode "F" and returned as float32; bicubic and lanczos may then
    overshoot the input range slightly near edges (values are not clipped). Downscaling is
    antialiased (Pillow's filters widen with the scale factor).

    Returns:
        array of shape ``(height, width, C)``; uint8 for uint8 input, otherwise float32.
    """
    image = _as_hwc(img)
    height, width = _check_size_hw(size_hw)
    resample = _resampling(interpolation)
    if image.shape[:2] == (height, width):
        return image.copy() if image.dtype == np.uint8 else image.astype(np.float32)
    num_channels = image.shape[2]
    if image.dtype == np.uint8 and num_channels in (1, 3, 4):
        # Pillow infers L / RGB / RGBA from the uint8 array's shape.
        pil_image = Image.fromarray(np.ascontiguousarray(image[:, :, 0] if num_channels == 1 else image))
        resized = np.asarray(pil_image.resize((width, height), resample))
        return resized[:, :, None] if resized.ndim == 2 else resized.copy()
    planes = image.astype(np.float32, copy=False)
    resized_planes = [
        np.asarray(
            Image.fromarray(np.ascontiguousarray(planes[:, :, c])).resize(  # float32 -> mode F
                (width, height), resample
            )
        )
        for c in range(num_channels)
    ]
    return np.stack(resized_planes, axis=-1).astype(np.float32, copy=False)


def shorter_side_resize_size(
    image_hw: tuple[int, int], size_hw: tuple[int, int] | int, crop_pct: float = DEFAULT_CROP_PCT
) -> tuple[int, int]:
    """The (height, width) that timm's eval transform resizes to before its centre crop.

    ``scale = floor(size / crop_pct)`` per side. For a square target the shorter image side
    becomes ``scale`` and the longer one ``int(scale * long / short)`` (torchvision's
    ``Resize(int)``); for a non-square target both sides are ``round(side / ratio)`` with
    ``ratio = min(H / scale_h, W / scale_w)`` (timm's ``ResizeKeepRatio``).
    """
    image_height, image_width = image_hw
    target_height, target_width = _check_size_hw(size_hw)
    if not 0.0 < crop_pct <= 1.0:
        raise ValueError(f"crop_pct must be in (0, 1] (the crop's fraction of the resized image), got {crop_pct!r}.")
    scale_height = math.floor(target_height / crop_pct)
    scale_width = math.floor(target_width / crop_pct)
    if scale_height == scale_width:
        short_side, long_side = sorted((image_height, image_width))
        new_short, new_long = scale_height, int(scale_height * long_side / short_side)
        if image_width <= image_height:
            return new_long, new_short
        return new_short, new_long
    ratio = min(image_height / scale_height, image_width / scale_width)
    return round(image_height / ratio), round(image_width / ratio)


def center_crop(img: np.ndarray, size_hw: tuple[int, int] | int) -> np.ndarray:
    """Crop the centre ``(height, width)`` of an ``(H, W, C)`` image, as torchvision does.

    The offset is ``int(round((H - height) / 2))`` (Python rounds halves to even, like
    torchvision). Raises ValueError if the image is smaller than the crop.
    """
    image = _as_hwc(img)
    height, width = _check_size_hw(size_hw)
    image_height, image_width = image.shape[:2]
    if height > image_height or width > image_width:
        raise ValueError(
            f"Cannot centre-crop {height}x{width} from a {image_height}x{image_width} image; resize it first."
        )
    top = int(round((image_height - height) / 2.0))
    left = int(round((image_width - width) / 2.0))
    return image[top : top + height, left : left + width].copy()


def resize_shorter_and_center_crop(
    img: np.ndarray,
    size_hw: tuple[int, int] | int,
    crop_pct: float = DEFAULT_CROP_PCT,
    interpolation: str = DEFAULT_INTERPOLATION,
) -> np.ndarray:
    """timm's evaluation transform: resize so the crop covers ``crop_pct``, then centre-crop.

    Resizes (keeping the aspect ratio) to :func:`shorter_side_resize_size`, i.e. the shorter
    side to about ``size / crop_pct`` (342 for 299 at the default 0.875), then takes the
    central ``size_hw``. ``crop_pct=1.0`` keeps the whole shorter side. Same sizes and offsets
    as ``timm.data.transforms_imagenet_eval`` with ``crop_mode="center"``; pixel values match
    it for uint8 input (both resize with Pillow).

    Args:
        img: one image ``(H, W, C)`` or ``(H, W)``; uint8 or float (see :func:`resize`).
        size_hw: output ``(height, width)``, or an int for a square.
        crop_pct: fraction of the resized image the crop keeps, in (0, 1].
        interpolation: Pillow filter name (timm's InceptionV3 configs use "bicubic").

    Returns:
        array of shape ``(height, width, C)``, same dtype rule as :func:`resize`.
    """
    image = _as_hwc(img)
    resized_hw = shorter_side_resize_size(image.shape[:2], size_hw, crop_pct)
    return center_crop(resize(image, resized_hw, interpolation), size_hw)
