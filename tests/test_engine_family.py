"""Every engine path on one member of each family (issue 26, item 3): the ONNX emitter
(anyshape.onnx_graph) translates the layers the family adds to InceptionV3's (depthwise and
separable convolutions, ReLU6, Rescaling, Normalization, LayerNormalization, the layer scale (an
EinsumDense), Dense on a feature map, swish / hard swish / GELU, cropping, reshape, global pooling
with keepdims) and ONNX Runtime fp32 equals Keras at an odd, non-square size on the free-size
model, with the top (logits) and as a pooled backbone (`test_onnxruntime_equals_keras`, formerly
tests/test_onnx_family.py); the exported graph takes any batch, height and width; OpenVINO fp32
equals Keras; OpenVINO bf16 keeps the fp32 scores (cosine >= 0.99) where the CPU computes bf16
(else it is refused) (`test_every_engine_path`); `--ray`: the Ray features job (anyshape.distributed,
its actors get the Predictor as its ONNX graph and need no TensorFlow) gives the local run's rows
(`test_ray_features_equal_the_local_run`, conftest's `local_ray`: one local Ray for the module,
started at the first family's Ray test and stopped at the end). int8 on each family: tests/test_verbs_family.py's
`quantize` test (the fidelity to fp32 asserted on ONNX Runtime, and the int8 file's agreement and
cosine with the float model asserted on OpenVINO, the engine auto picks).

Cheap by construction: the smallest member of each family, random weights with BatchNorm moved
off its defaults, 10 classes, each model built and translated to ONNX once for both tests (the
module-scoped `family` fixture: pytest runs both tests of one family, then frees its models);
the engine paths at the smallest odd non-square input each network computes (at least 33 px, so
stride-32 networks end on a 2x2 map), the ONNX Runtime parity a little above (at least 75 px)."""

from dataclasses import dataclass, field

import numpy as np
import pytest
from model_helpers import move_batch_norm_statistics, randomised_weights, relative_error, representatives, run

import anyshape
from anyshape import engine
from anyshape.engine.graph_model import GraphModel
from anyshape.engine.precision import cpu_flags, native_bf16
from anyshape.shapes import minimum_size

NATIVE_BF16 = native_bf16(cpu_flags())  # as tests/test_precision.py decides it


@dataclass
class Family:
    """A family's representative, built once for this module's tests (which never change it)."""

    name: str
    top: object  # logits (classifier_activation=None), 10 classes, free size
    backbone: object  # include_top=False, pooling="avg": the top model's weights without its head
    graphs: dict = field(default_factory=dict)

    @property
    def engine_model(self) -> str:
        """The model test_every_engine_path runs: the top, VGG's backbone (see there)."""
        return "backbone" if self.name == "vgg16" else "top"

    def graph(self, which: str) -> GraphModel:
        """The model's GraphModel (what Predictor(model) makes); the one both tests run is made
        once, the other is not kept (VGG's top graph alone is 0.5 GB)."""
        if which != self.engine_model:
            return GraphModel.from_keras(getattr(self, which))
        if which not in self.graphs:
            self.graphs[which] = GraphModel.from_keras(getattr(self, which))
        return self.graphs[which]


@pytest.fixture(scope="module", params=representatives())
def family(request):
    import gc

    gc.collect()  # the previous family's models (Keras models hold reference cycles)
    name = request.param
    top = anyshape.create_model(name, input_shape=(None, None, 3), classes=10, classifier_activation=None)
    top.set_weights(randomised_weights(top))
    move_batch_norm_statistics(top)
    backbone = anyshape.create_model(name, input_shape=(None, None, 3), include_top=False, pooling="avg")
    backbone.set_weights(top.get_weights()[: len(backbone.weights)])
    return Family(name, top, backbone)


def _cosine(a, b) -> np.ndarray:
    a, b = np.asarray(a, "float64"), np.asarray(b, "float64")
    return (a * b).sum(-1) / (np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1))


def _images(graph, n, h, w, seed):
    """`n` random images (0..255) preprocessed as the model's graph says it wants them."""
    raw = np.random.default_rng(seed).uniform(0, 255, (n, h, w, 3)).astype(np.float32)
    return np.stack([graph.preprocessing.apply(image) for image in raw]).astype(np.float32)


def test_onnxruntime_equals_keras(family):
    name = family.name
    h = max(minimum_size(name, include_top=True)[0], 75) | 1  # odd, a little above the minimum
    x = np.random.default_rng(0).uniform(0, 255, (2, h, h + 8, 3)).astype(np.float32)
    for which in ("top", "backbone"):
        keras_model = getattr(family, which)
        # the graph Predictor(keras_model) makes (GraphModel.from_keras), made once for both tests
        predictor = engine.Predictor(family.graph(which), engine="onnxruntime", precision="fp32")
        assert predictor.engine == "onnxruntime", predictor.fallback_reason
        got = predictor(x)
        got = got[0] if isinstance(got, list) else got
        assert relative_error(got, run(keras_model, x)) <= 1e-4, which  # a direct call: no predict function traced


def test_every_engine_path(family):
    name = family.name
    # VGG's top is a 25088-wide flatten at 224 px only (its free-size top, the 7x7 conv head, needs
    # 224 px): its pooled backbone instead
    top = family.engine_model == "top"
    model = getattr(family, family.engine_model)
    h = max(minimum_size(name, include_top=top)[0], 33) | 1
    graph = family.graph(family.engine_model)

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


def test_ray_features_equal_the_local_run(family, local_ray, tmp_path):
    """`--ray` on the family: the Ray features job (anyshape.distributed: Ray Data, an actor that gets
    the Predictor as its ONNX graph and rebuilds its session) on two photos of different odd,
    non-square sizes (native size: each batch its own shape) gives the local run's rows."""
    from PIL import Image

    from anyshape import distributed

    top = family.engine_model == "top"
    h = max(minimum_size(family.name, include_top=top)[0], 33) | 1
    rng = np.random.default_rng(2)
    paths = []
    for i, (ph, pw) in enumerate([(h, h + 4), (h + 2, h)]):
        paths.append(str(tmp_path / f"photo{i}.png"))
        Image.fromarray(rng.integers(0, 256, (ph, pw, 3), dtype=np.uint8)).save(paths[-1])
    predictor = engine.Predictor(family.graph(family.engine_model), engine="onnxruntime", precision="fp32")
    summary = distributed.features(predictor, paths, str(tmp_path / "ray"), batch_size=2)
    assert (summary.ok, summary.failed, summary.engine) == (2, [], "onnxruntime"), summary.failed
    table = distributed.read_output(tmp_path / "ray")
    rows = dict(zip(table.column("path").to_pylist(), table.column("features").to_pylist()))

    local = engine.extract_features(predictor, paths, tmp_path / "local.npz")
    assert local.ok == 2
    with np.load(tmp_path / "local.npz") as z:
        expected = dict(zip(z["paths"].tolist(), z["features"]))
    assert sorted(rows) == sorted(expected) == sorted(paths)
    for path, feats in expected.items():
        assert relative_error(np.array(rows[path], np.float32), feats) <= 1e-5, path
