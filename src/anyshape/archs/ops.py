"""The layer vocabulary every network is written in, and the shape tracer that runs it without Keras.

A network (see `anyshape.archs`) is one function, `network(net, config, x)`, that calls the methods
of an `Ops` object: `net.conv(...)`, `net.bn(...)`, `net.add([...])` and so on, one per Keras layer
kind that keras.applications uses. Two classes implement them:

- `anyshape.archs.keras_ops.KerasOps` creates the Keras layers: the function then *is* the model
  builder.
- `ShapeOps` (here, pure Python) follows H x W x C through the same calls and records, per stage,
  the output shape, the parameters and the multiply-accumulates, and where a window collapses or a
  merge joins maps of different sizes. This is `anyshape.explain`.

Because both run the same function, `explain` cannot disagree with the model it describes (the
per-network harness, tests/test_archs.py, checks it against Keras' own shape inference anyway), and
every network's minimum size is computed from its calls, not typed in.

Stages group layers into the rows of the report: `with net.stage("conv2_block1", "bottleneck"):`.
A stage's output is the last tensor made inside it. Stages do not nest: a stage opened inside
another adds its layers to the outer one, so a helper such as a conv + BN + ReLU unit can open its
own stage and still be used inside a larger block. A layer made outside any stage is a stage of
its own, named after the layer.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Ops", "ShapeOps", "T", "Stage", "Collapse", "window_size", "pair", "padding_pairs"]


def pair(value) -> tuple[int, int]:
    """An int or a pair of ints as a pair (kernel sizes, strides)."""
    if isinstance(value, int):
        return (value, value)
    a, b = value
    return (int(a), int(b))


def padding_pairs(padding) -> tuple[tuple[int, int], tuple[int, int]]:
    """ZeroPadding2D / Cropping2D's argument as ((top, bottom), (left, right))."""
    if isinstance(padding, int):
        return ((padding, padding), (padding, padding))
    a, b = padding
    if isinstance(a, int) and isinstance(b, int):
        return ((a, a), (b, b))
    return (pair(a), pair(b))


def window_size(size: int | None, kernel: int, strides: int, padding: str, dilation: int = 1) -> int | None:
    """Output length of a sliding window (conv or pool); None for an unknown length, <= 0 when the
    window does not fit ("valid" padding on an input shorter than the kernel)."""
    if size is None:
        return None
    if padding == "same":
        return -(-size // strides)
    k = dilation * (kernel - 1) + 1
    return (size - k) // strides + 1 if size >= k else 0


@dataclass(frozen=True)
class T:
    """A traced tensor: a feature map (h, w, c) or, with `flat`, a vector of c values per image."""

    h: int | None
    w: int | None
    c: int
    flat: bool = False
    layer: str = ""  # the layer that made it

    @property
    def shape(self) -> tuple:
        return (self.c,) if self.flat else (self.h, self.w, self.c)


@dataclass
class Stage:
    """One row of the report: a named stage's output at this input shape."""

    name: str
    what: str  # what the stage does, in words
    height: int | None
    width: int | None
    channels: int
    params: int = 0
    trainable_params: int = 0
    macs: int | None = 0  # multiply-accumulates per image; None when H or W is unknown
    flat: bool = False  # a vector per image (pooled features, classifier), not a feature map
    layer: str = ""  # the built model's layer whose output is this stage's output

    @property
    def shape(self) -> tuple:
        """(H, W, C), or (C,) for a flat stage."""
        return (self.channels,) if self.flat else (self.height, self.width, self.channels)


@dataclass
class Collapse:
    """Where and why a shape fails: a window that does not fit, or a cropping that empties a map."""

    stage: str  # the stage (e.g. "mixed8")
    layer: str  # the layer inside it (e.g. "mixed8_branch3x3_2_conv")
    op: str  # e.g. "3x3 conv, stride 2, valid padding"
    axis: str  # "height" or "width"
    size_in: int
    kernel: int
    size_out: int

    def __str__(self) -> str:
        return (
            f"{self.stage} collapses: its {self.op} ({self.layer}) gets a {self.axis} of "
            f"{self.size_in}, smaller than its kernel of {self.kernel}, so its output {self.axis} "
            f"would be {self.size_out}"
        )


class Ops:
    """The layer vocabulary. Subclasses implement `_make(op, inputs, name, **args)`; the methods
    here give the arguments their names and defaults, which match Keras' layer arguments."""

    def __init__(self):
        self._counts: dict[str, int] = {}
        self._names: set[str] = set()

    # -- naming: a layer without a name gets `<kind>_<k>`, the same in both implementations
    def name(self, name: str | None, kind: str) -> str:
        if name is None:
            k = self._counts.get(kind, 0)
            name = kind if k == 0 else f"{kind}_{k}"
            while name in self._names:
                k += 1
                name = f"{kind}_{k}"
            self._counts[kind] = k + 1
        if name in self._names:
            raise ValueError(f"layer name {name!r} is used twice in one network (a bug in its network function)")
        self._names.add(name)
        return name

    @contextlib.contextmanager
    def stage(self, name: str, what: str) -> Iterator[None]:
        yield

    def _make(self, op: str, inputs: list, name: str, **args) -> Any:
        raise NotImplementedError

    # -- convolutions
    def conv(
        self,
        x,
        filters: int,
        kernel,
        strides=1,
        padding: str = "valid",
        *,
        use_bias: bool = True,
        activation: str | None = None,
        dilation=1,
        groups: int = 1,
        name: str | None = None,
    ):
        return self._make(
            "conv",
            [x],
            self.name(name, "conv2d"),
            filters=filters,
            kernel=pair(kernel),
            strides=pair(strides),
            padding=padding,
            use_bias=use_bias,
            activation=activation,
            dilation=pair(dilation),
            groups=groups,
        )

    def depthwise(
        self,
        x,
        kernel,
        strides=1,
        padding: str = "valid",
        *,
        use_bias: bool = True,
        depth_multiplier: int = 1,
        activation: str | None = None,
        name: str | None = None,
    ):
        return self._make(
            "depthwise",
            [x],
            self.name(name, "depthwise_conv2d"),
            kernel=pair(kernel),
            strides=pair(strides),
            padding=padding,
            use_bias=use_bias,
            depth_multiplier=depth_multiplier,
            activation=activation,
        )

    def separable(
        self,
        x,
        filters: int,
        kernel,
        strides=1,
        padding: str = "valid",
        *,
        use_bias: bool = True,
        name: str | None = None,
    ):
        return self._make(
            "separable",
            [x],
            self.name(name, "separable_conv2d"),
            filters=filters,
            kernel=pair(kernel),
            strides=pair(strides),
            padding=padding,
            use_bias=use_bias,
        )

    # -- normalisation
    def bn(
        self,
        x,
        *,
        epsilon: float = 1e-3,
        momentum: float = 0.99,
        scale: bool = True,
        center: bool = True,
        name: str | None = None,
    ):
        return self._make(
            "bn",
            [x],
            self.name(name, "batch_normalization"),
            epsilon=epsilon,
            momentum=momentum,
            scale=scale,
            center=center,
        )

    def layer_norm(self, x, *, epsilon: float = 1e-3, name: str | None = None):
        return self._make("layer_norm", [x], self.name(name, "layer_normalization"), epsilon=epsilon)

    def normalization(self, x, *, mean=None, variance=None, name: str | None = None):
        """Keras' Normalization on the channel axis; without mean/variance it has them as weights."""
        return self._make("normalization", [x], self.name(name, "normalization"), mean=mean, variance=variance)

    def rescaling(self, x, scale, offset=0.0, *, name: str | None = None):
        """x * scale + offset; `scale` and `offset` may be one value per channel."""
        return self._make("rescaling", [x], self.name(name, "rescaling"), scale=scale, offset=offset)

    def layer_scale(self, x, init_values: float, *, name: str | None = None):
        """x * gamma, a learned value per channel (ConvNeXt's layer scale)."""
        return self._make("layer_scale", [x], self.name(name, "layer_scale"), init_values=init_values)

    # -- activations
    def activation(self, x, kind: str, *, name: str | None = None):
        return self._make("activation", [x], self.name(name, "activation"), kind=kind)

    def relu(self, x, max_value: float | None = None, *, name: str | None = None):
        return self._make("relu", [x], self.name(name, "re_lu"), max_value=max_value)

    # -- padding and pooling
    def pad(self, x, padding, *, name: str | None = None):
        return self._make("pad", [x], self.name(name, "zero_padding2d"), padding=padding_pairs(padding))

    def crop(self, x, cropping, *, name: str | None = None):
        return self._make("crop", [x], self.name(name, "cropping2d"), cropping=padding_pairs(cropping))

    def max_pool(self, x, pool, strides=None, padding: str = "valid", *, name: str | None = None):
        return self._make(
            "max_pool",
            [x],
            self.name(name, "max_pooling2d"),
            pool=pair(pool),
            strides=pair(pool if strides is None else strides),
            padding=padding,
        )

    def avg_pool(self, x, pool, strides=None, padding: str = "valid", *, name: str | None = None):
        return self._make(
            "avg_pool",
            [x],
            self.name(name, "average_pooling2d"),
            pool=pair(pool),
            strides=pair(pool if strides is None else strides),
            padding=padding,
        )

    def global_pool(self, x, kind: str = "avg", *, keepdims: bool = False, name: str | None = None):
        base = "global_average_pooling2d" if kind == "avg" else "global_max_pooling2d"
        return self._make("global_pool", [x], self.name(name, base), kind=kind, keepdims=keepdims)

    # -- merges
    def add(self, xs: Sequence, *, name: str | None = None):
        return self._make("add", list(xs), self.name(name, "add"))

    def multiply(self, xs: Sequence, *, name: str | None = None):
        return self._make("multiply", list(xs), self.name(name, "multiply"))

    def average(self, xs: Sequence, *, name: str | None = None):
        return self._make("average", list(xs), self.name(name, "average"))

    def concat(self, xs: Sequence, *, name: str | None = None):
        return self._make("concat", list(xs), self.name(name, "concatenate"))

    # -- the rest
    def dense(self, x, units: int, *, activation: str | None = None, use_bias: bool = True, name: str | None = None):
        """Keras' Dense: on a vector, or on the channel axis of a map (ConvNeXt's pointwise layers)."""
        return self._make("dense", [x], self.name(name, "dense"), units=units, activation=activation, use_bias=use_bias)

    def dropout(self, x, rate: float, *, noise_shape=None, name: str | None = None):
        return self._make("dropout", [x], self.name(name, "dropout"), rate=rate, noise_shape=noise_shape)

    def flatten(self, x, *, name: str | None = None):
        return self._make("flatten", [x], self.name(name, "flatten"))

    def reshape(self, x, target: tuple, *, name: str | None = None):
        return self._make("reshape", [x], self.name(name, "reshape"), target=tuple(target))

    def identity(self, x, *, name: str | None = None):
        """Activation("linear"): keras.applications' stand-in for a disabled stochastic depth."""
        return self._make("activation", [x], self.name(name, "activation"), kind="linear")


# --------------------------------------------------------------------------------------------
# the tracer


@dataclass
class _Acc:
    """What a stage has counted so far."""

    name: str
    what: str
    params: int = 0
    trainable: int = 0
    macs: int | None = 0
    last: T | None = None


def _mul(*xs) -> int | None:
    out = 1
    for x in xs:
        if x is None:
            return None
        out *= x
    return out


@dataclass
class Trace:
    """Everything a trace finds; `anyshape.shapes.ShapeReport` reads it."""

    stages: list[Stage] = field(default_factory=list)
    collapse: list[Collapse] = field(default_factory=list)  # one per collapsing axis, first first
    problems: list[str] = field(default_factory=list)  # merges of unequal maps and the like
    leftover: dict[str, list[str]] = field(default_factory=dict)  # axis -> layers leaving pixels unread
    outputs: list[T] = field(default_factory=list)
    layers: dict[str, T] = field(default_factory=dict)  # every layer's output


class ShapeOps(Ops):
    """Runs a network function on `T` tensors: shapes, parameters, MACs, collapses. No Keras."""

    def __init__(self):
        super().__init__()
        self.trace = Trace()
        self._acc: _Acc | None = None

    @contextlib.contextmanager
    def stage(self, name: str, what: str) -> Iterator[None]:
        if self._acc is not None:  # stages do not nest: the outer one counts these layers
            yield
            return
        self._acc = _Acc(name, what)
        try:
            yield
        finally:
            acc, self._acc = self._acc, None
            if acc.last is not None:
                self._close(acc)

    def _close(self, acc: _Acc) -> None:
        t = acc.last
        assert t is not None
        self.trace.stages.append(
            Stage(acc.name, acc.what, t.h, t.w, t.c, acc.params, acc.trainable, acc.macs, t.flat, t.layer)
        )

    def _count(self, out: T, what: str, params: int = 0, trainable: int | None = None, macs: int | None = 0) -> T:
        trainable = params if trainable is None else trainable
        self.trace.layers[out.layer] = out
        acc = self._acc if self._acc is not None else _Acc(out.layer, what)
        acc.params += params
        acc.trainable += trainable
        acc.macs = None if acc.macs is None or macs is None else acc.macs + macs
        acc.last = out
        if self._acc is None:
            self._close(acc)
        return out

    def _stage_name(self, layer: str) -> str:
        return self._acc.name if self._acc is not None else layer

    # -- windows
    def _window(self, x: T, layer: str, what: str, kernel, strides, padding, dilation=(1, 1)):
        out = []
        for axis, n, k, s, d in zip(("height", "width"), (x.h, x.w), kernel, strides, dilation):
            o = window_size(n, k, s, padding, d)
            if o is not None and o <= 0:
                if n is not None and n > 0 and not any(c.axis == axis for c in self.trace.collapse):
                    self.trace.collapse.append(Collapse(self._stage_name(layer), layer, what, axis, n, k, o))
                o = 0
            elif n is not None and padding == "valid" and s > 1 and k >= s and (n - (d * (k - 1) + 1)) % s:
                self.trace.leftover.setdefault(axis, []).append(layer)
            out.append(o)
        return out

    @staticmethod
    def _what(name: str, kernel, strides, padding: str) -> str:
        kh, kw = kernel
        text = f"{kh}x{kw} {name}"
        if max(strides) > 1:
            text += f", stride {strides[0]}" if strides[0] == strides[1] else f", strides {strides[0]}x{strides[1]}"
        return f"{text}, {padding} padding"

    def _make(self, op: str, inputs: list, name: str, **a) -> T:
        return getattr(self, f"_{op}")(inputs, name, **a)

    def _conv(self, xs, name, *, filters, kernel, strides, padding, use_bias, activation, dilation, groups):
        (x,) = xs
        what = self._what("conv", kernel, strides, padding)
        h, w = self._window(x, name, what, kernel, strides, padding, dilation)
        k = kernel[0] * kernel[1] * (x.c // groups) * filters
        params = k + (filters if use_bias else 0)
        return self._count(T(h, w, filters, layer=name), f"{what} {filters}", params, macs=_mul(h, w, k))

    def _depthwise(self, xs, name, *, kernel, strides, padding, use_bias, depth_multiplier, activation):
        (x,) = xs
        what = self._what("depthwise conv", kernel, strides, padding)
        h, w = self._window(x, name, what, kernel, strides, padding)
        cout = x.c * depth_multiplier
        k = kernel[0] * kernel[1] * cout
        params = k + (cout if use_bias else 0)
        return self._count(T(h, w, cout, layer=name), what, params, macs=_mul(h, w, k))

    def _separable(self, xs, name, *, filters, kernel, strides, padding, use_bias):
        (x,) = xs
        what = self._what("separable conv", kernel, strides, padding)
        h, w = self._window(x, name, what, kernel, strides, padding)
        dw, pw = kernel[0] * kernel[1] * x.c, x.c * filters
        params = dw + pw + (filters if use_bias else 0)
        return self._count(T(h, w, filters, layer=name), f"{what} {filters}", params, macs=_mul(h, w, dw + pw))

    def _bn(self, xs, name, *, epsilon, momentum, scale, center):
        (x,) = xs
        trainable = x.c * (int(scale) + int(center))
        return self._count(T(x.h, x.w, x.c, x.flat, name), "batch norm", trainable + 2 * x.c, trainable)

    def _layer_norm(self, xs, name, *, epsilon):
        (x,) = xs
        return self._count(T(x.h, x.w, x.c, x.flat, name), "layer norm", 2 * x.c)

    def _normalization(self, xs, name, *, mean, variance):
        (x,) = xs
        params = 0 if mean is not None else 2 * x.c + 1  # mean, variance and Keras' sample count
        return self._count(T(x.h, x.w, x.c, x.flat, name), "normalization", params, 0)

    def _rescaling(self, xs, name, *, scale, offset):
        (x,) = xs
        for value in (scale, offset):
            if isinstance(value, (list, tuple)) and len(value) not in (1, x.c):
                self.trace.problems.append(
                    f"{name} scales {len(value)} channels but gets {x.c}: a bug in its network function"
                )
        return self._count(T(x.h, x.w, x.c, x.flat, name), "rescaling")

    def _layer_scale(self, xs, name, *, init_values):
        (x,) = xs
        return self._count(T(x.h, x.w, x.c, x.flat, name), "layer scale", x.c)

    def _activation(self, xs, name, *, kind):
        (x,) = xs
        return self._count(T(x.h, x.w, x.c, x.flat, name), kind)

    def _relu(self, xs, name, *, max_value):
        (x,) = xs
        return self._count(T(x.h, x.w, x.c, x.flat, name), "relu" if max_value is None else f"relu{max_value:g}")

    def _pad(self, xs, name, *, padding):
        (x,) = xs
        (t, b), (l, r) = padding
        h = None if x.h is None else x.h + t + b
        w = None if x.w is None else x.w + l + r
        return self._count(T(h, w, x.c, layer=name), "zero padding")

    def _crop(self, xs, name, *, cropping):
        (x,) = xs
        out = []
        for axis, n, (a, b) in zip(("height", "width"), (x.h, x.w), cropping):
            o = None if n is None else n - a - b
            if o is not None and o <= 0:
                if n > 0 and not any(c.axis == axis for c in self.trace.collapse):
                    self.trace.collapse.append(
                        Collapse(self._stage_name(name), name, f"cropping of {a}+{b}", axis, n, a + b + 1, o)
                    )
                o = 0
            out.append(o)
        return self._count(T(out[0], out[1], x.c, layer=name), "cropping")

    def _pool(self, xs, name, kind, *, pool, strides, padding):
        (x,) = xs
        what = self._what(f"{kind} pool", pool, strides, padding)
        h, w = self._window(x, name, what, pool, strides, padding)
        return self._count(T(h, w, x.c, layer=name), what)

    def _max_pool(self, xs, name, **a):
        return self._pool(xs, name, "max", **a)

    def _avg_pool(self, xs, name, **a):
        return self._pool(xs, name, "average", **a)

    def _global_pool(self, xs, name, *, kind, keepdims):
        (x,) = xs
        what = f"global {'average' if kind == 'avg' else 'max'} pool"
        out = T(1, 1, x.c, layer=name) if keepdims else T(None, None, x.c, True, name)
        return self._count(out, what)

    def _merge(self, xs: list[T], name: str, what: str, broadcast: bool = False) -> tuple[int | None, int | None]:
        """The common (H, W) of merged maps; a problem when they differ."""
        hw = [(x.h, x.w) for x in xs if not x.flat]
        if broadcast:
            hw = [p for p in hw if p != (1, 1)] or hw[:1]
        for axis in (0, 1):
            known = {p[axis] for p in hw if p[axis] is not None}
            if len(known) > 1:
                sizes = " and ".join("x".join("?" if d is None else str(d) for d in p) for p in hw)
                self.trace.problems.append(
                    f"{self._stage_name(name)}: {name} ({what}) joins maps of {sizes}, which differ"
                )
                break
        if not hw:
            return None, None
        h = next((p[0] for p in hw if p[0] is not None), None)
        w = next((p[1] for p in hw if p[1] is not None), None)
        return h, w

    def _add(self, xs, name):
        h, w = self._merge(xs, name, "add")
        return self._count(T(h, w, xs[0].c, xs[0].flat, name), "add")

    def _average(self, xs, name):
        h, w = self._merge(xs, name, "average")
        return self._count(T(h, w, xs[0].c, xs[0].flat, name), "average")

    def _multiply(self, xs, name):
        h, w = self._merge(xs, name, "multiply", broadcast=True)
        c = max(x.c for x in xs)
        return self._count(T(h, w, c, all(x.flat for x in xs), name), "multiply")

    def _concat(self, xs, name):
        h, w = self._merge(xs, name, "concatenate")
        return self._count(T(h, w, sum(x.c for x in xs), xs[0].flat, name), "concatenate")

    def _dense(self, xs, name, *, units, activation, use_bias):
        (x,) = xs
        params = x.c * units + (units if use_bias else 0)
        macs = x.c * units if x.flat else _mul(x.h, x.w, x.c, units)
        return self._count(T(x.h, x.w, units, x.flat, name), f"dense {units}", params, macs=macs)

    def _dropout(self, xs, name, *, rate, noise_shape):
        (x,) = xs
        return self._count(T(x.h, x.w, x.c, x.flat, name), f"dropout {rate:g}")

    def _flatten(self, xs, name):
        (x,) = xs
        if x.flat:
            return self._count(T(None, None, x.c, True, name), "flatten")
        if x.h is None or x.w is None:
            self.trace.problems.append(
                f"{self._stage_name(name)}: {name} (Flatten) needs a fixed height and width: its output "
                "width sets the next layer's weights"
            )
            return self._count(T(None, None, x.c, True, name), "flatten")
        return self._count(T(None, None, x.h * x.w * x.c, True, name), "flatten")

    def _reshape(self, xs, name, *, target):
        (x,) = xs
        if len(target) == 1:
            return self._count(T(None, None, target[0], True, name), "reshape")
        h, w, c = target
        return self._count(T(h, w, c, layer=name), "reshape")
