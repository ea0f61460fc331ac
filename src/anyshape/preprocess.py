"""Input preprocessing for InceptionV3: pixel scaling, image/array loading, resize and crop.

``preprocess_input`` scales pixels the way a weight set was trained ("tf": [-1, 1], Keras'
InceptionV3 default; "torch": ImageNet mean/std). It works for any channel count and both data
formats, on numpy arrays (always returning a new float32 array) and on backend tensors.

``load_image``, ``load_array``, ``resize`` and ``resize_shorter_and_center_crop`` use numpy and
Pillow only; nothing here imports a deep-learning framework unless a tensor (or an unresolved
``data_format``) needs it.
"""

from __future__ import annotations

import io
import math
import stat
import threading
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any, Literal

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from anyshape.errors import Message

# The scaling and resize constants live here, at the bottom of the data layer, where the
# functions that apply them are; `anyshape.data_config` (which imports this module) re-exports
# them beside `DataConfig`, so there is one value of each.
IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)
# Keras' imagenet_utils "caffe" mode (ResNet, VGG): RGB -> BGR, minus these BGR means, in 0..255
CAFFE_MEAN: tuple[float, float, float] = (103.939, 116.779, 123.68)
PREPROCESS_MODES: tuple[str, ...] = ("tf", "torch", "caffe", "raw")
DEFAULT_CROP_PCT = 0.875
DEFAULT_INTERPOLATION = "bicubic"

DataFormat = Literal["channels_last", "channels_first"]
PreprocessMode = Literal["tf", "torch", "caffe", "raw"]

DEFAULT_MAX_PIXELS = 89_478_485
"""Same as Pillow's default ``Image.MAX_IMAGE_PIXELS`` (about 0.25 GB of 24-bit RGB)."""

_RESAMPLING: dict[str, Image.Resampling] = {
    "nearest": Image.Resampling.NEAREST,
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "lanczos": Image.Resampling.LANCZOS,
    "box": Image.Resampling.BOX,
    "hamming": Image.Resampling.HAMMING,
}
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
    "`anyshape train` reads class folders of them and load_array reads one in Python "
    "(predict, features and quantize read image files only)."
)


# --------------------------------------------------------------------------------------------
# preprocess_input
# --------------------------------------------------------------------------------------------


def _resolve_data_format(data_format: str | None) -> str:
    if data_format is None:
        import keras  # deferred: only needed when the caller leaves the format to Keras

        data_format = keras.config.image_data_format()
    if data_format not in ("channels_last", "channels_first"):
        raise ValueError(
            f"data_format must be 'channels_last', 'channels_first' or None (use "
            f"keras.config.image_data_format()), got {data_format!r}."
        )
    return data_format


def _channel_axis(ndim: int, data_format: str) -> int:
    """Channel axis of an image batch (ndim >= 4) or a single image (ndim == 3)."""
    if data_format == "channels_last":
        return ndim - 1
    return 0 if ndim == 3 else 1


def _per_channel_constant(
    name: str,
    value: float | Sequence[float] | None,
    default: Sequence[float],
    num_channels: int | None,
    mode: str = "torch",
    scale: str = "0..1 scale (pixels are divided by 255 first)",
) -> np.ndarray:
    """Validate ``mean``/``std`` for mode "torch" (or "caffe"); returns a float32 vector or a 0-d
    scalar.

    ``num_channels`` is None for inputs without a channel axis (fewer than 3 dimensions).
    """
    if value is None:
        if num_channels is None:
            raise ValueError(
                f"mode={mode!r} needs a channel axis (a 3-D image or 4-D batch) to apply the "
                f"default ImageNet {name}; for other inputs pass a scalar {name}=."
            )
        if num_channels != len(default):
            raise ValueError(
                f"mode={mode!r} has a default ImageNet {name} {tuple(default)} only for 3-channel "
                f"RGB input, but the input has {num_channels} channels. Pass {name}= as a scalar "
                f"or as {num_channels} values, in the {scale}."
            )
        value = default
    constant = np.asarray(value, dtype=np.float32)
    if constant.ndim == 0:
        return constant
    if num_channels is None:
        raise ValueError(
            f"A per-channel {name} needs an input with a channel axis (a 3-D image or 4-D batch); "
            f"pass a scalar {name} for inputs without one."
        )
    if constant.ndim != 1 or constant.shape[0] != num_channels:
        raise ValueError(f"{name} must be a scalar or have one value per channel ({num_channels}), got {value!r}.")
    return constant


def _caffe(x, is_numpy: bool, axis: int | None, num_channels: int | None, mean, ndim: int):
    """Mode "caffe": 3 channels reversed (RGB -> BGR), then a (BGR) mean subtracted, 0..255."""
    mean_values = _per_channel_constant("mean", mean, CAFFE_MEAN, num_channels, mode="caffe", scale="0..255")
    if axis is not None and mean_values.ndim:
        broadcast_shape = [1] * ndim
        broadcast_shape[axis] = -1
        mean_values = mean_values.reshape(broadcast_shape)
    if is_numpy:
        pixels = np.asarray(x, dtype=np.float32)
        if num_channels == 3:
            pixels = np.flip(pixels, axis=axis)
        return (pixels - mean_values).astype(np.float32, copy=False)
    from keras import ops

    pixels = ops.cast(x, "float32")
    if num_channels == 3:
        pixels = ops.flip(pixels, axis=axis)
    return ops.subtract(pixels, ops.convert_to_tensor(mean_values))


def preprocess_input(
    x: Any,
    data_format: DataFormat | None = None,
    *,
    mode: PreprocessMode | None = None,
    mean: float | Sequence[float] | None = None,
    std: float | Sequence[float] | None = None,
) -> Any:
    """Scale raw pixels (0..255) to the range a pretrained InceptionV3 expects.

    The scaling is given by mode, mean and std. `anyshape.preprocess_input` (in
    `anyshape.weights.preprocessing`, above the registry) also takes ``weights=``, a weight set
    whose scaling to apply.

    Args:
        x: images with values in 0..255: a batch ``(N, H, W, C)`` / ``(N, C, H, W)``, a single
            image ``(H, W, C)`` / ``(C, H, W)``, or any array for mode "tf". A numpy array (or
            anything ``np.asarray`` accepts) or a Keras/backend tensor.
        data_format: "channels_last" (channel axis -1) or "channels_first" (axis 1 for a batch,
            0 for a single 3-D image). None means ``keras.config.image_data_format()``; it is
            only looked up when the mode needs the channel axis.
        mode: "tf" (default, Keras' and TF-slim's InceptionV3 weights): ``x / 127.5 - 1``, so
            0 -> -1 and 255 -> 1, for any channel count.
            "torch" (torchvision/timm weights): ``(x / 255 - mean) / std`` per channel.
            "caffe" (Keras' ResNet and VGG weights, as keras.applications.imagenet_utils): 3
            channels RGB -> BGR, then minus ``mean`` (default the BGR ImageNet mean
            ``(103.939, 116.779, 123.68)``) in the 0..255 scale; other channel counts are kept
            in order and need an explicit mean.
            "raw": the pixels unchanged, as float32 (networks that scale inside the graph:
            EfficientNet, ConvNeXt, MobileNetV3).
        mean, std: mode "torch" (both, in the 0..1 scale; default ImageNet's
            ``(0.485, 0.456, 0.406)`` and ``(0.229, 0.224, 0.225)``) and mode "caffe" (mean only,
            in the 0..255 scale, in BGR order for 3 channels). The defaults only fit 3 channels;
            any other channel count needs explicit values, one per channel or a scalar.

    Returns:
        For numpy input, a new float32 numpy array (``x`` is never modified). For a tensor, a
        float32 tensor of the same backend.

    Raises:
        ValueError: for an unknown mode or data_format, mean/std with mode "tf", or mean/std
            that do not match the channel count.
    """
    if mode is None:
        mode = "tf"
    if mode not in PREPROCESS_MODES:
        raise ValueError(f"mode must be one of {PREPROCESS_MODES}, got {mode!r}.")
    is_numpy = isinstance(x, (np.ndarray, np.generic, list, tuple, int, float))

    if mode == "raw":
        if mean is not None or std is not None:
            raise ValueError("mean and std do not apply to mode='raw', which passes the pixels unchanged.")
        if data_format is not None:
            _resolve_data_format(data_format)
        if is_numpy:
            return np.array(x, dtype=np.float32)
        from keras import ops

        return ops.cast(x, "float32")
    if mode == "caffe" and std is not None:
        raise ValueError("std does not apply to mode='caffe', which only subtracts a mean (0..255 scale).")

    if mode == "tf":
        if mean is not None or std is not None:
            raise ValueError("mean and std apply only to mode='torch'; mode='tf' always computes x / 127.5 - 1.")
        if data_format is not None:
            _resolve_data_format(data_format)  # still reject typos
        if is_numpy:
            return np.asarray(x, dtype=np.float32) / np.float32(127.5) - np.float32(1.0)
        from keras import ops

        return ops.subtract(ops.divide(ops.cast(x, "float32"), 127.5), 1.0)

    resolved_format = _resolve_data_format(data_format)
    shape = tuple(np.shape(x)) if is_numpy else tuple(x.shape)
    ndim = len(shape)
    axis = _channel_axis(ndim, resolved_format) if ndim >= 3 else None
    num_channels = shape[axis] if axis is not None else None
    if axis is not None and num_channels is None:
        raise ValueError(
            f"mode={mode!r} needs a known channel count, but the input shape {shape} has None on "
            f"the channel axis {axis} ({resolved_format})."
        )
    if mode == "caffe":
        return _caffe(x, is_numpy, axis, num_channels, mean, ndim)
    mean_values = _per_channel_constant("mean", mean, IMAGENET_MEAN, num_channels)
    std_values = _per_channel_constant("std", std, IMAGENET_STD, num_channels)
    if np.any(std_values == 0):
        raise ValueError(f"std must be non-zero, got {std!r}.")
    if axis is not None:  # per-channel vectors broadcast along the channel axis
        broadcast_shape = [1] * ndim
        broadcast_shape[axis] = -1
        mean_values = mean_values.reshape(broadcast_shape) if mean_values.ndim else mean_values
        std_values = std_values.reshape(broadcast_shape) if std_values.ndim else std_values

    if is_numpy:
        scaled = np.asarray(x, dtype=np.float32) / np.float32(255.0)
        return ((scaled - mean_values) / std_values).astype(np.float32, copy=False)
    from keras import ops

    scaled = ops.divide(ops.cast(x, "float32"), 255.0)
    return ops.divide(ops.subtract(scaled, ops.convert_to_tensor(mean_values)), ops.convert_to_tensor(std_values))


def input_channels(x: Any, data_format: str | None) -> int | None:
    """The channel count of images `x` (a batch or one image) in `data_format`; None for fewer
    than 3 dimensions. Looks up `keras.config.image_data_format()` only for data_format None."""
    shape = tuple(np.shape(x)) if not hasattr(x, "shape") else tuple(x.shape)
    if len(shape) < 3:
        return None
    return shape[_channel_axis(len(shape), _resolve_data_format(data_format))]


# --------------------------------------------------------------------------------------------
# Loading images and arrays
# --------------------------------------------------------------------------------------------

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


def load_array(path: str | Path) -> np.ndarray:
    """Read a ``.npy`` file holding one image ``(H, W, C)`` (any C) or ``(H, W)``.

    Values are taken as they are (no scaling); use the same 0..255 range as
    :func:`load_image` if the array feeds :func:`preprocess_input`.

    Returns:
        float32 array of shape ``(H, W, C)`` (a 2-D array gets ``C = 1``).

    Raises:
        ImageLoadError: missing, empty or unreadable file, pickled objects, non-numeric
            dtype, wrong number of dimensions, or non-finite values.
    """
    path = Path(path)
    _check_readable_file(path, "a .npy array")
    try:
        array = np.load(path, allow_pickle=False)
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


# --------------------------------------------------------------------------------------------
# Resizing and cropping
# --------------------------------------------------------------------------------------------


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
