"""torchvision / timm InceptionV3 state dicts -> Keras layout, exactly.

Reading never executes code from the file: `.safetensors` is read with `safetensors.numpy`
(no torch needed), everything else with `torch.load(..., weights_only=True)`, which refuses any
pickle that would need a class or function to rebuild; such a file is reported, not loaded.

Mapping (keys from torchvision/models/inception.py BasicConv2d and timm's ConvNormAct, which
use the same `conv` / `bn` names, see `anyshape.shapes.ConvSpec.torch_name`):
    <T>.conv.weight (out, in, kh, kw)     -> <unit>_conv kernel (kh, kw, in, out)
    <T>.bn.weight / .bias                 -> <unit>_bn gamma / beta (needs bn_scale=True)
    <T>.bn.running_mean / .running_var    -> <unit>_bn moving_mean / moving_variance
    <T>.bn.num_batches_tracked            -> dropped (a training counter)
    fc.weight (classes, 2048), fc.bias    -> predictions kernel (2048, classes), bias
    AuxLogits.fc.*                        -> aux_predictions
Both BatchNorms use eps 0.001 (torchvision BasicConv2d, timm norm_eps=1e-3), as Keras' model.
"""

from __future__ import annotations

import os
import pickle
import re
import warnings
import zipfile

import numpy as np

from anyshape.weights.checkpoint import CONV_SPECS, Checkpoint, WeightFileError

__all__ = ["read_state_dict", "read_torch_file", "state_dict_to_checkpoint", "checkpoint_to_state_dict"]

_WRAPPERS = ("state_dict", "model", "model_state_dict", "state_dict_ema", "model_ema")


def _to_numpy(value) -> np.ndarray:
    if isinstance(value, np.ndarray):
        return value
    t = value.detach().cpu()
    if t.is_floating_point():
        t = t.float()
    return t.numpy()


def read_state_dict(path: str) -> dict[str, np.ndarray]:
    """A state dict from a `.safetensors` or torch-saved file, as numpy arrays; no code runs."""
    if not os.path.isfile(path):
        raise WeightFileError(f"weights file {path!r} does not exist")
    if path.lower().endswith(".safetensors"):
        try:
            from safetensors.numpy import load_file
        except ImportError as e:
            raise WeightFileError(
                f"reading {path!r} needs the safetensors package: pip install safetensors "
                "(or pip install 'anyshape[torch]')"
            ) from e
        try:
            state = load_file(path)
        except Exception as e:  # SafetensorError, OSError: a damaged or truncated file
            raise WeightFileError(
                f"{path!r} is not a readable safetensors file ({e}); it may be truncated or corrupt: download it again"
            ) from e
        return {k: v.astype(np.float32) if v.dtype.kind == "f" else v for k, v in state.items()}
    try:
        import torch
    except ImportError as e:
        raise WeightFileError(
            f"reading the PyTorch file {path!r} needs torch (pip install torch), or convert it to "
            ".safetensors, which anyshape reads without torch"
        ) from e
    try:
        with warnings.catch_warnings():
            # torch warns, for a file pickled with protocol > 2, that its safe loader may not read
            # it: advice to torch's developers, not to whoever runs anyshape (a failure is reported)
            warnings.filterwarnings("ignore", message="Detected pickle protocol", category=UserWarning)
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        opcode = re.search(r"Unsupported operand (\d+)", str(e))
        if opcode:  # an opcode of a newer pickle protocol (protocol 4's FRAME is 149), not code
            raise WeightFileError(
                f"{path!r} was pickled with a protocol torch's safe loader cannot read (pickle opcode "
                f"{opcode.group(1)}): save it again with torch.save(state_dict, path) and its default "
                "protocol, or as .safetensors"
            ) from e
        raise WeightFileError(
            f"{path!r} was refused: it is a pickle that needs Python code to load (it is not a "
            "plain state dict of tensors), and anyshape never runs code from a weights file "
            "(torch.load(weights_only=True)). If you trust it, load it yourself and save "
            "model.state_dict() with torch.save or safetensors. Detail: " + str(e).splitlines()[0]
        ) from e
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError) as e:
        raise WeightFileError(
            f"{path!r} could not be read as a PyTorch file ({str(e).splitlines()[0]}); it is "
            "probably truncated or corrupt: download or save it again"
        ) from e
    return _unwrap(obj, path)


def _unwrap(obj, path: str) -> dict[str, np.ndarray]:
    if isinstance(obj, dict):
        for key in _WRAPPERS:
            if key in obj and isinstance(obj[key], dict):
                obj = obj[key]
                break
    if not isinstance(obj, dict) or not obj:
        raise WeightFileError(
            f"{path!r} holds a {type(obj).__name__}, not a state dict (a dict of tensor names to "
            "tensors); save model.state_dict()"
        )
    out = {}
    for k, v in obj.items():
        if not hasattr(v, "shape"):
            continue  # e.g. metadata entries
        k = k[len("module.") :] if k.startswith("module.") else k
        out[k] = _to_numpy(v)
    return out


def state_dict_to_checkpoint(state: dict[str, np.ndarray], source: str = "") -> Checkpoint:
    """Map a torchvision/timm InceptionV3 state dict to Keras layout; every key must be used."""
    if "Conv2d_1a_3x3.conv.weight" not in state:
        sample = ", ".join(list(state)[:4])
        raise WeightFileError(
            f"{source or 'state dict'} is not a torchvision/timm InceptionV3 state dict: it has no "
            f"'Conv2d_1a_3x3.conv.weight' (its first keys: {sample}). Another architecture's "
            "weights cannot be loaded into InceptionV3."
        )
    reader = _StateReader(state)
    units: dict[str, dict[str, np.ndarray]] = {}
    for spec in CONV_SPECS:
        unit = reader.conv_unit(spec)
        if unit is not None:
            units[spec.name] = unit
    for torch_name, name in (("fc", "predictions"), ("AuxLogits.fc", "aux_predictions")):
        unit = reader.dense_unit(torch_name)
        if unit is not None:
            units[name] = unit
    reader.raise_problems(source)
    return Checkpoint(units=units, source=source, layout="torch")


class _StateReader:
    """Takes tensors out of a state dict by torch name, noting what is missing, misshapen or left over."""

    def __init__(self, state: dict[str, np.ndarray]):
        self.state = state
        self.used: set[str] = set()
        self.missing: list[str] = []
        self.bad_shapes: list[str] = []

    def take(self, key: str) -> np.ndarray:
        self.used.add(key)
        return self.state[key]

    def conv_unit(self, spec) -> dict[str, np.ndarray] | None:
        """A conv + BatchNorm unit in Keras layout (kernel HWIO), or None if absent or wrong."""
        t, state = spec.torch_name, self.state
        keys = [f"{t}.conv.weight", f"{t}.bn.bias", f"{t}.bn.running_mean", f"{t}.bn.running_var"]
        present = [k in state for k in keys]
        if not all(present):
            if not (t.startswith("AuxLogits.") and not any(present)):  # else: no aux head in this file
                self.missing += [k for k, p in zip(keys, present) if not p]
            return None
        w = self.take(f"{t}.conv.weight")
        if w.ndim != 4 or w.shape[0] != spec.filters or tuple(w.shape[2:]) != spec.kernel:
            self.bad_shapes.append(
                f"{t}.conv.weight {tuple(w.shape)} (InceptionV3: ({spec.filters}, in, {spec.kernel[0]}, {spec.kernel[1]}))"
            )
            return None
        unit = {"kernel": np.ascontiguousarray(w.transpose(2, 3, 1, 0))}
        if f"{t}.bn.weight" in state:
            unit["gamma"] = self.take(f"{t}.bn.weight")
        unit["beta"] = self.take(f"{t}.bn.bias")
        unit["moving_mean"] = self.take(f"{t}.bn.running_mean")
        unit["moving_variance"] = self.take(f"{t}.bn.running_var")
        self.used.add(f"{t}.bn.num_batches_tracked")
        return unit

    def dense_unit(self, torch_name: str) -> dict[str, np.ndarray] | None:
        """A Linear layer as a Keras Dense unit (kernel transposed), or None if absent or wrong."""
        wk, bk = f"{torch_name}.weight", f"{torch_name}.bias"
        if wk in self.state and bk in self.state:
            w, b = self.take(wk), self.take(bk)
            if w.ndim != 2 or b.shape != (w.shape[0],):
                self.bad_shapes.append(f"{wk} {tuple(w.shape)} / {bk} {tuple(b.shape)}")
                return None
            return {"kernel": np.ascontiguousarray(w.T), "bias": b}
        if wk in self.state or bk in self.state:
            self.missing.append(bk if wk in self.state else wk)
        return None

    def raise_problems(self, source: str) -> None:
        """One error naming every kind of mismatch; nothing is loaded from a file that has one."""
        unexpected = [k for k in self.state if k not in self.used and not k.endswith("num_batches_tracked")]
        problems = []
        if self.missing:
            problems.append(f"missing {len(self.missing)} keys (e.g. {', '.join(self.missing[:3])})")
        if self.bad_shapes:
            bad = self.bad_shapes
            problems.append(f"{len(bad)} tensors with the wrong shape (e.g. {'; '.join(bad[:2])})")
        if unexpected:
            problems.append(f"{len(unexpected)} keys InceptionV3 does not have (e.g. {', '.join(unexpected[:3])})")
        if problems:
            raise WeightFileError(
                f"{source or 'state dict'} does not match torchvision/timm InceptionV3: "
                + "; ".join(problems)
                + ". It is probably another architecture or a modified model; nothing was loaded."
            )


def read_torch_file(path: str) -> Checkpoint:
    """Read and map a torchvision/timm InceptionV3 `.pth`/`.pt`/`.bin`/`.safetensors` file."""
    return state_dict_to_checkpoint(read_state_dict(path), source=path)


def checkpoint_to_state_dict(ck: Checkpoint) -> dict[str, np.ndarray]:
    """The inverse mapping (Keras layout -> torchvision keys), e.g. to export to PyTorch."""
    out: dict[str, np.ndarray] = {}
    for spec in CONV_SPECS:
        u = ck.units.get(spec.name)
        if u is None:
            continue
        t = spec.torch_name
        out[f"{t}.conv.weight"] = np.ascontiguousarray(u["kernel"].transpose(3, 2, 0, 1))
        out[f"{t}.bn.weight"] = u.get("gamma", np.ones_like(u["beta"]))
        out[f"{t}.bn.bias"] = u["beta"]
        out[f"{t}.bn.running_mean"] = u["moving_mean"]
        out[f"{t}.bn.running_var"] = u["moving_variance"]
    for torch_name, name in (("fc", "predictions"), ("AuxLogits.fc", "aux_predictions")):
        if name in ck.units:
            out[f"{torch_name}.weight"] = np.ascontiguousarray(ck.units[name]["kernel"].T)
            out[f"{torch_name}.bias"] = ck.units[name]["bias"]
    return out
