"""anyshape.onnx_rewrites: the input's Rescaling / Normalization folded into the first convolution,
exact at every size and padding, on small hand-built models (seconds); and the other rewrites
(BatchNorm folded, a zero pad merged into the average pool or, after a ReLU, the max pool, nested concatenations flattened,
identities removed, the nodes sorted) on hand-built graphs, each applied where it is exact and
refused where one of its conditions fails, the graph's results unchanged either way. The family's
networks are proved on ONNX Runtime and OpenVINO against Keras by tests/test_engine_family.py."""

import collections
import copy

import keras
import numpy as np
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from anyshape import onnx_rewrites
from anyshape.onnx_emitter import Graph
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


# --- the other rewrites, on hand-built graphs --------------------------------------------------


def _run(g: Graph, feeds: dict, outputs: list[str]) -> list:
    """ONNX Runtime's results of the emitter graph `g` (inputs named as `feeds`, float32)."""
    used = {i for n in g.nodes for i in n.inputs}
    graph = helper.make_graph(
        [helper.make_node(n.op, n.inputs, n.outputs, name=n.name or n.outputs[0], **n.attrs) for n in g.nodes],
        "g",
        [helper.make_tensor_value_info(k, TensorProto.FLOAT, None) for k in feeds],
        [helper.make_tensor_value_info(o, TensorProto.FLOAT, None) for o in outputs],
        [numpy_helper.from_array(np.asarray(v), k) for k, v in g.inits.items() if k in used],
    )
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    proto.ir_version = 9
    session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(outputs, feeds)


def _rewritten(g: Graph, rewrite, feeds: dict, outputs: list[str], protected=frozenset()) -> list[str]:
    """Applies `rewrite` to `g` (protecting `protected` and the outputs) and checks that the results
    are unchanged; returns the op types left."""
    before = _run(copy.deepcopy(g), feeds, outputs)
    rewrite(g, set(protected) | set(outputs))
    after = _run(g, feeds, outputs)
    for want, got in zip(before, after):
        assert got.shape == want.shape and np.abs(got - want).max() <= 1e-5 * max(1.0, np.abs(want).max())
    return [n.op for n in g.nodes]


def _read_again(g: Graph, tensor: str, outputs: list[str]) -> list[str]:
    """`tensor` read by one more node, whose output `r` joins the graph's `outputs`."""
    g.add("Relu", [tensor], ["r"])
    return [*outputs, "r"]


def _conv_bn(scale_shape=(1, 4, 1, 1), shift_shape=(1, 4, 1, 1), after="Add", shift_const=True, conv=True):
    """x -> Conv (4 filters) -> Mul by a constant -> Add (or `after`) of a constant: a Keras
    BatchNorm after a convolution as the emitter writes it."""
    rng = np.random.default_rng(0)
    g = Graph()
    g.inits["w"] = rng.normal(size=(4, 3, 3, 3)).astype(np.float32)
    g.inits["b"] = rng.normal(size=4).astype(np.float32)
    g.inits["scale"] = rng.uniform(0.5, 2, scale_shape).astype(np.float32)
    g.inits["shift"] = rng.normal(size=shift_shape).astype(np.float32)
    g.add("Conv", ["x", "w", "b"], ["c0" if not conv else "c"], pads=[1, 1, 1, 1])
    if not conv:  # the Mul reads a ReLU of the convolution
        g.add("Relu", ["c0"], ["c"])
    g.add("Mul", ["c", "scale"], ["m"])
    g.add(after, ["m", "shift" if shift_const else "x"] if after == "Add" else ["m"], ["y"])
    return g


X = {"x": np.random.default_rng(1).normal(size=(2, 3, 9, 7)).astype(np.float32)}


def test_batch_norm_folds_into_the_convolution_before_it():
    g = _conv_bn()
    assert _rewritten(g, onnx_rewrites.fold_batch_norm, X, ["y"]) == ["Conv"]
    assert g.nodes[0].outputs == ["y"]


@pytest.mark.parametrize(
    "case",
    ["scalar scale", "scalar shift", "no add after", "add of a tensor", "no convolution", "convolution read twice",
     "convolution protected", "product protected"],
)  # fmt: skip
def test_batch_norm_is_left_where_it_does_not_fold_exactly(case):
    g = _conv_bn(
        scale_shape=(1, 1, 1, 1) if case == "scalar scale" else (1, 4, 1, 1),
        shift_shape=(1, 1, 1, 1) if case == "scalar shift" else (1, 4, 1, 1),
        after="Relu" if case == "no add after" else "Add",
        shift_const=case != "add of a tensor",
        conv=case != "no convolution",
    )
    outputs = ["y"]
    if case == "add of a tensor":  # conv * s + another convolution's output: no constant
        g.add("Conv", ["x", "w", "b"], ["c2"], pads=[1, 1, 1, 1])
        g.nodes.insert(0, g.nodes.pop())
        g.nodes[-1].inputs = ["m", "c2"]
    if case == "convolution read twice":
        outputs = _read_again(g, "c", outputs)
    protected = {"c"} if case == "convolution protected" else {"m"} if case == "product protected" else set()
    before = [n.op for n in g.nodes]
    assert _rewritten(g, onnx_rewrites.fold_batch_norm, X, outputs, protected) == before


def _pad_pool(pads=(0, 0, 1, 2, 0, 0, 1, 0), pool_pads=None, pad_op="Pad"):
    g = Graph()
    g.inits["pads"] = np.array(pads, np.int64)
    if pad_op == "Pad":
        g.add("Pad", ["x", "pads"], ["p"])
    else:
        g.add(pad_op, ["x"], ["p"])
    attrs = {"kernel_shape": [3, 3], "strides": [1, 1]}
    if pool_pads:
        attrs["pads"] = pool_pads
    g.add("AveragePool", ["p"], ["y"], **attrs)
    return g


def test_a_zero_pad_merges_into_the_average_pool_after_it():
    g = _pad_pool()
    assert _rewritten(g, onnx_rewrites.merge_pad_into_avg_pool, X, ["y"]) == ["AveragePool"]
    assert g.nodes[0].inputs == ["x"]
    assert g.nodes[0].attrs["pads"] == [1, 2, 1, 0] and g.nodes[0].attrs["count_include_pad"] == 1


@pytest.mark.parametrize(
    "case", ["batch padded", "channels padded", "pool pads already", "no pad", "pad read twice", "pad protected"]
)
def test_a_pad_is_left_where_it_does_not_merge(case):
    pads = {"batch padded": (1, 0, 1, 1, 0, 0, 1, 1), "channels padded": (0, 0, 1, 1, 0, 1, 1, 1)}
    g = _pad_pool(
        pads=pads.get(case, (0, 0, 1, 2, 0, 0, 1, 0)),
        pool_pads=[1, 1, 1, 1] if case == "pool pads already" else None,
        pad_op="Relu" if case == "no pad" else "Pad",
    )
    outputs = ["y"]
    if case == "pad read twice":
        outputs = _read_again(g, "p", outputs)
    before = [n.op for n in g.nodes]
    protected = {"p"} if case == "pad protected" else set()
    assert _rewritten(g, onnx_rewrites.merge_pad_into_avg_pool, X, outputs, protected) == before


def _relu_pad_max_pool(pads=(0, 0, 1, 2, 0, 0, 1, 0), source="Relu", pool_pads=None, value=None, kernel=(3, 3)):
    """x -> `source` -> Pad (`pads`, zeros or `value`) -> MaxPool (3x3, stride 2): ResNet's stem."""
    g = Graph()
    g.add(source, ["x"], ["s"])
    g.inits["pads"] = np.array(pads, np.int64)
    inputs = ["s", "pads"]
    if value is not None:
        g.inits["value"] = np.array(value, np.float32)
        inputs.append("value")
    g.add("Pad", inputs, ["p"], mode="constant")
    attrs = {"kernel_shape": list(kernel), "strides": [2, 2]}
    if pool_pads:
        attrs["pads"] = pool_pads
    g.add("MaxPool", ["p"], ["y"], **attrs)
    return g


def test_a_zero_pad_of_relu_outputs_merges_into_the_max_pool_after_it():
    g = _relu_pad_max_pool()
    assert _rewritten(g, onnx_rewrites.merge_pad_into_max_pool, X, ["y"]) == ["Relu", "MaxPool"]
    assert g.nodes[1].inputs == ["s"] and g.nodes[1].attrs["pads"] == [1, 2, 1, 0]


@pytest.mark.parametrize(
    "case",
    ["values can be negative", "padded with 1", "pad as wide as the kernel", "channels padded", "pool pads already",
     "pad read twice", "pad protected"],
)  # fmt: skip
def test_a_pad_is_left_where_the_max_pool_would_differ(case):
    """Each condition of the merge, broken alone, leaves the graph as it was; where the merge would
    change the results (a negative input, a pad of 1s, a window of pads alone) the check on the
    graph's results is what fails first."""
    pads = {"channels padded": (0, 1, 1, 1, 0, 0, 1, 1), "pad as wide as the kernel": (0, 0, 1, 3, 0, 0, 1, 0)}
    g = _relu_pad_max_pool(
        pads=pads.get(case, (0, 0, 1, 2, 0, 0, 1, 0)),
        source="Neg" if case == "values can be negative" else "Relu",
        pool_pads=[1, 1, 1, 1] if case == "pool pads already" else None,
        value=1.0 if case == "padded with 1" else None,
    )
    outputs = ["y"]
    if case == "pad read twice":
        outputs = _read_again(g, "p", outputs)
    before = [n.op for n in g.nodes]
    protected = {"p"} if case == "pad protected" else set()
    assert _rewritten(g, onnx_rewrites.merge_pad_into_max_pool, X, outputs, protected) == before


def _four_maps() -> Graph:
    """A graph of four maps of x, a, b, c and d, to concatenate."""
    g = Graph()
    for name in "abcd":
        g.add("Relu", ["x"], [name])
    return g


def _concats():
    """y = Concat(a, Concat(b, Concat(c, d)), d), all on the channel axis."""
    g = _four_maps()
    g.add("Concat", ["c", "d"], ["cd"], axis=1)
    g.add("Concat", ["b", "cd"], ["bcd"], axis=1)
    g.add("Concat", ["a", "bcd", "d"], ["y"], axis=1)
    return g


def test_nested_concatenations_on_one_axis_become_one():
    g = _concats()
    assert _rewritten(g, onnx_rewrites.flatten_concats, X, ["y"]).count("Concat") == 1
    (concat,) = [n for n in g.nodes if n.op == "Concat"]
    assert concat.inputs == ["a", "b", "c", "d", "d"]


@pytest.mark.parametrize("case", ["inner read twice", "inner protected"])
def test_a_nested_concatenation_is_kept_where_it_must_be(case):
    g = _concats()
    outputs = ["y"]
    if case == "inner read twice":
        outputs = _read_again(g, "bcd", outputs)
    protected = {"bcd"} if case == "inner protected" else set()
    ops = _rewritten(g, onnx_rewrites.flatten_concats, X, outputs, protected)
    assert ops.count("Concat") == 2  # the innermost (c, d) still joins the middle one
    middle = next(n for n in g.nodes if n.outputs == ["bcd"])
    assert middle.inputs == ["b", "c", "d"]


def test_concatenations_on_other_axes_are_kept():
    g = _four_maps()
    g.add("Concat", ["a", "b"], ["ab"], axis=2)
    g.add("Concat", ["c", "d"], ["cd"], axis=2)
    g.add("Concat", ["ab", "cd"], ["y"], axis=1)
    assert _rewritten(g, onnx_rewrites.flatten_concats, X, ["y"]).count("Concat") == 3


def test_identities_are_removed_but_at_the_graphs_ends():
    g = Graph()
    g.add("Identity", ["x"], ["i1"])
    g.add("Identity", ["i1"], ["i2"])
    g.add("Relu", ["i2"], ["r"])
    g.add("Identity", ["r"], ["y"])  # the output: kept
    # the one reading the protected input kept, the next one gone
    assert _rewritten(g, onnx_rewrites.remove_identities, X, ["y"], {"x"}) == ["Identity", "Relu", "Identity"]
    assert g.nodes[1].inputs == ["i1"]
    g = Graph()
    g.add("Identity", ["x"], ["i1"])
    g.add("Identity", ["i1"], ["i2"])
    g.add("Relu", ["i2"], ["r"])
    g.add("Identity", ["r"], ["y"])
    assert _rewritten(g, onnx_rewrites.remove_identities, X, ["y"]) == ["Relu", "Identity"]
    assert g.nodes[0].inputs == ["x"]


def test_nodes_are_sorted_inputs_first_and_a_cycle_is_refused():
    g = Graph()
    g.inits["k"] = np.ones(1, np.float32)
    g.add("Add", ["r", "s"], ["y"])
    g.add("Mul", ["r", "k"], ["s"])
    g.add("Relu", ["x"], ["r"])
    onnx_rewrites.sort_topologically(g, ["x"])
    assert [n.op for n in g.nodes] == ["Relu", "Mul", "Add"]
    g.add("Relu", ["z"], ["w"])  # an input nothing makes
    with pytest.raises(AssertionError, match="cycle or a dangling input"):
        onnx_rewrites.sort_topologically(g, ["x"])


def _affine_stem(perm=(0, 3, 1, 2), read_twice=False, relu=False):
    """x (NHWC) -> Mul by a per-channel constant -> Transpose(perm) -> Conv: a stem the input fold
    reads, with the Mul's output read a second time or a transpose that is not NHWC -> NCHW;
    perm None: x is NCHW, no transpose, the constant on axis 1; `relu`: a ReLU before the Conv."""
    rng = np.random.default_rng(5)
    g = Graph()
    g.inits["s"] = rng.uniform(0.5, 2, (1, 1, 1, 4) if perm else (1, 4, 1, 1)).astype(np.float32)
    g.inits["w"] = rng.normal(size=(2, 4, 3, 3)).astype(np.float32)
    g.inits["b"] = rng.normal(size=2).astype(np.float32)
    g.add("Mul", ["x", "s"], ["m"])
    if perm:
        g.add("Transpose", ["m"], ["t"], perm=list(perm))
    if relu:  # as Max(t, 0): a node of two inputs, like a Pad's
        g.inits["zero"] = np.zeros(1, np.float32)
        g.add("Max", ["t", "zero"], ["t2"])
    g.add("Conv", ["t2" if relu else "t" if perm else "m", "w", "b"], ["y"])
    outputs = ["y"]
    if read_twice:
        outputs = _read_again(g, "m", outputs)
    return g, outputs


def test_the_input_fold_reads_only_a_chain_it_can_replace():
    x = {"x": np.random.default_rng(6).normal(size=(2, 4, 5, 4)).astype(np.float32)}
    fold = onnx_rewrites.fold_input_affine
    g, outputs = _affine_stem()
    assert _rewritten(g, lambda g, p: fold(g, p, "x"), x, outputs) == ["Transpose", "Conv"]
    # the scaled input read by another node too: the Mul stays for it
    g, outputs = _affine_stem(read_twice=True)
    assert _rewritten(g, lambda g, p: fold(g, p, "x"), x, outputs) == ["Mul", "Transpose", "Conv", "Relu"]
    # a transpose that leaves the channels off axis 1 (H, here as many as the channels, goes there)
    g, outputs = _affine_stem(perm=(0, 1, 3, 2))
    assert _rewritten(g, lambda g, p: fold(g, p, "x"), x, outputs) == ["Mul", "Transpose", "Conv"]
    # an activation between the scale and the convolution (not a zero pad): nothing folds
    g, outputs = _affine_stem(relu=True)
    assert _rewritten(g, lambda g, p: fold(g, p, "x"), x, outputs) == ["Mul", "Transpose", "Max", "Conv"]
    # an NCHW input (no transpose): the per-channel constant on axis 1 folds
    g, outputs = _affine_stem(perm=None)
    assert _rewritten(g, lambda g, p: fold(g, p, "x"), x, outputs) == ["Conv"]


def test_the_input_fold_leaves_a_grouped_convolution_alone():
    """x + offset -> zero Pad -> Conv with 2 groups of 2 of the 4 channels: the fold's one Add per
    input channel would be per group there (2 values for 4 channels)."""
    rng = np.random.default_rng(7)
    g = Graph()
    g.inits["o"] = np.full((1, 1, 1, 1), 3.0, np.float32)
    g.inits["pads"] = np.array([0, 0, 1, 1, 0, 0, 1, 1], np.int64)
    g.inits["w"] = rng.normal(size=(4, 2, 3, 3)).astype(np.float32)
    g.inits["b"] = rng.normal(size=4).astype(np.float32)
    g.add("Add", ["x", "o"], ["a"])
    g.add("Pad", ["a", "pads"], ["p"])
    g.add("Conv", ["p", "w", "b"], ["y"], group=2)
    x = {"x": np.random.default_rng(8).normal(size=(2, 4, 6, 5)).astype(np.float32)}
    fold = onnx_rewrites.fold_input_affine
    assert _rewritten(g, lambda g, p: fold(g, p, "x"), x, ["y"]) == ["Add", "Pad", "Conv"]
