"""Fine-tuning any registered network (InceptionV3 by default) at any input shape, with BatchNorm
handled right.

    import anyshape
    result = anyshape.train("digits", input_shape=(75, 75, 1), epochs=3, output="runs/digits")
    result.test_accuracy, result.run_dir          # runs/digits/{model.keras, report.json, classes.json}
    anyshape.train("digits", arch="mobilenet", arch_options={"alpha": 0.25}, freeze="up-to-conv_pw_5_relu")

The network is built by `anyshape.create_model(arch, ...)`; its record (`anyshape.archs.Arch`)
gives the freeze points (its `blocks`), its classifier, its default size and, from scratch, its
preprocessing. The run folder, its checkpoint and model.keras record the network and its Config.

The loop is Keras' own `fit`, one epoch at a time, with what plain `fit` gets wrong around it:

* BatchNorm statistics. Keras' BatchNormalization keeps moving averages with momentum 0.99;
  with a few dozen steps an epoch they never catch up with weights that change fast (from
  scratch on scikit-learn's digits: 0.95 train accuracy, 0.10 test accuracy after 4 epochs).
  `recalibrate_batchnorm` re-estimates them as the plain average of per-batch statistics over
  training images at the training resolution (momentum k/(k+1) at step k), after every epoch
  on a few batches (so validation means something) and over the whole training set at the end.
* Frozen layers. `freeze=` sets `trainable = False` on whole layers; on a BatchNormalization
  layer that also makes Keras 3 run it in inference mode (keras/src/layers/normalization/
  batch_normalization.py: statistics are updated only under `training and self.trainable`),
  so a frozen backbone keeps its pretrained statistics. Recalibration leaves frozen layers alone.
* Checkpoints. After every epoch the weights (BatchNorm statistics included) and the optimizer
  state are written atomically (temporary file + os.replace) and `checkpoint.json` is replaced
  last, so a run killed at any moment resumes from its last complete epoch (`resume=True`).

The run folder holds `model.keras` (single softmax output; an aux head used in training is
dropped; its class names and preprocessing inside, see `anyshape.model_info`), `classes.json`
(the same for people and older readers, read back by `read_run_info`) and `report.json`
(configuration, per-epoch figures, test accuracy, images/s, wall time).
"""

from __future__ import annotations

import dataclasses
import json
import math
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from anyshape.archs import DEFAULT_ARCH, Arch, get_arch
from anyshape.atomic_write import write_atomically
from anyshape.model_info import RUN_INFO_FILE, read_run_info  # classes.json: re-exported for old callers

__all__ = [
    "TrainConfig",
    "TrainResult",
    "Trainer",
    "train",
    "recalibrate_batchnorm",
    "freeze_layers",
    "parse_stages",
    "read_run_info",
    "RUN_INFO_FILE",
    "TrainingInterrupted",
]

FREEZE_HELP = "none | backbone | up-to-BLOCK (BLOCK one of the network's blocks, e.g. up-to-mixed7 for InceptionV3)"
# what training sets itself when it builds a network: not for arch_options (--option)
_BUILD_ARGS = ("input_shape", "include_top", "classes", "classifier_activation", "data_format", "name", "pooling")


# --------------------------------------------------------------------------------------------
# configuration
# --------------------------------------------------------------------------------------------


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
        for name, (flag, meaning, valid) in _OPTION_RULES.items():
            value = getattr(self, name)
            if not valid(value):
                where = f" ({flag})" if flag else ""
                raise ValueError(f"{name}={value!r}{where} must be {meaning}")
        if self.arch is not None and not isinstance(self.arch, str):
            raise ValueError(f"arch={self.arch!r} (--arch) must be a network's name, one of anyshape.list_models()")
        if self.arch_options is not None and not (
            isinstance(self.arch_options, dict) and all(isinstance(k, str) for k in self.arch_options)
        ):
            raise ValueError(
                f"arch_options={self.arch_options!r} (--option) must be a dict of the network's build arguments"
            )
        if self.run_eagerly and self.jit_compile:
            raise ValueError(
                "run_eagerly=True (--run-eagerly) and jit_compile (--jit-compile) contradict each other: "
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
# The numeric options: their flag (a message in these words reads as the flag's in the CLI, see
# cli.options.cli_words), what they must be, and the test. Anything else is refused by TrainConfig
# itself, so the Python API, the CLI and a resumed run's stored configuration are checked alike.
_OPTION_RULES: dict[str, tuple[str | None, str, Callable[[Any], bool]]] = {
    "epochs": ("--epochs", "a whole number >= 1", lambda v: _is_whole(v) and v >= 1),
    "batch_size": ("--batch-size", "a whole number >= 1", lambda v: _is_whole(v) and v >= 1),
    "learning_rate": ("--lr", "a number > 0", lambda v: _is_number(v) and v > 0),
    "warmup_epochs": ("--warmup-epochs", "a number >= 0 (epochs of warm-up)", lambda v: _is_number(v) and v >= 0),
    "weight_decay": (
        "--weight-decay",
        "a number >= 0 (0: none; None, the flag left out: the optimizer's default)",
        lambda v: v is None or (_is_number(v) and v >= 0),
    ),
    # the share of each target spread over all classes: at 1 every target is uniform, above 1 the
    # targets point away from the true class (with two classes, 2 swaps them)
    "label_smoothing": ("--label-smoothing", f"{_FRACTION} (0: none)", lambda v: _is_number(v) and 0 <= v < 1),
    "dropout_rate": ("--dropout-rate", _FRACTION, lambda v: _is_number(v) and 0 <= v < 1),
    "aux_weight": ("--aux-weight", "a number >= 0", lambda v: _is_number(v) and v >= 0),
    "val_split": ("--val-split", _FRACTION, lambda v: _is_number(v) and 0 <= v < 1),
    "test_split": ("--test-split", _FRACTION, lambda v: _is_number(v) and 0 <= v < 1),
    "early_stopping": (
        "--early-stopping",
        "a whole number >= 1, the epochs without a better validation accuracy (None, the flag left out: no early stopping)",
        lambda v: v is None or (_is_whole(v) and v >= 1),
    ),
    "recalibrate_epoch_steps": (None, "a whole number >= 0", lambda v: _is_whole(v) and v >= 0),
    "recalibrate_steps": (
        None,
        "a whole number >= 1, or None for all training images",
        lambda v: v is None or (_is_whole(v) and v >= 1),
    ),
    "steps_per_execution": ("--steps-per-execution", "a whole number >= 1", lambda v: _is_whole(v) and v >= 1),
    "run_eagerly": ("--run-eagerly", "True or False", lambda v: isinstance(v, bool)),
    "seed": ("--seed", "a whole number from 0 to 2**32 - 1", lambda v: _is_whole(v) and 0 <= v < 2**32),
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
    raise ValueError(f"freeze={spec!r} (--freeze) is not a freeze option of {a.name}: use {freeze_options(a)}")


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


# --------------------------------------------------------------------------------------------
# BatchNorm and freezing
# --------------------------------------------------------------------------------------------


def _all_layers(model) -> list:
    out = []
    for layer in model.layers:
        out.append(layer)
        if hasattr(layer, "layers"):
            out.extend(_all_layers(layer))
    return out


def _batchnorm_layers(model) -> list:
    import keras

    return [l for l in _all_layers(model) if isinstance(l, keras.layers.BatchNormalization)]


def _batches(data, batch_size: int) -> Iterable:
    """Yield input batches from an array, a tf.data.Dataset / iterable of x or (x, y, ...)."""
    if isinstance(data, np.ndarray):
        for i in range(0, len(data), batch_size):
            yield data[i : i + batch_size]
        return
    for item in data:
        yield item[0] if isinstance(item, (tuple, list)) else item


def recalibrate_batchnorm(
    model, data, steps: int | None = None, *, batch_size: int = 32, layers: str | Sequence = "trainable"
) -> int:
    """Re-estimate BatchNorm moving statistics on `data`; returns the number of batches used.

    The new moving mean and variance of each layer are the plain average, over `steps` batches,
    of the batch mean and variance it sees in training mode (i.e. momentum k/(k+1) at step k:
    every batch counts the same, none is forgotten), the "precise BN" estimate. Computed at the
    training resolution it makes evaluation match training; on images of a new resolution it
    adapts a pretrained model to it (FixRes, Touvron et al. 2019).

    Args:
        model: a Keras model containing BatchNormalization layers.
        data: preprocessed model inputs: a numpy array (N, H, W, C), a tf.data.Dataset or any
            iterable of batches, each x or a tuple (x, y, ...). Use training images, without
            augmentation, at the resolution the model will be evaluated at.
        steps: number of batches to use (None: all of `data`).
        batch_size: batch size when `data` is an array (batch statistics need >= 8 or so).
        layers: "trainable" (default: the BatchNorm layers that are trainable, leaving frozen
            ones with their pretrained statistics), "all", or a list of layer names.

    Nothing else changes: weights, other layers' statistics, and each layer's momentum and
    trainable flag are as before.
    """
    import keras

    bns = _batchnorm_layers(model)
    chosen = _chosen_batchnorm_layers(model, bns, layers)
    if not chosen:
        return 0
    chosen_ids = {id(l) for l in chosen}
    others = [l for l in bns if id(l) not in chosen_ids]
    saved_other = [
        (l, keras.ops.convert_to_numpy(l.moving_mean), keras.ops.convert_to_numpy(l.moving_variance)) for l in others
    ]
    saved_flags = [(l, l.trainable, l.momentum) for l in bns]
    for l in bns:  # only chosen layers run in training mode; momentum 0: moving stats := batch stats
        l.trainable = id(l) in chosen_ids
        l.momentum = 0.0
    forward = _training_forward(model, tuple(id(l) for l in chosen))
    sums_mean = [np.zeros(l.moving_mean.shape, np.float64) for l in chosen]
    sums_var = [np.zeros(l.moving_variance.shape, np.float64) for l in chosen]
    n = 0
    try:
        for x in _batches(data, batch_size):
            if steps is not None and n >= steps:
                break
            forward(x)
            for i, l in enumerate(chosen):
                sums_mean[i] += keras.ops.convert_to_numpy(l.moving_mean)
                sums_var[i] += keras.ops.convert_to_numpy(l.moving_variance)
            n += 1
    finally:
        for l, trainable, momentum in saved_flags:
            l.trainable, l.momentum = trainable, momentum
        for l, m, v in saved_other:
            l.moving_mean.assign(m)
            l.moving_variance.assign(v)
    if n == 0:
        raise ValueError("recalibrate_batchnorm got no batches from data")
    for i, l in enumerate(chosen):
        l.moving_mean.assign((sums_mean[i] / n).astype(l.moving_mean.dtype))
        l.moving_variance.assign((sums_var[i] / n).astype(l.moving_variance.dtype))
    return n


def _chosen_batchnorm_layers(model, bns: list, layers: str | Sequence) -> list:
    """The BatchNorm layers `recalibrate_batchnorm(layers=...)` names, in model order."""
    if layers == "trainable":
        return [l for l in bns if l.trainable]
    if layers == "all":
        return list(bns)
    names = set(layers)
    chosen = [l for l in bns if l.name in names]
    missing = names - {l.name for l in chosen}
    if missing:
        raise ValueError(f"no BatchNormalization layer named {sorted(missing)} in {model.name}")
    return chosen


def _training_forward(model, key) -> Callable:
    """model(x, training=True) with the BatchNorm flags recalibration sets, compiled on TensorFlow
    (unless the model was compiled with run_eagerly=True, as Keras' own steps then run).

    The flags are Python attributes read when the function is traced, so a traced function is
    kept on the model for the same set of recalibrated layers (tracing costs seconds).
    """
    import keras

    if keras.backend.backend() != "tensorflow" or getattr(model, "run_eagerly", False):
        return lambda x: model(x, training=True)
    import tensorflow as tf

    cached = getattr(model, "_anyshape_recalibration_fn", None)
    if cached is None or cached[0] != key:
        fn = tf.function(lambda x: model(x, training=True), reduce_retracing=True)
        cached = (key, fn)
        model._anyshape_recalibration_fn = cached
    fn = cached[1]
    return lambda x: fn(tf.convert_to_tensor(x))


def _ancestor_layer_names(model, layer_name: str) -> set[str]:
    """Names of the layers that `layer_name`'s output depends on, itself included."""
    import keras

    sub = keras.Model(model.inputs, model.get_layer(layer_name).output)
    return {l.name for l in sub.layers}


def _model_arch(model) -> Arch:
    """The network `model` was built as (`anyshape.create_model` records it), else InceptionV3."""
    from anyshape.archs import model_config

    built = model_config(model)
    return built[0] if built is not None else get_arch(DEFAULT_ARCH)


def freeze_layers(model, spec: str, arch: str | Arch | None = None) -> list[str]:
    """Set `trainable` for a freeze option; returns the names of the frozen layers (with weights).

    The options come from the network's record (`arch`, by default the one `model` was built as):
    "none": everything trains. "backbone": only the classifier trains (everything its main
    classifier layer reads is frozen; InceptionV3's aux head, which reads mixed7, trains too).
    "up-to-<block>" for a block of the network (`Arch.blocks`: mixed0..mixed10 for InceptionV3):
    that block and everything its output depends on are frozen, the later blocks and the head
    train. Frozen BatchNorm layers run in inference mode (Keras 3 semantics of trainable=False).
    """
    a = get_arch(arch) if arch is not None else _model_arch(model)
    spec = check_freeze(spec, a)
    if spec == "none":
        frozen = set()
    elif spec == "backbone":
        frozen = _ancestor_layer_names(model, a.classifier[0]) - {a.classifier[0]}
    else:
        frozen = _ancestor_layer_names(model, spec[len("up-to-") :])
    names = []
    for layer in model.layers:
        layer.trainable = layer.name not in frozen
        if layer.name in frozen and layer.weights:
            names.append(layer.name)
    return names


# --------------------------------------------------------------------------------------------
# run folder
# --------------------------------------------------------------------------------------------


def _write_json(path: Path, obj) -> None:
    def write(tmp):
        with open(tmp, "w") as f:
            json.dump(obj, f, indent=2)
            f.write("\n")

    write_atomically(path, write)


def _default_run_dir(config: TrainConfig) -> Path:
    name = "digits" if config.data == "digits" else Path(config.data).resolve().name
    return Path("runs") / f"{name}-{time.strftime('%Y%m%d-%H%M%S')}"


# --------------------------------------------------------------------------------------------
# the trainer
# --------------------------------------------------------------------------------------------


BEST_WEIGHTS_FILE = "best.weights.h5"  # early stopping's best epoch, kept on disk for a resume
# tf.data draws a new shuffle order for every iterator over the training images, and Keras'
# fit(epochs=1) makes two (one to train on, and a fresh one after the epoch's last step:
# keras/src/trainers/epoch_iterator.py, Keras 3.15), so epoch k trains on order 2k - 1.
# tests/test_training.py checks that a resumed run ends with an uninterrupted run's weights.
_ITERATORS_PER_FIT = 2
_HISTORY_KEYS = {
    "predictions_accuracy": "accuracy",
    "predictions_loss": "main_loss",
    "aux_predictions_loss": "aux_loss",
}


@dataclass
class _Pipelines:
    """The tf.data pipelines of a run."""

    train: Any
    steps_per_epoch: int
    recalibration: Any  # training images without augmentation or labels, for BatchNorm statistics
    val: Any | None


@dataclass
class _Progress:
    """Where a run stands: from its checkpoint, updated after every epoch."""

    history: list[dict]
    best: dict
    done_epochs: int
    stopped_early: bool
    restored: bool = False  # the checkpoint's weights are in the model

    @classmethod
    def from_state(cls, state: dict | None) -> _Progress:
        if state is None:
            return cls(history=[], best={}, done_epochs=0, stopped_early=False)
        return cls(
            history=list(state["history"]),
            best=dict(state.get("best") or {}),
            done_epochs=int(state["epoch"]),
            stopped_early=bool(state.get("stopped_early")),
        )


class Trainer:
    """One training run: `Trainer(config).run()`; see `train` for the arguments."""

    def __init__(
        self,
        config: TrainConfig,
        *,
        dataset=None,
        resume: bool = False,
        verbose: int | str = "auto",
        log: Callable[[str], None] | None = None,
    ):
        self.resume = resume
        self.verbose = verbose
        self.log = log or (lambda msg: print(msg, file=sys.stderr, flush=True))
        if resume:
            if not config.output:
                raise ValueError("resume=True needs output= (the run folder to resume)")
            run_dir = Path(config.output)
            state = self._read_state(run_dir)
            given = config
            try:  # resolved() makes its lists tuples
                config = TrainConfig(**{**state["config"], "output": config.output})
                stored = config.resolved()
            except (TypeError, ValueError) as e:
                raise ValueError(
                    f"{run_dir / 'checkpoint.json'}: its stored configuration cannot be used ({e}); "
                    "the run cannot be resumed"
                ) from e
            _check_same_network(run_dir, given, stored)
            self.state: dict | None = state
        else:
            self.state = None
        self.config = config.resolved()
        self.arch = get_arch(self.config.arch or DEFAULT_ARCH)
        self._check_network()
        self.dataset = dataset
        self.run_dir = Path(self.config.output) if self.config.output else _default_run_dir(self.config)

    def _check_network(self) -> None:
        """The network's options and the freeze options, checked against its record before any work."""
        c, a = self.config, self.arch
        for spec, _ in c.stage_list():
            check_freeze(spec, a)
        known = {f.name for f in dataclasses.fields(a.config_class)}
        for key in c.arch_options or {}:
            if key in _BUILD_ARGS or key in ("dropout_rate", "aux_logits") or key not in known:
                own = sorted(known - set(_BUILD_ARGS) - {"dropout_rate", "aux_logits"})
                why = "training sets it" if key in _BUILD_ARGS else "use its own option" if key in known else ""
                raise ValueError(
                    f"arch_options key {key!r} (--option {key}=...): "
                    + (why or f"{a.name} has no build argument {key!r}")
                    + f"; {a.name}'s own options are {', '.join(own) or 'none'}"
                )
        if c.aux_logits and "aux_logits" not in known:
            raise ValueError(f"aux_logits=True (--aux-logits): {a.name} has no auxiliary classifier (InceptionV3 has)")
        problems = a.config(**self._build_options()).problems()
        if problems:
            raise ValueError(f"arch={a.name!r} (--arch) cannot be built so: {'; '.join(problems)}")

    def _build_options(self) -> dict:
        """The network's Config values a run sets: its own options, dropout and the aux head when asked."""
        c = self.config
        options = dict(c.arch_options or {})
        if c.dropout_rate:
            options["dropout_rate"] = c.dropout_rate
        if c.aux_logits:
            options["aux_logits"] = True
        return options

    # -- state ------------------------------------------------------------------------------

    @staticmethod
    def _read_state(run_dir: Path) -> dict:
        path = run_dir / "checkpoint.json"
        if not path.is_file():
            raise FileNotFoundError(
                f"{run_dir} has no checkpoint.json to resume from: it is not a run folder, "
                f"or the run stopped before its first epoch ended; start it again without --resume"
            )
        try:
            with open(path) as f:
                state = json.load(f)
        except ValueError as e:
            raise ValueError(f"{path} is not a readable checkpoint record ({e}); the run cannot be resumed") from e
        if not (
            isinstance(state, dict)
            and isinstance(state.get("config"), dict)
            and _is_whole(state.get("epoch"))
            and isinstance(state.get("history"), list)
        ):
            raise ValueError(f"{path} is not a checkpoint record of anyshape train; the run cannot be resumed")
        for key in ("weights", "optimizer"):
            _run_file(run_dir, state.get(key), f"{path}: its {key} file")
        return state

    # -- data -------------------------------------------------------------------------------

    def _load_data(self):
        from anyshape.datasets import load_dataset

        c = self.config
        shape = c.input_shape or self._default_size()
        if self.dataset is None:
            t = time.time()
            self.dataset = load_dataset(
                c.data,
                shape,
                val_split=c.val_split,
                test_split=c.test_split,
                seed=c.seed,
                skip_bad_images=c.skip_bad_images,
            )
            self.log(f"data: {self.dataset.summary()} (read in {time.time() - t:.1f} s)")
        for note in self.dataset.notes:
            self.log(f"data: {note}")
        ds = self.dataset
        self.input_shape = tuple(ds.train.images.shape[1:3]) + (ds.channels,)
        if len(ds.train) < 1:
            raise ValueError("no training images")

    def _default_size(self) -> tuple[int, int]:
        """Digits (8x8 images): the network's smallest size, at least 32 (75 for InceptionV3);
        other data: the network's default size (299 for InceptionV3)."""
        if self.config.data != "digits":
            return (self.arch.default_size, self.arch.default_size)
        from anyshape.shapes import minimum_size

        h, w = minimum_size(self.arch, 1, include_top=True, **self._build_options())
        return (max(32, h or 32), max(32, w or 32))

    def _data_config(self):
        """How the run feeds its model: the weights' scaling (from scratch, the network's own
        preprocessing, "tf" for InceptionV3), training's resize."""
        from anyshape.data_config import CAFFE_MEAN, DataConfig, resolve_data_config

        c = self.config
        if c.weights is None and c.preprocessing is None and self.arch.preprocessing != "tf":
            mode = self.arch.preprocessing
            if mode == "torch":
                data = resolve_data_config(None, channels=self.input_shape[2], preprocessing="torch")
            else:
                data = DataConfig(mode=mode, mean=CAFFE_MEAN if mode == "caffe" else None)
                data = data.for_channels(self.input_shape[2])
        else:
            data = resolve_data_config(c.weights, channels=self.input_shape[2], preprocessing=c.preprocessing)
        return data.for_training()

    def _reverses_channels(self) -> bool:
        """Mode caffe on 3 channels: RGB -> BGR before its mean (keras.applications.imagenet_utils)."""
        return self.preprocess["mode"] == "caffe" and self.input_shape[2] == 3

    def _scale_offset(self):
        """preprocess_input as x * scale + offset per channel (it is affine), for the tf.data map,
        after the channels are reversed where mode caffe reverses them (`_reverses_channels`): the
        probes are constant images, which the reversal leaves as they are."""
        from anyshape.preprocess import preprocess_input

        c = self.input_shape[2]
        zero = preprocess_input(np.zeros((1, 1, 1, c), np.float32), "channels_last", **self.preprocess)
        one = preprocess_input(np.ones((1, 1, 1, c), np.float32), "channels_last", **self.preprocess)
        return (one - zero).reshape(c).astype(np.float32), zero.reshape(c).astype(np.float32)

    def _augmenter(self):
        import keras

        parts = [p.strip() for p in self.config.augment.split(",") if p.strip() and p.strip() != "none"]
        unknown = set(parts) - {"crop", "flip"}
        if unknown:
            raise ValueError(f"augment: unknown {sorted(unknown)}; use none, or a comma list of crop, flip")
        layers = []
        if "crop" in parts:
            # Random resized crop from Keras preprocessing layers (Keras 3 has no RandomResizedCrop):
            # zoom in by up to 30% on each axis independently (area 49-100%, aspect 0.7-1.4),
            # then shift by up to 10% with reflected borders.
            layers.append(keras.layers.RandomZoom((-0.3, 0.0), (-0.3, 0.0), fill_mode="reflect", seed=self.config.seed))
            layers.append(keras.layers.RandomTranslation(0.1, 0.1, fill_mode="reflect", seed=self.config.seed + 1))
        if "flip" in parts:
            layers.append(keras.layers.RandomFlip("horizontal", seed=self.config.seed + 2))
        if not layers:
            return None

        def augment(x):
            # each layer called on its own: a Keras preprocessing layer runs on TensorFlow inside
            # tf.data whatever the backend, a keras.Sequential of them does not (on JAX it tries
            # to turn the symbolic tf.Tensor into an array)
            for layer in layers:
                x = layer(x, training=True)
            return x

        return augment

    def _pipeline(self, split, *, training: bool, labels: bool = True):
        import tensorflow as tf

        c = self.config
        scale, offset = self._scale_offset()
        n_classes = self.dataset.num_classes
        reverse = self._reverses_channels()
        aug = self._augmenter() if training else None
        ds = tf.data.Dataset.from_tensor_slices((split.images, split.labels))
        if training:
            ds = ds.shuffle(len(split), seed=c.seed, reshuffle_each_iteration=True)
        # a last batch of a few images gives noisy BatchNorm statistics: training drops it
        ds = ds.batch(c.batch_size, drop_remainder=training and len(split) >= c.batch_size)

        def prepare(x, y):
            x = tf.cast(x, tf.float32)
            if aug is not None:
                x = aug(x)
            if reverse:
                x = x[..., ::-1]
            x = x * scale + offset
            if not labels:
                return x
            y = tf.one_hot(y, n_classes)
            return (x, (y, y)) if c.aux_logits else (x, y)

        ds = ds.map(prepare, num_parallel_calls=tf.data.AUTOTUNE)
        return ds.prefetch(2)

    # -- model ------------------------------------------------------------------------------

    def _build_model(self, weights):
        """The network through `anyshape.create_model`, with the run's classes and options."""
        from anyshape.factory import create_model

        c = self.config
        options = self._build_options()
        if weights is not None and c.channel_adapt:
            options["channel_adapt"] = c.channel_adapt
        preprocessing = c.preprocessing if weights is not None else None
        if weights is None and c.weights is not None:
            # resuming a run that started from pretrained weights: the same network variant as the
            # weight set built (for InceptionV3: BatchNorm gamma, pool semantics), values from the checkpoint
            from anyshape.weights import resolve

            known = {f.name for f in dataclasses.fields(self.arch.config_class)}
            overrides = resolve(c.weights, c.preprocessing).build_overrides
            options = {**{k: v for k, v in overrides.items() if k in known}, **options}
        return create_model(
            self.arch.name,
            weights=weights,
            preprocessing=preprocessing,
            input_shape=self.input_shape,
            include_top=True,
            classes=self.dataset.num_classes,
            classifier_activation="softmax",
            data_format="channels_last",
            **options,
        )

    def _compile(self, model, steps_per_epoch: int, stage_epochs: int) -> None:
        import keras

        c = self.config
        total = max(1, steps_per_epoch * stage_epochs)
        warmup = int(round(c.warmup_epochs * steps_per_epoch))
        if c.lr_schedule == "cosine":
            lr = keras.optimizers.schedules.CosineDecay(
                c.learning_rate if not warmup else 0.0,
                decay_steps=max(1, total - warmup),
                alpha=0.0,
                warmup_target=c.learning_rate if warmup else None,
                warmup_steps=warmup,
            )
        elif c.lr_schedule == "constant":
            lr = c.learning_rate
        else:
            raise ValueError(f"lr_schedule must be 'cosine' or 'constant', got {c.lr_schedule!r}")
        if c.optimizer == "adam":
            opt = keras.optimizers.Adam(lr)
        elif c.optimizer == "adamw":
            opt = keras.optimizers.AdamW(lr, weight_decay=0.004 if c.weight_decay is None else c.weight_decay)
        elif c.optimizer == "sgd":
            opt = keras.optimizers.SGD(lr, momentum=0.9, nesterov=True)
        else:
            raise ValueError(f"optimizer must be adam, adamw or sgd, got {c.optimizer!r}")
        if c.weight_decay and c.optimizer != "adamw":
            opt.weight_decay = c.weight_decay
        loss = keras.losses.CategoricalCrossentropy(label_smoothing=c.label_smoothing)
        acc = keras.metrics.CategoricalAccuracy(name="accuracy")
        if c.aux_logits:
            kwargs = dict(
                loss=[loss, keras.losses.CategoricalCrossentropy(label_smoothing=c.label_smoothing)],
                loss_weights=[1.0, c.aux_weight],
                metrics=[[acc], []],
            )
        else:
            kwargs = dict(loss=loss, metrics=[acc])
        model.compile(
            optimizer=opt,
            jit_compile=c.jit_compile,
            steps_per_execution=c.steps_per_execution,
            run_eagerly=c.run_eagerly,
            **kwargs,
        )
        opt.build(model.trainable_variables)

    # -- checkpoints ------------------------------------------------------------------------

    def _save_checkpoint(
        self, model, epoch: int, stage: int, history: list, best: dict, stopped_early: bool = False
    ) -> None:
        """Weights and optimizer state of a finished epoch; checkpoint.json (replaced last) points at them."""
        import keras

        run = self.run_dir
        weights = run / f"checkpoint-e{epoch:03d}.weights.h5"
        optim = run / f"checkpoint-e{epoch:03d}.optimizer.npz"
        _save_weights_only(model, weights)
        arrays = {f"v{i:04d}": keras.ops.convert_to_numpy(v) for i, v in enumerate(model.optimizer.variables)}

        def write_npz(tmp):
            with open(tmp, "wb") as f:
                np.savez(f, **arrays)

        write_atomically(optim, write_npz)
        previous = self._read_state(run) if (run / "checkpoint.json").is_file() else None
        _write_json(
            run / "checkpoint.json",
            {
                "epoch": epoch,
                "stage": stage,
                "weights": weights.name,
                "optimizer": optim.name,
                "history": history,
                "best": best,
                "stopped_early": stopped_early,
                "config": self.config.to_json(),
                "class_names": self.dataset.class_names,
                "input_shape": list(self.input_shape),
                "architecture": self.network,
            },
        )
        if previous:
            for key in ("weights", "optimizer"):
                old = run / previous[key]
                if old.name not in (weights.name, optim.name) and old.exists():
                    old.unlink()

    def _restore_checkpoint(self, model) -> None:
        run, state = self.run_dir, self.state
        if state is None:
            raise ValueError(f"{run}: no checkpoint to restore")
        _load_weights_only(model, run / state["weights"])
        with np.load(run / state["optimizer"]) as z:
            values = [z[k] for k in sorted(z.files)]
        variables = model.optimizer.variables
        if len(values) != len(variables):
            raise ValueError(
                f"{run / state['optimizer']}: {len(values)} optimizer variables, the model's "
                f"optimizer has {len(variables)}; the checkpoint does not belong to this configuration"
            )
        for var, val in zip(variables, values):
            var.assign(val)

    # -- the run ----------------------------------------------------------------------------

    def run(self) -> TrainResult:
        """Train; on any failure or Ctrl-C before the first checkpoint, the folders this run
        created are removed again (only the files it wrote); Ctrl-C raises TrainingInterrupted."""
        run = self.run_dir
        self._check_run_folder()
        created = [p for p in [run, *run.parents] if not p.exists()]
        run.mkdir(parents=True, exist_ok=True)
        try:
            return self._run()
        except BaseException as e:
            kept = (run / "checkpoint.json").is_file()
            if not kept:
                self._remove_own_files(created)
            if isinstance(e, KeyboardInterrupt) and not isinstance(e, TrainingInterrupted):
                epoch = int(self._read_state(run)["epoch"]) if kept else 0
                raise TrainingInterrupted(str(run) if kept else None, epoch) from None
            raise

    def _check_run_folder(self) -> None:
        """Refuse a run folder that is a file, holds another run, or lies inside the data."""
        run = self.run_dir
        if run.exists() and not run.is_dir():
            raise FileExistsError(f"{run} is a file, not a run folder: give a folder as output= (--output)")
        if not self.resume and run.exists() and any(run.iterdir()):
            leftovers = _first_epoch_leftovers(run)
            if leftovers is None:
                raise FileExistsError(
                    f"{run} exists and is not empty: give another output folder, "
                    f"or resume=True (--resume) to continue the run in it"
                )
            # a run killed before its first checkpoint (SIGKILL, power loss) could not clean up, and
            # there is nothing to resume: start again in its folder instead of refusing both ways
            for f in leftovers:
                f.unlink()
            self.log(
                f"{run}: removed what a run that stopped before its first checkpoint left there "
                f"({', '.join(sorted(f.name for f in leftovers))}); starting again"
            )
        if self.config.data != "digits" and Path(self.config.data).is_dir():
            data = Path(self.config.data).resolve()
            if run.resolve() == data or data in run.resolve().parents:
                raise ValueError(
                    f"the run folder {run} is inside the data folder {self.config.data}, where it "
                    "would be read as a class: give an output folder outside it (--output)"
                )

    def _remove_own_files(self, created: list[Path]) -> None:
        """Delete what this run wrote into a folder it created, and the folders if left empty."""
        run = self.run_dir
        if run not in created:
            return
        for f in run.iterdir():
            if _is_own_file(f):
                f.unlink()
        for folder in created:  # innermost first
            if folder.is_dir() and not any(folder.iterdir()):
                folder.rmdir()

    def _run(self) -> TrainResult:
        import keras

        t_start = time.time()
        keras.utils.set_random_seed(self.config.seed)
        data_config = self._prepare_data()
        pipes = self._pipelines()
        # pretrained weights are read only for a fresh run; a resumed run gets them from its checkpoint
        model = self._build_model(self.config.weights if self.state is None else None)
        self.network = _network_record(model)
        progress = _Progress.from_state(self.state)
        # A resumed run draws (and drops) the shuffle orders of the epochs already done, so that it
        # trains in the order an uninterrupted run would (see _ITERATORS_PER_FIT).
        for _ in range(_ITERATORS_PER_FIT * progress.done_epochs):
            iter(pipes.train)
        self._log_start(model, progress)
        for stage_index in range(len(self.config.stage_list())):
            if progress.stopped_early:
                break
            self._train_stage(model, stage_index, pipes, progress)
        self._final_weights(model, progress)
        recalibration, scores = self._final_scores(model, pipes)
        main, model_path = self._save_model(model, data_config)
        report = self._report(progress, recalibration, scores, t_start)
        _write_json(self.run_dir / "report.json", report)
        msg = ", ".join(f"{k}={scores[k]}" for k in scores)
        self.log(
            f"done in {report['wall_seconds']} s ({report['train_seconds']:.0f} s training, "
            f"{report['train_images_per_second']} img/s): {msg}; saved {model_path}"
        )
        return TrainResult(str(self.run_dir), str(model_path), scores.get("test_accuracy"), report, main)

    def _prepare_data(self):
        """Load the data, check it against a checkpoint, write classes.json; the run's DataConfig."""
        self._load_data()
        ds = self.dataset
        if self.state is not None and self.state.get("class_names") != ds.class_names:
            raise ValueError(
                f"the data's classes {ds.class_names} differ from the checkpoint's {self.state.get('class_names')}"
            )
        data_config = self._data_config()
        self.preprocess = data_config.preprocess_kwargs()
        run_info = {
            "classes": ds.class_names,
            "input_shape": list(self.input_shape),
            "data_format": "channels_last",
            "preprocess": self.preprocess,
            "resize": data_config.resize_policy(),
            "output": "softmax",
            "model": "model.keras",
        }
        _write_json(self.run_dir / RUN_INFO_FILE, run_info)
        return data_config

    def _pipelines(self) -> _Pipelines:
        ds = self.dataset
        train = self._pipeline(ds.train, training=True)
        return _Pipelines(
            train=train,
            steps_per_epoch=int(train.cardinality()),
            recalibration=self._pipeline(ds.train, training=False, labels=False),
            val=self._pipeline(ds.val, training=False) if ds.val is not None and len(ds.val) else None,
        )

    def _log_start(self, model, progress: _Progress) -> None:
        c, total = self.config, self.config.total_epochs
        if self.state:
            self.log(
                f"resuming {self.run_dir} after epoch {progress.done_epochs} of {total}, with the configuration "
                f"stored in its checkpoint.json (options given now other than the run folder are not used)"
            )
        self.log(
            f"model: {self.arch.keras_name} {self.input_shape}, {self.dataset.num_classes} classes, weights={c.weights}, "
            f"{model.count_params():,} parameters; run folder {self.run_dir}"
        )

    def _train_stage(self, model, stage_index: int, pipes: _Pipelines, progress: _Progress) -> None:
        """The epochs of one stage not yet done: freeze, compile, restore a checkpoint, fit."""
        stages = self.config.stage_list()
        spec, stage_epochs = stages[stage_index]
        epoch0 = sum(e for _, e in stages[:stage_index])
        stage_end = epoch0 + stage_epochs
        if progress.done_epochs >= stage_end:
            return
        frozen = freeze_layers(model, spec, self.arch)
        trainable = sum(int(np.prod(v.shape)) for v in model.trainable_weights)
        self._compile(model, pipes.steps_per_epoch, stage_epochs)
        if self.state is not None and not progress.restored:
            if progress.done_epochs > epoch0:  # resuming inside this stage: weights and optimizer state
                self._restore_checkpoint(model)
            else:  # resuming at the start of a stage: weights only, the stage's optimizer is new
                _load_weights_only(model, self.run_dir / self.state["weights"])
            progress.restored = True
        self.log(
            f"stage {stage_index + 1}/{len(stages)}: freeze={spec} ({len(frozen)} frozen layers with weights, "
            f"{trainable:,} trainable parameters), epochs {epoch0 + 1}-{stage_end}"
        )
        for epoch in range(max(epoch0, progress.done_epochs), stage_end):
            self._train_epoch(model, epoch, stage_index, pipes, progress)
            if progress.stopped_early:
                self.log(
                    f"early stopping: no better validation accuracy for {self.config.early_stopping} epoch(s) "
                    f"since epoch {progress.best['epoch']}"
                )
                return

    def _train_epoch(self, model, epoch: int, stage_index: int, pipes: _Pipelines, progress: _Progress) -> None:
        """One epoch of fit, validation, the best-so-far bookkeeping and the checkpoint."""
        c = self.config
        self.log(f"epoch {epoch + 1}/{c.total_epochs}")
        t0 = time.time()
        h = model.fit(pipes.train, epochs=1, verbose=self.verbose, steps_per_epoch=pipes.steps_per_epoch, shuffle=False)
        train_time = time.time() - t0
        record: dict[str, Any] = {
            "epoch": epoch + 1,
            "stage": stage_index + 1,
            "freeze": c.stage_list()[stage_index][0],
            "train_seconds": round(train_time, 2),
            "train_images_per_second": round(pipes.steps_per_epoch * c.batch_size / train_time, 2),
        }
        for k, v in h.history.items():
            record[_HISTORY_KEYS.get(k, k)] = float(f"{float(v[-1]):.6g}")
        if pipes.val is not None:
            t1 = time.time()
            if c.recalibrate and c.recalibrate_epoch_steps:
                recalibrate_batchnorm(model, pipes.recalibration, c.recalibrate_epoch_steps)
            record.update(self._evaluate(model, pipes.val, self.dataset.val, prefix="val_"))
            record["val_seconds"] = round(time.time() - t1, 2)
        progress.history.append(record)
        self.log("  " + ", ".join(f"{k}={v}" for k, v in record.items() if k not in ("epoch", "stage", "freeze")))
        best = progress.best
        if "val_accuracy" in record and record["val_accuracy"] > best.get("val_accuracy", -1.0):
            progress.best = best = {"val_accuracy": record["val_accuracy"], "epoch": epoch + 1}
            if c.early_stopping:  # on disk, so that a resumed run restores them too
                _save_weights_only(model, self.run_dir / BEST_WEIGHTS_FILE)
        progress.stopped_early = bool(
            c.early_stopping
            and "val_accuracy" in record
            and epoch + 1 - best.get("epoch", epoch + 1) >= c.early_stopping
        )
        self._save_checkpoint(model, epoch + 1, stage_index, progress.history, best, progress.stopped_early)
        progress.done_epochs = epoch + 1

    def _final_weights(self, model, progress: _Progress) -> None:
        """The weights the run ends with: the checkpoint's, or the best epoch's after early stopping."""
        if self.state is not None and not progress.restored:
            # interrupted after its last checkpoint (all epochs done, or stopped early): no epoch
            # ran now, so the model takes the checkpoint's weights here
            _load_weights_only(model, self.run_dir / self.state["weights"])
        best_file = _run_file(self.run_dir, BEST_WEIGHTS_FILE, "the best epoch's weights")
        if progress.stopped_early and best_file.is_file():
            _load_weights_only(model, best_file)
            self.log(f"restored the weights of epoch {progress.best['epoch']}")

    def _final_scores(self, model, pipes: _Pipelines) -> tuple[dict, dict]:
        """BatchNorm recalibration over the training set, then validation and test scores."""
        c, ds = self.config, self.dataset
        recalibration = {}
        if c.recalibrate:
            t1 = time.time()
            n = recalibrate_batchnorm(model, pipes.recalibration, c.recalibrate_steps)
            recalibration = {"batches": n, "seconds": round(time.time() - t1, 2)}
            self.log(f"BatchNorm statistics recalibrated on {n} training batches in {recalibration['seconds']} s")
        scores: dict = {}
        if pipes.val is not None:
            scores.update(self._evaluate(model, pipes.val, ds.val, prefix="val_"))
        if ds.test is not None and len(ds.test):
            scores.update(self._evaluate(model, self._pipeline(ds.test, training=False), ds.test, prefix="test_"))
        return recalibration, scores

    def _save_model(self, model, data_config):
        """model.keras: the main output only, with the run's class names and preprocessing inside."""
        import keras

        from anyshape.model_info import ModelInfo, save_model

        c = self.config
        # the main output, uncompiled: model.keras is for predicting, exporting and fine-tuning, and
        # the optimizer state (twice the weights' size) is the checkpoints' job
        main = keras.Model(model.inputs, model.outputs[0], name=model.name)
        model_path = self.run_dir / "model.keras"
        trained = dataclasses.replace(data_config, input_size=tuple(self.input_shape[:2]))  # not the weights' size
        arch, config = _saved_network(model)
        main.anyshape_arch, main.anyshape_config = arch, config
        info = ModelInfo(trained, tuple(self.dataset.class_names), c.weights, architecture=arch, config=config)
        save_model(main, model_path, info)
        return main, model_path

    def _report(self, progress: _Progress, recalibration: dict, scores: dict, t_start: float) -> dict:
        import keras

        ds, history = self.dataset, progress.history
        train_seconds = sum(r["train_seconds"] for r in history)
        steady = [r["train_images_per_second"] for r in history[1:]] or [r["train_images_per_second"] for r in history]
        return {
            "config": self.config.to_json(),
            "data": {
                "source": ds.source,
                "classes": ds.class_names,
                "train": len(ds.train),
                "val": len(ds.val) if ds.val is not None else 0,
                "test": len(ds.test) if ds.test is not None else 0,
                "notes": ds.notes,
            },
            "input_shape": list(self.input_shape),
            "architecture": self.network,
            "backend": keras.backend.backend(),
            "epochs": history,
            "stopped_early": progress.stopped_early,
            "best": progress.best,
            "batchnorm_recalibration": recalibration,
            **scores,
            "train_seconds": round(train_seconds, 2),
            "train_images_per_second": round(float(np.median(steady)), 2) if steady else None,
            "wall_seconds": round(time.time() - t_start, 2),
            "model": "model.keras",
        }

    def _evaluate(self, model, pipeline, split, prefix: str) -> dict:
        probs = model.predict(pipeline.map(lambda x, y: x), verbose=0)
        if isinstance(probs, (list, tuple)):
            probs = probs[0]
        labels = split.labels
        pred = np.argmax(probs, axis=-1)
        p_true = np.clip(probs[np.arange(len(labels)), labels], 1e-12, 1.0)
        return {
            f"{prefix}accuracy": round(float(np.mean(pred == labels)), 5),
            f"{prefix}loss": round(float(-np.mean(np.log(p_true))), 5),
        }


def _saved_network(model) -> tuple[str, Any]:
    """The network and Config of the model model.keras holds: the main output only (no aux head)."""
    from anyshape.archs import model_config

    arch, config = model_config(model)  # type: ignore[misc]  # built by create_model
    if getattr(config, "aux_logits", False):
        config = config.replace(aux_logits=False)
    return arch.name, config


def _network_record(model) -> dict:
    """The network a run trains, for report.json and checkpoint.json: its name and its Config."""
    from anyshape.archs import model_config

    arch, config = model_config(model)  # type: ignore[misc]
    return {"name": arch.name, "config": config.to_dict()}


def _check_same_network(run_dir: Path, given: TrainConfig, stored: TrainConfig) -> None:
    """A resume given another network (or other options of it) than its run trains is refused."""
    if given.arch is not None and get_arch(given.arch).name != stored.arch:
        raise ValueError(
            f"arch={given.arch!r} (--arch): the run in {run_dir} trains {stored.arch!r}, not "
            f"{get_arch(given.arch).name!r}; a run resumes as the network it started with: resume without "
            "arch= (--arch), or start a new run in another folder"
        )
    if given.arch_options is not None and given.resolved().arch_options != stored.arch_options:
        raise ValueError(
            f"arch_options={given.arch_options!r} (--option) differ from the options the run in {run_dir} trains "
            f"{stored.arch} with, {stored.arch_options!r}: resume without them, or start a new run in another folder"
        )


def _is_own_file(f: Path) -> bool:
    """A file a run writes into its folder before its model.keras (and its temporary files)."""
    return f.is_file() and (
        f.name in (RUN_INFO_FILE, "checkpoint.json", BEST_WEIGHTS_FILE, "report.json")
        or f.name.startswith(("checkpoint-e", ".checkpoint", ".best.", f".{RUN_INFO_FILE}"))
    )


def _first_epoch_leftovers(run: Path) -> list[Path] | None:
    """The files of a run that stopped before its first checkpoint without removing them, or None.

    Such a folder holds no checkpoint.json (nothing to resume) and no report.json, only files the
    run writes (its classes.json, an epoch's weights or optimizer state written before the
    checkpoint.json that would name them, temporary files), none a link, and its classes.json is a
    run's record. Anything else in the folder makes it someone's folder, which is never emptied.
    """
    files = list(run.iterdir())
    if any(f.name in ("checkpoint.json", "report.json") or f.is_symlink() or not _is_own_file(f) for f in files):
        return None
    try:
        info = read_run_info(run)
    except (OSError, ValueError):
        return None
    if info is not None and not (isinstance(info, dict) and "classes" in info and info.get("model") == "model.keras"):
        return None
    return files


def _run_file(run_dir: Path, name, what: str) -> Path:
    """`run_dir / name` for a file a run reads or replaces, which must lie in the run folder itself.

    checkpoint.json is data on disk, not to be trusted: a name with a folder part, `..`, an
    absolute path, or a link leading out of the run folder would make a resume load a file that
    is not the run's and then delete it when the next checkpoint replaces it.
    """
    if isinstance(name, str) and name not in ("", ".", "..") and Path(name).name == name:
        path = run_dir / name
        if path.resolve().parent == run_dir.resolve():
            return path
    raise ValueError(
        f"{what} {name!r} is not a file in the run folder {run_dir}: a run reads and replaces only files of its "
        "own folder (no folder part, '..', or link leading out of it); refused, nothing was read or deleted"
    )


def _weights_view(model):
    """The same layers and variables as `model`, uncompiled.

    `save_weights` of a compiled model writes its optimizer state too (Keras' saving_lib visits
    `model.optimizer`), which would triple an InceptionV3 checkpoint (88 MB of weights, 174 MB of
    Adam moments) when the optimizer state already has a file of its own. An uncompiled view
    writes and reads the model's variables only.
    """
    import keras

    return keras.Model(model.inputs, model.outputs, name=model.name)


def _save_weights_only(model, path) -> None:
    """Model weights, atomically, without the optimizer state (see `_weights_view`)."""
    write_atomically(path, _weights_view(model).save_weights)


def _load_weights_only(model, path) -> None:
    """Model weights from a checkpoint; its optimizer state is restored (or not) separately.

    Files written with the optimizer inside (as earlier versions of anyshape wrote them) load the same:
    the view has no optimizer to restore, and Keras skips the file's.
    """
    _weights_view(model).load_weights(path)


def train(
    data="digits", *, output=None, resume: bool = False, dataset=None, verbose="auto", log=None, **options
) -> TrainResult:
    """Train InceptionV3 on `data` ('digits' or a class-per-subfolder folder) and save a run folder.

    Keyword options are the fields of `TrainConfig` (input_shape, weights, channel_adapt, freeze,
    stages, epochs, batch_size, learning_rate, lr_schedule, label_smoothing, aux_logits,
    aux_weight, augment, val_split, early_stopping, ...). `resume=True` continues the run in
    `output` from its last checkpoint with the configuration stored there. Returns a
    `TrainResult` (run_dir, model_path, test_accuracy, report, model).
    """
    unknown = set(options) - {f.name for f in dataclasses.fields(TrainConfig)}
    if unknown:
        raise TypeError(f"train() got unknown options {sorted(unknown)}; see anyshape.training.TrainConfig")
    config = TrainConfig(data=str(data), output=str(output) if output else None, **options)
    return Trainer(config, dataset=dataset, resume=resume, verbose=verbose, log=log).run()
