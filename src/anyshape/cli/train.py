"""`anyshape train`: the flags of `anyshape.training.TrainConfig`, and a run folder as the result."""

from __future__ import annotations

import sys

from anyshape.cli.arg_types import fraction, parse_channel_adapt, parse_shape, positive_float, positive_int
from anyshape.cli.options import (
    add_arch_arguments,
    add_preprocessing_argument,
    cli_message,
    library_default,
    typed_options,
)


def _default(name: str):
    """TrainConfig's default for `name`: the flags state none of their own."""
    from anyshape.training.config import TrainConfig

    return library_default(TrainConfig, name)


def _add_train(sub) -> None:
    p = sub.add_parser(
        "train",
        help="fine-tune a network (InceptionV3 by default) on a folder of images (one subfolder per class) or 'digits'",
        description="Train a registered network (--arch; InceptionV3 by default) at any input shape; "
        "writes a run folder with model.keras, "
        "classes.json and report.json. BatchNorm statistics are recalibrated on the "
        "training images so that evaluation matches training.",
    )
    p.add_argument(
        "data",
        help="folder with one subfolder of images per class (or train/ and test/ "
        "subfolders of such), or 'digits' (scikit-learn's handwritten digits)",
    )
    p.add_argument("--output", "-o", default=_default("output"), help="run folder (default: runs/<data>-<time>)")
    p.add_argument(
        "--resume",
        action="store_true",
        help="continue the run in --output from its last checkpoint, with the options stored there",
    )
    # --arch NAME and --option KEY=VALUE as explain and summary declare them; the default None
    # means the network anyshape builds by default, and that a --resume was given no network
    add_arch_arguments(p)
    p.set_defaults(arch=_default("arch"))
    p.add_argument(
        "--input-shape",
        type=parse_shape,
        default=_default("input_shape"),
        metavar="H,W[,C]",
        help="training size; channels from the data unless given (default: for digits the network's "
        "smallest size, at least 32: 75,75 for InceptionV3; otherwise its default size: 299,299 for InceptionV3)",
    )
    p.add_argument(
        "--weights",
        default=_default("weights"),
        help="none, a weight set name (imagenet, ...) or a weights file (default: none)",
    )
    add_preprocessing_argument(p)
    p.add_argument(
        "--channel-adapt",
        type=parse_channel_adapt,
        default=_default("channel_adapt"),
        metavar="RULE",
        help="how pretrained first-conv weights fit another channel count: sum, mean, repeat, zero, random, or a mapping like 2,1,0",
    )
    p.add_argument(
        "--freeze",
        default=_default("freeze"),
        help="none | backbone (all but the classifier) | up-to-BLOCK, BLOCK one of the network's blocks "
        "(another is refused with the list; InceptionV3: up-to-mixedN, stem and mixed0..mixedN frozen) "
        "(default: none)",
    )
    _add_schedule_arguments(p)
    _add_data_arguments(p)
    _add_run_arguments(p)


def _add_schedule_arguments(p) -> None:
    """What the optimisation does: stages, epochs, batch size, optimizer and its schedule, loss."""
    p.add_argument(
        "--stages",
        default=None,
        metavar="FREEZE:EPOCHS,...",
        help="staged unfreezing, e.g. backbone:2,up-to-mixed7:2,none:1 (replaces --freeze/--epochs)",
    )
    p.add_argument("--epochs", type=positive_int, default=_default("epochs"), help="training epochs")
    p.add_argument("--batch-size", type=positive_int, default=_default("batch_size"), help="images per training step")
    p.add_argument("--optimizer", choices=["adam", "adamw", "sgd"], default=_default("optimizer"), help="optimizer")
    p.add_argument("--lr", type=positive_float, default=_default("learning_rate"), help="peak learning rate")
    p.add_argument(
        "--lr-schedule", choices=["cosine", "constant"], default=_default("lr_schedule"), help="learning-rate schedule"
    )
    p.add_argument("--warmup-epochs", type=float, default=_default("warmup_epochs"), help="epochs of linear warm-up")
    p.add_argument(
        "--weight-decay",
        type=float,
        default=_default("weight_decay"),
        help="weight decay (default: 0.004 for adamw, Keras' default, and 0 for adam and sgd; "
        "0 means none for every optimizer)",
    )
    p.add_argument(
        "--label-smoothing", type=float, default=_default("label_smoothing"), help="label smoothing of the loss"
    )
    p.add_argument(
        "--dropout-rate", type=fraction, default=_default("dropout_rate"), help="dropout before the classifier"
    )
    p.add_argument("--aux-logits", action="store_true", help="train the auxiliary classifier too (needs H, W >= 299)")
    p.add_argument("--aux-weight", type=float, default=_default("aux_weight"), help="weight of the auxiliary loss")


def _add_data_arguments(p) -> None:
    """How the images are augmented and split."""
    p.add_argument(
        "--augment",
        default=_default("augment"),
        help="auto (none for digits, crop,flip for folders) | none | comma list of crop, flip",
    )
    p.add_argument(
        "--val-split", type=float, default=_default("val_split"), help="fraction of the images held out for validation"
    )
    p.add_argument(
        "--test-split",
        type=float,
        default=_default("test_split"),
        help="fraction held out for the test accuracy (when the folder has no test/ subfolder)",
    )


def _add_run_arguments(p) -> None:
    """How the run goes: early stopping, BatchNorm recalibration, bad images, compilation, seed."""
    p.add_argument(
        "--early-stopping",
        type=int,
        default=_default("early_stopping"),
        metavar="PATIENCE",
        help="stop after PATIENCE epochs without a better validation accuracy",
    )
    p.add_argument(
        "--no-recalibrate", action="store_true", help="keep BatchNorm moving statistics as training left them"
    )
    p.add_argument("--skip-bad-images", action="store_true", help="train without unreadable images instead of stopping")
    p.add_argument("--jit-compile", action="store_true", help="XLA-compile the train step (slow to compile on CPU)")
    p.add_argument(
        "--steps-per-execution",
        type=positive_int,
        default=_default("steps_per_execution"),
        help="train steps per compiled call",
    )
    p.add_argument(
        "--run-eagerly",
        action="store_true",
        help="run each step op by op, not compiled (Keras' run_eagerly): slower per step, no tracing; "
        "for a few steps or to debug",
    )
    p.add_argument(
        "--seed", type=int, default=_default("seed"), help="random seed (data split, initial weights, augmentation)"
    )
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bar")


def train_options(args) -> dict:
    """The keyword arguments of `anyshape.training.train` the flags give (a flag left out gives
    TrainConfig's own default, which is what the parser holds)."""
    from anyshape.archs import DEFAULT_ARCH
    from anyshape.training import parse_stages

    return dict(
        output=args.output,
        resume=args.resume,
        arch=args.arch,
        # typed by --arch's Config (a resume without --arch: InceptionV3's, the default network;
        # a key it has not is left as given, for train's own check)
        arch_options=typed_options(args.arch or DEFAULT_ARCH, args.option) if args.option else None,
        input_shape=args.input_shape,
        weights=args.weights,
        channel_adapt=args.channel_adapt,
        preprocessing=args.preprocessing,
        freeze=args.freeze,
        stages=parse_stages(args.stages) if args.stages else None,
        epochs=args.epochs,
        batch_size=args.batch_size,
        optimizer=args.optimizer,
        learning_rate=args.lr,
        lr_schedule=args.lr_schedule,
        warmup_epochs=args.warmup_epochs,
        weight_decay=args.weight_decay,
        label_smoothing=args.label_smoothing,
        dropout_rate=args.dropout_rate,
        aux_logits=args.aux_logits,
        aux_weight=args.aux_weight,
        augment=args.augment,
        val_split=args.val_split,
        test_split=args.test_split,
        early_stopping=args.early_stopping,
        recalibrate=not args.no_recalibrate,
        skip_bad_images=args.skip_bad_images,
        jit_compile=args.jit_compile,
        steps_per_execution=args.steps_per_execution,
        run_eagerly=args.run_eagerly,
        seed=args.seed,
    )


def _run_train(args) -> int:
    from anyshape.training import TrainingInterrupted, train

    try:
        result = train(
            args.data,
            verbose=0
            if args.quiet
            else (1 if sys.stdout.isatty() else 2),  # bar on a terminal, a line per epoch in a log
            log=lambda message: print(cli_message(message), file=sys.stderr, flush=True),
            **train_options(args),
        )
    except TrainingInterrupted as e:
        # the line printed on Ctrl-C says what was kept (_interrupted_line)
        e.kept = (  # type: ignore[attr-defined]
            f"the checkpoint after epoch {e.epoch} is kept in {e.run_dir}: run `anyshape train {args.data} "
            f"--output {e.run_dir} --resume` to continue"
            if e.run_dir
            else "no epoch had finished, so nothing was kept (the new run folder was removed)"
        )
        raise
    acc = result.test_accuracy
    print(f"run folder: {result.run_dir}")
    print(f"test accuracy: {acc:.4f}" if acc is not None else "test accuracy: (no test images)")
    return 0


# verb: (declare its arguments, run it), for anyshape.cli.VERBS
VERBS = {
    "train": (_add_train, _run_train),
}
