"""anyshape.datasets: class-per-subfolder folders and the digits set (no model, no Keras)."""

from __future__ import annotations

import numpy as np
import pytest
from image_folder import PHOTOS, make_image_folder, photo
from PIL import Image

from anyshape.datasets import DataError, fit_image, load_dataset, load_digits, read_image


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return make_image_folder(tmp_path_factory.mktemp("photos") / "data", per_class=5)


def test_folder_loads_every_image_at_the_size_with_classes_from_subfolders(folder):
    ds = load_dataset(folder, (80, 90), val_split=0.2, test_split=0.2, seed=1)
    assert ds.class_names == sorted(PHOTOS)
    assert ds.channels == 3
    total = len(ds.train) + len(ds.val) + len(ds.test)
    assert total == 15
    for split in (ds.train, ds.val, ds.test):
        assert split.images.shape[1:] == (80, 90, 3) and split.images.dtype == np.uint8
        assert set(split.labels.tolist()) == {0, 1, 2}  # stratified: every class in every split
    # the pixels are the file's, fitted by the documented policy
    first = sorted((folder / "chelsea").iterdir())[0]
    want = fit_image(np.asarray(Image.open(first).convert("RGB")), (80, 90))
    all_images = np.concatenate([ds.train.images, ds.val.images, ds.test.images])
    assert any(np.array_equal(want, im) for im in all_images)


def test_split_is_reproducible_and_disjoint(folder):
    a = load_dataset(folder, (75, 75), seed=3)
    b = load_dataset(folder, (75, 75), seed=3)
    assert np.array_equal(a.test.images, b.test.images) and np.array_equal(a.train.labels, b.train.labels)
    flat = lambda s: {im.tobytes() for im in s.images}  # noqa: E731
    assert not flat(a.train) & flat(a.test) and not flat(a.train) & flat(a.val)


def test_train_test_subfolders_are_used_as_given(tmp_path):
    make_image_folder(tmp_path / "d" / "train", per_class=3, photos=("coffee", "rocket"))
    make_image_folder(tmp_path / "d" / "test", per_class=2, photos=("coffee", "rocket"), seed=5)
    ds = load_dataset(tmp_path / "d", (75, 75), val_split=0.0)
    assert (len(ds.train), len(ds.test), ds.val) == (6, 4, None)
    assert ds.class_names == ["coffee", "rocket"]


def test_digits_split_and_scaling():
    train, test = load_digits((75, 75, 1))
    assert (len(train), len(test)) == (1437, 360)
    assert train.images.shape[1:] == (75, 75, 1) and train.images.dtype == np.uint8
    assert train.images.max() == 255 and train.images.min() == 0
    assert np.bincount(test.labels).min() >= 35  # stratified: 36 +- 1 of each digit
    rgb_train, _ = load_digits((75, 75, 3))
    assert np.array_equal(rgb_train.images[..., 2], train.images[..., 0])


def test_gray_folder_gives_one_channel_and_mixed_folder_converts_to_rgb_with_a_note(tmp_path):
    gray = make_image_folder(tmp_path / "gray", per_class=2, photos=("coffee", "rocket"), gray=True)
    ds = load_dataset(gray, (75, 75), val_split=0, test_split=0)
    assert ds.channels == 1 and ds.train.images.shape[-1] == 1 and not ds.notes
    Image.fromarray(photo("chelsea")[:200, :200]).save(gray / "coffee" / "colour.png")
    mixed = load_dataset(gray, (75, 75), val_split=0, test_split=0)
    assert mixed.channels == 3 and mixed.train.images.shape[-1] == 3
    assert any("4 grayscale image(s) converted to RGB" in n for n in mixed.notes), mixed.notes
    # gray images become three equal channels
    gray_img = mixed.train.images[mixed.train.labels == 1][0]
    assert np.array_equal(gray_img[..., 0], gray_img[..., 2])
    # asking for one channel converts the colour image to luminance, and says so
    forced = load_dataset(gray, (75, 75, 1), val_split=0, test_split=0)
    assert forced.channels == 1 and any("converted to 1 channel" in n for n in forced.notes)


def test_alpha_is_dropped_with_a_note(tmp_path):
    root = make_image_folder(tmp_path / "a", per_class=2, photos=("coffee", "rocket"))
    rgba = Image.fromarray(photo("chelsea")[:120, :120]).convert("RGBA")
    rgba.save(root / "rocket" / "alpha.png")
    ds = load_dataset(root, (75, 75), val_split=0, test_split=0)
    assert ds.channels == 3 and any("alpha dropped" in n for n in ds.notes)


def test_empty_folder_errors(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no subfolders: expected one subfolder per class"):
        load_dataset(tmp_path / "empty", (75, 75))
    (tmp_path / "empty" / "a").mkdir()
    (tmp_path / "empty" / "b").mkdir()
    with pytest.raises(DataError, match="none of its 2 subfolders holds an image file"):
        load_dataset(tmp_path / "empty", (75, 75))
    with pytest.raises(DataError, match="no such folder"):
        load_dataset(tmp_path / "missing", (75, 75))


def test_one_class_and_empty_class_error(tmp_path):
    root = make_image_folder(tmp_path / "one", per_class=2, photos=("coffee",))
    with pytest.raises(DataError, match="only one class .'coffee'.; a classifier needs at least two"):
        load_dataset(root, (75, 75))
    (root / "rocket").mkdir()
    with pytest.raises(DataError, match="'rocket' hold no image file"):
        load_dataset(root, (75, 75))


def test_a_class_folder_this_user_may_not_list_says_permission_denied(tmp_path, monkeypatch):
    """A search passes over a folder it may not list as if it were empty: the error used to say
    "hold no image file". chmod does not stop root, so the OS's refusal is given by os.scandir."""
    import errno
    import os

    root = make_image_folder(tmp_path / "locked", per_class=2, photos=("coffee", "rocket"))
    real_scandir = os.scandir

    def scandir(path="."):
        if os.path.realpath(path) == os.path.realpath(root / "rocket"):
            raise PermissionError(errno.EACCES, "Permission denied", str(path))
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", scandir)
    with pytest.raises(DataError, match="'rocket' cannot be read: permission denied") as e:
        load_dataset(root, (75, 75))
    assert "no image file" not in str(e.value)


def test_a_channel_count_images_cannot_have_is_said_once(folder):
    """--input-shape 75,75,2 on RGB images: the channel count is the problem, not every image."""
    with pytest.raises(DataError, match=r"asks for 2 channel\(s\) \(input_shape=\(H, W, 2\)\)") as e:
        load_dataset(folder, (75, 75, 2))
    from anyshape.cli.options import cli_message

    assert "--input-shape asks for 2 channel(s) (--input-shape H,W,2)" in cli_message(e.value)
    assert "could not be read" not in str(e.value) and ".npy" in str(e.value)


def test_unreadable_images_are_named_or_skipped_when_asked(tmp_path):
    root = make_image_folder(tmp_path / "bad", per_class=3, photos=("coffee", "rocket"))
    (root / "coffee" / "broken.jpg").write_bytes(b"this is not a jpeg")
    (root / "rocket" / "empty.png").write_bytes(b"")
    (root / "rocket" / "notes.txt").write_text("ignored: not an image suffix")
    with pytest.raises(DataError, match=r"2 of 8 file\(s\) .* could not be read") as e:
        load_dataset(root, (75, 75), val_split=0, test_split=0)
    assert "broken.jpg" in str(e.value) and "empty.png" in str(e.value) and "skip_bad_images=True" in str(e.value)
    from anyshape.cli.options import cli_message

    assert "--skip-bad-images to train without them" in cli_message(e.value)
    ds = load_dataset(root, (75, 75), val_split=0, test_split=0, skip_bad_images=True)
    assert len(ds.train) == 6
    assert any("skipped 2 unreadable" in n for n in ds.notes) and any("ignored 1 file" in n for n in ds.notes)


def test_too_few_images_for_a_split_errors(tmp_path):
    root = make_image_folder(tmp_path / "few", per_class=1, photos=("coffee", "rocket"))
    with pytest.raises(DataError, match="class 0 has only 1 image"):
        load_dataset(root, (75, 75), test_split=0.2)


def test_npy_arrays_keep_their_channel_count(tmp_path):
    rng = np.random.default_rng(0)
    for c in ("a", "b"):
        (tmp_path / "n" / c).mkdir(parents=True)
        for i in range(2):
            np.save(tmp_path / "n" / c / f"{i}.npy", rng.uniform(0, 255, (90, 100, 5)).astype(np.float32))
    ds = load_dataset(tmp_path / "n", (75, 75), val_split=0, test_split=0)
    assert ds.channels == 5 and ds.train.images.shape == (4, 75, 75, 5) and ds.train.images.dtype == np.float32
    x = read_image(tmp_path / "n" / "a" / "0.npy", (75, 75), 5)
    assert np.allclose(x, ds.train.images[0])


def test_files_are_found_by_the_rule_predict_uses(tmp_path):
    """The inference runs' `find_images` lists a class folder: recursive, sorted, hidden files and
    hidden folders (e.g. .ipynb_checkpoints) skipped; files with other suffixes are counted as ignored."""
    from anyshape.engine import find_images

    root = make_image_folder(tmp_path / "data", per_class=2, photos=("coffee", "rocket"))
    (root / "coffee" / "more").mkdir()
    Image.fromarray(photo("coffee")).save(root / "coffee" / "more" / "deep.png")
    (root / "coffee" / ".ipynb_checkpoints").mkdir()
    Image.fromarray(photo("coffee")).save(root / "coffee" / ".ipynb_checkpoints" / "copy.png")
    Image.fromarray(photo("rocket")).save(root / "rocket" / ".hidden.png")
    (root / "rocket" / "readme.md").write_text("not an image")
    ds = load_dataset(root, (75, 75), val_split=0, test_split=0)
    listed = {c: [p for p in find_images([root / c])[0] if p.suffix != ".md"] for c in ("coffee", "rocket")}
    assert len(listed["coffee"]) == 3 and len(listed["rocket"]) == 2
    assert len(ds.train) == 5 and ds.train.labels.tolist() == [0, 0, 0, 1, 1]
    assert any("ignored 1 file" in n for n in ds.notes)
    # the images are the listed files in order, read by the reader inference uses
    first = read_image(listed["coffee"][0], (75, 75), 3)
    assert np.array_equal(ds.train.images[0], first)


def test_training_reader_and_the_inference_reader_give_the_same_input(folder):
    """A model trained here is fed at inference (engine.ImageReader with the run's data config)
    exactly the pixels training fed it: same decoder, same 8-bit resize, crop 1.0, bilinear."""
    from anyshape.data_config import DataConfig
    from anyshape.engine import ImageReader
    from anyshape.preprocess import preprocess_input

    config = DataConfig().for_training()
    for path in sorted((folder / "chelsea").iterdir())[:2]:
        for size, channels in (((80, 90), 3), ((75, 75), 1)):
            trained = preprocess_input(read_image(path, size, channels).astype(np.float32), "channels_last", mode="tf")
            served = ImageReader(channels=channels, size=size, preprocessing=config).read(path)
            np.testing.assert_array_equal(served, trained)


def test_a_class_folder_that_cannot_be_read_is_refused(tmp_path, monkeypatch):
    """Training without a folder's images would be a silent gap in the data (faked chmod 000: the
    tests run as root, who reads any folder)."""
    import os

    root = make_image_folder(tmp_path / "data", per_class=2, photos=("coffee", "rocket"))
    (root / "rocket" / "more").mkdir()
    Image.fromarray(photo("rocket")).save(root / "rocket" / "more" / "deep.png")
    scandir = os.scandir

    def refusing(path="."):
        if os.path.basename(os.fspath(path)) == "more":
            raise PermissionError(13, "Permission denied", os.fspath(path))
        return scandir(path)

    monkeypatch.setattr(os, "scandir", refusing)
    with pytest.raises(DataError, match=r"rocket/more: folder cannot be read \(permission denied\); training would"):
        load_dataset(root, (75, 75), val_split=0, test_split=0)
