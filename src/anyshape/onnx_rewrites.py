"""The rewrites `keras_to_onnx` applies to an emitted graph (`anyshape.onnx_graph` says why):
BatchNorm folded into the convolution before it, a zero padding merged into the average pool
after it, nested concatenations flattened, identities removed, nodes sorted inputs first.
Each is exact up to float32 rounding and leaves the `protected` tensor names (the outputs) alone.
"""

from __future__ import annotations

import numpy as np

from anyshape.onnx_emitter import Graph


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


def merge_pad_into_avg_pool(g: Graph, protected: set[str]) -> None:
    users = g.consumers()
    producer = {o: n for n in g.nodes for o in n.outputs}
    drop = set()
    for pool in g.nodes:
        if pool.op != "AveragePool" or "auto_pad" in pool.attrs or "pads" in pool.attrs:
            continue
        pad = producer.get(pool.inputs[0])
        if pad is None or pad.op != "Pad" or len(users[pad.outputs[0]]) != 1 or pad.outputs[0] in protected:
            continue
        pads = g.inits[pad.inputs[1]].tolist()
        if pads[0] or pads[1] or pads[4] or pads[5]:
            continue
        pool.inputs[0] = pad.inputs[0]
        pool.attrs["pads"] = [pads[2], pads[3], pads[6], pads[7]]
        pool.attrs["count_include_pad"] = 1
        drop.add(id(pad))
    g.nodes = [n for n in g.nodes if id(n) not in drop]


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
