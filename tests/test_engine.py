"""anyshape.engine and anyshape.onnx_graph: the ONNX Runtime engine equals the Keras model.

Models are random-initialised, with random BatchNorm statistics so every folded BN matters;
outputs are compared with `model.predict_on_batch` on the same input (<= 1e-4 max abs).
"""

import keras
import numpy as np
import pytest
from model_helpers import move_batch_norm_statistics

from anyshape import engine
from anyshape.inception_v3 import InceptionV3
from anyshape.onnx_graph import keras_to_onnx

ort = pytest.importorskip("onnxruntime")

TOL = 1e-4


def _input(shape, seed=1):
    return np.random.default_rng(seed).uniform(-1, 1, shape).astype("float32")


@pytest.fixture(scope="module")
def features_last():
    """channels_last, include_top=False, average-pooled features, free size."""
    return move_batch_norm_statistics(InceptionV3(weights=None, include_top=False, pooling="avg"))


@pytest.fixture(scope="module")
def base():
    """channels_last, include_top=False, no pooling, free size: for the feature models of blocks
    (read only: engine.feature_model makes new models on its layers)."""
    return InceptionV3(weights=None, include_top=False)


@pytest.fixture(scope="module")
def predictor_last(features_last):
    p = engine.Predictor(features_last)
    yield p
    p.close()


@pytest.mark.parametrize("shape", [(1, 75, 75, 3), (3, 107, 140, 3), (2, 150, 150, 3), (1, 91, 203, 3)])
def test_onnxruntime_equals_keras_channels_last(features_last, predictor_last, shape):
    assert predictor_last.engine == "onnxruntime"
    x = _input(shape)
    want = features_last.predict_on_batch(x)
    got = predictor_last(x)
    assert got.shape == want.shape == (shape[0], 2048)
    assert np.abs(got - want).max() <= TOL
    assert np.abs(want).max() > 0.01  # not a trivially zero comparison


def test_batch_split_across_cores_is_the_same_as_one_by_one(features_last):
    # two threads whatever ANYSHAPE_THREADS says (tests/conftest.py sets it to 1 under xdist): the
    # split runs the pieces on the single-threaded session, one by one runs the two-thread one
    p = engine.Predictor(features_last, threads=2)
    assert p.engine == "onnxruntime" and p.threads == 2
    x = _input((5, 80, 96, 3), seed=3)
    together = p(x)
    alone = np.concatenate([p(x[i : i + 1]) for i in range(5)])
    p.close()
    assert np.abs(together - alone).max() <= 1e-5


def test_batch_split_is_one_piece_per_core_and_small_batches_side_by_side():
    from anyshape.engine.batch_split import one_per_core, pieces

    assert pieces(5, 2) == [slice(0, 3), slice(3, 5)] and pieces(1, 2) == [slice(0, 1)]
    assert pieces(3, 8) == [slice(0, 1), slice(1, 2), slice(2, 3)] and pieces(16, 1) == [slice(0, 16)]
    small, big = [np.zeros(1), np.zeros(2), np.zeros(1)], [np.zeros(8), np.zeros(8)]
    assert one_per_core(small, 2) and not one_per_core(small, 1)
    assert not one_per_core(big, 2) and not one_per_core([np.zeros(1)], 2)  # big, or one batch: split it
    # the bound: side by side below two images per core on average (mutation testing found it untested)
    assert one_per_core([np.zeros(1), np.zeros(1)], 2) and one_per_core([np.zeros(3), np.zeros(4)], 2)
    assert not one_per_core([np.zeros(4), np.zeros(4)], 2)


def test_openvino_splits_a_batch_across_cores_as_onnx_runtime_does(features_last):
    """Two threads (whatever ANYSHAPE_THREADS says): a batch of one runs on the latency-compiled
    model, and no second model is compiled for it; a larger batch is split across the cores, each
    piece run by a one-thread stream of a model compiled for throughput, compiled then, once; small
    batches of different sizes run side by side, one per stream; with one thread nothing is split.
    Every way gives the one-by-one results in order, equal to Keras."""
    p = engine.Predictor(features_last, engine="openvino", threads=2)
    backend = p._backend
    assert p.engine == "openvino" and backend.threads == 2
    x = _input((5, 80, 96, 3), seed=3)
    alone = np.concatenate([p(x[i : i + 1]) for i in range(5)])
    assert backend._streams is None  # a batch of one never compiles the streams' model
    together = p(x)
    streams = backend._streams_compiled
    assert streams.get_property("NUM_STREAMS") == 2 and len(backend._streams) == 2
    assert np.abs(p(x[:4]) - together[:4]).max() <= 1e-5 and backend._streams_compiled is streams  # compiled once
    small = [x[:1], _input((2, 75, 75, 3), seed=4), x[1:3], x[3:4], _input((1, 90, 77, 3), seed=5)]
    sizes = []
    run_pieces = backend._side_by_side
    backend._side_by_side = lambda batches, requests=None: (
        sizes.append([len(b) for b in batches]),
        run_pieces(batches, requests),
    )[1]
    side_by_side = p.run_many(small)
    assert sizes == [[1, 2], [2, 1], [1]]  # the small batches two at a time, whole
    sizes.clear()
    two_big = p.run_many([x[:4], x[1:5]])  # two images per core or more: each batch split across the cores
    assert sizes == [[2, 2], [2, 2]]
    assert np.abs(np.concatenate(two_big) - np.concatenate([together[:4], together[1:5]])).max() <= 1e-5
    p.close()
    one_core = engine.Predictor(features_last, engine="openvino", threads=1)
    assert np.abs(one_core(x) - together).max() <= 1e-5
    assert one_core._backend._streams is None  # one core: nothing to split, no second model
    one_core.close()
    assert np.abs(together - alone).max() <= 1e-5
    want = [features_last.predict_on_batch(b) for b in small]
    assert [o.shape for o in side_by_side] == [w.shape for w in want]
    assert max(np.abs(o - w).max() for o, w in zip(side_by_side, want)) <= TOL
    assert np.abs(together - features_last.predict_on_batch(x)).max() <= TOL


def _shifted_strided_net():
    """A tiny network whose graph starts Transpose -> Add (a Rescaling's offset, folded) -> padded
    Conv, with a strided 1x1 convolution after it."""
    inputs = keras.Input((None, None, 3))
    x = keras.layers.Rescaling(1 / 127.5, offset=-1)(inputs)
    x = keras.layers.Conv2D(8, 3, strides=2, padding="same", activation="relu")(x)
    x = keras.layers.Conv2D(8, 1, strides=2)(x)
    return keras.Model(inputs, keras.layers.GlobalAveragePooling2D()(x))


def _layer_types(compiled) -> set:
    """The kinds of node an OpenVINO compiled model runs (its runtime model's layerType)."""
    return {op.get_rt_info()["layerType"].astype(str) for op in compiled.get_runtime_model().get_ordered_ops()}


def test_openvino_compiles_a_model_for_a_shape_that_comes_back():
    """A shape's second batch compiles a model for exactly that shape (its third runs it, not
    compiled again); the latency model for a batch of one, the streams' for a batch split into
    pieces of one shape; a batch cut into pieces of two shapes, and small batches side by side,
    stay on the dynamic models; at most STATIC_MODELS are kept, the least recently used dropped.
    Every result equals the dynamic model's and Keras'."""
    from anyshape.engine.openvino_backend import STATIC_MODELS

    model = _shifted_strided_net()
    p = engine.Predictor(model, engine="openvino", threads=2)
    backend = p._backend
    one, four, five = (_input((n, 33, 40, 3), seed=n) * 127.5 + 127.5 for n in (1, 4, 5))
    dynamic = {n: p(x) for n, x in ((1, one), (4, four), (5, five))}  # each shape's first batch
    assert not backend._static
    assert np.abs(p(one) - dynamic[1]).max() <= 1e-5
    latency = backend._static[("LATENCY", (1, 33, 40, 3))][0]
    assert list(backend._static) == [("LATENCY", (1, 33, 40, 3))]
    assert "Transpose" not in _layer_types(
        latency
    )  # its input shift moved first (input_shift_first), the Transpose fused away
    assert np.abs(p(four) - dynamic[4]).max() <= 1e-5  # pieces of 2 and 2: one shape
    assert list(backend._static)[-1] == ("THROUGHPUT", (2, 33, 40, 3))
    assert np.abs(p(one) - dynamic[1]).max() <= 1e-5 and backend._static[("LATENCY", (1, 33, 40, 3))][0] is latency
    dynamic_request, backend._request = backend._request, None  # the static model runs the shape now
    for _ in range(2):
        assert np.abs(p(one) - dynamic[1]).max() <= 1e-5
    assert backend._static[("LATENCY", (1, 33, 40, 3))][0] is latency  # never compiled again
    backend._request = dynamic_request
    for _ in range(2):
        assert np.abs(p(five) - dynamic[5]).max() <= 1e-5  # pieces of 3 and 2: the dynamic streams
    assert all(key[1][0] != 3 for key in backend._static)
    for _ in range(2):
        p.run_many([one, one])  # side by side on the dynamic streams: nothing compiled
    assert len(backend._static) == 2
    other = _input((1, 41, 35, 3), seed=7) * 127.5 + 127.5
    for _ in range(2):
        got = p(other)
    assert len(backend._static) == STATIC_MODELS == 2  # the least recently used (the split batch's) dropped
    assert list(backend._static) == [("LATENCY", (1, 33, 40, 3)), ("LATENCY", (1, 41, 35, 3))]
    for x, out in ((one, dynamic[1]), (four, dynamic[4]), (five, dynamic[5]), (other, got)):
        assert np.abs(out - model.predict_on_batch(x)).max() <= TOL
    p.close()


def test_the_count_of_shapes_towards_a_static_model_is_bounded(monkeypatch):
    """Shapes are counted towards their static model up to _SHAPES_COUNTED of them; a new shape
    past that starts the count over (a run of many shapes keeps a small count), so a shape seen
    once before the restart needs two more batches."""
    from anyshape.engine import openvino_backend

    monkeypatch.setattr(openvino_backend, "_SHAPES_COUNTED", 2)
    model = _shifted_strided_net()
    p = engine.Predictor(model, engine="openvino", threads=2)
    a, b, c = (_input((1, 33 + i, 40, 3), seed=i) for i in range(3))
    for x in (a, b, c, a):  # c starts the count over: a's second batch counts as its first
        p(x)
    assert not p._backend._static and len(p._backend._seen) == 2
    p(a)
    assert list(p._backend._static) == [("LATENCY", (1, 33, 40, 3))]
    p.close()


def test_a_graph_over_the_size_bound_gets_no_static_model(monkeypatch):
    """Each compiled model holds about twice the graph's size: a graph over STATIC_MAX_GRAPH_BYTES
    keeps its dynamic models only, whatever repeats; one at the bound gets its static model."""
    from anyshape.engine import openvino_backend

    model = _shifted_strided_net()
    x = _input((1, 33, 40, 3), seed=3) * 127.5 + 127.5
    size = len(engine.GraphModel.from_keras(model).graph)
    for bound, kept in ((size - 1, []), (size, [("LATENCY", (1, 33, 40, 3))])):
        monkeypatch.setattr(openvino_backend, "STATIC_MAX_GRAPH_BYTES", bound)
        p = engine.Predictor(model, engine="openvino", threads=2)
        for _ in range(3):
            assert np.abs(p(x) - model.predict_on_batch(x)).max() <= TOL
        assert list(p._backend._static) == kept and p._backend._static_ok is bool(kept)
        p.close()


def test_openvino_profile_reports_the_last_batchs_nodes(monkeypatch):
    """With PERF_COUNT set, `profile` gives OpenVINO's counters for the model that ran the last
    batch, summed over its pieces: each node's kind, precision, kernel, time and the graph's layers
    fused into it (the two convolutions among them); without it, nothing."""
    from anyshape.engine import openvino_backend

    model = _shifted_strided_net()
    x1, x4 = _input((1, 33, 40, 3), seed=1), _input((4, 33, 40, 3), seed=4)
    p = engine.Predictor(model, engine="openvino", threads=2, precision="fp32")
    p(x1)
    assert p._backend.profile() == []  # compiled without the counters
    p.close()
    monkeypatch.setattr(openvino_backend, "PERF_COUNT", True)
    p = engine.Predictor(model, engine="openvino", threads=2, precision="fp32")
    assert p._backend.profile() == []  # nothing ran yet
    p(x1)
    one = p._backend.profile()
    convolutions = [r for r in one if r["type"] == "Convolution"]
    assert len(convolutions) == 2 and all(r["precision"] == "f32" and r["kernel"] for r in convolutions)
    assert sorted(layer.split("/")[0] for r in convolutions for layer in r["layers"].split(",")[:1]) == sorted(
        layer.name for layer in model.layers if isinstance(layer, keras.layers.Conv2D)
    )
    assert all(r["ms"] >= 0 for r in one) and sum(r["ms"] for r in one) > 0
    assert [r["node"] for r in one] == [r["node"] for r in one if r["node"]]  # every row named
    p(x4)  # two pieces of 2 on the streams' model: a row per node, its time summed over both
    four = p._backend.profile()
    assert len(p._backend._ran) == 2 and len({r["node"] for r in four}) == len(four)
    per_piece = [
        {i.node_name: i.real_time.total_seconds() * 1e3 for i in r.get_profiling_info()} for r in p._backend._ran
    ]
    for row in four:
        assert row["ms"] == pytest.approx(sum(piece.get(row["node"], 0.0) for piece in per_piece))
    p.close()
    assert p._backend.profile() == []  # closed: nothing ran


def test_a_static_model_shifts_the_input_before_its_transpose():
    """input_shift_first moves the folded Rescaling's offset before the input Transpose, in NHWC:
    the same values, and OpenVINO then runs no Transpose (fused with its Reorder), where the
    dynamic model runs one; any other input graph is left as it is."""
    import openvino as ov

    from anyshape.engine.openvino_backend import input_shift_first

    graph = engine.GraphModel.from_keras(_shifted_strided_net()).graph
    core = ov.Core()
    x = _input((2, 33, 40, 3), seed=2) * 127.5 + 127.5
    config = {"INFERENCE_PRECISION_HINT": "f32"}

    def executed(model):
        compiled = core.compile_model(model, "CPU", config)
        return compiled.create_infer_request().infer({0: x})[0].copy(), _layer_types(compiled)

    want, dynamic_kinds = executed(core.read_model(graph))
    static = core.read_model(graph)
    static.reshape([2, 33, 40, 3])
    unmoved, _ = executed(static)
    input_shift_first(static)
    (reader,) = static.get_parameters()[0].output(0).get_target_inputs()
    (after,) = reader.get_node().output(0).get_target_inputs()
    assert reader.get_node().get_type_name() == "Add" and after.get_node().get_type_name() == "Transpose"
    got, static_kinds = executed(static)
    assert "Transpose" in dynamic_kinds and "Transpose" not in static_kinds
    assert (
        np.abs(got - want).max() <= 1e-5 * np.abs(want).max()
        and np.abs(unmoved - want).max() <= 1e-5 * np.abs(want).max()
    )
    plain = core.read_model(engine.GraphModel.from_keras(InceptionV3(weights=None, include_top=False)).graph)
    before = [op.get_type_name() for op in plain.get_ordered_ops()]
    input_shift_first(plain)  # no Rescaling: nothing to move
    assert [op.get_type_name() for op in plain.get_ordered_ops()] == before


def test_an_int8_graph_with_a_strided_pointwise_convolution_stays_dynamic():
    """OpenVINO cuts a strided 1x1 convolution out of the int8 chain for a static shape (ResNet50
    ran 0.75x): such an int8 graph never gets a static model; one without does; a float graph
    with one does."""
    import openvino as ov

    from anyshape.engine.openvino_backend import static_shapes_help
    from anyshape.engine.quantize import quantize_graph

    model = _shifted_strided_net()
    calibration = [_input((4, 33, 40, 3), seed=s) * 127.5 + 127.5 for s in (1, 2)]
    int8 = quantize_graph(engine.GraphModel.from_keras(model), calibration)
    assert not static_shapes_help(ov.Core().read_model(int8.graph))
    inputs = keras.Input((None, None, 3))
    pointwise = keras.layers.Conv2D(8, 3, strides=2, padding="same")(inputs)
    flat = keras.Model(inputs, keras.layers.GlobalAveragePooling2D()(keras.layers.Conv2D(8, 1)(pointwise)))
    assert static_shapes_help(
        ov.Core().read_model(quantize_graph(engine.GraphModel.from_keras(flat), calibration).graph)
    )
    p = engine.Predictor(int8, engine="openvino", threads=2)
    for _ in range(3):
        p(calibration[0][:1])
        p(calibration[0])
    assert not p._backend._static and p._backend._static_ok is False
    p.close()
    p = engine.Predictor(model, engine="openvino", threads=2)
    for _ in range(2):
        p(calibration[0][:1])
    assert list(p._backend._static) == [("LATENCY", (1, 33, 40, 3))]
    p.close()


def _residual_bn_net(data_format: str = "channels_last", channels: int = 3):
    """Two strided convolutions, then a block as ResNetV2's end: 3x3 and 1x1 convolutions, a
    residual sum and BatchNorm after it (moved statistics): at 4 x 4 the block's map is 1 x 1."""
    layers = keras.layers
    inputs = keras.Input((channels, None, None) if data_format == "channels_first" else (None, None, channels))
    x = inputs
    for _ in range(2):
        x = layers.Conv2D(64, 3, strides=2, padding="same", activation="relu", data_format=data_format)(x)
    y = layers.Conv2D(64, 3, padding="same", activation="relu", data_format=data_format)(x)
    y = layers.Conv2D(64, 1, data_format=data_format)(y)
    axis = 1 if data_format == "channels_first" else -1
    x = layers.ReLU()(layers.BatchNormalization(axis=axis)(layers.Add()([x, y])))
    model = keras.Model(inputs, layers.GlobalAveragePooling2D(data_format=data_format)(x))
    return move_batch_norm_statistics(model)


def test_an_int8_image_small_enough_for_a_one_pixel_map_runs_on_its_static_model():
    """OpenVINO's dynamic int8 model gets a 1x1 convolution with a residual sum and BatchNorm
    fused after it wrong where it writes one pixel in all (openvino_backend's doc: on the AMX
    Xeon, this network at 4 x 4 was off by 260 times its largest output, ResNet50V2 at 32 px by
    0.15 in its scores): an int8 request of one image no larger than ONE_PIXEL_SIDE each way runs
    on a model compiled for its shape at once; a batch of such images runs whole (never in pieces
    of one), batches of one image one after the other; every result equals ONNX Runtime's. A
    larger image, and a float graph, keep the usual path (a static model on a shape's second batch)."""
    from anyshape.engine.openvino_backend import ONE_PIXEL_SIDE
    from anyshape.engine.quantize import quantize_graph

    def close(a, b):
        return np.abs(np.asarray(a) - np.asarray(b)).max() <= 1e-3 * np.abs(np.asarray(b)).max()

    model = _residual_bn_net()
    tiny, three = _input((1, 4, 4, 3), seed=4), _input((3, 4, 4, 3), seed=5)
    int8 = quantize_graph(engine.GraphModel.from_keras(model), [three])
    ort = engine.Predictor(int8, engine="onnxruntime")
    p = engine.Predictor(int8, engine="openvino", threads=2)
    backend = p._backend
    assert close(p(tiny), ort(tiny)) and list(backend._static) == [("LATENCY", (1, 4, 4, 3))]
    assert close(p(three), ort(three)) and backend._streams is None  # whole: no piece of one
    for got, want in zip(p.run_many([tiny, three[:1]]), (ort(tiny), ort(three[:1]))):
        assert close(got[0], want) and backend._streams is None
    edge = _input((1, ONE_PIXEL_SIDE, ONE_PIXEL_SIDE + 1, 3), seed=6)  # one side over: the usual path
    assert close(p(edge), ort(edge)) and list(backend._static) == [("LATENCY", (1, 4, 4, 3))]
    p.close()
    float_p = engine.Predictor(model, engine="openvino", precision="fp32", threads=2)
    float_p(tiny)
    assert not float_p._backend._static  # a float graph: dynamic first
    float_p.close()
    # channels_first: the sides are the last two axes (40 channels, 4 x 4: at once)
    first = _residual_bn_net("channels_first", channels=40)
    x = _input((1, 40, 4, 4), seed=7)
    p = engine.Predictor(quantize_graph(engine.GraphModel.from_keras(first), [x]), engine="openvino", threads=2)
    p(x)
    assert list(p._backend._static) == [("LATENCY", (1, 40, 4, 4))]
    p.close()


def test_channels_first_feature_map_equals_keras():
    model = move_batch_norm_statistics(InceptionV3(weights=None, include_top=False, data_format="channels_first"), 2)
    p = engine.Predictor(model)
    assert p.data_format == "channels_first" and p.channels == 3
    x = _input((2, 3, 96, 120))
    want = model.predict_on_batch(x)
    got = p(x)
    assert got.shape == want.shape == (2, 2048, 1, 2)
    assert np.abs(got - want).max() <= TOL


def test_channels_first_survives_every_way_a_graph_model_travels(tmp_path):
    """A channels_first model written and read back every way a GraphModel travels (to_bytes /
    from_bytes, a pickled Predictor as Ray sends it, an exported .onnx file, an int8 file from
    quantize) still reads image files as channels_first: each gives the Keras model's features
    (the int8 file to int8's accuracy)."""
    import pickle

    from PIL import Image

    model = move_batch_norm_statistics(
        InceptionV3(
            weights=None, include_top=False, pooling="avg", input_shape=(3, None, None), data_format="channels_first"
        ),
        3,
    )
    images = tmp_path / "images"
    images.mkdir()
    rng = np.random.default_rng(5)
    for i in range(4):
        Image.fromarray(rng.integers(0, 255, (90 + 7 * i, 110, 3), dtype=np.uint8)).save(images / f"im{i}.png")
    paths = sorted(images.iterdir())
    size = (80, 100)  # not square: an image laid out as channels_last cannot pass for channels_first
    reader = engine.ImageReader(size=size, data_format="channels_first")
    want = model.predict_on_batch(np.stack([reader.read(p) for p in paths]))

    def features(p):
        assert p.data_format == "channels_first"
        out = {r.path: r.output for r in engine.run_images(p, engine.feature_reader(p, size), paths)}
        return np.stack([out[path] for path in paths])

    graph = engine.GraphModel.from_keras(model)
    engine.export_model(model, tmp_path / "m.onnx")
    travelled = {
        "to_bytes/from_bytes": engine.Predictor(engine.GraphModel.from_bytes(graph.to_bytes())),
        "pickled Predictor": pickle.loads(pickle.dumps(engine.Predictor(model))),
        "exported .onnx": engine.Predictor(engine.load_or_build(tmp_path / "m.onnx")),
    }
    for how, p in travelled.items():
        assert np.abs(features(p) - want).max() <= TOL, how
    engine.quantize(model, images, tmp_path / "int8.onnx", size=size)
    int8 = engine.load_or_build(tmp_path / "int8.onnx")
    assert (int8.precision, int8.data_format) == ("int8", "channels_first")
    got = features(engine.Predictor(int8))
    assert np.abs(got - want).max() > 0  # really quantized
    assert np.abs(got - want).max() <= 0.1 * np.abs(want).max()


def test_torch_semantics_and_aux_head_equal_keras():
    """count_include_pad (ZeroPadding + valid pool), BN with gamma, the aux head, logits."""
    model = move_batch_norm_statistics(
        InceptionV3(
            weights=None,
            include_top=True,
            aux_logits=True,
            count_include_pad=True,
            bn_scale=True,
            classifier_activation=None,
            input_shape=(299, 299, 3),
            classes=10,
        ),
        4,
    )
    p = engine.Predictor(model)
    x = _input((1, 299, 299, 3))
    want = model.predict_on_batch(x)
    got = p(x)
    assert isinstance(got, list) and len(got) == 2
    for g, w in zip(got, want):
        assert g.shape == (1, 10)
        assert np.abs(g - np.asarray(w)).max() <= TOL * max(1.0, float(np.abs(w).max()))


def test_softmax_head_and_single_channel_input():
    model = move_batch_norm_statistics(
        InceptionV3(weights=None, include_top=True, input_shape=(None, None, 1), classes=7), 5
    )
    p = engine.Predictor(model)
    assert p.channels == 1
    x = _input((2, 83, 77, 1))
    got, want = p(x), model.predict_on_batch(x)
    assert np.allclose(got.sum(axis=1), 1.0, atol=1e-5)
    assert np.abs(got - want).max() <= TOL


def test_keras_applications_model_translates_too():
    ref = keras.applications.InceptionV3(weights=None, include_top=False, pooling="max", input_shape=(None, None, 3))
    move_batch_norm_statistics(ref, 6)
    x = _input((1, 100, 100, 3))
    got = engine.Predictor(ref)(x)
    assert np.abs(got - ref.predict_on_batch(x)).max() <= TOL


def test_graph_rewrites_change_nothing_but_speed(features_last):
    plain = keras_to_onnx(features_last, optimize=False)
    fast = keras_to_onnx(features_last, optimize=True)
    ops_plain = [n.op_type for n in plain.graph.node]
    ops_fast = [n.op_type for n in fast.graph.node]
    assert "BatchNormalization" not in ops_plain and "Mul" in ops_plain  # BN emitted as Mul/Add
    assert "Mul" not in ops_fast and ops_fast.count("Conv") == ops_plain.count("Conv") == 94  # BN folded
    assert ops_plain.count("Concat") == 15 and ops_fast.count("Concat") == 11  # mixed9/10 inner concats inlined
    assert ops_fast.count("Transpose") == 1  # NHWC -> NCHW once, at the input
    x = _input((2, 75, 90, 3))
    outs = [
        ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"input": x})[0]
        for m in (plain, fast)
    ]
    assert np.abs(outs[0] - outs[1]).max() <= TOL
    dims = fast.graph.input[0].type.tensor_type.shape.dim
    assert [d.dim_param or d.dim_value for d in dims] == ["batch", "height", "width", 3]


def test_graph_model_is_the_emitters_graph_serialised_and_checked_once(features_last, monkeypatch):
    """GraphModel.from_keras (what export and Predictor run) is keras_to_onnx's graph byte for
    byte, serialised once and checked on those bytes: the checker still runs, on no second copy
    (with the four copies keras_to_onnx no longer makes: ConvNeXtXLarge 10.5 -> 6.4 GB)."""
    import onnx

    want = keras_to_onnx(features_last).SerializeToString()
    assert keras_to_onnx(features_last, check=False).SerializeToString() == want
    checked = []
    real = onnx.checker.check_model
    monkeypatch.setattr(onnx.checker, "check_model", lambda m, *a, **k: (checked.append(type(m)), real(m, *a, **k)))
    assert engine.GraphModel.from_keras(features_last).graph == want
    assert checked == [bytes]


def test_metadata_is_written_without_parsing_the_graph_again(predictor_last):
    """GraphModel.to_bytes replaces the metadata at the protobuf level: the file parses to what
    parsing the graph, replacing its metadata and serialising it gives; written again after a load,
    its metadata is there once; a graph cut short is refused, not written."""
    import json

    import onnx

    from anyshape.engine.graph_model import METADATA_KEY, _varint, with_metadata

    graph = predictor_last.graph_model
    data = graph.to_bytes()
    want = onnx.load_from_string(graph.graph)
    onnx.helper.set_model_props(want, {METADATA_KEY: json.dumps(graph.metadata())})
    assert onnx.load_from_string(data) == want
    again = onnx.load_from_string(engine.GraphModel.from_bytes(data).to_bytes())
    assert again == want and [p.key for p in again.metadata_props] == [METADATA_KEY]
    replaced = onnx.load_from_string(with_metadata(data, {"a": "1", "b": "2"}))  # the old entry goes
    assert {p.key: p.value for p in replaced.metadata_props} == {"a": "1", "b": "2"}
    assert replaced.graph == want.graph
    for cut in (data[:-3], data[:1]):
        with pytest.raises(ValueError, match="not a serialised ONNX model"):
            with_metadata(cut, {})
    with pytest.raises(ValueError, match="wire type 5 at byte 2"):  # field 1 as a fixed32: not ONNX's
        with_metadata(b"\x08\x07\x0d\x00\x00\x00\x00", {})
    assert _varint(memoryview(bytes([0x80, 0x01, 0x05])), 0) == (128, 2)  # a zero group, continued


def test_feature_model_layers_and_pooling(base):
    mixed5 = engine.feature_model(base, "mixed5", "max")
    p = engine.Predictor(mixed5)
    x = _input((2, 75, 75, 3))
    got = p(x)
    assert got.shape == (2, 768)
    assert np.abs(got - mixed5.predict_on_batch(x)).max() <= TOL
    assert engine.feature_model(base, "mixed2", None).output.shape[1:] == (None, None, 288)
    with pytest.raises(ValueError, match="mixed0 .. mixed10|mixed0, mixed1"):
        engine.feature_model(base, "mixed11")
    # avg_pool asked with another pooling is mixed10 pooled that way (the CLI's --pooling max|none)
    assert engine.feature_layer("avg_pool", "max") == engine.feature_layer("mixed10", "max") == "mixed10"
    assert engine.feature_layer("avg_pool", "avg") == "avg_pool"
    avg_max = engine.feature_model(base, "avg_pool", "max")
    assert avg_max.name == "mixed10_features"
    assert (
        np.abs(avg_max.predict_on_batch(x) - engine.feature_model(base, "mixed10", "max").predict_on_batch(x)).max()
        == 0
    )
    assert engine.feature_model(base, "avg_pool", None).output.shape[1:] == (None, None, 2048)
    with pytest.raises(ValueError, match="pooling must be"):
        engine.feature_layer("avg_pool", "sum")


def test_keras_fallback_when_onnxruntime_is_missing(features_last, predictor_last, monkeypatch):
    """The fallback is chosen from what imports, whatever the Keras backend (so TensorFlow only),
    and gives the model's features: checked against ONNX Runtime's, computed before it went."""
    import sys

    x = _input((2, 83, 97, 3), seed=7)
    want = predictor_last(x)
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import onnxruntime -> ImportError
    monkeypatch.setitem(sys.modules, "openvino", None)  # and no other fast engine either
    p = engine.Predictor(features_last)
    assert p.engine == "keras" and "onnxruntime is not installed" in p.fallback_reason
    got = p(x)
    assert got.shape == want.shape == (2, 2048) and np.abs(want).max() > 0.01
    assert np.abs(got - want).max() <= TOL
    with pytest.raises(RuntimeError, match="onnxruntime"):
        engine.Predictor(features_last, engine="onnxruntime")


def test_parse_size():
    assert engine.parse_size("native") == "native"
    assert engine.parse_size("299") == (299, 299)
    assert engine.parse_size("150,200") == (150, 200)
    assert engine.parse_size(120) == (120, 120)
    for bad in ("0", "a,b", "1,2,3"):
        with pytest.raises(ValueError, match="native, N or H,W|'native', N or H,W"):
            engine.parse_size(bad)
    # the text grammar is shared with --input-shape (anyshape.shapes.parse_dims); only "none" differs
    from anyshape.cli import parse_shape
    from anyshape.shapes import parse_dims

    assert engine.parse_size("150x200") == parse_shape("150x200") == parse_dims(" 150, 200 ") == (150, 200)
    assert parse_shape("none,?,3") == parse_dims("none,?,3", unknown=True) == (None, None, 3)
    with pytest.raises(ValueError, match="'native', N or H,W"):
        engine.parse_size("none,none")


def test_image_reader_size_policies(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (120, 200, 3), dtype=np.uint8)).save(tmp_path / "wide.png")
    Image.fromarray(rng.integers(0, 255, (60, 90, 3), dtype=np.uint8)).save(tmp_path / "small.png")
    native = engine.ImageReader(size="native")
    x = native.read(tmp_path / "wide.png")
    assert x.shape == (120, 200, 3) and x.dtype == np.float32 and -1.0 <= x.min() and x.max() <= 1.0
    assert engine.ImageReader(size=(99, 99)).read(tmp_path / "wide.png").shape == (99, 99, 3)
    assert engine.ImageReader(size=(99, 99), data_format="channels_first").read(tmp_path / "wide.png").shape == (
        3,
        99,
        99,
    )
    with pytest.raises(engine.ImageTooSmall, match="minimum of 75 px"):
        native.read(tmp_path / "small.png")
    up = engine.ImageReader(size="native", upscale=True).read(tmp_path / "small.png")
    assert up.shape == (75, 113, 3)


def test_preprocessing_follows_the_weight_set(tmp_path):
    """A model loaded with weights carries `anyshape_weights`; the reader scales and crops by it."""
    from types import SimpleNamespace

    from PIL import Image

    from anyshape.weights import WeightSet

    model = SimpleNamespace(
        anyshape_weights=WeightSet(
            name="test.torch_in1k",
            mode="torch",
            mean=(0.5, 0.4, 0.3),
            std=(0.2, 0.25, 0.3),
            input_size=(299, 299),
            crop_pct=1.0,
            interpolation="bilinear",
            label_offset=1,
        )
    )
    prep = engine.Preprocessing.from_model(model)
    assert (prep.mode, prep.crop_pct, prep.interpolation, prep.label_offset) == ("torch", 1.0, "bilinear", 1)
    assert engine.Preprocessing.from_model(SimpleNamespace()) == engine.Preprocessing()  # tf, 0.875, bicubic
    pixels = np.random.default_rng(0).integers(0, 255, (80, 120, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(tmp_path / "x.png")
    x = engine.ImageReader(size=(80, 80), preprocessing=prep).read(tmp_path / "x.png")
    crop = pixels[:, 20:100].astype(np.float32)  # crop_pct 1.0: the shorter side is kept whole
    want = (crop / 255 - np.array(prep.mean, np.float32)) / np.array(prep.std, np.float32)
    assert np.abs(x - want).max() <= 1e-5


def test_progress_bar_shows_rate_only_when_enabled():
    import io

    shown, hidden = io.StringIO(), io.StringIO()
    for stream, enabled in ((shown, True), (hidden, False)):
        bar = engine.Progress(3, enabled, stream)
        bar.update()
        bar.update(2, failed=1)
        bar.close()
    assert "3/3 images, 1 failed" in shown.getvalue() and "img/s" in shown.getvalue()
    assert hidden.getvalue() == ""


def test_run_images_at_native_sizes_groups_by_shape(tmp_path, features_last, predictor_last):
    """Photos of several sizes: grouped by shape, odd shapes run side by side; every output
    equals the Keras model on the same image, and a bad file is a result with its reason."""
    from PIL import Image

    rng = np.random.default_rng(7)
    sizes = [(80, 90), (100, 77), (80, 90), (91, 120), (75, 75), (80, 90), (130, 88)]
    paths = []
    for i, (h, w) in enumerate(sizes):
        paths.append(tmp_path / f"img{i}.png")
        Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(paths[-1])
    (tmp_path / "broken.png").write_bytes(b"\x89PNG broken")
    paths.append(tmp_path / "broken.png")
    reader = engine.ImageReader(size="native")
    results = {r.path.name: r for r in engine.run_images(predictor_last, reader, paths, batch_size=2)}
    assert set(results) == {p.name for p in paths}
    assert "broken.png" in results["broken.png"].error and results["broken.png"].output is None
    for p in paths[:-1]:
        want = features_last.predict_on_batch(reader.read(p)[None])[0]
        assert np.abs(results[p.name].output - want).max() <= TOL


def test_load_or_build_size_gives_a_free_size_classifier():
    """What the CLI's --size does, the API does: a classifier for images of a chosen size takes
    any height and width; without a size it is keras.applications' 299 x 299 model."""
    free = engine.load_or_build(None, size=150, weights=None, classes=7)
    assert tuple(free.input_shape[1:]) == (None, None, 3)
    assert free.predict_on_batch(_input((1, 150, 120, 3))).shape == (1, 7)
    first = engine.load_or_build(None, size=(90, 80), weights=None, include_top=False, data_format="channels_first")
    assert tuple(first.input_shape[1:]) == (3, None, None)
    assert tuple(engine.load_or_build(None, weights=None, classes=7).input_shape[1:]) == (299, 299, 3)
    given = engine.load_or_build(None, size=150, weights=None, classes=7, input_shape=(160, 160, 1))
    assert tuple(given.input_shape[1:]) == (160, 160, 1)


def test_unpooled_maps_at_native_sizes_are_refused_locally_and_on_ray(tmp_path, base):
    """Maps of images at their own sizes differ in shape: both runs refuse before any work."""
    from anyshape import distributed

    # base: free size
    p = engine.Predictor(engine.feature_model(base, "mixed2", None))
    for run in (engine.extract_features, distributed.features):
        with pytest.raises(ValueError, match="native sizes differ in shape and cannot share one output"):
            run(p, [str(tmp_path)], str(tmp_path / "out.npz" if run is engine.extract_features else tmp_path / "out"))
    assert sorted(tmp_path.iterdir()) == []
    assert engine.feature_reader(p, 75).size == (75, 75)


@pytest.fixture(scope="module")
def predictors_on_every_engine(features_last):
    predictors = {name: engine.Predictor(features_last, engine=name) for name in ("onnxruntime", "openvino", "keras")}
    yield predictors
    for p in predictors.values():
        p.close()


def test_every_engine_refuses_a_bad_batch_with_one_message_and_runs_on(predictors_on_every_engine):
    """Rank, channels, a side below the network's minimum, NaN: one ValueError, worded the same on
    every engine, before the backend sees the batch (OpenVINO's compiled model failed every later
    call once it had refused a shape); the next good batch still runs."""
    bad = {
        "rank": (
            _input((75, 75, 3)),
            r"a batch of images shaped \(N, H, W, 3\) \(channels_last\); got an array of shape",
        ),
        "channels": (_input((1, 75, 75, 1)), "takes 3-channel images, .* got 1 channel"),
        "size": (_input((1, 60, 75, 3)), "60x75 px is below the model's minimum of 75 px per side"),
        "nan": (np.full((1, 75, 75, 3), np.nan, np.float32), "NaN or Inf"),
        "inf": (np.where(_input((1, 75, 75, 3)) > 0.9, np.inf, 0).astype(np.float32), "NaN or Inf"),
    }
    good = _input((2, 75, 80, 3))
    want = predictors_on_every_engine["onnxruntime"](good)
    messages = {}
    for name, p in predictors_on_every_engine.items():
        assert p.engine == name
        for case, (x, match) in bad.items():
            with pytest.raises(ValueError, match=match) as refused:
                p(x)
            messages.setdefault(case, set()).add(str(refused.value))
            with pytest.raises(ValueError, match=match):
                p.run_many([good, x])
            assert np.abs(p(good) - want).max() <= TOL  # and the engine still runs
    assert all(len(m) == 1 for m in messages.values()), messages


def test_openvino_results_are_the_callers_own(predictors_on_every_engine):
    """OpenVINO reads the batch in place and its outputs live in the request's buffers: a result
    the caller holds is not changed by the next call, and the batch is not changed by the run."""
    p = predictors_on_every_engine["openvino"]
    a, b = _input((2, 75, 80, 3)), _input((2, 75, 80, 3)) + 0.5
    kept = a.copy()
    first = p(a)
    held = first.copy()
    second = p(b)
    assert np.array_equal(first, held) and np.array_equal(a, kept)
    assert not np.allclose(first, second)
    assert np.abs(p(a[:, :, ::-1][:, :, ::-1]) - held).max() <= TOL  # a strided view runs the same


class _Recording:
    """A backend wrapper that records the batch sizes the backend is given."""

    def __init__(self, backend):
        self.backend, self.sizes = backend, []

    def __call__(self, batch):
        self.sizes.append(len(batch))
        return self.backend(batch)

    def run_many(self, batches):
        self.sizes.extend(len(b) for b in batches)
        return self.backend.run_many(batches)


def test_an_empty_batch_gives_empty_outputs_without_the_backend(predictors_on_every_engine, monkeypatch):
    good = _input((1, 75, 80, 3))
    for name, p in predictors_on_every_engine.items():
        backend = _Recording(p._backend)
        monkeypatch.setattr(p, "_backend", backend)
        out = p(np.zeros((0, 75, 80, 3), np.float32))
        assert out.shape == (0, 2048) and out.dtype == np.float32, name
        mixed = p.run_many([np.zeros((0, 90, 90, 3), np.float32), good])
        assert mixed[0].shape == (0, 2048) and mixed[1].shape == (1, 2048), name
        assert p(good).shape == (1, 2048), name
        assert backend.sizes == [1, 1], name  # the batches of 0 never reached it


def test_an_earlier_block_takes_smaller_images_and_gives_empty_maps_of_the_right_size(base):
    """A feature model ending at mixed5 needs 43 px, not 75; a batch of 0 gives maps of the size a
    real batch of that image size gives, on the ONNX graph and on Keras alike."""
    assert tuple(base.input_shape[1:]) == (None, None, 3)
    model = engine.feature_model(base, "mixed5", None)
    for name in ("onnxruntime", "keras"):
        p = engine.Predictor(model, engine=name)
        assert p.min_size == 43
        assert p(_input((1, 43, 50, 3))).shape == (1, 1, 1, 768)
        with pytest.raises(ValueError, match="42x50 px is below the model's minimum of 43 px"):
            p(_input((1, 42, 50, 3)))
        assert p(np.zeros((0, 75, 120, 3), np.float32)).shape == (0, *p(_input((1, 75, 120, 3))).shape[1:])
    graph = engine.GraphModel.from_keras(model)
    assert engine.GraphModel.from_bytes(graph.to_bytes()).min_size == 43
    assert engine.Predictor(InceptionV3(weights=None, input_shape=(None, None, 3)), engine="keras").min_size == 75


def test_find_images_reports_folders_it_cannot_list(tmp_path, monkeypatch):
    """A folder that cannot be listed (chmod 000; faked here, as root reads any folder) is a
    failure with its reason, never a silent gap; the rest is still listed."""
    import os

    for sub in ("open", "locked", "locked/inner", ".hidden"):
        (tmp_path / sub).mkdir()
    for f in ("open/a.png", "locked/b.png", "locked/inner/c.png", ".hidden/d.png", "e.png", ".f.png"):
        (tmp_path / f).write_bytes(b"x")
    scandir = os.scandir

    def refusing(path="."):
        if os.path.basename(os.fspath(path)) == "locked":
            raise PermissionError(13, "Permission denied", os.fspath(path))
        return scandir(path)

    monkeypatch.setattr(os, "scandir", refusing)
    files, failed = engine.find_images([tmp_path, tmp_path / "locked"])
    assert files == [tmp_path / "e.png", tmp_path / "open" / "a.png"]
    assert failed == [(tmp_path / "locked", "folder cannot be read (permission denied)")]


def test_enlarging_an_image_past_max_pixels_is_refused(tmp_path):
    """--upscale (and the resize before a fixed size's crop) must not get past max_pixels: a
    1 x 2000 px strip upscaled to 75 px would be 75 x 150000."""
    from PIL import Image

    from anyshape.preprocess import ImageLoadError

    Image.fromarray(np.zeros((1, 2000, 3), np.uint8)).save(tmp_path / "strip.png")
    Image.fromarray(np.zeros((80, 20000, 3), np.uint8)).save(tmp_path / "wide.png")
    with pytest.raises(ImageLoadError, match=r"1x2000 px upscaled would be 75x150000 = 11250000 pixels, over"):
        engine.ImageReader(upscale=True, max_pixels=1_000_000).read(tmp_path / "strip.png")
    with pytest.raises(ImageLoadError, match=r"1x2000 px upscaled .* over the limit of 1000000"):
        engine.ImageReader(size=(75, 75), upscale=True, max_pixels=1_000_000).read(tmp_path / "strip.png")
    with pytest.raises(ImageLoadError, match=r"80x20000 px resized for size='299,299' would be 341x85250") as e:
        engine.ImageReader(size=(299, 299), max_pixels=2_000_000).read(tmp_path / "wide.png")
    from anyshape.cli.options import cli_message

    assert "resized for --size 299,299 would be" in cli_message(e.value)
    assert "pass a larger --max-pixels if" in cli_message(e.value) and "max_pixels=N if" in str(e.value)
    assert engine.ImageReader(upscale=True, max_pixels=12_000_000).read(tmp_path / "strip.png").shape == (75, 150000, 3)


def test_non_finite_pixels_and_outputs_are_errors_not_results(tmp_path):
    """A float TIFF holding NaN is a bad file; a model whose output holds NaN or Inf gives an error
    result for the image, not scores that rank as anything."""
    from PIL import Image

    from anyshape.preprocess import ImageLoadError

    values = np.ones((80, 80), np.float32)
    values[3, 4] = np.nan
    Image.fromarray(values, mode="F").save(tmp_path / "nan.tiff")
    for size in ("native", (75, 75)):
        with pytest.raises(ImageLoadError, match="nan.tiff: .*NaN"):
            engine.ImageReader(size=size).read(tmp_path / "nan.tiff")
    Image.fromarray(np.zeros((80, 80, 3), np.uint8)).save(tmp_path / "ok.png")
    inputs = keras.Input((None, None, 3))
    scores = keras.layers.Dense(2)(keras.layers.GlobalAveragePooling2D()(inputs))
    model = keras.Model(inputs, scores)
    model.layers[-1].set_weights([np.array([[np.nan, 1.0]] * 3, np.float32), np.zeros(2, np.float32)])
    for name in ("onnxruntime", "keras"):
        results = list(
            engine.run_images(engine.Predictor(model, engine=name), engine.ImageReader(), [tmp_path / "ok.png"])
        )
        assert [r.output for r in results] == [None], name
        assert "ok.png: the model's output for this image holds NaN or Inf" in results[0].error


def test_bench_is_the_library_twin_of_the_cli_verb(tmp_path):
    """engine.bench times Keras fp32 and the fast engine at each batch and reports the fidelity of
    an asked precision only when it differs from fp32; a sample folder it cannot use is refused
    in Python's words before any timing."""
    from anyshape import create_model

    small = create_model(
        "mobilenet", weights=None, include_top=False, pooling="avg", alpha=0.25, input_shape=(None, None, 3)
    )
    report = engine.bench(small, (40, 40), batches=(1, 2), seconds=0.05)
    assert report.hw == (40, 40) and report.engines[0] == "keras fp32" and len(report.engines) == 2
    assert sorted(report.rates) == [1, 2] and all(r > 0 for rates in report.rates.values() for r in rates.values())
    assert report.fidelity is None and report.no_fast_engine is None  # auto is onnxruntime fp32: nothing to compare
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="calibrate='.*empty': no readable images"):
        engine.bench(small, (40, 40), batches=(1,), seconds=0.05, sample=tmp_path / "empty")


def test_benchmark_warms_a_shape_up_twice_before_timing_it(predictor_last):
    """engine.benchmark calls the predictor twice before it times it (OpenVINO's backend compiles
    a model for a shape on its second batch), then at least twice more, and reports the best
    timed call."""
    from anyshape.engine.predictor import benchmark

    calls = []

    class Recording:
        channels, data_format = predictor_last.channels, predictor_last.data_format

        def __call__(self, x):
            calls.append(x.shape)
            return predictor_last(x)

    rate = benchmark(Recording(), (75, 75), 2, seconds=0)
    assert calls == [(2, 75, 75, 3)] * 4 and rate > 0
