"""`anyshape.archs.ops`: the layer vocabulary and its shape tracer (`ShapeOps`), on small network
functions written here, in pure Python (no Keras). Each figure is worked out by hand from Keras'
layer definitions: a KxK conv has K*K*Cin*Cout weights plus Cout biases and K*K*Cin*Cout MACs per
output pixel; BatchNormalization has gamma, beta (trainable), moving mean and variance; a
"valid" window of K at stride S over N gives (N - K) // S + 1. The per-network agreement with
Keras' own shapes and parameter counts: test_archs.py and test_shapes.py."""

from __future__ import annotations

import pytest

from anyshape.archs.ops import ShapeOps, T, padding_pairs, pair, window_size


def _trace(network, h=32, w=32, c=3):
    ops = ShapeOps()
    out = network(ops, T(h, w, c, layer="input"))
    ops.trace.outputs.append(out)
    return ops.trace, out


def test_window_sizes():
    assert window_size(10, 3, 2, "valid") == 4
    assert window_size(10, 3, 1, "valid") == 8
    assert window_size(2, 3, 1, "valid") == 0  # the window does not fit
    assert window_size(3, 3, 1, "valid") == 1
    assert window_size(10, 3, 2, "same") == 5
    assert window_size(10, 3, 1, "valid", dilation=2) == 6  # a dilated 3-window spans 5
    assert window_size(None, 3, 2, "valid") is None
    assert pair(3) == (3, 3) and pair((1, 7)) == (1, 7)
    assert padding_pairs(1) == ((1, 1), (1, 1)) and padding_pairs((1, 2)) == ((1, 1), (2, 2))
    assert padding_pairs(((0, 1), (2, 3))) == ((0, 1), (2, 3))


def test_unnamed_layers_are_named_as_keras_names_them():
    def network(net, x):
        x = net.conv(x, 4, 3)
        x = net.conv(x, 4, 3)
        return net.bn(x)

    trace, _ = _trace(network)
    assert list(trace.layers) == ["conv2d", "conv2d_1", "batch_normalization"]
    ops = ShapeOps()
    ops.conv(T(8, 8, 3), 4, 3, name="stem")
    with pytest.raises(ValueError, match="layer name 'stem' is used twice"):
        ops.conv(T(8, 8, 3), 4, 3, name="stem")


def test_convolutions_count_parameters_and_macs():
    def network(net, x):
        x = net.conv(x, 8, 3, 2, name="conv")  # 33 -> 16
        x = net.depthwise(x, 3, padding="same", name="dw")  # keeps 8 channels
        x = net.depthwise(x, 3, padding="same", depth_multiplier=2, use_bias=False, name="dw2")
        return net.separable(x, 4, 3, name="sep")  # 16 -> 14

    trace, out = _trace(network, 33, 33)
    conv, dw, dw2, sep = trace.stages
    assert (conv.height, conv.width, conv.channels) == (16, 16, 8)
    assert conv.params == 3 * 3 * 3 * 8 + 8 and conv.macs == 16 * 16 * 3 * 3 * 3 * 8
    assert conv.what == "3x3 conv, stride 2, valid padding 8"
    assert (dw.channels, dw.params, dw.macs) == (8, 9 * 8 + 8, 16 * 16 * 9 * 8)
    assert dw.what == "3x3 depthwise conv, same padding"
    assert (dw2.channels, dw2.params) == (16, 9 * 16)
    assert (sep.height, sep.channels, sep.params) == (14, 4, 9 * 16 + 16 * 4 + 4)
    assert sep.macs == 14 * 14 * (9 * 16 + 16 * 4)
    assert out == T(14, 14, 4, layer="sep")
    assert trace.leftover == {} and not trace.collapse and not trace.problems


def test_unknown_sizes_have_no_macs():
    def network(net, x):
        return net.conv(x, 8, 3, name="conv")

    trace, out = _trace(network, None, None)
    assert trace.stages[0].macs is None and out.h is None and trace.stages[0].params == 3 * 3 * 3 * 8 + 8


def test_normalisations_and_scales():
    def network(net, x):
        x = net.normalization(x, name="norm_weights")  # mean and variance as weights, and a count
        x = net.normalization(x, mean=[0.5] * 3, variance=[1.0] * 3, name="norm_fixed")
        x = net.rescaling(x, [1.0, 2.0, 3.0], name="per_channel")
        x = net.rescaling(x, 1 / 255, name="one_value")
        x = net.bn(x, name="bn")
        x = net.bn(x, scale=False, name="bn_no_gamma")
        x = net.layer_norm(x, name="ln")
        return net.layer_scale(x, 1e-6, name="ls")

    trace, out = _trace(network)
    params = {s.layer: (s.params, s.trainable_params) for s in trace.stages}
    assert params == {
        "norm_weights": (7, 0),
        "norm_fixed": (0, 0),
        "per_channel": (0, 0),
        "one_value": (0, 0),
        "bn": (12, 6),
        "bn_no_gamma": (9, 3),
        "ln": (6, 6),
        "ls": (3, 3),
    }
    assert out == T(32, 32, 3, layer="ls") and not trace.problems


def test_a_per_channel_rescaling_of_the_wrong_width_is_a_problem():
    trace, _ = _trace(lambda net, x: net.rescaling(x, [1.0, 2.0], offset=[0.0, 0.0, 0.0, 0.0], name="bad"))
    assert trace.problems == ["bad scales 2 channels but gets 3: a bug in its network function"] + [
        "bad scales 4 channels but gets 3: a bug in its network function"
    ]


def test_stages_group_layers_and_do_not_nest():
    def network(net, x):
        with net.stage("stem", "conv and BN"):
            x = net.conv(x, 8, 3, name="stem_conv", use_bias=False)
            with net.stage("inner", "ignored: inside stem"):
                x = net.bn(x, name="stem_bn")
        y = net.relu(x, 6.0, name="relu6")
        return net.add([x, y], name="add")

    trace, _ = _trace(network)
    assert [(s.name, s.what, s.layer) for s in trace.stages] == [
        ("stem", "conv and BN", "stem_bn"),
        ("relu6", "relu6", "relu6"),
        ("add", "add", "add"),
    ]
    assert trace.stages[0].params == 3 * 3 * 3 * 8 + 4 * 8 and trace.stages[0].trainable_params == 216 + 16
    assert trace.stages[0].macs == 30 * 30 * 216


def test_pools_windows_leftovers_and_collapse():
    def network(net, x):
        x = net.max_pool(x, 3, 2, name="max")  # 8 x 10 -> 3 x 4: (8 - 3) % 2, (10 - 3) % 2 leave one unread
        return net.avg_pool(x, 2, name="avg")  # -> 1 x 2, stride 2 = pool: a row unread again

    trace, out = _trace(network, 8, 10)
    assert out == T(1, 2, 3, layer="avg")
    assert trace.leftover == {"height": ["max", "avg"], "width": ["max"]}
    assert [s.what for s in trace.stages] == [
        "3x3 max pool, stride 2, valid padding",
        "2x2 average pool, stride 2, valid padding",
    ]
    small, _ = _trace(network, 8, 2)
    assert [str(c) for c in small.collapse] == [
        "max collapses: its 3x3 max pool, stride 2, valid padding (max) gets a width of 2, smaller than its "
        "kernel of 3, so its output width would be 0"
    ]


def test_merges_join_equal_maps_and_report_unequal_ones():
    def network(net, x):
        a = net.conv(x, 4, 1, name="a")
        b = net.conv(x, 4, 1, name="b")
        s = net.add([a, b], name="sum")
        m = net.average([a, b], name="mean")
        g = net.global_pool(s, keepdims=True, name="gap")
        p = net.multiply([m, g], name="scaled")  # a 1x1 map broadcasts
        return net.concat([s, p], name="cat")

    trace, out = _trace(network, 8, 8)
    assert out == T(8, 8, 8, layer="cat") and not trace.problems
    bad, _ = _trace(lambda net, x: net.add([x, net.conv(x, 3, 3, name="c")], name="join"), 8, 8)
    assert bad.problems == ["join: join (add) joins maps of 8x8 and 6x6, which differ"]


def test_heads():
    def network(net, x):
        x = net.global_pool(x, "max", name="gmp")
        x = net.dropout(x, 0.2, name="drop")
        return net.dense(x, 10, name="fc")

    trace, out = _trace(network)
    assert out == T(None, None, 10, True, "fc") and trace.stages[-1].params == 3 * 10 + 10
    assert [s.what for s in trace.stages] == ["global max pool", "dropout 0.2", "dense 10"]
    flat, out = _trace(lambda net, x: net.flatten(x, name="flat"), 4, 5)
    assert out == T(None, None, 60, True, "flat") and not flat.problems
    free, _ = _trace(lambda net, x: net.flatten(x, name="flat"), None, 5)
    assert free.problems == [
        "flat: flat (Flatten) needs a fixed height and width: its output width sets the next layer's weights"
    ]


def test_padding_and_cropping():
    def network(net, x):
        x = net.pad(x, ((1, 2), (0, 1)), name="pad")  # 8 x 8 -> 11 x 9
        return net.crop(x, ((1, 0), (2, 2)), name="crop")  # -> 10 x 5

    trace, out = _trace(network, 8, 8)
    assert out == T(10, 5, 3, layer="crop")
    assert [s.what for s in trace.stages] == ["zero padding", "cropping"]
    free, out = _trace(network, None, 8)
    assert out == T(None, 5, 3, layer="crop") and not free.collapse
    small, _ = _trace(lambda net, x: net.crop(x, ((0, 0), (2, 2)), name="crop"), 8, 4)
    assert [str(c) for c in small.collapse] == [
        "crop collapses: its cropping of 2+2 (crop) gets a width of 4, smaller than its kernel of 5, "
        "so its output width would be 0"
    ]
