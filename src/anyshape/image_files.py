"""Reading image files and ``.npy`` arrays into float32 ``(H, W, C)`` pixels, 0..255.

``load_image`` decodes with Pillow (one mode table: what it converts and what ``file_channels``
reports), ``load_array`` reads one ``.npy`` image, and ``load_pixels`` picks between them by the
file's suffix: the one reader training (`anyshape.datasets`) and inference (`engine.ImageReader`)
share. Each failure is an ``ImageLoadError`` that names the file and the reason.
"""

from __future__ import annotations

import io
import stat
import threading
import warnings
from pathlib import Path
from typing import IO

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from anyshape.errors import Message

DEFAULT_MAX_PIXELS = 89_478_485
"""Same as Pillow's default ``Image.MAX_IMAGE_PIXELS`` (about 0.25 GB of 24-bit RGB)."""

# The one Pillow mode table: what `load_image` converts and `file_channels` reports.
_HIGH_BIT_DEPTH_MODES = frozenset({"I;16", "I;16L", "I;16B", "I;16N", "I"})
_GRAY_8BIT_MODES = frozenset({"1", "L", "LA", "La"})
_GRAY_MODES = _GRAY_8BIT_MODES | _HIGH_BIT_DEPTH_MODES | {"F"}
_MODES_WITH_ALPHA = frozenset({"RGBA", "RGBa", "LA", "La", "PA"})
_UINT16_MAX = 65535.0


class ImageLoadError(ValueError):
    """A file could not be read as an image or array; the message names the file and why."""


# What to do with data Pillow cannot hold (other channel counts), said for the CLI and for Python.
NPY_HINT = (
    "Data with other channel counts can be saved as .npy arrays, one (H, W, C) image each: "
    "`anyshape train` reads class folders of them, predict, features and quantize read them as "
    "they read image files, and load_array reads one in Python."
)


_pillow_limit_lock = threading.Lock()


def _decode_image(
    path: Path, channels: int, max_pixels: int | None, apply_exif_orientation: bool, data: IO[bytes] | None = None
) -> np.ndarray:
    """Open, check, orient and convert one image file; every failure becomes ImageLoadError."""
    try:
        with warnings.catch_warnings():
            # We apply our own max_pixels limit; Pillow's warning would only be noise.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            try:
                return _decode_open_image(path, channels, max_pixels, apply_exif_orientation, data)
            except Image.DecompressionBombError as error:
                pillow_hard_limit = 2 * (Image.MAX_IMAGE_PIXELS or 0)
                if max_pixels is not None and max_pixels <= pillow_hard_limit:
                    raise _too_many_pixels(path, str(error), max_pixels) from error
            # The caller allows more pixels than Pillow's global limit: lift it for this file.
            with _pillow_limit_lock:
                saved_limit = Image.MAX_IMAGE_PIXELS
                Image.MAX_IMAGE_PIXELS = None
                try:
                    return _decode_open_image(path, channels, max_pixels, apply_exif_orientation, data)
                finally:
                    Image.MAX_IMAGE_PIXELS = saved_limit
    except ImageLoadError:
        raise
    except UnidentifiedImageError as error:
        if path.suffix.lower() == ".npy":
            raise ImageLoadError(f"{path}: a .npy array, not an image file. {NPY_HINT}") from error
        raise ImageLoadError(
            f"{path}: not an image Pillow can read (unknown or unsupported format). {NPY_HINT}"
        ) from error
    except PermissionError as error:  # an OSError, but nothing is wrong with the image itself
        raise _permission_denied(path) from error
    except (OSError, SyntaxError, ValueError, EOFError, IndexError, KeyError) as error:
        raise ImageLoadError(f"{path}: corrupt or truncated image ({error}).") from error


def _decode_open_image(
    path: Path, channels: int, max_pixels: int | None, apply_exif_orientation: bool, data: IO[bytes] | None = None
) -> np.ndarray:
    with Image.open(path if data is None else data) as image:
        _check_pixel_count(path, image.size, max_pixels)
        image.load()
        # Inside the `with`: TIFF keeps its orientation tag on the open image only.
        oriented = ImageOps.exif_transpose(image) if apply_exif_orientation else image
        if oriented.mode == "F" and not np.isfinite(np.asarray(oriented)).all():
            # no scaling gives NaN a pixel value: refused, as load_array refuses such arrays
            raise ImageLoadError(f"{path}: a float image (Pillow mode F) with NaN or infinite pixels.")
        try:
            return _image_to_array(oriented, channels)
        except ValueError as error:  # Pillow has no conversion for this mode
            raise ImageLoadError(
                f"{path}: cannot convert Pillow mode {oriented.mode!r} to {channels} channel(s) "
                f"({error}). Convert the file to PNG. {NPY_HINT}"
            ) from error


def _check_pixel_count(path: Path, size_wh: tuple[int, int], max_pixels: int | None) -> None:
    width, height = size_wh
    if max_pixels is not None and width * height > max_pixels:
        raise _too_many_pixels(path, f"{width}x{height} = {width * height} pixels", max_pixels)


def _too_many_pixels(path: Path, what: str, max_pixels: int) -> ImageLoadError:
    # the CLI has no spelling of "no limit", and only predict and features have --max-pixels
    return ImageLoadError(
        Message(
            "{path}: refused as a possible decompression bomb: {what} is over the limit of {limit} pixels. "
            "If you trust this file, raise the limit: {max_pixels=}{python:, or max_pixels=None for no limit}"
            "{cli: of predict and features}.",
            path=path,
            what=what,
            limit=max_pixels,
        )
    )


def _permission_denied(path: Path) -> ImageLoadError:
    return ImageLoadError(
        f"{path}: permission denied: this user may not read the file (or search a folder above it); "
        "change its permissions, or run as a user who may read it."
    )


def _check_readable_file(path: Path, kind: str) -> None:
    """The checks before decoding, each with its own reason: missing, not allowed, not a file, empty."""
    try:
        st = path.stat()
    except (FileNotFoundError, NotADirectoryError):
        raise ImageLoadError(f"{path}: no such file.") from None
    except PermissionError:
        raise _permission_denied(path) from None
    except OSError as error:  # a loop of links, a name too long, ...
        raise ImageLoadError(f"{path}: cannot be read ({error.strerror or error}).") from None
    if not stat.S_ISREG(st.st_mode):
        raise ImageLoadError(f"{path}: not a regular file.")
    if st.st_size == 0:
        raise ImageLoadError(f"{path}: the file is empty (0 bytes), not {kind}.")


def _high_bit_depth_to_gray(image: Image.Image) -> np.ndarray:
    """Modes I;16* and I (16-bit PNG/TIFF) scaled to 0..255; F (float) clipped to 0..255. Returns (H, W).

    A float image is taken in the 0..255 scale and clipped to it, as Pillow's own conversions of
    mode F do: then an image gives the same pixels at its native size as at a fixed size, whose
    resize runs on Pillow's 8-bit path (`to_uint8`); unclipped, values outside 0..255 went
    beyond [-1, 1] at the native size only.
    """
    values = np.asarray(image).astype(np.float32)
    if image.mode == "F":
        return np.clip(values, 0.0, 255.0)
    return np.clip(values, 0.0, _UINT16_MAX) * np.float32(255.0 / _UINT16_MAX)


def _has_alpha(image: Image.Image) -> bool:
    return image.mode in _MODES_WITH_ALPHA or (image.mode == "P" and "transparency" in image.info)


def _native_channels(image: Image.Image) -> int:
    """1 for gray (alpha or not, 8-bit, 16-bit or float), 4 for colour with alpha, else 3."""
    if image.mode in _GRAY_MODES:
        return 1
    return 4 if _has_alpha(image) else 3


def _image_to_array(image: Image.Image, channels: int) -> np.ndarray:
    """Convert a decoded Pillow image to float32 (H, W, channels) in 0..255."""
    if image.mode in _HIGH_BIT_DEPTH_MODES or image.mode == "F":
        gray = _high_bit_depth_to_gray(image)
        planes = [gray] * min(channels, 3)
        if channels == 4:
            planes.append(np.full_like(gray, 255.0))
        return np.stack(planes, axis=-1)

    has_alpha = _has_alpha(image)
    if image.mode == "P":
        # Expand the palette first (through RGBA when it has transparency, which avoids
        # Pillow's warning about byte transparency and keeps alpha for channels=4).
        image = image.convert("RGBA" if has_alpha else "RGB")
    if channels == 1:
        if image.mode in _GRAY_8BIT_MODES:
            converted = image.convert("L")
        else:
            converted = image.convert("RGB").convert("L")
    elif channels == 3:
        converted = image.convert("RGB")
    else:  # channels == 4
        converted = image.convert("RGBA") if has_alpha else image.convert("RGB").convert("RGBA")
    array = np.asarray(converted, dtype=np.float32)
    if array.ndim == 2:
        array = array[:, :, None]
    return array


def load_image(
    path: str | Path,
    channels: int = 3,
    *,
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
    apply_exif_orientation: bool = True,
    data: bytes | IO[bytes] | None = None,
) -> np.ndarray:
    """Read an image file into a float32 ``(H, W, channels)`` numpy array with values 0..255.

    Conversion rules (by Pillow mode of the decoded file):

    * ``channels=1``: luminance, Pillow's ``convert("L")`` (ITU-R 601-2:
      ``L = 0.299 R + 0.587 G + 0.114 B``); alpha is dropped.
    * ``channels=3``: RGB. Gray images are replicated to three equal channels; palette and
      CMYK images are converted by Pillow; **alpha is dropped, not composited**: pixels keep
      the colour stored under them even where fully transparent.
    * ``channels=4``: RGBA. Images without alpha get an opaque alpha channel (255); palette
      transparency becomes alpha.
    * 16-bit images (modes ``I;16*`` and ``I``, e.g. 16-bit PNG/TIFF) are single-channel and
      scaled by ``255 / 65535`` to 0..255, then replicated as for gray images. Pillow decodes
      16-bit colour PNGs to 8-bit RGB itself. Float images (mode ``F``, e.g. float TIFF) are
      taken in the 0..255 scale and clipped to it, as Pillow converts them; NaN or infinite
      pixels are refused.
    * Multi-frame files (GIF, TIFF) give their first frame.

    Other channel counts are not images Pillow can hold: save such data as ``.npy`` and use
    :func:`load_array`.

    Args:
        path: image file (any format Pillow reads: JPEG, PNG, GIF, BMP, TIFF, WebP, ...).
        channels: 1, 3 or 4.
        max_pixels: refuse images with more pixels than this (decompression-bomb guard; default
            is Pillow's default limit). None disables the check. A limit above twice Pillow's
            process-wide ``Image.MAX_IMAGE_PIXELS`` lifts that global while this file is opened
            (under a lock), since Pillow would refuse the file on its own otherwise.
        apply_exif_orientation: rotate/flip according to the EXIF orientation tag (as a photo
            viewer would) before converting.
        data: the file's bytes, or the file opened as a seekable binary file (e.g. on object
            storage, which Pillow then reads only as far as it needs); ``path`` then only names
            the image in messages.

    Returns:
        float32 array of shape ``(height, width, channels)``, values in 0..255.

    Raises:
        ValueError: channels is not 1, 3 or 4.
        ImageLoadError: the file is missing, empty, not an image, corrupt or truncated, or
            over max_pixels; the message names the file and the reason.
    """
    if channels not in (1, 3, 4):
        raise ValueError(f"load_image supports channels=1 (gray), 3 (RGB) or 4 (RGBA), got {channels!r}. {NPY_HINT}")
    if data is not None:
        stream = io.BytesIO(data) if isinstance(data, bytes) else data
        if not stream.read(1):
            raise ImageLoadError(f"{path}: the file is empty (0 bytes), not an image.")
        return _decode_image(Path(path), channels, max_pixels, apply_exif_orientation, stream)
    path = check_image_file(path)
    return _decode_image(path, channels, max_pixels, apply_exif_orientation)


def check_image_file(path: str | Path) -> Path:
    """What `load_image` checks before it opens a file: it exists, it is a regular file (a
    FIFO or a device would block a reader for ever, or never end), and it is not empty.
    Raises ImageLoadError with the path and the reason; returns the path."""
    path = Path(path)
    _check_readable_file(path, "an image")
    return path


def file_channels(path: str | Path) -> int:
    """The channel count a file holds by itself, from its header only (no pixels decoded).

    Images (by the Pillow mode table `load_image` converts with): 1 for gray (with or without
    alpha; 16-bit and float too), 4 for colour with alpha (palette transparency included), 3
    for other colour. A `.npy` array: its own channel count (1 for a 2-D array). Pillow's and
    numpy's errors propagate (a caller listing many files reports them per file).
    """
    path = Path(path)
    if path.suffix.lower() == ".npy":
        array = np.load(path, mmap_mode="r", allow_pickle=False)
        return int(array.shape[2]) if array.ndim == 3 else 1
    with Image.open(path) as image:
        return _native_channels(image)


def to_uint8(image: np.ndarray) -> np.ndarray:
    """0..255 float pixels rounded to uint8, for Pillow's 8-bit resize path (as timm and
    torchvision resize): exact for 8-bit files, under half a level off for 16-bit ones."""
    return np.clip(np.rint(image), 0, 255).astype(np.uint8)


def load_array(path: str | Path, *, data: bytes | IO[bytes] | None = None) -> np.ndarray:
    """Read a ``.npy`` file holding one image ``(H, W, C)`` (any C) or ``(H, W)``.

    Values are taken as they are (no scaling); use the same 0..255 range as
    :func:`load_image` if the array feeds :func:`preprocess_input`. ``data``: the file's bytes,
    or the file opened as a binary file, as for :func:`load_image` (``path`` then only names it).

    Returns:
        float32 array of shape ``(H, W, C)`` (a 2-D array gets ``C = 1``).

    Raises:
        ImageLoadError: missing, empty or unreadable file, pickled objects, non-numeric
            dtype, wrong number of dimensions, or non-finite values.
    """
    path = Path(path)
    source: Path | IO[bytes] = path
    if data is None:
        _check_readable_file(path, "a .npy array")
    else:
        source = io.BytesIO(data) if isinstance(data, bytes) else data
    try:
        array = np.load(source, allow_pickle=False)
    except PermissionError:
        raise _permission_denied(path) from None
    except (ValueError, OSError, EOFError) as error:
        raise ImageLoadError(f"{path}: not a readable .npy array ({error}).") from error
    if isinstance(array, np.lib.npyio.NpzFile):
        array.close()
        raise ImageLoadError(f"{path}: is an .npz archive; save a single array with numpy.save.")
    if not (np.issubdtype(array.dtype, np.number) or array.dtype == np.bool_):
        raise ImageLoadError(f"{path}: array dtype {array.dtype} is not numeric.")
    if np.iscomplexobj(array):
        raise ImageLoadError(f"{path}: array dtype {array.dtype} is complex, not pixel values.")
    if array.ndim == 2:
        array = array[:, :, None]
    if array.ndim != 3 or 0 in array.shape:
        raise ImageLoadError(f"{path}: expected one image of shape (H, W, C) or (H, W), got shape {array.shape}.")
    result = array.astype(np.float32)
    if not np.all(np.isfinite(result)):
        raise ImageLoadError(f"{path}: array contains NaN or infinite values.")
    return result


def load_pixels(
    path: str | Path,
    channels: int = 3,
    *,
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
    data: bytes | IO[bytes] | None = None,
) -> np.ndarray:
    """One input file as float32 ``(H, W, channels)`` pixels: what training and inference read.

    A ``.npy`` file is read by :func:`load_array` (values as they are; its channel count must be
    ``channels``), any other file by :func:`load_image` (``channels`` 1, 3 or 4; ``max_pixels``
    applies to it). ``data``: the file's bytes or the open file, ``path`` then only names it.

    Raises:
        ImageLoadError: what :func:`load_image` or :func:`load_array` refuses, or an array whose
            channel count is not ``channels``.
    """
    if Path(path).suffix.lower() == ".npy":
        array = load_array(path, data=data)
        if array.shape[2] != channels:
            raise ImageLoadError(f"{path}: the array has {array.shape[2]} channels, the model takes {channels}.")
        return array
    return load_image(path, channels, max_pixels=max_pixels, data=data)
