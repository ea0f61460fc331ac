"""Input preprocessing: pixel scaling, image/array loading, resize and crop, in one namespace.

Three modules with one job each, re-exported here (the names users and the tests import):

* `anyshape.pixel_scaling`: ``preprocess_input`` and the scaling constants (ImageNet mean/std,
  Caffe's BGR mean, the modes);
* `anyshape.image_files`: ``load_image``, ``load_array``, ``load_pixels`` (either, by suffix:
  what training and inference both read), ``file_channels``, ``check_image_file``,
  ``ImageLoadError``;
* `anyshape.resizing`: ``resize``, ``center_crop``, ``resize_shorter_and_center_crop`` and the
  default crop fraction and interpolation.

They use numpy and Pillow only; nothing here imports a deep-learning framework unless a tensor
(or an unresolved ``data_format``) needs it.
"""

from __future__ import annotations

from anyshape.image_files import (
    DEFAULT_MAX_PIXELS,
    NPY_HINT,
    ImageLoadError,
    check_image_file,
    file_channels,
    load_array,
    load_image,
    load_pixels,
    to_uint8,
)
from anyshape.pixel_scaling import (
    CAFFE_MEAN,
    IMAGENET_MEAN,
    IMAGENET_STD,
    PREPROCESS_MODES,
    DataFormat,
    PreprocessMode,
    input_channels,
    preprocess_input,
)
from anyshape.resizing import (
    DEFAULT_CROP_PCT,
    DEFAULT_INTERPOLATION,
    center_crop,
    resize,
    resize_shorter_and_center_crop,
    shorter_side_resize_size,
)

__all__ = [
    "CAFFE_MEAN",
    "DEFAULT_CROP_PCT",
    "DEFAULT_INTERPOLATION",
    "DEFAULT_MAX_PIXELS",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "NPY_HINT",
    "PREPROCESS_MODES",
    "DataFormat",
    "ImageLoadError",
    "PreprocessMode",
    "center_crop",
    "check_image_file",
    "file_channels",
    "input_channels",
    "load_array",
    "load_image",
    "load_pixels",
    "preprocess_input",
    "resize",
    "resize_shorter_and_center_crop",
    "shorter_side_resize_size",
    "to_uint8",
]
