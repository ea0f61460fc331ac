"""`anyshape.weights.keras_files`: the file keras.applications would load, for each network and
Config, named, located and hashed as Keras does. The tables are checked against the installed
Keras' own source (keras/src/applications/<module>.py: the base URL and every hash appear there);
the MobileNet rules against the names keras/src/applications/mobilenet.py, mobilenet_v2.py and
mobilenet_v3.py build. Pure data: nothing is built or downloaded."""

from __future__ import annotations

import inspect
import os

import keras
import pytest

from anyshape.archs import get_arch
from anyshape.weights.keras_files import KERAS_FILES, NoKerasFile, keras_file, mobilenet_rows


def _config(name, **kwargs):
    return get_arch(name).config(**kwargs)


def _keras_source() -> str:
    """keras/src/applications/*.py of the installed Keras, read as text."""
    folder = os.path.dirname(inspect.getsourcefile(inspect.getmodule(keras.applications.ResNet50)))
    return "".join(open(os.path.join(folder, f)).read() for f in sorted(os.listdir(folder)) if f.endswith(".py"))


@pytest.mark.parametrize("name", sorted(KERAS_FILES))
def test_tables_agree_with_keras_source(name):
    source = _keras_source()
    top, notop = KERAS_FILES[name]
    for f in (top, notop):
        assert f.url.startswith("https://storage.googleapis.com/")
        assert f.url.rsplit("/", 2)[1] + "/" in source, f.url  # Keras' folder for the network
        assert f.file_hash in source, (name, f.file_hash)
        # keras.utils.get_file tells the algorithm from the hash's length: 64 hex digits, sha256
        assert f.algorithm == ("sha256" if name.startswith("convnext") else "md5")
    assert keras_file(name, None, True) is top and keras_file(name, None, False) is notop
    assert top.file_name != notop.file_name


def test_mobilenet_names_follow_alpha_and_rows():
    assert keras_file("mobilenet").file_name == "mobilenet_1_0_224_tf.h5"  # Keras' defaults, no Config
    cfg = _config("mobilenet", alpha=0.75, input_shape=(192, 192, 3))
    assert keras_file("mobilenet", cfg, True).file_name == "mobilenet_7_5_192_tf.h5"
    f = keras_file("mobilenet", _config("mobilenet", alpha=1.0, input_shape=(128, 128, 3)), False)
    assert f.file_name == "mobilenet_1_0_128_tf_no_top.h5"
    assert f.url == "https://storage.googleapis.com/tensorflow/keras-applications/mobilenet/" + f.file_name
    assert f.file_hash is None and f.algorithm is None  # Keras publishes no hash for MobileNet
    first = _config("mobilenet", alpha=0.5, input_shape=(3, 192, 192), data_format="channels_first")
    assert keras_file("mobilenet", first).file_name == "mobilenet_5_0_192_tf.h5"
    with pytest.raises(NoKerasFile, match=r"alpha in \(0.25, 0.5, 0.75, 1.0\) with depth_multiplier=1 only"):
        keras_file("mobilenet", _config("mobilenet", alpha=0.3))
    with pytest.raises(NoKerasFile, match="depth_multiplier=2"):
        keras_file("mobilenet", _config("mobilenet", depth_multiplier=2))


@pytest.mark.parametrize("alpha", [0.35, 0.5, 0.75, 1.0, 1.3, 1.4])
@pytest.mark.parametrize("rows", [96, 128, 160, 192, 224])
def test_mobilenet_v2_names_for_every_published_alpha_and_size(alpha, rows):
    f = keras_file("mobilenet_v2", _config("mobilenet_v2", alpha=alpha, input_shape=(rows, rows, 3)))
    assert f.file_name == f"mobilenet_v2_weights_tf_dim_ordering_tf_kernels_{alpha}_{rows}.h5"
    assert f.url.endswith("/keras-applications/mobilenet_v2/" + f.file_name)


def test_mobilenet_v2_and_v3_defaults_and_refusals():
    assert keras_file("mobilenet_v2").file_name == "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224.h5"
    with pytest.raises(NoKerasFile, match="MobileNetV2 ImageNet weights for alpha in"):
        keras_file("mobilenet_v2", _config("mobilenet_v2", alpha=0.6))
    top = keras_file("mobilenet_v3_large", None, True)
    assert top.file_name == "weights_mobilenet_v3_large_224_1.0_float.h5"
    assert top.file_hash == "59e551e166be033d707958cf9e29a6a7"
    small = keras_file("mobilenet_v3_small", _config("mobilenet_v3_small", alpha=0.75), False)
    assert small.file_name == "weights_mobilenet_v3_small_224_0.75_float_no_top_v2.h5"
    assert small.file_hash == "ebdb5cc8e0b497cd13a7c275d475c819"
    with pytest.raises(NoKerasFile, match="minimalistic only with 1.0"):
        keras_file("mobilenet_v3_small", _config("mobilenet_v3_small", alpha=0.75, minimalistic=True))
    with pytest.raises(NoKerasFile, match="no ImageNet weights for 'banana'"):
        keras_file("banana")


def test_rows_are_the_square_published_size_else_224():
    assert mobilenet_rows(None, (128, 224)) == 224
    assert mobilenet_rows(_config("mobilenet", input_shape=(128, 128, 3)), (128, 224)) == 128
    assert mobilenet_rows(_config("mobilenet", input_shape=(128, 160, 3)), (128, 160, 224)) == 224
    assert mobilenet_rows(_config("mobilenet", input_shape=(100, 100, 3)), (128, 224)) == 224
    first = _config("mobilenet", input_shape=(3, 128, 128), data_format="channels_first")
    assert mobilenet_rows(first, (128, 224)) == 128
