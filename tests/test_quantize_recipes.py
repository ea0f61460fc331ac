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
    DEFAULT_RECIPE,
    FAMILY_RECIPES,
    RECIPES,
    _quantize_onnxruntime,
    kept_in_float,
    quantize_graph,
    recipe_for,
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
}


def _graph() -> bytes:
    """input (1, 3, 8, 8) -> first conv -> depthwise conv -> squeeze-and-excite (global pool, 1x1
    conv, relu, 1x1 conv, sigmoid, times the map) -> pointwise conv -> global pool -> flatten ->
    MatMul -> Gemm (the classifier)."""
    h = onnx.helper
    rng = np.random.default_rng(0)

    def weight(name, *shape):
        return onnx.numpy_helper.from_array(rng.normal(0, 0.5, shape).astype(np.float32), name)

    nodes = [
        h.make_node("Conv", ["input", "w0"], ["a"], name="first", pads=[1, 1, 1, 1]),
        h.make_node("Conv", ["a", "wdw"], ["b"], name="depthwise", group=4, pads=[1, 1, 1, 1]),
        h.make_node("GlobalAveragePool", ["b"], ["p"], name="pool"),
        h.make_node("Conv", ["p", "wse1"], ["q"], name="se_reduce"),
        h.make_node("Relu", ["q"], ["q2"], name="se_relu"),
        h.make_node("Conv", ["q2", "wse2"], ["s"], name="se_expand"),
        h.make_node("Sigmoid", ["s"], ["s2"], name="se_gate"),
        h.make_node("Mul", ["b", "s2"], ["c"], name="se_scale"),
        h.make_node("Conv", ["c", "wpw"], ["d"], name="pointwise"),
        h.make_node("GlobalAveragePool", ["d"], ["e"], name="head_pool"),
        h.make_node("Flatten", ["e"], ["f"], name="flatten"),
        h.make_node("MatMul", ["f", "wm"], ["g"], name="head_matmul"),
        h.make_node("Gemm", ["g", "wg", "bg"], ["y"], name="head_gemm"),
    ]
    weights = [
        weight("w0", 4, 3, 3, 3),
        weight("wdw", 4, 1, 3, 3),
        weight("wse1", 2, 4, 1, 1),
        weight("wse2", 4, 2, 1, 1),
        weight("wpw", 4, 4, 1, 1),
        weight("wm", 4, 4),
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


@pytest.mark.parametrize("name", sorted(KEPT))
def test_the_quantized_graph_follows_the_recipe(name):
    """Quantized by ONNX Runtime with the recipe: exactly the nodes of its op types that it does
    not keep in float read a weight through a DequantizeLinear (int8 per channel); the others keep
    their float weight."""
    batches = [np.random.default_rng(1).uniform(-1, 1, (4, 3, 8, 8)).astype(np.float32)]
    quantized = onnx.load_from_string(_quantize_onnxruntime(_graph(), batches, name))
    made_by = {out: node.op_type for node in quantized.graph.node for out in node.output}
    int8 = {
        n.name for n in quantized.graph.node if n.name in WEIGHTED and made_by.get(n.input[1]) == "DequantizeLinear"
    }
    kinds = {"first": "Conv", "head_matmul": "MatMul", "head_gemm": "Gemm"}
    of_its_types = {n for n in WEIGHTED if kinds.get(n, "Conv") in RECIPES[name].op_types}
    assert int8 == of_its_types - KEPT[name]


def test_each_network_gets_its_familys_recipe():
    for arch in list_models():
        assert recipe_for(arch) == FAMILY_RECIPES.get(get_arch(arch).family, DEFAULT_RECIPE), arch
    assert recipe_for(None) == DEFAULT_RECIPE
    assert set(FAMILY_RECIPES.values()) <= set(RECIPES) and DEFAULT_RECIPE in RECIPES
    assert set(FAMILY_RECIPES) <= {get_arch(a).family for a in list_models()}


def test_quantize_graph_refuses_an_unknown_recipe_and_a_recipe_for_nncf():
    graph = GraphModel(graph=_graph(), data_format="channels_first")
    with pytest.raises(ValueError, match="recipe must be one of"):
        quantize_graph(graph, [], recipe="everything")
    with pytest.raises(ValueError, match="method='onnxruntime' only"):
        quantize_graph(graph, [], method="nncf", recipe="conv")
