"""Adapting the first convolution's kernel to another number of input channels.

Only the first conv (stem_1a_3x3, torchvision's Conv2d_1a_3x3) sees the input's channels, so a
pretrained RGB network works on C channels once its (3, 3, 3, 32) kernel becomes (3, 3, C, 32);
every other layer is unchanged. Each rule below is exact in the sense stated (the first conv's
output is a linear function of the input, and these identities hold for that function):

  "sum"     every channel gets k_R + k_G + k_B. With C = 1: the model on a gray image equals
            the RGB model on that image replicated to R = G = B. (Default for 1 channel.)
  "mean"    every channel gets (k_R + k_G + k_B) / C: the model on a C-channel image equals the
            RGB model on the mean of its channels replicated to RGB. (With C = 1, the same as "sum".)
  "repeat"  the RGB kernels tiled over the C channels and scaled by 3 / C (timm's
            adapt_input_conv rule). When C is a multiple of 3, the image [R, G, B, R, G, B, ...]
            gives the RGB model's output. (Default for 2 and >= 4 channels.)
  "zero"    the RGB kernels on the first three channels, zeros on the others: the extra
            channels start with no effect (an RGB+extra image gives the RGB model's output) and
            are learned in fine-tuning. With C < 3 the first C kernels are kept.
  "random"  a fresh Glorot-uniform kernel (Keras' Conv2D default), e.g. for inputs unlike photos.
  mapping   a sequence of length C: for each input channel, the index of the source channel
            whose kernel it takes, or None for zeros. (2, 1, 0) makes a BGR model; (0, 1, 2, None)
            is "zero" for RGBA.

Source kernels with other than 3 channels work the same way ("RGB" above is the source's
channels).
"""

from __future__ import annotations

import numpy as np

__all__ = ["RULES", "adapt_kernel", "default_rule", "describe_rule"]

RULES = ("sum", "mean", "repeat", "zero", "random")


def default_rule(channels: int) -> str:
    return "sum" if channels == 1 else "repeat"


def describe_rule(rule) -> str:
    if isinstance(rule, str):
        return repr(rule)
    return f"mapping {tuple(rule)}"


def _check_mapping(rule, channels: int, source: int) -> list[int | None]:
    try:
        mapping = list(rule)
    except TypeError:
        mapping = None
    if mapping is None or len(mapping) != channels:
        raise ValueError(
            f"channel_adapt mapping {rule!r} must have one entry per input channel ({channels}): "
            f"each the index (0..{source - 1}) of the pretrained channel whose kernel it takes, or None for zeros"
        )
    for m in mapping:
        if m is not None and (not isinstance(m, (int, np.integer)) or isinstance(m, bool) or not 0 <= m < source):
            raise ValueError(
                f"channel_adapt mapping {rule!r}: entry {m!r} is not None or a channel index in 0..{source - 1}"
            )
    return mapping


def check_rule(rule, channels: int, source: int = 3) -> None:
    """Raise ValueError for a rule that cannot apply, before anything is loaded."""
    if isinstance(rule, str):
        if rule not in RULES:
            raise ValueError(
                f"channel_adapt={rule!r} is not a rule: use one of {', '.join(map(repr, RULES))} "
                "or a mapping (for each input channel, a pretrained channel index or None)"
            )
        return
    _check_mapping(rule, channels, source)


def adapt_kernel(kernel: np.ndarray, channels: int, rule, *, seed: int | None = None) -> np.ndarray:
    """`kernel` (kh, kw, S, out) -> (kh, kw, channels, out) by `rule` (see the module docstring)."""
    kh, kw, source, out = kernel.shape
    check_rule(rule, channels, source)
    kernel = np.asarray(kernel, dtype=np.float32)
    if not isinstance(rule, str):
        mapping = _check_mapping(rule, channels, source)
        result = np.zeros((kh, kw, channels, out), np.float32)
        for c, m in enumerate(mapping):
            if m is not None:
                result[:, :, c] = kernel[:, :, m]
        return result
    if rule == "sum":
        total = kernel.sum(axis=2, keepdims=True)
        return np.repeat(total, channels, axis=2)
    if rule == "mean":
        total = kernel.sum(axis=2, keepdims=True) / np.float32(channels)
        return np.repeat(total, channels, axis=2)
    if rule == "repeat":
        reps = -(-channels // source)
        tiled = np.tile(kernel, (1, 1, reps, 1))[:, :, :channels]
        return tiled * np.float32(source / channels)
    if rule == "zero":
        result = np.zeros((kh, kw, channels, out), np.float32)
        n = min(channels, source)
        result[:, :, :n] = kernel[:, :, :n]
        return result
    # "random": Glorot uniform, Keras' default kernel initializer for Conv2D
    fan_in, fan_out = kh * kw * channels, kh * kw * out
    limit = np.sqrt(6.0 / (fan_in + fan_out))
    rng = np.random.default_rng(seed)
    return rng.uniform(-limit, limit, size=(kh, kw, channels, out)).astype(np.float32)
