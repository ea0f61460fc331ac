"""The shape tracer: `ShapeOps` runs a network function without Keras.

It follows H x W x C through the calls of the vocabulary (`anyshape.archs.vocabulary.Ops`) and
records, per stage, the output shape, the parameters and the multiply-accumulates, and where a
window collapses or a merge joins maps of different sizes (`Trace`). This is `anyshape.explain`.
Because the Keras model runs the same function, `explain` cannot disagree with the model it
describes (the per-network harness, tests/test_archs.py, checks it against Keras' own shape
inference anyway), and every network's minimum size is computed from its calls, not typed in.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field

from anyshape.archs.vocabulary import Collapse, Ops, Stage, T, window_size

__all__ = ["ShapeOps", "Trace"]


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
