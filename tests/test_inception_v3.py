"""The Keras builder: parity with keras.applications, the seed's scenarios, every shape rule.

Runs on whichever backend KERAS_BACKEND names (`make test` runs it on TensorFlow, JAX and
PyTorch, one pytest process each). Forward passes call the model directly (no predict()), which
keeps JAX from compiling the whole graph once per shape.
"""

import re

import keras
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from model_helpers import images, randomised_weights, run

import anyshape
from anyshape.archs import get_arch, keras_ops
from anyshape.shapes import InvalidInputShape, explain

BACKEND = keras.backend.backend()


@pytest.fixture(scope="module")
def keras_top():
    """keras.applications.InceptionV3 with the top, random weights with moved BN statistics."""
    ref = keras.applications.InceptionV3(weights=None, include_top=True)
    ref.set_weights(randomised_weights(ref))
    return ref


@pytest.fixture(scope="module")
def ours_top(keras_top):
    model = anyshape.InceptionV3(weights=None, include_top=True)
    model.set_weights(keras_top.get_weights())
    return model


# --------------------------------------------------------------------------------------------
# parity with keras.applications


def test_same_weights_layout_as_keras(keras_top, ours_top):
    kw, ow = keras_top.get_weights(), ours_top.get_weights()
    assert len(kw) == len(ow) == 378
    assert [a.shape for a in kw] == [b.shape for b in ow]
    assert ours_top.count_params() == keras_top.count_params() == 23_851_784


@pytest.mark.every_backend
def test_parity_299_with_top(keras_top, ours_top):
    """One image (the arithmetic is per image): the shape tests/test_weights_keras_h5.py and
    tests/test_weights_torch.py run at 299 too, which JAX then compiles once in `make test`."""
    x = images((299, 299, 3), n=1)
    diff = np.abs(run(keras_top, x) - run(ours_top, x)).max()
    assert diff <= 1e-5, diff


@pytest.fixture(scope="module")
def notop_pair(keras_top):
    """keras.applications.InceptionV3 and ours without the top at free size (where Keras builds it),
    with keras_top's weights but the dense kernel and bias. Keras' has no size-dependent padding:
    its free-size model is its fixed-size model at every size (and ours is, tests/test_archs.py)."""
    ref = keras.applications.InceptionV3(weights=None, include_top=False)
    ours = anyshape.InceptionV3(weights=None, include_top=False)
    assert tuple(ref.input.shape) == tuple(ours.input.shape) == (None, None, None, 3)
    backbone = keras_top.get_weights()[:-2]
    ref.set_weights(backbone)
    ours.set_weights(backbone)
    return ref, ours


# on JAX and PyTorch the non-square size only: each new shape compiles every op again on JAX
@pytest.mark.parametrize("shape", [(150, 150, 3), pytest.param((120, 200, 3), marks=pytest.mark.every_backend)])
def test_parity_without_top(notop_pair, shape):
    ref, ours = notop_pair
    x = images(shape)
    a, b = run(ref, x), run(ours, x)
    assert a.shape == b.shape == (2, *explain(shape).stage("mixed10").shape)
    assert np.abs(a - b).max() <= 1e-5


def test_loads_a_keras_weights_file(keras_top, tmp_path):
    path = tmp_path / "inception_v3.weights.h5"
    keras_top.save_weights(path)
    ours = anyshape.InceptionV3(weights=str(path), include_top=True)
    x = images((299, 299, 3), n=1)
    assert np.abs(run(keras_top, x) - run(ours, x)).max() <= 1e-5


# --------------------------------------------------------------------------------------------
# the three scenarios of the question the README opens with (custom input_shape, include_top)


def test_seed_custom_shape_without_top():
    model = anyshape.InceptionV3(include_top=False, weights=None, input_shape=(150, 150, 3))
    assert tuple(model.output.shape) == (None, 3, 3, 2048)
    assert run(model, images((150, 150, 3), n=1)).shape == (1, 3, 3, 2048)


def test_seed_four_channels_extended_and_trained():
    base = anyshape.InceptionV3(include_top=False, weights=None, input_shape=(256, 256, 4))
    x = keras.layers.SpectralNormalization(
        keras.layers.Conv2D(64, (3, 3), strides=(2, 2), padding="same", activation="leaky_relu", name="ls_1")
    )(base.output)
    x = keras.layers.Dropout(0.3)(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    x = keras.layers.Dense(2, activation="softmax")(x)
    model = keras.Model(base.input, x)
    model.compile(optimizer=keras.optimizers.SGD(0.01), loss="sparse_categorical_crossentropy")
    kernel = model.layers[-4].layer.kernel  # the SpectralNormalization-wrapped Conv2D
    before = keras.ops.convert_to_numpy(kernel.value).copy()
    loss = model.train_on_batch(images((256, 256, 4)), np.array([0, 1]))
    assert np.isfinite(loss)
    assert not np.allclose(before, keras.ops.convert_to_numpy(kernel.value))
    assert tuple(base.output.shape) == (None, 6, 6, 2048)


def test_seed_input_tensor_with_top():
    input_tensor = keras.Input(shape=(224, 224, 3))
    model = anyshape.InceptionV3(input_tensor=input_tensor, weights=None, include_top=True)
    assert model.inputs[0] is input_tensor
    assert tuple(model.output.shape) == (None, 1000)
    p = run(model, images((224, 224, 3), n=1))
    assert p.shape == (1, 1000) and abs(p.sum() - 1) < 1e-4


# --------------------------------------------------------------------------------------------
# shape rules


def test_top_at_any_size_including_free_size():
    model = anyshape.InceptionV3(weights=None, include_top=True, input_shape=(None, None, 2), classes=5)
    assert tuple(model.output.shape) == (None, 5)
    for shape in [(75, 75, 2), (100, 131, 2)]:
        p = run(model, images(shape, n=1))
        assert p.shape == (1, 5) and abs(p.sum() - 1) < 1e-4


@pytest.mark.parametrize("shape", [(75, 300, 1), (300, 75, 7)])
def test_non_square_and_any_channel_count(shape):
    model = anyshape.InceptionV3(weights=None, include_top=True, input_shape=shape, classes=3)
    assert run(model, images(shape, n=1)).shape == (1, 3)
    assert model.get_layer("stem_1a_3x3_conv").kernel.shape == (3, 3, shape[-1], 32)


def test_default_input_shapes_match_keras(keras_top, ours_top, notop_pair):
    """ours_top and notop_pair's models are built with the constructor's defaults."""
    assert tuple(ours_top.input.shape) == tuple(keras_top.input.shape) == (None, 299, 299, 3)
    ref, ours = notop_pair
    assert tuple(ours.input.shape) == tuple(ref.input.shape) == (None, None, None, 3)


@pytest.mark.every_backend
def test_channels_first_equals_channels_last_on_transposed_input(notop_pair):
    """channels_last: notop_pair's free-size model (random weights, BatchNorm moved), at the size and
    on the images of test_parity_without_top's non-square case (which JAX has compiled then)."""
    shape = (120, 200, 3)
    last = notop_pair[1]
    first = anyshape.InceptionV3(
        weights=None, include_top=False, input_shape=(3, 120, 200), data_format="channels_first"
    )
    first.set_weights(last.get_weights())
    x = images(shape)
    a = run(last, x)
    b = run(first, x.transpose(0, 3, 1, 2))
    assert b.shape == (2, 2048, *explain(shape).stage("mixed10").shape[:2])
    assert np.abs(a.transpose(0, 3, 1, 2) - b).max() <= 1e-5


@pytest.mark.every_backend
def test_channels_first_with_top_predicts_and_fits():
    model = anyshape.InceptionV3(
        weights=None, include_top=True, input_shape=(3, 80, 80), data_format="channels_first", classes=4
    )
    x = images((3, 80, 80), n=4)
    # one step: run eagerly on TensorFlow (tracing a channels_first step costs a minute on its CPU
    # kernels) and PyTorch; compiled on JAX, as Keras does by default (eager, each forward and
    # gradient op compiled on its own, had not ended after 62 s of CPU; compiled: 20 s, Zen 4, contended)
    eager = keras.backend.backend() != "jax"
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", run_eagerly=eager)
    history = model.fit(x, np.array([0, 1, 2, 3]), epochs=1, batch_size=4, verbose=0)
    assert np.isfinite(history.history["loss"][0])
    assert model.predict(x, verbose=0).shape == (4, 4)


def test_channels_first_uses_image_data_format_default():
    keras.config.set_image_data_format("channels_first")
    try:
        model = anyshape.InceptionV3(weights=None, include_top=False, input_shape=(1, 75, 75))
    finally:
        keras.config.set_image_data_format("channels_last")
    assert tuple(model.output.shape) == (None, 2048, 1, 1)


def test_input_tensor_without_top_and_conflict_error():
    t = keras.Input(shape=(80, 90, 2))
    model = anyshape.InceptionV3(input_tensor=t, weights=None, include_top=False, pooling="avg")
    assert tuple(model.output.shape) == (None, 2048)
    with pytest.raises(ValueError, match=r"input_shape=\(100, 100, 2\) conflicts with input_tensor"):
        anyshape.InceptionV3(input_tensor=t, input_shape=(100, 100, 2), weights=None, include_top=False)
    with pytest.raises(InvalidInputShape, match="mixed8 collapses"):
        anyshape.InceptionV3(input_tensor=keras.Input(shape=(70, 90, 2)), weights=None, include_top=False)


def test_poolings(notop_pair):
    """The feature maps: notop_pair's free-size model (random weights, BatchNorm moved)."""
    shape = (80, 100, 3)
    maps = notop_pair[1]
    weights = maps.get_weights()
    x = images(shape)
    m = run(maps, x)
    expected = {
        "avg": m.mean(axis=(1, 2)),
        "max": m.max(axis=(1, 2)),
        "avgmax": (m.mean(axis=(1, 2)) + m.max(axis=(1, 2))) / 2,
        "catavgmax": np.concatenate([m.mean(axis=(1, 2)), m.max(axis=(1, 2))], axis=1),
    }
    for pooling, want in expected.items():
        model = anyshape.InceptionV3(weights=None, include_top=False, input_shape=shape, pooling=pooling)
        model.set_weights(weights)
        assert np.abs(run(model, x) - want).max() <= 1e-5, pooling


def test_top_pooling_choice_and_dropout():
    model = anyshape.InceptionV3(
        weights=None, include_top=True, input_shape=(75, 75, 3), pooling="catavgmax", classes=6, dropout_rate=0.5
    )
    assert model.get_layer("predictions").kernel.shape == (4096, 6)
    assert model.get_layer("dropout").rate == 0.5
    x = images((75, 75, 3))
    np.testing.assert_allclose(run(model, x), run(model, x), atol=1e-6)  # dropout is off in inference
    assert [layer.name for layer in model.layers[-3:]] == ["catavgmax_pool", "dropout", "predictions"]


@pytest.mark.every_backend
def test_aux_logits():
    model = anyshape.InceptionV3(weights=None, include_top=True, aux_logits=True, input_shape=(299, 320, 3), classes=10)
    assert len(model.outputs) == 2
    main, aux = run(model, images((299, 320, 3), n=1))
    assert main.shape == aux.shape == (1, 10)
    assert model.get_layer("aux_conv1_conv").kernel.shape == (5, 5, 128, 768)
    assert model.get_layer("aux_predictions").kernel.shape == (768, 10)
    with pytest.raises(InvalidInputShape, match="at least 299"):
        anyshape.InceptionV3(weights=None, include_top=True, aux_logits=True, input_shape=(298, 299, 3))
    with pytest.raises(ValueError, match="needs include_top=True") as e:
        anyshape.InceptionV3(weights=None, include_top=False, aux_logits=True, input_shape=(299, 299, 3))
    assert not isinstance(e.value, InvalidInputShape)  # an option problem, not a shape (issue 28)


def test_layer_names(ours_top):
    names = [layer.name for layer in ours_top.layers]
    for name in [f"mixed{i}" for i in range(11)] + ["avg_pool", "predictions", "mixed9_0", "mixed9_1"]:
        assert name in names
    auto = [
        n
        for n in names
        if re.fullmatch(
            r"(conv2d|batch_normalization|activation|concatenate|average_pooling2d|max_pooling2d)(_\d+)?", n
        )
    ]
    assert auto == []
    assert "mixed4_branch7x7dbl_3_conv" in names and "stem_1a_3x3_bn" in names
    assert ours_top.get_layer("mixed4_branch7x7dbl_3_conv").kernel.shape == (1, 7, 128, 128)


@pytest.mark.every_backend
@pytest.mark.parametrize("count_include_pad,edge,corner", [(False, 1.0, 1.0), (True, 6 / 9, 4 / 9)])
def test_average_pool_semantics(notop_pair, count_include_pad, edge, corner):
    """False is the default (Keras' semantics): notop_pair's model, built with the defaults."""
    if count_include_pad:
        model = anyshape.InceptionV3(weights=None, include_top=False, input_shape=(75, 75, 3), count_include_pad=True)
    else:
        model = notop_pair[1]
    # run the block's own pool layers (padding, if any, then the average) on a constant map
    names = [layer.name for layer in model.layers]
    pool_layers = [model.get_layer(n) for n in ("mixed0_branch_pool_pad", "mixed0_branch_pool_avg") if n in names]
    assert len(pool_layers) == (2 if count_include_pad else 1)
    inner = keras.Input(shape=(7, 7, 1))
    x = inner
    for layer in pool_layers:
        x = layer(x)
    out = keras.ops.convert_to_numpy(keras.Model(inner, x)(np.ones((1, 7, 7, 1), "float32")))[0, :, :, 0]
    assert out.shape == (7, 7)
    np.testing.assert_allclose(out[3, 3], 1.0, rtol=1e-6)
    np.testing.assert_allclose(out[0, 3], edge, rtol=1e-6)
    np.testing.assert_allclose(out[0, 0], corner, rtol=1e-6)


def test_invalid_shape_is_refused_before_any_layer_is_built(monkeypatch):
    def fail(*args, **kwargs):
        raise AssertionError("layers were built for an invalid shape")

    monkeypatch.setattr(keras_ops, "build", fail)
    with pytest.raises(InvalidInputShape) as e:
        anyshape.InceptionV3(weights=None, include_top=False, input_shape=(3, 150, 150))
    assert "looks like channels_first" in str(e.value)
    assert "input_shape=(150, 150, 3)" in str(e.value)
    with pytest.raises(InvalidInputShape, match="Nearest valid shape: \\(75, 300, 1\\)"):
        anyshape.InceptionV3(weights=None, include_top=True, input_shape=(60, 300, 1))


@pytest.mark.parametrize(
    "kwargs,needle",
    [
        (dict(input_shape=(299, 299, None)), "channel count must be known"),
        (dict(input_shape=(1, 299, 299, 3)), "without the batch axis"),
        (dict(data_format="NCHW"), "data_format"),
        (dict(pooling="mean"), "pooling must be one of"),
        (dict(include_top=True, classes=0), "classes must be a positive integer"),
        (dict(weights=3), "weights must be None"),
    ],
)
def test_argument_errors(kwargs, needle):
    kwargs = {"weights": None, "include_top": False, **kwargs}
    with pytest.raises(ValueError, match=needle):
        anyshape.InceptionV3(**kwargs)


# --------------------------------------------------------------------------------------------
# the shape engine agrees with Keras' own shape inference


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    h=st.integers(60, 700),
    w=st.integers(60, 700),
    c=st.integers(1, 16),
    channels_first=st.booleans(),
    top=st.booleans(),
    aux=st.booleans(),
)
def test_shape_engine_agrees_with_keras(h, w, c, channels_first, top, aux):
    aux = aux and top
    fmt = "channels_first" if channels_first else "channels_last"
    shape = (c, h, w) if channels_first else (h, w, c)
    report = explain(shape, include_top=top, aux_logits=aux, data_format=fmt)
    try:
        model = keras_ops.build(get_arch("inception_v3"), report.config)  # no shape check
    except ValueError as e:  # Keras: "Computed output size would be zero or negative"
        assert not report.valid, f"the engine calls {shape} valid, Keras refuses it: {e}"
        return
    dims = [d for layer in model.layers for d in layer.output.shape[1:]]
    keras_valid = all(d is None or d > 0 for d in dims)
    assert report.valid == keras_valid
    if not keras_valid:
        return
    for stage in report.stages:
        assert tuple(model.get_layer(stage.layer).output.shape[1:]) == stage.shape, stage.name
    assert model.count_params() == report.params
    outs = model.outputs
    assert [tuple(o.shape[1:]) for o in outs] == report.output_shapes
