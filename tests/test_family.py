"""The family parity harness: one member of each family of keras.applications (the smallest, whose
blocks, paddings and head are the code every member runs) against keras.applications, with the
per-family facts as data (`FAMILIES`). InceptionV3 has its own file (tests/test_inception_v3.py).

For each representative, with identical weights (BatchNorm statistics and offsets moved off their
defaults; VGG's biases and EfficientNet's input Normalization too):
- the layout: Keras' weights in layers of Keras' names (`assert_keras_drop_in`), with and without
  the top, the model's name, its default input shape and its parameter count (Keras', explain's);
- at Keras' default size: the model with the top and the model without it compute Keras' outputs;
- at an odd non-square size (where keras.applications' `correct_pad` networks go wrong): the
  free-size model with the top equals Keras' model built at that size, and so does the free-size
  model without the top (compared with the same layer of Keras' fixed-size model).
The odd size with the top is marked every_backend: it runs on JAX and PyTorch too (`make test`),
one shape per representative there. Each test_family_<x>.py keeps what is its own: the other
members' layouts, options, PyTorch twins, the sizes Keras refuses or gets wrong.

Every model is built once per representative (`Family`: a cache dropped when the next
representative starts), and tests copy weights into models of their own, never into these.
"""

import dataclasses
from collections.abc import Callable

import keras
import pytest
from keras.src.applications import nasnet as keras_nasnet
from model_helpers import (
    ModelCache,
    assert_efficientnet_layout,
    assert_keras_drop_in,
    convnext_layout,
    efficientnet_weights,
    feature_strides,
    images,
    randomised_weights,
    relative_error,
    run,
    set_weights,
    unknown_record_layers,
    vgg_weights,
    weights_like,
)

import anyshape
from anyshape import applications
from anyshape.archs import get_arch
from anyshape.shapes import explain


@dataclasses.dataclass(frozen=True)
class Facts:
    """What differs between the families in the checks of this file."""

    odd: tuple  # odd, non-square, at or above keras.applications' minimum
    default: tuple = (224, 224, 3)
    pixels: tuple = (-1.0, 1.0)  # the range of the images (about what preprocess_input gives)
    top_arrays: int = 2  # the weight arrays of the top (the classifier's kernel and bias)
    weights: Callable = randomised_weights
    dropped: tuple = ()  # Keras' weightless layer kinds anyshape does not build (correct_pad's)
    params: int | None = None  # Keras' parameter count with the top, where a family file states it
    paths: bool = False  # the weights' paths are Keras' too (no layer Keras names itself)
    names_keras_leaves_auto: bool = False  # see `assert_keras_drop_in`
    model_name: bool = True  # the model's name is Keras' (MobileNet's is not: "mobilenet_1.00_224")
    # with or without the top (True, False), where anyshape's default input shape is not Keras'
    other_input_shape: tuple = ()
    free_top: bool = True  # the free-size model with the top is the odd-size one (not VGG's)
    extra_layout: Callable | None = None
    blocks: int | None = None  # how many blocks the record names, where a family file states it
    strides: tuple | None = None  # the feature points' strides, where a family file states them
    # the relative bound of the odd-size parity with the top (softmax outputs); a wrong padding or
    # weight order differs by 1e-2 and more
    tol: float = 1e-6


def _keras_nasnet_mobile(include_top=True, input_shape=None):
    """keras.applications.NASNetMobile; on torch (which it refuses: "not available with the torch
    backend at this time due to an outstanding bug") the function it calls with its arguments."""
    if keras.backend.backend() != "torch":
        return keras.applications.NASNetMobile(weights=None, include_top=include_top, input_shape=input_shape)
    shape = input_shape or (None if include_top else (224, 224, 3))  # as NASNetMobile
    mobile = get_arch("nasnet_mobile").defaults
    return keras_nasnet.NASNet(
        shape, **mobile, include_top=include_top, weights=None, default_size=224, name="nasnet_mobile"
    )


FAMILIES = {
    "convnext_tiny": Facts(odd=(65, 87, 3), pixels=(0.0, 255.0), top_arrays=4, strides=(4, 8, 16, 32)),
    "densenet121": Facts(odd=(65, 97, 3), pixels=(-2.0, 2.5)),
    "efficientnet_b0": Facts(
        odd=(67, 45, 3),
        pixels=(0.0, 255.0),
        weights=efficientnet_weights,
        dropped=("ZeroPadding2D",),  # correct_pad's paddings: "same" here
        extra_layout=lambda ours, theirs: assert_efficientnet_layout(ours, theirs, "efficientnet_b0"),
    ),
    "efficientnet_v2_b0": Facts(
        odd=(67, 45, 3),
        pixels=(0.0, 255.0),
        extra_layout=lambda ours, theirs: assert_efficientnet_layout(
            ours, theirs, "efficientnet_v2_b0", preprocessing=True
        ),
    ),
    "inception_resnet_v2": Facts(
        odd=(75, 89, 3), default=(299, 299, 3), params=55_873_736, names_keras_leaves_auto=True
    ),
    "mobilenet": Facts(odd=(67, 93, 3), blocks=13, strides=(2, 4, 8, 16, 32), model_name=False),
    "mobilenet_v2": Facts(
        odd=(67, 93, 3),
        dropped=("ZeroPadding2D",),
        paths=True,
        blocks=18,
        strides=(2, 4, 8, 16, 32),
        model_name=False,  # Keras': "mobilenetv2_1.00_224"
    ),
    "mobilenet_v3_small": Facts(
        odd=(67, 93, 3),
        pixels=(0.0, 255.0),
        dropped=("ZeroPadding2D",),
        paths=True,
        strides=(2, 4, 8, 16, 32),
        other_input_shape=(True,),  # Keras builds it at free size with the top; 224 here (its file)
    ),
    "nasnet_mobile": Facts(
        odd=(33, 45, 3),
        dropped=("ZeroPadding2D",),
        params=5_326_716,
        other_input_shape=(False,),  # Keras builds it at 224 without the top; free size here (its file)
        tol=1e-5,  # on JAX, 2.5e-6 at 33x45 (float32 order of XLA's fused cells; TensorFlow and torch < 1e-6)
    ),
    "resnet50": Facts(odd=(65, 97, 3), pixels=(-120.0, 150.0)),
    "resnet50_v2": Facts(odd=(65, 97, 3)),
    "vgg16": Facts(odd=(65, 97, 3), pixels=(-120.0, 150.0), top_arrays=6, weights=vgg_weights, free_top=False),
    "xception": Facts(odd=(71, 93, 3), default=(299, 299, 3), params=22_910_480, names_keras_leaves_auto=True),
}


class Family:
    """One representative's models, each built on first use, with one set of weights: Keras' model
    at the odd size defines them; every other model takes them where its arrays have their shapes
    (a head built for another size gets random weights of its own)."""

    def __init__(self, name: str):
        self.name = name
        self.facts = FAMILIES[name]
        self.keras_name = get_arch(name).keras_name
        self.cache = ModelCache()

    def _keras(self, **kwargs):
        if self.name == "nasnet_mobile":
            return _keras_nasnet_mobile(**kwargs)
        return getattr(keras.applications, self.keras_name)(weights=None, **kwargs)

    def _with(self, model, weights):
        set_weights(model, weights_like(model, weights))
        return model

    @property
    def weights(self) -> list:
        return self.keras_odd.get_weights()

    @property
    def keras_odd(self):
        """Keras' model with the top built at the odd size."""

        def build():
            model = self._keras(input_shape=self.facts.odd)
            set_weights(model, self.facts.weights(model))
            return model

        return self.cache.get("keras_odd", build)

    @property
    def keras_top(self):
        """Keras' model with the top at its default size."""
        return self.cache.get("keras_top", lambda: self._with(self._keras(), self.weights))

    @property
    def keras_notop(self):
        """Keras' model without the top (at the size Keras builds it: free for most)."""
        return self.cache.get("keras_notop", lambda: self._with(self._keras(include_top=False), self.backbone))

    @property
    def backbone(self) -> list:
        return self.keras_top.get_weights()[: -self.facts.top_arrays]

    @property
    def keras_notop_odd(self):
        """Keras' model without the top built at the odd size (where the model with the top does
        not have the last layer: see the test)."""

        def build():
            return self._with(
                self._keras(include_top=False, input_shape=self.facts.odd), self.keras_notop.get_weights()
            )

        return self.cache.get("keras_notop_odd", build)

    def ours(self, include_top: bool):
        """anyshape's Keras-named constructor's model at its default size: without the top that is
        free size (the constructor's input_shape=None, as Keras'), the model the odd-size test
        without the top runs too."""

        def build():
            model = getattr(applications, self.keras_name)(weights=None, include_top=include_top)
            return self._with(model, (self.keras_top if include_top else self.keras_notop).get_weights())

        return self.cache.get(("ours", include_top), build)

    @property
    def ours_odd(self):
        """anyshape's model with the top for the odd size: the free-size model (VGG: the model at
        the odd size, below 224, with its default head, Keras' Flatten top, what Keras builds there)."""

        def build():
            if self.facts.free_top:
                model = anyshape.create_model(self.name, input_shape=(None, None, 3))
            else:
                model = anyshape.create_model(self.name, input_shape=self.facts.odd)
            return self._with(model, self.weights)

        return self.cache.get("ours_odd", build)

    def images(self, shape, n=2):
        low, high = self.facts.pixels
        return images(shape, low=low, high=high, n=n)


@pytest.fixture(scope="module", params=sorted(FAMILIES))
def family(request):
    """One representative at a time: its tests run together and its models go when they end."""
    family = Family(request.param)
    yield family
    family.cache.clear()


@pytest.mark.parametrize("include_top", [True, False], ids=["top", "notop"])
def test_layout_equals_keras(family, include_top):
    """Keras' weight layout and layer names; the other members' layouts are in the family files."""
    ours = family.ours(include_top)
    theirs = family.keras_top if include_top else family.keras_notop
    if family.name == "convnext_tiny":
        assert convnext_layout(ours, False, include_top) == convnext_layout(theirs, True, include_top)
    else:
        facts = family.facts
        assert_keras_drop_in(ours, theirs, facts.dropped, names_keras_leaves_auto=facts.names_keras_leaves_auto)
    if family.facts.paths:
        assert [w.path for w in ours.weights] == [w.path for w in theirs.weights]
    if family.facts.extra_layout is not None:
        family.facts.extra_layout(ours, theirs)
    if family.facts.model_name:
        assert ours.name == theirs.name
    if include_top not in family.facts.other_input_shape:
        assert tuple(ours.input.shape) == tuple(theirs.input.shape)
    report = explain(tuple(ours.input.shape[1:]), arch=family.name, include_top=include_top)
    assert ours.count_params() == theirs.count_params() == report.params
    if include_top and family.facts.params is not None:
        assert ours.count_params() == family.facts.params


def test_record_names_its_layers(family):
    """The layers the `Arch` record names (first conv, input layers, classifier, blocks, feature
    points) are the default model's, and the feature points sit at the family's strides."""
    arch = get_arch(family.name)
    assert unknown_record_layers(family.ours(True), arch) == []
    if family.facts.blocks is not None:
        assert len(arch.blocks) == family.facts.blocks
    if family.facts.strides is not None:
        assert feature_strides(arch) == list(family.facts.strides)


def test_outputs_equal_keras_at_the_default_size(family):
    """With the top and without it, at Keras' default size (one image: the arithmetic is per image)."""
    x = family.images(family.facts.default, n=1)
    for include_top, theirs in ((True, family.keras_top), (False, family.keras_notop)):
        a, b = run(family.ours(include_top), x), run(theirs, x)
        assert a.shape == b.shape
        assert relative_error(a, b) <= 1e-6, include_top


@pytest.mark.every_backend
def test_free_size_model_with_the_top_equals_keras_at_an_odd_size(family):
    """The free-size model (VGG: its Flatten head at that size) equals Keras' model built at the
    odd size: the padding each strided layer needs is decided per call as Keras decides it for the
    size it is built at, and the head computes Keras' classes."""
    x = family.images(family.facts.odd)
    a, b = run(family.ours_odd, x), run(family.keras_odd, x)
    assert a.shape == b.shape == (2, 1000)
    assert relative_error(a, b) <= family.facts.tol


def test_free_size_model_without_the_top_equals_keras_at_an_odd_size(family):
    """The free-size model without the top (the Keras-named constructor's default without the top,
    which test_layout_equals_keras[notop] checks), at the odd size, against Keras' model built there: the
    model with the top viewed at the same layer (its last), or where that layer is not in the
    model with the top (ConvNeXt's final LayerNormalization; a layer Keras names itself), Keras'
    model without the top built at that size."""
    ours = family.ours(False)
    assert tuple(ours.input.shape) == (None, None, None, 3)
    last = ours.layers[-1].name
    x = family.images(family.facts.odd)
    if last in {layer.name for layer in family.keras_odd.layers}:
        theirs = keras.Model(family.keras_odd.input, family.keras_odd.get_layer(last).output)
    else:
        theirs = family.keras_notop_odd
    a, b = run(ours, x), run(theirs, x)
    assert a.shape == b.shape == (2, *explain(family.facts.odd, arch=family.name).output_shapes[0])
    assert relative_error(a, b) <= 1e-6
