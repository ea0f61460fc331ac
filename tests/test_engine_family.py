"""Every engine path on one member of each family (issue 26, item 3), beyond what
tests/test_onnx_family.py covers (ONNX Runtime fp32 against Keras): the exported graph takes any
batch, height and width; OpenVINO fp32 equals Keras; OpenVINO bf16 keeps the fp32 scores (cosine
>= 0.99) where the CPU computes bf16 (else it is refused); int8 (`quantize_graph`, calibrated on a
few images) runs on the engine auto picks for it, and its top-1 agreement and cosine against fp32
are printed (random weights: a measure, not a claim about trained networks).

Cheap by construction: the smallest member of each family, random weights with BatchNorm moved
off its defaults, 10 classes, the smallest odd non-square input each network computes (at least
33 px, so stride-32 networks end on a 2x2 map), each model built once (one test per family)."""

import numpy as np
import pytest
from model_helpers import move_batch_norm_statistics, randomised_weights, relative_error, representatives, run

import anyshape
from anyshape import engine
from anyshape.engine.graph_model import GraphModel
from anyshape.engine.precision import cpu_flags, native_bf16
from anyshape.engine.quantize import quantize_graph
from anyshape.shapes import minimum_size

NATIVE_BF16 = native_bf16(cpu_flags())  # as tests/test_precision.py decides it


def _cosine(a, b) -> np.ndarray:
    a, b = np.asarray(a, "float64"), np.asarray(b, "float64")
    return (a * b).sum(-1) / (np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1))


def _model(name):
    # VGG's top is a 25088-wide flatten at 224 px only: its pooled backbone instead
    top = name != "vgg16"
    kwargs = {"classes": 10, "classifier_activation": None} if top else {"include_top": False, "pooling": "avg"}
    model = anyshape.create_model(name, input_shape=(None, None, 3), **kwargs)
    model.set_weights(randomised_weights(model))
    return move_batch_norm_statistics(model), top


def _images(graph, n, h, w, seed):
    """`n` random images (0..255) preprocessed as the model's graph says it wants them."""
    raw = np.random.default_rng(seed).uniform(0, 255, (n, h, w, 3)).astype(np.float32)
    return np.stack([graph.preprocessing.apply(image) for image in raw]).astype(np.float32)


@pytest.mark.parametrize("name", representatives())
def test_every_engine_path(name):
    model, top = _model(name)
    h = max(minimum_size(name, include_top=top)[0], 33) | 1
    graph = GraphModel.from_keras(model)

    import onnx

    dims = onnx.load_from_string(graph.graph).graph.input[0].type.tensor_type.shape.dim
    assert [d.dim_param or d.dim_value for d in dims] == ["batch", "height", "width", 3]

    x = _images(graph, 2, h, h + 2, seed=0)
    x1 = _images(graph, 1, h + 2, h + 6, seed=1)  # another batch and size, same compiled model
    fp32 = engine.Predictor(graph, engine="openvino", precision="fp32")
    assert (fp32.engine, fp32.precision) == ("openvino", "fp32"), fp32.fallback_reason
    reference = fp32(x)
    assert relative_error(reference, run(model, x)) <= 1e-4
    assert relative_error(fp32(x1), run(model, x1)) <= 1e-4

    if NATIVE_BF16:
        bf16 = engine.Predictor(graph, engine="openvino", precision="bf16")
        assert (bf16.engine, bf16.precision) == ("openvino", "bf16")
        assert _cosine(bf16(x), reference).min() >= 0.99
    else:
        with pytest.raises(ValueError, match="no native bf16"):
            engine.Predictor(graph, engine="openvino", precision="bf16")

    calibration = [_images(graph, 4, h, h + 2, seed=2)]  # a few images: enough to run and compare
    int8 = engine.Predictor(quantize_graph(graph, calibration))  # the defaults: auto engine
    assert int8.precision == "int8"
    got = int8(x)
    assert got.shape == reference.shape and np.isfinite(got).all()
    agreement = float(np.mean(got.argmax(-1) == reference.argmax(-1)))
    print(
        f"\n{name} {h}x{h + 2}: int8 on {int8.engine}: cosine min {_cosine(got, reference).min():.4f}"
        + (f", top-1 agreement {agreement:.2f}" if top else " (pooled features)")
    )
