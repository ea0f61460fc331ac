"""The per-network harness: every registered network passes the same tests (as timm's
tests/test_models.py runs over list_models()).

For each network, at small sizes:
- built at a free size with the top, the shape engine agrees with Keras' own shape inference,
  stage by stage, and on the parameter count; and at an odd non-square size a forward pass of that
  model gives, stage by stage, the shapes the engine computes;
- the minimum is exact: valid at the minimum, and one pixel less is refused by `create_model`,
  naming the collapsing stage;
- the Config round-trips through its dict form;
- exported to ONNX (below 100 M parameters; the representatives in tests/test_engine_family.py),
  it takes any batch, height and width and runs on ONNX Runtime at an odd size.
The heavier checks run on one member of each family (`REPRESENTATIVES`: the family's smallest),
whose blocks, paddings and head are the code every member runs: a free-size model equals a
fixed-size model of the same odd shape (same weights, BatchNorm moved, same images), which is
where keras.applications' `correct_pad` networks go wrong; Keras itself builds every layer at the
minimum and collapses one pixel below it; 1 and 4 channels, channels_first, save/load. This file runs
on TensorFlow in `make test` (the family files check each representative against
keras.applications on JAX and PyTorch); on another backend it runs the representatives.
"""

import keras
import numpy as np
import pytest
from model_helpers import (
    ModelCache,
    images,
    randomised_weights,
    relative_error,
    representatives,
    run,
    zero_initial_weights,
)

import anyshape
from anyshape.archs import get_arch, keras_ops, list_models
from anyshape.shapes import InvalidInputShape, explain, minimum_size

BACKEND = keras.backend.backend()


REPRESENTATIVES = representatives()
NAMES = list_models() if BACKEND == "tensorflow" else REPRESENTATIVES
MODELS = ModelCache()  # the representatives' free-size models with the top, built once


@pytest.fixture(scope="module", autouse=True)
def _free_the_models():
    yield
    MODELS.clear()


def free_model(name):
    """The network built with the top at free size. A representative's is built once for this
    module, with BatchNorm moved off its defaults; tests copy its weights, never change it. Another
    member's is read for its shapes only: its random initial weights are zeros (no draws; the
    ConvNeXt members have up to 350 M numbers)."""

    def build():
        model = anyshape.create_model(name, input_shape=(None, None, 3))
        model.set_weights(randomised_weights(model))
        return model

    if name in REPRESENTATIVES:
        return MODELS.get(name, build)
    with zero_initial_weights():
        return anyshape.create_model(name, input_shape=(None, None, 3))


def _odd_at_least(n: int) -> int:
    return n if n % 2 else n + 1


def small_shape(name: str, channels: int = 3) -> tuple[int, int, int]:
    """An odd, non-square (H, W) a little above the network's minimum with its top."""
    mh, mw = minimum_size(name, include_top=True)
    h = _odd_at_least(max(mh, 33))
    w = _odd_at_least(max(mw, h + 6))
    return (h, w, channels)


def _layer_shapes_agree(model, report):
    for stage in report.stages:
        got = tuple(model.get_layer(stage.layer).output.shape[1:])
        assert got == stage.shape, f"{stage.name} ({stage.layer}): Keras {got}, explain {stage.shape}"
    assert model.count_params() == report.params
    assert [tuple(o.shape[1:]) for o in model.outputs] == report.output_shapes


def _stage_shapes_at(model, report) -> dict:
    """{stage layer: the shape Keras computes there} for one forward pass of `model` (a free-size
    model) on images of `report`'s input shape: a view of the same layers, no new weights."""
    layers = [stage.layer for stage in report.stages]
    view = keras.Model(model.input, [model.get_layer(name).output for name in layers])
    x = images(report.input_shape, n=1, high=255.0, low=0.0)
    return {name: tuple(out.shape[1:]) for name, out in zip(layers, view(x, training=False))}


@pytest.mark.parametrize("name", NAMES)
def test_free_size_model_is_explained_at_free_and_at_an_odd_fixed_size(name):
    """Built with the top at a free size: the shape engine's stages, parameters and outputs are
    Keras' own shape inference, and at an odd non-square size a forward pass of that model gives,
    stage by stage, the shapes the engine computes for it (the size the network was not built at).
    The same model exported to ONNX (`_exports_with_free_batch_and_size`; the representatives are
    exported in tests/test_engine_family.py)."""
    free = free_model(name)
    full = explain(arch=name, include_top=True)
    _layer_shapes_agree(free, full)
    report = explain(small_shape(name), arch=name, include_top=True)
    computed = _stage_shapes_at(free, report)
    for stage in report.stages:
        assert computed[stage.layer] == stage.shape, (
            f"{stage.name} ({stage.layer}): Keras {computed[stage.layer]}, explain {stage.shape}"
        )
    if BACKEND == "tensorflow" and name not in REPRESENTATIVES:
        _exports_with_free_batch_and_size(free, report)


# Every network's export (issue 26, item 3): the 14 representatives' graphs are made and run in
# tests/test_engine_family.py (dynamic dims, ONNX Runtime and OpenVINO at two sizes, equal to
# Keras); the other 26 members' here, from the model this test builds anyway. The four largest
# (ConvNeXtLarge and XLarge, EfficientNetV2L, VGG19: 0.5 to 1.4 GB graphs) cost about 30 CPU s
# of the export's and ONNX Runtime's, and ConvNeXtXLarge's process peaks at 6.4 GB (10.5 GB
# before keras_to_onnx stopped copying the weights five times).


def _exports_with_free_batch_and_size(model, report):
    """`model` (free size, with the top) translated to ONNX as `export` and Predictor do
    (GraphModel.from_keras) takes any batch, height and width: its input is ["batch", "height",
    "width", C] and ONNX Runtime runs it on 2 images of an odd size other than `report`'s, giving
    the shape the shape engine computes."""
    import onnxruntime

    from anyshape.engine.graph_model import GraphModel

    graph = GraphModel.from_keras(model)
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = 1  # one session (Predictor makes two)
    session = onnxruntime.InferenceSession(graph.graph, options, providers=["CPUExecutionProvider"])
    h, w, c = report.input_shape
    assert [i.shape for i in session.get_inputs()] == [["batch", "height", "width", c]]
    other = (h + 2, w - 2, c)
    (out,) = session.run(None, {session.get_inputs()[0].name: images(other, n=2, low=0.0, high=255.0)})
    assert out.shape == (2, *explain(other, arch=graph.architecture, include_top=True).output_shapes[0])
    assert np.isfinite(out).all()


@pytest.mark.parametrize("name", REPRESENTATIVES)
def test_free_size_equals_an_odd_fixed_size(name):
    """One member per family (the code every member runs) built at a free size and at an odd
    non-square fixed size, BatchNorm moved off its defaults: the fixed model is explained like
    Keras builds it, and with the same weights both give the same outputs on the same images
    (where keras.applications' `correct_pad` networks go wrong)."""
    free = free_model(name)
    shape = small_shape(name)
    with zero_initial_weights():  # its weights are set from the free model's below
        fixed = anyshape.create_model(name, input_shape=shape)
    _layer_shapes_agree(fixed, explain(shape, arch=name, include_top=True))
    fixed.set_weights(free.get_weights())
    x = images(shape, high=1.0, low=-1.0) * 127.5 + 127.5  # 0..255: some networks rescale inside
    a, b = run(free, x), run(fixed, x)
    assert a.shape == b.shape
    assert relative_error(a, b) <= 1e-5


@pytest.mark.parametrize("name", NAMES)
def test_minimum_is_exact(name):
    """At the minimum the shape is valid; one pixel less is refused by `create_model` (before any
    layer is built) naming the collapsing stage and the nearest valid shape. On the representatives,
    built without anyshape's check: Keras makes every layer at least 1 x 1 at the minimum, and one
    pixel less gives it an empty map somewhere, or it refuses the shape itself. VGG: the
    minimum of its free-size top (the fully-convolutional head, 224); below 224 its default top is
    Keras' Flatten top, from 32 up (tests/test_family_vgg.py)."""
    form = {"head": "conv"} if get_arch(name).family == "vgg" else {}
    mh, mw = minimum_size(name, include_top=True)
    at_min = explain((mh, mw, 3), arch=name, include_top=True, **form)
    assert at_min.valid, at_min.reason()
    if name in REPRESENTATIVES:
        with zero_initial_weights():  # shapes only
            model = keras_ops.build(get_arch(name), at_min.config)
        assert min(d for layer in model.layers for d in layer.output.shape[1:] if d is not None) > 0
    if mh == 1:
        return  # nothing below 1 pixel to refuse
    below = explain((mh - 1, mw, 3), arch=name, include_top=True, **form)
    assert not below.valid
    with pytest.raises(InvalidInputShape) as e:
        anyshape.create_model(name, input_shape=(mh - 1, mw, 3), **form)
    named = below.collapse[0].stage if below.collapse else below.problems[0].split(":")[0]
    assert named in str(e.value) and f"Nearest valid shape: ({mh}, {mw}, 3)" in str(e.value)
    if name not in REPRESENTATIVES:
        return
    try:
        with zero_initial_weights():  # shapes only
            model = keras_ops.build(get_arch(name), below.config)
    except ValueError:
        return  # Keras refuses it too
    dims = [d for layer in model.layers for d in layer.output.shape[1:] if d is not None]
    assert min(dims) <= 0, "Keras builds every layer one pixel below the minimum explain computes"


@pytest.mark.parametrize("name", NAMES)
def test_config_round_trips(name):
    arch = get_arch(name)
    config = arch.config(input_shape=(None, None, 3))
    again = arch.config_class.from_dict(config.to_dict())
    assert again == config
    assert arch.keras_name.lower().replace("_", "") == name.replace("_", "")
    from anyshape.data_config import DataConfig

    assert DataConfig(mode=arch.preprocessing).mode == arch.preprocessing  # Keras' preprocess_input mode


@pytest.mark.parametrize("name", REPRESENTATIVES)
def test_any_channel_count(name):
    """1 and 4 channels change only the first convolution's kernel (and the in-graph preprocessing
    in front of it), and the model runs."""
    arch = get_arch(name)
    changed = {arch.first_conv, *arch.input_layers}

    def weight_shapes(model):
        return {(layer.name, i): tuple(w.shape) for layer in model.layers for i, w in enumerate(layer.weights)}

    rgb = weight_shapes(free_model(name))  # the weights do not depend on the size (free == fixed above)
    for c in (1, 4):
        shape = small_shape(name, c)
        model = anyshape.create_model(name, input_shape=shape)
        assert model.count_params() == explain(shape, arch=name, include_top=True).params
        shapes = weight_shapes(model)
        assert shapes.keys() == rgb.keys()
        differ = {layer for (layer, i), s in shapes.items() if s != rgb[(layer, i)]}
        assert arch.first_conv in differ and differ <= changed, differ
        kernel = model.get_layer(arch.first_conv).weights[0]
        assert kernel.shape[2] == c
        assert np.all(np.isfinite(run(model, images(shape, n=1))))


@pytest.mark.parametrize("name", REPRESENTATIVES)
def test_channels_first_equals_channels_last(name):
    h, w, c = small_shape(name)
    last = anyshape.create_model(name, input_shape=(h, w, c), include_top=False)
    last.set_weights(randomised_weights(last))
    first = anyshape.create_model(name, input_shape=(c, h, w), include_top=False, data_format="channels_first")
    first.set_weights(last.get_weights())
    x = images((h, w, c)) * 127.5 + 127.5
    a = run(last, x)
    b = run(first, np.ascontiguousarray(np.transpose(x, (0, 3, 1, 2))))
    assert b.shape == (a.shape[0], a.shape[3], a.shape[1], a.shape[2])
    assert relative_error(np.transpose(b, (0, 2, 3, 1)), a) <= 1e-5


@pytest.mark.parametrize("name", REPRESENTATIVES)
def test_save_and_load_round_trip(name, tmp_path):
    from anyshape.archs import model_config
    from anyshape.model_info import load_model, save_model

    model = free_model(name)
    loaded = load_model(save_model(model, tmp_path / f"{name}.keras"))
    assert model_config(loaded)[1] == model.anyshape_config
    x = images(small_shape(name)) * 127.5 + 127.5
    assert relative_error(run(loaded, x), run(model, x)) <= 1e-6
