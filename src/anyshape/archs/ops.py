"""The layer vocabulary every network is written in, and the shape tracer that runs it without Keras.

A network (see `anyshape.archs`) is one function, `network(net, config, x)`, that calls the methods
of an `Ops` object: `net.conv(...)`, `net.bn(...)`, `net.add([...])` and so on, one per Keras layer
kind that keras.applications uses (`Ops`, `T`, stages: `archs/vocabulary.py`). Two classes
implement them:

- `anyshape.archs.keras_ops.KerasOps` creates the Keras layers: the function then *is* the model
  builder.
- `ShapeOps` (`archs/shape_ops.py`, pure Python) follows H x W x C through the same calls and records, per stage,
  the output shape, the parameters and the multiply-accumulates, and where a window collapses or a
  merge joins maps of different sizes. This is `anyshape.explain`.

Because both run the same function, `explain` cannot disagree with the model it describes (the
per-network harness, tests/test_archs.py, checks it against Keras' own shape inference anyway), and
every network's minimum size is computed from its calls, not typed in.

Stages group layers into the rows of the report: `with net.stage("conv2_block1", "bottleneck"):`.
A stage's output is the last tensor made inside it. Stages do not nest: a stage opened inside
another adds its layers to the outer one, so a helper such as a conv + BN + ReLU unit can open its
own stage and still be used inside a larger block. A layer made outside any stage is a stage of
its own, named after the layer.

This module is the namespace of both (the names networks, `shapes` and the tests import).
"""

from __future__ import annotations

from anyshape.archs.shape_ops import ShapeOps, Trace
from anyshape.archs.vocabulary import Collapse, Ops, Stage, T, padding_pairs, pair, window_size

__all__ = ["Ops", "ShapeOps", "Trace", "T", "Stage", "Collapse", "window_size", "pair", "padding_pairs"]
