"""The ONNX emitter (anyshape.onnx_graph) on one member of each family: the layers the family
adds to InceptionV3's (depthwise and separable convolutions, ReLU6, Rescaling, Normalization,
LayerNormalization, the layer scale (an EinsumDense), Dense on a feature map, swish / hard swish / GELU, cropping,
reshape, global pooling with keepdims) translate, and ONNX Runtime's outputs equal Keras' at an
odd, non-square size on the free-size model, with the top (logits) and as a pooled backbone."""

import numpy as np
import pytest
from model_helpers import randomised_weights, relative_error, representatives, run

import anyshape
from anyshape import engine
from anyshape.shapes import minimum_size


@pytest.mark.parametrize("name", representatives())
def test_onnxruntime_equals_keras(name):
    model = anyshape.create_model(name, input_shape=(None, None, 3), classifier_activation=None)
    model.set_weights(randomised_weights(model))
    backbone = anyshape.create_model(name, input_shape=(None, None, 3), include_top=False, pooling="avg")
    backbone.set_weights(model.get_weights()[: len(backbone.weights)])
    h = max(minimum_size(name, include_top=True)[0], 75) | 1  # odd, a little above the minimum
    x = np.random.default_rng(0).uniform(0, 255, (2, h, h + 8, 3)).astype(np.float32)
    for keras_model in (model, backbone):
        predictor = engine.Predictor(keras_model, engine="onnxruntime", precision="fp32")
        assert predictor.engine == "onnxruntime", predictor.fallback_reason
        got = predictor(x)
        got = got[0] if isinstance(got, list) else got
        assert relative_error(got, run(keras_model, x)) <= 1e-4  # a direct call: no predict function traced
