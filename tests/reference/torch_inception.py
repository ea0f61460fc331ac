"""Reference PyTorch InceptionV3 models for weight-conversion parity tests (random, seeded).

A freshly initialised Inception3 has BatchNorm running statistics (0, 1) that do not match its
activations, so its logits grow to ~1e12 and an absolute tolerance means nothing. `calibrated`
sets every BatchNorm's running statistics to the statistics of a real forward pass (momentum
None = cumulative average, as anyshape.training.recalibrate_batchnorm), then randomises them around those
values, and randomises gamma and beta: realistic, seeded, non-trivial weights with O(1) logits.
"""

from __future__ import annotations

import numpy as np
import torch


def _randomise(bns, g) -> None:
    for m in bns:
        n = m.num_features
        m.momentum = 0.1
        std = m.running_var.sqrt()
        m.running_mean.add_(0.2 * std * torch.randn(n, generator=g))
        m.running_var.mul_(0.7 + 0.6 * torch.rand(n, generator=g))
        m.weight.copy_(0.6 + 0.8 * torch.rand(n, generator=g))
        m.bias.copy_(0.2 * torch.randn(n, generator=g))


def _scale(fc, logits) -> None:
    """Scale a classifier so that its logits have a standard deviation of about 2."""
    scale = 2.0 / float(logits.std())
    fc.weight.mul_(scale)
    fc.bias.mul_(scale)


def calibrated(model: torch.nn.Module, size: int = 150, seed: int = 0) -> torch.nn.Module:
    g = torch.Generator().manual_seed(seed)
    aux = getattr(model, "AuxLogits", None)
    model.AuxLogits = None  # torchvision runs it whenever training; it needs 299 px: done below
    bns = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None  # cumulative average: the running stats become this batch's stats
    with torch.no_grad():
        model.train()
        model(torch.rand(2, 3, size, size, generator=g) * 2 - 1)
        _randomise(bns, g)
        model.eval()
        _scale(model.fc, model(torch.rand(2, 3, size, size, generator=g) * 2 - 1))
        model.AuxLogits = aux
        if aux is not None:  # calibrate the aux head on the real Mixed_6e output at 299
            feats = {}
            hook = model.Mixed_6e.register_forward_hook(lambda mod, i, o: feats.__setitem__("m", o))
            model(torch.rand(2, 3, 299, 299, generator=g) * 2 - 1)
            hook.remove()
            aux_bns = [m for m in aux.modules() if isinstance(m, torch.nn.BatchNorm2d)]
            for m in aux_bns:
                m.reset_running_stats()
                m.momentum = None
            aux.train()
            aux(feats["m"])
            _randomise(aux_bns, g)
            aux.eval()
            _scale(aux.fc, aux(feats["m"]))
    return model


def torchvision_inception(
    aux_logits: bool = True, transform_input: bool = False, seed: int = 0, num_classes: int = 1000
):
    import torchvision

    torch.manual_seed(seed)
    model = torchvision.models.inception_v3(
        weights=None,
        aux_logits=aux_logits,
        init_weights=True,
        transform_input=transform_input,
        num_classes=num_classes,
    )
    return calibrated(model, seed=seed)


def predict(keras_model, x: np.ndarray):
    """One eager call (no tf.function tracing: cheaper than predict for a single batch)."""
    from keras import ops

    out = keras_model(x, training=False)
    if isinstance(out, (list, tuple)):
        return [ops.convert_to_numpy(o) for o in out]
    return ops.convert_to_numpy(out)


def run(model: torch.nn.Module, x_nhwc: np.ndarray, aux: bool = False):
    """Logits (and aux logits from Mixed_6e, which torchvision only runs in training mode)."""
    feats = {}
    hook = model.Mixed_6e.register_forward_hook(lambda mod, i, o: feats.__setitem__("mixed_6e", o))
    try:
        with torch.no_grad():
            out = model(torch.from_numpy(np.ascontiguousarray(x_nhwc.transpose(0, 3, 1, 2))))
            if isinstance(out, tuple):
                out = out[0]
            logits = out.numpy()
            if aux:
                return logits, model.AuxLogits(feats["mixed_6e"]).numpy()
    finally:
        hook.remove()
    return logits


def state_dict_numpy(model: torch.nn.Module) -> dict[str, np.ndarray]:
    return {k: v.detach().cpu().numpy() for k, v in model.state_dict().items()}


def top5(logits: np.ndarray) -> np.ndarray:
    return np.argsort(-logits, axis=1)[:, :5]
