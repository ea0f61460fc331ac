"""One ONNX node per Keras layer: the emitter `keras_to_onnx` (`anyshape.onnx_graph`) runs.

`Graph` is the graph being written (nodes, initializers, fresh names); `Tensor` a Keras tensor
with its physical axis order (ONNX convolutions and pools are NCHW: a Transpose is inserted only
where the order a layer needs differs, see `anyshape.onnx_graph`); `Emitter.emit` translates one
layer, with the weights read as numpy on any backend; `walk` lists a model's layers, inputs first.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

__all__ = ["Emitter", "Graph", "Node", "Tensor", "UnsupportedLayer", "walk"]


class UnsupportedLayer(NotImplementedError):
    """The model holds a layer (or layer option) the ONNX emitter has no translation for."""


@dataclass
class Node:
    op: str
    inputs: list[str]
    outputs: list[str]
    attrs: dict = field(default_factory=dict)
    name: str = ""


@dataclass
class Tensor:
    name: str
    rank: int
    phys: tuple  # phys[i] = logical axis stored at physical position i


class Graph:
    def __init__(self):
        self.nodes: list[Node] = []
        self.inits: dict[str, np.ndarray] = {}
        self._count = 0

    def fresh(self, base: str) -> str:
        self._count += 1
        return f"{base}__{self._count}"

    def const(self, base: str, value) -> str:
        name = self.fresh(base)
        self.inits[name] = np.asarray(value)
        return name

    def add(self, op, inputs, outputs, name="", **attrs) -> Node:
        node = Node(op, list(inputs), list(outputs), attrs, name or outputs[0])
        self.nodes.append(node)
        return node

    def consumers(self) -> dict[str, list[Node]]:
        users: dict[str, list[Node]] = {}
        for node in self.nodes:
            for i in node.inputs:
                users.setdefault(i, []).append(node)
        return users


def _numpy(variable) -> np.ndarray:
    """A Keras variable's value as float32 numpy, on any backend."""
    return np.asarray(variable.numpy(), dtype=np.float32)


def _nchw_order(data_format: str) -> tuple:
    return (0, 3, 1, 2) if data_format == "channels_last" else (0, 1, 2, 3)


def _activation_name(fn) -> str:
    import keras

    if fn is None:
        return "linear"
    name = keras.activations.serialize(fn)
    if isinstance(name, dict):
        name = name.get("config", name.get("class_name"))
    return str(name)


class Emitter:
    def __init__(self, model, protected: set[str]):
        self.model = model
        self.g = Graph()
        self.tensors: dict[int, Tensor] = {}
        self.protected = protected

    # -- layout ------------------------------------------------------------------------------
    def to_phys(self, t: Tensor, want: tuple) -> Tensor:
        if t.phys == tuple(want):
            return t
        perm = [t.phys.index(a) for a in want]
        out = self.g.fresh(t.name + "_T")
        self.g.add("Transpose", [t.name], [out], perm=perm)
        return Tensor(out, t.rank, tuple(want))

    def nchw(self, t: Tensor, layer) -> Tensor:
        if t.rank != 4:
            raise UnsupportedLayer(f"layer {layer.name!r}: expected a 4-D input, got rank {t.rank}")
        return self.to_phys(t, _nchw_order(getattr(layer, "data_format", "channels_last")))

    # -- activations ---------------------------------------------------------------------------
    def activation(self, t: Tensor, fn, out_name: str, layer) -> Tensor:
        act = _activation_name(fn)
        if act == "linear":
            if t.name != out_name:
                self.g.add("Identity", [t.name], [out_name])
            return Tensor(out_name, t.rank, t.phys)
        if act == "relu":
            self.g.add("Relu", [t.name], [out_name])
        elif act == "softmax":
            axis = t.phys.index(t.rank - 1)  # Keras' softmax runs over the last logical axis
            self.g.add("Softmax", [t.name], [out_name], axis=axis)
        elif act == "sigmoid":
            self.g.add("Sigmoid", [t.name], [out_name])
        elif act in ("silu", "swish"):  # x * sigmoid(x)
            gate = self.g.fresh(out_name + "_sigmoid")
            self.g.add("Sigmoid", [t.name], [gate])
            self.g.add("Mul", [t.name, gate], [out_name])
        elif act in ("hard_silu", "hard_swish"):  # x * relu6(x + 3) / 6: ONNX's HardSwish
            self.g.add("HardSwish", [t.name], [out_name])
        elif act == "gelu":  # Keras' default, the exact form: x / 2 * (1 + erf(x / sqrt(2)))
            g = self.g
            scaled, erf, one_plus, half = (g.fresh(out_name + s) for s in ("_scaled", "_erf", "_1p", "_half"))
            g.add("Mul", [t.name, g.const(out_name + "_rsqrt2", np.array(1 / np.sqrt(2), np.float32))], [scaled])
            g.add("Erf", [scaled], [erf])
            g.add("Add", [erf, g.const(out_name + "_one", np.array(1.0, np.float32))], [one_plus])
            g.add("Mul", [t.name, g.const(out_name + "_0.5", np.array(0.5, np.float32))], [half])
            g.add("Mul", [half, one_plus], [out_name])
        else:
            raise UnsupportedLayer(f"layer {layer.name!r}: activation {act!r} has no ONNX translation here")
        return Tensor(out_name, t.rank, t.phys)

    # -- layers --------------------------------------------------------------------------------
    def emit(self, layer, ins: list[Tensor], out_name: str) -> Tensor:
        """The ONNX nodes of one Keras layer; its output tensor named `out_name`."""
        kind = type(layer).__name__
        if kind == "InputLayer":
            raise AssertionError("inputs are bound before emission")
        if kind in ("Dropout", "SpatialDropout2D", "GaussianNoise", "GaussianDropout", "ActivityRegularization"):
            self.g.add("Identity", [ins[0].name], [out_name])  # inference: these do nothing
            return Tensor(out_name, ins[0].rank, ins[0].phys)
        if kind == "Activation":
            return self.activation(ins[0], layer.activation, out_name, layer)
        if kind in ("MaxPooling2D", "AveragePooling2D"):
            return self.pool(layer, ins[0], out_name, kind)
        if kind in ("GlobalAveragePooling2D", "GlobalMaxPooling2D"):
            return self.global_pool(layer, ins[0], out_name, kind)
        if kind in ("Concatenate", "Add", "Average", "Multiply", "Maximum"):
            return self.merge(layer, ins, out_name, kind)
        one_input = {
            "Conv2D": self.conv,
            "DepthwiseConv2D": self.depthwise_conv,
            "SeparableConv2D": self.separable_conv,
            "BatchNormalization": self.batch_norm,
            "LayerNormalization": self.layer_norm,
            "Normalization": self.normalization,
            "Rescaling": self.rescaling,
            "LayerScale": self.layer_scale,  # ConvNeXt files saved before it was an EinsumDense
            "EinsumDense": self.einsum_dense,
            "ReLU": self.relu,
            "Permute": self.permute,
            "ZeroPadding2D": self.pad,
            "Cropping2D": self.crop,
            "Reshape": self.reshape,
            "Flatten": self.flatten,
            "Dense": self.dense,
        }
        if kind in one_input:
            return one_input[kind](layer, ins[0], out_name)
        raise UnsupportedLayer(f"layer {layer.name!r} of type {kind} has no ONNX translation here")

    def relu(self, layer, t: Tensor, out_name: str) -> Tensor:
        if float(layer.negative_slope) != 0.0 or float(layer.threshold) != 0.0:
            raise UnsupportedLayer(f"layer {layer.name!r}: ReLU with a negative slope or a threshold")
        if layer.max_value is None:
            self.g.add("Relu", [t.name], [out_name])
        else:  # ReLU6 and the like: min(max(x, 0), max_value)
            low = self.g.const(out_name + "_min", np.array(0.0, np.float32))
            high = self.g.const(out_name + "_max", np.array(float(layer.max_value), np.float32))
            self.g.add("Clip", [t.name, low, high], [out_name])
        return Tensor(out_name, t.rank, t.phys)

    def per_channel(self, base: str, value, t: Tensor) -> str:
        """A constant that broadcasts along the last logical axis (the channels) of `t`."""
        v = np.asarray(value, np.float32).reshape(-1)
        if v.size == 1:
            return self.g.const(base, v.reshape(()))
        shape = [1] * t.rank
        shape[t.phys.index(t.rank - 1)] = -1
        return self.g.const(base, v.reshape(shape))

    def rescaling(self, layer, t: Tensor, out_name: str) -> Tensor:
        """x * scale + offset (Keras' Rescaling; a per-channel scale on the last axis)."""
        scaled = self.g.fresh(out_name + "_scaled")
        self.g.add("Mul", [t.name, self.per_channel(layer.name + "_scale", layer.scale, t)], [scaled])
        self.g.add("Add", [scaled, self.per_channel(layer.name + "_offset", layer.offset, t)], [out_name])
        return Tensor(out_name, t.rank, t.phys)

    def layer_scale(self, layer, t: Tensor, out_name: str) -> Tensor:
        self.g.add("Mul", [t.name, self.per_channel(layer.name + "_gamma", _numpy(layer.gamma), t)], [out_name])
        return Tensor(out_name, t.rank, t.phys)

    def einsum_dense(self, layer, t: Tensor, out_name: str) -> Tensor:
        """EinsumDense as ConvNeXt's layer scale ("abcd,d->abcd", no bias): x * kernel per channel."""
        linear = _activation_name(layer.activation) == "linear"
        if layer.equation != "abcd,d->abcd" or layer.bias is not None or t.rank != 4 or not linear:
            raise UnsupportedLayer(
                f"layer {layer.name!r}: EinsumDense other than a per-channel scale ({layer.equation})"
            )
        self.g.add("Mul", [t.name, self.per_channel(layer.name + "_kernel", _numpy(layer.kernel), t)], [out_name])
        return Tensor(out_name, t.rank, t.phys)

    def normalization(self, layer, t: Tensor, out_name: str) -> Tensor:
        """Keras' Normalization on the last axis: (x - mean) / max(sqrt(variance), epsilon)."""
        import keras

        if layer.invert or tuple(layer.axis) not in ((-1,), (t.rank - 1,)):
            raise UnsupportedLayer(f"layer {layer.name!r}: Normalization other than forward on the last axis")
        mean = _numpy(layer.mean).astype(np.float64).reshape(-1)
        std = np.maximum(np.sqrt(_numpy(layer.variance).astype(np.float64).reshape(-1)), keras.config.epsilon())
        centred = self.g.fresh(out_name + "_centred")
        self.g.add("Sub", [t.name, self.per_channel(layer.name + "_mean", mean, t)], [centred])
        self.g.add("Div", [centred, self.per_channel(layer.name + "_std", std, t)], [out_name])
        return Tensor(out_name, t.rank, t.phys)

    def layer_norm(self, layer, t: Tensor, out_name: str) -> Tensor:
        """LayerNormalization over the last logical axis, computed with that axis last physically."""
        axes = [layer.axis] if isinstance(layer.axis, int) else list(layer.axis)
        if [a % t.rank for a in axes] != [t.rank - 1]:
            raise UnsupportedLayer(f"layer {layer.name!r}: LayerNormalization over axes {layer.axis}")
        t = self.to_phys(t, tuple(range(t.rank)))
        c = int(layer.input.shape[-1])
        gamma = _numpy(layer.gamma) if layer.scale else np.ones(c, np.float32)
        beta = _numpy(layer.beta) if layer.center else np.zeros(c, np.float32)
        self.g.add(
            "LayerNormalization",
            [t.name, self.g.const(layer.name + "_gamma", gamma), self.g.const(layer.name + "_beta", beta)],
            [out_name],
            axis=-1,
            epsilon=float(layer.epsilon),
        )
        return Tensor(out_name, t.rank, t.phys)

    def crop(self, layer, t: Tensor, out_name: str) -> Tensor:
        t = self.nchw(t, layer)
        (top, bottom), (left, right) = layer.cropping
        big = np.iinfo(np.int64).max
        g = self.g
        starts = g.const(out_name + "_starts", np.array([top, left], np.int64))
        ends = g.const(out_name + "_ends", np.array([-bottom if bottom else big, -right if right else big], np.int64))
        axes = g.const(out_name + "_axes", np.array([2, 3], np.int64))
        g.add("Slice", [t.name, starts, ends, axes], [out_name])
        return Tensor(out_name, 4, t.phys)

    def reshape(self, layer, t: Tensor, out_name: str) -> Tensor:
        """Keras' Reshape, in the logical (Keras) axis order."""
        t = self.to_phys(t, tuple(range(t.rank)))
        target = np.array([0, *layer.target_shape], np.int64)  # 0: the batch axis as it is
        self.g.add("Reshape", [t.name, self.g.const(out_name + "_shape", target)], [out_name])
        rank = 1 + len(layer.target_shape)
        return Tensor(out_name, rank, tuple(range(rank)))

    def flatten(self, layer, t: Tensor, out_name: str) -> Tensor:
        t = self.to_phys(t, tuple(range(t.rank)))  # Keras flattens in its own (logical) order
        self.g.add("Flatten", [t.name], [out_name], axis=1)
        return Tensor(out_name, 2, (0, 1))

    def permute(self, layer, t: Tensor, out_name: str) -> Tensor:
        """No data moves: the output is the input with another logical-to-physical axis order."""
        full = (0,) + tuple(layer.dims)
        inverse = [full.index(a) for a in range(t.rank)]
        self.g.add("Identity", [t.name], [out_name])
        return Tensor(out_name, t.rank, tuple(inverse[a] for a in t.phys))

    def pad(self, layer, t: Tensor, out_name: str) -> Tensor:
        t = self.nchw(t, layer)
        (top, bottom), (left, right) = layer.padding
        pads = self.g.const(out_name + "_pads", np.array([0, 0, top, left, 0, 0, bottom, right], np.int64))
        self.g.add("Pad", [t.name, pads], [out_name], mode="constant")
        return Tensor(out_name, 4, t.phys)

    def global_pool(self, layer, t: Tensor, out_name: str, kind: str) -> Tensor:
        t = self.nchw(t, layer)
        op = "GlobalAveragePool" if kind.startswith("GlobalAverage") else "GlobalMaxPool"
        if layer.keepdims:  # (N, 1, 1, C) in Keras' order: the 1 x 1 map, physically NCHW
            self.g.add(op, [t.name], [out_name])
            return Tensor(out_name, 4, t.phys)
        pooled = self.g.fresh(out_name + "_4d")
        self.g.add(op, [t.name], [pooled])
        self.g.add("Flatten", [pooled], [out_name], axis=1)
        return Tensor(out_name, 2, (0, 1))

    def merge(self, layer, ins: list[Tensor], out_name: str, kind: str) -> Tensor:
        """Concatenate or an elementwise merge, in the first input's physical axis order."""
        first = ins[0]
        parts = [self.to_phys(t, first.phys) for t in ins]
        if kind == "Concatenate":
            axis = layer.axis % first.rank
            self.g.add("Concat", [t.name for t in parts], [out_name], axis=first.phys.index(axis))
            return Tensor(out_name, first.rank, first.phys)
        op = {"Add": "Sum", "Average": "Mean", "Multiply": "Mul", "Maximum": "Max"}[kind]
        if op == "Mul" and len(parts) != 2:
            raise UnsupportedLayer(f"layer {layer.name!r}: Multiply of {len(parts)} inputs")
        self.g.add(op, [t.name for t in parts], [out_name])
        return Tensor(out_name, first.rank, first.phys)

    def dense(self, layer, t: Tensor, out_name: str) -> Tensor:
        g = self.g
        kernel = _numpy(layer.kernel)
        bias = _numpy(layer.bias) if layer.use_bias else np.zeros(kernel.shape[1], np.float32)
        if t.rank > 2:  # on the last axis (ConvNeXt's pointwise layers): MatMul with channels last
            t = self.to_phys(t, tuple(range(t.rank)))
            product, pre = g.fresh(out_name + "_product"), g.fresh(out_name + "_linear")
            g.add("MatMul", [t.name, g.const(layer.name + "_kernel", kernel)], [product])
            g.add("Add", [product, g.const(layer.name + "_bias", bias)], [pre])
            return self.activation(Tensor(pre, t.rank, t.phys), layer.activation, out_name, layer)
        pre = g.fresh(out_name + "_logits")
        g.add("Gemm", [t.name, g.const(layer.name + "_kernel", kernel), g.const(layer.name + "_bias", bias)], [pre])
        return self.activation(Tensor(pre, 2, (0, 1)), layer.activation, out_name, layer)

    def conv(self, layer, t: Tensor, out_name: str) -> Tensor:
        t = self.nchw(t, layer)
        kernel = np.transpose(_numpy(layer.kernel), (3, 2, 0, 1)).copy()  # (kh,kw,in,out) -> (out,in,kh,kw)
        bias = _numpy(layer.bias) if layer.use_bias else None
        pre = self.g.fresh(out_name + "_linear") if _activation_name(layer.activation) != "linear" else out_name
        self._conv_node(
            layer, t, kernel, bias, pre,
            group=int(layer.groups), kernel_size=layer.kernel_size, strides=layer.strides, dilations=layer.dilation_rate,
        )  # fmt: skip
        return self.activation(Tensor(pre, 4, t.phys), layer.activation, out_name, layer)

    def _conv_node(self, layer, t: Tensor, kernel, bias, out: str, *, group: int, kernel_size, strides, dilations):
        attrs = dict(kernel_shape=list(kernel_size), strides=list(strides), dilations=list(dilations), group=group)
        if layer.padding == "same":
            # TF's 'same': total padding max((ceil(n/s)-1)*s + k_eff - n, 0), the odd cell at the
            # end; ONNX's SAME_UPPER is defined the same way.
            attrs["auto_pad"] = "SAME_UPPER"
        elif layer.padding != "valid":
            raise UnsupportedLayer(f"layer {layer.name!r}: padding={layer.padding!r}")
        if bias is None:  # a bias input all the same: _fold_batch_norm folds into it
            bias = np.zeros(kernel.shape[0], np.float32)
        inputs = [t.name, self.g.const(layer.name + "_kernel", kernel), self.g.const(layer.name + "_bias", bias)]
        self.g.add("Conv", inputs, [out], name=layer.name, **attrs)

    @staticmethod
    def _depthwise_kernel(kernel) -> np.ndarray:
        """Keras' (kh, kw, in, multiplier) as ONNX's (in * multiplier, 1, kh, kw): output channel
        i * multiplier + m reads input channel i, as in Keras."""
        kh, kw, cin, mult = kernel.shape
        return np.transpose(kernel, (2, 3, 0, 1)).reshape(cin * mult, 1, kh, kw).copy()

    def depthwise_conv(self, layer, t: Tensor, out_name: str) -> Tensor:
        t = self.nchw(t, layer)
        kernel = self._depthwise_kernel(_numpy(layer.kernel))
        bias = _numpy(layer.bias) if layer.use_bias else None
        linear = _activation_name(layer.activation) == "linear"
        pre = out_name if linear else self.g.fresh(out_name + "_linear")
        self._conv_node(
            layer, t, kernel, bias, pre,
            group=kernel.shape[0] // int(layer.depth_multiplier),
            kernel_size=layer.kernel_size, strides=layer.strides, dilations=layer.dilation_rate,
        )  # fmt: skip
        return self.activation(Tensor(pre, 4, t.phys), layer.activation, out_name, layer)

    def separable_conv(self, layer, t: Tensor, out_name: str) -> Tensor:
        """A depthwise convolution (no bias), then a 1x1 convolution with the bias."""
        t = self.nchw(t, layer)
        depthwise = self._depthwise_kernel(_numpy(layer.depthwise_kernel))
        pointwise = np.transpose(_numpy(layer.pointwise_kernel), (3, 2, 0, 1)).copy()
        mid = self.g.fresh(out_name + "_depthwise")
        self._conv_node(  # its kernel and bias constants: g.const makes the names unique
            layer, t, depthwise, None, mid,
            group=depthwise.shape[0] // int(layer.depth_multiplier),
            kernel_size=layer.kernel_size, strides=layer.strides, dilations=layer.dilation_rate,
        )  # fmt: skip
        bias = _numpy(layer.bias) if layer.use_bias else np.zeros(pointwise.shape[0], np.float32)
        linear = _activation_name(layer.activation) == "linear"
        pre = out_name if linear else self.g.fresh(out_name + "_linear")
        self.g.add(
            "Conv",
            [mid, self.g.const(layer.name + "_pointwise", pointwise), self.g.const(layer.name + "_bias", bias)],
            [pre],
            name=layer.name + "_pointwise",
            kernel_shape=[1, 1],
        )
        return self.activation(Tensor(pre, 4, t.phys), layer.activation, out_name, layer)

    def batch_norm(self, layer, t: Tensor, out_name: str) -> Tensor:
        c = _numpy
        mean = c(layer.moving_mean).astype(np.float64)
        var = c(layer.moving_variance).astype(np.float64)
        gamma = c(layer.gamma).astype(np.float64) if layer.scale else np.ones_like(mean)
        beta = c(layer.beta).astype(np.float64) if layer.center else np.zeros_like(mean)
        scale = gamma / np.sqrt(var + float(layer.epsilon))
        shift = beta - mean * scale
        axis = layer.axis if isinstance(layer.axis, int) else layer.axis[0]
        axis %= t.rank
        shape = [1] * t.rank
        shape[t.phys.index(axis)] = -1
        tmp = self.g.fresh(out_name + "_scaled")
        self.g.add("Mul", [t.name, self.g.const(layer.name + "_scale", scale.astype(np.float32).reshape(shape))], [tmp])
        self.g.add(
            "Add",
            [tmp, self.g.const(layer.name + "_shift", shift.astype(np.float32).reshape(shape))],
            [out_name],
            name=layer.name,
        )
        return Tensor(out_name, t.rank, t.phys)

    def pool(self, layer, t: Tensor, out_name: str, kind: str) -> Tensor:
        t = self.nchw(t, layer)
        attrs: dict[str, object] = dict(kernel_shape=list(layer.pool_size), strides=list(layer.strides))
        if layer.padding == "same":
            attrs["auto_pad"] = "SAME_UPPER"
        if kind == "AveragePooling2D":
            attrs["count_include_pad"] = 0  # Keras' 'same' pooling divides by the real cells only
        self.g.add(
            "MaxPool" if kind == "MaxPooling2D" else "AveragePool", [t.name], [out_name], name=layer.name, **attrs
        )
        return Tensor(out_name, 4, t.phys)


def walk(model):
    """(layer, input tensors, output tensors) of every node of the model, inputs before users."""
    order, seen = [], set()

    def visit(tensor):
        op, node_index, _ = tensor._keras_history
        node = op._inbound_nodes[node_index]
        if id(node) in seen:
            return
        seen.add(id(node))
        for parent in node.input_tensors:
            visit(parent)
        order.append((op, list(node.input_tensors), list(node.output_tensors)))

    for out in model.outputs:
        visit(out)
    return order
