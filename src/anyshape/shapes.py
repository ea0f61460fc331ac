"""The shape engine: what a network does with an input shape, stage by stage, without Keras.

`explain(input_shape, arch="inception_v3", ...)` runs the network's own function
(`anyshape.archs`) on the shape tracer (`anyshape.archs.ops.ShapeOps`) and answers in milliseconds.
`anyshape.create_model` calls it before it creates any layer, so an input shape that cannot work is
refused with the stage that collapses and why, not with a traceback from inside a backend.

Nothing about sizes is typed in. A network's minimum is the smallest H (and W) at which no window
of its calls collapses and no merge joins maps of different sizes, found by bisection over the
tracer (valid sizes form a half-line: each window's output grows with its input); the sizes at
which every input pixel is read are found the same way.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache

from anyshape.archs import DEFAULT_ARCH, Arch, get_arch
from anyshape.archs.base import DATA_FORMATS, POOLINGS, ignored_classes_problem, input_shape_value, pooling_problem
from anyshape.archs.ops import Collapse, ShapeOps, Stage, T, Trace
from anyshape.errors import Message
from anyshape.input_shapes import (
    TransposedShapeWarning,
    format_shape,
    layout_hint,
    parse_dims,
    parse_input_shape,
    transposed_shape_warning,
)

__all__ = [
    "Stage",
    "Collapse",
    "ShapeReport",
    "InvalidInputShape",
    "ImplausibleModel",
    "TransposedShapeWarning",
    "MAX_PARAMS_ENV",
    "DEFAULT_MAX_PARAMS",
    "max_params_limit",
    "transposed_shape_warning",
    "explain",
    "minimum_size",
    "min_input_size",
    "parse_input_shape",
    "parse_dims",
    "POOLINGS",
    "DATA_FORMATS",
]

_SEARCH_LIMIT = 4096  # the largest side the minimum-size search tries

# The most parameters `create_model` builds without being told to: ten times keras.applications'
# largest network (ConvNeXtXLarge, 350 M; VGG19 with its top 144 M), 4 GB of float32 weights. An
# option typed wrong (alpha=1e9, classes=10**7) is refused here with the stage that holds them, not
# by the backend's allocator (TensorFlow's ResourceExhaustedError) after minutes of building.
DEFAULT_MAX_PARAMS = 1_000_000_000
MAX_PARAMS_ENV = "ANYSHAPE_MAX_PARAMS"


class InvalidInputShape(ValueError):
    """An input shape the network cannot take; the message says which stage collapses and why."""

    def __init__(self, message: str, report: ShapeReport | None = None):
        super().__init__(message)
        self.report = report


class ImplausibleModel(ValueError):
    """A network whose size (parameters, weight memory) is far beyond any real use: an option
    typed wrong. Raised by `create_model` before any layer is built; the limit is `max_params=`
    (or the environment variable ANYSHAPE_MAX_PARAMS, which the CLI reads too)."""


def max_params_limit(max_params=None) -> int:
    """The parameter limit: `max_params` when given, else ANYSHAPE_MAX_PARAMS, else the default."""
    source = "max_params"
    if max_params is None:
        text = __import__("os").environ.get(MAX_PARAMS_ENV, "").strip()
        if not text:
            return DEFAULT_MAX_PARAMS
        source = f"the environment variable {MAX_PARAMS_ENV}"
        try:
            max_params = float(text) if any(ch in text for ch in ".eE") else int(text)
        except ValueError:
            raise ValueError(f"{source}={text!r} is not a number: give the parameter limit, e.g. 2e9") from None
    value = max_params.item() if hasattr(max_params, "item") else max_params
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 1 or value == float("inf"):
        raise ValueError(f"{source} must be a positive number of parameters (e.g. 2e9), got {max_params!r}")
    return int(value)


def _bytes(n: float) -> str:
    for unit in ("bytes", "KB", "MB", "GB", "TB"):
        if n < 1000:
            return f"{n:.3g} {unit}"
        n /= 1000
    return f"{n:.3g} PB"


def _trace(arch: Arch, config, h: int | None, w: int | None, c: int) -> Trace:
    """Run the network function on the shape tracer (always channels_last: the Keras model
    transposes a channels_first input once and computes in channels_last too)."""
    ops = ShapeOps()
    out = arch.network(ops, config, T(h, w, c, layer="input_layer"))
    ops.trace.outputs = list(out) if isinstance(out, (list, tuple)) else [out]
    return ops.trace


def _fits(trace: Trace) -> bool:
    return not trace.collapse and not trace.problems


@lru_cache(maxsize=512)
def _other_side(arch: Arch, config, channels: int) -> int | None:
    """The other side's size while one side is searched: free (None), unless the network only
    works at a fixed size (a Flatten head, VGG's with head="flatten"), then the largest size tried."""
    if _fits(_trace(arch, config, _SEARCH_LIMIT, None, channels)):
        return None
    return _SEARCH_LIMIT if _fits(_trace(arch, config, _SEARCH_LIMIT, _SEARCH_LIMIT, channels)) else None


def _probe(arch: Arch, config, channels: int, axis: int, n: int) -> Trace:
    """The trace with side `axis` (0: height, 1: width) at `n` and the other at `_other_side`."""
    other = _other_side(arch, config, channels)
    h, w = (n, other) if axis == 0 else (other, n)
    return _trace(arch, config, h, w, channels)


@lru_cache(maxsize=512)
def _minimum(arch: Arch, config, channels: int) -> tuple[int | None, int | None]:
    """The smallest height and width (each with the other side free, or fixed and large for a
    network that needs a fixed size) that the network takes."""
    out: list[int | None] = []
    for axis in (0, 1):

        def fits(n: int, axis: int = axis) -> bool:
            return _fits(_probe(arch, config, channels, axis, n))

        if not fits(_SEARCH_LIMIT):
            out.append(None)
            continue
        lo, hi = 1, _SEARCH_LIMIT  # fits(hi); find the least n that fits
        while lo < hi:
            mid = (lo + hi) // 2
            if fits(mid):
                hi = mid
            else:
                lo = mid + 1
        out.append(lo)
    return out[0], out[1]


def _free(config):
    """`config` with the input shape and names that do not change the network's arithmetic cleared,
    so that one minimum serves every size (the cache key): `ArchConfig.at_any_size`."""
    return config.at_any_size()


def minimum_size(arch: str | Arch = DEFAULT_ARCH, channels: int = 3, **config) -> tuple[int | None, int | None]:
    """The smallest (H, W) `arch` takes with this configuration; None where no size works."""
    a = get_arch(arch)
    config.setdefault("include_top", False)
    return _minimum(a, _free(a.config(**config)), channels)


@dataclass
class ShapeReport:
    """What a network does with one input shape, stage by stage. `str()` gives a table."""

    arch: Arch
    config: object  # the network's Config, input_shape included
    height: int | None
    width: int | None
    channels: int
    trace: Trace
    problems: list[str]

    # -- what was asked
    @property
    def input_shape(self) -> tuple:
        return tuple(self.config.input_shape)  # type: ignore[attr-defined]

    @property
    def data_format(self) -> str:
        return self.config.data_format  # type: ignore[attr-defined]

    @property
    def include_top(self) -> bool:
        return self.config.include_top  # type: ignore[attr-defined]

    @property
    def pooling(self) -> str | None:
        return self.config.pooling  # type: ignore[attr-defined]

    @property
    def classes(self) -> int:
        return self.config.classes  # type: ignore[attr-defined]

    @property
    def aux_logits(self) -> bool:
        return bool(getattr(self.config, "aux_logits", False))

    # -- what the tracer found
    @property
    def stages(self) -> list[Stage]:
        return self.trace.stages

    @property
    def collapse(self) -> list[Collapse]:
        return self.trace.collapse

    @property
    def valid(self) -> bool:
        return not self.collapse and not self.problems

    @property
    def params(self) -> int:
        return sum(s.params for s in self.stages)

    @property
    def trainable_params(self) -> int:
        return sum(s.trainable_params for s in self.stages)

    @property
    def macs(self) -> int | None:
        counts = [s.macs for s in self.stages]
        return None if any(m is None for m in counts) else sum(m for m in counts if m is not None)

    def stage(self, name: str) -> Stage:
        for s in self.stages:
            if s.name == name:
                return s
        raise KeyError(f"no stage {name!r}; stages are {[s.name for s in self.stages]}")

    @property
    def output_shapes(self) -> list[tuple]:
        """The model's output shape(s) without the batch axis, in `data_format`."""
        outs = [t.shape for t in self.trace.outputs]
        if self.data_format == "channels_first":
            outs = [(s[2], s[0], s[1]) if len(s) == 3 else s for s in outs]
        return outs

    # -- sizes
    @property
    def min_hw(self) -> tuple[int | None, int | None]:
        """The smallest height and width this network takes with this configuration."""
        return _minimum(self.arch, _free(self.config), self.channels)

    @property
    def min_size(self) -> int:
        """The smallest side (the larger of the two minima, when they differ)."""
        return max(n for n in self.min_hw if n is not None) if any(self.min_hw) else 0

    @property
    def needs_fixed_size(self) -> bool:
        """Whether this configuration takes fixed sizes only (a Flatten head: VGG's head="flatten")."""
        return _other_side(self.arch, _free(self.config), self.channels) is not None

    def nearest_valid(self) -> tuple[int | None, int | None]:
        """The closest (H, W) that works with this configuration: each side raised to its minimum;
        a free side (None) where only fixed sizes work becomes the network's default size."""
        mh, mw = self.min_hw
        fixed = self.needs_fixed_size

        def fix(n, m):
            if n is None:
                return max(self.arch.default_size, m or 1) if fixed else None
            return n if m is None else max(n, m)

        return fix(self.height, mh), fix(self.width, mw)

    def _reads_every_pixel(self, axis: int, n: int) -> bool:
        trace = _probe(self.arch, _free(self.config), self.channels, axis, n)
        return _fits(trace) and not trace.leftover.get(("height", "width")[axis])

    def aligned_sizes(self, size: int, axis: int = 0) -> tuple[int, int]:
        """The nearest sizes at or below and above `size` at which no strided valid window drops
        border pixels (for InceptionV3: 75 + 32k)."""
        floor = self.min_hw[axis] or 1
        lo = size
        while lo > floor and not self._reads_every_pixel(axis, lo):
            lo -= 1
        hi = size + 1
        while hi < size + _SEARCH_LIMIT and not self._reads_every_pixel(axis, hi):
            hi += 1
        return lo, hi

    # -- words
    def reason(self) -> str:
        """Why the shape fails, and what to do: the text of `InvalidInputShape`."""
        if self.valid:
            return "valid"
        lines = list(self.problems)
        if self.collapse:
            c = self.collapse[0]
            shown = format_shape(self.input_shape)
            lines.append(f"Input shape {shown} ({self.data_format}) does not fit {self.arch.keras_name}: {c}.")
            if len(self.collapse) > 1:
                lines.append(f"(The {self.collapse[1].axis} collapses too, at {self.collapse[1].stage}.)")
        if self.collapse or self.trace.problems:
            note = self.arch.size_note(self.config) if self.arch.size_note else ""
            mh, mw = self.min_hw
            least = f"at least {mh}" if mh == mw else f"at least {mh} (height) and {mw} (width)"
            if self.needs_fixed_size:
                lines.append(f"Every H and W must be {least}{note}; None (a free size) does not work here.")
            else:
                lines.append(
                    f"Every H and W must be {least}{note}; the image size itself is otherwise free, because "
                    "all layers before the global pooling slide over their input."
                )
            h, w = self.nearest_valid()
            lines.append(f"Nearest valid shape: {format_shape(self._in_format(h, w))}.")
            hint = layout_hint(self.input_shape, self.data_format, self.min_size)
            if hint:
                lines.append(hint)
        return "\n".join(lines)

    def _in_format(self, h, w) -> tuple:
        if self.data_format == "channels_first":
            return (self.channels, h, w)
        return (h, w, self.channels)

    def raise_if_invalid(self) -> ShapeReport:
        if not self.valid:
            raise InvalidInputShape(self.reason(), self)
        return self

    def size_problem(self, max_params=None) -> str | None:
        """Why this network is too large to build (more parameters than `max_params_limit`), or None."""
        limit = max_params_limit(max_params)
        params = self.params
        if params <= limit:
            return None
        biggest = max(self.stages, key=lambda s: s.params)
        return (
            f"{self.arch.keras_name} at input {format_shape(self.input_shape)} with {self._options()} would "
            f"have {params:.3g} parameters ({_bytes(4.0 * params)} of float32 weights; "
            f"{100 * biggest.params // params}% of them in {biggest.name}), more than the limit of "
            f"{limit:.3g}: check the options and the "
            f"input size; to build it anyway raise the limit with max_params= (or the environment "
            f"variable {MAX_PARAMS_ENV}, which the CLI reads too)"
        )

    def raise_if_implausible(self, max_params=None) -> ShapeReport:
        """Raise ImplausibleModel when `size_problem` finds one (what `create_model` checks)."""
        problem = self.size_problem(max_params)
        if problem:
            raise ImplausibleModel(problem)
        return self

    def _header(self) -> str:
        shape = format_shape(self.input_shape)
        return f"{self.arch.keras_name} at input {shape} ({self.data_format}), {self._options()}"

    def _options(self) -> str:
        options = f"include_top={self.include_top}, pooling={self.pooling}"
        base = self.arch.config()  # the variant's defaults: ConvNeXtSmall's depths are not an option given
        for key, value in vars(self.config).items():
            if key not in ("input_shape", "include_top", "pooling", "data_format", "name") and (
                value != getattr(base, key, value) or key == "aux_logits"
            ):
                options += f", {key}={value}"
        return options

    def __str__(self) -> str:
        rows = [("stage", "what", "output HxWxC", "params", "MMACs")]
        for s in self.stages:
            shape = "x".join("?" if d is None else str(d) for d in s.shape)
            macs = "?" if s.macs is None else f"{s.macs / 1e6:,.1f}"
            rows.append((s.name, s.what, shape, f"{s.params:,}", macs))
        widths = [max(len(r[i]) for r in rows) for i in range(5)]
        table = []
        for i, r in enumerate(rows):
            table.append(
                "  ".join(r[j].ljust(widths[j]) if j < 3 else r[j].rjust(widths[j]) for j in range(5)).rstrip()
            )
            if i == 0:
                table.append("  ".join("-" * w for w in widths))
        total_macs = self.macs
        total = f"total: {self.params:,} parameters ({self.trainable_params:,} trainable)"
        total += "" if total_macs is None else f", {total_macs / 1e9:.2f} G multiply-accumulates per image"
        lines = [self._header(), "", *table, "", total]
        if self.valid:
            outs = ", ".join(format_shape(s) for s in self.output_shapes)
            too_big = self.size_problem()
            lines.append(f"valid: output {outs}" if not too_big else f"TOO LARGE to build: {too_big}")
            transposed = transposed_shape_warning(self.input_shape, self.data_format)
            if transposed:
                lines.append(f"warning: {transposed}")
            for axis, n in enumerate((self.height, self.width)):
                if n is not None and self.trace.leftover.get(("height", "width")[axis]):
                    lo, hi = self.aligned_sizes(n, axis)
                    lines.append(
                        f"note: at {n} the strided valid windows leave the last rows or columns "
                        f"unread; at {lo} and {hi} every input pixel is used"
                    )
                    break
        else:
            lines.append("INVALID: " + self.reason())
        return "\n".join(lines)


def explain(input_shape: Sequence | None = None, *, arch: str | Arch = DEFAULT_ARCH, **config) -> ShapeReport:
    """Explain what a network does with `input_shape`, stage by stage.

    Returns a `ShapeReport`: every stage with its output H x W x C, parameters and
    multiply-accumulates; whether the shape is valid and, if not, which stage collapses, from what
    size to what, and the nearest valid shape. `str(report)` is a readable table;
    `report.raise_if_invalid()` raises `InvalidInputShape` with the explanation.

    `arch` is a registered network (`anyshape.list_models()`), "inception_v3" by default. The other
    keyword arguments are the network's build arguments (as `anyshape.create_model` takes them:
    include_top, pooling, classes, data_format, dropout_rate and the network's own, such as
    InceptionV3's aux_logits or bn_scale). `input_shape` excludes the batch axis and is in
    `data_format` order; None means (None, None, 3). Unlike the constructors, `include_top`
    defaults to False here.
    """
    a = get_arch(arch)
    data_format = config.get("data_format", "channels_last")
    if input_shape is None:
        input_shape = (3, None, None) if data_format == "channels_first" else (None, None, 3)
    input_shape = input_shape_value(input_shape)
    parse_input_shape(input_shape, data_format)
    if config.get("pooling") not in POOLINGS:
        raise ValueError(pooling_problem(config.get("pooling")))
    config.setdefault("include_top", False)
    built = a.config(input_shape=input_shape, **config)
    ignored = ignored_classes_problem(built)
    if ignored:
        raise ValueError(Message("{network}: " + ignored.template, network=a.keras_name, **ignored.values))
    return explain_config(a, built)


def explain_config(arch: Arch, config) -> ShapeReport:
    """The report for a network's Config whose input_shape is set (what `create_model` checks)."""
    h, w, c = parse_input_shape(config.input_shape, config.data_format)
    problems = config.problems()
    # a network function need not run with arguments its Config refuses (an unknown variant name,
    # a width of 0): those are reported in their own words, without a trace
    trace = Trace() if problems else _trace(arch, config, h, w, c)
    return ShapeReport(arch, config, h, w, c, trace, problems + trace.problems)


def min_input_size(layers: Iterable[str], arch: str | Arch = DEFAULT_ARCH, config=None) -> int:
    """The smallest height and width (square) at which none of `layers` (a built model's layer
    names) collapses: the network's minimum for the whole network, less for a model that ends at
    an earlier block (a feature model of mixed5), 1 for a model with none of the network's layers.

    `config` is the Config the model was built with (`archs.model_config`); without one, the
    network with its top (and, for InceptionV3, the aux head when the layers include it). A
    collapsed layer and every layer after it have a 0-pixel side in the trace, which is why the
    search can bisect.
    """
    names = set(layers)
    a = get_arch(arch)
    if config is None:
        extra = {"aux_logits": True} if any(n.startswith("aux_") for n in names) and a.name == "inception_v3" else {}
        config = a.config(include_top=True, **extra)
    config = _free(config)

    def fits(n: int) -> bool:
        traced = _trace(a, config, n, n, 3).layers
        return not any(0 in (t.h, t.w) for name, t in traced.items() if name in names and not t.flat)

    lo, hi = 1, _SEARCH_LIMIT
    if not fits(hi):
        return hi
    while lo < hi:
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if fits(mid) else (mid + 1, hi)
    return lo
