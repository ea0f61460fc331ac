"""How both backends spread a run over the cores (`anyshape.engine` says why it is faster): a
batch of more than one image is cut into one piece per core, the pieces run at once, each on one
core; several small batches (of different shapes) run side by side, one per core."""

from __future__ import annotations

import numpy as np


def pieces(n: int, threads: int) -> list[slice]:
    """A batch of `n` images cut into one contiguous piece per core (n pieces when n < threads)."""
    return [slice(int(p[0]), int(p[-1]) + 1) for p in np.array_split(np.arange(n), min(threads, n))]


def one_per_core(batches: list, threads: int) -> bool:
    """Whether `batches` run side by side, one per core: several small ones. Big batches (on
    average two images per core or more) are each split across the cores instead."""
    return threads > 1 and len(batches) > 1 and sum(len(b) for b in batches) < 2 * threads * len(batches)
