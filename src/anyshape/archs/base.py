"""What every network declares: its Config, its network function, and the facts around it.

Pure Python: no Keras, no numpy, no weights. A network module (`anyshape/archs/<family>.py`)
defines a frozen `Config` dataclass (every build argument, saved with a model so that it rebuilds
as what it is), one `network(net, config, x)` function written in the vocabulary of
`anyshape.archs.ops.Ops`, and one `Arch` record per registered name (`resnet50`, `resnet101`, ...)
that binds them with the variant's defaults, the default size, the first convolution (the layer
channel adaptation changes), the classifier, the named feature and freeze points. Everything about
shapes (the minimum size, the stride and width of each feature point) is computed from the network
function by the shape tracer; nothing here is typed in twice.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

from anyshape.errors import Message

__all__ = [
    "ArchConfig",
    "Arch",
    "ConfigValueError",
    "check_config_values",
    "POOLINGS",
    "KERAS_ARGS",
    "DATA_FORMATS",
    "classifier_head",
    "ignored_classes_problem",
    "global_pool",
]

POOLINGS = (None, "avg", "max", "avgmax", "catavgmax")

KERAS_ARGS: tuple[tuple[str, Any], ...] = (
    ("include_top", True),
    ("weights", "imagenet"),
    ("input_tensor", None),
    ("input_shape", None),
    ("pooling", None),
    ("classes", 1000),
    ("classifier_activation", "softmax"),
)
"""keras.applications' parameters, in order, shared by most constructors (then `name`)."""
DATA_FORMATS = ("channels_last", "channels_first")


def ignored_classes_problem(config) -> Message | None:
    """`classes` given without the top, where it would be ignored (keras.applications ignores it
    without a word; a user who gives it expects a classifier of that size), else None. Checked by
    `create_model` and `explain` on what the user asked, not by `ArchConfig.problems`, which
    describes a Config as such."""
    classes = config.classes
    if config.include_top or classes is None or classes == ArchConfig.classes:
        return None
    return Message(
        "{classes=*} sizes the classifier, which is built only with {include_top=True}: add "
        "{include_top=True}, or drop {classes}",
        classes=classes,
    )


def pooling_problem(pooling) -> str:
    return f"pooling must be one of {POOLINGS}, got {pooling!r}"


class ConfigValueError(ValueError, TypeError):
    """A build argument of the wrong type or out of range (a bool given "yes", alpha=nan).

    A ValueError (what the CLI reports as a usage error) and a TypeError (what Python raises for an
    argument of the wrong type); `parameter` is the Config field's name."""

    def __init__(self, parameter: str, message: str):
        super().__init__(message)
        self.parameter = parameter


def _plain(value):
    """numpy scalars as the Python number they hold (a Config is saved as JSON)."""
    if type(value).__module__ == "numpy" and hasattr(value, "item") and getattr(value, "ndim", 1) == 0:
        return value.item()
    return value


_WANTED = {"bool": "True or False", "int": "a whole number", "float": "a finite number"}
_WANTED_MANY = {"bool": "True or False values", "int": "whole numbers", "float": "finite numbers"}


def _scalar_fits(kind: str, value) -> bool:
    if kind == "bool":
        return isinstance(value, bool)
    if isinstance(value, bool):
        return False
    if kind == "int":
        return isinstance(value, numbers.Integral)
    return isinstance(value, numbers.Real) and math.isfinite(value)  # float: nan and inf refused


def field_kind(annotation) -> tuple[str, bool, bool]:
    """(scalar kind, whether None is allowed, whether a tuple of them) of a Config field's
    annotation (a string under `from __future__ import annotations`): "bool", "int", "float", "str",
    or "" for a type these checks leave to the Config's `problems()`."""
    text = annotation if isinstance(annotation, str) else getattr(annotation, "__name__", str(annotation))
    parts = [p.strip() for p in text.split("|")]
    optional = "None" in parts
    parts = [p for p in parts if p != "None"]
    if len(parts) != 1:
        return "", optional, False
    kind = parts[0]
    if kind.startswith("tuple[") and kind.endswith(", ...]"):
        inner = kind[len("tuple[") : -len(", ...]")]
        return (inner if inner in ("bool", "int", "float", "str") else ""), optional, True
    return (kind if kind in ("bool", "int", "float", "str") else ""), optional, False


def check_config_values(config_class: type, values: Mapping, owner: str | None = None) -> dict:
    """`values` checked against the types of `config_class`'s fields: a bool field takes only True
    or False (not "yes", not 1), a float field a finite number, an int field a whole number (numpy
    scalars become Python's), a str field a string, a tuple field a tuple or list of those (made a
    tuple). Returns the values as the Config keeps them; raises ConfigValueError naming the field.
    Ranges and choices (alpha > 0, head in ("auto", "flatten", "conv")) are each Config's `problems()`."""
    owner = owner or config_class.__name__
    types = {f.name: f.type for f in fields(config_class)}
    out = dict(values)
    for name, value in values.items():
        if name not in types or name == "input_shape":
            continue
        kind, optional, many = field_kind(types[name])
        if kind in ("", "str") or (value is None and optional):
            continue
        if many:
            items = [_plain(v) for v in value] if isinstance(value, (tuple, list)) else None
            if items is None or not all(_scalar_fits(kind, v) for v in items):
                raise ConfigValueError(name, f"{owner}: {name} must be a tuple of {_WANTED_MANY[kind]}, got {value!r}")
            out[name] = tuple(int(v) if kind == "int" else v for v in items)
        else:
            plain = _plain(value)
            if not _scalar_fits(kind, plain):
                raise ConfigValueError(name, f"{owner}: {name} must be {_WANTED[kind]}, got {value!r}")
            out[name] = int(plain) if kind == "int" else plain
    return out


def input_shape_value(input_shape):
    """`input_shape` as a tuple with numpy integers made Python's; a ValueError (not "'int' object
    is not iterable") for a value that is no sequence."""
    if input_shape is None:
        return None
    if isinstance(input_shape, (str, bytes)) or not hasattr(input_shape, "__iter__"):
        raise ValueError(
            f"input_shape must be a tuple such as (224, 224, 3) (height, width, channels; None for a free "
            f"height or width), got {input_shape!r}"
        )
    return tuple(_plain(d) for d in input_shape)


def _tuples(value):
    """JSON lists back to tuples (configs are frozen and hashable)."""
    if isinstance(value, list):
        return tuple(_tuples(v) for v in value)
    return value


@dataclass(frozen=True)
class ArchConfig:
    """The build arguments every network has; a network's Config adds its own.

    `input_shape` is in `data_format` order without the batch axis; None until the factory resolves
    it (the arch's default size with the top, else free size).
    """

    input_shape: tuple | None = None
    include_top: bool = True
    pooling: str | None = None
    classes: int = 1000
    classifier_activation: str | None = "softmax"
    data_format: str = "channels_last"
    dropout_rate: float = 0.0
    name: str | None = None

    def to_dict(self) -> dict:
        """A JSON-ready dict; `from_dict` reads it back."""
        return asdict(self)

    @classmethod
    def from_dict(cls, record: Mapping) -> ArchConfig:
        """The inverse of `to_dict`. Keys this version does not know are refused: a config from a
        newer anyshape would otherwise rebuild another network without a word."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(record) - known)
        if unknown:
            raise ValueError(f"{cls.__name__} has no field(s) {unknown} (known: {sorted(known)})")
        return cls(**{k: _tuples(v) for k, v in record.items()})

    def replace(self, **changes) -> ArchConfig:
        return replace(self, **changes)

    def at_any_size(self) -> ArchConfig:
        """This configuration with the input shape and the names that do not change the network's
        arithmetic cleared: what the shape engine searches sizes with (`anyshape.shapes`). A network
        whose layers depend on the input size it is built at (VGG's top) keeps the choice made."""
        return self.replace(input_shape=None, data_format="channels_last", name=None)

    def problems(self) -> list[str]:
        """Invalid arguments other than the shape, in parameter names; subclasses add theirs."""
        out = []
        if self.pooling not in POOLINGS:
            out.append(pooling_problem(self.pooling))
        classes = self.classes
        if self.include_top and (isinstance(classes, bool) or not isinstance(classes, int) or classes < 1):
            out.append(f"classes must be a positive integer with include_top=True, got {classes!r}")
        if not isinstance(self.dropout_rate, (int, float)) or not 0.0 <= self.dropout_rate < 1.0:
            out.append(f"dropout_rate must be in [0, 1), got {self.dropout_rate!r}")
        return out


@dataclass(frozen=True, eq=False)  # one record per name: compared and hashed by identity
class Arch:
    """One registered network: `create_model(name)` builds `network(ops, config_class(**defaults))`."""

    name: str  # registry name, the snake case of keras_name ("resnet50_v2")
    keras_name: str  # keras.applications' constructor ("ResNet50V2")
    family: str  # the module that defines it ("resnet_v2")
    config_class: type[ArchConfig]
    network: Callable[..., Any]
    defaults: Mapping = field(default_factory=dict)  # the variant's Config values
    default_size: int = 224  # keras.applications' default input size with the top
    keras_min_size: int | None = None  # the minimum keras.applications enforces (policy, for comparison)
    first_conv: str = ""  # the first convolution's layer name: channel adaptation changes only it
    input_layers: tuple[str, ...] = ()  # in-graph preprocessing before it (adapted with the channels)
    classifier: tuple[str, ...] = ("predictions",)  # the classifier's weighted layers, last first
    # the output layers of the network's blocks, in order: what `features --layer` reads and
    # fine-tuning's freeze="up-to-<block>" freezes up to
    blocks: tuple[str, ...] = ()
    # one block output per reduction, shallow to deep, as timm's feature_info (features_only):
    # their stride and width are computed by the shape tracer
    feature_points: tuple[str, ...] = ()
    preprocessing: str = "tf"  # keras.applications' preprocess_input mode: tf, torch, caffe or raw
    size_note: Callable[[Any], str] | None = None  # why the minimum is what it is, when it depends on the config
    # keras.applications' signature of the constructor, in order, with its defaults ("name"
    # included); `anyshape.applications` gives the constructor exactly these, then its own extras
    keras_args: tuple[tuple[str, Any], ...] = ()
    description: str = ""

    def config(self, **kwargs) -> Any:
        """The Config of this network with `kwargs` over its defaults; unknown names are refused."""
        known = {f.name for f in fields(self.config_class)}
        unknown = sorted(set(kwargs) - known)
        if unknown:
            raise TypeError(
                f"{self.keras_name} got unexpected argument(s) {', '.join(unknown)}; "
                f"it takes {', '.join(sorted(known))}"
            )
        if "input_shape" in kwargs:
            kwargs["input_shape"] = input_shape_value(kwargs["input_shape"])
        return self.config_class(**check_config_values(self.config_class, {**self.defaults, **kwargs}, self.keras_name))

    def checked_config(self, **kwargs) -> Any:
        """`config(**kwargs)`, refused with a ValueError naming the parameter when its `problems()`
        are not empty (classes=0, head="banana", alpha=-1): what `create_model` builds, before any
        layer. `anyshape.explain` takes `config` instead and reports them in its table."""
        config = self.config(**kwargs)
        problems = config.problems()
        if problems:
            raise ValueError(f"{self.keras_name}: {'; '.join(problems)}")
        return config


def global_pool(net, x, pooling: str):
    """Global pooling to one vector per image; names as keras.applications (avg_pool, max_pool) and
    timm (avgmax: the mean of both; catavgmax: both concatenated, twice as wide)."""
    if pooling == "avg":
        return net.global_pool(x, "avg", name="avg_pool")
    if pooling == "max":
        return net.global_pool(x, "max", name="max_pool")
    with net.stage(f"{pooling}_pool", "global (average + max) / 2" if pooling == "avgmax" else "global [average, max]"):
        avg = net.global_pool(x, "avg", name=f"{pooling}_pool_avg")
        mx = net.global_pool(x, "max", name=f"{pooling}_pool_max")
        if pooling == "avgmax":
            return net.average([avg, mx], name="avgmax_pool")
        return net.concat([avg, mx], name="catavgmax_pool")


def classifier_head(net, config: ArchConfig, x):
    """keras.applications' usual head: global pooling (avg unless `pooling` says otherwise), dropout
    when asked, and the dense classifier "predictions"; without the top, `pooling` or the map."""
    if config.include_top:
        x = global_pool(net, x, config.pooling or "avg")
        if config.dropout_rate:
            x = net.dropout(x, config.dropout_rate, name="dropout")
        return net.dense(x, config.classes, activation=config.classifier_activation, name="predictions")
    if config.pooling is not None:
        return global_pool(net, x, config.pooling)
    return x
