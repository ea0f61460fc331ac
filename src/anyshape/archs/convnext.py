"""ConvNeXt Tiny ... XLarge (Liu et al. 2022), as keras.applications builds them, at any input shape.

Written from keras/src/applications/convnext.py: an in-graph Normalization with ImageNet's mean
and variance (`include_preprocessing`, inputs in [0, 255]), a 4x4 stride-4 stem, four stages of
ConvNeXt blocks (7x7 depthwise conv, LayerNorm, two Dense layers on the channel axis around a
GELU, LayerScale, a residual add) with 2x2 stride-2 downsampling between them, and the head
(global average pool, LayerNorm, Dense). Keras' layer names are kept (convnext_tiny_stem_conv,
convnext_tiny_stage_2_block_5_pointwise_conv_1, ...), flat: Keras wraps the stem and each
downsampling in a Sequential, which owns no weights of its own, so the weighted layers still come
in Keras' order with Keras' shapes. The name prefix is the variant's registry name; Keras uses the
model's `name` argument there (its published files use the default, which is the same).

- The layer scale is Keras' EinsumDense("abcd,d->abcd") (`anyshape.archs.keras_ops`: a built-in
  layer, so saved files load without anyshape), with Keras' gamma shape (channels,), in every block as in every keras.applications ConvNeXt (Keras' internal
  ConvNeXt() leaves it out with layer_scale_init_value=None; anyshape's create_model reads None as
  "not given", so that option is not offered).
- Stochastic depth: Keras uses its StochasticDepth layer only where the block's rate is > 0 and an
  Activation("linear") named `..._identity` otherwise (always, with the default drop_path_rate 0).
  The same here; a rate > 0 is a Dropout with noise_shape (batch, 1, 1, 1), which drops a
  sample's whole residual branch and scales by 1 / (1 - rate) as Keras' StochasticDepth does
  (timm's DropPath), and is the identity at inference.
- Without the top Keras applies a LayerNormalization after the optional pooling (to the map too
  with pooling=None); so does this.
- With `include_preprocessing` Keras normalises only a 3-channel input and skips the step for any
  other channel count. Here the Normalization is there for every channel count (channel adaptation
  adapts it with the first conv): ImageNet's per-channel constants for 3 channels, and for any
  other count the average of the three for every channel.

Shapes: the stem (4x4, stride 4) and the downsampling convs (2x2, stride 2) are "valid" with
kernel = stride, fixed arithmetic on any size: a stem output of 8 needs 32 pixels, the minimum,
which is Keras' 32 too. Sizes that are not multiples of 32 leave the last rows unread.
keras.applications refuses channels_first for ConvNeXt; here it works on every backend (the model
transposes its input once, `anyshape.archs.keras_ops.build`).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

from anyshape.archs.base import KERAS_ARGS, Arch, ArchConfig, global_pool

__all__ = ["ConvNeXtConfig", "VARIANTS", "ARCHS", "IMAGENET_MEAN", "IMAGENET_VARIANCE"]

EPSILON = 1e-6  # every LayerNorm of Keras' ConvNeXt
IMAGENET_MEAN = (0.485 * 255, 0.456 * 255, 0.406 * 255)  # Keras' PreStem constants
IMAGENET_VARIANCE = ((0.229 * 255) ** 2, (0.224 * 255) ** 2, (0.225 * 255) ** 2)


@dataclass(frozen=True)
class ConvNeXtConfig(ArchConfig):
    """ConvNeXt's build arguments: keras.applications' ConvNeXt(...), with its names."""

    depths: tuple[int, ...] = (3, 3, 9, 3)  # blocks per stage
    projection_dims: tuple[int, ...] = (96, 192, 384, 768)  # channels per stage
    drop_path_rate: float = 0.0  # stochastic depth, rising linearly from 0 over the blocks
    layer_scale_init_value: float = 1e-6  # LayerScale's initial gamma
    include_preprocessing: bool = True  # the ImageNet Normalization in front: input in [0, 255]

    def problems(self) -> list[str]:
        out = super().problems()
        if len(self.depths) != 4 or len(self.projection_dims) != 4:
            out.append(
                f"depths and projection_dims must have 4 entries (one per stage), got {self.depths!r} "
                f"and {self.projection_dims!r}"
            )
        for field, values in (("depths", self.depths), ("projection_dims", self.projection_dims)):
            if any(isinstance(v, bool) or not isinstance(v, int) or v < 1 for v in values):
                out.append(f"{field} must be positive integers, got {values!r}")
        if not isinstance(self.drop_path_rate, (int, float)) or not 0.0 <= self.drop_path_rate < 1.0:
            out.append(f"drop_path_rate must be in [0, 1), got {self.drop_path_rate!r}")
        if isinstance(self.layer_scale_init_value, bool) or not isinstance(self.layer_scale_init_value, (int, float)):
            out.append(f"layer_scale_init_value must be a number, got {self.layer_scale_init_value!r}")
        return out


def normalization_constants(channels: int) -> tuple[list[float], list[float]]:
    """The prestem Normalization's mean and variance for `channels` input channels."""
    if channels == 3:
        return list(IMAGENET_MEAN), list(IMAGENET_VARIANCE)
    mean, variance = sum(IMAGENET_MEAN) / 3, sum(IMAGENET_VARIANCE) / 3
    return [mean] * channels, [variance] * channels


def _block(net, x, dim: int, drop_rate: float, cfg: ConvNeXtConfig, name: str):
    """One ConvNeXt block (Keras' ConvNeXtBlock)."""
    inputs = x
    x = net.conv(x, dim, 7, 1, "same", groups=dim, name=f"{name}_depthwise_conv")
    x = net.layer_norm(x, epsilon=EPSILON, name=f"{name}_layernorm")
    x = net.dense(x, 4 * dim, name=f"{name}_pointwise_conv_1")
    x = net.activation(x, "gelu", name=f"{name}_gelu")
    x = net.dense(x, dim, name=f"{name}_pointwise_conv_2")
    x = net.layer_scale(x, cfg.layer_scale_init_value, name=f"{name}_layer_scale")
    if drop_rate:
        x = net.dropout(x, drop_rate, noise_shape=(None, 1, 1, 1), name=f"{name}_stochastic_depth")
    else:
        x = net.identity(x, name=f"{name}_identity")
    return net.add([inputs, x], name=f"{name}_add")


def network(net, cfg: ConvNeXtConfig, x, *, prefix: str):
    """ConvNeXt on `x` (NHWC), its layers named `<prefix>_...` as Keras names them."""
    if cfg.include_preprocessing:
        mean, variance = normalization_constants(x.shape[-1])
        x = net.normalization(x, mean=mean, variance=variance, name=f"{prefix}_prestem_normalization")
    # the per-block rates as Keras' np.linspace(0.0, drop_path_rate, sum(depths)) computes them
    total = sum(cfg.depths)
    step = cfg.drop_path_rate / (total - 1) if total > 1 else 0.0
    rates = [i * step for i in range(total - 1)] + [float(cfg.drop_path_rate) if total > 1 else 0.0]
    k = 0
    for i, (depth, dim) in enumerate(zip(cfg.depths, cfg.projection_dims)):
        if i == 0:
            with net.stage(f"{prefix}_stem", f"4x4 conv {dim}, stride 4 + LayerNorm"):
                x = net.conv(x, dim, 4, 4, "valid", name=f"{prefix}_stem_conv")
                x = net.layer_norm(x, epsilon=EPSILON, name=f"{prefix}_stem_layernorm")
        else:
            with net.stage(f"{prefix}_downsampling_block_{i - 1}", f"LayerNorm + 2x2 conv {dim}, stride 2"):
                x = net.layer_norm(x, epsilon=EPSILON, name=f"{prefix}_downsampling_layernorm_{i - 1}")
                x = net.conv(x, dim, 2, 2, "valid", name=f"{prefix}_downsampling_conv_{i - 1}")
        for j in range(depth):
            name = f"{prefix}_stage_{i}_block_{j}"
            with net.stage(name, f"ConvNeXt block {dim}: 7x7 depthwise, MLP x4"):
                x = _block(net, x, dim, rates[k], cfg, name)
            k += 1
    if cfg.include_top:
        if cfg.pooling in (None, "avg"):
            x = net.global_pool(x, "avg", name=f"{prefix}_head_gap")
        else:
            x = global_pool(net, x, cfg.pooling)
        x = net.layer_norm(x, epsilon=EPSILON, name=f"{prefix}_head_layernorm")
        if cfg.dropout_rate:
            x = net.dropout(x, cfg.dropout_rate, name=f"{prefix}_head_dropout")
        return net.dense(x, cfg.classes, activation=cfg.classifier_activation, name=f"{prefix}_head_dense")
    if cfg.pooling is not None:
        x = global_pool(net, x, cfg.pooling)
    return net.layer_norm(x, epsilon=EPSILON, name="layer_normalization")


VARIANTS: dict[str, tuple[str, tuple[int, ...], tuple[int, ...], str]] = {
    "tiny": ("ConvNeXtTiny", (3, 3, 9, 3), (96, 192, 384, 768), "28.6 M"),
    "small": ("ConvNeXtSmall", (3, 3, 27, 3), (96, 192, 384, 768), "50.2 M"),
    "base": ("ConvNeXtBase", (3, 3, 27, 3), (128, 256, 512, 1024), "88.6 M"),
    "large": ("ConvNeXtLarge", (3, 3, 27, 3), (192, 384, 768, 1536), "197.8 M"),
    "xlarge": ("ConvNeXtXLarge", (3, 3, 27, 3), (256, 512, 1024, 2048), "350.2 M"),
}
"""keras/src/applications/convnext.py MODEL_CONFIGS: (constructor, depths, projection_dims, parameters)."""


def _arch(variant: str) -> Arch:
    keras_name, depths, dims, params = VARIANTS[variant]
    name = f"convnext_{variant}"
    block_names = [f"{name}_stage_{i}_block_{j}_add" for i, d in enumerate(depths) for j in range(d)]
    stage_ends = tuple(f"{name}_stage_{i}_block_{d - 1}_add" for i, d in enumerate(depths))
    return Arch(
        name=name,
        keras_name=keras_name,
        family="convnext",
        config_class=ConvNeXtConfig,
        network=partial(network, prefix=name),
        defaults={"depths": depths, "projection_dims": dims},
        default_size=224,
        # keras/src/applications/convnext.py: obtain_input_shape(..., min_size=32, ...)
        keras_min_size=32,
        first_conv=f"{name}_stem_conv",
        input_layers=(f"{name}_prestem_normalization",),
        classifier=(f"{name}_head_dense",),
        blocks=tuple(block_names),
        feature_points=stage_ends,
        preprocessing="raw",
        # keras.applications.ConvNeXt*'s order: include_preprocessing second
        keras_args=(KERAS_ARGS[0], ("include_preprocessing", True), *KERAS_ARGS[1:], ("name", name)),
        description=f"{keras_name} (Liu et al. 2022): a ConvNet modernised, {params} parameters",
    )


ARCHS = tuple(_arch(v) for v in VARIANTS)
