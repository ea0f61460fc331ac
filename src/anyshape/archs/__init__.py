"""The registry of networks: one module per family, one `Arch` record per registered name.

    from anyshape import archs
    archs.list_models()                 # ['convnext_base', ..., 'inception_v3', ...]
    arch = archs.get_arch("resnet50")   # also "ResNet50", keras.applications' name
    arch.config(include_top=False)      # its Config

Pure Python (no Keras): `anyshape.explain` and the CLI's `explain` read this without loading a
backend. Adding a network is one module here that defines its Config, its network function and its
`ARCHS` records, and one line in `_FAMILIES`; the per-network harness (tests/test_archs.py) then
tests it like every other network.

A network defined outside anyshape (a user's own, or the tests' tiny network, tests/tiny_net.py,
as timm's tests register their `test_*` models) joins the registry at run time:

    archs.register_arch(MY_ARCH)        # an `Arch` record; create_model("my_net"), explain(arch=...),
    ...                                 # train(arch=...) then build it like any other network
    archs.unregister_arch("my_net")
"""

from __future__ import annotations

import importlib
from functools import cache

from anyshape.archs.base import Arch, ArchConfig

__all__ = [
    "Arch",
    "ArchConfig",
    "get_arch",
    "list_models",
    "model_config",
    "register_arch",
    "unregister_arch",
    "UnknownArchitecture",
    "DEFAULT_ARCH",
]

DEFAULT_ARCH = "inception_v3"

_FAMILIES = (
    "inception_v3",
    "resnet",
    "resnet_v2",
    "vgg",
    "densenet",
    "mobilenet",
    "mobilenet_v2",
    "mobilenet_v3",
    "convnext",
    "efficientnet",
    "efficientnet_v2",
    "xception",
    "inception_resnet_v2",
    "nasnet",
)


class UnknownArchitecture(ValueError):
    """A name that is no registered network."""


# networks registered at run time with `register_arch` (none of anyshape's own)
_REGISTERED: dict[str, Arch] = {}


def _registry() -> dict[str, Arch]:
    return {**_builtin(), **_REGISTERED}


@cache
def _builtin() -> dict[str, Arch]:
    out: dict[str, Arch] = {}
    for family in _FAMILIES:
        module = importlib.import_module(f"anyshape.archs.{family}")
        for arch in module.ARCHS:
            if arch.name in out:
                raise RuntimeError(f"network {arch.name!r} is registered twice")
            out[arch.name] = arch
    return out


@cache
def _aliases() -> dict[str, str]:
    out = {}
    for arch in _registry().values():
        for alias in _alias_keys(arch):
            out[alias] = arch.name
    return out


def _alias_keys(arch: Arch) -> set[str]:
    return {alias.lower() for alias in (arch.name, arch.keras_name, arch.name.replace("_", ""))}


def register_arch(arch: Arch) -> Arch:
    """Add a network defined outside anyshape's families to the registry; returns it.

    Afterwards `create_model(arch.name)`, `explain(..., arch=arch.name)`, `train(arch=arch.name)`
    and the CLI's `--arch` (of a parser made after the call) know it like any other network. A
    name (or keras_name) that already means a network is refused: a registration never replaces
    one. Undo it with `unregister_arch`.
    """
    if not isinstance(arch, Arch):
        raise TypeError(f"register_arch takes an anyshape.archs.Arch record, got {type(arch).__name__}")
    if not arch.name or not arch.name.isidentifier():
        raise ValueError(f"register_arch: name {arch.name!r} must be a Python identifier, e.g. 'my_net'")
    taken = sorted(key for key in _alias_keys(arch) if key in _aliases())
    if taken:
        raise ValueError(
            f"register_arch: {arch.name!r} ({arch.keras_name}) clashes with the registered network "
            f"{_aliases()[taken[0]]!r}; give it another name"
        )
    _REGISTERED[arch.name] = arch
    _aliases.cache_clear()
    return arch


def unregister_arch(name: str | Arch) -> None:
    """Remove a network `register_arch` added; anyshape's own networks cannot be removed."""
    key = name.name if isinstance(name, Arch) else str(name)
    if key not in _REGISTERED:
        own = key in _builtin()
        raise ValueError(
            f"unregister_arch: {key!r} is "
            + ("one of anyshape's own networks, which stay registered" if own else "not a registered network")
        )
    del _REGISTERED[key]
    _aliases.cache_clear()


def _family_key(family: str) -> str:
    return str(family).lower().replace("_", "").replace("-", "")


def list_models(family: str | None = None) -> list[str]:
    """The registered names, sorted; only one family's with `family`, in any case and with or
    without underscores ("resnet", "ResNet", "resnet_v2", "ResNetV2"); an unknown family is refused
    with the list of families."""
    archs = _registry().values()
    if family is None:
        return sorted(a.name for a in archs)
    key = _family_key(family)
    names = sorted(a.name for a in archs if _family_key(a.family) == key)
    if not names:
        families = sorted({a.family for a in archs})
        raise ValueError(f"list_models: no family {family!r}; the families are: {', '.join(families)}")
    return names


def get_arch(name: str | Arch) -> Arch:
    """The network registered as `name` (snake case, or keras.applications' constructor name)."""
    if isinstance(name, Arch):
        return name
    key = _aliases().get(str(name).lower())
    if key is None:
        raise UnknownArchitecture(f"no network named {name!r}; the networks are: {', '.join(list_models())}")
    return _registry()[key]


def model_config(model) -> tuple[Arch, ArchConfig] | None:
    """The network and Config a model was built with (`anyshape.create_model` sets them, and
    `anyshape.model_info` keeps them in its .keras file), or None for a model anyshape did not build."""
    config = getattr(model, "anyshape_config", None)
    arch = getattr(model, "anyshape_arch", None)
    if config is None or arch is None:
        return None
    return get_arch(arch), config
