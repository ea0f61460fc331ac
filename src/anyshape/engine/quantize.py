"""int8 post-training quantization calibrated on the user's own images (`anyshape quantize`).

The float ONNX graph (from `anyshape.onnx_graph`) is quantized statically to a QDQ graph:
the nodes the network's recipe names (`RECIPES`, `FAMILY_INT8`: convolutions, and for some
networks matmuls, less the kinds of node the recipe keeps in float) get int8 weights (per output
channel) and 8-bit activations whose ranges come from running the calibration images through
the float graph. The result is an
.onnx file with anyshape's metadata inside (precision "int8", data format, preprocessing,
class names), which `Predictor` / `--model FILE.onnx` runs on OpenVINO (int8 on VNNI/AMX) or
ONNX Runtime.

Two quantizers produce the QDQ graph: ONNX Runtime's `quantize_static` ("onnxruntime", MinMax
calibration) and NNCF's `nncf.quantize` ("nncf", its default min-max + fast bias correction).
Both are deterministic for a given calibration set: images are read in sorted path order and
no step samples at random. Which one is the default was chosen by measurement (README, int8).

Fidelity: `quantize` then runs the calibration images through the float graph and the int8 graph
on the engine the int8 file runs on here (OpenVINO when installed, else ONNX Runtime; the float
graph in fp32 on the same engine, so only quantization differs) and records top-1 agreement
(models with a classifier) and the mean and minimum cosine similarity of their output rows in
the report and in the file's metadata (`GraphModel.fidelity`), where `bench --model` shows it.
It is measured on the calibration images themselves, not on held-out ones: calibration fits only
one activation range per tensor (no weight is trained on the images), so the in-sample figure is
close to an out-of-sample one, and the user's folder is the only sample of their images there is.
Values are rounded to 4 decimals so the same folder still gives the same file.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import tempfile
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from anyshape.atomic_write import write_bytes_atomically
from anyshape.engine.graph_model import GraphModel
from anyshape.engine.images import ImageReader, find_images, parse_size
from anyshape.engine.precision import cpu_flags, native_bf16
from anyshape.engine.predictor import MissingExtra, Predictor, fidelity, missing_extra
from anyshape.engine.runs import Progress
from anyshape.errors import Message, OutputExistsError, ParameterError, message_of

METHODS = ("onnxruntime", "nncf")
DEFAULT_METHOD = "onnxruntime"
FIDELITY_ENGINES = ("auto", "onnxruntime", "openvino")  # where measure_fidelity runs both models


@dataclass(frozen=True)
class Recipe:
    """What ONNX Runtime's quantizer turns to int8 in a float graph: the node types quantized
    (`op_types`) and the kinds of node kept in float among them (`keep_float`):
    "first": the first convolution (it sees the raw image, 1-3 input channels, and costs little);
    "depthwise": grouped convolutions (group > 1): one filter per channel, so each int8 weight
    scale covers 9 values and one outlier spoils it (MobileNet, EfficientNet, ConvNeXt);
    "pooled": convolutions and matmuls whose input is globally pooled (1 x 1): squeeze-and-excite
    gates (EfficientNet, MobileNetV3) and 1x1-conv heads, whose gate errors multiply whole maps;
    "last": the node that makes the output (the classifier)."""

    name: str
    op_types: tuple
    keep_float: tuple


# Measured on the digits model (tests/trained_digits.py), top-1 agreement with fp32 on its 360
# test images: int8 activations + int8 weights everywhere 97.5 % (ORT) / 80.6 % (OpenVINO);
# convolutions only, uint8 activations, the first convolution kept in float (it sees the raw
# image, 1-3 input channels, and costs little): 98.9 % / 98.6 %. Every recipe keeps these:
# per-channel int8 weights, uint8 activations, MinMax calibration, the first convolution in float.
CONV = ("Conv",)
CONV_MATMUL = ("Conv", "MatMul", "Gemm")
RECIPES = {
    r.name: r
    for r in (
        Recipe("conv", CONV, ("first",)),
        Recipe("conv+matmul", CONV_MATMUL, ("first",)),
        Recipe("conv+matmul, depthwise float", CONV_MATMUL, ("first", "depthwise")),
        Recipe("conv+matmul, pooled float", CONV_MATMUL, ("first", "pooled")),
        Recipe("conv+matmul, depthwise+pooled float", CONV_MATMUL, ("first", "depthwise", "pooled")),
        Recipe("conv+matmul, last float", CONV_MATMUL, ("first", "last")),
        Recipe("conv+concat", ("Conv", "Concat"), ("first",)),
    )
}
DEFAULT_RECIPE = "conv"
# The recipe per network family (anyshape.archs' `family` of the network a graph records as its
# `architecture`), chosen by measured fidelity: benchmarks/quantize_family.py, its output in the
# README (int8). Each family's smallest member trained on the digits at its own small size; the
# recipe with the highest top-1 agreement with fp32 on the 360 held-out digits, the lower of
# ONNX Runtime's and OpenVINO's (then the higher mean cosine; ties keep the earlier of RECIPES,
# today's "conv" first, unless another is faster: ConvNeXt). A family not listed keeps DEFAULT_RECIPE: measured no better by another
# recipe (DenseNet, ResNet, ResNetV2, VGG16: 100.0 / 100.0 % with every recipe; NASNetMobile
# trained 10 epochs: 99.4 / 99.4 %, depthwise float 99.7 % at half the speed; InceptionV3:
# tests/trained_digits.py; InceptionResNetV2: 100.0 / 100.0 % with "conv" and "conv+matmul").
# (FAMILY_INT8 below: its `recipe`s, with these measurements beside each)


# Signed activations (a range below 0: linear bottlenecks, hard-swish and swish outputs) as int8
# with zero point 0 instead of uint8 with a zero point. OpenVINO folds a zero point into its int8
# convolutions only partly: in MobileNetV3Large's uint8 graph a reference-kernel Convert and a
# Subtract ran before each int8 convolution (24 % and 23 % of the time in OpenVINO's profiling
# counters, Zen 4), and int8 ran 0.58-0.67x the float graph in bf16; with zero point 0 both are
# gone (1.09x with the float remainder in f32, 1.40x in bf16). A symmetric range spends one bit on
# the side a tensor barely uses, so it is kept where agreement was measured to hold (top-1 on the
# digits, ONNX Runtime / OpenVINO with its float remainder in bf16, uint8 -> symmetric, with the
# chosen recipe): MobileNetV3Small 98.3 / 98.9 -> 99.4 / 99.2 %, EfficientNetV2B0 99.7 / 99.7 ->
# 100.0 / 99.4 %, MobileNetV2 94.2 / 92.2 -> 94.7 / 95.3 %. EfficientNetB0 lost (99.4 / 100.0 -> 98.9 / 98.9 %, swish outputs)
# and keeps uint8; networks whose convolutions read only ReLU outputs (zero point 0 already) are
# unchanged by it; the others are not measured yet and keep uint8. Since convolutions' outputs
# are left float (unquantized_outputs), MobileNetV2 (trained 20 epochs, its recipe) keeps 99.2 /
# 99.2 % either way, and MobileNet (ReLU6 before every quantized convolution) is unchanged by it.
# (FAMILY_INT8 below: `signed` "symmetric" for MobileNetV2, MobileNetV3, EfficientNetV2, DenseNet)


# An int8 graph's float layers (what its recipe keeps in float, and everything between the
# quantized nodes: BatchNorm not folded, activations, squeeze-and-excite, LayerNorm, pooling) run
# in f32 on OpenVINO unless it is told bf16 (`GraphModel.float_remainder`). Measured on OpenVINO:
# the int8 graph with its float layers in f32 -> in bf16, images/s relative to the float graph in
# bf16, random weights, 224 px batch 16 (299 for the Inceptions), paired rounds in one process,
# AMD EPYC Zen 4 (avx512_bf16, VNNI; the last five with two other jobs running): faster with bf16
# for ConvNeXtTiny ("conv": its matmuls float) 0.58 -> 0.97x, EfficientNetB0 0.74 -> 0.95x,
# MobileNet 2.07 -> 2.96x, MobileNetV2 0.72 -> 1.11x (their depthwise convolutions float),
# MobileNetV3Large 1.08 -> 1.13x; about as fast for ResNet50 1.62 -> 1.63x, InceptionV3 1.45 ->
# 1.47x, Xception 1.40 -> 1.41x, ResNet50V2 1.18 -> 1.22x, VGG16 1.68 -> 1.71x, EfficientNetV2B0
# 1.26 -> 1.31x and 1.16 -> 0.92x (two runs); slower for DenseNet121 1.08 -> 0.89x,
# NASNetMobile 0.88 -> 0.76x, InceptionResNetV2 1.69 -> 1.46x. Fidelity, on the trained digit
# models (benchmarks/quantize_family.py; 360 held-out digits, OpenVINO, f32 -> bf16 float layers):
# EfficientNetB0 top-1 agreement 99.7 -> 99.7 %, mean cosine 0.9996 -> 0.9990; MobileNetV3Small
# 99.4 -> 98.3 %, 0.9980 -> 0.9972 for 5 % more speed: not tried. These figures are of the
# graphs with quantized convolution outputs (`unquantized_outputs`); without them EfficientNetB0
# still gains (0.92 -> 1.15x), and ConvNeXt, now with int8 matmuls, does not (1.20 -> 1.19x): not
# tried. So bf16 is tried for EfficientNet, MobileNet and MobileNetV2, and kept only where
# `bf16_remainder_holds` on the calibration images.
# (FAMILY_INT8 below: `bf16_remainder` for EfficientNet, MobileNet, MobileNetV2)


@dataclass(frozen=True)
class FamilyInt8:
    """What `quantize` does for the networks of one family, each part measured (the comments
    above and in FAMILY_INT8): `recipe`, a name of RECIPES; `signed`, how activations whose range
    goes below 0 are stored ("asymmetric": uint8 with a zero point; "symmetric": int8 with zero
    point 0); `bf16_remainder`, whether its int8 graph's float layers are tried in bf16 on OpenVINO;
    `shortcut_int8`, whether a sum of two convolutions' outputs (ResNet's projection shortcut)
    reads one of them in int8 (`int8_shortcuts`)."""

    recipe: str = DEFAULT_RECIPE
    signed: str = "asymmetric"
    bf16_remainder: bool = False
    shortcut_int8: bool = False


# A family not listed gets FamilyInt8(): DEFAULT_RECIPE, uint8 activations, float layers in f32.
FAMILY_INT8: dict[str, FamilyInt8] = {
    # depthwise convolutions in float: one 3x3 filter per channel, BatchNorm folded in, so a
    # per-channel scale covers 9 weights (the usual int8 loss of MobileNets: Krishnamoorthi 2018,
    # arXiv:1806.08342); EfficientNetB0 99.2 / 98.9 % -> 99.4 / 99.7 %; MobileNetV2 (trained 20
    # epochs, 95.6 % accurate in float; symmetric) "conv" 99.2 / 98.9 % -> 99.2 / 99.2 % (measured with
    # convolutions' outputs left float, unquantized_outputs; "conv" and this recipe before that:
    # 99.2 / 98.9 % and 98.9 / 99.2 %)
    "efficientnet": FamilyInt8("conv+matmul, depthwise float", bf16_remainder=True),
    "mobilenet_v2": FamilyInt8("conv+matmul, depthwise float", "symmetric", bf16_remainder=True),
    # MobileNet (trained 40 epochs, 96.1 % accurate in float): the depthwise convolutions and its
    # 1x1-conv head (on the pooled features) in float: 100.0 / 100.0 % (the depthwise ones alone
    # the same, "conv" 99.2 / 99.2 %); trained 20 epochs (92.8 %) this recipe kept 98.9 / 98.9 %,
    # the depthwise ones alone 98.6 / 98.6 %, "conv" 96.9 / 97.5 % (with the outputs quantized)
    "mobilenet": FamilyInt8("conv+matmul, depthwise+pooled float", bf16_remainder=True),
    # MobileNetV3 and EfficientNetV2: "conv" with symmetric signed activations (`signed`):
    # MobileNetV3Small 99.4 / 99.2 %, EfficientNetV2B0 100.0 / 99.4 % (OpenVINO's float remainder in
    # bf16), and fast: the recipe that also kept the depthwise and squeeze-and-excite convolutions
    # in float kept 100.0 / 99.7 % and 100.0 / 100.0 % with uint8 activations, but ran at 0.59x
    # (MobileNetV3Large, 224 px batch 16) the float graph in bf16, where "conv" symmetric ran 1.40x.
    "mobilenet_v3": FamilyInt8(signed="symmetric"),
    "efficientnet_v2": FamilyInt8(signed="symmetric"),
    # ConvNeXt's pointwise layers (Dense: MatMul) hold most of its work, and "conv" leaves them
    # float: every recipe kept 100.0 / 100.0 % (mean cosine 1.0000), and int8 with its matmuls ran
    # 2.3x the "conv" graph on OpenVINO (32 px, batch 16: 768 vs 338 images/s, bf16 665; indicative).
    # Its random-weight ConvNeXtTiny (tests/test_verbs_family.py) fell to cosine 0.984 with fp32 while
    # the matmuls' outputs were quantized too: the classifier's logits clipped to the range of the one
    # calibration photo (on both engines; see `unquantized_outputs`); without that 0.9999 on both.
    # Symmetric signed activations, its matmuls' inputs (LayerNorm outputs) among them: with uint8
    # OpenVINO ran the zero point's subtraction, the scale and GELU after each int8 FullyConnected
    # as a separate bf16 Eltwise (7.0 of 25.2 ms per image in its counters, ConvNeXtTiny 224 px batch
    # 16, AMX Xeon) and int8 ran 0.99x the float graph in bf16; symmetric 1.30x. Digits (32 px, 96.4 %
    # accurate): 100.0 / 100.0 %, mean cosine 1.0000, min 0.9991 (uint8 0.9980).
    "convnext": FamilyInt8("conv+matmul", "symmetric"),
    # its Dense head quantized too: 99.4 / 100.0 % -> 99.7 / 100.0 % (one digit); as fast
    "xception": FamilyInt8("conv+matmul"),
    # DenseNet's joins quantized too, with symmetric signed activations (`signed`):
    # with "conv" OpenVINO turned each dense layer's input into a reference-kernel Convert (u8 ->
    # f32) and a per-channel FakeQuantize in f32 (BatchNorm+ReLU+requantize), 34 % of DenseNet121's
    # int8 time (its profiling counters, 224 px batch 16, Zen 4), and int8 ran 0.98-1.08x the float
    # graph in bf16; with int8 joins 1.72x (NNCF's own graph: 1.89x). Trained digits, held-out
    # agreement ONNX Runtime / OpenVINO: "conv" 100.0 / 99.7 %, "conv+concat" symmetric 100.0 /
    # 100.0 % (mean cosine 0.9999 on both)
    "densenet": FamilyInt8("conv+concat", "symmetric"),
    # ResNet's projection shortcuts read in int8 (`int8_shortcuts`): OpenVINO fuses the sum into the
    # shortcut's convolution, and with both addends float it wrote that convolution's output in f32
    # and reordered it to uint8, after reordering the other addend from bf16 to f32 (the two largest
    # reorders of ResNet50's int8 graph: 1.6 of 8.2 ms per image in its profiling counters, AMX Xeon,
    # 224 px batch 16, float layers in bf16). With one addend int8 both are gone: int8 relative to
    # the float graph in bf16 (paired rounds in one process, random weights, pooled features, that
    # Xeon) 1.14 -> 1.46x (float layers in f32: 1.03 -> 1.17x); not for ResNet50V2 (1.21 -> 1.13x:
    # its sums feed BatchNorm, not convolutions), EfficientNetB0 (0.95 -> 0.96x) or
    # MobileNetV3Large (1.10 -> 1.04x). Which addend: the first convolution's (int8 with zero point
    # 0, 1.46x; uint8 with a zero point 1.40x; both addends 1.40x). Trained digits (ResNet50, 32 px,
    # 95.8 % accurate): 99.7 / 99.7 %, mean cosine 0.9994 on both engines.
    "resnet": FamilyInt8(shortcut_int8=True),
}


def family_int8(architecture: str | None) -> FamilyInt8:
    """What `quantize` does for a graph of network `architecture` (None, or a network anyshape
    does not know: FamilyInt8(), DEFAULT_RECIPE measured on InceptionV3)."""
    from anyshape.archs import get_arch

    try:
        family = get_arch(architecture).family if architecture else None
    except (KeyError, ValueError):
        family = None
    return FAMILY_INT8.get(family, FamilyInt8()) if family else FamilyInt8()


def signed_activations_for(architecture: str | None) -> str:
    """ "symmetric" (int8, zero point 0) or "asymmetric" (uint8 with a zero point): how `quantize`
    stores the activations of network `architecture` whose range goes below 0."""
    return family_int8(architecture).signed


def recipe_for(architecture: str | None) -> str:
    """The recipe `quantize` uses for a graph of network `architecture`."""
    return family_int8(architecture).recipe


# On a CPU with AMX every network measured ran its int8 graph faster with the float layers in bf16
# (AMX's bf16 tiles make the float layers' bf16 cheap, the first convolution's most; f32 -> bf16,
# images/s relative to the float graph in bf16, paired rounds in one process, Intel Xeon with AMX,
# 2 cores; pooled features, random weights, 224 px batch 16, InceptionV3 at 299): ResNet50 0.98 ->
# 1.08x (its first convolution 2.06 -> 0.63 ms per image in OpenVINO's counters; batch 1 1.14 ->
# 1.26x), InceptionV3 1.23 -> 1.45x, DenseNet121 1.24 -> 1.35x, MobileNetV3Large 1.10 -> 1.17x,
# ConvNeXtTiny 0.71 -> 0.96x, EfficientNetB0 (listed already) 0.85 -> 0.96x; and one member of each
# other family: ResNet50V2 0.75 -> 1.23x, Xception 0.94 -> 1.07x, VGG16 1.30 -> 1.44x, NASNetMobile
# 0.99 -> 1.12x, InceptionResNetV2 1.26 -> 1.44x, EfficientNetV2B0 0.87 -> 0.93x (MobileNet and
# MobileNetV2 try it everywhere). So there it is tried for every network, kept where
# `bf16_remainder_holds`; a file quantized there runs its float layers in bf16 wherever the CPU
# computes bf16 (the file records what was measured where it was made).
BF16_REMAINDER_FLAGS = ("amx_bf16",)


def bf16_remainder_for(architecture: str | None, flags=None) -> bool:
    """Whether `quantize` tries the int8 graph of network `architecture` with its float layers in
    bf16 on OpenVINO: a family measured faster with it anywhere, and every network on a CPU with
    AMX (`flags`, this CPU's when None)."""
    if family_int8(architecture).bf16_remainder:
        return True
    flags = cpu_flags() if flags is None else flags
    return any(f in flags for f in BF16_REMAINDER_FLAGS)


FLOAT_REMAINDER_CHOICES = ("auto", "fp32")
# How much the int8 graph may lose with its float layers in bf16 against them in f32 (both vs the
# float graph in fp32, on the calibration images): half a point of top-1 agreement (the bound bf16
# itself keeps on the float model in tests/test_precision.py) and 0.002 of
# mean cosine of the centered logits (bf16 float layers cost a random-weight ConvNeXtTiny
# 0.001-0.002 per image; MobileNetV3Small's held-out agreement fell a point). Not the min cosine: one image decides it, and on the trained digit models it
# moved either way with agreement unchanged (EfficientNetB0 0.973 -> 0.928 on the held-out
# digits; MobileNetV3Small 0.903 -> 0.968 on its calibration digits); it is recorded and printed.
REMAINDER_AGREEMENT_LOSS = 0.005
REMAINDER_MEAN_COSINE_LOSS = 0.002


def bf16_remainder_holds(record: dict) -> bool:
    """Whether a fidelity record's int8 graph with its float layers in bf16 (`record["bf16_remainder"]`)
    follows the float model about as well as with them in f32 (the record's own figures): within
    REMAINDER_AGREEMENT_LOSS of top-1 agreement and REMAINDER_MEAN_COSINE_LOSS of mean cosine.
    False when it was not measured."""
    bf16 = record.get("bf16_remainder")
    if not bf16:
        return False
    if (
        record["top1_agreement"] is not None
        and bf16["top1_agreement"] < record["top1_agreement"] - REMAINDER_AGREEMENT_LOSS
    ):
        return False
    return bf16["mean_cosine"] >= record["mean_cosine"] - REMAINDER_MEAN_COSINE_LOSS


_POOLS = {"GlobalAveragePool", "GlobalMaxPool"}


def kept_in_float(proto, recipe: Recipe) -> list[str]:
    """The names of the nodes of `recipe.op_types` in the ONNX model `proto` that `recipe` keeps in float."""
    graph = proto.graph
    constants = {t.name for t in graph.initializer} | {
        o for n in graph.node if n.op_type == "Constant" for o in n.output
    }
    pooled: set[str] = set()  # tensors that are globally pooled (spatially 1 x 1), or made from such
    for node in graph.node:  # ONNX nodes are topologically sorted
        inputs = [i for i in node.input if i and i not in constants]
        if node.op_type in _POOLS or (inputs and all(i in pooled for i in inputs)):
            pooled.update(node.output)
    weighted = [n for n in graph.node if n.op_type in recipe.op_types]
    first_conv = _first_conv(graph)
    out = []
    for i, node in enumerate(weighted):
        group = next((a.i for a in node.attribute if a.name == "group"), 1)
        if (
            ("first" in recipe.keep_float and node is first_conv)
            or ("depthwise" in recipe.keep_float and node.op_type == "Conv" and group > 1)
            or ("pooled" in recipe.keep_float and node.input[0] in pooled)
            or ("last" in recipe.keep_float and i == len(weighted) - 1)
        ):
            out.append(node.name)
    return out


def _first_conv(graph):
    return next((n for n in graph.node if n.op_type == "Conv"), None)


@dataclass
class QuantizeReport:
    path: Path
    method: str
    used: int
    skipped: list = field(default_factory=list)  # (path, reason) of calibration images that could not be read
    fidelity: dict | None = None  # measure_fidelity's record, as stored in the file

    def line(self) -> str:
        text = f"wrote {self.path} (int8, {self.method}), calibrated on {self.used} image(s)" + (
            f", {len(self.skipped)} unreadable image(s) skipped" if self.skipped else ""
        )
        return text if self.fidelity is None else f"{text}\n{fidelity_line(self.fidelity)}"


def fidelity_line(record: dict) -> str:
    """One line for a fidelity record (`measure_fidelity`), as quantize and bench print it."""
    line = (
        f"fidelity of int8 vs fp32 on {record['engine']}, {record['images']} calibration image(s)"
        + (f", recipe {record['recipe']}" if record.get("recipe") else "")
        + (f", {record['signed_activations']} signed activations" if record.get("signed_activations") else "")
        + ": "
        + _figures_text(record)
    )
    if record.get("bf16_remainder"):
        kept = "kept" if bf16_remainder_holds(record) else "not kept: it lost more than the bound"
        line += f"; its float layers in bf16 ({kept}): {_figures_text(record['bf16_remainder'])}"
    return line


def _figures_text(figures: dict) -> str:
    top1 = figures["top1_agreement"]
    return (
        f"top-1 agreement {100 * top1:.1f} %, " if top1 is not None else ""
    ) + f"mean cosine {figures['mean_cosine']:.4f}, min cosine {figures['min_cosine']:.4f}"


def measure_fidelity(
    float_graph: GraphModel,
    int8_graph: GraphModel,
    batches: list,
    *,
    engine: str = "auto",
    bf16_remainder: bool = False,
) -> dict:
    """How closely `int8_graph` follows `float_graph` on preprocessed `batches`, both run on
    `engine` ("auto": the one the int8 graph runs on here; the float one at fp32): `top1_agreement` (share of
    images with the same top class; None when the model has no classifier), `mean_cosine` and
    `min_cosine` of their output rows (of the logits, less their mean, when the graph ends in a
    softmax), `images`, and `engine` (where both ran: "openvino"). With `bf16_remainder`, when
    that engine is OpenVINO on a CPU that computes bf16 natively, also the int8 graph with its
    float layers in bf16: its three figures as `bf16_remainder` (else the key is absent)."""
    candidate = Predictor(replace(int8_graph, float_remainder="fp32"), engine=engine)
    reference = _remembered(Predictor(float_graph, engine=candidate.engine, precision="fp32"))
    record = {**_figures(float_graph, reference, candidate, batches), "engine": candidate.engine}
    if bf16_remainder and candidate.engine == "openvino" and native_bf16(cpu_flags()):
        with_bf16 = Predictor(replace(int8_graph, float_remainder="bf16"), engine="openvino")
        if with_bf16.float_remainder == "bf16":  # else the Predictor ran them in f32: nothing to measure
            figures = _figures(float_graph, reference, with_bf16, batches)
            record["bf16_remainder"] = {k: figures[k] for k in ("top1_agreement", "mean_cosine", "min_cosine")}
    return record


def _remembered(predictor: Predictor):
    """`predictor` run once per batch (the float reference, compared with more than one int8 run)."""
    seen: dict[int, np.ndarray] = {}

    def run(batch):
        if id(batch) not in seen:
            seen[id(batch)] = np.asarray(predictor(batch))
        return seen[id(batch)]

    return run


def _figures(float_graph: GraphModel, reference, candidate, batches: list) -> dict:
    """`measure_fidelity`'s figures of one int8 run against the float one (rounded to 4 decimals)."""
    if _ends_in_softmax(float_graph.graph):
        # Softmax scores of a model that is unsure (random weights, or an image of no class) are
        # all alike, and so cosine ~ 1 whatever int8 did; log-scores less their mean are the
        # logits less their mean (softmax drops only a constant): their cosine shows the error.
        measured = fidelity(_centered_log(reference), _centered_log(candidate), batches)
    else:
        measured = fidelity(reference, candidate, batches)
    classifier = float_graph.include_top or (float_graph.include_top is None and bool(float_graph.class_names))
    return {
        "top1_agreement": round(measured["top1_agreement"], 4) if classifier else None,
        "mean_cosine": round(measured["mean_cosine"], 4),
        "min_cosine": round(measured["min_cosine"], 4),
        "images": measured["rows"],
    }


def calibration_batches(
    graph,
    folder,
    *,
    size=None,
    limit: int = 300,
    batch_size: int = 16,
    progress: bool = False,
    skipped: list | None = None,
) -> list:
    """Preprocessed float32 batches of up to `limit` images from `folder` (sorted order) for `graph`
    (a GraphModel or a Predictor: its channels, data format, preprocessing and fixed size), at the
    model's fixed size, else `size`, else the weights' input size, else its network's default size
    (299 for InceptionV3). Unreadable images are
    appended to `skipped` as (path, reason) and left out."""
    if size is not None:
        hw = parse_size(size)
        if hw == "native":
            raise ParameterError("calibration needs one size for all images: pass {size=N} or H,W, not native")
    else:
        hw = graph.fixed_hw or graph.preprocessing.input_size or _network_size(graph)
    if graph.fixed_hw is not None and tuple(hw) != tuple(graph.fixed_hw):
        raise ParameterError(
            "the model takes {h}x{w} images only; {size=*} cannot be used",
            h=graph.fixed_hw[0],
            w=graph.fixed_hw[1],
            size=f"{hw[0]},{hw[1]}",
        )
    files, missing = find_images([folder])
    skipped = skipped if skipped is not None else []
    skipped.extend((str(p), f"{p}: {why}") for p, why in missing)
    reader = ImageReader.for_model(graph, size=tuple(hw), upscale=True)
    rows: list = []
    bar = Progress(min(limit, len(files)), progress, label="calibration images")
    for path in files:
        if len(rows) >= limit:
            break
        try:
            rows.append(reader.read(path))
            bar.update(1)
        except Exception as e:  # unreadable, truncated, not an image: report and go on
            skipped.append(
                (str(path), Message("{path}: {kind}: {error}", path=path, kind=type(e).__name__, error=message_of(e)))
            )
            bar.update(0, failed=1)
    bar.close()
    if not rows:
        raise ParameterError(
            "{calibrate=*}: no readable images (found {found} file(s), "
            "{unreadable} unreadable): give a folder of the images the model will see",
            calibrate=str(folder),
            found=len(files),
            unreadable=len(skipped),
        )
    return [np.stack(rows[i : i + batch_size]).astype(np.float32) for i in range(0, len(rows), batch_size)]


@contextlib.contextmanager
def _without_onnxruntime_advice():
    """ONNX Runtime's quantizer logs advice on the root logger ("Please consider to run
    pre-processing before quantization", twice), and the first such call installs a handler that
    prints it: advice to whoever wrote the quantization step, not to the user of `anyshape
    quantize`. While it runs, its records below ERROR are dropped, and a stand-in handler keeps
    `logging.warning` from installing one."""
    import onnxruntime

    package = os.path.dirname(onnxruntime.__file__)
    root = logging.getLogger()

    def keep(record: logging.LogRecord) -> bool:
        return record.levelno >= logging.ERROR or not record.pathname.startswith(package)

    stand_in = None if root.handlers else logging.NullHandler()
    root.addFilter(keep)
    if stand_in is not None:
        root.addHandler(stand_in)
    try:
        yield
    finally:
        root.removeFilter(keep)
        if stand_in is not None:
            root.removeHandler(stand_in)


def _quantize_onnxruntime(
    graph: bytes, batches: list, recipe: str, signed: str = "asymmetric", shortcuts: bool = False
) -> bytes:
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    class Reader(CalibrationDataReader):
        def __init__(self):
            self._it = iter(batches)

        def get_next(self):
            batch = next(self._it, None)
            return None if batch is None else {"input": batch}

    import onnx

    proto = onnx.load_from_string(graph)
    chosen = RECIPES[recipe]
    with tempfile.TemporaryDirectory(prefix="anyshape-quantize-") as tmp:
        src, dst = Path(tmp) / "float.onnx", Path(tmp) / "int8.onnx"
        src.write_bytes(graph)
        with _without_onnxruntime_advice():
            quantize_static(
                str(src),
                str(dst),
                Reader(),
                quant_format=QuantFormat.QDQ,
                per_channel=True,
                activation_type=QuantType.QUInt8,
                weight_type=QuantType.QInt8,
                op_types_to_quantize=list(chosen.op_types),
                nodes_to_exclude=kept_in_float(proto, chosen),
                calibrate_method=CalibrationMethod.MinMax,
                # onnxruntime/quantization/quantize.py (quantize_static's extra_options): no
                # QuantizeLinear on a convolution's or matmul's output unless the recipe joins them
                extra_options={"OpTypesToExcludeOutputQuantization": unquantized_outputs(chosen)},
            )
        data = dst.read_bytes()
    data = symmetric_signed_activations(data) if signed == "symmetric" else data
    return int8_shortcuts(data, graph, batches) if shortcuts else data


def int8_shortcuts(int8: bytes, graph: bytes, batches: list) -> bytes:
    """The QDQ graph `int8` (quantized from the float `graph`) with each sum of two convolutions'
    outputs (Add or Sum of two inputs, each a Conv's output) reading the addend made first through
    a QuantizeLinear / DequantizeLinear pair: int8, zero point 0, scale the largest magnitude it
    reaches on `batches` / 127 (FAMILY_INT8's `shortcut_int8`: ResNet's projection shortcuts)."""
    import onnx
    from onnx import helper, numpy_helper

    model = onnx.load_from_string(int8)
    nodes = list(model.graph.node)
    addends = _first_conv_addends(nodes)
    if not addends:
        return int8
    reach = _largest_magnitudes(graph, addends, batches)
    rewritten = []  # the graph's nodes in order, each addend's pair right after the node that makes it
    for node in nodes:
        if node.op_type in ("Add", "Sum"):
            node.input[:] = [f"{i}_shortcut" if i in reach else i for i in node.input]
        rewritten.append(node)
        for name in (out for out in node.output if out in reach):
            scale, zero, read = f"{name}_shortcut_scale", f"{name}_shortcut_zero", f"{name}_shortcut"
            model.graph.initializer.extend(
                [
                    numpy_helper.from_array(np.array(reach[name] / 127.0 or 1.0, np.float32), scale),
                    numpy_helper.from_array(np.array(0, np.int8), zero),
                ]
            )
            rewritten += [
                helper.make_node(
                    "QuantizeLinear", [name, scale, zero], [f"{name}_int8"], name=f"{name}_shortcut_Quantize"
                ),
                helper.make_node(
                    "DequantizeLinear", [f"{name}_int8", scale, zero], [read], name=f"{name}_shortcut_Dequantize"
                ),
            ]
    del model.graph.node[:]
    model.graph.node.extend(rewritten)
    return model.SerializeToString()


def _first_conv_addends(nodes: list) -> list[str]:
    """Of each Add or Sum of two convolutions' outputs (read as they are, not through a
    DequantizeLinear) among `nodes` (in graph order), the addend made first."""
    made_by = {out: (i, node.op_type) for i, node in enumerate(nodes) for out in node.output}
    addends = []
    for node in nodes:
        if node.op_type in ("Add", "Sum") and len(node.input) == 2:
            if all(made_by.get(name, (-1, None))[1] == "Conv" for name in node.input):
                addends.append(min(node.input, key=lambda name: made_by[name][0]))
    return addends


def _largest_magnitudes(graph: bytes, names: list[str], batches: list) -> dict[str, float]:
    """The largest magnitude each tensor `names` of the float `graph` reaches on `batches` (ONNX Runtime)."""
    import onnx
    import onnxruntime as ort

    model = onnx.load_from_string(graph)
    for name in names:
        model.graph.output.append(onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None))
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    reach = dict.fromkeys(names, 0.0)
    for batch in batches:
        for name, value in zip(names, session.run(names, {"input": batch})):
            reach[name] = max(reach[name], float(np.abs(value).max()))
    return reach


def unquantized_outputs(recipe: Recipe) -> list[str]:
    """The op types whose outputs ONNX Runtime's quantizer leaves float under `recipe`: its
    convolutions and matmuls, unless the recipe joins int8 tensors (Concat: DenseNet's), whose
    inputs are those outputs. A quantized output is read by float layers (BatchNorm folded,
    activations, residual sums) through a DequantizeLinear, which OpenVINO ran as a Convert and a
    Subtract each (EfficientNetB0's uint8 graph at 224 px batch 16, Zen 4: 48 % of its int8 time);
    left float, the next quantized node still quantizes what it reads. On the classifier the pair
    rounded the logits to a range calibrated on few numbers (classes x images): the random-weight
    ConvNeXtTiny of tests/test_verbs_family.py, calibrated on one photo, gave its other photo two
    classes with the same clipped logit (centred log-score cosine with fp32 0.9686 on ONNX Runtime
    and OpenVINO alike; 0.9999 on both without it; onnxruntime/quantization/operators/gemm.py and
    matmul.py put the pair on the output by default). Measured, int8 with
    quantized -> float outputs, relative to the float graph in bf16 on OpenVINO (paired rounds, a
    shared machine): EfficientNetB0 0.54 -> 0.92x (float layers in bf16: 0.68 -> 1.15x), ResNet50
    1.44 -> 1.65x (1.36 -> 1.90x), InceptionV3 at 299 px 1.76 -> 2.30x, MobileNetV3Large 1.00 ->
    1.09x, ConvNeXtTiny 0.61 -> 0.65x; DenseNet121 with its joins 1.83 -> 1.21x (so not there).
    Held-out digits agreement (ONNX Runtime / OpenVINO): EfficientNetB0 99.4 / 99.7 -> 99.7 /
    99.7 %, EfficientNetV2B0 100.0 / 99.4 -> 99.7 / 99.7 %, MobileNetV3Small 99.7 / 99.4 -> 99.2 /
    99.2 %, MobileNetV2 94.7 / 94.2 -> 95.8 / 95.6 %, InceptionV3 99.7 / 99.7 -> 99.4 / 99.4 %,
    NASNetMobile 98.9 / 97.8 -> 98.3 / 98.3 %; mean cosine as high or higher (one rounding fewer)."""
    if "Concat" in recipe.op_types:
        return []
    return [t for t in recipe.op_types if t in CONV_MATMUL]


def symmetric_signed_activations(graph: bytes) -> bytes:
    """A QDQ graph's uint8 activations whose zero point is not 0 (their calibrated range goes
    below 0) and that no Gemm reads, stored as int8 with zero point 0 and the same range
    on both sides: scale max(zero point, 255 - zero point) * scale / 127. Weights (int8, zero point
    0) and activations with zero point 0 (ReLU outputs) are left as they are."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load_from_string(graph)
    inits = {t.name: t for t in model.graph.initializer}
    readers: dict[str, set[str]] = {}  # zero point -> the op types that read its dequantized tensor
    dequantized = {
        n.output[0]: n.input[2] for n in model.graph.node if n.op_type == "DequantizeLinear" and len(n.input) > 2
    }
    for node in model.graph.node:
        for name in node.input:
            if name in dequantized:
                readers.setdefault(dequantized[name], set()).add(node.op_type)
    done: set[str] = set()
    for node in model.graph.node:
        if node.op_type != "QuantizeLinear" or len(node.input) < 3:
            continue
        scale_name, zero_name = node.input[1], node.input[2]
        if zero_name in done or zero_name not in inits or scale_name not in inits:
            continue
        if "Gemm" in readers.get(zero_name, set()):
            # not a Gemm's input: ONNX Runtime's int8 Gemm gave a 14 % error with an int8 input
            # where uint8 gave 0.4 % (tests/test_quantize_recipes.py's graph); its MatMul 0.31 %
            # where uint8 gave 0.18 % (same graph, the AMX Xeon), so a MatMul's input may be int8
            continue
        zero = numpy_helper.to_array(inits[zero_name])
        if zero.dtype != np.uint8 or zero.size != 1 or int(zero) == 0:
            continue
        reach = max(int(zero), 255 - int(zero)) * float(numpy_helper.to_array(inits[scale_name]))
        # the QuantizeLinear and its DequantizeLinear share these two initializers
        inits[scale_name].CopyFrom(numpy_helper.from_array(np.array(reach / 127.0, np.float32), scale_name))
        inits[zero_name].CopyFrom(numpy_helper.from_array(np.array(0, np.int8), zero_name))
        done.add(zero_name)
    return model.SerializeToString()


def _quantize_nncf(graph: bytes, batches: list) -> bytes:
    import nncf
    import onnx

    model = onnx.load_from_string(graph)
    samples = [{"input": b[i : i + 1]} for b in batches for i in range(len(b))]
    quantized = nncf.quantize(model, nncf.Dataset(samples), subset_size=len(samples))
    return quantized.SerializeToString()


def check_method(method: str, engine: str = "auto") -> None:
    """Refuse an unknown quantizer or fidelity engine, or one whose package is not installed (before any work)."""
    if method not in METHODS:
        raise ValueError(f"method must be one of {', '.join(METHODS)}, got {method!r}")
    if engine not in FIDELITY_ENGINES:
        raise ValueError(f"engine must be one of {', '.join(FIDELITY_ENGINES)}, got {engine!r}")
    needs = [("onnx", "fast"), ("onnxruntime.quantization", "fast") if method == "onnxruntime" else ("nncf", "nncf")]
    if engine == "openvino":
        needs.append(("openvino", "openvino"))
    for module, extra in needs:
        reason = missing_extra(module, extra)
        if reason is not None:
            raise MissingExtra(
                f"quantizing with {method} cannot run: {reason}"
                if extra != "openvino"
                else f"engine='openvino' unavailable: {reason}"
            )


def _ends_in_softmax(graph: bytes) -> bool:
    import onnx

    nodes = onnx.load_from_string(graph).graph
    made_by = {out: node.op_type for node in nodes.node for out in node.output}
    return made_by.get(nodes.output[0].name) == "Softmax"


def _centered_log(predictor):
    """`predictor`, its softmax scores turned into log-scores less their row mean."""

    def run(batch):
        z = np.log(np.maximum(np.asarray(predictor(batch), np.float64), 1e-30))
        return z - z.mean(axis=-1, keepdims=True)

    return run


def quantize(
    model,
    calibrate,
    out,
    *,
    method: str = DEFAULT_METHOD,
    size=None,
    limit: int = 300,
    force: bool = False,
    progress: bool = False,
    engine: str = "auto",
    float_remainder: str = "auto",
) -> QuantizeReport:
    """Quantize `model` (a Keras model or a float `GraphModel`) to int8 with the images in
    `calibrate` (a folder, searched recursively) and write the .onnx file `out` atomically. The
    report (and the file's metadata) holds the int8 model's fidelity to the float one on those
    images (`measure_fidelity`), measured on `engine` ("auto": the engine the file runs on here,
    OpenVINO when installed; "onnxruntime" or "openvino"). `float_remainder` "auto": on OpenVINO,
    for the networks that run faster so (FAMILY_INT8's `bf16_remainder`; on a CPU with AMX every
    network: `bf16_remainder_for`), on a CPU that computes bf16,
    the int8 graph is also measured with its float layers in bf16, and the file runs them in bf16
    where that kept its fidelity (`bf16_remainder_holds`); "fp32": always in f32."""
    check_method(method, engine)
    if float_remainder not in FLOAT_REMAINDER_CHOICES:
        raise ParameterError(
            "{float_remainder=*} is not one of {choices}",
            float_remainder=float_remainder,
            choices=", ".join(FLOAT_REMAINDER_CHOICES),
        )
    out = Path(out)
    if out.suffix != ".onnx":
        raise ValueError(f"{out}: the quantized model is an ONNX file; give a name ending in .onnx")
    if out.exists() and not force:
        raise OutputExistsError("{path} exists; pass {force=True} to overwrite it", path=out)
    if not out.parent.is_dir():
        raise ValueError(f"the folder {str(out.parent)!r} does not exist")
    if not Path(calibrate).is_dir():
        raise ParameterError(
            "{calibrate=*}: not a folder (give a folder of calibration images)", calibrate=str(calibrate)
        )
    graph = model if isinstance(model, GraphModel) else GraphModel.from_keras(model)
    if graph.precision == "int8":
        raise ValueError("the model is already quantized to int8: quantize the float model instead")
    skipped: list = []
    batches = calibration_batches(graph, calibrate, size=size, limit=limit, progress=progress, skipped=skipped)
    if progress:
        print(f"quantizing with {method} on {sum(len(b) for b in batches)} image(s) ...", file=sys.stderr)
    int8 = quantize_graph(graph, batches, method=method)
    if progress:
        print("measuring int8 against fp32 on the calibration images ...", file=sys.stderr)
    try_bf16 = float_remainder == "auto" and bf16_remainder_for(graph.architecture)
    measured = measure_fidelity(graph, int8, batches, engine=engine, bf16_remainder=try_bf16)
    recipe, signed = quantized_form(graph, method)
    int8 = replace(
        int8,
        fidelity={**measured, "recipe": recipe, "signed_activations": signed},
        float_remainder="bf16" if bf16_remainder_holds(measured) else "fp32",
    )
    # without force, not a file that appeared meanwhile either (another run writing `out`)
    write_bytes_atomically(out, int8.to_bytes(), overwrite=force)
    return QuantizeReport(out, method, sum(len(b) for b in batches), skipped, int8.fidelity)


def quantized_form(graph: GraphModel, method: str = DEFAULT_METHOD, recipe: str | None = None) -> tuple:
    """(recipe, signed activations) `quantize_graph` uses for `graph`: ("nncf", None) for NNCF,
    else the recipe given or `recipe_for` its network, and `signed_activations_for` it."""
    if method == "nncf":
        if recipe is not None:
            raise ValueError("recipe applies to method='onnxruntime' only; nncf places its own quantizers")
        return "nncf", None
    recipe = recipe_for(graph.architecture) if recipe is None else recipe
    if recipe not in RECIPES:
        raise ValueError(f"recipe must be one of {', '.join(map(repr, RECIPES))}, got {recipe!r}")
    return recipe, signed_activations_for(graph.architecture)


def quantize_graph(
    graph: GraphModel, batches: list, *, method: str = DEFAULT_METHOD, recipe: str | None = None
) -> GraphModel:
    """The int8 GraphModel of a float one, calibrated on preprocessed float32 `batches` (in memory).
    With ONNX Runtime's quantizer, `recipe` (a name of RECIPES; None: `recipe_for` the network
    the graph records) says which nodes are quantized, and `signed_activations_for` that network
    how activations with a range below 0 are stored (`quantized_form`); NNCF applies its own."""
    recipe, signed = quantized_form(graph, method, recipe)
    if method == "nncf":
        data = _quantize_nncf(graph.graph, batches)
    else:
        shortcuts = family_int8(graph.architecture).shortcut_int8
        data = _quantize_onnxruntime(graph.graph, batches, recipe, signed, shortcuts)
    return replace(graph, graph=data, precision="int8")


def _network_size(graph) -> tuple[int, int]:
    """The default size of the network a model holds (299 x 299 when it does not say)."""
    from anyshape.archs import DEFAULT_ARCH, get_arch

    size = get_arch(getattr(graph, "architecture", None) or DEFAULT_ARCH).default_size
    return (size, size)
