"""A model as an ONNX graph plus what running it needs (data format, preprocessing, class names,
precision), stored inside the graph itself (ONNX `metadata_props`, key "anyshape").

This is what crosses process boundaries (a pickled `Predictor` carries it and rebuilds its
sessions on arrival) and what `anyshape quantize` writes: an .onnx file that `--model FILE.onnx`
loads in a fresh process without the Keras model it came from.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from anyshape.engine.images import Preprocessing
from anyshape.errors import Message, ParameterError
from anyshape.shapes import min_input_size

METADATA_KEY = "anyshape"
FLOAT_REMAINDERS = ("fp32", "bf16")  # what an int8 graph's float layers run in on OpenVINO


@dataclass
class GraphModel:
    graph: bytes  # a serialized onnx.ModelProto (float, or int8 QDQ when precision == "int8")
    data_format: str = "channels_last"
    channels: int = 3
    fixed_hw: tuple | None = None
    output_rank: int = 2
    min_size: int = 1  # the smallest H and W the graph computes (shapes.min_input_size)
    preprocessing: Preprocessing = field(default_factory=Preprocessing)
    class_names: list | None = None
    precision: str = "fp32"  # "int8" for a quantized graph
    # the registered network the graph was made from ("mobilenet", ...) and whether it ends in its
    # classifier: None where unknown (a model anyshape did not build, a file written before)
    architecture: str | None = None
    include_top: bool | None = None
    # an int8 graph's measured fidelity to the float graph it came from (`quantize.measure_fidelity`):
    # top1_agreement (None without a classifier), mean_cosine, min_cosine, images, engine
    fidelity: dict | None = None
    # an int8 graph's float layers (what the recipe keeps in float, and everything between the
    # quantized nodes) on OpenVINO: "fp32", or "bf16" where `quantize` measured that bf16 keeps
    # the int8 graph's fidelity and the network runs faster with it (only on a CPU that computes
    # bf16 natively; ONNX Runtime always computes them in fp32)
    float_remainder: str = "fp32"

    def __post_init__(self):
        if self.float_remainder not in FLOAT_REMAINDERS:
            raise ValueError(
                f"float_remainder must be one of {', '.join(FLOAT_REMAINDERS)}, got {self.float_remainder!r}"
            )

    def __repr__(self) -> str:  # not the graph's bytes (hundreds of MB for a large network)
        classes = None if self.class_names is None else len(self.class_names)
        return (
            f"GraphModel(architecture={self.architecture!r}, include_top={self.include_top}, "
            f"precision={self.precision!r}, data_format={self.data_format!r}, channels={self.channels}, "
            f"fixed_hw={self.fixed_hw}, min_size={self.min_size}, class_names={classes} names, "
            f"graph={len(self.graph):,} bytes)"
        )

    @classmethod
    def from_keras(cls, model) -> GraphModel:
        """Translate a built Keras model (raises NotImplementedError / ImportError like keras_to_onnx)."""
        import onnx

        from anyshape.onnx_graph import keras_to_onnx

        proto = keras_to_onnx(model, check=False)
        graph = proto.SerializeToString()
        del proto  # the checker parses the bytes again: without the proto beside them
        onnx.checker.check_model(graph)
        return cls(graph=graph, **describe_keras(model))

    def metadata(self) -> dict:
        meta = {
            "data_format": self.data_format,
            "channels": self.channels,
            "fixed_hw": list(self.fixed_hw) if self.fixed_hw else None,
            "output_rank": self.output_rank,
            "min_size": self.min_size,
            "preprocessing": self.preprocessing.to_dict(),
            "class_names": self.class_names,
            "precision": self.precision,
            "architecture": self.architecture,
            "include_top": self.include_top,
        }
        if self.fidelity is not None:  # only an int8 file has it: float exports stay as they were
            meta["fidelity"] = self.fidelity
        if self.float_remainder != "fp32":
            meta["float_remainder"] = self.float_remainder
        return meta

    def to_bytes(self) -> bytes:
        """The graph with this metadata inside (metadata_props["anyshape"], JSON), in place of any
        metadata it held."""
        return with_metadata(self.graph, {METADATA_KEY: json.dumps(self.metadata())})

    @classmethod
    def from_bytes(cls, data: bytes, *, source: str | Message = "the model") -> GraphModel:
        import onnx

        try:
            proto = onnx.load_from_string(data)
        except Exception as e:
            raise ValueError(
                Message(
                    "{source} is not an ONNX model ({kind}: {error})", source=source, kind=type(e).__name__, error=e
                )
            ) from e
        props = {p.key: p.value for p in proto.metadata_props}
        if METADATA_KEY not in props:
            raise ValueError(
                Message(
                    "{source} has no anyshape metadata (data format, preprocessing, classes): use a file written by "
                    "{python:anyshape.engine.quantize or anyshape.engine.export_model to .onnx}"
                    "{cli:`anyshape quantize` or `anyshape export --format onnx`}",
                    source=source,
                )
            )
        try:
            meta = json.loads(props[METADATA_KEY])
            return cls(
                graph=data,
                data_format=meta["data_format"],
                channels=int(meta["channels"]),
                fixed_hw=tuple(meta["fixed_hw"]) if meta.get("fixed_hw") else None,
                output_rank=int(meta.get("output_rank", 2)),
                # files written before it was recorded hold whole InceptionV3s (export, quantize)
                min_size=int(meta.get("min_size") or min_input_size(["mixed10"])),
                preprocessing=Preprocessing.from_dict(meta.get("preprocessing") or {}),
                class_names=meta.get("class_names"),
                precision=meta.get("precision", "fp32"),
                architecture=_architecture(meta.get("architecture")),
                include_top=None if meta.get("include_top") is None else bool(meta["include_top"]),
                fidelity=_fidelity(meta.get("fidelity")),
                float_remainder=str(meta.get("float_remainder", "fp32")),
            )
        except (KeyError, TypeError, ValueError, AttributeError) as e:  # a damaged or crafted record
            raise ValueError(
                Message(
                    "{source}: its anyshape metadata is not valid ({kind}: {error})",
                    source=source,
                    kind=type(e).__name__,
                    error=e,
                )
            ) from e

    def output_shapes(self, input_shape: tuple) -> list[tuple]:
        """The graph's output shapes for an input of `input_shape` (batch axis included), by ONNX
        shape inference: nothing runs."""
        import onnx

        proto = onnx.load_from_string(self.graph)
        for dim, value in zip(proto.graph.input[0].type.tensor_type.shape.dim, (1, *input_shape[1:])):
            dim.Clear()
            dim.dim_value = value
        outputs = onnx.shape_inference.infer_shapes(proto).graph.output
        return [(input_shape[0], *(d.dim_value for d in o.type.tensor_type.shape.dim[1:])) for o in outputs]

    @classmethod
    def load(cls, path) -> GraphModel:
        path = Path(path)
        if not path.is_file():
            raise ParameterError(
                "{model_path=*}: no such file (expected a .keras or .onnx model file)", model_path=str(path)
            )
        return cls.from_bytes(path.read_bytes(), source=Message("{model_path=*}", model_path=str(path)))


def describe_keras(model) -> dict:
    """What a GraphModel needs to know about a Keras model besides its graph."""
    from anyshape.onnx_graph import _input_data_format

    data_format = _input_data_format(model)
    shape = tuple(model.inputs[0].shape[1:])
    channels = shape[0] if data_format == "channels_first" else shape[-1]
    hw = shape[1:] if data_format == "channels_first" else shape[:2]
    from anyshape.model_info import model_info

    info = model_info(model)
    arch, config = (info.architecture or "inception_v3"), info.config
    include_top = getattr(config, "include_top", None) if info.architecture is not None else None
    return dict(
        data_format=data_format,
        channels=int(channels),
        fixed_hw=tuple(hw) if all(d is not None for d in hw) else None,
        output_rank=len(model.outputs[0].shape),
        min_size=min_input_size(_layer_names(model), arch, config),
        preprocessing=info.data_config,
        class_names=list(info.class_names) if info.class_names else None,
        architecture=info.architecture,
        include_top=include_top,
    )


def _architecture(name):
    """A recorded network name, checked against the registry (a crafted record names no other)."""
    if name is None:
        return None
    from anyshape.archs import get_arch

    return get_arch(str(name)).name


def _fidelity(record):
    """A recorded fidelity, with the keys and types `quantize.measure_fidelity` writes (a crafted
    record raises TypeError / ValueError / KeyError: invalid metadata)."""
    if record is None:
        return None
    return {
        **_figures(record, "fidelity"),
        "images": int(record["images"]),
        "engine": str(record["engine"]),
        # what was quantized (`quantize.RECIPES`, or "nncf"); files written before it was recorded lack it
        **({"recipe": str(record["recipe"])} if record.get("recipe") is not None else {}),
        # how activations below 0 are stored ("symmetric" / "asymmetric"); older files lack it
        **({"signed_activations": str(record["signed_activations"])} if record.get("signed_activations") else {}),
        # OpenVINO's float layers in bf16 measured too (`quantize`); older files lack it
        **(
            {"bf16_remainder": _figures(record["bf16_remainder"], "bf16_remainder")}
            if record.get("bf16_remainder")
            else {}
        ),
    }


def _figures(record, name: str) -> dict:
    """A measured run's three figures (top-1 agreement, mean and min cosine) from the record `name`:
    the fidelity record itself, or its `bf16_remainder` (the int8 graph with its float layers in bf16)."""
    if not isinstance(record, dict):
        raise TypeError(f"{name} is a {type(record).__name__}, not a record")
    top1 = record["top1_agreement"]
    return {
        "top1_agreement": None if top1 is None else float(top1),
        "mean_cosine": float(record["mean_cosine"]),
        "min_cosine": float(record["min_cosine"]),
    }


def _layer_names(model) -> list[str]:
    """The names of a Keras model's layers, those of nested models included."""
    names = []
    for layer in model.layers:
        names.append(layer.name)
        if hasattr(layer, "layers"):
            names.extend(_layer_names(layer))
    return names


def with_metadata(graph: bytes, props: dict[str, str]) -> bytes:
    """The serialised ModelProto `graph` with its metadata_props replaced by `props`, without
    parsing the graph: its top-level fields are copied as they are, but metadata_props, and the new
    entries appended (a protobuf parser merges concatenated fields; a repeated field's entries add
    up). Parsing the model and serialising it again held the weights twice more: ConvNeXtXLarge's
    `export`, 1.4 GB of weights, peaked at 7.9 GB that way."""
    import onnx

    metadata_props = onnx.ModelProto.DESCRIPTOR.fields_by_name["metadata_props"].number
    view, kept, i = memoryview(graph), [], 0
    while i < len(view):
        start = i
        key, i = _varint(view, i)
        wire_type = key & 7
        if wire_type == 0:  # ir_version
            _, i = _varint(view, i)
        elif wire_type == 2:  # every other field of a ModelProto: strings and messages
            length, i = _varint(view, i)
            i += length
        else:  # a ModelProto has no fixed-width or group fields
            raise ValueError(f"not a serialised ONNX model (protobuf wire type {wire_type} at byte {start})")
        if i > len(view):
            raise ValueError(f"not a serialised ONNX model (a field runs past the end at byte {start})")
        if key >> 3 != metadata_props:
            kept.append(view[start:i])
    entries = onnx.ModelProto()
    onnx.helper.set_model_props(entries, props)
    return b"".join([*kept, entries.SerializeToString()])


def _varint(view: memoryview, i: int) -> tuple[int, int]:
    """The protobuf varint at byte `i` of `view`, and the index after it."""
    value, shift = 0, 0
    while True:
        if i >= len(view):
            raise ValueError("not a serialised ONNX model (it ends inside a number)")
        byte = view[i]
        value |= (byte & 0x7F) << shift
        i, shift = i + 1, shift + 7
        if byte < 0x80:
            return value, i
