"""Input shapes as users give them: text ("150,200", "none,none,3") and tuples in a data format.

`parse_dims` is the one reader of sizes typed as text (`--input-shape`, `--size`);
`parse_input_shape` splits a shape into (H, W, C) and says what is malformed; the warning and
hints for a shape whose channel axis looks swapped. `anyshape.shapes` re-exports these names.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from anyshape.archs.base import DATA_FORMATS
from anyshape.errors import Message, Spelled


class TransposedShapeWarning(UserWarning):
    """An input shape whose channel axis looks swapped with a spatial one for its data format
    ((64, 64, 3) with channels_first reads as 64 channels of 64 x 3 images)."""


def transposed_shape_warning(input_shape: Sequence, data_format: str) -> Message | None:
    """The warning for a shape that looks transposed for `data_format`, else None: the channel
    axis holds more than 4 while the spatial axis at the other end holds 1, 3 or 4 (a channel
    count). keras.applications warns about channel counts other than 1 and 3 the same way
    (`obtain_input_shape` in keras/src/applications/imagenet_utils.py: "This model usually expects
    1 or 3 input channels"); here the hint also names the shape the user probably meant."""
    shape = tuple(input_shape)
    if len(shape) != 3:
        return None
    plausible = (1, 3, 4)
    if data_format == "channels_first":
        c, h, w = shape
        if not (c is not None and c > 4 and w in plausible):
            return None
        meant, other = (w, c, h), "channels_last"
    else:
        h, w, c = shape
        if not (c is not None and c > 4 and h in plausible):
            return None
        meant, other = (w, c, h), "channels_first"
    inside = f"{c} x {h}" if data_format == "channels_first" else f"{w} x {c}"
    return Message(
        "{input_shape=@given} with {data_format=@given_format} builds a model of {c} channels on {h} x {w} "
        "images; for {inside} images of {meant_c} channels pass {input_shape=@meant}, or {data_format=@other}",
        given=_spelled_shape(shape),
        given_format=data_format,
        c=c,
        h=h,
        w=w,
        inside=inside,
        meant_c=w if data_format == "channels_first" else h,
        meant=_spelled_shape(meant),
        other=other,
    )


def _spelled_shape(shape) -> Spelled:
    """A shape as the CLI's --input-shape takes it (64,64,3) and as Python's input_shape (64, 64, 3)."""
    return Spelled(",".join("none" if d is None else str(d) for d in shape), format_shape(tuple(shape)))


def format_shape(shape: Iterable) -> str:
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
            f"input_shape {format_shape(shape)} has 4 entries; give it without the batch axis, "
            f"e.g. {format_shape(shape[1:])}"
        )
    if len(shape) != 3:
        raise ValueError(
            f"input_shape must have 3 entries (height, width, channels for channels_last; "
            f"channels, height, width for channels_first), got {format_shape(shape)}"
        )
    for d in shape:
        if d is not None and (isinstance(d, bool) or not isinstance(d, int) or d < 1):
            raise ValueError(f"input_shape entries must be positive integers or None, got {format_shape(shape)}")
    h, w, c = (shape[1], shape[2], shape[0]) if data_format == "channels_first" else shape
    if c is None:
        raise ValueError(
            f"input_shape {format_shape(shape)}: the channel count must be known (it sizes the "
            "first convolution's kernel); only height and width may be None"
        )
    return h, w, c


def layout_hint(shape: tuple, data_format: str, min_size: int) -> str | None:
    """A shape that would be valid in the other data format gets a 'did you mean' hint."""
    a, b, c = shape
    small = lambda n: n is not None and n <= 4  # noqa: E731
    big = lambda n: n is None or n >= min_size  # noqa: E731
    if data_format == "channels_last" and small(a) and big(b) and big(c):
        return (
            f"Hint: {format_shape(shape)} looks like channels_first ({a} channels of {b} x {c}); "
            f"pass data_format='channels_first', or input_shape={format_shape((b, c, a))}."
        )
    if data_format == "channels_first" and big(a) and big(b) and small(c):
        return (
            f"Hint: {format_shape(shape)} looks like channels_last ({c} channels of {a} x {b}); "
            f"pass data_format='channels_last', or input_shape={format_shape((c, a, b))}."
        )
    return None
