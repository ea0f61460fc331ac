"""A tiny network for the tests of mechanics (training, checkpoints, freezing, BatchNorm), registered
through `anyshape.archs.register_arch` like a user's own network, as timm's tests register small
`test_*` models (timm/models/test.py) so that mechanics are not tested on a 20 M-parameter network.

Written in the vocabulary of `anyshape.archs.ops` like every anyshape network (compare
`anyshape.archs.inception_v3`): a stem (3x3 conv, stride 2, BatchNorm, ReLU), a table of blocks
(`STAGES`: each a 3x3 conv + BatchNorm + ReLU, a residual add where the shape allows), and
keras.applications' usual head (`classifier_head`: global average pool, optional dropout, the
dense "predictions"). About 3,000 parameters at the default width: a train step takes
milliseconds, a traced one about a second.

    import tiny_net
    with tiny_net.registered():                      # or tiny_net.register() / unregister()
        model = anyshape.create_model("tiny_test_net", weights=None, input_shape=(32, 32, 1), classes=4)

It is never part of anyshape's own registry (`anyshape.list_models()` without the tests).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass

from anyshape.archs import Arch, ArchConfig, get_arch, register_arch, unregister_arch
from anyshape.archs.base import classifier_head

NAME = "tiny_test_net"
BN_EPSILON = 1e-3


@dataclass(frozen=True)
class TinyNetConfig(ArchConfig):
    """The tiny network's build arguments: the ArchConfig ones and its width."""

    width: int = 8  # the stem's filters; the blocks have width * their table multiple

    def problems(self) -> list[str]:
        out = super().problems()
        if isinstance(self.width, bool) or not isinstance(self.width, int) or self.width < 1:
            out.append(f"width must be a positive integer, got {self.width!r}")
        return out


# (block name, width multiple, stride): block1 keeps the stem's map, block2 halves it
STAGES: tuple[tuple[str, int, int], ...] = (("block1", 1, 1), ("block2", 2, 2), ("block3", 2, 1))


def _conv_bn(net, x, filters: int, strides: int, name: str):
    x = net.conv(x, filters, 3, strides, "same", use_bias=False, name=f"{name}_conv")
    return net.bn(x, epsilon=BN_EPSILON, name=f"{name}_bn")


def network(net, cfg: TinyNetConfig, x):
    """The stem, the blocks of `STAGES`, the head."""
    with net.stage("stem", f"3x3 conv {cfg.width}, stride 2 + BN + ReLU"):
        x = net.activation(_conv_bn(net, x, cfg.width, 2, "stem"), "relu", name="stem_relu")
    channels = cfg.width
    for name, multiple, stride in STAGES:
        filters = cfg.width * multiple
        residual = stride == 1 and filters == channels
        what = f"3x3 conv {filters}" + (f", stride {stride}" if stride > 1 else "") + " + BN"
        with net.stage(name, what + (" + residual" if residual else "") + " + ReLU"):
            y = _conv_bn(net, x, filters, stride, name)
            if residual:
                y = net.add([x, y], name=f"{name}_add")
            x = net.activation(y, "relu", name=name)
        channels = filters
    return classifier_head(net, cfg, x)


ARCH = Arch(
    name=NAME,
    keras_name="TinyTestNet",
    family="tiny_net",
    config_class=TinyNetConfig,
    network=network,
    default_size=32,
    first_conv="stem_conv",
    classifier=("predictions",),
    blocks=tuple(name for name, _, _ in STAGES),
    feature_points=("stem_relu", "block3"),
    preprocessing="tf",
    description="the tests' tiny network: a stem and three conv + BN + ReLU blocks",
)


def register() -> Arch:
    """Register the tiny network (once: a second call finds it registered)."""
    try:
        if get_arch(NAME) is ARCH:
            return ARCH
    except ValueError:
        pass
    return register_arch(ARCH)


def unregister() -> None:
    unregister_arch(NAME)


@contextlib.contextmanager
def registered() -> Iterator[Arch]:
    """The tiny network registered inside the block, and gone again after it."""
    register()
    try:
        yield ARCH
    finally:
        unregister()
