"""The argument types of the command line: text in, a value out, or argparse's error naming
what was expected (`anyshape.cli.options` re-exports them beside the flag groups)."""

from __future__ import annotations

import argparse
import ast

__all__ = [
    "fraction",
    "option_pair",
    "parse_channel_adapt",
    "parse_shape",
    "positive_float",
    "positive_int",
    "positive_int_list",
    "RepeatedOptions",
]


def _number(text: str, convert, valid, expected: str):
    """`text` as `convert` reads it, when `valid`; else argparse's error saying what was `expected`."""
    try:
        value = convert(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}") from None
    if not valid(value):
        raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}")
    return value


def positive_int(text: str) -> int:
    return _number(text, int, lambda v: v >= 1, "a whole number >= 1")


def positive_float(text: str) -> float:
    return _number(text, float, lambda v: v > 0, "a number > 0")


def fraction(text: str) -> float:
    """A share such as a dropout rate: >= 0 and < 1 (at 1 nothing would be left)."""
    return _number(text, float, lambda v: 0.0 <= v < 1.0, "a number >= 0 and < 1")


def positive_int_list(text: str) -> list[int]:
    """'1,16' -> [1, 16]."""
    try:
        values = [int(p) for p in text.split(",") if p.strip()]
    except ValueError:
        values = []
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected whole numbers >= 1 separated by commas (e.g. 1,16), got {text!r}")
    return values


def parse_shape(text: str) -> tuple:
    """'150,150,3' -> (150, 150, 3); 'none' or '?' for an unknown height or width."""
    from anyshape.shapes import parse_dims

    try:
        return parse_dims(text, unknown=True)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected H,W,C (e.g. 150,150,3), got {text!r}") from None


def parse_channel_adapt(text: str):
    """A --channel-adapt value: a rule name ('sum', 'mean', ...) or a mapping like '2,1,0' or
    '0,1,2,none' (for each input channel, the RGB channel whose kernel it takes, or none)."""
    if "," not in text:
        return text
    try:
        return tuple(None if p.strip().lower() == "none" else int(p) for p in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a rule name or channel indices like 2,1,0 or 0,1,2,none, got {text!r}"
        ) from None


def option_pair(text: str) -> tuple:
    """--option KEY=VALUE: VALUE read as a Python literal (0.5, True, (3, 4, 6, 3)), else as text;
    `typed_options` then reads it as the type of the network's Config field."""
    key, sep, value = text.partition("=")
    if not sep or not key.strip().isidentifier():
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE (e.g. alpha=0.5), got {text!r}")
    try:
        parsed = ast.literal_eval(value.strip())
    except (ValueError, SyntaxError):
        parsed = value.strip()
    return key.strip(), parsed


class RepeatedOptions(argparse.Action):
    """Collects repeated --option flags in a list (whatever the default was replaced by)."""

    def __call__(self, parser, namespace, values, option_string=None):
        current = getattr(namespace, self.dest, None)
        setattr(namespace, self.dest, [*(current if isinstance(current, list) else []), values])
