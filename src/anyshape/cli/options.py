"""What the verbs share on the command line: exit codes, flag groups, the checks of flag
combinations argparse cannot express, and the table that spells library parameters as flags.
The argument types are `anyshape.cli.arg_types`' (re-exported here)."""

from __future__ import annotations

import argparse

from anyshape.cli.arg_types import (
    RepeatedOptions,
    fraction,
    option_pair,
    parse_shape,
    positive_float,
    positive_int,
)

_option = option_pair  # the name tests/test_options.py imports

# the exit codes of every verb (see `anyshape.cli._call`)
EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


class HelpFormatter(argparse.HelpFormatter):
    """Every flag's help ends with its default (unless the help already states it)."""

    def _get_help_string(self, action):
        text = action.help or ""
        if "default" not in text and action.default not in (None, False, argparse.SUPPRESS) and action.option_strings:
            text += " (default: %(default)s)"
        return text


def library_default(owner, name: str):
    """The default the library gives parameter `name` of `owner` (a function, or a dataclass's
    field): the CLI states no default of its own, so the CLI and Python agree by construction."""
    import dataclasses
    import inspect

    if dataclasses.is_dataclass(owner):
        return {f.name: f.default for f in dataclasses.fields(owner)}[name]
    default = inspect.signature(owner).parameters[name].default
    if default is inspect.Parameter.empty:
        raise TypeError(f"{owner.__qualname__}'s {name} has no default")
    return default


def _network_default(name: str):
    """A build argument's default, as every network's Config (`anyshape.archs.base.ArchConfig`) has it."""
    from anyshape.archs.base import ArchConfig

    return library_default(ArchConfig, name)


DATA_FORMAT_HELP = (
    "axis order of the {what} (default: the library's, keras.config.image_data_format(): channels_last "
    "unless ~/.keras/keras.json says otherwise)"
)


def _arch_name(text: str) -> str:
    """--arch: a registered name, or keras.applications' constructor name (ResNet50), as Python takes it."""
    from anyshape.archs import UnknownArchitecture, get_arch

    try:
        return get_arch(text).name
    except UnknownArchitecture as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def add_arch_arguments(p: argparse.ArgumentParser, *, default: str | None = None) -> None:
    """--arch NAME and --option KEY=VALUE: which network, with which of its own build arguments.

    `default` None: InceptionV3 (anyshape.archs.DEFAULT_ARCH); verbs that also take --model
    leave it unset there, since a saved model says what it is."""
    from anyshape.archs import DEFAULT_ARCH, list_models

    p.add_argument(
        "--arch",
        type=_arch_name,
        default=default or DEFAULT_ARCH,
        metavar="NAME",
        help=f"the network, one of anyshape.list_models() or its keras.applications name (default: "
        f"{default or DEFAULT_ARCH}): " + ", ".join(list_models()),
    )
    p.add_argument(
        "--option",
        type=option_pair,
        action=RepeatedOptions,
        default=None,
        metavar="KEY=VALUE",
        help="a build argument of the network's own (repeatable), e.g. --option alpha=0.5 for MobileNet, "
        "--option head=conv for VGG; the names are its Config's fields",
    )


BOOL_WORDS = {"true": True, "yes": True, "1": True, "false": False, "no": False, "0": False}


def _option_value(arch, key: str, value):
    """One --option value as its Config field's type: booleans from true/false/yes/no/1/0 (any
    case), numbers from their text (finite), "none" for a field that may be None; the Config's
    own checks (anyshape.archs.base.check_config_values, then its problems()) do the rest."""
    import math
    from dataclasses import fields

    from anyshape.archs.base import field_kind

    types = {f.name: f.type for f in fields(arch.config_class)}
    if key not in types:
        return value  # refused by the caller, in its words
    kind, optional, many = field_kind(types[key])
    text = str(value).strip()
    if optional and text.lower() == "none":
        return None
    if many or not kind:
        return value
    if kind == "bool":
        if isinstance(value, bool):
            return value
        if text.lower() not in BOOL_WORDS:
            raise ValueError(f"--option {key}={text}: {key} is true or false (also yes/no, 1/0), got {text!r}")
        return BOOL_WORDS[text.lower()]
    if kind == "str":
        return text
    try:
        number = float(text) if kind == "float" else int(text)
    except ValueError:
        number = None
    if number is None or isinstance(value, bool) or not math.isfinite(number):
        wanted = "a whole number" if kind == "int" else "a finite number"
        raise ValueError(f"--option {key}={text}: {key} must be {wanted}, got {text!r}")
    return number


def typed_options(arch, pairs) -> dict:
    """The --option KEY=VALUE pairs as a dict of values typed by `arch`'s Config (see
    `_option_value`); a KEY given twice is refused (the last would win without a word)."""
    from anyshape.archs import get_arch

    a = get_arch(arch)
    out: dict = {}
    for key, value in pairs or []:
        if key in out:
            raise ValueError(f"--option {key} is given twice; give each option once")
        out[key] = _option_value(a, key, value)
    return out


# the build arguments every network has, each with its own flag (not an --option)
COMMON_BUILD_ARGS = ("input_shape", "include_top", "pooling", "classes", "data_format", "dropout_rate")


def network_options(args, flags: tuple[tuple[str, str], ...] = (("--aux-logits", "aux_logits"),)) -> dict:
    """The network's own build arguments the flags give: every --option KEY=VALUE, and the flags
    of one network's options (InceptionV3's --aux-logits) when set, each checked against the
    Config of --arch (refused, with the network's options listed, when it has no such field)."""
    from dataclasses import fields

    from anyshape.archs import get_arch

    arch = get_arch(args.arch)
    known = {f.name for f in fields(arch.config_class)}
    pairs = getattr(args, "option", None) or []
    for key, _ in pairs:
        if key in COMMON_BUILD_ARGS or key not in known:
            others = sorted(known - set(COMMON_BUILD_ARGS) - {"name"})
            raise ValueError(
                f"--option {key}: {'use its own flag' if key in COMMON_BUILD_ARGS else f'--arch {args.arch} has no option {key}'}"
                f"; its options are {', '.join(others) or 'none'}"
            )
    own = typed_options(arch, pairs)
    for flag, key in flags:
        if getattr(args, key, False):
            if key not in known:
                raise ValueError(f"{flag} is an option of inception_v3, not of --arch {args.arch}")
            own[key] = True
    return own


POOLING_HELP = (
    "how the last feature map is reduced to one vector per image: avg, max, avgmax, catavgmax, "
    "or none (keep the map; with --include-top the classifier's own average pooling) (default: none)"
)


def _pooling(text: str):
    return None if text == "none" else text


def add_model_arguments(p: argparse.ArgumentParser, *, include_top: bool = True) -> None:
    """The arguments that describe a model, shared by every verb that builds one."""
    p.add_argument(
        "--input-shape",
        type=parse_shape,
        default=None,
        metavar="H,W,C",
        help="input shape without the batch axis, in --data-format order (e.g. 150,150,3; none for a "
        "free size) (default: none,none,3, a free size)",
    )
    if include_top:
        p.add_argument(
            "--include-top",
            action="store_true",
            help="include the pooling + dense classifier (default: off, the backbone only; note that "
            "the Python API's InceptionV3 includes it by default)",
        )
    p.add_argument(
        "--pooling",
        type=_pooling,
        choices=["avg", "max", "avgmax", "catavgmax", None],
        default=None,
        metavar="{avg,max,avgmax,catavgmax,none}",
        help=POOLING_HELP,
    )
    p.add_argument(
        "--classes", type=positive_int, default=_network_default("classes"), help="number of classes of the classifier"
    )
    p.add_argument(
        "--aux-logits", action="store_true", help="add the auxiliary classifier on mixed7 (needs H, W >= 299)"
    )
    p.add_argument(
        "--data-format",
        choices=["channels_last", "channels_first"],
        default=None,
        help=DATA_FORMAT_HELP.format(what="input"),
    )
    p.add_argument(
        "--dropout-rate", type=fraction, default=_network_default("dropout_rate"), help="dropout before the classifier"
    )


def add_preprocessing_argument(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--preprocessing",
        choices=["tf", "torch"],
        default=None,
        help="how a PyTorch --weights file expects its input: tf ([-1, 1]) or torch (ImageNet "
        "mean/std); needed when the file is not a published one anyshape recognises (default: what the weight set says)",
    )


# the flags that describe how to build a model: with --model FILE.keras (a complete model) they
# would be silently ignored, so they are refused
MODEL_FLAGS = {
    "input_shape": "--input-shape",
    "include_top": "--include-top",
    "pooling": "--pooling",
    "classes": "--classes",
    "aux_logits": "--aux-logits",
    "data_format": "--data-format",
    "dropout_rate": "--dropout-rate",
    "weights": "--weights",
    "preprocessing": "--preprocessing",
    "option": "--option",
}


def _add_feature_model_arguments(p: argparse.ArgumentParser) -> None:
    """The backbone only: --pooling is the feature pooling, the top is never built."""
    p.add_argument(
        "--input-shape",
        type=parse_shape,
        default=None,
        metavar="H,W,C",
        help="model input shape (default: free height and width, 3 channels)",
    )
    p.add_argument(
        "--data-format",
        choices=["channels_last", "channels_first"],
        default=None,
        help=DATA_FORMAT_HELP.format(what="model input"),
    )
    p.add_argument(
        "--pooling",
        type=_pooling,
        choices=["avg", "max", None],
        default="avg",
        metavar="{avg,max,none}",
        help="how the --layer feature map is reduced to one vector per image: avg, max, "
        "or none (keep the map) (default: avg)",
    )
    p.set_defaults(
        include_top=False,
        classes=_network_default("classes"),
        aux_logits=False,
        dropout_rate=_network_default("dropout_rate"),
    )


def add_inference_model_arguments(
    p: argparse.ArgumentParser, *, weights_default: str, features: bool = False, include_top: bool = True
) -> None:
    if features:
        _add_feature_model_arguments(p)
    else:
        add_model_arguments(p, include_top=include_top)
    if not any("--weights" in a.option_strings for a in p._actions):
        p.add_argument(
            "--weights",
            default=weights_default,
            help="none, a weight set name ('imagenet': Keras'; 'torchvision', 'timm': that framework's default "
            f"set of --arch; `anyshape weights` lists them) or a weights file (default: {weights_default})",
        )
    add_preprocessing_argument(p)
    add_arch_arguments(p)
    _add_engine_arguments(p)


def _add_engine_arguments(p: argparse.ArgumentParser) -> None:
    """--model FILE (a saved model instead of a built one), --engine and --precision."""
    p.add_argument(
        "--model",
        default=None,
        metavar="FILE",
        help="use a saved model instead of building one: .keras, or .onnx from anyshape quantize/export "
        "(then no flag that builds a model may be given; the file says its network, so --arch is not needed)",
    )
    p.add_argument(
        "--engine",
        choices=["auto", "onnxruntime", "openvino", "keras"],
        default="auto",
        help="auto: the engine --precision picks (ONNX Runtime or OpenVINO), else Keras (default: auto)",
    )
    p.add_argument(
        "--precision",
        choices=["auto", "fp32", "bf16", "int8"],
        default=None,
        help="default: the model's own (fp32, int8 for a file from anyshape quantize); "
        "fp32: Keras' results to float32 rounding; bf16 (OpenVINO, CPUs with "
        "avx512_bf16 or amx_bf16), int8 (a --model FILE.onnx from anyshape quantize), "
        "auto (bf16 where the CPU runs it natively, else fp32)",
    )


def add_image_run_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("paths", nargs="+", metavar="PATH", help="image files or folders (searched recursively)")
    p.add_argument(
        "--size",
        default=None,
        metavar="native|N|H,W",
        help="native: each image at its own size; N or H,W (at least the network's minimum, 75 for "
        "InceptionV3): shorter side resized (both sides for weights timm evaluates squashed), centre crop "
        "(crop_pct, interpolation and crop mode of the weights). "
        "Default: the model's size if fixed, else native",
    )
    p.add_argument(
        "--upscale", action="store_true", help="enlarge images below the network's minimum instead of refusing them"
    )
    from anyshape.engine.runs import run_images

    p.add_argument(
        "--batch-size", type=positive_int, default=library_default(run_images, "batch_size"), help="images per batch"
    )
    p.add_argument(
        "--max-pixels", type=positive_int, default=None, help="refuse larger images (default: Pillow's limit, 89 Mpx)"
    )
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bar")
    ray = p.add_argument_group("on a Ray cluster (pip install 'anyshape[ray]'; see anyshape.distributed)")
    ray.add_argument(
        "--ray",
        nargs="?",
        const="local",
        default=None,
        metavar="ADDRESS",
        help="run on Ray and write Parquet part files into the folder --out (local or s3://): "
        "--ray alone starts a local Ray; ADDRESS is auto (RAY_ADDRESS or the local cluster) or "
        "ray://host:10001 (default: no Ray)",
    )
    ray.add_argument(
        "--cpus-per-actor",
        type=positive_float,
        default=_ray_default("cpus_per_actor"),
        help="cores per Ray actor",
    )
    ray.add_argument(
        "--actors", type=positive_int, default=None, help="Ray actors (default: the cluster's CPUs / --cpus-per-actor)"
    )


def _ray_default(name: str):
    """A default of the Ray runs (`anyshape.distributed.RayJob`); the module imports Ray only when a run starts."""
    from anyshape.distributed import RayJob

    return library_default(RayJob, name)


def check_ray_flags(args) -> None:
    if args.ray is None:
        if getattr(args, "out", None) is not None and getattr(args, "top", None) is not None:
            raise ValueError("predict --out DIR needs --ray (locally, predict prints its table, json or csv on stdout)")
        if getattr(args, "resume", False) and getattr(args, "top", None) is not None:
            raise ValueError("predict --resume needs --ray and --out DIR")
        if args.actors is not None or args.cpus_per_actor != _ray_default("cpus_per_actor"):
            raise ValueError("--actors and --cpus-per-actor need --ray")
        return
    if getattr(args, "out", None) is None:
        raise ValueError("--ray needs --out DIR, the folder (local or s3://) that receives the Parquet rows")
    from anyshape.distributed import check_ray_installed

    check_ray_installed()  # before the model is built


def check_model_flags(args) -> None:
    """--model is a complete model: refuse the flags that would build another one (before any work)."""
    if getattr(args, "model", None) is None:
        return
    given = [flag for dest, flag in MODEL_FLAGS.items() if dest in getattr(args, "given", ())]
    if given:
        raise ValueError(
            f"--model {args.model} is a complete model; {', '.join(given)} would not be used with it: "
            "drop them, or drop --model to build a model from them"
        )


def inference_model(args, *, include_top: bool, pooling: str | None = None):
    """The model the flags describe: --model FILE as saved (its network says what it is; an --arch
    given must name that network), else --arch built by `anyshape.create_model` with the flags'
    arguments and each --option. Built or loaded with Ctrl-C held back (`interrupts_held`: TensorFlow
    can crash while it creates a model's variables)."""
    from anyshape.interrupts import interrupts_held

    with interrupts_held():
        return _inference_model(args, include_top=include_top, pooling=pooling)


def _inference_model(args, *, include_top: bool, pooling: str | None = None):
    from anyshape import engine

    check_model_flags(args)
    if args.model is not None:
        return engine.load_or_build(args.model, arch=args.arch if "arch" in getattr(args, "given", ()) else None)
    weights = None if str(args.weights).lower() == "none" else args.weights
    kwargs = dict(
        weights=weights,
        include_top=include_top,
        input_shape=args.input_shape,
        data_format=args.data_format,
        dropout_rate=args.dropout_rate,
        pooling=pooling,
    )
    if include_top:
        kwargs.update(classes=args.classes)
    if args.preprocessing is not None:
        kwargs.update(preprocessing=args.preprocessing)
    kwargs.update(network_options(args))
    return engine.load_or_build(None, arch=args.arch, size=getattr(args, "size", None), **kwargs)


def check_size_flag(args, *, arch=None, **options) -> None:
    """--size is checked before the model is built: below the minimum of the network (`arch`,
    default InceptionV3's 75 px, with its `options`) no engine can run it."""
    from anyshape.engine.runs import check_size

    if args.size is not None:
        check_size(args.size, arch=arch, **options)


# The one table of the library's parameter names that the CLI spells otherwise than `--name`
# with dashes (`anyshape.errors`: a library message names parameters, the CLI renders them here).
FLAGS = {
    "model_path": "--model",
    "learning_rate": "--lr",
    "arch_options": "--option",
    "fmt": "--format",
    "calibrate": "--calibrate",
}


def flag_of(parameter: str) -> str:
    """The flag of a library parameter: FLAGS, else `--` and the name with dashes."""
    return FLAGS.get(parameter, "--" + parameter.replace("_", "-"))


def cli_message(error) -> str:
    """An error (or a reason string a run returned) in the CLI's words: the parameters its
    `anyshape.errors.Message` names, spelled as flags."""
    from anyshape.errors import in_words

    return in_words(error, flag_of)
