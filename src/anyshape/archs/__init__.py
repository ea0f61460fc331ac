"""The registry of networks: one module per family, one `Arch` record per registered name.

    from anyshape import archs
    archs.list_models()                 # ['convnext_base', ..., 'inception_v3', ...]
    arch = archs.get_arch("resnet50")   # also "ResNet50", keras.applications' name
    arch.config(include_top=False)      # its Config

Pure Python (no Keras): `anyshape.explain` and the CLI's `explain` read this without loading a
backend. Adding a network is one module here that defines its Config, its network function and its
`ARCHS` records, and one line in `_FAMILIES`; the per-network harness (tests/test_archs.py) then
tests it like every other network.
"""

from __future__ import annotations

import importlib
from functools import cache

from anyshape.archs.base import Arch, ArchConfig

__all__ = ["Arch", "ArchConfig", "get_arch", "list_models", "model_config", "UnknownArchitecture", "DEFAULT_ARCH"]

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


@cache
def _registry() -> dict[str, Arch]:
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
        for alias in (arch.name, arch.keras_name, arch.name.replace("_", "")):
            out[alias.lower()] = arch.name
    return out


def list_models(family: str | None = None) -> list[str]:
    """The registered names, sorted; only one family's with `family` (e.g. "resnet")."""
    return sorted(a.name for a in _registry().values() if family is None or a.family == family)


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
