"""Errors in the words of the interface called.

The library names the parameters of its own functions (`force=True`, `size=`); the command line
names its flags (`--force`, `--size`). A message is written once, as a template whose fields mark
where a parameter is named, and rendered for whoever reads it: `str()` gives the Python words,
`Message.render(flag_of)` the CLI's (the CLI's one table of parameter -> flag is
`anyshape.cli.options.FLAGS`). No text is rewritten after the fact.

Template fields (the syntax of `str.format`):
- `{name}`, `{name!r}`, `{name:spec}` where `name` is a keyword given: that value, as format() does;
- `{param}`: the parameter named alone (Python: `param`; CLI: `--param`);
- `{param=}`: the parameter as something to set (Python: `param=`; CLI: `--param`);
- `{param=text}`: the parameter with a value (Python: `param=text`; CLI: `--param` for True,
  `--param none` for None, else `--param text` without quotes); `{param=*}` takes the value from
  the keyword `param`, `{param=@key}` from the keyword `key` (Python: its repr; CLI: its text);
- `{python:text}` and `{cli:text}`: text only one of them reads.
"""

from __future__ import annotations

import string
from collections.abc import Callable

_PARSER = string.Formatter()
_QUOTES = "'\""


def _default_flag(parameter: str) -> str:
    return "--" + parameter.replace("_", "-")


class Message(str):
    """A message template rendered in Python words (the str value itself); `render(flag_of)`
    gives it in the words of another interface, `flag_of(parameter) -> flag` naming its flags."""

    template: str
    values: dict
    parameters: tuple[str, ...]

    def __new__(cls, template: str, /, **values) -> Message:
        parameters = tuple(_parameters(template, values))
        self = super().__new__(cls, _render(template, values, None))
        self.template, self.values, self.parameters = template, values, parameters
        return self

    def render(self, flag_of: Callable[[str], str] | None = _default_flag) -> str:
        """The message with parameters spelled by `flag_of` (None: the Python words)."""
        return _render(self.template, self.values, flag_of)

    def __reduce__(self):  # pickled (to a Ray worker and back) as its template, not its text
        return _message, (self.template, self.values)


def _message(template: str, values: dict) -> Message:
    return Message(template, **values)


def _fields(template: str):
    for literal, field, spec, conversion in _PARSER.parse(template):
        yield literal, field, spec or "", conversion


def _parameters(template: str, values: dict):
    for _, field, _, _ in _fields(template):
        if field is None or field in values or field in ("python", "cli"):
            continue
        name = field.partition("=")[0]
        if not name.isidentifier():
            raise ValueError(f"message template field {{{field}}} names no parameter: {template!r}")
        yield name


def _render(template: str, values: dict, flag_of: Callable[[str], str] | None) -> str:
    out = []
    for literal, field, spec, conversion in _fields(template):
        out.append(literal)
        if field is None:
            continue
        if field in ("python", "cli"):
            if (field == "cli") == (flag_of is not None):
                out.append(spec)
        elif field in values:
            value = values[field]
            if isinstance(value, Message) and flag_of is not None:  # a message inside a message
                value = value.render(flag_of)
            value = repr(value) if conversion == "r" else str(value) if conversion == "s" else value
            out.append(format(value, spec))
        else:
            out.append(_parameter(field, values, flag_of))
    return "".join(out)


def _parameter(field: str, values: dict, flag_of: Callable[[str], str] | None) -> str:
    name, eq, text = field.partition("=")
    key = name if text == "*" else text[1:] if text.startswith("@") else None
    if flag_of is None:
        return field if key is None else f"{name}={values[key]!r}"
    flag = flag_of(name)
    if key is not None:
        text = str(values[key])
    text = text.strip(_QUOTES)
    if not eq or text in ("", "True"):
        return flag
    return f"{flag} {'none' if text == 'None' else text}"


def message_of(error: BaseException) -> Message | str:
    """An exception's message: its `Message` (renderable in other words) when it was raised with
    one, else its text."""
    first = error.args[0] if len(error.args) == 1 else None
    return first if isinstance(first, Message) else str(error)


def in_words(message, flag_of: Callable[[str], str]) -> str:
    """A message (a `Message`, an exception, or plain text) with its parameters spelled by `flag_of`."""
    if isinstance(message, BaseException):
        message = message_of(message)
    return message.render(flag_of) if isinstance(message, Message) else str(message)


class ApiError(Exception):
    """An error in a parameter the caller gave. `parameter` is its name (the first one the
    message names, unless given); the message is a `Message` template (see the module)."""

    parameter: str | None

    def __init__(self, template: str | Message, /, *, parameter: str | None = None, **values):
        message = template if isinstance(template, Message) else Message(template, **values)
        super().__init__(message)
        self.parameter = parameter or (message.parameters[0] if message.parameters else None)


class ParameterError(ApiError, ValueError):
    """A parameter's value cannot be used (a ValueError, what the CLI reports as a usage error)."""


class OutputExistsError(ApiError, FileExistsError):
    """An output exists and would be overwritten (a FileExistsError)."""


class Spelled:
    """A value written one way on the command line and another in Python, for `{param=@key}`:
    `Spelled("H,W,4", "(H, W, 4)")` reads `--input-shape H,W,4` and `input_shape=(H, W, 4)`."""

    def __init__(self, cli: str, python: str):
        self.cli, self.python = cli, python

    def __str__(self) -> str:
        return self.cli

    def __repr__(self) -> str:
        return self.python

    @classmethod
    def python_only(cls, value) -> Spelled:
        """`value` shown in Python (`epochs=0 must be ...`), the flag alone in the CLI (`--epochs must be ...`)."""
        return cls("", repr(value))
