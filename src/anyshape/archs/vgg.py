"""VGG16 and VGG19 (Simonyan & Zisserman 2014), as keras.applications builds them, with a classifier
that works at any size from 224 up.

Written from keras/src/applications/vgg16.py and vgg19.py: the same layers in the same order with
Keras' names (block1_conv1 ... block5_pool, fc1, fc2, predictions). Every conv is 3x3 "same" and
every pool 2x2 stride 2 "valid", so without the top any H, W >= 32 works (five pools halve it,
dropping an odd last row or column as in Keras; nothing else depends on parity). Keras' minimum of
32 (`obtain_input_shape(min_size=32)`) is the network's here.

The classifier. keras.applications' top is Flatten + fc1 (Dense 25088 x 4096 at 224) + fc2 +
predictions: Flatten makes fc1's weights depend on the input size, so the pretrained top only fits
224 x 224. `VGGConfig.head` chooses the form:
- "flatten": Keras' top, exactly (at another fixed size fc1 gets another shape, as in Keras;
  no free size).
- "conv": the classic fully-convolutional VGG (the paper's dense evaluation): fc1 is a 7x7 valid
  Conv2D on block5_pool (its kernel is the Dense kernel reshaped to (7, 7, 512, 4096), because
  Flatten's channels_last order is (h, w, c)), fc2 and predictions are 1x1 Conv2Ds, and the map
  of class scores is averaged (a global average pool of the logits, `predictions_pool`, then the
  classifier activation). At 224 block5_pool is 7 x 7, the score map 1 x 1, and the result equals
  Keras'; at larger sizes it averages the classifier's scores over every 7 x 7 window of
  block5_pool (each sees 224 x 224 pixels' worth of the map, at a stride of 32 pixels). It needs
  block5_pool >= 7, so H, W >= 224 with this head.
- "auto" (the default): "flatten" when the input is 224 x 224 (the drop-in case,
  keras.applications' layers and weights) and at fixed sizes below 224, where the conv head has no
  window and Keras builds its Flatten top at that size (`VGG16(weights=None, input_shape=(32, 32,
  3), classes=10)`, a from-scratch model; a top trained at 224 does not fit it: `trained_top_problem`);
  "conv" otherwise: free size, and fixed sizes from 224 up, where the pretrained top then works.
Both forms have the same weighted layers with the same names and element counts (only the kernel
shapes differ), so `convert_head_weights` moves weights between them without loss. With the top,
`pooling` chooses how the conv head pools the score map ("avg", the default, or "max"; at 224
both are the identity).

torchvision's VGG takes another way to any size: an adaptive 7x7 average pool in front of its
Flatten, which resamples block5_pool to 7 x 7 at every input size >= 32. It keeps the pretrained
fc1 too, but it then sees features averaged over a larger area than it was trained on (or repeated
ones below 224). The fully-convolutional head only applies the classifier the way it was trained
(on 7 x 7 windows of block5_pool) and averages the answers; below 224 it has no window (there
"auto" builds the Flatten top, `head="conv"` is refused). What either costs in
accuracy at sizes other than 224 depends on the weights and is not measured here (anyshape's tests
have no pretrained weights); at 224 both equal Keras exactly.

`dropout_rate` adds dropout after fc1 and after fc2, where the paper and torchvision have it
(Keras' top has none; 0 builds Keras' network).
"""

from __future__ import annotations

from dataclasses import dataclass

from anyshape.archs.base import KERAS_ARGS, Arch, ArchConfig, classifier_head

__all__ = [
    "VGGConfig",
    "ARCHS",
    "HEADS",
    "head_form",
    "trained_top_problem",
    "convert_head_kernel",
    "convert_head_weights",
]

HEADS = ("auto", "flatten", "conv")
DEFAULT_SIZE = 224
WIDTHS = (64, 128, 256, 512, 512)
FC_UNITS = 4096
FC1_WINDOW = 7  # block5_pool's size at 224 (224 / 32): fc1's window in the conv head
TOP = ("fc1", "fc2", "predictions")  # the top's weighted layers, in order


@dataclass(frozen=True)
class VGGConfig(ArchConfig):
    """VGG's build arguments: the ArchConfig ones, the convs per block and the classifier's form."""

    depths: tuple[int, ...] = (2, 2, 3, 3, 3)  # 3x3 convs in block1 ... block5
    head: str = "auto"  # "auto", "flatten" or "conv": see the module docstring

    def problems(self) -> list[str]:
        out = super().problems()
        if len(self.depths) != len(WIDTHS) or not all(isinstance(d, int) and d >= 1 for d in self.depths):
            out.append(f"depths must be {len(WIDTHS)} positive integers (convs per block), got {self.depths!r}")
        if self.head not in HEADS:
            out.append(f"head must be one of {HEADS}, got {self.head!r}")
        elif self.include_top and head_form(self) == "conv" and self.pooling not in (None, "avg", "max"):
            out.append(
                f"pooling={self.pooling!r} with include_top=True: VGG's fully-convolutional head pools its "
                "class-score map, with 'avg' (the default) or 'max'"
            )
        return out

    def at_any_size(self) -> ArchConfig:
        """At any size, the head a size below 224 chose ("auto": Keras' Flatten top there): the sizes
        searched are then the Flatten top's, fixed, from 32 up, not the conv head's from 224. At 224
        Keras' top computes what the conv head computes, and the minimum stays the conv head's."""
        free = super().at_any_size()
        below = self.include_top and self.head == "auto" and head_form(self) == "flatten" and not _at_default(self)
        return free.replace(head="flatten") if below else free


def _hw(cfg: VGGConfig) -> tuple | None:
    shape = cfg.input_shape
    if shape is None:
        return None
    return tuple(shape[1:]) if cfg.data_format == "channels_first" else tuple(shape[:2])


def _at_default(cfg: VGGConfig) -> bool:
    return _hw(cfg) == (DEFAULT_SIZE, DEFAULT_SIZE)


def head_form(cfg: VGGConfig) -> str:
    """The head `cfg` builds: "flatten" or "conv" ("auto" decided by the input size)."""
    if cfg.head != "auto":
        return cfg.head
    hw = _hw(cfg)
    if hw is None:
        return "conv"
    if hw == (DEFAULT_SIZE, DEFAULT_SIZE):
        return "flatten"
    # below 224 the conv head has no 7 x 7 window: Keras' Flatten top, as keras.applications builds
    # it there (VGG16(weights=None, input_shape=(32, 32, 3), classes=10) is a common Keras call)
    if None not in hw and min(hw) < DEFAULT_SIZE:
        return "flatten"
    return "conv"


def trained_top_problem(cfg: VGGConfig, fc1_inputs: int | None = None) -> str | None:
    """Why the top of a weight set trained at 224 x 224 (fc1 a Dense layer of 7 x 7 x 512 inputs)
    cannot load into the model `cfg` builds, or None when it can: Keras' Flatten top at another
    fixed size has an fc1 of another shape (the conv head takes those weights at 224 and up).
    `fc1_inputs`: the rows of a file's fc1 kernel, when known; another count than the 224 top's is
    no top trained at 224 (None: a registered set's, which is)."""
    hw = _hw(cfg)
    if not cfg.include_top or head_form(cfg) == "conv" or hw is None or _at_default(cfg):
        return None
    if fc1_inputs is not None and fc1_inputs != FC1_WINDOW * FC1_WINDOW * WIDTHS[-1]:
        return None
    h, w = hw
    return (
        f"the pretrained top was trained at {DEFAULT_SIZE} x {DEFAULT_SIZE}: its fc1 is a Dense layer of "
        f"{FC1_WINDOW} x {FC1_WINDOW} x {WIDTHS[-1]} inputs, which fits an input of {DEFAULT_SIZE} x {DEFAULT_SIZE} "
        f"and, as the fully-convolutional head, any larger one; at {h} x {w} Keras' Flatten top has "
        f"{(h // 32) * (w // 32) * WIDTHS[-1]} inputs"
    )


def _dropout(net, cfg: VGGConfig, x, after: str):
    return net.dropout(x, cfg.dropout_rate, name=f"{after}_dropout") if cfg.dropout_rate else x


def _top(net, cfg: VGGConfig, x):
    if head_form(cfg) == "flatten":  # keras/src/applications/vgg16.py, "Classification block"
        x = net.flatten(x, name="flatten")
        x = _dropout(net, cfg, net.dense(x, FC_UNITS, activation="relu", name="fc1"), "fc1")
        x = _dropout(net, cfg, net.dense(x, FC_UNITS, activation="relu", name="fc2"), "fc2")
        return net.dense(x, cfg.classes, activation=cfg.classifier_activation, name="predictions")
    x = net.conv(x, FC_UNITS, FC1_WINDOW, activation="relu", name="fc1")
    x = _dropout(net, cfg, x, "fc1")
    x = _dropout(net, cfg, net.conv(x, FC_UNITS, 1, activation="relu", name="fc2"), "fc2")
    x = net.conv(x, cfg.classes, 1, name="predictions")
    x = net.global_pool(x, cfg.pooling or "avg", name="predictions_pool")
    if cfg.classifier_activation is None:
        return x
    return net.activation(x, cfg.classifier_activation, name="predictions_activation")


def network(net, cfg: VGGConfig, x):
    """VGG on `x` (NHWC): five blocks of 3x3 convs + ReLU, each closed by a 2x2 max pool, then
    the top (see the module docstring) or `pooling`."""
    for i, (depth, width) in enumerate(zip(cfg.depths, WIDTHS)):
        block = f"block{i + 1}"
        with net.stage(block, f"{depth} x 3x3 conv {width} + ReLU, 2x2 max pool"):
            for j in range(1, depth + 1):
                x = net.conv(x, width, 3, padding="same", activation="relu", name=f"{block}_conv{j}")
            x = net.max_pool(x, 2, 2, name=f"{block}_pool")
    if cfg.include_top:
        return _top(net, cfg, x)
    return classifier_head(net, cfg, x)


def convert_head_kernel(kernel, layer: str, to: str):
    """The kernel of the top's layer `layer` (fc1, fc2 or predictions) in the head form `to`.

    "conv": a Dense kernel (n, units) becomes a Conv2D kernel, (7, 7, n / 49, units) for fc1 (the
    (h, w, c) order of Keras' channels_last Flatten), (1, 1, n, units) for fc2 and predictions.
    "flatten": a Conv2D kernel (kh, kw, c, units) becomes the Dense kernel (kh * kw * c, units).
    Biases are the same in both forms. Works on any array with numpy's `reshape`.
    """
    if layer not in TOP:
        raise ValueError(f"layer must be one of {TOP}, got {layer!r}")
    if to == "flatten":
        if kernel.ndim != 4:
            raise ValueError(f"{layer}: a conv-head kernel has 4 axes (kh, kw, in, units), got shape {kernel.shape}")
        return kernel.reshape(-1, kernel.shape[-1])
    if to != "conv":
        raise ValueError(f"to must be 'conv' or 'flatten', got {to!r}")
    if kernel.ndim != 2:
        raise ValueError(f"{layer}: a flatten-head kernel has 2 axes (in, units), got shape {kernel.shape}")
    k = FC1_WINDOW if layer == "fc1" else 1
    if kernel.shape[0] % (k * k):
        raise ValueError(
            f"{layer}: a kernel of {kernel.shape[0]} inputs is no {k}x{k} window (fc1 of the Flatten head "
            f"converts only at {DEFAULT_SIZE} x {DEFAULT_SIZE})"
        )
    return kernel.reshape(k, k, kernel.shape[0] // (k * k), kernel.shape[-1])


def convert_head_weights(weights: list, to: str) -> list:
    """A VGG model's `get_weights()` with the top, for the same network with the other head form
    `to` ("conv" or "flatten"): the last six arrays are the top's kernels and biases (fc1, fc2,
    predictions), in the order of `TOP`; the rest stays as it is."""
    if len(weights) < 2 * len(TOP):
        raise ValueError(
            f"expected the weights of a VGG with its top (at least {2 * len(TOP)} arrays), got {len(weights)}"
        )
    head = list(weights[-2 * len(TOP) :])
    for i, layer in enumerate(TOP):
        head[2 * i] = convert_head_kernel(head[2 * i], layer, to)
    return [*weights[: -2 * len(TOP)], *head]


def _size_note(cfg: VGGConfig) -> str:
    if not cfg.include_top:
        return ""
    if head_form(cfg) == "conv":
        return (
            " with include_top=True (the fully-convolutional head's fc1 is a 7x7 conv on block5_pool, 1/32 of "
            "the input; head='flatten' builds keras.applications' Flatten top at one fixed size instead)"
        )
    which = "with head='flatten'" if cfg.head == "flatten" else "with the top below 224"
    return (
        f", and fixed, {which} (keras.applications' Flatten top sizes fc1 by the input; "
        "head='conv' takes any size from 224 up, free size included)"
    )


def _arch(keras_name: str, depths: tuple[int, ...], params: str) -> Arch:
    name = keras_name.lower()
    return Arch(
        name=name,
        keras_name=keras_name,
        family="vgg",
        config_class=VGGConfig,
        network=network,
        defaults={"depths": depths},
        default_size=DEFAULT_SIZE,
        keras_min_size=32,  # keras/src/applications/vgg16.py and vgg19.py: obtain_input_shape(min_size=32)
        first_conv="block1_conv1",
        blocks=tuple(f"block{i + 1}_pool" for i in range(len(depths))),
        feature_points=tuple(f"block{i + 1}_pool" for i in range(len(depths))),
        preprocessing="caffe",
        size_note=_size_note,
        keras_args=(*KERAS_ARGS, ("name", name)),
        description=f"VGG (Simonyan & Zisserman 2014), {sum(depths)} conv + 3 fully-connected layers, {params} parameters",
    )


ARCHS = (
    _arch("VGG16", (2, 2, 3, 3, 3), "138.4 M"),
    _arch("VGG19", (2, 2, 4, 4, 4), "143.7 M"),
)
