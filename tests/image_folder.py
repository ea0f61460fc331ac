"""Small class-per-subfolder image folders made from scikit-image's bundled photos (offline).

Each class is one photo; its images are crops of different sizes and positions, saved as PNG
and JPEG, so a classifier can learn them in a few steps and the loader sees real files.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

PHOTOS = ("chelsea", "coffee", "rocket")


def photo(name: str) -> np.ndarray:
    from skimage import data

    return getattr(data, name)()


def make_image_folder(root: Path, per_class: int = 6, photos=PHOTOS, seed: int = 0, gray: bool = False) -> Path:
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    for name in photos:
        img = photo(name)
        folder = root / name
        folder.mkdir(exist_ok=True)
        h, w = img.shape[:2]
        for i in range(per_class):
            ch, cw = int(rng.integers(h // 2, h)), int(rng.integers(w // 2, w))
            top, left = int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1))
            crop = Image.fromarray(img[top : top + ch, left : left + cw])
            if gray:
                crop = crop.convert("L")
            if i % 2:
                crop.save(folder / f"{i}.jpg", quality=90)
            else:
                crop.save(folder / f"{i}.png")
    return root
