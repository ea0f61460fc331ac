"""`anyshape convert` and `anyshape weights`: weight files between formats, and the published sets."""

from __future__ import annotations

from anyshape.cli.arg_types import parse_channel_adapt, parse_shape
from anyshape.cli.options import add_arch_arguments, add_preprocessing_argument, network_options


def _add_convert(sub) -> None:
    p = sub.add_parser(
        "convert",
        help="convert InceptionV3's torchvision/timm/Keras weights, or a Keras file or PyTorch twin's state dict of any network (--arch), to a Keras file",
        description="Convert a weight set (registry name or file: .pth, .pt, .safetensors, Keras .h5) "
        "into a Keras .weights.h5 or .keras file, written atomically, with the weight "
        "set's preprocessing metadata; prints a parity report (max abs logit difference, "
        "top-5 agreement) against the source framework when it is installed. With --arch NAME, "
        "a Keras file of that network (Keras' published .h5 with or without the top, a .weights.h5 "
        "or .keras) at any --input-shape and channel count, compared with keras.applications' "
        "model on the same file; or a state dict of its torchvision/timm twin (ResNet, DenseNet, VGG, "
        "MobileNetV2, InceptionResNetV2, EfficientNet B0-B7, MobileNetV3, ConvNeXt), compared with the twin's torch model.",
    )
    p.add_argument("src", metavar="SRC", help="a registry name (see `anyshape weights`) or a weights file")
    p.add_argument("-o", "--output", required=True, metavar="DST", help="output file: *.weights.h5 or *.keras")
    p.add_argument(
        "--source",
        choices=["torchvision", "timm", "keras"],
        default=None,
        help="framework the weights come from (default: the registry's, else torchvision for state dicts)",
    )
    p.add_argument(
        "--input-shape",
        type=parse_shape,
        default=None,
        metavar="H,W,C",
        help="model input shape (default none,none,3; matters for .keras only; C != 3 adapts the first conv)",
    )
    p.add_argument(
        "--no-aux-logits",
        dest="aux_logits",
        action="store_false",
        default=None,
        help="drop the auxiliary classifier even if the source has one",
    )
    p.add_argument(
        "--channel-adapt",
        type=parse_channel_adapt,
        default=None,
        metavar="RULE",
        help="first-conv rule for C != 3: sum, mean, repeat, zero, random, or a mapping like 2,1,0 or 0,1,2,none",
    )
    add_preprocessing_argument(p)
    p.add_argument("--force", action="store_true", help="overwrite DST if it exists")
    p.add_argument(
        "--no-parity", dest="parity", action="store_false", help="skip the comparison with the source framework"
    )
    add_arch_arguments(p)


def _run_convert(args) -> int:
    from anyshape.archs import DEFAULT_ARCH
    from anyshape.weights.convert import convert  # it imports torch/torchvision before Keras itself

    network = {}
    own = network_options(args, ())
    if args.arch != DEFAULT_ARCH or own:
        network = dict(arch=args.arch, **own)  # the network's own options, for weights.convert
    result = convert(
        args.src,
        args.output,
        source=args.source,
        input_shape=args.input_shape,
        aux_logits=args.aux_logits,
        force=args.force,
        parity=args.parity,
        channel_adapt=args.channel_adapt,
        preprocessing=args.preprocessing,
        **network,
    )
    print(result)
    return 0


def _add_weights(sub) -> None:
    sub.add_parser(
        "weights",
        help="list the registered weight sets",
        description="List the weight sets anyshape knows (InceptionV3's, Keras' for every network, and the torchvision "
        "and timm twins'): name, source, preprocessing, crop, interpolation, aux head, published top-1.",
    )


def _run_weights(args) -> int:
    from anyshape.weights import weight_sets

    sets = weight_sets()
    width = max(len("name"), *(len(ws.name) for ws in sets))  # the longest name sets the column
    print(f"{'name':<{width}} {'source':<12} {'preprocessing':<22} {'crop':>6} {'interp':<9} {'aux':<4} {'top-1':>6}")
    for ws in sets:
        prep = {"tf": "[-1, 1]", "torch": "ImageNet mean/std", "caffe": "caffe (BGR - mean)"}.get(ws.mode, "raw 0..255")
        top1 = f"{ws.top1:.1f}" if ws.top1 else "-"
        print(
            f"{ws.name:<{width}} {ws.source:<12} {prep:<22} {ws.crop_pct:>6.3f} {ws.interpolation:<9} "
            f"{'yes' if ws.has_aux else 'no':<4} {top1:>6}"
        )
    return 0


# verb: (declare its arguments, run it), for anyshape.cli.VERBS
VERBS = {
    "convert": (_add_convert, _run_convert),
    "weights": (_add_weights, _run_weights),
}
