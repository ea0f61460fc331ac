"""anyshape.onnx_rewrites.fold_input_affine: the input's Rescaling / Normalization folded into the
first convolution, exact at every size and padding, on small hand-built models (seconds). The
family's networks that carry it (MobileNetV3, EfficientNet(V2), ConvNeXt) are proved on ONNX
Runtime and OpenVINO against Keras by tests/test_engine_family.py."""

import collections

import keras
import numpy as np
import onnxruntime as ort
import pytest

from anyshape.onnx_graph import keras_to_onnx


def _model(stem, channels=3, data_format="channels_last", conv_padding="same"):
    """Input -> the layers `stem` names -> Conv2D 3x3 stride 2 -> ReLU: the shape of a network's stem."""
    shape = (None, None, channels) if data_format == "channels_last" else (channels, None, None)
    inputs = keras.Input(shape)
    x = inputs
    rng = np.random.default_rng(0)
    for kind in stem:
        if kind == "rescale":  # MobileNetV3's: x / 127.5 - 1
            x = keras.layers.Rescaling(1 / 127.5, offset=-1.0)(x)
        elif kind == "rescale_per_channel":  # a per-channel scale and no offset
            x = keras.layers.Rescaling(list(rng.uniform(0.5, 2.0, channels)))(x)
        elif kind == "normalize":  # EfficientNet's and ConvNeXt's: (x - mean) / std per channel
            axis = -1 if data_format == "channels_last" else 1
            x = keras.layers.Normalization(
                axis=axis, mean=list(rng.uniform(50, 200, channels)), variance=list(rng.uniform(500, 5000, channels))
            )(x)
        elif kind == "zero_pad":
            x = keras.layers.ZeroPadding2D(((0, 1), (1, 1)), data_format=data_format)(x)
        elif kind == "zero_scale":
            x = keras.layers.Rescaling(0.0, offset=1.0)(x)
    x = keras.layers.Conv2D(8, 3, strides=2, padding=conv_padding, data_format=data_format, activation="relu")(x)
    model = keras.Model(inputs, x)
    conv = model.layers[-1]
    conv.set_weights([w + rng.normal(0, 0.3, w.shape).astype("float32") for w in conv.get_weights()])
    return model


def _check(model, x):
    """The optimized graph's output against Keras' and the plain graph's; the op counts of both."""
    plain, fast = keras_to_onnx(model, optimize=False), keras_to_onnx(model)
    want = np.asarray(model(x))
    for graph in (plain, fast):
        got = ort.InferenceSession(graph.SerializeToString(), providers=["CPUExecutionProvider"]).run(
            None, {"input": x}
        )[0]
        assert np.abs(got - want).max() <= 1e-5 * max(1.0, np.abs(want).max())
    return [n.op_type for n in fast.graph.node], collections.Counter(n.op_type for n in plain.graph.node)


@pytest.mark.parametrize("data_format", ["channels_last", "channels_first"])
@pytest.mark.parametrize("channels", [3, 1])
def test_rescaling_before_a_same_padded_conv_becomes_one_add(data_format, channels):
    # 'same' pads the convolution: the offset stays as one per-channel Add (zero padding of
    # x / 127.5 - 1 is zero padding of x - 127.5), the scale goes into the kernel
    x = np.random.default_rng(1).uniform(0, 255, (2, 17, 22, channels)).astype("float32")
    if data_format == "channels_first":
        x = np.ascontiguousarray(x.transpose(0, 3, 1, 2))
    ops, plain = _check(_model(["rescale"], channels, data_format), x)
    assert plain["Mul"] == 1 and plain["Add"] == 1
    want = ["Add", "Conv", "Relu"] if data_format == "channels_first" else ["Transpose", "Add", "Conv", "Relu"]
    assert ops[: len(want)] == want and "Mul" not in ops


@pytest.mark.parametrize("stem", [["rescale", "normalize", "zero_pad"], ["normalize"], ["rescale_per_channel"]])
def test_normalization_and_per_channel_scales_fold(stem):
    """EfficientNet's stem (Rescaling, Normalization, ZeroPadding2D, valid Conv): the Add before the
    pad; a valid convolution with nothing padding it: the offset goes into its bias, no Add."""
    x = np.random.default_rng(2).uniform(0, 255, (2, 19, 16, 3)).astype("float32")
    padding = "valid" if "zero_pad" in stem or stem == ["normalize"] else "same"
    ops, _ = _check(_model(stem, conv_padding=padding), x)
    assert not {"Mul", "Sub", "Div"} & set(ops)
    if "zero_pad" in stem:
        assert ops[:4] == ["Transpose", "Add", "Pad", "Conv"]
    else:  # nothing to shift (no offset) or nothing pads (offset in the bias)
        assert ops[:3] == ["Transpose", "Conv", "Relu"]


@pytest.mark.parametrize("stem", [["zero_pad", "rescale"], ["zero_scale"]])
def test_what_cannot_fold_exactly_is_left_alone(stem):
    # an offset after the zero padding reaches the padded cells; a zero scale has no inverse
    x = np.random.default_rng(3).uniform(0, 255, (1, 15, 15, 3)).astype("float32")
    ops, _ = _check(_model(stem, conv_padding="valid"), x)
    assert "Mul" in ops and "Add" in ops
