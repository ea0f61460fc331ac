"""Tests for anyshape.preprocess on real photos shipped with scikit-image (offline)."""

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from PIL import Image

from anyshape.preprocess import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    ImageLoadError,
    center_crop,
    file_channels,
    load_array,
    load_image,
    load_pixels,
    preprocess_input,
    resize,
    resize_shorter_and_center_crop,
    shorter_side_resize_size,
)

skimage_data = pytest.importorskip("skimage.data")

EXIF_ORIENTATION_TAG = 0x0112


@pytest.fixture(scope="module")
def astronaut() -> np.ndarray:
    return skimage_data.astronaut()  # 512x512 RGB uint8


@pytest.fixture(scope="module")
def camera() -> np.ndarray:
    return skimage_data.camera()  # 512x512 gray uint8


@pytest.fixture(scope="module")
def chelsea() -> np.ndarray:
    return skimage_data.chelsea()  # 300x451 RGB uint8 (landscape)


@pytest.fixture(scope="module")
def coffee() -> np.ndarray:
    return skimage_data.coffee()  # 400x600 RGB uint8


# ------------------------------------------------------------------------------------------
# preprocess_input
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("channels", [1, 2, 3, 4, 7])
def test_tf_mode_maps_0_to_minus_1_and_255_to_1_for_any_channel_count(channels):
    x = np.zeros((2, 5, 6, channels), np.uint8)
    x[0] = 255
    x[1, 0, 0] = 128
    out = preprocess_input(x, "channels_last")
    assert out.dtype == np.float32 and out.shape == x.shape
    np.testing.assert_array_equal(out[0], 1.0)
    assert out[1, 1, 1, 0] == -1.0
    assert out[1, 0, 0, 0] == pytest.approx(128 / 127.5 - 1, abs=1e-6)


def test_tf_mode_does_not_modify_input_and_returns_new_array(astronaut):
    x = astronaut.astype(np.float32)
    before = x.copy()
    out = preprocess_input(x, "channels_last")
    np.testing.assert_array_equal(x, before)
    assert out is not x and not np.shares_memory(out, x)
    np.testing.assert_allclose(out, before / 127.5 - 1, atol=1e-6)


def test_tf_mode_matches_keras_inception_v3_preprocess_input(astronaut):
    from keras.applications import inception_v3

    batch = astronaut[None].astype(np.float32)
    expected = inception_v3.preprocess_input(batch.copy())
    np.testing.assert_allclose(preprocess_input(batch, "channels_last"), expected, atol=1e-6)


def test_torch_mode_matches_keras_imagenet_utils_torch_mode(astronaut):
    from keras.applications import imagenet_utils

    batch = astronaut[None].astype(np.float32)
    expected = imagenet_utils.preprocess_input(batch.copy(), data_format="channels_last", mode="torch")
    out = preprocess_input(batch, "channels_last", mode="torch")
    np.testing.assert_allclose(out, expected, atol=1e-5)


@pytest.mark.parametrize("data_format", ["channels_last", "channels_first"])
def test_caffe_mode_matches_keras_imagenet_utils_caffe_mode(astronaut, data_format):
    """ResNet's and VGG's preprocess_input: RGB -> BGR, minus the BGR ImageNet mean, 0..255."""
    from keras.applications import imagenet_utils

    batch = np.stack([astronaut, astronaut[::-1]]).astype(np.float32)
    if data_format == "channels_first":
        batch = np.ascontiguousarray(batch.transpose(0, 3, 1, 2))
    expected = imagenet_utils.preprocess_input(batch.copy(), data_format=data_format, mode="caffe")
    out = preprocess_input(batch, data_format, mode="caffe")
    np.testing.assert_allclose(out, expected, atol=1e-4)
    assert out.dtype == np.float32 and not np.shares_memory(out, batch)


def test_caffe_mode_other_channel_counts_keep_their_order_and_need_a_mean():
    gray = np.full((1, 2, 2, 1), 120.0, np.float32)
    with pytest.raises(ValueError, match=r"mode='caffe' has a default ImageNet mean .* only for 3-channel"):
        preprocess_input(gray, "channels_last", mode="caffe")
    np.testing.assert_allclose(preprocess_input(gray, "channels_last", mode="caffe", mean=100.0), 20.0)
    rgba = np.arange(8, dtype=np.float32).reshape(1, 1, 2, 4)
    out = preprocess_input(rgba, "channels_last", mode="caffe", mean=[1, 2, 3, 4])
    np.testing.assert_allclose(out, rgba - np.array([1, 2, 3, 4], np.float32))  # not reordered
    with pytest.raises(ValueError, match="std does not apply to mode='caffe'"):
        preprocess_input(gray, "channels_last", mode="caffe", mean=1.0, std=2.0)


def test_raw_mode_passes_pixels_unchanged_as_float32():
    x = np.arange(12, dtype=np.uint8).reshape(1, 2, 2, 3)
    out = preprocess_input(x, "channels_last", mode="raw")
    assert out.dtype == np.float32 and np.array_equal(out, x.astype(np.float32))
    with pytest.raises(ValueError, match="do not apply to mode='raw'"):
        preprocess_input(x, "channels_last", mode="raw", mean=0.5)


def test_data_config_carries_the_caffe_and_raw_modes():
    from anyshape.data_config import DataConfig

    pixel = np.array([[[10.0, 20.0, 30.0]]], np.float32)
    assert DataConfig(mode="caffe").preprocess_kwargs() == {"mode": "caffe", "mean": None}
    np.testing.assert_allclose(DataConfig(mode="caffe").apply(pixel), [[[30 - 103.939, 20 - 116.779, 10 - 123.68]]])
    np.testing.assert_array_equal(DataConfig(mode="raw").apply(pixel), pixel)
    again = DataConfig.from_dict(DataConfig(mode="caffe", mean=(1.0, 2.0, 3.0)).to_dict())
    assert again == DataConfig(mode="caffe", mean=(1.0, 2.0, 3.0))


def test_torch_mode_maps_imagenet_mean_pixel_to_zero():
    x = np.empty((1, 2, 2, 3), np.float32)
    x[...] = np.array(IMAGENET_MEAN, np.float32) * 255
    x[0, 1, 1] = 255.0
    out = preprocess_input(x, "channels_last", mode="torch")
    np.testing.assert_allclose(out[0, 0, 0], 0.0, atol=1e-6)
    expected_white = (1 - np.array(IMAGENET_MEAN)) / np.array(IMAGENET_STD)
    np.testing.assert_allclose(out[0, 1, 1], expected_white, rtol=1e-6)


@pytest.mark.parametrize("mode", ["tf", "torch", "caffe", "raw"])
def test_channels_first_equals_transposed_channels_last(astronaut, mode):
    batch = np.stack([astronaut, astronaut[::-1]]).astype(np.float32)  # (2, H, W, 3)
    last = preprocess_input(batch, "channels_last", mode=mode)
    first = preprocess_input(batch.transpose(0, 3, 1, 2), "channels_first", mode=mode)
    np.testing.assert_allclose(first, last.transpose(0, 3, 1, 2), rtol=1e-6, atol=1e-6)
    # A single 3-D image in channels_first has its channels on axis 0.
    single = preprocess_input(astronaut.transpose(2, 0, 1), "channels_first", mode=mode)
    np.testing.assert_allclose(single, last[0].transpose(2, 0, 1), rtol=1e-6, atol=1e-6)


@settings(max_examples=40, deadline=None)
@given(
    hnp.arrays(
        np.float32,
        hnp.array_shapes(min_dims=4, max_dims=4, min_side=1, max_side=6),
        elements=st.floats(0, 255, width=32),
    ),
    st.data(),
)
def test_property_torch_mode_any_channels_is_layout_independent(x, data):
    channels = x.shape[-1]
    mean = data.draw(st.lists(st.floats(0, 1), min_size=channels, max_size=channels))
    std = data.draw(st.lists(st.floats(0.05, 2), min_size=channels, max_size=channels))
    last = preprocess_input(x, "channels_last", mode="torch", mean=mean, std=std)
    first = preprocess_input(x.transpose(0, 3, 1, 2), "channels_first", mode="torch", mean=mean, std=std)
    np.testing.assert_allclose(first, last.transpose(0, 3, 1, 2), rtol=1e-5, atol=1e-5)
    expected = (x / 255.0 - np.array(mean)) / np.array(std)
    np.testing.assert_allclose(last, expected, rtol=1e-4, atol=1e-4)


def test_torch_mode_other_channel_counts_need_explicit_mean_std():
    x = np.full((1, 4, 4, 1), 51.0, np.float32)
    with pytest.raises(ValueError, match="only for 3-channel.*1 channels"):
        preprocess_input(x, "channels_last", mode="torch")
    out = preprocess_input(x, "channels_last", mode="torch", mean=0.1, std=0.5)
    np.testing.assert_allclose(out, (0.2 - 0.1) / 0.5, rtol=1e-6)
    with pytest.raises(ValueError, match="one value per channel"):
        preprocess_input(np.zeros((1, 4, 4, 5)), "channels_last", mode="torch", mean=[0.5] * 3, std=[0.2] * 5)


def test_argument_errors_are_clear():
    x = np.zeros((1, 4, 4, 3))
    with pytest.raises(ValueError, match="mode must be one of"):
        preprocess_input(x, "channels_last", mode="Caffe")
    with pytest.raises(ValueError, match="only to mode='torch'"):
        preprocess_input(x, "channels_last", mean=[0.5, 0.5, 0.5])
    with pytest.raises(ValueError, match="data_format must be"):
        preprocess_input(x, "NHWC")
    with pytest.raises(ValueError, match="non-zero"):
        preprocess_input(x, "channels_last", mode="torch", std=0)


def test_data_format_none_follows_keras_config():
    import keras

    x = np.random.default_rng(0).uniform(0, 255, (1, 3, 5, 4)).astype(np.float32)  # NCHW
    saved = keras.config.image_data_format()
    try:
        keras.config.set_image_data_format("channels_first")
        out = preprocess_input(x, mode="torch")
    finally:
        keras.config.set_image_data_format(saved)
    np.testing.assert_allclose(out, preprocess_input(x, "channels_first", mode="torch"))


@pytest.mark.parametrize("mode", ["tf", "torch", "caffe", "raw"])
def test_backend_tensors_give_same_values_as_numpy(astronaut, mode):
    import keras

    batch = astronaut[None, :64, :48].astype(np.float32)
    tensor_out = preprocess_input(keras.ops.convert_to_tensor(batch), "channels_last", mode=mode)
    assert keras.ops.is_tensor(tensor_out)
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(tensor_out),
        preprocess_input(batch, "channels_last", mode=mode),
        rtol=1e-6,
        atol=1e-6,
    )


# ------------------------------------------------------------------------------------------
# load_image: real photos written in many formats and modes
# ------------------------------------------------------------------------------------------


def _save(image: Image.Image, path: Path, **kwargs) -> Path:
    image.save(path, **kwargs)
    return path


def _pillow_mode(path: Path) -> str:
    with Image.open(path) as image:
        return image.mode


def test_rgb_png_round_trips_exactly(tmp_path, astronaut):
    path = _save(Image.fromarray(astronaut), tmp_path / "astronaut.png")
    loaded = load_image(path)
    assert loaded.dtype == np.float32 and loaded.shape == (512, 512, 3)
    np.testing.assert_array_equal(loaded, astronaut)


def test_jpeg_loads_close_to_original(tmp_path, coffee):
    path = _save(Image.fromarray(coffee), tmp_path / "coffee.jpg", quality=95)
    loaded = load_image(path)
    assert loaded.shape == coffee.shape
    assert np.abs(loaded - coffee).mean() < 3.0


def test_gray_image_to_rgb_replicates_and_to_one_channel_is_exact(tmp_path, camera):
    path = _save(Image.fromarray(camera), tmp_path / "camera.png")
    rgb = load_image(path, channels=3)
    for c in range(3):
        np.testing.assert_array_equal(rgb[:, :, c], camera)
    gray = load_image(path, channels=1)
    assert gray.shape == (512, 512, 1)
    np.testing.assert_array_equal(gray[:, :, 0], camera)
    rgba = load_image(path, channels=4)
    np.testing.assert_array_equal(rgba[:, :, :3], rgb)
    np.testing.assert_array_equal(rgba[:, :, 3], 255)


def test_rgb_to_one_channel_is_pillow_luminance(tmp_path, astronaut):
    path = _save(Image.fromarray(astronaut), tmp_path / "astronaut.png")
    expected = np.asarray(Image.fromarray(astronaut).convert("L"), np.float32)
    np.testing.assert_array_equal(load_image(path, channels=1)[:, :, 0], expected)
    # Luminance weights 0.299, 0.587, 0.114 (Pillow rounds to integers).
    weighted = astronaut.astype(np.float64) @ np.array([0.299, 0.587, 0.114])
    assert np.abs(expected - weighted).max() <= 1.0


def test_rgba_alpha_is_dropped_for_rgb_and_kept_for_rgba(tmp_path, chelsea):
    alpha = np.tile(np.linspace(0, 255, chelsea.shape[1]).astype(np.uint8), (chelsea.shape[0], 1))
    rgba = np.dstack([chelsea, alpha])
    path = _save(Image.fromarray(rgba), tmp_path / "chelsea_rgba.png")
    # Dropped, not composited: colours under fully transparent pixels are unchanged.
    np.testing.assert_array_equal(load_image(path, channels=3), chelsea)
    np.testing.assert_array_equal(load_image(path, channels=4), rgba)


def test_palette_png_expands_and_transparency_becomes_alpha(tmp_path, astronaut):
    palette_image = Image.fromarray(astronaut).quantize(colors=64)
    transparent_index = int(np.asarray(palette_image)[0, 0])
    path = _save(palette_image, tmp_path / "astronaut_p.png", transparency=transparent_index)
    assert _pillow_mode(path) == "P"
    expected_rgb = np.asarray(palette_image.convert("RGB"), np.float32)
    np.testing.assert_array_equal(load_image(path, channels=3), expected_rgb)
    rgba = load_image(path, channels=4)
    indices = np.asarray(palette_image)
    np.testing.assert_array_equal(rgba[:, :, 3], np.where(indices == transparent_index, 0, 255))
    assert np.abs(expected_rgb - astronaut).mean() < 12  # still the astronaut


def test_16_bit_png_is_scaled_to_0_255(tmp_path, camera):
    sixteen_bit = camera.astype(np.uint16) * 257  # 255 -> 65535
    path = _save(Image.fromarray(sixteen_bit), tmp_path / "camera16.png")
    assert _pillow_mode(path).startswith("I")
    loaded = load_image(path, channels=3)
    np.testing.assert_allclose(loaded[:, :, 0], camera, atol=1e-3)
    np.testing.assert_array_equal(loaded[:, :, 0], loaded[:, :, 2])
    np.testing.assert_allclose(load_image(path, channels=1)[:, :, 0], camera, atol=1e-3)


def test_float_tiff_is_scaled_alike_at_native_and_fixed_size_and_in_training(tmp_path, camera):
    """A float TIFF (mode F) holding values outside 0..255 (here -100 .. 400, not whole numbers):
    one rule, clip to 0..255, at the native size, at a fixed size (resized on Pillow's 8-bit path)
    and in training. Before, the native size took the values as they were (up to 2.1 after
    preprocessing, far outside [-1, 1]) while a fixed size clipped them."""
    from anyshape import datasets, engine

    rng = np.random.default_rng(0)
    values = (camera[:120, :150].astype(np.float32) * 2.0 - 100.0 + rng.uniform(0, 1, (120, 150))).astype(np.float32)
    assert values.min() < 0 and values.max() > 255
    path = _save(Image.fromarray(values), tmp_path / "float.tif")
    assert _pillow_mode(path) == "F"
    loaded = load_image(path, channels=3)
    np.testing.assert_array_equal(loaded[:, :, 1], np.clip(values, 0, 255))
    assert loaded.min() == 0.0 and loaded.max() == 255.0

    same_size = engine.Preprocessing(crop_pct=1.0, interpolation="bilinear")  # a fixed size that is its own
    native = engine.ImageReader(preprocessing=same_size).read(path)
    fixed = engine.ImageReader(size=(120, 150), preprocessing=same_size).read(path)
    assert native.shape == fixed.shape == (120, 150, 3)
    assert native.min() >= -1.0 and native.max() <= 1.0
    np.testing.assert_allclose(native, fixed, atol=0.5 / 127.5 + 1e-6)  # the 8-bit path rounds to whole levels
    trained = preprocess_input(datasets.read_image(path, (120, 150), 3), "channels_last")
    np.testing.assert_array_equal(trained, fixed)


def test_float_tiff_with_nan_pixels_is_refused(tmp_path):
    values = np.full((80, 80), 100.0, np.float32)
    values[3, 4] = np.nan
    path = _save(Image.fromarray(values), tmp_path / "nan.tif")
    with pytest.raises(ImageLoadError, match="nan.tif: a float image .* NaN or infinite"):
        load_image(path)


def test_cmyk_jpeg_converts_to_rgb(tmp_path, coffee):
    path = _save(Image.fromarray(coffee).convert("CMYK"), tmp_path / "coffee_cmyk.jpg", quality=95)
    assert _pillow_mode(path) == "CMYK"
    loaded = load_image(path)
    assert loaded.shape == coffee.shape
    assert np.abs(loaded - coffee).mean() < 4.0
    assert load_image(path, channels=1).shape == (400, 600, 1)
    np.testing.assert_array_equal(load_image(path, channels=4)[:, :, 3], 255)


@pytest.mark.parametrize("suffix", ["png", "jpg"])
def test_exif_orientation_is_applied(tmp_path, chelsea, suffix):
    exif = Image.Exif()
    exif[EXIF_ORIENTATION_TAG] = 6  # stored landscape, displayed rotated 90 degrees clockwise
    path = _save(
        Image.fromarray(chelsea),
        tmp_path / f"chelsea_rot.{suffix}",
        exif=exif,
        **({"quality": 95} if suffix == "jpg" else {}),
    )
    loaded = load_image(path)
    upright = np.rot90(chelsea, k=-1)
    assert loaded.shape == upright.shape == (451, 300, 3)
    if suffix == "png":
        np.testing.assert_array_equal(loaded, upright)
    else:
        assert np.abs(loaded - upright).mean() < 3.0
    raw = load_image(path, apply_exif_orientation=False)
    assert raw.shape == chelsea.shape


def test_gif_gives_first_frame(tmp_path, astronaut):
    frames = [Image.fromarray(astronaut).quantize(64), Image.fromarray(astronaut[::-1]).quantize(64)]
    path = tmp_path / "two_frames.gif"
    frames[0].save(path, save_all=True, append_images=frames[1:])
    loaded = load_image(path)
    assert np.abs(loaded - astronaut).mean() < np.abs(loaded - astronaut[::-1]).mean()


def test_zero_byte_file_raises_with_path(tmp_path):
    path = tmp_path / "empty.jpg"
    path.write_bytes(b"")
    with pytest.raises(ImageLoadError, match="empty") as info:
        load_image(path)
    assert str(path) in str(info.value)


def test_truncated_jpeg_raises_with_path(tmp_path, coffee):
    whole = _save(Image.fromarray(coffee), tmp_path / "whole.jpg", quality=95).read_bytes()
    path = tmp_path / "truncated.jpg"
    path.write_bytes(whole[: len(whole) // 2])
    with pytest.raises(ImageLoadError, match="truncated") as info:
        load_image(path)
    assert str(path) in str(info.value)


def test_text_file_raises_not_an_image(tmp_path):
    path = tmp_path / "notes.png"
    path.write_text("this is not a picture\n")
    with pytest.raises(ImageLoadError, match="not an image") as info:
        load_image(path)
    assert str(path) in str(info.value)


def test_missing_file_and_directory_raise(tmp_path):
    with pytest.raises(ImageLoadError, match="no such file"):
        load_image(tmp_path / "nope.png")
    with pytest.raises(ImageLoadError, match="not a regular file"):
        load_image(tmp_path)


def _deny(monkeypatch, target: Path, where: str):
    """This user may not read `target`: open() refuses it, or (where="folder") a folder above it
    may not be searched, so even stat() fails. As the OS says it; chmod does not stop root."""
    import builtins
    import errno

    def denied():
        return PermissionError(errno.EACCES, "Permission denied", str(target))

    if where == "file":
        real_open = builtins.open

        def open_(file, *args, **kwargs):
            if isinstance(file, (str, Path)) and Path(file) == target:
                raise denied()
            return real_open(file, *args, **kwargs)

        monkeypatch.setattr(builtins, "open", open_)
    else:
        real_stat = Path.stat

        def stat_(self, *args, **kwargs):
            if self == target:
                raise denied()
            return real_stat(self, *args, **kwargs)

        monkeypatch.setattr(Path, "stat", stat_)


@pytest.mark.parametrize("where", ["file", "folder"])
def test_a_file_this_user_may_not_read_says_permission_denied(tmp_path, astronaut, monkeypatch, where):
    """Not "corrupt or truncated image", not "no such file", and not an OSError escaping load_image."""
    image = _save(Image.fromarray(astronaut), tmp_path / "astronaut.png")
    array = tmp_path / "array.npy"
    np.save(array, astronaut)
    for path, load in ((image, load_image), (array, load_array)):
        with monkeypatch.context() as m:
            _deny(m, path, where)
            with pytest.raises(ImageLoadError) as info:
                load(path)
        message = str(info.value)
        assert message.startswith(f"{path}: permission denied") and "corrupt" not in message, message


def test_hints_say_what_to_do_in_the_cli_and_in_python(tmp_path, astronaut):
    from anyshape.cli import cli_message

    array = tmp_path / "scan.npy"
    np.save(array, astronaut)
    with pytest.raises(ImageLoadError) as info:  # predict and features are given an array
        load_image(array)
    message = str(info.value)
    assert message.startswith(f"{array}: a .npy array, not an image file")
    assert "`anyshape train` reads class folders of them" in message and "load_array" in message
    big = _save(Image.fromarray(astronaut), tmp_path / "big.png")
    with pytest.raises(ImageLoadError) as info:
        load_image(big, max_pixels=1000)
    python, cli = str(info.value), cli_message(info.value)
    assert "max_pixels=None" in python  # Python has a spelling for no limit, the CLI has none: not offered there
    assert "max_pixels" not in cli and "raise the limit: --max-pixels of predict and features" in cli, cli


def test_image_load_error_is_a_value_error():
    assert issubclass(ImageLoadError, ValueError)


def test_decompression_bomb_over_max_pixels_is_refused(tmp_path, astronaut):
    path = _save(Image.fromarray(astronaut), tmp_path / "astronaut.png")
    with pytest.raises(ImageLoadError, match="decompression bomb") as info:
        load_image(path, max_pixels=512 * 512 - 1)
    assert "512x512 = 262144 pixels" in str(info.value) and str(path) in str(info.value)
    assert load_image(path, max_pixels=512 * 512).shape == (512, 512, 3)


def test_max_pixels_above_pillows_own_limit_is_honoured(tmp_path, astronaut, monkeypatch):
    """Pillow refuses images over twice its global limit; our max_pixels decides instead."""
    path = _save(Image.fromarray(astronaut), tmp_path / "astronaut.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    with pytest.raises(ImageLoadError, match="decompression bomb"):
        load_image(path, max_pixels=2000)
    np.testing.assert_array_equal(load_image(path, max_pixels=None), astronaut)
    np.testing.assert_array_equal(load_image(path, max_pixels=10**6), astronaut)
    assert Image.MAX_IMAGE_PIXELS == 1000  # restored after the temporary lift


@pytest.mark.parametrize("channels", [0, 2, 5])
def test_unsupported_channel_count_suggests_npy(tmp_path, channels):
    with pytest.raises(ValueError, match=r"\.npy"):
        load_image(tmp_path / "whatever.png", channels=channels)


# ------------------------------------------------------------------------------------------
# load_array
# ------------------------------------------------------------------------------------------


def test_load_array_any_channel_count(tmp_path, astronaut, camera):
    stack = np.dstack([astronaut, camera, camera]).astype(np.float64)  # 5 channels
    np.save(tmp_path / "five.npy", stack)
    loaded = load_array(tmp_path / "five.npy")
    assert loaded.dtype == np.float32 and loaded.shape == (512, 512, 5)
    np.testing.assert_array_equal(loaded, stack)
    np.save(tmp_path / "gray.npy", camera)
    np.testing.assert_array_equal(load_array(tmp_path / "gray.npy")[:, :, 0], camera)


def test_load_pixels_reads_arrays_and_images_from_a_path_or_their_bytes(tmp_path, astronaut):
    """The one reader of training and inference: a .npy by load_array (also from its bytes, as a
    Ray actor reads object storage), any other file by load_image; an array of another channel
    count than asked fails with both counts."""
    five = np.random.default_rng(0).uniform(0, 255, (30, 40, 5)).astype(np.float32)
    np.save(tmp_path / "five.npy", five)
    np.testing.assert_array_equal(load_pixels(tmp_path / "five.npy", 5), five)
    np.testing.assert_array_equal(load_pixels("five.npy", 5, data=(tmp_path / "five.npy").read_bytes()), five)
    with pytest.raises(ImageLoadError, match=r"five\.npy: the array has 5 channels, the model takes 3"):
        load_pixels(tmp_path / "five.npy")
    Image.fromarray(astronaut).save(tmp_path / "astronaut.png")
    np.testing.assert_array_equal(load_pixels(tmp_path / "astronaut.png"), load_image(tmp_path / "astronaut.png"))
    with pytest.raises(ImageLoadError, match="not a readable .npy array"):
        load_pixels("broken.npy", 3, data=b"not numpy")


def test_load_array_errors_name_the_file(tmp_path):
    cases = {
        "batch.npy": lambda p: np.save(p, np.zeros((2, 4, 4, 3))),
        "objects.npy": lambda p: np.save(p, np.array([{"a": 1}], dtype=object), allow_pickle=True),
        "text.npy": lambda p: p.write_text("not numpy"),
        "empty.npy": lambda p: p.write_bytes(b""),
        "nan.npy": lambda p: np.save(p, np.full((2, 2, 1), np.nan)),
        "words.npy": lambda p: np.save(p, np.array([["a", "b"]])),
    }
    for name, write in cases.items():
        path = tmp_path / name
        write(path)
        with pytest.raises(ImageLoadError) as info:
            load_array(path)
        assert str(path) in str(info.value), name


# ------------------------------------------------------------------------------------------
# resize and timm's eval crop
# ------------------------------------------------------------------------------------------


def test_resize_uint8_equals_pillow_and_keeps_height_width_order(chelsea):
    out = resize(chelsea, (100, 200), "bicubic")
    assert out.dtype == np.uint8 and out.shape == (100, 200, 3)
    expected = np.asarray(Image.fromarray(chelsea).resize((200, 100), Image.Resampling.BICUBIC))
    np.testing.assert_array_equal(out, expected)


def test_resize_float_per_channel_matches_uint8_within_rounding(chelsea):
    as_float = resize(chelsea.astype(np.float32), (150, 226), "bilinear")
    as_uint8 = resize(chelsea, (150, 226), "bilinear")
    assert as_float.dtype == np.float32
    assert np.abs(np.clip(np.round(as_float), 0, 255) - as_uint8).max() <= 1


def test_resize_many_channels_is_per_channel(astronaut, camera):
    stack = np.dstack([astronaut, camera, 255 - camera]).astype(np.float32)
    out = resize(stack, (64, 80), "lanczos")
    assert out.shape == (64, 80, 5)
    for c in range(5):
        np.testing.assert_array_equal(out[:, :, c], resize(stack[:, :, c], (64, 80), "lanczos")[:, :, 0])
    constant = resize(np.full((30, 40, 2), 77.0, np.float32), (13, 9), "bicubic")
    np.testing.assert_allclose(constant, 77.0, atol=1e-3)


def test_resize_argument_errors(astronaut):
    with pytest.raises(ValueError, match="interpolation must be one of"):
        resize(astronaut, (10, 10), "cubic")
    with pytest.raises(ValueError, match="size_hw"):
        resize(astronaut, (0, 10))
    with pytest.raises(ValueError, match=r"\(H, W, C\)"):
        resize(astronaut[None], (10, 10))


@pytest.mark.parametrize(
    "image_hw, size, crop_pct, expected",
    [
        ((512, 512), 299, 0.875, (341, 341)),  # floor(299 / 0.875) = 341
        ((300, 451), 299, 0.875, (341, 512)),  # long side int(341 * 451 / 300)
        ((451, 300), 299, 0.875, (512, 341)),
        ((300, 451), 299, 1.0, (299, 449)),
        ((400, 600), (224, 320), 0.875, (256, 384)),  # non-square: round(side / min ratio)
    ],
)
def test_shorter_side_resize_size(image_hw, size, crop_pct, expected):
    assert shorter_side_resize_size(image_hw, size, crop_pct) == expected


def test_center_crop_offsets_match_torchvision_rounding():
    image = np.arange(7 * 6).reshape(7, 6, 1)
    crop = center_crop(image, (4, 4))
    # (7 - 4) / 2 = 1.5 -> round half to even = 2; (6 - 4) / 2 = 1.
    np.testing.assert_array_equal(crop, image[2:6, 1:5])
    with pytest.raises(ValueError, match="resize it first"):
        center_crop(image, (8, 4))


@pytest.mark.parametrize("crop_pct", [0.0, 1.5])
def test_crop_pct_out_of_range(astronaut, crop_pct):
    with pytest.raises(ValueError, match="crop_pct"):
        resize_shorter_and_center_crop(astronaut, 299, crop_pct=crop_pct)


@pytest.mark.parametrize(
    "photo, size, crop_pct",
    [
        ("chelsea", 299, 0.875),
        ("astronaut", 299, 0.875),
        ("coffee", (224, 320), 0.875),
        ("chelsea", 150, 1.0),
        ("coffee", 75, 0.9),
    ],
)
def test_matches_timm_eval_transform_exactly_on_uint8(photo, size, crop_pct, request):
    timm_factory = pytest.importorskip("timm.data.transforms_factory")
    image = request.getfixturevalue(photo)
    transform = timm_factory.transforms_imagenet_eval(
        img_size=size, crop_pct=crop_pct, interpolation="bicubic", normalize=False
    )
    expected = np.asarray(transform(Image.fromarray(image))).transpose(1, 2, 0)  # CHW uint8
    ours = resize_shorter_and_center_crop(image, size, crop_pct=crop_pct, interpolation="bicubic")
    assert ours.shape == expected.shape
    np.testing.assert_array_equal(ours, expected)


def test_float_crop_close_to_uint8_crop(chelsea):
    ours_float = resize_shorter_and_center_crop(chelsea.astype(np.float32), 299)
    ours_uint8 = resize_shorter_and_center_crop(chelsea, 299)
    assert ours_float.dtype == np.float32 and ours_float.shape == (299, 299, 3)
    assert np.abs(np.clip(np.round(ours_float), 0, 255) - ours_uint8).max() <= 1


def test_load_resize_preprocess_pipeline(tmp_path, chelsea):
    path = _save(Image.fromarray(chelsea), tmp_path / "chelsea.png")
    batch = resize_shorter_and_center_crop(load_image(path), 299)[None]
    x = preprocess_input(batch, "channels_last")
    assert x.shape == (1, 299, 299, 3) and x.dtype == np.float32
    assert -1.1 < x.min() < -0.5 and 0.5 < x.max() < 1.1


def test_file_channels_reads_the_header_by_the_same_mode_table_as_load_image(tmp_path, astronaut, camera):
    """1 for gray (8-bit, with alpha, 16-bit), 3 for colour, 4 for colour with alpha or palette transparency."""
    palette = Image.fromarray(astronaut).quantize(colors=16)
    rgba = np.dstack([astronaut, np.full(astronaut.shape[:2], 200, np.uint8)])
    cases = {
        "gray.png": (Image.fromarray(camera), {}, 1),
        "gray_alpha.png": (Image.fromarray(camera).convert("LA"), {}, 1),
        "gray16.png": (Image.fromarray(camera.astype(np.uint16) * 257), {}, 1),
        "rgb.jpg": (Image.fromarray(astronaut), {}, 3),
        "rgba.png": (Image.fromarray(rgba), {}, 4),
        "palette.png": (palette, {}, 3),
        "palette_transparent.png": (palette, {"transparency": 0}, 4),
        "cmyk.jpg": (Image.fromarray(astronaut).convert("CMYK"), {}, 3),
    }
    for name, (image, options, want) in cases.items():
        path = _save(image, tmp_path / name, **options)
        assert file_channels(path) == want, name
        # what load_image gives at that channel count is the file's own content, nothing made up
        assert load_image(path, want).shape == (*image.size[::-1], want)
    np.save(tmp_path / "five.npy", np.zeros((4, 6, 5), np.float32))
    np.save(tmp_path / "flat.npy", np.zeros((4, 6), np.float32))
    assert file_channels(tmp_path / "five.npy") == 5 and file_channels(tmp_path / "flat.npy") == 1
