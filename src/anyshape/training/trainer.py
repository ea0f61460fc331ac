"""`train` and `Trainer`: one run, stage by stage and epoch by epoch (see anyshape.training)."""

from __future__ import annotations

import dataclasses
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from anyshape.archs import DEFAULT_ARCH, get_arch
from anyshape.errors import Message, ParameterError, message_of
from anyshape.interrupts import interrupts_held
from anyshape.training.batchnorm import recalibrate_batchnorm
from anyshape.training.config import TrainConfig, TrainingInterrupted, TrainResult, _check_same_network
from anyshape.training.data import DataPipeline, _Pipelines
from anyshape.training.freezing import freeze_layers
from anyshape.training.interrupts import interrupts_at_batch_ends
from anyshape.training.network import _network_record
from anyshape.training.run_folder import (
    BEST_WEIGHTS_FILE,
    RunFolder,
    _default_run_dir,
    _load_weights_only,
    _run_file,
    _save_weights_only,
    _write_json,
)

__all__ = ["Trainer", "train"]

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


class Trainer(DataPipeline, RunFolder):
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
                raise ParameterError("{resume=True} needs {output=} (the run folder to resume)")
            run_dir = Path(config.output)
            state = self._read_state(run_dir)
            given = config
            try:  # resolved() makes its lists tuples
                config = TrainConfig(**{**state["config"], "output": config.output})
                stored = config.resolved()
            except (TypeError, ValueError) as e:
                raise ValueError(
                    Message(
                        "{path}: its stored configuration cannot be used ({error}); the run cannot be resumed",
                        path=run_dir / "checkpoint.json",
                        error=message_of(e),
                    )
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

    def _run(self) -> TrainResult:
        import keras

        t_start = time.time()
        keras.utils.set_random_seed(self.config.seed)
        data_config = self._prepare_data()
        pipes = self._pipelines()
        # pretrained weights are read only for a fresh run; a resumed run gets them from its checkpoint.
        # Ctrl-C is held while TensorFlow builds the model and raised after it, as the CLI's verbs
        # hold it while they build or load theirs (anyshape.interrupts.interrupts_held says why).
        with interrupts_held():
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
        """One epoch (Ctrl-C raised at the end of a batch, or after the epoch's checkpoint)."""
        with interrupts_at_batch_ends() as callbacks:
            self._epoch(model, epoch, stage_index, pipes, progress, callbacks)

    def _epoch(self, model, epoch: int, stage_index: int, pipes: _Pipelines, progress: _Progress, callbacks) -> None:
        """One epoch of fit, validation, the best-so-far bookkeeping and the checkpoint."""
        c = self.config
        self.log(f"epoch {epoch + 1}/{c.total_epochs}")
        t0 = time.time()
        h = model.fit(
            pipes.train,
            epochs=1,
            verbose=self.verbose,
            steps_per_epoch=pipes.steps_per_epoch,
            shuffle=False,
            callbacks=callbacks,
        )
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
