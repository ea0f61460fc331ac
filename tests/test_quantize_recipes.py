"""The int8 recipes of engine/quantize.py (issue 26, item 2): which nodes each recipe quantizes and
keeps in float, and which recipe each network gets, on a hand-made ONNX graph of a dozen nodes
with every kind of node the recipes tell apart (first conv, depthwise conv, squeeze-and-excite
convs on a pooled tensor, pointwise conv, pooled MatMul and Gemm head): milliseconds, no model
built. The family's own graphs are quantized with their recipe in tests/test_verbs_family.py."""

from __future__ import annotations

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime.quantization")

from anyshape.archs import get_arch, list_models  # noqa: E402
from anyshape.engine import GraphModel  # noqa: E402
from anyshape.engine.quantize import (  # noqa: E402
    CONV_MATMUL,
    DEFAULT_RECIPE,
    FAMILY_INT8,
    RECIPES,
    FamilyInt8,
    Recipe,
    _quantize_onnxruntime,
    bf16_remainder_for,
    family_int8,
    kept_in_float,
    quantize_graph,
    recipe_for,
    signed_activations_for,
    unquantized_outputs,
)

WEIGHTED = ["first", "depthwise", "se_reduce", "se_expand", "pointwise", "head_matmul", "head_gemm"]
# what each recipe keeps in float among the nodes of its op types
KEPT = {
    "conv": {"first"},
    "conv+matmul": {"first"},
    "conv+matmul, depthwise float": {"first", "depthwise"},
    "conv+matmul, pooled float": {"first", "se_reduce", "se_expand", "head_matmul", "head_gemm"},
    "conv+matmul, depthwise+pooled float": {"first", "depthwise", "se_reduce", "se_expand", "head_matmul", "head_gemm"},
    "conv+matmul, last float": {"first", "head_gemm"},
    "conv+concat": {"first"},
}


def _graph(groups: int = 4) -> bytes:
    """input (1, 3, 8, 8) -> first conv -> depthwise conv -> squeeze-and-excite (global pool, 1x1
    conv, relu, 1x1 conv, sigmoid, times the map) -> pointwise conv -> concatenated with its input
    (DenseNet's join) -> global pool -> flatten -> MatMul -> Gemm (the classifier). `groups`: the
    second convolution's (4: depthwise)."""
    h = onnx.helper
    rng = np.random.default_rng(0)

    def weight(name, *shape):
        return onnx.numpy_helper.from_array(rng.normal(0, 0.5, shape).astype(np.float32), name)

    nodes = [
        h.make_node("Conv", ["input", "w0"], ["a"], name="first", pads=[1, 1, 1, 1]),
        h.make_node("Conv", ["a", "wdw"], ["b"], name="depthwise", group=groups, pads=[1, 1, 1, 1]),
        h.make_node("GlobalAveragePool", ["b"], ["p"], name="pool"),
        h.make_node("Conv", ["p", "wse1"], ["q"], name="se_reduce"),
        h.make_node("Relu", ["q"], ["q2"], name="se_relu"),
        h.make_node("Conv", ["q2", "wse2"], ["s"], name="se_expand"),
        h.make_node("Sigmoid", ["s"], ["s2"], name="se_gate"),
        h.make_node("Mul", ["b", "s2"], ["c"], name="se_scale"),
        h.make_node("Conv", ["c", "wpw"], ["d"], name="pointwise"),
        h.make_node("Concat", ["d", "c"], ["dc"], name="concat", axis=1),
        h.make_node("GlobalAveragePool", ["dc"], ["e"], name="head_pool"),
        h.make_node("Flatten", ["e"], ["f"], name="flatten"),
        h.make_node("MatMul", ["f", "wm"], ["g"], name="head_matmul"),
        h.make_node("Gemm", ["g", "wg", "bg"], ["y"], name="head_gemm"),
    ]
    weights = [
        weight("w0", 4, 3, 3, 3),
        weight("wdw", 4, 4 // groups, 3, 3),
        weight("wse1", 2, 4, 1, 1),
        weight("wse2", 4, 2, 1, 1),
        weight("wpw", 4, 4, 1, 1),
        weight("wm", 8, 4),
        weight("wg", 4, 3),
        weight("bg", 3),
    ]
    graph = h.make_graph(
        nodes,
        "recipes",
        [h.make_tensor_value_info("input", onnx.TensorProto.FLOAT, [None, 3, 8, 8])],
        [h.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [None, 3])],
        weights,
    )
    return h.make_model(graph, opset_imports=[h.make_opsetid("", 17)]).SerializeToString()


def test_each_recipe_keeps_its_kinds_of_node_in_float():
    proto = onnx.load_from_string(_graph())
    assert set(RECIPES) == set(KEPT)
    for name, recipe in RECIPES.items():
        assert set(kept_in_float(proto, recipe)) == KEPT[name], name


def test_any_grouped_convolution_counts_as_depthwise_and_a_recipe_may_keep_nothing_float():
    proto = onnx.load_from_string(_graph(groups=2))  # two groups of two channels: grouped too
    assert set(kept_in_float(proto, RECIPES["conv+matmul, depthwise float"])) == {"first", "depthwise"}
    assert kept_in_float(proto, Recipe("everything", CONV_MATMUL, ())) == []  # the first conv too
    assert kept_in_float(proto, Recipe("first only", CONV_MATMUL, ("first",))) == ["first"]


@pytest.mark.parametrize("name", sorted(KEPT))
def test_the_quantized_graph_follows_the_recipe(name):
    """Quantized by ONNX Runtime with the recipe: exactly the nodes of its op types that it does
    not keep in float read a weight through a DequantizeLinear (int8 per channel); the others keep
    their float weight; a recipe with Concat joins int8 tensors (each input through a
    DequantizeLinear, the output quantized), the others join float ones."""
    batches = [np.random.default_rng(1).uniform(-1, 1, (4, 3, 8, 8)).astype(np.float32)]
    quantized = onnx.load_from_string(_quantize_onnxruntime(_graph(), batches, name))
    made_by = {out: node.op_type for node in quantized.graph.node for out in node.output}
    int8 = {
        n.name for n in quantized.graph.node if n.name in WEIGHTED and made_by.get(n.input[1]) == "DequantizeLinear"
    }
    kinds = {"first": "Conv", "head_matmul": "MatMul", "head_gemm": "Gemm"}
    of_its_types = {n for n in WEIGHTED if kinds.get(n, "Conv") in RECIPES[name].op_types}
    assert int8 == of_its_types - KEPT[name]
    # an activation is quantized only for a quantized node that reads it: no convolution's or
    # matmul's output is quantized for the float layers after it (engine/quantize.py
    # `unquantized_outputs`), except for the joins of a recipe with Concat
    dequantized_by = {n.input[0]: n.output[0] for n in quantized.graph.node if n.op_type == "DequantizeLinear"}
    for q in (
        n for n in quantized.graph.node if n.op_type == "QuantizeLinear" and "Concat" not in RECIPES[name].op_types
    ):
        readers = {n.name for n in quantized.graph.node if dequantized_by[q.output[0]] in n.input}
        assert readers & (int8 | {"concat"}), (name, q.input[0], readers)
    concat = next(n for n in quantized.graph.node if n.name == "concat")
    readers = {n.op_type for n in quantized.graph.node if concat.output[0] in n.input}
    int8_join = all(made_by.get(i) == "DequantizeLinear" for i in concat.input) and readers == {"QuantizeLinear"}
    assert int8_join == ("Concat" in RECIPES[name].op_types), name


def test_convolution_and_matmul_outputs_stay_float():
    """A quantized node's output gets no QuantizeLinear of its own (`unquantized_outputs`) unless the
    recipe joins int8 tensors: the Gemm writes the classifier's output unrounded (ONNX Runtime's
    default rounds the logits to a calibrated range, which clipped the random-weight ConvNeXtTiny's
    logits on an image it was not calibrated on); the MatMul's output is quantized once, as the
    int8 Gemm's input; the pointwise Conv's output, read by float layers only, stays float; the
    matmuls read int8 inputs."""
    assert unquantized_outputs(RECIPES["conv+matmul"]) == ["Conv", "MatMul", "Gemm"]
    assert unquantized_outputs(RECIPES["conv+concat"]) == []  # its joins read the convolutions' int8 outputs
    x = np.random.default_rng(1).uniform(-1, 1, (4, 3, 8, 8)).astype(np.float32)
    graph = onnx.load_from_string(_quantize_onnxruntime(_graph(), [x], "conv+matmul")).graph
    made_by = {out: node for node in graph.node for out in node.output}
    quantized = [n.input[0] for n in graph.node if n.op_type == "QuantizeLinear"]
    assert "y" not in quantized and made_by["y"].name == "head_gemm"  # the logits straight from the Gemm
    assert quantized.count("g") == 1 and "d" not in quantized  # the Gemm's input; the pointwise Conv's output
    for name in ("head_matmul", "head_gemm"):  # int8 inputs: activation and weight through DequantizeLinear
        node = next(n for n in graph.node if n.name == name)
        assert [made_by[i].op_type for i in node.input[:2]] == ["DequantizeLinear"] * 2, name


NO_AMX = frozenset({"avx512_bf16", "avx512_vnni"})  # a Zen 4's flags: the families' own choice


def test_each_network_gets_its_familys_recipe():
    """Every network gets its family's record (recipe, signed activations, bf16 float layers tried),
    a network of an unlisted family or none the defaults; every record names a recipe and a form of
    signed activations quantize knows, and a family anyshape has."""
    for arch in list_models():
        plan = FAMILY_INT8.get(get_arch(arch).family, FamilyInt8())
        assert family_int8(arch) == plan, arch
        assert (recipe_for(arch), signed_activations_for(arch), bf16_remainder_for(arch, flags=NO_AMX)) == (
            plan.recipe,
            plan.signed,
            plan.bf16_remainder,
        ), arch
    assert family_int8(None) == family_int8("not_a_network") == FamilyInt8(DEFAULT_RECIPE, "asymmetric", False)
    assert {p.recipe for p in FAMILY_INT8.values()} <= set(RECIPES) and DEFAULT_RECIPE in RECIPES
    assert {p.signed for p in FAMILY_INT8.values()} <= {"asymmetric", "symmetric"}
    assert set(FAMILY_INT8) <= {get_arch(a).family for a in list_models()}
    assert recipe_for("densenet121") == "conv+concat" and signed_activations_for("densenet121") == "symmetric"
    assert bf16_remainder_for("efficientnet_b0", NO_AMX) and not bf16_remainder_for("inception_v3", NO_AMX)
    # with AMX every network's float layers are tried in bf16 (an unknown network's too);
    # avx512_bf16 alone (Zen 4) keeps the family's choice
    amx = {"amx_bf16", "avx512_bf16"}
    assert all(bf16_remainder_for(arch, amx) for arch in [*list_models(), None])
    assert bf16_remainder_for("inception_v3", {"amx_bf16"}) and not bf16_remainder_for("inception_v3", {"avx512_bf16"})


def test_quantize_graph_refuses_an_unknown_recipe_and_a_recipe_for_nncf():
    graph = GraphModel(graph=_graph(), data_format="channels_first")
    with pytest.raises(ValueError, match="recipe must be one of"):
        quantize_graph(graph, [], recipe="everything")
    with pytest.raises(ValueError, match="method='onnxruntime' only"):
        quantize_graph(graph, [], method="nncf", recipe="conv")


def test_symmetric_signed_activations_keep_each_range_and_the_results():
    """`signed="symmetric"`: the activations whose calibrated range goes below 0 (here the
    maps before the ReLU) become int8 with zero point 0, reaching as far on each side as uint8
    did on its farther one (127 steps); the ReLU output keeps uint8 at zero point 0; the outputs
    stay as close to the float graph's as uint8's (within a few int8 steps: a tiny random graph).
    A tensor a Gemm reads (the MatMul's output) keeps uint8 (ONNX Runtime's int8 Gemm erred with an
    int8 input); the MatMul's signed input (the pooled features) becomes int8 (ConvNeXt's
    pointwise layers: OpenVINO ran a uint8 zero point there as a separate subtraction)."""
    import onnxruntime as ort
    from onnx import numpy_helper

    x = np.random.default_rng(1).uniform(-1, 1, (4, 3, 8, 8)).astype(np.float32)
    graphs = {s: _quantize_onnxruntime(_graph(), [x], "conv+matmul", s) for s in ("asymmetric", "symmetric")}

    def params(data):
        g = onnx.load_from_string(data).graph
        inits = {t.name: numpy_helper.to_array(t) for t in g.initializer}
        return {
            n.input[0]: (float(inits[n.input[1]]), inits[n.input[2]].dtype.name, int(inits[n.input[2]]))
            for n in g.node
            if n.op_type == "QuantizeLinear" and inits[n.input[2]].size == 1
        }

    before, after = params(graphs["asymmetric"]), params(graphs["symmetric"])
    assert set(before) == set(after)
    signed = {t for t, (_, _, zero) in before.items() if zero != 0 and t != "g"}
    assert (
        "a" in signed and "f" in signed and "q2" not in signed and "q2" in before
    )  # the first map and the MatMul's input are signed; the ReLU output: zero point 0
    assert before["g"][1:] == after["g"][1:] == ("uint8", before["g"][2]) and before["g"][2] != 0  # the Gemm's input
    for tensor, (scale, dtype, zero) in before.items():
        if tensor in signed:
            new_scale, new_dtype, new_zero = after[tensor]
            assert (dtype, new_dtype, new_zero) == ("uint8", "int8", 0)
            # the farther side reaches +-127 steps: no side clipped, no step wasted
            assert new_scale * 127 == pytest.approx(max(zero, 255 - zero) * scale, rel=1e-6)
        else:
            assert after[tensor] == (scale, dtype, zero)

    def run(data):
        return ort.InferenceSession(data, providers=["CPUExecutionProvider"]).run(None, {"input": x})[0]

    want = run(_graph())
    errors = {s: np.abs(run(g) - want).max() / np.abs(want).max() for s, g in graphs.items()}
    assert errors["symmetric"] <= max(3 * errors["asymmetric"], 0.05), errors
    assert signed_activations_for("mobilenet_v3_small") == "symmetric" == FAMILY_INT8["mobilenet_v3"].signed
    assert signed_activations_for("efficientnet_b0") == signed_activations_for(None) == "asymmetric"


def _shortcut_graph() -> bytes:
    """input (1, 3, 8, 8) -> ResNet's first block, its BatchNorms folded: a projection conv (the
    shortcut, made first) and a conv -> relu -> conv branch, summed; then a sum of that block's
    ReLU output and a conv of it (an identity shortcut: one addend not a conv's output)."""
    h = onnx.helper
    rng = np.random.default_rng(0)

    def weight(name, *shape):
        return onnx.numpy_helper.from_array(rng.normal(0, 0.5, shape).astype(np.float32), name)

    nodes = [
        h.make_node("Conv", ["input", "w0"], ["shortcut"], name="block1_0_conv"),
        h.make_node("Conv", ["input", "w1"], ["a"], name="block1_1_conv", pads=[1, 1, 1, 1]),
        h.make_node("Relu", ["a"], ["a2"], name="block1_1_relu"),
        h.make_node("Conv", ["a2", "w2"], ["b"], name="block1_2_conv"),
        h.make_node("Sum", ["shortcut", "b"], ["s"], name="block1_add"),
        h.make_node("Relu", ["s"], ["out1"], name="block1_out"),
        h.make_node("Conv", ["out1", "w3"], ["c"], name="block2_conv", pads=[1, 1, 1, 1]),
        h.make_node("Add", ["out1", "c"], ["y"], name="block2_add"),
    ]
    weights = [weight("w0", 4, 3, 1, 1), weight("w1", 4, 3, 3, 3), weight("w2", 4, 4, 1, 1), weight("w3", 4, 4, 3, 3)]
    graph = h.make_graph(
        nodes,
        "shortcuts",
        [h.make_tensor_value_info("input", onnx.TensorProto.FLOAT, [None, 3, 8, 8])],
        [h.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [None, 4, 8, 8])],
        weights,
    )
    return h.make_model(graph, opset_imports=[h.make_opsetid("", 17)]).SerializeToString()


def test_a_projection_shortcut_reads_its_first_addend_in_int8():
    """`shortcut_int8` (ResNet): the sum of two convolutions' outputs reads the one made first (the
    projection) through an int8 QuantizeLinear / DequantizeLinear pair with zero point 0 and scale
    its largest magnitude on the calibration batches / 127; its other addend, the identity
    shortcut's sum (one addend a ReLU's output) and every other node are as without it; the
    results stay within a few int8 steps of the float graph's. quantize_graph does it for the
    ResNet family only."""
    import onnxruntime as ort
    from onnx import numpy_helper

    rng = np.random.default_rng(1)
    batches = [rng.uniform(-1, 1, (4, 3, 8, 8)).astype(np.float32) for _ in range(2)]
    graph = GraphModel(graph=_shortcut_graph(), data_format="channels_first", architecture="resnet50")
    plain = onnx.load_from_string(_quantize_onnxruntime(graph.graph, batches, "conv"))
    int8 = onnx.load_from_string(quantize_graph(graph, batches).graph)
    made_by = {out: node for node in int8.graph.node for out in node.output}
    inits = {t.name: numpy_helper.to_array(t) for t in int8.graph.initializer}
    adds = {n.name: n for n in int8.graph.node if n.op_type in ("Add", "Sum")}
    dequantize = made_by[adds["block1_add"].input[0]]
    quantize = made_by[dequantize.input[0]]
    assert (dequantize.op_type, quantize.op_type, quantize.input[0]) == (
        "DequantizeLinear",
        "QuantizeLinear",
        "shortcut",
    )
    assert inits[quantize.input[2]].dtype == np.int8 and int(inits[quantize.input[2]]) == 0
    session = ort.InferenceSession(_shortcut_graph(), providers=["CPUExecutionProvider"])
    reach = max(np.abs(_run_tensor(b, "shortcut")).max() for b in batches)
    assert float(inits[quantize.input[1]]) == pytest.approx(reach / 127, rel=1e-6)
    assert adds["block1_add"].input[1] == "b" and list(adds["block2_add"].input) == list(
        next(n for n in plain.graph.node if n.name == "block2_add").input
    )
    assert len(int8.graph.node) == len(plain.graph.node) + 2  # the one pair, nothing else
    x = batches[0]
    want = session.run(None, {"input": x})[0]
    got = ort.InferenceSession(int8.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"input": x})[0]
    assert np.abs(got - want).max() <= 0.05 * np.abs(want).max()
    assert family_int8("resnet50").shortcut_int8 and family_int8("resnet152").shortcut_int8
    assert not any(family_int8(a).shortcut_int8 for a in ("resnet50_v2", "efficientnet_b0", "mobilenet_v3_large", None))
    other = quantize_graph(GraphModel(graph=_shortcut_graph(), data_format="channels_first"), batches).graph
    assert len(onnx.load_from_string(other).graph.node) == len(plain.graph.node)  # not for another network
    # a recipe that quantizes the convolutions' outputs already reads the sum in int8: nothing added
    joined = quantize_graph(graph, batches, recipe="conv+concat").graph
    assert not [n.name for n in onnx.load_from_string(joined).graph.node if "shortcut" in n.name]
    ort.InferenceSession(joined, providers=["CPUExecutionProvider"]).run(None, {"input": x})


def _run_tensor(batch, name):
    """The float shortcut graph's tensor `name` on `batch`."""
    import onnxruntime as ort

    model = onnx.load_from_string(_shortcut_graph())
    model.graph.output.append(onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None))
    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(
        [name], {"input": batch}
    )[0]
