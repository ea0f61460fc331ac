"""The run folder: its files, the checkpoints (weights and optimizer state, written atomically,
checkpoint.json last) and the safety rules (never another's folder, only files of its own)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from anyshape.archs import Arch
from anyshape.atomic_write import write_atomically
from anyshape.errors import Message, OutputExistsError, ParameterError
from anyshape.model_info import RUN_INFO_FILE, read_run_info
from anyshape.training.config import TrainConfig, _is_whole

__all__ = ["RunFolder", "TrainerState", "BEST_WEIGHTS_FILE"]

BEST_WEIGHTS_FILE = "best.weights.h5"  # early stopping's best epoch, kept on disk for a resume


class TrainerState:
    """What a run knows, shared by the parts of `Trainer` (set in `Trainer.__init__` and as it runs)."""

    config: TrainConfig
    arch: Arch
    dataset: Any
    input_shape: tuple
    preprocess: dict
    run_dir: Path
    state: dict | None
    resume: bool
    network: dict
    log: Callable[[str], None]


def _write_json(path: Path, obj) -> None:
    def write(tmp):
        with open(tmp, "w") as f:
            json.dump(obj, f, indent=2)
            f.write("\n")

    write_atomically(path, write)


def _default_run_dir(config: TrainConfig) -> Path:
    name = "digits" if config.data == "digits" else Path(config.data).resolve().name
    return Path("runs") / f"{name}-{time.strftime('%Y%m%d-%H%M%S')}"


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


class RunFolder(TrainerState):
    """`Trainer`'s part that reads and writes its run folder."""

    @staticmethod
    def _read_state(run_dir: Path) -> dict:
        path = run_dir / "checkpoint.json"
        if not path.is_file():
            raise FileNotFoundError(
                Message(
                    "{run_dir} has no checkpoint.json to resume from: it is not a run folder, "
                    "or the run stopped before its first epoch ended; start it again without {resume=True}",
                    run_dir=run_dir,
                )
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

    def _check_run_folder(self) -> None:
        """Refuse a run folder that is a file, holds another run, or lies inside the data."""
        run = self.run_dir
        if run.exists() and not run.is_dir():
            raise OutputExistsError("{run} is a file, not a run folder: give a folder as {output=}", run=run)
        if not self.resume and run.exists() and any(run.iterdir()):
            leftovers = _first_epoch_leftovers(run)
            if leftovers is None:
                raise OutputExistsError(
                    "{run} exists and is not empty: give another output folder, "
                    "or {resume=True} to continue the run in it",
                    run=run,
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
                raise ParameterError(
                    "the run folder {run} is inside the data folder {data}, where it "
                    "would be read as a class: give an output folder outside it ({output=})",
                    run=run,
                    data=self.config.data,
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
