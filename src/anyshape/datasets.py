"""Image data for training: class-per-subfolder folders and the built-in `digits` set.

    from anyshape.datasets import load_dataset
    data = load_dataset("path/to/folder", (150, 150))        # channels from the images
    data = load_dataset("digits", (75, 75, 1))              # scikit-learn's handwritten digits
    data.train.images.shape, data.class_names, data.notes

A folder is either

    DATA/<class>/<image>                 split here into train/val/test (stratified, seeded)
    DATA/train/<class>/<image>           with DATA/test/<class>/... (and optionally DATA/val/...)

Files are found as `anyshape predict` finds them (`engine.find_images`: recursive, sorted,
hidden files and folders skipped) and decoded by the same `anyshape.preprocess.load_image`
(or `load_array` for `.npy` files; `preprocess.load_pixels` picks, for inference too),
then brought to the training size by `fit_image` (resize the shorter side, centre-crop the
rest: no distortion of the aspect ratio) and kept in memory as uint8 (float32 for `.npy`
data), which is what a few thousand images at InceptionV3 sizes allow
(299 x 299 x 3 uint8 = 268 KB an image). The same `fit_image` is what inference must apply to
a new image for a model trained here; `anyshape.train` records it in the run folder.

Channels: taken from the images unless given. All grayscale -> 1 channel; any colour image ->
3 channels (grayscale images are replicated, alpha is dropped); a mix is converted and the
conversion is stated in `notes` (the CLI prints them). `.npy` arrays keep their own channel
count and must all agree.

The `digits` set is scikit-learn's bundled 8 x 8 handwritten digits (1,797 images, values
0..16): scaled to 0..255, upsampled bilinearly to the input size, split 1,437 train / 360 test
(stratified, seed 0), the split the README's accuracy figures use.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from anyshape.data_config import DataConfig
from anyshape.engine.images import find_images
from anyshape.errors import Message, Spelled
from anyshape.preprocess import (
    NPY_HINT,
    ImageLoadError,
    file_channels,
    load_pixels,
    resize_shorter_and_center_crop,
    to_uint8,
)

__all__ = [
    "DataError",
    "Split",
    "Dataset",
    "load_dataset",
    "load_digits",
    "load_folder",
    "fit_image",
    "read_image",
    "IMAGE_SUFFIXES",
    "RESIZE_POLICY",
]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".npy")
RESIZE_POLICY = DataConfig().for_training().resize_policy()  # whole shorter side, bilinear
"""How every image is brought to the model's size, here and (recorded in a run folder) at inference."""


class DataError(ValueError):
    """The training data cannot be used as given; the message says what, why and what to do."""


@dataclass
class Split:
    """Images (N, H, W, C), uint8 or float32 with values 0..255, and integer labels (N,)."""

    images: np.ndarray
    labels: np.ndarray

    def __len__(self) -> int:
        return int(self.labels.shape[0])


@dataclass
class Dataset:
    train: Split
    val: Split | None
    test: Split | None
    class_names: list[str]
    channels: int
    source: str
    notes: list[str] = field(default_factory=list)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def summary(self) -> str:
        parts = [f"{len(self.train)} train"]
        if self.val is not None:
            parts.append(f"{len(self.val)} val")
        if self.test is not None:
            parts.append(f"{len(self.test)} test")
        return (
            f"{self.source}: {self.num_classes} classes, {', '.join(parts)} images, "
            f"{self.train.images.shape[1]}x{self.train.images.shape[2]}x{self.channels}"
        )


def _size_and_channels(input_shape) -> tuple[tuple[int, int], int | None]:
    shape = tuple(input_shape)
    if len(shape) not in (2, 3) or any(s is None for s in shape[:2]):
        raise ValueError(
            f"input_shape must be (H, W) or (H, W, C) with fixed H and W for training, got {input_shape!r}"
        )
    channels = shape[2] if len(shape) == 3 else None
    if channels is not None and (not isinstance(channels, (int, np.integer)) or channels < 1):
        raise ValueError(f"input_shape channels must be a positive integer or left out, got {channels!r}")
    return (int(shape[0]), int(shape[1])), None if channels is None else int(channels)


def fit_image(image: np.ndarray, size_hw: tuple[int, int]) -> np.ndarray:
    """Bring one (H, W, C) image to `size_hw` the way training does (see RESIZE_POLICY)."""
    return resize_shorter_and_center_crop(
        image, size_hw, crop_pct=RESIZE_POLICY["crop_pct"], interpolation=RESIZE_POLICY["interpolation"]
    )


def read_image(path, size_hw: tuple[int, int], channels: int) -> np.ndarray:
    """Read an image file (or .npy array) and fit it to `size_hw`: uint8 for images, float32 for .npy."""
    pixels = load_pixels(path, channels)  # the reader inference uses too
    if Path(path).suffix.lower() == ".npy":
        return fit_image(pixels, size_hw)  # arrays keep their values: float32
    return fit_image(to_uint8(pixels), size_hw)


def _list_classes(root: Path) -> tuple[list[str], list[list[Path]], int]:
    if not root.exists():
        raise DataError(f"{root}: no such folder. Give a folder with one subfolder of images per class, or 'digits'.")
    if not root.is_dir():
        raise DataError(f"{root} is a file; give a folder with one subfolder of images per class, or 'digits'.")
    class_dirs = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not class_dirs:
        raise DataError(
            f"{root} has no subfolders: expected one subfolder per class, e.g. {root}/cat/1.jpg and "
            f"{root}/dog/2.jpg (the subfolder names are the class names)."
        )
    locked = [d.name for d in class_dirs if not _listable(d)]
    if locked:
        raise DataError(
            f"{root}: class folder(s) {', '.join(repr(name) for name in locked)} cannot be read: permission denied "
            "(this user may not list them); change their permissions, or remove them."
        )
    files, ignored, empty = [], 0, []
    for d in class_dirs:
        listed, unreadable = find_images([d])  # the rule `anyshape predict` follows: recursive, sorted, hidden skipped
        if unreadable:  # training without a folder's images would be a silent gap in the data
            path, why = unreadable[0]
            raise DataError(f"{path}: {why}; training would leave out its images: fix its permissions or move it away")
        found = [p for p in listed if p.suffix.lower() in IMAGE_SUFFIXES]
        ignored += len(listed) - len(found)
        if not found:
            empty.append(d.name)
        files.append(found)
    if empty and len(empty) == len(class_dirs):
        raise DataError(
            f"{root}: none of its {len(class_dirs)} subfolders holds an image file "
            f"({', '.join(IMAGE_SUFFIXES)}); put the images of each class in its subfolder."
        )
    if empty:
        raise DataError(
            f"{root}: class folder(s) {', '.join(repr(e) for e in empty)} hold no image file; every class "
            f"needs images (remove the folder or add images to it)."
        )
    if len(class_dirs) < 2:
        raise DataError(
            f"{root}: only one class ({class_dirs[0].name!r}); a classifier needs at least two class "
            f"subfolders. If {root} holds the class folders one level down, give that folder instead."
        )
    return [d.name for d in class_dirs], files, ignored


def _listable(folder: Path) -> bool:
    """False for a folder this user may not list, which a search would pass over as if it were empty."""
    try:
        with os.scandir(folder):
            return True
    except PermissionError:
        return False


def _decide_channels(
    all_files: Sequence[Path], channels: int | None, notes: list[str], bad: list[tuple[Path, str]]
) -> int:
    counts: dict[int, int] = {}
    for p in all_files:
        try:
            c = file_channels(p)
        except Exception as e:  # noqa: BLE001 - any decoder failure makes the file unreadable
            bad.append((p, f"{type(e).__name__}: {e}"))
            continue
        counts[c] = counts.get(c, 0) + 1
    npy = [p for p in all_files if p.suffix.lower() == ".npy"]
    if npy and len(npy) != len(all_files):
        raise DataError("the folder mixes .npy arrays and image files; use one kind for all images.")
    if npy:
        if channels is None:
            if len(counts) > 1:
                raise DataError(f".npy arrays with different channel counts {sorted(counts)}; they must all agree.")
            channels = next(iter(counts), 1)
        return channels
    if channels is not None:
        if channels not in (1, 3, 4):  # said once, not as a failure of every image
            raise DataError(
                Message(
                    "{input_shape} asks for {channels} channel(s) ({input_shape=@shape}), but image files are read "
                    "as 1 (gray), 3 (RGB) or 4 (RGBA) channels: give one of those, or leave the channel count out to "
                    "take it from the images. {hint}",
                    channels=channels,
                    shape=Spelled(f"H,W,{channels}", f"(H, W, {channels})"),
                    hint=NPY_HINT,
                )
            )
        other = {c: n for c, n in counts.items() if c != channels}
        if other:
            desc = ", ".join(f"{n} with {c}" for c, n in sorted(other.items()))
            notes.append(
                Message(
                    "converted to {channels} channel(s) as {input_shape} asks: {desc} "
                    "(gray->RGB replicates, RGB->gray is luminance, alpha is dropped)",
                    channels=channels,
                    desc=desc,
                )
            )
        return channels
    if not counts:
        return 3
    if set(counts) == {1}:
        return 1
    chosen = 3
    if counts.get(1):
        notes.append(f"mixed channel counts: {counts[1]} grayscale image(s) converted to RGB (3 equal channels)")
    if counts.get(4):
        notes.append(
            Message(
                "{n} image(s) with alpha: alpha dropped (give {input_shape=@shape} to keep it)",
                n=counts[4],
                shape=Spelled("H,W,4", "(H, W, 4)"),
            )
        )
    return chosen


def load_folder(
    root, input_shape, *, skip_bad_images: bool = False, progress=None
) -> tuple[Split, list[str], int, list[str]]:
    """Read DATA/<class>/<image> into one Split; returns (split, class_names, channels, notes)."""
    root = Path(root)
    size_hw, channels = _size_and_channels(input_shape)
    class_names, files, ignored = _list_classes(root)
    notes: list[str] = []
    if ignored:
        notes.append(f"ignored {ignored} file(s) that are not images by their suffix")
    all_files = [p for fs in files for p in fs]
    bad: list[tuple[Path, str]] = []
    channels = _decide_channels(all_files, channels, notes, bad)
    images, labels = [], []
    bad_set = {p for p, _ in bad}
    for label, fs in enumerate(files):
        for p in fs:
            if p in bad_set:
                continue
            try:
                images.append(read_image(p, size_hw, channels))
                labels.append(label)
            except (ImageLoadError, ValueError, OSError) as e:
                bad.append((p, str(e)))
            if progress is not None:
                progress(len(images) + len(bad), len(all_files))
    if bad:
        listing = "\n  ".join(f"{p}: {why}" for p, why in bad[:5])
        more = f"\n  ... and {len(bad) - 5} more" if len(bad) > 5 else ""
        if not skip_bad_images:
            raise DataError(
                Message(
                    "{n} of {total} file(s) under {root} could not be read as images:\n  "
                    "{listing}{more}\nFix or remove them, or pass {skip_bad_images=True} to train without them.",
                    n=len(bad),
                    total=len(all_files),
                    root=root,
                    listing=listing,
                    more=more,
                )
            )
        notes.append(
            f"skipped {len(bad)} unreadable file(s): "
            + "; ".join(str(p) for p, _ in bad[:5])
            + (" ..." if len(bad) > 5 else "")
        )
    labels_arr = np.asarray(labels, dtype=np.int32)
    present = set(labels)
    missing = [c for i, c in enumerate(class_names) if i not in present]
    if missing:
        raise DataError(f"{root}: class(es) {missing} have no readable image left; fix or remove them.")
    dtype = images[0].dtype
    stacked = np.stack([im.astype(dtype, copy=False) for im in images])
    return Split(stacked, labels_arr), class_names, channels, notes


def _stratified_split(split: Split, fraction: float, seed: int, what: str) -> tuple[Split, Split | None]:
    """Move about `fraction` of every class (at least one image each) out of `split`."""
    if not fraction:
        return split, None
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"{what} must be in [0, 1), got {fraction!r}")
    rng = np.random.default_rng(seed)
    take = []
    for c in np.unique(split.labels):
        idx = np.flatnonzero(split.labels == c)
        if len(idx) < 2:
            raise DataError(
                f"cannot hold out a {what} of {fraction}: class {int(c)} has only {len(idx)} image(s); "
                f"add images, or set the {what} to 0"
            )
        n = max(1, int(round(len(idx) * fraction)))
        take.extend(rng.permutation(idx)[:n].tolist())
    mask = np.zeros(len(split), bool)
    mask[take] = True
    return (Split(split.images[~mask], split.labels[~mask]), Split(split.images[mask], split.labels[mask]))


def load_digits(input_shape=(75, 75, 1)) -> tuple[Split, Split]:
    """scikit-learn's digits at `input_shape` (channels default 1): (train 1,437, test 360); labels are the digits."""
    try:
        from sklearn.datasets import load_digits as sk_load_digits
    except ImportError:
        raise DataError("the built-in 'digits' set needs scikit-learn: pip install 'anyshape[demo]'") from None
    size_hw, channels = _size_and_channels(input_shape)
    channels = channels or 1
    bunch = sk_load_digits()
    pixels = np.rint(bunch.images * (255.0 / 16.0)).astype(np.uint8)[..., None]  # (1797, 8, 8, 1)
    images = np.stack([fit_image(p, size_hw) for p in pixels])
    if channels != 1:
        images = np.repeat(images, channels, axis=-1)
    labels = bunch.target.astype(np.int32)
    from sklearn.model_selection import train_test_split

    tr, te = train_test_split(np.arange(len(labels)), test_size=360, stratify=labels, random_state=0)
    return Split(images[tr], labels[tr]), Split(images[te], labels[te])


def load_dataset(
    data,
    input_shape,
    *,
    val_split: float = 0.1,
    test_split: float = 0.2,
    seed: int = 0,
    skip_bad_images: bool = False,
    progress=None,
) -> Dataset:
    """Load `data` ('digits' or a folder path) at `input_shape` ((H, W) or (H, W, C)), split it.

    A folder with `train/` and `test/` (optionally `val/`) subfolders uses them as given;
    otherwise `test_split` and then `val_split` (fractions, per class) are held out with `seed`.
    The digits set has its fixed test split; `val_split` is taken from its training part.
    """
    notes: list[str] = []
    val: Split | None
    test: Split | None
    if str(data) == "digits" and not Path(str(data)).exists():
        train, test = load_digits(input_shape)
        names, channels = [str(i) for i in range(10)], train.images.shape[-1]
        train, val = _stratified_split(train, val_split, seed, "validation split")
        return Dataset(train, val, test, names, channels, "digits", notes)
    root = Path(data)
    sub = {p.name for p in root.iterdir() if p.is_dir()} if root.is_dir() else set()
    if "train" in sub and ("test" in sub or "val" in sub):
        train, names, channels, notes = load_folder(
            root / "train", input_shape, skip_bad_images=skip_bad_images, progress=progress
        )
        shape = tuple(input_shape)[:2] + (channels,)
        val = test = None
        for part in ("val", "test"):
            if part in sub:
                split, part_names, _, part_notes = load_folder(root / part, shape, skip_bad_images=skip_bad_images)
                if part_names != names:
                    raise DataError(
                        f"{root / part} has classes {part_names}, but {root / 'train'} has {names}; they must match."
                    )
                notes += [f"{part}: {n}" for n in part_notes]
                val, test = (split, test) if part == "val" else (val, split)
        if val is None:
            train, val = _stratified_split(train, val_split, seed, "validation split")
        return Dataset(train, val, test, names, channels, str(root), notes)
    everything, names, channels, notes = load_folder(
        root, input_shape, skip_bad_images=skip_bad_images, progress=progress
    )
    train, test = _stratified_split(everything, test_split, seed, "test split")
    train, val = _stratified_split(train, val_split, seed + 1, "validation split")
    return Dataset(train, val, test, names, channels, str(root), notes)
