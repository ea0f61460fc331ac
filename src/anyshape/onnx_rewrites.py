"""The rewrites `keras_to_onnx` applies to an emitted graph (`anyshape.onnx_graph` says why):
BatchNorm folded into the convolution before it, a zero padding merged into the average pool
after it, a zero padding of ReLU outputs merged into the max pool after it, nested
concatenations flattened, identities removed, nodes sorted inputs first.
Each is exact up to float32 rounding and leaves the `protected` tensor names (the outputs) alone.
"""

from __future__ import annotations

import numpy as np

from anyshape.onnx_emitter import Graph, Node


def fold_batch_norm(g: Graph, protected: set[str]) -> None:
    users = g.consumers()
    producer = {o: n for n in g.nodes for o in n.outputs}
    drop: set = set()
    for mul in g.nodes:
        if mul.op != "Mul" or mul.inputs[1] not in g.inits:
            continue
        conv = producer.get(mul.inputs[0])
        add_users = users.get(mul.outputs[0], [])
        if conv is None or conv.op != "Conv" or len(users.get(conv.outputs[0], [])) != 1:
            continue
        if conv.outputs[0] in protected or mul.outputs[0] in protected:
            continue
        if len(add_users) != 1 or add_users[0].op != "Add" or add_users[0].inputs[1] not in g.inits:
            continue
        add = add_users[0]
        scale = g.inits[mul.inputs[1]].reshape(-1).astype(np.float64)
        shift = g.inits[add.inputs[1]].reshape(-1).astype(np.float64)
        channels = g.inits[conv.inputs[1]].shape[0]
        if g.inits[mul.inputs[1]].shape != (1, channels, 1, 1) or g.inits[add.inputs[1]].shape != (1, channels, 1, 1):
            continue  # not a per-output-channel affine map of this convolution
        kernel = g.inits[conv.inputs[1]].astype(np.float64)
        bias = g.inits[conv.inputs[2]].astype(np.float64)
        g.inits[conv.inputs[1]] = (kernel * scale[:, None, None, None]).astype(np.float32)
        g.inits[conv.inputs[2]] = (bias * scale + shift).astype(np.float32)
        conv.outputs = [add.outputs[0]]
        drop.update((id(mul), id(add)))
    g.nodes = [n for n in g.nodes if id(n) not in drop]


def _merge_spatial_pads(g: Graph, protected: set[str], op: str, merged) -> None:
    """A Pad of the spatial axes alone, read only by a pool of type `op` that pads nothing itself,
    moves into the pool's pads; `merged(g, pad, pads, pool, producer)` gives the pool's other
    attributes for it, or None where the merge would change the results (the pad is left)."""
    users = g.consumers()
    producer = {o: n for n in g.nodes for o in n.outputs}
    drop = set()
    for pool in g.nodes:
        if pool.op != op or "auto_pad" in pool.attrs or "pads" in pool.attrs:
            continue
        pad = producer.get(pool.inputs[0])
        if pad is None or pad.op != "Pad" or len(users[pad.outputs[0]]) != 1 or pad.outputs[0] in protected:
            continue
        pads = g.inits[pad.inputs[1]].tolist()
        if pads[0] or pads[1] or pads[4] or pads[5]:
            continue
        spatial = [pads[2], pads[3], pads[6], pads[7]]
        attrs = merged(g, pad, spatial, pool, producer)
        if attrs is None:
            continue
        pool.inputs[0] = pad.inputs[0]
        pool.attrs.update(pads=spatial, **attrs)
        drop.add(id(pad))
    g.nodes = [n for n in g.nodes if id(n) not in drop]


def merge_pad_into_avg_pool(g: Graph, protected: set[str]) -> None:
    _merge_spatial_pads(g, protected, "AveragePool", lambda *_: {"count_include_pad": 1})


def merge_pad_into_max_pool(g: Graph, protected: set[str]) -> None:
    """Relu -> zero Pad (spatial) -> MaxPool becomes Relu -> MaxPool with those pads: ONNX's max
    pool reads its pads as absent values, and a window of ReLU outputs (all >= 0) that holds at
    least one of them (each pad smaller than the kernel) has the same maximum with zeros beside it
    or without. ResNet's and DenseNet's stem (Keras' ZeroPadding2D before pool1); OpenVINO ran the
    Pad as a reference kernel (ResNet50 at 224 px batch 16, Xeon with AMX: 4 % of `auto`'s time
    and 4 % of int8's in its profiling counters, README: graph work). A pad of values that can be
    negative (ResNetV2's, NASNet's) is left: a zero there can be the maximum."""
    _merge_spatial_pads(g, protected, "MaxPool", _zeros_beside_relu_outputs)


def _zeros_beside_relu_outputs(g: Graph, pad: Node, pads: list, pool: Node, producer: dict) -> dict | None:
    """{} (no other attribute) where `pad` adds zeros to ReLU outputs, each side narrower than
    `pool`'s kernel; else None."""
    source = producer.get(pad.inputs[0])
    if source is None or source.op != "Relu" or pad.attrs.get("mode", "constant") != "constant":
        return None
    if len(pad.inputs) > 2 and pad.inputs[2] and np.any(g.inits.get(pad.inputs[2], np.ones(1)) != 0):
        return None  # padded with a value other than 0 (or one not known here)
    if any(p >= k for p, k in zip(pads, list(pool.attrs["kernel_shape"]) * 2)):
        return None  # a window of pads alone: its maximum is 0 with the Pad, absent without it
    return {}


def flatten_concats(g: Graph, protected: set[str]) -> None:
    """Concat(a, Concat(b, c), d) on one axis -> Concat(a, b, c, d) when the inner result has no
    other reader. Keras' InceptionV3 concatenates the two 3x3 halves of mixed9/mixed10 before
    the block's concatenation; one copy of those maps is saved per block."""
    changed = True
    while changed:
        changed = False
        users = g.consumers()
        producer = {o: n for n in g.nodes for o in n.outputs}
        for outer in g.nodes:
            if outer.op != "Concat":
                continue
            flat = []
            for name in outer.inputs:
                inner = producer.get(name)
                if (
                    inner is not None
                    and inner.op == "Concat"
                    and inner.attrs["axis"] == outer.attrs["axis"]
                    and len(users[name]) == 1
                    and name not in protected
                ):
                    flat.extend(inner.inputs)
                    g.nodes.remove(inner)
                    changed = True
                else:
                    flat.append(name)
            outer.inputs = flat
            if changed:
                break


def remove_identities(g: Graph, protected: set[str]) -> None:
    """Drop Identity nodes by renaming their input to their output (kept for graph outputs)."""
    rename = {}
    kept = []
    for n in g.nodes:
        if n.op == "Identity" and n.outputs[0] not in protected and n.inputs[0] not in protected:
            rename[n.outputs[0]] = n.inputs[0]
        else:
            kept.append(n)

    def resolve(name):
        while name in rename:
            name = rename[name]
        return name

    for n in kept:
        n.inputs = [resolve(i) for i in n.inputs]
    g.nodes = kept


def sort_topologically(g: Graph, graph_inputs: list[str]) -> None:
    ready = set(graph_inputs) | set(g.inits)
    pending = list(g.nodes)
    ordered = []
    while pending:
        rest = []
        for n in pending:
            if all(i in ready for i in n.inputs):
                ordered.append(n)
                ready.update(n.outputs)
            else:
                rest.append(n)
        if len(rest) == len(pending):
            raise AssertionError("the emitted graph has a cycle or a dangling input")
        pending = rest
    g.nodes = ordered


_AFFINE = ("Mul", "Add", "Sub", "Div")


def fold_input_affine(g: Graph, protected: set[str], graph_input: str = "input") -> None:
    """The input's Rescaling / Normalization (x * s + o per channel: Keras' MobileNetV3,
    EfficientNet(V2), ConvNeXt) folded into the first convolution.

    s * x + o = s * (x + o / s): the scale goes into the convolution's kernel (per input channel)
    and the offset becomes one per-channel Add on the NCHW input, or, when nothing pads the
    convolution's input, into its bias. Zero padding of s * x + o is zero padding of x + o / s, so
    the result is exact up to float32 rounding at every size. Why: OpenVINO runs a scalar Mul/Add
    on the raw NHWC input as one unfused op (PowerStatic) that took 13-23 % of MobileNetV3Large's
    time at 160x320 batch 16 (its profiling counters, Zen 4), where a per-channel Add after the
    transpose took under 1 % (benchmarks/bench_family.py measures the whole network).

    Applies to a chain input -> {Mul, Add, Sub, Div by a constant scalar or per-channel value,
    Transpose to NCHW} -> zero Pads -> Conv (group 1) in which each tensor has one reader; anything
    else is left as it is."""
    users = g.consumers()
    chain = []
    name = graph_input
    while True:
        readers = users.get(name, [])
        if len(readers) != 1 or name in protected:
            return
        node = readers[0]
        if node.op == "Conv":
            break
        is_transpose = node.op == "Transpose" and list(node.attrs.get("perm", [])) == [0, 3, 1, 2]
        is_zero_pad = node.op == "Pad" and node.attrs.get("mode", "constant") == "constant" and len(node.inputs) == 2
        is_affine = node.op in _AFFINE and node.inputs[0] == name and node.inputs[1] in g.inits
        if not (is_transpose or is_zero_pad or is_affine):
            return
        chain.append(node)
        name = node.outputs[0]
    ops = [n.op for n in chain]
    if ops.count("Transpose") > 1 or ("Pad" in ops and any(op in _AFFINE for op in ops[ops.index("Pad") :])):
        return  # an affine map after a zero pad: its offset would reach the padding
    if "Transpose" in ops and "Pad" in ops and ops.index("Pad") < ops.index("Transpose"):
        return
    nchw = "Transpose" not in ops  # no transpose before the convolution: the input is NCHW already
    scale, offset = np.ones(1), np.zeros(1)
    for n in chain:
        if n.op == "Transpose":
            nchw = True
            continue
        if n.op == "Pad":
            continue
        k = g.inits[n.inputs[1]].astype(np.float64)
        if k.ndim > 4:
            return
        shape = (1,) * (4 - k.ndim) + k.shape
        axis = 1 if nchw else 3
        if any(d != 1 for i, d in enumerate(shape) if i != axis):
            return  # not a scalar or a per-channel value
        k = k.reshape(-1)
        if n.op == "Mul":
            scale, offset = scale * k, offset * k
        elif n.op == "Div":
            scale, offset = scale / k, offset / k
        elif n.op == "Add":
            offset = offset + k
        else:
            offset = offset - k
    conv = node
    if not any(n.op in _AFFINE for n in chain) or conv.attrs.get("group", 1) != 1 or conv.inputs[1] not in g.inits:
        return
    kernel = g.inits[conv.inputs[1]].astype(np.float64)
    channels = kernel.shape[1]
    if scale.size not in (1, channels) or offset.size not in (1, channels):
        return
    scale = np.broadcast_to(scale, (channels,)).copy()
    offset = np.broadcast_to(offset, (channels,)).copy()
    if not np.all(np.isfinite(scale)) or np.any(scale == 0) or not np.all(np.isfinite(offset)):
        return
    pads = [n for n in chain if n.op == "Pad"]
    padded = bool(pads) or conv.attrs.get("auto_pad", "NOTSET") not in ("NOTSET", "VALID")
    padded = padded or any(conv.attrs.get("pads", []))
    g.inits[conv.inputs[1]] = (kernel * scale[None, :, None, None]).astype(np.float32)
    shift = offset / scale
    prev = graph_input
    new_nodes: list[Node] = []
    transpose = next((n for n in chain if n.op == "Transpose"), None)
    if transpose is not None:
        transpose.inputs[0] = prev
        prev = transpose.outputs[0]
        new_nodes.append(transpose)
    if np.any(shift != 0):
        if padded:
            shifted = g.fresh("input_shifted")
            const = g.const("input_shift", shift.reshape(1, channels, 1, 1).astype(np.float32))
            new_nodes.append(Node("Add", [prev, const], [shifted], {}, shifted))
            prev = shifted
        else:  # nothing pads: the offset's contribution is the same at every output position
            if len(conv.inputs) < 3:
                conv.inputs.append(g.const("conv_bias", np.zeros(kernel.shape[0], np.float32)))
            bias = g.inits[conv.inputs[2]].astype(np.float64)
            g.inits[conv.inputs[2]] = (bias + np.einsum("ochw,c->o", kernel, offset)).astype(np.float32)
    for pad in pads:
        pad.inputs[0] = prev
        prev = pad.outputs[0]
        new_nodes.append(pad)
    conv.inputs[0] = prev
    dropped = {id(n) for n in chain}
    g.nodes = new_nodes + [n for n in g.nodes if id(n) not in dropped]
