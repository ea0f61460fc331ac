"""InceptionV3 (Szegedy et al. 2016), as keras.applications builds it, at any input shape.

Why it takes any H, W >= 75: every layer before the head is a convolution or a pooling window that
slides over its input, so a larger image only gives larger feature maps. Seven of those windows are
"valid" (unpadded) with stride 1 or 2; each needs an input at least as large as its kernel.
Following them back from the last one (mixed8's 3x3 stride-2 convolution, which needs 3 pixels)
gives 75 as the smallest input; the shape tracer finds it from the calls below. The head is a
global average pool, which turns any H x W x 2048 map into 2048 numbers, so the classifier's
2048 x classes weights do not depend on the image size either.

The architecture is a table (`STEM`, `BLOCKS`, `AUX_CONVS`): layer names, torchvision names,
filters, kernels, strides, paddings and the wiring. A `BlockSpec` is a tuple of `BranchSpec`s
concatenated in order; each branch reads the block input through an optional pool, a chain of
`ConvSpec` units and an optional split (parallel units concatenated, as in Inception E). The network
function walks it; the `torch_name` of every unit is what maps a torchvision/timm state dict onto it
(`anyshape.weights.torch`).

Compatibility with keras.applications.InceptionV3 is by construction: the same conv + BN
(scale=False) + ReLU units, the same branch order in every concatenation, the same block output
names (mixed0 ... mixed10, avg_pool, predictions), so the weighted layers come out in the same
topological order with the same shapes and `ours.set_weights(keras_model.get_weights())` and
Keras' weight files work unchanged. Inner layers are named after the block and the branch they
belong to, with torchvision's branch names (`mixed0_branch5x5_2_conv`).

Two build options make it the same function as torchvision's and timm's InceptionV3:
`bn_scale=True` (their BatchNorm has a gamma) and `count_include_pad=True` (their 3x3 stride-1
average pools pad with zeros and always divide by 9, where Keras' 'same' pooling divides by the
number of real pixels; the two differ on border pixels only).
"""

from __future__ import annotations

from dataclasses import dataclass

from anyshape.archs.base import Arch, ArchConfig, classifier_head

__all__ = ["InceptionV3Config", "ConvSpec", "BranchSpec", "BlockSpec", "STEM", "BLOCKS", "AUX_CONVS", "ARCHS"]

BN_EPSILON = 1e-3  # Keras' and torchvision's InceptionV3 both use 0.001
AUX_BLOCK = "mixed7"  # the auxiliary classifier reads mixed7 (torchvision's Mixed_6e)


@dataclass(frozen=True)
class InceptionV3Config(ArchConfig):
    """InceptionV3's build arguments (see `anyshape.InceptionV3` for each one's meaning)."""

    aux_logits: bool = False  # torchvision's auxiliary classifier on mixed7: outputs [main, aux]
    count_include_pad: bool = False  # True: the 3x3 pool branches divide by 9 (torch semantics)
    bn_scale: bool = False  # True: BatchNorm has a gamma (torchvision/timm layout)

    def problems(self) -> list[str]:
        out = super().problems()
        if self.aux_logits and not self.include_top:
            out.append(
                "aux_logits=True needs include_top=True: the auxiliary classifier is a second "
                "classification output and only exists beside the main classifier"
            )
        return out


@dataclass(frozen=True)
class ConvSpec:
    """One convolution + BatchNorm + ReLU unit (Keras' `conv2d_bn`, torchvision's BasicConv2d)."""

    name: str  # our layer prefix: f"{name}_conv", f"{name}_bn", f"{name}_relu"
    torch_name: str  # torchvision/timm module path, e.g. "Mixed_5b.branch5x5_2"
    filters: int
    kernel: tuple[int, int]
    strides: int = 1
    padding: str = "same"


@dataclass(frozen=True)
class BranchSpec:
    """One branch of an Inception block: an optional pool, a chain of conv units, an optional split.

    The branch reads the block's input. `pool` "avg" is the 3x3 stride-1 average pool in front
    of a pool branch's conv; "max" is the 3x3 stride-2 valid max pool of a reduction block (a
    branch of its own, without convs). `convs` run one after the other. `split` (Inception E)
    is a set of conv units that all read the chain's output and are concatenated into a layer
    named `split_name`. Its output width is therefore known from the spec alone.
    """

    name: str  # the branch's name in the block, e.g. "branch5x5" or "branch_pool"
    convs: tuple[ConvSpec, ...] = ()
    pool: str | None = None  # None, "avg" or "max"
    split: tuple[ConvSpec, ...] = ()
    split_name: str | None = None

    def units(self) -> tuple[ConvSpec, ...]:
        """The branch's conv units in order: the chain, then the split."""
        return self.convs + self.split

    def channels(self, cin: int) -> int:
        """Output channels of the branch on an input of `cin` channels."""
        if self.split:
            return sum(s.filters for s in self.split)
        return self.convs[-1].filters if self.convs else cin


@dataclass(frozen=True)
class BlockSpec:
    """One Inception block (mixed0 ... mixed10): its branches, concatenated in order."""

    name: str  # Keras' name: "mixed0" ... "mixed10"
    torch_name: str  # "Mixed_5b" ... "Mixed_7c"
    what: str  # what the block does, in words (the shape report's "what" column)
    branches: tuple[BranchSpec, ...] = ()

    def convs(self) -> list[ConvSpec]:
        """The block's conv units, branch by branch."""
        return [spec for branch in self.branches for spec in branch.units()]

    def channels(self, cin: int) -> int:
        """Output channels of the block on an input of `cin` channels (the branches' sum)."""
        return sum(branch.channels(cin) for branch in self.branches)


# --------------------------------------------------------------------------------------------
# InceptionV3's blocks: one function per kind (A-E, as in the paper and torchvision)


def _unit(block: str, torch_block: str, unit: str, filters: int, kernel, strides=1, padding="same"):
    kernel = (kernel, kernel) if isinstance(kernel, int) else tuple(kernel)
    return ConvSpec(f"{block}_{unit}", f"{torch_block}.{unit}", filters, kernel, strides, padding)


def _branch(block: str, torch_block: str, name: str, *units, pool=None, split=(), split_name=None):
    """A branch whose conv units are (unit name, filters, kernel[, strides, padding]) tuples."""
    return BranchSpec(
        name,
        tuple(_unit(block, torch_block, *u) for u in units),
        pool,
        tuple(_unit(block, torch_block, *u) for u in split),
        split_name,
    )


def _block_a(name: str, torch_name: str, pool_features: int) -> BlockSpec:
    b = lambda *args, **kw: _branch(name, torch_name, *args, **kw)  # noqa: E731
    return BlockSpec(
        name,
        torch_name,
        "Inception A (35x35 at 299)",
        (
            b("branch1x1", ("branch1x1", 64, 1)),
            b("branch5x5", ("branch5x5_1", 48, 1), ("branch5x5_2", 64, 5)),
            b("branch3x3dbl", ("branch3x3dbl_1", 64, 1), ("branch3x3dbl_2", 96, 3), ("branch3x3dbl_3", 96, 3)),
            b("branch_pool", ("branch_pool", pool_features, 1), pool="avg"),
        ),
    )


def _block_b(name: str, torch_name: str) -> BlockSpec:
    b = lambda *args, **kw: _branch(name, torch_name, *args, **kw)  # noqa: E731
    return BlockSpec(
        name,
        torch_name,
        "Inception B, reduction",
        (
            b("branch3x3", ("branch3x3", 384, 3, 2, "valid")),
            b(
                "branch3x3dbl",
                ("branch3x3dbl_1", 64, 1),
                ("branch3x3dbl_2", 96, 3),
                ("branch3x3dbl_3", 96, 3, 2, "valid"),
            ),
            b("branch_pool", pool="max"),
        ),
    )


def _block_c(name: str, torch_name: str, c7: int) -> BlockSpec:
    b = lambda *args, **kw: _branch(name, torch_name, *args, **kw)  # noqa: E731
    return BlockSpec(
        name,
        torch_name,
        "Inception C (17x17 at 299)",
        (
            b("branch1x1", ("branch1x1", 192, 1)),
            b("branch7x7", ("branch7x7_1", c7, 1), ("branch7x7_2", c7, (1, 7)), ("branch7x7_3", 192, (7, 1))),
            b(
                "branch7x7dbl",
                ("branch7x7dbl_1", c7, 1),
                ("branch7x7dbl_2", c7, (7, 1)),
                ("branch7x7dbl_3", c7, (1, 7)),
                ("branch7x7dbl_4", c7, (7, 1)),
                ("branch7x7dbl_5", 192, (1, 7)),
            ),
            b("branch_pool", ("branch_pool", 192, 1), pool="avg"),
        ),
    )


def _block_d(name: str, torch_name: str) -> BlockSpec:
    b = lambda *args, **kw: _branch(name, torch_name, *args, **kw)  # noqa: E731
    return BlockSpec(
        name,
        torch_name,
        "Inception D, reduction",
        (
            b("branch3x3", ("branch3x3_1", 192, 1), ("branch3x3_2", 320, 3, 2, "valid")),
            b(
                "branch7x7x3",
                ("branch7x7x3_1", 192, 1),
                ("branch7x7x3_2", 192, (1, 7)),
                ("branch7x7x3_3", 192, (7, 1)),
                ("branch7x7x3_4", 192, 3, 2, "valid"),
            ),
            b("branch_pool", pool="max"),
        ),
    )


def _block_e(name: str, torch_name: str, split_3x3_name: str) -> BlockSpec:
    """`split_3x3_name`: Keras names the 3x3 split "mixed9_0" in mixed9, "mixed9_1" in mixed10."""
    b = lambda *args, **kw: _branch(name, torch_name, *args, **kw)  # noqa: E731
    return BlockSpec(
        name,
        torch_name,
        "Inception E (8x8 at 299)",
        (
            b("branch1x1", ("branch1x1", 320, 1)),
            b(
                "branch3x3",
                ("branch3x3_1", 384, 1),
                split=(("branch3x3_2a", 384, (1, 3)), ("branch3x3_2b", 384, (3, 1))),
                split_name=split_3x3_name,
            ),
            b(
                "branch3x3dbl",
                ("branch3x3dbl_1", 448, 1),
                ("branch3x3dbl_2", 384, 3),
                split=(("branch3x3dbl_3a", 384, (1, 3)), ("branch3x3dbl_3b", 384, (3, 1))),
                split_name=f"{name}_branch3x3dbl",
            ),
            b("branch_pool", ("branch_pool", 192, 1), pool="avg"),
        ),
    )


STEM: tuple[ConvSpec | str, ...] = (
    ConvSpec("stem_1a_3x3", "Conv2d_1a_3x3", 32, (3, 3), 2, "valid"),
    ConvSpec("stem_2a_3x3", "Conv2d_2a_3x3", 32, (3, 3), 1, "valid"),
    ConvSpec("stem_2b_3x3", "Conv2d_2b_3x3", 64, (3, 3), 1, "same"),
    "stem_pool1",  # 3x3 stride-2 valid max pool
    ConvSpec("stem_3b_1x1", "Conv2d_3b_1x1", 80, (1, 1), 1, "valid"),
    ConvSpec("stem_4a_3x3", "Conv2d_4a_3x3", 192, (3, 3), 1, "valid"),
    "stem_pool2",
)
"""The stem, in order: conv units and the two 3x3 stride-2 max pools (by name)."""

BLOCKS: tuple[BlockSpec, ...] = (
    _block_a("mixed0", "Mixed_5b", 32),
    _block_a("mixed1", "Mixed_5c", 64),
    _block_a("mixed2", "Mixed_5d", 64),
    _block_b("mixed3", "Mixed_6a"),
    _block_c("mixed4", "Mixed_6b", 128),
    _block_c("mixed5", "Mixed_6c", 160),
    _block_c("mixed6", "Mixed_6d", 160),
    _block_c("mixed7", "Mixed_6e", 192),
    _block_d("mixed8", "Mixed_7a"),
    _block_e("mixed9", "Mixed_7b", "mixed9_0"),
    _block_e("mixed10", "Mixed_7c", "mixed9_1"),
)

AUX_CONVS = (
    ConvSpec("aux_conv0", "AuxLogits.conv0", 128, (1, 1), 1, "valid"),
    ConvSpec("aux_conv1", "AuxLogits.conv1", 768, (5, 5), 1, "valid"),
)
AUX_BLOCK = "mixed7"  # the auxiliary classifier reads mixed7 (torchvision's Mixed_6e)


# --------------------------------------------------------------------------------------------
# the network


def _conv_what(spec: ConvSpec) -> str:
    kh, kw = spec.kernel
    what = f"{kh}x{kw} conv {spec.filters}" + (f", stride {spec.strides}" if spec.strides > 1 else "")
    return what + f", {spec.padding}"


def _conv_bn(net, x, spec: ConvSpec, cfg: InceptionV3Config):
    """Conv (no bias) + BatchNorm + ReLU: Keras' `conv2d_bn`, torchvision's BasicConv2d."""
    with net.stage(spec.name, _conv_what(spec)):
        x = net.conv(x, spec.filters, spec.kernel, spec.strides, spec.padding, use_bias=False, name=f"{spec.name}_conv")
        x = net.bn(x, epsilon=BN_EPSILON, scale=cfg.bn_scale, name=f"{spec.name}_bn")
        return net.activation(x, "relu", name=f"{spec.name}_relu")


def _run_branch(net, x, block: BlockSpec, branch: BranchSpec, cfg: InceptionV3Config):
    """One branch as its spec wires it: pool, chain of conv units, split concatenated."""
    name = f"{block.name}_{branch.name}"
    if branch.pool == "max":
        x = net.max_pool(x, 3, 2, "valid", name=f"{name}_max")
    elif branch.pool == "avg":
        if cfg.count_include_pad:  # zeros padded, always / 9 (torch); see the module docstring
            x = net.pad(x, 1, name=f"{name}_pad")
            x = net.avg_pool(x, 3, 1, "valid", name=f"{name}_avg")
        else:
            x = net.avg_pool(x, 3, 1, "same", name=f"{name}_avg")
    for spec in branch.convs:
        x = _conv_bn(net, x, spec, cfg)
    if branch.split:
        x = net.concat([_conv_bn(net, x, s, cfg) for s in branch.split], name=branch.split_name)
    return x


def network(net, cfg: InceptionV3Config, x):
    """InceptionV3 on `x` (NHWC): the stem, mixed0 ... mixed10, the head and the aux head."""
    for item in STEM:
        if isinstance(item, str):
            with net.stage(item, "3x3 max pool, stride 2, valid"):
                x = net.max_pool(x, 3, 2, "valid", name=item)
        else:
            x = _conv_bn(net, x, item, cfg)
    aux_input = None
    for block in BLOCKS:
        with net.stage(block.name, block.what):
            x = net.concat([_run_branch(net, x, block, branch, cfg) for branch in block.branches], name=block.name)
        if block.name == AUX_BLOCK:
            aux_input = x
    if not (cfg.include_top and cfg.aux_logits):
        return classifier_head(net, cfg, x)
    main = classifier_head(net, cfg, x)
    with net.stage("aux_pool", "5x5 average pool, stride 3, valid"):
        a = net.avg_pool(aux_input, 5, 3, "valid", name="aux_pool")
    for spec in AUX_CONVS:
        a = _conv_bn(net, a, spec, cfg)
    a = net.global_pool(a, "avg", name="aux_avg_pool")
    aux = net.dense(a, cfg.classes, activation=cfg.classifier_activation, name="aux_predictions")
    return [main, aux]


def _size_note(cfg: InceptionV3Config) -> str:
    if cfg.include_top and cfg.aux_logits:
        return " with aux_logits=True (the auxiliary classifier's 5x5 conv needs mixed7 to be at least 17 x 17)"
    return ""


FIRST_CONV = f"{STEM[0].name}_conv"  # type: ignore[union-attr]

ARCHS = (
    Arch(
        name="inception_v3",
        keras_name="InceptionV3",
        family="inception_v3",
        config_class=InceptionV3Config,
        network=network,
        default_size=299,
        keras_min_size=75,
        first_conv=FIRST_CONV,
        classifier=("predictions", "aux_predictions"),
        feature_points=("stem_2b_3x3_relu", "stem_4a_3x3_relu", "mixed2", "mixed7", "mixed10"),
        blocks=tuple(b.name for b in BLOCKS),
        preprocessing="tf",
        size_note=_size_note,
        description="Inception-v3 (Szegedy et al. 2016): factorised convolutions, 23.9 M parameters",
    ),
)
