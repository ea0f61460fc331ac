"""Emit an ONNX graph straight from a built Keras model (no TensorFlow, no tf2onnx).

`keras_to_onnx(model)` walks the model's functional graph from its outputs back to its inputs
and writes one ONNX node per Keras layer, with the weights read as numpy (`variable.numpy()`),
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

Rewrites (all exact up to float32 rounding; `optimize=False` emits the plain graph):

* BatchNorm folded into the preceding convolution's weights and bias (TF/Keras inference BN:
  `gamma * (x - mean) / sqrt(var + eps) + beta`).
* `ZeroPadding2D` + valid `AveragePooling2D` (torchvision's count_include_pad semantics) becomes
  one AveragePool with pads and `count_include_pad=1`; Keras' 'same' average pool becomes
  AveragePool with pads and `count_include_pad=0` (Keras excludes padded cells from the divisor).
* Nested concatenations on one axis are flattened into one (one copy of the maps fewer).

With these the graph ONNX Runtime runs is the same as the one it makes of torchvision's export
(94 NCHWc convolutions, 11 concatenations), and runs as fast per image. Measured and left out
(single-thread CPU time per image on ONNX Runtime): merging the 1x1 convolutions that read the
same block input into one wider convolution + Split, and computing the pool branch as
conv1x1 -> avgpool -> +bias (the same linear map on fewer channels) were both slower: the
Split copies cost more than the larger GEMMs gain.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

__all__ = ["keras_to_onnx", "UnsupportedLayer", "OPSET"]

OPSET = 17


class UnsupportedLayer(NotImplementedError):
    """The model holds a layer (or layer option) the ONNX emitter has no translation for."""


@dataclass
class _Node:
    op: str
    inputs: list[str]
    outputs: list[str]
    attrs: dict = field(default_factory=dict)
    name: str = ""


@dataclass
class _Tensor:
    name: str
    rank: int
    phys: tuple  # phys[i] = logical axis stored at physical position i


class _Graph:
    def __init__(self):
        self.nodes: list[_Node] = []
        self.inits: dict[str, np.ndarray] = {}
        self._count = 0

    def fresh(self, base: str) -> str:
        self._count += 1
        return f"{base}__{self._count}"

    def const(self, base: str, value) -> str:
        name = self.fresh(base)
        self.inits[name] = np.asarray(value)
        return name

    def add(self, op, inputs, outputs, name="", **attrs) -> _Node:
        node = _Node(op, list(inputs), list(outputs), attrs, name or outputs[0])
        self.nodes.append(node)
        return node

    def consumers(self) -> dict[str, list[_Node]]:
        users: dict[str, list[_Node]] = {}
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


class _Emitter:
    def __init__(self, model, protected: set[str]):
        self.model = model
        self.g = _Graph()
        self.tensors: dict[int, _Tensor] = {}
        self.protected = protected

    # -- layout ------------------------------------------------------------------------------
    def to_phys(self, t: _Tensor, want: tuple) -> _Tensor:
        if t.phys == tuple(want):
            return t
        perm = [t.phys.index(a) for a in want]
        out = self.g.fresh(t.name + "_T")
        self.g.add("Transpose", [t.name], [out], perm=perm)
        return _Tensor(out, t.rank, tuple(want))

    def nchw(self, t: _Tensor, layer) -> _Tensor:
        if t.rank != 4:
            raise UnsupportedLayer(f"layer {layer.name!r}: expected a 4-D input, got rank {t.rank}")
        return self.to_phys(t, _nchw_order(getattr(layer, "data_format", "channels_last")))

    # -- activations ---------------------------------------------------------------------------
    def activation(self, t: _Tensor, fn, out_name: str, layer) -> _Tensor:
        act = _activation_name(fn)
        if act == "linear":
            if t.name != out_name:
                self.g.add("Identity", [t.name], [out_name])
            return _Tensor(out_name, t.rank, t.phys)
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
        return _Tensor(out_name, t.rank, t.phys)

    # -- layers --------------------------------------------------------------------------------
    def emit(self, layer, ins: list[_Tensor], out_name: str) -> _Tensor:
        """The ONNX nodes of one Keras layer; its output tensor named `out_name`."""
        kind = type(layer).__name__
        if kind == "InputLayer":
            raise AssertionError("inputs are bound before emission")
        if kind in ("Dropout", "SpatialDropout2D", "GaussianNoise", "GaussianDropout", "ActivityRegularization"):
            self.g.add("Identity", [ins[0].name], [out_name])  # inference: these do nothing
            return _Tensor(out_name, ins[0].rank, ins[0].phys)
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

    def relu(self, layer, t: _Tensor, out_name: str) -> _Tensor:
        if float(layer.negative_slope) != 0.0 or float(layer.threshold) != 0.0:
            raise UnsupportedLayer(f"layer {layer.name!r}: ReLU with a negative slope or a threshold")
        if layer.max_value is None:
            self.g.add("Relu", [t.name], [out_name])
        else:  # ReLU6 and the like: min(max(x, 0), max_value)
            low = self.g.const(out_name + "_min", np.array(0.0, np.float32))
            high = self.g.const(out_name + "_max", np.array(float(layer.max_value), np.float32))
            self.g.add("Clip", [t.name, low, high], [out_name])
        return _Tensor(out_name, t.rank, t.phys)

    def per_channel(self, base: str, value, t: _Tensor) -> str:
        """A constant that broadcasts along the last logical axis (the channels) of `t`."""
        v = np.asarray(value, np.float32).reshape(-1)
        if v.size == 1:
            return self.g.const(base, v.reshape(()))
        shape = [1] * t.rank
        shape[t.phys.index(t.rank - 1)] = -1
        return self.g.const(base, v.reshape(shape))

    def rescaling(self, layer, t: _Tensor, out_name: str) -> _Tensor:
        """x * scale + offset (Keras' Rescaling; a per-channel scale on the last axis)."""
        scaled = self.g.fresh(out_name + "_scaled")
        self.g.add("Mul", [t.name, self.per_channel(layer.name + "_scale", layer.scale, t)], [scaled])
        self.g.add("Add", [scaled, self.per_channel(layer.name + "_offset", layer.offset, t)], [out_name])
        return _Tensor(out_name, t.rank, t.phys)

    def layer_scale(self, layer, t: _Tensor, out_name: str) -> _Tensor:
        self.g.add("Mul", [t.name, self.per_channel(layer.name + "_gamma", _numpy(layer.gamma), t)], [out_name])
        return _Tensor(out_name, t.rank, t.phys)

    def einsum_dense(self, layer, t: _Tensor, out_name: str) -> _Tensor:
        """EinsumDense as ConvNeXt's layer scale ("abcd,d->abcd", no bias): x * kernel per channel."""
        linear = _activation_name(layer.activation) == "linear"
        if layer.equation != "abcd,d->abcd" or layer.bias is not None or t.rank != 4 or not linear:
            raise UnsupportedLayer(
                f"layer {layer.name!r}: EinsumDense other than a per-channel scale ({layer.equation})"
            )
        self.g.add("Mul", [t.name, self.per_channel(layer.name + "_kernel", _numpy(layer.kernel), t)], [out_name])
        return _Tensor(out_name, t.rank, t.phys)

    def normalization(self, layer, t: _Tensor, out_name: str) -> _Tensor:
        """Keras' Normalization on the last axis: (x - mean) / max(sqrt(variance), epsilon)."""
        import keras

        if layer.invert or tuple(layer.axis) not in ((-1,), (t.rank - 1,)):
            raise UnsupportedLayer(f"layer {layer.name!r}: Normalization other than forward on the last axis")
        mean = _numpy(layer.mean).astype(np.float64).reshape(-1)
        std = np.maximum(np.sqrt(_numpy(layer.variance).astype(np.float64).reshape(-1)), keras.config.epsilon())
        centred = self.g.fresh(out_name + "_centred")
        self.g.add("Sub", [t.name, self.per_channel(layer.name + "_mean", mean, t)], [centred])
        self.g.add("Div", [centred, self.per_channel(layer.name + "_std", std, t)], [out_name])
        return _Tensor(out_name, t.rank, t.phys)

    def layer_norm(self, layer, t: _Tensor, out_name: str) -> _Tensor:
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
        return _Tensor(out_name, t.rank, t.phys)

    def crop(self, layer, t: _Tensor, out_name: str) -> _Tensor:
        t = self.nchw(t, layer)
        (top, bottom), (left, right) = layer.cropping
        big = np.iinfo(np.int64).max
        g = self.g
        starts = g.const(out_name + "_starts", np.array([top, left], np.int64))
        ends = g.const(out_name + "_ends", np.array([-bottom if bottom else big, -right if right else big], np.int64))
        axes = g.const(out_name + "_axes", np.array([2, 3], np.int64))
        g.add("Slice", [t.name, starts, ends, axes], [out_name])
        return _Tensor(out_name, 4, t.phys)

    def reshape(self, layer, t: _Tensor, out_name: str) -> _Tensor:
        """Keras' Reshape, in the logical (Keras) axis order."""
        t = self.to_phys(t, tuple(range(t.rank)))
        target = np.array([0, *layer.target_shape], np.int64)  # 0: the batch axis as it is
        self.g.add("Reshape", [t.name, self.g.const(out_name + "_shape", target)], [out_name])
        rank = 1 + len(layer.target_shape)
        return _Tensor(out_name, rank, tuple(range(rank)))

    def flatten(self, layer, t: _Tensor, out_name: str) -> _Tensor:
        t = self.to_phys(t, tuple(range(t.rank)))  # Keras flattens in its own (logical) order
        self.g.add("Flatten", [t.name], [out_name], axis=1)
        return _Tensor(out_name, 2, (0, 1))

    def permute(self, layer, t: _Tensor, out_name: str) -> _Tensor:
        """No data moves: the output is the input with another logical-to-physical axis order."""
        full = (0,) + tuple(layer.dims)
        inverse = [full.index(a) for a in range(t.rank)]
        self.g.add("Identity", [t.name], [out_name])
        return _Tensor(out_name, t.rank, tuple(inverse[a] for a in t.phys))

    def pad(self, layer, t: _Tensor, out_name: str) -> _Tensor:
        t = self.nchw(t, layer)
        (top, bottom), (left, right) = layer.padding
        pads = self.g.const(out_name + "_pads", np.array([0, 0, top, left, 0, 0, bottom, right], np.int64))
        self.g.add("Pad", [t.name, pads], [out_name], mode="constant")
        return _Tensor(out_name, 4, t.phys)

    def global_pool(self, layer, t: _Tensor, out_name: str, kind: str) -> _Tensor:
        t = self.nchw(t, layer)
        op = "GlobalAveragePool" if kind.startswith("GlobalAverage") else "GlobalMaxPool"
        if layer.keepdims:  # (N, 1, 1, C) in Keras' order: the 1 x 1 map, physically NCHW
            self.g.add(op, [t.name], [out_name])
            return _Tensor(out_name, 4, t.phys)
        pooled = self.g.fresh(out_name + "_4d")
        self.g.add(op, [t.name], [pooled])
        self.g.add("Flatten", [pooled], [out_name], axis=1)
        return _Tensor(out_name, 2, (0, 1))

    def merge(self, layer, ins: list[_Tensor], out_name: str, kind: str) -> _Tensor:
        """Concatenate or an elementwise merge, in the first input's physical axis order."""
        first = ins[0]
        parts = [self.to_phys(t, first.phys) for t in ins]
        if kind == "Concatenate":
            axis = layer.axis % first.rank
            self.g.add("Concat", [t.name for t in parts], [out_name], axis=first.phys.index(axis))
            return _Tensor(out_name, first.rank, first.phys)
        op = {"Add": "Sum", "Average": "Mean", "Multiply": "Mul", "Maximum": "Max"}[kind]
        if op == "Mul" and len(parts) != 2:
            raise UnsupportedLayer(f"layer {layer.name!r}: Multiply of {len(parts)} inputs")
        self.g.add(op, [t.name for t in parts], [out_name])
        return _Tensor(out_name, first.rank, first.phys)

    def dense(self, layer, t: _Tensor, out_name: str) -> _Tensor:
        g = self.g
        kernel = _numpy(layer.kernel)
        bias = _numpy(layer.bias) if layer.use_bias else np.zeros(kernel.shape[1], np.float32)
        if t.rank > 2:  # on the last axis (ConvNeXt's pointwise layers): MatMul with channels last
            t = self.to_phys(t, tuple(range(t.rank)))
            product, pre = g.fresh(out_name + "_product"), g.fresh(out_name + "_linear")
            g.add("MatMul", [t.name, g.const(layer.name + "_kernel", kernel)], [product])
            g.add("Add", [product, g.const(layer.name + "_bias", bias)], [pre])
            return self.activation(_Tensor(pre, t.rank, t.phys), layer.activation, out_name, layer)
        pre = g.fresh(out_name + "_logits")
        g.add("Gemm", [t.name, g.const(layer.name + "_kernel", kernel), g.const(layer.name + "_bias", bias)], [pre])
        return self.activation(_Tensor(pre, 2, (0, 1)), layer.activation, out_name, layer)

    def conv(self, layer, t: _Tensor, out_name: str) -> _Tensor:
        t = self.nchw(t, layer)
        kernel = np.transpose(_numpy(layer.kernel), (3, 2, 0, 1)).copy()  # (kh,kw,in,out) -> (out,in,kh,kw)
        bias = _numpy(layer.bias) if layer.use_bias else None
        pre = self.g.fresh(out_name + "_linear") if _activation_name(layer.activation) != "linear" else out_name
        self._conv_node(
            layer, t, kernel, bias, pre,
            group=int(layer.groups), kernel_size=layer.kernel_size, strides=layer.strides, dilations=layer.dilation_rate,
        )  # fmt: skip
        return self.activation(_Tensor(pre, 4, t.phys), layer.activation, out_name, layer)

    def _conv_node(self, layer, t: _Tensor, kernel, bias, out: str, *, group: int, kernel_size, strides, dilations):
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

    def depthwise_conv(self, layer, t: _Tensor, out_name: str) -> _Tensor:
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
        return self.activation(_Tensor(pre, 4, t.phys), layer.activation, out_name, layer)

    def separable_conv(self, layer, t: _Tensor, out_name: str) -> _Tensor:
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
        return self.activation(_Tensor(pre, 4, t.phys), layer.activation, out_name, layer)

    def batch_norm(self, layer, t: _Tensor, out_name: str) -> _Tensor:
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
        return _Tensor(out_name, t.rank, t.phys)

    def pool(self, layer, t: _Tensor, out_name: str, kind: str) -> _Tensor:
        t = self.nchw(t, layer)
        attrs: dict[str, object] = dict(kernel_shape=list(layer.pool_size), strides=list(layer.strides))
        if layer.padding == "same":
            attrs["auto_pad"] = "SAME_UPPER"
        if kind == "AveragePooling2D":
            attrs["count_include_pad"] = 0  # Keras' 'same' pooling divides by the real cells only
        self.g.add(
            "MaxPool" if kind == "MaxPooling2D" else "AveragePool", [t.name], [out_name], name=layer.name, **attrs
        )
        return _Tensor(out_name, 4, t.phys)


def _walk(model):
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


# ---------------------------------------------------------------------------------------------
# Graph rewrites
# ---------------------------------------------------------------------------------------------


def _fold_batch_norm(g: _Graph, protected: set[str]) -> None:
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


def _merge_pad_into_avg_pool(g: _Graph, protected: set[str]) -> None:
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


def _flatten_concats(g: _Graph, protected: set[str]) -> None:
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


def _remove_identities(g: _Graph, protected: set[str]) -> None:
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


def _sort_topologically(g: _Graph, graph_inputs: list[str]) -> None:
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


def keras_to_onnx(model, *, optimize: bool = True, opset: int = OPSET, fixed_hw: tuple | None = None):
    """Translate a built Keras model into an `onnx.ModelProto` with the same outputs.

    Args:
        model: a built functional `keras.Model` (anyshape's or keras.applications' InceptionV3,
            or any model made of the layers listed in this module).
        optimize: apply the rewrites in the module docstring (BN folding, merged 1x1 convs).
        opset: ONNX opset of the graph.
        fixed_hw: (H, W) to bake into the input shape, or None to keep the model's own (None
            dimensions become symbolic "height"/"width"). The batch axis is always dynamic.

    Raises:
        UnsupportedLayer: the model holds a layer this emitter cannot translate; use Keras.
    """
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    if len(model.inputs) != 1:
        raise UnsupportedLayer(f"model {model.name!r} has {len(model.inputs)} inputs; the emitter handles one")
    out_names = [f"output_{i}" for i in range(len(model.outputs))]
    em = _Emitter(model, set(out_names))
    in_tensor = model.inputs[0]
    rank = len(in_tensor.shape)
    em.tensors[id(in_tensor)] = _Tensor("input", rank, tuple(range(rank)))

    for layer, ins, outs in _walk(model):
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

    if optimize:
        _fold_batch_norm(g, em.protected)
        _merge_pad_into_avg_pool(g, em.protected)
        _remove_identities(g, em.protected)
        _flatten_concats(g, em.protected)
    _remove_identities(g, em.protected)
    _sort_topologically(g, ["input"])

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
    nodes = [helper.make_node(n.op, n.inputs, n.outputs, name=n.name, **n.attrs) for n in g.nodes]
    used = {i for n in g.nodes for i in n.inputs}
    inits = [numpy_helper.from_array(v, k) for k, v in g.inits.items() if k in used]
    graph = helper.make_graph(nodes, model.name, inputs, outputs, inits)
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], producer_name="anyshape")
    proto.ir_version = min(proto.ir_version, 9)
    onnx.checker.check_model(proto)
    return proto


def _spatial_axes_of_input(model) -> tuple[int, int]:
    fmt = _input_data_format(model)
    return (2, 3) if fmt == "channels_first" else (1, 2)


def _input_data_format(model) -> str:
    """channels_first when the model's first layer permutes (C, H, W) to (H, W, C) (anyshape's
    channels_first model) or its first convolution is channels_first; else channels_last."""
    for layer, _, _ in _walk(model):
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
