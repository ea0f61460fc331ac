"""Training's configuration: `TrainConfig` and the rules of its options, the stages and freeze
options of a network, and what a run returns or raises."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from anyshape.archs import DEFAULT_ARCH, Arch, get_arch
from anyshape.errors import ParameterError, Spelled

__all__ = [
    "TrainConfig",
    "TrainResult",
    "TrainingInterrupted",
    "parse_stages",
    "freeze_options",
    "check_freeze",
    "FREEZE_HELP",
]

FREEZE_HELP = "none | backbone | up-to-BLOCK (BLOCK one of the network's blocks, e.g. up-to-mixed7 for InceptionV3)"
# what training sets itself when it builds a network: not for arch_options (--option)
_BUILD_ARGS = ("input_shape", "include_top", "classes", "classifier_activation", "data_format", "name", "pooling")


@dataclass
class TrainConfig:
    """Everything a run depends on; stored in report.json and checkpoint.json."""

    data: str = "digits"
    # the network, a name of anyshape.list_models() (None: InceptionV3, anyshape's default), and
    # its own build arguments (fields of its Config, e.g. {"alpha": 0.25} for MobileNet)
    arch: str | None = None
    arch_options: dict | None = None
    # (H, W) or (H, W, C); default: for digits the network's smallest size (at least 32: 75 for
    # InceptionV3), otherwise its default size (299 for InceptionV3)
    input_shape: tuple | None = None
    weights: str | None = None  # None / "none", a registry name ("imagenet", ...) or a file path
    preprocessing: str | None = None  # "tf" / "torch": how a PyTorch weights file expects input, if it cannot tell
    channel_adapt: str | None = None  # passed to InceptionV3 as a weights option
    freeze: str = "none"
    stages: list | None = None  # [(freeze, epochs), ...]: staged unfreezing; overrides freeze/epochs
    epochs: int = 5
    batch_size: int = 32
    optimizer: str = "adam"  # adam | adamw | sgd
    learning_rate: float = 1e-3
    lr_schedule: str = "cosine"  # cosine | constant
    warmup_epochs: float = 0.0
    weight_decay: float | None = None  # None: the optimizer's default (0.004 for adamw, 0 for adam and sgd)
    label_smoothing: float = 0.0
    dropout_rate: float = 0.0
    aux_logits: bool = False
    aux_weight: float = 0.4  # Szegedy et al. 2016 / torchvision: loss = main + 0.4 * aux
    augment: str = "auto"  # auto | none | comma list of crop, flip
    val_split: float = 0.1
    test_split: float = 0.2
    early_stopping: int | None = None  # patience in epochs on validation accuracy
    recalibrate: bool = True
    recalibrate_epoch_steps: int = 8  # batches for the per-epoch recalibration before validation
    recalibrate_steps: int | None = None  # batches for the final one; None = all training images
    skip_bad_images: bool = False
    jit_compile: bool | str = False
    steps_per_execution: int = 1
    # Keras' compile(run_eagerly=True): the train, predict and recalibration steps run op by op, not
    # as a compiled function. Slower per step, but no tracing (about 30 s for InceptionV3 on 2 cores
    # with TensorFlow): for a run of a few steps, or to debug. Off by default.
    run_eagerly: bool = False
    seed: int = 0
    output: str | None = None

    def __post_init__(self) -> None:
        """Refuse a value no run can use before any work (before the data is read or a folder made)."""
        for name, (meaning, valid) in _OPTION_RULES.items():
            value = getattr(self, name)
            if not valid(value):
                raise ParameterError(
                    "{" + name + "=@value} must be {meaning}", value=Spelled.python_only(value), meaning=meaning
                )
        if self.arch is not None and not isinstance(self.arch, str):
            raise ParameterError(
                "{arch=*} must be a network's name, one of anyshape.list_models()",
                arch=Spelled.python_only(self.arch),
            )
        if self.arch_options is not None and not (
            isinstance(self.arch_options, dict) and all(isinstance(k, str) for k in self.arch_options)
        ):
            raise ParameterError(
                "{arch_options=*} must be a dict of the network's build arguments",
                arch_options=Spelled.python_only(self.arch_options),
            )
        if self.run_eagerly and self.jit_compile:
            raise ParameterError(
                "{run_eagerly=True} and {jit_compile} contradict each other: "
                "an eager step is not compiled; give one of them"
            )

    def resolved(self) -> TrainConfig:
        c = dataclasses.replace(self)
        c.arch = get_arch(c.arch or DEFAULT_ARCH).name  # the registered name ("ResNet50" -> "resnet50")
        c.arch_options = {k: _tuples(v) for k, v in sorted((c.arch_options or {}).items())}
        if isinstance(c.weights, str) and c.weights.lower() == "none":
            c.weights = None
        if c.input_shape is not None:
            c.input_shape = tuple(c.input_shape)
        if c.stages is not None:
            c.stages = [(str(f), int(e)) for f, e in c.stages]
        if c.augment == "auto":
            # Flips and crops change what a digit or character means (a mirrored 2, a cut-off 7):
            # off for the digits set, on for folders of photos.
            c.augment = "none" if c.data == "digits" else "crop,flip"
        return c

    def stage_list(self) -> list[tuple[str, int]]:
        return list(self.stages) if self.stages else [(self.freeze, self.epochs)]

    @property
    def total_epochs(self) -> int:
        return sum(epochs for _, epochs in self.stage_list())

    def to_json(self) -> dict:
        d = dataclasses.asdict(self)
        d["input_shape"] = list(self.input_shape) if self.input_shape else None
        d["stages"] = [list(s) for s in self.stages] if self.stages else None
        return d


def _tuples(value):
    """JSON lists back to tuples (a Config's values are hashable: depths=(3, 4, 6, 3))."""
    return tuple(_tuples(v) for v in value) if isinstance(value, list) else value


def _is_whole(value) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def _is_number(value) -> bool:
    """A finite real number (not a bool, not NaN or infinite)."""
    return _is_whole(value) or (isinstance(value, (float, np.floating)) and math.isfinite(value))


_FRACTION = "a number >= 0 and < 1"
# The numeric options: what they must be, and the test (a message names the parameter, which
# the CLI renders as its flag, see anyshape.errors). Anything else is refused by TrainConfig
# itself, so the Python API, the CLI and a resumed run's stored configuration are checked alike.
_OPTION_RULES: dict[str, tuple[str, Callable[[Any], bool]]] = {
    "epochs": ("a whole number >= 1", lambda v: _is_whole(v) and v >= 1),
    "batch_size": ("a whole number >= 1", lambda v: _is_whole(v) and v >= 1),
    "learning_rate": ("a number > 0", lambda v: _is_number(v) and v > 0),
    "warmup_epochs": ("a number >= 0 (epochs of warm-up)", lambda v: _is_number(v) and v >= 0),
    "weight_decay": (
        "a number >= 0 (0: none; None, the flag left out: the optimizer's default)",
        lambda v: v is None or (_is_number(v) and v >= 0),
    ),
    # the share of each target spread over all classes: at 1 every target is uniform, above 1 the
    # targets point away from the true class (with two classes, 2 swaps them)
    "label_smoothing": (f"{_FRACTION} (0: none)", lambda v: _is_number(v) and 0 <= v < 1),
    "dropout_rate": (_FRACTION, lambda v: _is_number(v) and 0 <= v < 1),
    "aux_weight": ("a number >= 0", lambda v: _is_number(v) and v >= 0),
    "val_split": (_FRACTION, lambda v: _is_number(v) and 0 <= v < 1),
    "test_split": (_FRACTION, lambda v: _is_number(v) and 0 <= v < 1),
    "early_stopping": (
        "a whole number >= 1, the epochs without a better validation accuracy (None, the flag left out: no early stopping)",
        lambda v: v is None or (_is_whole(v) and v >= 1),
    ),
    "recalibrate_epoch_steps": ("a whole number >= 0", lambda v: _is_whole(v) and v >= 0),
    "recalibrate_steps": (
        "a whole number >= 1, or None for all training images",
        lambda v: v is None or (_is_whole(v) and v >= 1),
    ),
    "steps_per_execution": ("a whole number >= 1", lambda v: _is_whole(v) and v >= 1),
    "run_eagerly": ("True or False", lambda v: isinstance(v, bool)),
    "seed": ("a whole number from 0 to 2**32 - 1", lambda v: _is_whole(v) and 0 <= v < 2**32),
}


def parse_stages(text: str, arch: str | Arch | None = None) -> list[tuple[str, int]]:
    """'backbone:2,up-to-mixed7:2,none:1' -> [('backbone', 2), ('up-to-mixed7', 2), ('none', 1)].

    With `arch`, each freeze option is checked against that network's blocks (a run checks them
    anyway, before any work)."""
    stages = []
    for part in [p.strip() for p in text.split(",") if p.strip()]:
        spec, sep, epochs = part.rpartition(":")
        if not sep or not epochs.strip().isdigit() or int(epochs) < 1:
            raise ValueError(f"stage {part!r}: expected FREEZE:EPOCHS, e.g. backbone:2 (freeze = {FREEZE_HELP})")
        if arch is not None:
            check_freeze(spec.strip(), arch)
        stages.append((spec.strip(), int(epochs)))
    if not stages:
        raise ValueError(f"no stages in {text!r}: expected e.g. backbone:2,up-to-mixed7:2,none:1")
    return stages


def freeze_options(arch: str | Arch = DEFAULT_ARCH) -> str:
    """The freeze options of a network, in words: "none | backbone | up-to-mixedN (N = 0..10)"."""
    import re

    blocks = get_arch(arch).blocks
    numbered = [re.fullmatch(r"(.*?)(\d+)", b) for b in blocks]
    if blocks and all(numbered) and len({m.group(1) for m in numbered if m}) == 1:
        prefix, numbers = numbered[0].group(1), [int(m.group(2)) for m in numbered if m]  # type: ignore[union-attr]
        if numbers == list(range(numbers[0], numbers[0] + len(numbers))):
            ups = f"up-to-{prefix}N (N = {numbers[0]}..{numbers[-1]}; everything up to {prefix}N is frozen)"
            return f"none | backbone | {ups}"
    return "none | backbone | " + " | ".join(f"up-to-{b}" for b in blocks)


def check_freeze(spec: str, arch: str | Arch = DEFAULT_ARCH) -> str:
    """`spec` if it is a freeze option of the network `arch`, else a ValueError listing them."""
    a = get_arch(arch)
    if spec in ("none", "backbone") or (spec.startswith("up-to-") and spec[len("up-to-") :] in a.blocks):
        return spec
    raise ParameterError(
        "{freeze=*} is not a freeze option of {name}: use {options}",
        freeze=Spelled.python_only(spec),
        name=a.name,
        options=freeze_options(a),
    )


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C during `train`: `run_dir` holds the checkpoint after `epoch` (resume it with
    resume=True), or `run_dir` is None when no epoch had finished (the new run folder is removed)."""

    def __init__(self, run_dir: str | None, epoch: int):
        self.run_dir, self.epoch = run_dir, epoch
        super().__init__(
            f"training interrupted; the checkpoint after epoch {epoch} is in {run_dir}: "
            f"resume it with resume=True, output={run_dir!r}"
            if run_dir
            else "training interrupted before its first epoch ended; nothing was kept"
        )


@dataclass
class TrainResult:
    run_dir: str
    model_path: str
    test_accuracy: float | None
    report: dict
    # the model model.keras holds: the main output, uncompiled, with its ModelInfo (compile it to
    # train further; the run's optimizer state is in its checkpoint)
    model: Any = field(repr=False, default=None)


def _check_same_network(run_dir: Path, given: TrainConfig, stored: TrainConfig) -> None:
    """A resume given another network (or other options of it) than its run trains is refused."""
    if given.arch is not None and get_arch(given.arch).name != stored.arch:
        raise ParameterError(
            "{arch=*}: the run in {run_dir} trains {stored!r}, not {name!r}; a run resumes as the network it "
            "started with: resume without {arch=}, or start a new run in another folder",
            arch=Spelled.python_only(given.arch),
            run_dir=run_dir,
            stored=stored.arch,
            name=get_arch(given.arch).name,
        )
    if given.arch_options is not None and given.resolved().arch_options != stored.arch_options:
        raise ParameterError(
            "{arch_options=*} differ from the options the run in {run_dir} trains "
            "{arch} with, {stored!r}: resume without them, or start a new run in another folder",
            arch_options=Spelled.python_only(given.arch_options),
            run_dir=run_dir,
            arch=stored.arch,
            stored=stored.arch_options,
        )
