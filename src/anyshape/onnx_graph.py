"""Emit an ONNX graph straight from a built Keras model (no TensorFlow, no tf2onnx).

`keras_to_onnx(model)` walks the model's functional graph from its outputs back to its inputs
and writes one ONNX node per Keras layer (`anyshape.onnx_emitter`), with the weights read as numpy (`variable.numpy()`),
so it works the same whichever Keras backend built the model. Why emit the graph
ourselves instead of `model.export(format="onnx")`: that path exists on TensorFlow only, needs
tf2onnx and takes about 40 s for InceptionV3; this emitter takes well under a second, has
dynamic batch, height and width, and lets the graph be rewritten for speed (below).

Layout: ONNX convolutions and pools are NCHW. Every 4-D tensor carries its *physical* axis
order relative to its *logical* (Keras) axis order; a channels_last layer needs the physical
order (0, 3, 1, 2) and a channels_first layer (0, 1, 2, 3); a Transpose is inserted only where
the order differs. A channels_last model therefore gets one Transpose after its input, and
anyshape's channels_first model (whose first layer is `Permute((2, 3, 1))`) gets none: the
Permute only relabels axes. Outputs are transposed back to the Keras layout.

Rewrites (`anyshape.onnx_rewrites`; all exact up to float32 rounding; `optimize=False` emits
the plain graph):

* BatchNorm folded into the preceding convolution's weights and bias (TF/Keras inference BN:
  `gamma * (x - mean) / sqrt(var + eps) + beta`).
* `ZeroPadding2D` + valid `AveragePooling2D` (torchvision's count_include_pad semantics) becomes
  one AveragePool with pads and `count_include_pad=1`; Keras' 'same' average pool becomes
  AveragePool with pads and `count_include_pad=0` (Keras excludes padded cells from the divisor).
* `ZeroPadding2D` of ReLU outputs + valid `MaxPooling2D` (ResNet's and DenseNet's stem) becomes
  one MaxPool with pads (`merge_pad_into_max_pool` says why it is exact).
* Nested concatenations on one axis are flattened into one (one copy of the maps fewer).
* The input's Rescaling / Normalization (a per-channel x * s + o) folded into the first
  convolution: s into its kernel, o / s as one per-channel Add on the NCHW input, or into its bias
  when nothing pads that convolution (`fold_input_affine` says why and when it applies).

With these the graph ONNX Runtime runs is the same as the one it makes of torchvision's export
(94 NCHWc convolutions, 11 concatenations), and runs as fast per image. Measured and left out
(single-thread CPU time per image on ONNX Runtime): merging the 1x1 convolutions that read the
same block input into one wider convolution + Split, and computing the pool branch as
conv1x1 -> avgpool -> +bias (the same linear map on fewer channels) were both slower: the
Split copies cost more than the larger GEMMs gain.
"""

from __future__ import annotations

from collections.abc import Collection

from anyshape.onnx_emitter import Emitter, Tensor, UnsupportedLayer, walk
from anyshape.onnx_rewrites import (
    flatten_concats,
    fold_batch_norm,
    fold_input_affine,
    merge_pad_into_avg_pool,
    merge_pad_into_max_pool,
    remove_identities,
    sort_topologically,
)

__all__ = ["keras_to_onnx", "UnsupportedLayer", "OPSET"]

OPSET = 17
# The rewrites `keras_to_onnx(optimize=True)` applies, in this order (each exact up to float32 rounding).
REWRITES = {
    "fold_batch_norm": fold_batch_norm,
    "merge_pad_into_avg_pool": merge_pad_into_avg_pool,
    "merge_pad_into_max_pool": merge_pad_into_max_pool,
    "remove_identities": remove_identities,
    "flatten_concats": flatten_concats,
    "fold_input_affine": fold_input_affine,
}


def keras_to_onnx(
    model,
    *,
    optimize: bool | Collection[str] = True,
    opset: int = OPSET,
    fixed_hw: tuple | None = None,
    check: bool = True,
):
    """Translate a built Keras model into an `onnx.ModelProto` with the same outputs.

    Args:
        model: a built functional `keras.Model` (anyshape's or keras.applications' InceptionV3,
            or any model made of the layers listed in this module).
        optimize: apply the rewrites in the module docstring (BN folding, merged 1x1 convs); or
            the names of the ones to apply (`REWRITES`), as benchmarks/bench_rewrites.py times them.
        opset: ONNX opset of the graph.
        fixed_hw: (H, W) to bake into the input shape, or None to keep the model's own (None
            dimensions become symbolic "height"/"width"). The batch axis is always dynamic.
        check: run ONNX's checker on the result; False for a caller that checks the serialised
            graph itself (`GraphModel.from_keras`: one serialisation of a large model, not two).

    Raises:
        UnsupportedLayer: the model holds a layer this emitter cannot translate; use Keras.
    """
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    if len(model.inputs) != 1:
        raise UnsupportedLayer(f"model {model.name!r} has {len(model.inputs)} inputs; the emitter handles one")
    out_names = [f"output_{i}" for i in range(len(model.outputs))]
    em = Emitter(model, set(out_names))
    in_tensor = model.inputs[0]
    rank = len(in_tensor.shape)
    em.tensors[id(in_tensor)] = Tensor("input", rank, tuple(range(rank)))

    for layer, ins, outs in walk(model):
        if type(layer).__name__ == "InputLayer":
            continue
        if len(outs) != 1:
            raise UnsupportedLayer(f"layer {layer.name!r} has {len(outs)} outputs")
        args = [em.tensors[id(t)] for t in ins]
        em.tensors[id(outs[0])] = em.emit(layer, args, em.g.fresh(layer.name))

    g = em.g
    for name, out in zip(out_names, model.outputs):
        t = em.tensors[id(out)]
        t = em.to_phys(t, tuple(range(t.rank)))
        g.add("Identity", [t.name], [name])

    chosen = set(REWRITES) if optimize is True else set(optimize or ())
    if chosen - set(REWRITES):
        raise ValueError(f"unknown rewrites {sorted(chosen - set(REWRITES))}; known: {', '.join(REWRITES)}")
    for name, rewrite in REWRITES.items():
        if name in chosen:
            rewrite(g, em.protected)
    remove_identities(g, em.protected)
    sort_topologically(g, ["input"])

    def dims(shape, names):
        return [d if d is not None else n for d, n in zip(shape, names)]

    in_shape = list(in_tensor.shape)
    if fixed_hw is not None and rank == 4:
        h_axis, w_axis = _spatial_axes_of_input(model)
        in_shape[h_axis], in_shape[w_axis] = fixed_hw
    in_names = _input_dim_names(model, rank)
    inputs = [helper.make_tensor_value_info("input", TensorProto.FLOAT, dims([None] + in_shape[1:], in_names))]
    outputs = [
        helper.make_tensor_value_info(n, TensorProto.FLOAT, ["batch"] + [None] * (len(o.shape) - 1))
        for n, o in zip(out_names, model.outputs)
    ]
    # The model is assembled in place (what helper.make_graph and make_model would give), each weight
    # moved into it and released from the emitter at once: the weights are then held twice at the
    # peak (Keras' variables and the graph's), not five times (numpy, tensors, make_graph's and
    # make_model's copies, the checker's serialisation): ConvNeXtXLarge, 1.4 GB of weights, took
    # 10.5 GB to export, now about 6.
    proto = onnx.ModelProto(ir_version=min(onnx.IR_VERSION, 9), producer_name="anyshape")
    proto.opset_import.append(helper.make_opsetid("", opset))
    graph = proto.graph
    graph.name = model.name
    graph.node.extend(helper.make_node(n.op, n.inputs, n.outputs, name=n.name, **n.attrs) for n in g.nodes)
    graph.input.extend(inputs)
    graph.output.extend(outputs)
    used = {i for n in g.nodes for i in n.inputs}
    for name in [k for k in g.inits if k in used]:
        graph.initializer.append(numpy_helper.from_array(g.inits.pop(name), name))
    g.inits.clear()
    if check:
        onnx.checker.check_model(proto)
    return proto


def _spatial_axes_of_input(model) -> tuple[int, int]:
    fmt = _input_data_format(model)
    return (2, 3) if fmt == "channels_first" else (1, 2)


def _input_data_format(model) -> str:
    """channels_first when the model's first layer permutes (C, H, W) to (H, W, C) (anyshape's
    channels_first model) or its first convolution is channels_first; else channels_last."""
    for layer, _, _ in walk(model):
        kind = type(layer).__name__
        if kind == "InputLayer":
            continue
        if kind == "Permute" and tuple(layer.dims) == (2, 3, 1):
            return "channels_first"
        fmt = getattr(layer, "data_format", None)
        if fmt is not None:
            return fmt
    return "channels_last"


def _input_dim_names(model, rank: int) -> list[str]:
    if rank != 4:
        return ["batch"] + [f"d{i}" for i in range(1, rank)]
    if _input_data_format(model) == "channels_first":
        return ["batch", "channels", "height", "width"]
    return ["batch", "height", "width", "channels"]
