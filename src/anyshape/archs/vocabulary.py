"""The layer vocabulary every network is written in: `Ops`, the tensor record `T`, stages.

A network (see `anyshape.archs`) is one function, `network(net, config, x)`, that calls the methods
of an `Ops` object: `net.conv(...)`, `net.bn(...)`, `net.add([...])` and so on, one per Keras layer
kind that keras.applications uses. `anyshape.archs.keras_ops.KerasOps` makes them Keras layers;
`anyshape.archs.shape_ops.ShapeOps` follows shapes through them (`anyshape.archs.ops` holds both).

Stages group layers into the rows of the report: `with net.stage("conv2_block1", "bottleneck"):`.
A stage's output is the last tensor made inside it. Stages do not nest: a stage opened inside
another adds its layers to the outer one, so a helper such as a conv + BN + ReLU unit can open its
own stage and still be used inside a larger block. A layer made outside any stage is a stage of
its own, named after the layer.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["Ops", "T", "Stage", "Collapse", "window_size", "pair", "padding_pairs"]


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
