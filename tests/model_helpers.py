"""Helpers the model tests share: a forward pass as numpy, weights with BatchNorm moved off its
defaults, random images, and the comparisons the family tests make (weight layout and layer names
against keras.applications, torchvision weights in Keras order, layer configs of two builds)."""

import contextlib
import re

import keras
import numpy as np


def run(model, x):
    """Forward pass in inference mode, as numpy (a list for multi-output models). Calls the model
    directly (no predict()), which keeps JAX from compiling the whole graph once per shape."""
    out = model(x, training=False)
    if isinstance(out, (list, tuple)):
        return [keras.ops.convert_to_numpy(o) for o in out]
    return keras.ops.convert_to_numpy(out)


def randomised_weights(model, seed=0):
    """The model's weights with BatchNorm statistics and offsets moved off their defaults, so
    that parity tests exercise every array (fresh BN has mean 0, variance 1, beta 0)."""
    rng = np.random.default_rng(seed)
    return [randomised(w, keras.ops.convert_to_numpy(w.value), rng) for w in model.weights]


def randomised(weight, a, rng):
    """One weight's array `a` as `randomised_weights` gives it: a BatchNorm statistic, scale or
    offset moved with `rng`; any other float array as float32, not copied when it already is."""
    if "moving_variance" in weight.path:
        a = rng.uniform(0.5, 1.5, a.shape)
    elif "moving_mean" in weight.path or "beta" in weight.path or "gamma" in weight.path:
        a = a + rng.normal(0, 0.1, a.shape)
    return a.astype(a.dtype if a.dtype.kind in "iu" else "float32", copy=False)


def move_batch_norm_statistics(model, seed: int = 0):
    """BatchNorm moving statistics and scales moved off their initial values (0, 1), so that every
    folded BatchNorm changes a translated graph's numbers; returns the model."""
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            values = []
            for w in layer.weights:
                if "variance" in w.path:
                    values.append(rng.uniform(0.5, 2.0, w.shape).astype("float32"))
                elif "gamma" in w.path:
                    values.append(rng.uniform(0.5, 1.5, w.shape).astype("float32"))
                else:
                    values.append(rng.normal(0.0, 0.2, w.shape).astype("float32"))
            layer.set_weights(values)
    return model


def images(shape, seed=1, n=2, low=-1.0, high=1.0):
    return np.random.default_rng(seed).uniform(low, high, (n, *shape)).astype("float32")


def relative_error(a, b) -> float:
    """max |a - b| / max |b|: the parity measure the issues state (relative 1e-5, 1e-6)."""
    a, b = np.asarray(a, "float64"), np.asarray(b, "float64")
    return float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-12))


def keras_weights_from_torch(model, state_dict, modules: dict) -> list:
    """A torchvision model's weights in `model.get_weights()` order. `modules` maps each weighted
    Keras layer's name to its torch module's name: conv kernels (out, in, kh, kw) -> (kh, kw, in,
    out), BatchNorm weight/bias/running stats -> gamma, beta, moving mean and variance, Linear
    weight -> its transpose."""
    state = {k: v.detach().cpu().numpy() for k, v in state_dict.items()}
    assert set(modules) == {layer.name for layer in model.layers if layer.weights}
    out = []
    for layer in model.layers:
        if not layer.weights:
            continue
        m = modules[layer.name]
        w = state[f"{m}.weight"]
        if f"{m}.running_mean" in state:
            out += [w, state[f"{m}.bias"], state[f"{m}.running_mean"], state[f"{m}.running_var"]]
            continue
        out.append(w.transpose(2, 3, 1, 0) if w.ndim == 4 else w.T)
        if f"{m}.bias" in state:
            out.append(state[f"{m}.bias"])
    return out


def randomise_torch_batchnorm(model, seed=0):
    """Move a torch model's BatchNorm parameters and statistics off their defaults (in place)."""
    import torch

    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.weight.add_(0.1 * torch.randn(m.weight.shape, generator=g))
                m.bias.add_(0.1 * torch.randn(m.bias.shape, generator=g))
                m.running_mean.add_(0.1 * torch.randn(m.running_mean.shape, generator=g))
                m.running_var.copy_(0.5 + torch.rand(m.running_var.shape, generator=g))
    return model


def layer_config_differences(a, b) -> dict:
    """{layer name: the config keys that differ} between two models; "added"/"removed" for layers
    only one of them has. Weights are not compared (they are random)."""
    ca = {layer.name: layer.get_config() for layer in a.layers}
    cb = {layer.name: layer.get_config() for layer in b.layers}
    out: dict = {}
    for name in sorted(ca.keys() | cb.keys()):
        if name not in ca:
            out[name] = "added"
        elif name not in cb:
            out[name] = "removed"
        else:
            keys = {k for k in ca[name].keys() | cb[name].keys() if ca[name].get(k) != cb[name].get(k)}
            if keys:
                out[name] = keys
    return out


def representatives() -> list[str]:
    """The smallest member of each registered family (by parameter count without the top)."""
    from anyshape.archs import get_arch, list_models
    from anyshape.shapes import explain

    by_family: dict[str, list[str]] = {}
    for name in list_models():
        by_family.setdefault(get_arch(name).family, []).append(name)
    return sorted(min(names, key=lambda n: explain(arch=n).params) for names in by_family.values())


def weight_shapes(model) -> list[tuple]:
    """The shapes of `model.get_weights()`, in order, without copying the weights (ConvNeXtXLarge
    has 1.4 GB of them)."""
    return [tuple(w.shape) for w in model.weights]


def keras_parity(ref, ours, x) -> float:
    """Give `ref` (a keras.applications model) randomised weights, copy them into `ours` and return
    the relative error of `ours` against `ref` on `x`."""
    ref.set_weights(randomised_weights(ref))
    ours.set_weights(ref.get_weights())
    return relative_error(run(ours, x), run(ref, x))


def positional_signature(fn) -> list[tuple]:
    """(name, default) of a constructor's positional-or-keyword parameters, in order."""
    import inspect

    params = inspect.signature(fn).parameters.values()
    return [(p.name, p.default) for p in params if p.kind is inspect.Parameter.POSITIONAL_OR_KEYWORD]


def unknown_record_layers(model, arch) -> list[str]:
    """The layer names an `Arch` record gives (first conv, input layers, classifier, blocks, feature
    points) that `model` (built with the record's defaults and the top) does not have."""
    have = {layer.name for layer in model.layers}
    named = [arch.first_conv, *arch.input_layers, *arch.classifier, *arch.blocks, *arch.feature_points]
    return [name for name in named if name not in have]


def feature_strides(arch, size: int = 224) -> list[int]:
    """The stride of each of an `Arch`'s feature points, from the shape engine at size x size."""
    from anyshape.shapes import explain

    by_layer = {stage.layer: stage for stage in explain((size, size, 3), arch=arch).stages}
    return [size // by_layer[name].height for name in arch.feature_points]


def _auto_named(layer) -> bool:
    """Whether Keras named the layer itself (Rescaling -> "rescaling", "rescaling_3", ...): such names
    depend on what else the session built, so parity cannot ask for them."""
    from keras.src.utils.naming import to_snake_case  # how Keras makes the name

    return re.fullmatch(rf"{to_snake_case(type(layer).__name__)}(_\d+)?", layer.name) is not None


def assert_keras_drop_in(ours, keras_model, dropped=(), names_keras_leaves_auto=False):
    """`ours` is a drop-in for the keras.applications model: the same weights (shapes, in order) in
    layers of the same names, and every layer Keras names itself there under that name with the same
    class, except the weightless kinds in `dropped` (e.g. correct_pad's paddings, which anyshape
    replaces by "same" padding). `names_keras_leaves_auto`: where Keras leaves a weighted layer
    auto-named ("conv2d_3": the name depends on what else the session built), anyshape gives it a
    name of its own (Xception's residual convolutions, InceptionResNetV2's conv2d_bn)."""
    assert [tuple(w.shape) for w in ours.weights] == [tuple(w.shape) for w in keras_model.weights]

    def weighted(model):
        return [("<auto>" if _auto_named(layer) else layer.name) for layer in model.layers if layer.weights]

    if names_keras_leaves_auto:
        theirs = weighted(keras_model)
        assert [n for n, k in zip(weighted(ours), theirs) if k != "<auto>"] == [k for k in theirs if k != "<auto>"]
    else:
        assert weighted(ours) == weighted(keras_model)
    kinds = {layer.name: type(layer).__name__ for layer in ours.layers}
    for layer in keras_model.layers:
        kind = type(layer).__name__
        if kind == "InputLayer" or kind in dropped or _auto_named(layer):
            continue
        assert kinds.get(layer.name) == kind, f"Keras' {kind} {layer.name!r} is {kinds.get(layer.name)} here"


def backend_cases(shapes, tops, every_backend) -> list:
    """(shape, top) pytest params for a parity test: every combination on TensorFlow, and the one
    equal to `every_backend` (an odd size with the top: the padding and the head) marked to run on
    JAX and PyTorch too (`make test` runs the tests marked every_backend on each backend)."""
    import itertools

    import pytest

    marks = {True: [pytest.mark.every_backend], False: []}
    return [pytest.param(s, t, marks=marks[(s, t) == every_backend]) for s, t in itertools.product(shapes, tops)]


class ModelCache:
    """Models built once and kept for the tests of one module (or one module-scoped fixture): a
    test takes a model with `get(key, build)`, reads it, runs it, or copies its weights into a
    model of its own with `set_weights`; it never changes a model it did not build. `clear()` frees
    them (a module's teardown), so that a process does not keep every network it ever built."""

    def __init__(self):
        self._models: dict = {}

    def get(self, key, build):
        if key not in self._models:
            self._models[key] = build()
        return self._models[key]

    def clear(self):
        import gc

        self._models.clear()
        gc.collect()


def weights_like(model, weights, seed=0) -> list:
    """`weights` for `model`, array by array, where their shapes agree; `randomised_weights(model)`
    where they do not (a head built for another size or class count, a layer only one has)."""
    own = None
    out = []
    for i, w in enumerate(model.weights):
        if i < len(weights) and tuple(weights[i].shape) == tuple(w.shape):
            out.append(weights[i])
            continue
        own = own if own is not None else randomised_weights(model, seed)
        out.append(own[i])
    return out


def set_weights(model, weights):
    """set_weights, then what Keras' weight-file loaders do after it: Normalization computes with a
    copy of its mean and variance made in `finalize_state()`, which set_weights does not call."""
    model.set_weights(weights)
    for layer in model.layers:
        if isinstance(layer, keras.layers.Normalization):
            layer.finalize_state()


def efficientnet_weights(model, seed=0) -> list:
    """`randomised_weights` with an input Normalization's mean and variance set to ImageNet-like
    values (fresh they are 0 and 1, which would leave them untested)."""
    out = randomised_weights(model, seed)
    rng = np.random.default_rng(seed)
    for i, w in enumerate(model.weights):
        if w.path.startswith("normalization") and w.name in ("mean", "variance"):
            out[i] = rng.uniform(0.05, 0.5, w.shape).astype("float32")
    return out


def vgg_weights(model, seed=0) -> list:
    """`randomised_weights` with the biases moved off zero too (VGG has no BatchNorm)."""
    rng = np.random.default_rng(2)
    return [w + rng.normal(0, 0.05, w.shape).astype("float32") if w.ndim == 1 else w for w in randomised_weights(model)]


def assert_efficientnet_layout(ours, theirs, name: str, preprocessing: bool = False):
    """What EfficientNet and EfficientNetV2 keep of Keras' beyond the drop-in layout: every Dropout's
    rate, the record's blocks (Keras' last layer of each block), and for V2 the in-graph
    preprocessing's constants."""
    from anyshape.archs import get_arch

    if preprocessing:
        assert preprocessing_constants(ours) == preprocessing_constants(theirs)
    dropouts = {layer.name: layer.rate for layer in theirs.layers if isinstance(layer, keras.layers.Dropout)}
    assert {layer.name: layer.rate for layer in ours.layers if isinstance(layer, keras.layers.Dropout)} == dropouts
    block_outputs = [  # Keras' last layer of each block (block1a_project_bn, block2b_add, ...)
        layer.name
        for layer, after in zip(theirs.layers, theirs.layers[1:])
        if layer.name.startswith("block") and not after.name.startswith(layer.name.split("_")[0] + "_")
    ]
    assert get_arch(name).blocks == ("stem_activation", *block_outputs, "top_activation")


def preprocessing_constants(model) -> list:
    """The in-graph preprocessing layers' constants, in order."""
    out = []
    for layer in model.layers:
        if isinstance(layer, keras.layers.Rescaling):
            out.append(("rescaling", np.ravel(layer.scale).tolist(), layer.offset))
        elif isinstance(layer, keras.layers.Normalization):
            out.append(("normalization", np.ravel(layer.input_mean).tolist(), np.ravel(layer.input_variance).tolist()))
    return out


def convnext_layout(model, keras_model: bool, include_top: bool) -> tuple[list, list]:
    """(weight shapes, names of the weighted layers) of a ConvNeXt in a form both builds share: Keras
    wraps the stem and each downsampling in a Sequential (no weights of its own), whose inner
    layers anyshape has, with their names; these are left out. Keras leaves the final
    LayerNormalization of the model without the top unnamed (its name depends on the session)."""
    named = [layer.name for layer in model.layers if layer.weights]
    if keras_model:
        named = [n for n in named if "_stem" not in n and "_downsampling_block_" not in n]
        if not include_top:
            named[-1] = "layer_normalization"
    else:
        named = [n for n in named if "_stem_" not in n and "_downsampling_" not in n]
    return weight_shapes(model), named


def _numpy_draw(initializer):
    """`initializer`'s distribution drawn in float32 with a numpy Generator seeded from numpy's
    global generator (so `keras.utils.set_random_seed` makes builds repeatable), or None where it is
    not one of Keras' plain initializers (constants, uniform, normal, variance scaling). The
    Generator's float32 draws cost a quarter (normal) to a seventh (uniform) of the legacy float64
    ones: ConvNeXtXLarge draws 350 M numbers per build."""
    from keras.src.initializers import constant_initializers as const
    from keras.src.initializers import random_initializers as rand

    def draw(sample):
        return lambda shape, dtype=None: np.asarray(sample(tuple(shape)), keras.backend.standardize_dtype(dtype))

    def generator():
        return np.random.default_rng(np.random.randint(0, 2**63 - 1, dtype=np.int64))

    def uniform(shape, low, high):
        a = generator().random(shape, dtype=np.float32)
        a *= np.float32(high - low)
        a += np.float32(low)
        return a

    def normal(shape, mean, stddev, truncate=False):
        g = generator()
        a = g.standard_normal(shape, dtype=np.float32)
        # Keras' truncated normal (keras.src.random.truncated_normal): redraw beyond two stddevs
        while truncate and (out := np.abs(a) > 2.0).any():
            a[out] = g.standard_normal(int(out.sum()), dtype=np.float32)
        a *= np.float32(stddev)
        a += np.float32(mean)
        return a

    if isinstance(initializer, const.Zeros):
        return draw(np.zeros)
    if isinstance(initializer, const.Ones):
        return draw(np.ones)
    if isinstance(initializer, const.Constant):
        return draw(lambda shape: np.full(shape, keras.ops.convert_to_numpy(initializer.value)))
    if isinstance(initializer, rand.RandomUniform):
        return draw(lambda shape: uniform(shape, initializer.minval, initializer.maxval))
    if isinstance(initializer, rand.TruncatedNormal):
        return draw(lambda shape: normal(shape, initializer.mean, initializer.stddev, truncate=True))
    if isinstance(initializer, rand.RandomNormal):
        return draw(lambda shape: normal(shape, initializer.mean, initializer.stddev))
    if isinstance(initializer, rand.VarianceScaling):
        v = initializer

        def variance_scaling(shape):
            fan_in, fan_out = rand.compute_fans(shape, input_axes=v.input_axes, output_axes=v.output_axes)
            fan = {"fan_in": fan_in, "fan_out": fan_out}.get(v.mode, (fan_in + fan_out) / 2.0)
            scale = v.scale / max(1.0, fan)
            if v.distribution == "truncated_normal":
                return normal(shape, 0.0, np.sqrt(scale) / 0.87962566103423978, truncate=True)
            if v.distribution == "untruncated_normal":
                return normal(shape, 0.0, np.sqrt(scale))
            limit = np.sqrt(3.0 * scale)
            return uniform(shape, -limit, limit)

        return draw(variance_scaling)
    return None


@contextlib.contextmanager
def _initializers_replaced(replace):
    """Layer.add_weight patched while inside: a weight's initializer `init` becomes `replace(init)`,
    or stays as it is where that is None. Nests: it patches whatever add_weight is there."""
    inner = keras.layers.Layer.add_weight

    def add_weight(self, *args, **kwargs):
        args = list(args)
        given = args[1] if len(args) > 1 else kwargs.get("initializer")
        other = None if given is None else replace(keras.initializers.get(given))
        if other is not None:
            if len(args) > 1:
                args[1] = other
            else:
                kwargs["initializer"] = other
        return inner(self, *args, **kwargs)

    keras.layers.Layer.add_weight = add_weight
    try:
        yield
    finally:
        keras.layers.Layer.add_weight = inner


@contextlib.contextmanager
def numpy_initializers():
    """Models built inside draw their initial weights with numpy, from the distribution each
    layer's Keras initializer names (the values differ from Keras' own draws, the distribution
    does not; `keras.utils.set_random_seed` seeds numpy too). The parity tests copy weights from
    model to model and never depend on Keras' draws, while Keras' draws cost: on JAX each weight
    shape compiles a random-number program (DenseNet121 built at 224: about a third of the JAX
    parity test), on TensorFlow an eager op per weight. An initializer numpy does not know keeps
    Keras' own."""
    with _initializers_replaced(_numpy_draw):
        yield


@contextlib.contextmanager
def zero_initial_weights():
    """Models built inside start with zeros where their Keras initializer is random (constants
    keep theirs): for models whose every weight is then loaded or set, or whose numbers are not
    read (shapes only). A weight a loader missed stays zero, which a parity check sees. Outside
    `numpy_initializers` too (it patches the same method, on top of whatever is there)."""
    from keras.src.initializers.random_initializers import RandomInitializer

    with _initializers_replaced(lambda init: "zeros" if isinstance(init, RandomInitializer) else None):
        yield
