"""InceptionV3's input-shape arithmetic, stage by stage.

Pure Python: no Keras, no numpy. `explain()` answers in about a millisecond and is what
`anyshape.InceptionV3` calls before it creates any layer, so an input shape that cannot work is
refused with the stage that collapses and why, not with a traceback from inside a backend.

Why InceptionV3 takes any H, W >= 75: every layer before the head is a convolution or a
pooling window that slides over its input, so a larger image only gives larger feature maps.
Seven of those windows are "valid" (unpadded) with stride 1 or 2; each needs an input at least
as large as its kernel. Following them back from the last one (mixed8's 3x3 stride-2
convolution, which needs 3 pixels) gives 75 as the smallest input. The head is a global average
pool, which turns any H x W x 2048 map into 2048 numbers, so the classifier's 2048 x classes
weights do not depend on the image size either.

The architecture table here (`STEM`, `BLOCKS`, `AUX_CONVS`) is the single description of
InceptionV3 that this engine, the Keras builder (`anyshape.inception_v3`) and the weight
mapping (`anyshape.weights.checkpoint`) read: layer names, torchvision names, filters, kernels,
strides, paddings, and the wiring. A `BlockSpec` is a tuple of `BranchSpec`s concatenated in
order; each branch reads the block input through an optional pool, a chain of `ConvSpec` units
and an optional split (parallel units concatenated, as in Inception E), so a block's output
width is `BlockSpec.channels(cin)` and no one parses layer names to find what feeds what.

Adding another Inception-family network (Inception-v1/v2/v4, say) means writing its table in
the same terms: a stem tuple, one `_block_<kind>` function per block kind returning a
`BlockSpec` of `BranchSpec`s (new pool or split shapes are a field of `BranchSpec`, read by
`_walk_branch` here and `_branch` in the builder), and the tuple of its blocks. `explain`'s
walkers (`_walk_stem`, `_walk_blocks`) and the builder's `_block` take any such table; the
`torch_name` of every unit is what maps a torchvision/timm state dict onto it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

__all__ = [
    "ConvSpec",
    "BranchSpec",
    "BlockSpec",
    "Stage",
    "Collapse",
    "ShapeReport",
    "InvalidInputShape",
    "explain",
    "min_input_size",
    "parse_input_shape",
    "parse_dims",
    "MIN_SIZE",
    "MIN_SIZE_AUX",
    "POOLINGS",
]

MIN_SIZE = 75
"""Smallest H or W the network accepts (mixed8's 3x3 valid convolution then sees 3 pixels)."""
MIN_SIZE_AUX = 299
"""Smallest H or W with the auxiliary classifier (its 5x5 conv needs mixed7 >= 17 x 17)."""
POOLINGS = (None, "avg", "max", "avgmax", "catavgmax")
DATA_FORMATS = ("channels_last", "channels_first")
BN_EPSILON = 1e-3  # Keras' and torchvision's InceptionV3 both use 0.001


class InvalidInputShape(ValueError):
    """An input shape InceptionV3 cannot take; the message says which stage collapses and why."""

    def __init__(self, message: str, report: ShapeReport | None = None):
        super().__init__(message)
        self.report = report


@dataclass(frozen=True)
class ConvSpec:
    """One convolution + BatchNorm + ReLU unit (Keras' `conv2d_bn`, torchvision's BasicConv2d)."""

    name: str  # our layer prefix: f"{name}_conv", f"{name}_bn", f"{name}_relu"
    torch_name: str  # torchvision/timm module path, e.g. "Mixed_5b.branch5x5_2"
    filters: int
    kernel: tuple[int, int]
    strides: int = 1
    padding: str = "same"


@dataclass(frozen=True)
class BranchSpec:
    """One branch of an Inception block: an optional pool, a chain of conv units, an optional split.

    The branch reads the block's input. `pool` "avg" is the 3x3 stride-1 average pool in front
    of a pool branch's conv; "max" is the 3x3 stride-2 valid max pool of a reduction block (a
    branch of its own, without convs). `convs` run one after the other. `split` (Inception E)
    is a set of conv units that all read the chain's output and are concatenated into a layer
    named `split_name`. Its output width is therefore known from the spec alone.
    """

    name: str  # the branch's name in the block, e.g. "branch5x5" or "branch_pool"
    convs: tuple[ConvSpec, ...] = ()
    pool: str | None = None  # None, "avg" or "max"
    split: tuple[ConvSpec, ...] = ()
    split_name: str | None = None

    def units(self) -> tuple[ConvSpec, ...]:
        """The branch's conv units in order: the chain, then the split."""
        return self.convs + self.split

    def channels(self, cin: int) -> int:
        """Output channels of the branch on an input of `cin` channels."""
        if self.split:
            return sum(s.filters for s in self.split)
        return self.convs[-1].filters if self.convs else cin


@dataclass(frozen=True)
class BlockSpec:
    """One Inception block (mixed0 ... mixed10): its branches, concatenated in order."""

    name: str  # Keras' name: "mixed0" ... "mixed10"
    torch_name: str  # "Mixed_5b" ... "Mixed_7c"
    what: str  # what the block does, in words (the shape report's "what" column)
    branches: tuple[BranchSpec, ...] = ()

    def convs(self) -> list[ConvSpec]:
        """The block's conv units, branch by branch."""
        return [spec for branch in self.branches for spec in branch.units()]

    def channels(self, cin: int) -> int:
        """Output channels of the block on an input of `cin` channels (the branches' sum)."""
        return sum(branch.channels(cin) for branch in self.branches)


# --------------------------------------------------------------------------------------------
# InceptionV3's blocks: one function per kind (A-E, as in the paper and torchvision)


def _unit(block: str, torch_block: str, unit: str, filters: int, kernel, strides=1, padding="same"):
    kernel = (kernel, kernel) if isinstance(kernel, int) else tuple(kernel)
    return ConvSpec(f"{block}_{unit}", f"{torch_block}.{unit}", filters, kernel, strides, padding)


def _branch(block: str, torch_block: str, name: str, *units, pool=None, split=(), split_name=None):
    """A branch whose conv units are (unit name, filters, kernel[, strides, padding]) tuples."""
    return BranchSpec(
        name,
        tuple(_unit(block, torch_block, *u) for u in units),
        pool,
        tuple(_unit(block, torch_block, *u) for u in split),
        split_name,
    )


def _block_a(name: str, torch_name: str, pool_features: int) -> BlockSpec:
    b = lambda *args, **kw: _branch(name, torch_name, *args, **kw)  # noqa: E731
    return BlockSpec(
        name,
        torch_name,
        "Inception A (35x35 at 299)",
        (
            b("branch1x1", ("branch1x1", 64, 1)),
            b("branch5x5", ("branch5x5_1", 48, 1), ("branch5x5_2", 64, 5)),
            b("branch3x3dbl", ("branch3x3dbl_1", 64, 1), ("branch3x3dbl_2", 96, 3), ("branch3x3dbl_3", 96, 3)),
            b("branch_pool", ("branch_pool", pool_features, 1), pool="avg"),
        ),
    )


def _block_b(name: str, torch_name: str) -> BlockSpec:
    b = lambda *args, **kw: _branch(name, torch_name, *args, **kw)  # noqa: E731
    return BlockSpec(
        name,
        torch_name,
        "Inception B, reduction",
        (
            b("branch3x3", ("branch3x3", 384, 3, 2, "valid")),
            b(
                "branch3x3dbl",
                ("branch3x3dbl_1", 64, 1),
                ("branch3x3dbl_2", 96, 3),
                ("branch3x3dbl_3", 96, 3, 2, "valid"),
            ),
            b("branch_pool", pool="max"),
        ),
    )


def _block_c(name: str, torch_name: str, c7: int) -> BlockSpec:
    b = lambda *args, **kw: _branch(name, torch_name, *args, **kw)  # noqa: E731
    return BlockSpec(
        name,
        torch_name,
        "Inception C (17x17 at 299)",
        (
            b("branch1x1", ("branch1x1", 192, 1)),
            b("branch7x7", ("branch7x7_1", c7, 1), ("branch7x7_2", c7, (1, 7)), ("branch7x7_3", 192, (7, 1))),
            b(
                "branch7x7dbl",
                ("branch7x7dbl_1", c7, 1),
                ("branch7x7dbl_2", c7, (7, 1)),
                ("branch7x7dbl_3", c7, (1, 7)),
                ("branch7x7dbl_4", c7, (7, 1)),
                ("branch7x7dbl_5", 192, (1, 7)),
            ),
            b("branch_pool", ("branch_pool", 192, 1), pool="avg"),
        ),
    )


def _block_d(name: str, torch_name: str) -> BlockSpec:
    b = lambda *args, **kw: _branch(name, torch_name, *args, **kw)  # noqa: E731
    return BlockSpec(
        name,
        torch_name,
        "Inception D, reduction",
        (
            b("branch3x3", ("branch3x3_1", 192, 1), ("branch3x3_2", 320, 3, 2, "valid")),
            b(
                "branch7x7x3",
                ("branch7x7x3_1", 192, 1),
                ("branch7x7x3_2", 192, (1, 7)),
                ("branch7x7x3_3", 192, (7, 1)),
                ("branch7x7x3_4", 192, 3, 2, "valid"),
            ),
            b("branch_pool", pool="max"),
        ),
    )


def _block_e(name: str, torch_name: str, split_3x3_name: str) -> BlockSpec:
    """`split_3x3_name`: Keras names the 3x3 split "mixed9_0" in mixed9, "mixed9_1" in mixed10."""
    b = lambda *args, **kw: _branch(name, torch_name, *args, **kw)  # noqa: E731
    return BlockSpec(
        name,
        torch_name,
        "Inception E (8x8 at 299)",
        (
            b("branch1x1", ("branch1x1", 320, 1)),
            b(
                "branch3x3",
                ("branch3x3_1", 384, 1),
                split=(("branch3x3_2a", 384, (1, 3)), ("branch3x3_2b", 384, (3, 1))),
                split_name=split_3x3_name,
            ),
            b(
                "branch3x3dbl",
                ("branch3x3dbl_1", 448, 1),
                ("branch3x3dbl_2", 384, 3),
                split=(("branch3x3dbl_3a", 384, (1, 3)), ("branch3x3dbl_3b", 384, (3, 1))),
                split_name=f"{name}_branch3x3dbl",
            ),
            b("branch_pool", ("branch_pool", 192, 1), pool="avg"),
        ),
    )


STEM: tuple[ConvSpec | str, ...] = (
    ConvSpec("stem_1a_3x3", "Conv2d_1a_3x3", 32, (3, 3), 2, "valid"),
    ConvSpec("stem_2a_3x3", "Conv2d_2a_3x3", 32, (3, 3), 1, "valid"),
    ConvSpec("stem_2b_3x3", "Conv2d_2b_3x3", 64, (3, 3), 1, "same"),
    "stem_pool1",  # 3x3 stride-2 valid max pool
    ConvSpec("stem_3b_1x1", "Conv2d_3b_1x1", 80, (1, 1), 1, "valid"),
    ConvSpec("stem_4a_3x3", "Conv2d_4a_3x3", 192, (3, 3), 1, "valid"),
    "stem_pool2",
)
"""The stem, in order: conv units and the two 3x3 stride-2 max pools (by name)."""

BLOCKS: tuple[BlockSpec, ...] = (
    _block_a("mixed0", "Mixed_5b", 32),
    _block_a("mixed1", "Mixed_5c", 64),
    _block_a("mixed2", "Mixed_5d", 64),
    _block_b("mixed3", "Mixed_6a"),
    _block_c("mixed4", "Mixed_6b", 128),
    _block_c("mixed5", "Mixed_6c", 160),
    _block_c("mixed6", "Mixed_6d", 160),
    _block_c("mixed7", "Mixed_6e", 192),
    _block_d("mixed8", "Mixed_7a"),
    _block_e("mixed9", "Mixed_7b", "mixed9_0"),
    _block_e("mixed10", "Mixed_7c", "mixed9_1"),
)

AUX_CONVS = (
    ConvSpec("aux_conv0", "AuxLogits.conv0", 128, (1, 1), 1, "valid"),
    ConvSpec("aux_conv1", "AuxLogits.conv1", 768, (5, 5), 1, "valid"),
)
AUX_BLOCK = "mixed7"  # the auxiliary classifier reads mixed7 (torchvision's Mixed_6e)


# --------------------------------------------------------------------------------------------
# the arithmetic


def _window(size: int | None, kernel: int, strides: int, padding: str) -> int | None:
    """Output length of a sliding window; None for an unknown size, <= 0 when it collapses."""
    if size is None:
        return None
    if padding == "same":
        return -(-size // strides)
    return (size - kernel) // strides + 1 if size >= kernel else 0


@dataclass
class Stage:
    """One row of the report: a named stage's output at this input shape."""

    name: str  # the stage's name (for conv units, the prefix of its _conv/_bn/_relu layers)
    what: str  # what the stage does, in words
    height: int | None
    width: int | None
    channels: int
    params: int = 0
    trainable_params: int = 0
    macs: int | None = 0  # multiply-accumulates per image; None when H or W is unknown
    flat: bool = False  # a vector per image (pooled features, classifier), not a feature map
    conv: bool = False  # a conv unit: its output is the layer f"{name}_relu"

    @property
    def layer(self) -> str:
        """The built model's layer whose output is this stage's output."""
        return f"{self.name}_relu" if self.conv else self.name

    @property
    def shape(self) -> tuple:
        """(H, W, C), or (C,) for a flat stage."""
        return (self.channels,) if self.flat else (self.height, self.width, self.channels)


@dataclass
class Collapse:
    """Where and why a shape fails."""

    stage: str  # the stage (e.g. "mixed8")
    layer: str  # the layer inside it (e.g. "mixed8_branch3x3_2")
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


@dataclass
class ShapeReport:
    """What InceptionV3 does with one input shape, stage by stage. `str()` gives a table."""

    input_shape: tuple  # as given, in `data_format`
    data_format: str
    height: int | None
    width: int | None
    channels: int
    include_top: bool
    pooling: str | None
    aux_logits: bool
    classes: int
    stages: list[Stage] = field(default_factory=list)
    collapse: list[Collapse] = field(default_factory=list)  # one per collapsing axis, first first
    problems: list[str] = field(default_factory=list)  # invalid arguments other than a collapse
    hint: str | None = None

    @property
    def valid(self) -> bool:
        return not self.collapse and not self.problems

    @property
    def min_size(self) -> int:
        return MIN_SIZE_AUX if self.aux_logits else MIN_SIZE

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
        outs = []
        head = [s for s in self.stages if s.name in ("predictions", "aux_predictions")]
        if head:
            outs = [s.shape for s in head]
        elif self.stages:
            outs = [self.stages[-1].shape]
        if self.data_format == "channels_first":
            outs = [(s[2], s[0], s[1]) if len(s) == 3 else s for s in outs]
        return outs

    def nearest_valid(self) -> tuple[int | None, int | None]:
        """The closest (H, W) that works with this configuration: each side raised to the minimum."""
        fix = lambda n: n if n is None else max(n, self.min_size)  # noqa: E731
        return fix(self.height), fix(self.width)

    def aligned_sizes(self, size: int) -> tuple[int, int]:
        """The two sizes around `size` at which no valid window drops border pixels (75 + 32k)."""
        lo = max(MIN_SIZE, MIN_SIZE + (size - MIN_SIZE) // 32 * 32)
        while lo < self.min_size:
            lo += 32
        return lo, lo + 32

    def reason(self) -> str:
        """Why the shape fails, and what to do: the text of `InvalidInputShape`."""
        if self.valid:
            return "valid"
        lines = []
        shown = _fmt_shape(self.input_shape)
        if self.problems:
            lines += self.problems
        if self.collapse:
            c = self.collapse[0]
            lines.append(f"Input shape {shown} ({self.data_format}) does not fit InceptionV3: {c}.")
            if len(self.collapse) > 1:
                lines.append(f"(The {self.collapse[1].axis} collapses too, at {self.collapse[1].stage}.)")
            extra = (
                " with aux_logits=True (the auxiliary classifier's 5x5 conv needs mixed7 to be at least 17 x 17)"
                if self.aux_logits and c.stage.startswith("aux")
                else ""
            )
            lines.append(
                f"Every H and W must be at least {self.min_size}{extra}; the image size itself is "
                "otherwise free, because all layers before the global pooling slide over their input."
            )
            h, w = self.nearest_valid()
            lines.append(f"Nearest valid shape: {_fmt_shape(self._in_format(h, w))}.")
        if self.hint:
            lines.append(self.hint)
        return "\n".join(lines)

    def _in_format(self, h, w) -> tuple:
        if self.data_format == "channels_first":
            return (self.channels, h, w)
        return (h, w, self.channels)

    def raise_if_invalid(self) -> ShapeReport:
        if not self.valid:
            raise InvalidInputShape(self.reason(), self)
        return self

    def __str__(self) -> str:
        head = (
            f"InceptionV3 at input {_fmt_shape(self.input_shape)} ({self.data_format}), "
            f"include_top={self.include_top}, pooling={self.pooling}, aux_logits={self.aux_logits}"
        )
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
        lines = [head, "", *table, "", total]
        if self.valid:
            outs = ", ".join(_fmt_shape(s) for s in self.output_shapes)
            lines.append(f"valid: output {outs}")
            for n in (self.height, self.width):
                if n is not None and (n - MIN_SIZE) % 32:
                    lo, hi = self.aligned_sizes(n)
                    lines.append(
                        f"note: at {n} the stride-2 valid windows leave the last rows or columns "
                        f"unread; at {lo} and {hi} (75 + 32k) every input pixel is used"
                    )
                    break
        else:
            lines.append("INVALID: " + self.reason())
        return "\n".join(lines)


def _fmt_shape(shape: Iterable) -> str:
    return "(" + ", ".join("None" if d is None else str(d) for d in shape) + ")"


def parse_dims(text: str, *, unknown: bool = False) -> tuple[int | None, ...]:
    """The one reader of sizes and shapes typed as text: "150,200", "150x200", "150, 200, 3".

    With `unknown`, "none" or "?" is an unknown dimension (None). Raises ValueError for anything
    else that is not an integer; the callers check how many values and which ranges they take
    (`--input-shape` in the CLI, `--size` in `engine.parse_size`) and say so in their words.
    """
    parts = [p.strip() for p in str(text).replace("x", ",").split(",") if p.strip()]
    return tuple(None if unknown and p.lower() in ("none", "?") else int(p) for p in parts)


def parse_input_shape(input_shape: Sequence, data_format: str) -> tuple[int | None, int | None, int]:
    """Split an input shape in `data_format` into (H, W, C); raises ValueError for malformed ones."""
    if data_format not in DATA_FORMATS:
        raise ValueError(f"data_format must be one of {DATA_FORMATS}, got {data_format!r}")
    shape = tuple(input_shape)
    if len(shape) == 4:
        raise ValueError(
            f"input_shape {_fmt_shape(shape)} has 4 entries; give it without the batch axis, "
            f"e.g. {_fmt_shape(shape[1:])}"
        )
    if len(shape) != 3:
        raise ValueError(
            f"input_shape must have 3 entries (height, width, channels for channels_last; "
            f"channels, height, width for channels_first), got {_fmt_shape(shape)}"
        )
    for d in shape:
        if d is not None and (isinstance(d, bool) or not isinstance(d, int) or d < 1):
            raise ValueError(f"input_shape entries must be positive integers or None, got {_fmt_shape(shape)}")
    h, w, c = (shape[1], shape[2], shape[0]) if data_format == "channels_first" else shape
    if c is None:
        raise ValueError(
            f"input_shape {_fmt_shape(shape)}: the channel count must be known (it sizes the "
            "first convolution's kernel); only height and width may be None"
        )
    return h, w, c


def _layout_hint(shape: tuple, data_format: str, min_size: int) -> str | None:
    """A shape that would be valid in the other data format gets a 'did you mean' hint."""
    a, b, c = shape
    small = lambda n: n is not None and n <= 4  # noqa: E731
    big = lambda n: n is None or n >= min_size  # noqa: E731
    if data_format == "channels_last" and small(a) and big(b) and big(c):
        return (
            f"Hint: {_fmt_shape(shape)} looks like channels_first ({a} channels of {b} x {c}); "
            f"pass data_format='channels_first', or input_shape={_fmt_shape((b, c, a))}."
        )
    if data_format == "channels_first" and big(a) and big(b) and small(c):
        return (
            f"Hint: {_fmt_shape(shape)} looks like channels_last ({c} channels of {a} x {b}); "
            f"pass data_format='channels_last', or input_shape={_fmt_shape((c, a, b))}."
        )
    return None


def _conv_params(cin: int, spec: ConvSpec, bn_scale: bool) -> tuple[int, int]:
    """(all, trainable) weights of a conv unit: kernel without bias + BatchNorm."""
    kernel = spec.kernel[0] * spec.kernel[1] * cin * spec.filters
    bn_trainable = spec.filters * (2 if bn_scale else 1)  # beta (+ gamma)
    return kernel + bn_trainable + 2 * spec.filters, kernel + bn_trainable


class _Walker:
    """Follows H and W through the network, recording stages, params, MACs and collapses."""

    def __init__(self, report: ShapeReport, bn_scale: bool):
        self.r = report
        self.bn_scale = bn_scale

    def window(self, stage, layer, h, w, kh, kw, strides, padding, what):
        oh = _window(h, kh, strides, padding)
        ow = _window(w, kw, strides, padding)
        for axis, n, k, o in (("height", h, kh, oh), ("width", w, kw, ow)):
            if o is not None and o <= 0 and not any(c.axis == axis for c in self.r.collapse):
                self.r.collapse.append(Collapse(stage, layer, what, axis, n, k, o))
        return (None if oh is None else max(oh, 0)), (None if ow is None else max(ow, 0))

    def conv(self, stage, spec: ConvSpec, h, w, cin):
        kh, kw = spec.kernel
        what = f"{kh}x{kw} conv" + (f", stride {spec.strides}" if spec.strides > 1 else "")
        what += f", {spec.padding} padding"
        oh, ow = self.window(stage, spec.name, h, w, kh, kw, spec.strides, spec.padding, what)
        params, trainable = _conv_params(cin, spec, self.bn_scale)
        macs = None if oh is None or ow is None else oh * ow * kh * kw * cin * spec.filters
        return oh, ow, params, trainable, macs

    def pool(self, stage, layer, h, w, kind, k, s, padding="valid"):
        what = f"{k}x{k} {kind}" + (f", stride {s}" if s > 1 else "") + f", {padding} padding"
        return self.window(stage, layer, h, w, k, k, s, padding, what)


def _add(a, b):
    return None if a is None or b is None else a + b


def explain(
    input_shape: Sequence | None = None,
    *,
    include_top: bool = False,
    pooling: str | None = None,
    aux_logits: bool = False,
    classes: int = 1000,
    data_format: str = "channels_last",
    bn_scale: bool = False,
    dropout_rate: float = 0.0,
) -> ShapeReport:
    """Explain what InceptionV3 does with `input_shape`, stage by stage.

    Returns a `ShapeReport`: every stage (stem convs and pools, mixed0 ... mixed10, the aux head,
    the head) with its output H x W x C, parameters and multiply-accumulates; whether the shape
    is valid and, if not, which stage collapses, from what size to what, and the nearest valid
    shape. `str(report)` is a readable table; `report.raise_if_invalid()` raises
    `InvalidInputShape` with the explanation.

    Arguments mirror `anyshape.InceptionV3`: `input_shape` excludes the batch axis and is in
    `data_format` order; None means (None, None, 3). `bn_scale=True` counts a BatchNorm gamma
    (torchvision/timm layout).
    """
    if input_shape is None:
        input_shape = (3, None, None) if data_format == "channels_first" else (None, None, 3)
    input_shape = tuple(input_shape)
    h, w, c = parse_input_shape(input_shape, data_format)
    if pooling not in POOLINGS:
        raise ValueError(f"pooling must be one of {POOLINGS}, got {pooling!r}")
    r = ShapeReport(input_shape, data_format, h, w, c, include_top, pooling, aux_logits, classes)
    _check_arguments(r, dropout_rate)
    walk = _Walker(r, bn_scale)
    h, w, c = _walk_stem(walk, STEM, h, w, c)
    h, w, c, aux_in = _walk_blocks(walk, BLOCKS, h, w, c)
    if aux_logits and include_top:
        _walk_aux(walk, aux_in, classes)
    _walk_head(r, c, pooling, include_top, classes, dropout_rate)
    if not r.valid:
        r.hint = _layout_hint(input_shape, data_format, r.min_size)
    return r


def min_input_size(layers: Iterable[str]) -> int:
    """The smallest height and width at which none of `layers` (a built model's layer names)
    collapses: 75 for the whole network, 299 with the aux head, less for a model that ends at an
    earlier block (a feature model of mixed5), 1 for a model without InceptionV3's stages.

    A stage is in the model when its name or its output layer's is; a collapsed stage and every
    stage after it have a 0-pixel side in `explain`'s report, which is why the search can bisect.
    """
    names = set(layers)
    aux = any(n.startswith("aux_") for n in names)

    def fits(n: int) -> bool:
        report = explain((n, n, 3), include_top=aux, aux_logits=aux)
        return not any(
            (s.name in names or s.layer in names) and not s.flat and 0 in (s.height, s.width) for s in report.stages
        )

    lo, hi = 1, MIN_SIZE_AUX  # fits(hi) always: the whole network with its aux head takes 299
    while lo < hi:
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if fits(mid) else (mid + 1, hi)
    return lo


def _check_arguments(r: ShapeReport, dropout_rate: float) -> None:
    """Invalid arguments other than the shape go to `r.problems`."""
    classes = r.classes
    if r.include_top and (isinstance(classes, bool) or not isinstance(classes, int) or classes < 1):
        r.problems.append(f"classes must be a positive integer with include_top=True, got {classes!r}")
    if r.aux_logits and not r.include_top:
        r.problems.append(
            "aux_logits=True needs include_top=True: the auxiliary classifier is a second "
            "classification output and only exists beside the main classifier"
        )
    if not 0.0 <= dropout_rate < 1.0:
        r.problems.append(f"dropout_rate must be in [0, 1), got {dropout_rate!r}")


def _conv_what(spec: ConvSpec) -> str:
    kh, kw = spec.kernel
    what = f"{kh}x{kw} conv {spec.filters}" + (f", stride {spec.strides}" if spec.strides > 1 else "")
    return what + f", {spec.padding}"


def _walk_stem(walk: _Walker, stem: Sequence[ConvSpec | str], h, w, cin):
    """The stem's conv units and max pools, one stage each; returns the output (H, W, C)."""
    for item in stem:
        if isinstance(item, str):
            h, w = walk.pool(item, item, h, w, "max pool", 3, 2)
            walk.r.stages.append(Stage(item, "3x3 max pool, stride 2, valid", h, w, cin))
            continue
        h, w, p, t, m = walk.conv(item.name, item, h, w, cin)
        cin = item.filters
        walk.r.stages.append(Stage(item.name, _conv_what(item), h, w, cin, p, t, m, conv=True))
    return h, w, cin


def _walk_branch(walk: _Walker, block: BlockSpec, branch: BranchSpec, h, w, cin):
    """One branch: its pool, chain and split; returns (H, W, params, trainable, MACs)."""
    params = trainable = 0
    macs = 0
    layer = f"{block.name}_{branch.name}"
    if branch.pool == "max":
        h, w = walk.pool(block.name, f"{layer}_max", h, w, "max pool", 3, 2)
    chain_hw = (h, w)
    for spec in branch.convs:
        h, w, p, t, m = walk.conv(block.name, spec, h, w, cin)
        cin, params, trainable, macs = spec.filters, params + p, trainable + t, _add(macs, m)
    for spec in branch.split:
        oh, ow, p, t, m = walk.conv(block.name, spec, h, w, cin)
        params, trainable, macs = params + p, trainable + t, _add(macs, m)
    if branch.split:
        h, w = oh, ow
    if branch.pool == "avg":  # in front of the convs; a 'same' stride-1 window keeps the size
        walk.pool(block.name, f"{layer}_avg", *chain_hw, "average pool", 3, 1, "same")
    return h, w, params, trainable, macs


def _walk_blocks(walk: _Walker, blocks: Sequence[BlockSpec], h, w, cin):
    """The Inception blocks, one stage each; returns (H, W, C, the aux block's (H, W, C))."""
    aux_in = None
    for block in blocks:
        params = trainable = 0
        macs = 0
        out_hw = []
        for branch in block.branches:
            bh, bw, p, t, m = _walk_branch(walk, block, branch, h, w, cin)
            out_hw.append((bh, bw))
            params, trainable, macs = params + p, trainable + t, _add(macs, m)
        h, w = out_hw[0]  # every branch ends at the same size (Concatenate needs it)
        cin = block.channels(cin)
        walk.r.stages.append(Stage(block.name, block.what, h, w, cin, params, trainable, macs))
        if block.name == AUX_BLOCK:
            aux_in = (h, w, cin)
    return h, w, cin, aux_in


def _walk_aux(walk: _Walker, aux_in: tuple, classes: int) -> None:
    """The auxiliary classifier on mixed7: 5x5/3 average pool, two conv units, dense."""
    r = walk.r
    ah, aw, ac = aux_in
    ah, aw = walk.pool("aux_pool", "aux_pool", ah, aw, "average pool", 5, 3)
    r.stages.append(Stage("aux_pool", "5x5 average pool, stride 3, valid", ah, aw, ac))
    for spec in AUX_CONVS:
        ah, aw, p, t, m = walk.conv("aux", spec, ah, aw, ac)
        ac = spec.filters
        kh, kw = spec.kernel
        r.stages.append(Stage(spec.name, f"{kh}x{kw} conv {ac}, valid", ah, aw, ac, p, t, m, conv=True))
    r.stages.append(Stage("aux_avg_pool", "global average pool", None, None, ac, flat=True))
    dense = ac * classes + classes
    r.stages.append(
        Stage("aux_predictions", f"dense {classes}", None, None, classes, dense, dense, ac * classes, flat=True)
    )


_GLOBAL_POOLS = {  # pooling -> (stage name, what it does)
    "avg": ("avg_pool", "global average pool"),
    "max": ("max_pool", "global max pool"),
    "avgmax": ("avgmax_pool", "global (average + max) / 2"),
    "catavgmax": ("catavgmax_pool", "global [average, max] concatenated"),
}


def _walk_head(r: ShapeReport, cin: int, pooling, include_top: bool, classes: int, dropout_rate: float) -> None:
    """Global pooling (avg by default with the top), dropout and the classifier."""
    pool = pooling if pooling is not None or not include_top else "avg"
    if pool is not None:
        name, what = _GLOBAL_POOLS[pool]
        cin = cin * 2 if pool == "catavgmax" else cin
        r.stages.append(Stage(name, what, None, None, cin, flat=True))
    if include_top:
        if dropout_rate:
            r.stages.append(Stage("dropout", f"dropout {dropout_rate:g}", None, None, cin, flat=True))
        dense = cin * classes + classes
        r.stages.append(
            Stage("predictions", f"dense {classes}", None, None, classes, dense, dense, cin * classes, flat=True)
        )
