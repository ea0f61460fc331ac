"""The network a run trains: built through `anyshape.create_model` from its record (its options
checked first), compiled with the run's optimizer and loss, recorded in the run's files."""

from __future__ import annotations

import dataclasses
from typing import Any

from anyshape.errors import ParameterError, Spelled
from anyshape.training.config import _BUILD_ARGS, check_freeze
from anyshape.training.run_folder import TrainerState

__all__ = ["NetworkBuilder"]


def _saved_network(model) -> tuple[str, Any]:
    """The network and Config of the model model.keras holds: the main output only (no aux head)."""
    from anyshape.archs import model_config

    arch, config = model_config(model)  # type: ignore[misc]  # built by create_model
    if getattr(config, "aux_logits", False):
        config = config.replace(aux_logits=False)
    return arch.name, config


def _network_record(model) -> dict:
    """The network a run trains, for report.json and checkpoint.json: its name and its Config."""
    from anyshape.archs import model_config

    arch, config = model_config(model)  # type: ignore[misc]
    return {"name": arch.name, "config": config.to_dict()}


class NetworkBuilder(TrainerState):
    """`Trainer`'s part that builds, compiles and saves the network."""

    def _check_network(self) -> None:
        """The network's options and the freeze options, checked against its record before any work."""
        c, a = self.config, self.arch
        for spec, _ in c.stage_list():
            check_freeze(spec, a)
        known = {f.name for f in dataclasses.fields(a.config_class)}
        for key in c.arch_options or {}:
            if key in _BUILD_ARGS or key in ("dropout_rate", "aux_logits") or key not in known:
                own = sorted(known - set(_BUILD_ARGS) - {"dropout_rate", "aux_logits"})
                why = "training sets it" if key in _BUILD_ARGS else "use its own option" if key in known else ""
                raise ParameterError(
                    "{arch_options=@key}: {why}; {name}'s own options are {own}",
                    key=Spelled(f"{key}=...", f"{{{key!r}: ...}}"),
                    why=why or f"{a.name} has no build argument {key!r}",
                    name=a.name,
                    own=", ".join(own) or "none",
                )
        if c.aux_logits and "aux_logits" not in known:
            raise ParameterError("{aux_logits=True}: {name} has no auxiliary classifier (InceptionV3 has)", name=a.name)
        problems = a.config(**self._build_options()).problems()
        if problems:
            raise ParameterError(
                "{arch=*} cannot be built so: {problems}",
                arch=Spelled.python_only(a.name),
                problems="; ".join(problems),
            )

    def _build_options(self) -> dict:
        """The network's Config values a run sets: its own options, dropout and the aux head when asked."""
        c = self.config
        options = dict(c.arch_options or {})
        if c.dropout_rate:
            options["dropout_rate"] = c.dropout_rate
        if c.aux_logits:
            options["aux_logits"] = True
        return options

    def _default_size(self) -> tuple[int, int]:
        """Digits (8x8 images): the network's smallest size, at least 32 (75 for InceptionV3);
        other data: the network's default size (299 for InceptionV3)."""
        if self.config.data != "digits":
            return (self.arch.default_size, self.arch.default_size)
        from anyshape.shapes import explain

        # the minimum of a fixed size (the model is built at one): VGG's top there is Keras'
        # Flatten top, from 32 px, where its free-size (fully-convolutional) top needs 224
        h, w = explain((32, 32, 1), arch=self.arch, include_top=True, **self._build_options()).min_hw
        return (max(32, h or 32), max(32, w or 32))

    def _build_model(self, weights):
        """The network through `anyshape.create_model`, with the run's classes and options."""
        from anyshape.factory import create_model

        c = self.config
        options = self._build_options()
        if weights is not None and c.channel_adapt:
            options["channel_adapt"] = c.channel_adapt
        preprocessing = c.preprocessing if weights is not None else None
        if weights is None and c.weights is not None:
            # resuming a run that started from pretrained weights: the same network variant as the
            # weight set built (for InceptionV3: BatchNorm gamma, pool semantics), values from the checkpoint
            from anyshape.weights import resolve

            known = {f.name for f in dataclasses.fields(self.arch.config_class)}
            overrides = resolve(c.weights, c.preprocessing, arch=self.arch.name).build_overrides
            options = {**{k: v for k, v in overrides.items() if k in known}, **options}
        return create_model(
            self.arch.name,
            weights=weights,
            preprocessing=preprocessing,
            input_shape=self.input_shape,
            include_top=True,
            classes=self.dataset.num_classes,
            classifier_activation="softmax",
            data_format="channels_last",
            **options,
        )

    def _compile(self, model, steps_per_epoch: int, stage_epochs: int) -> None:
        import keras

        c = self.config
        total = max(1, steps_per_epoch * stage_epochs)
        warmup = int(round(c.warmup_epochs * steps_per_epoch))
        if c.lr_schedule == "cosine":
            lr = keras.optimizers.schedules.CosineDecay(
                c.learning_rate if not warmup else 0.0,
                decay_steps=max(1, total - warmup),
                alpha=0.0,
                warmup_target=c.learning_rate if warmup else None,
                warmup_steps=warmup,
            )
        elif c.lr_schedule == "constant":
            lr = c.learning_rate
        else:
            raise ValueError(f"lr_schedule must be 'cosine' or 'constant', got {c.lr_schedule!r}")
        if c.optimizer == "adam":
            opt = keras.optimizers.Adam(lr)
        elif c.optimizer == "adamw":
            opt = keras.optimizers.AdamW(lr, weight_decay=0.004 if c.weight_decay is None else c.weight_decay)
        elif c.optimizer == "sgd":
            opt = keras.optimizers.SGD(lr, momentum=0.9, nesterov=True)
        else:
            raise ValueError(f"optimizer must be adam, adamw or sgd, got {c.optimizer!r}")
        if c.weight_decay and c.optimizer != "adamw":
            opt.weight_decay = c.weight_decay
        loss = keras.losses.CategoricalCrossentropy(label_smoothing=c.label_smoothing)
        acc = keras.metrics.CategoricalAccuracy(name="accuracy")
        if c.aux_logits:
            kwargs = dict(
                loss=[loss, keras.losses.CategoricalCrossentropy(label_smoothing=c.label_smoothing)],
                loss_weights=[1.0, c.aux_weight],
                metrics=[[acc], []],
            )
        else:
            kwargs = dict(loss=loss, metrics=[acc])
        model.compile(
            optimizer=opt,
            jit_compile=c.jit_compile,
            steps_per_execution=c.steps_per_execution,
            run_eagerly=c.run_eagerly,
            **kwargs,
        )
        opt.build(model.trainable_variables)

    def _save_model(self, model, data_config):
        """model.keras: the main output only, with the run's class names and preprocessing inside."""
        import keras

        from anyshape.model_info import ModelInfo, save_model

        c = self.config
        # the main output, uncompiled: model.keras is for predicting, exporting and fine-tuning, and
        # the optimizer state (twice the weights' size) is the checkpoints' job
        main = keras.Model(model.inputs, model.outputs[0], name=model.name)
        model_path = self.run_dir / "model.keras"
        trained = dataclasses.replace(data_config, input_size=tuple(self.input_shape[:2]))  # not the weights' size
        arch, config = _saved_network(model)
        main.anyshape_arch, main.anyshape_config = arch, config
        info = ModelInfo(trained, tuple(self.dataset.class_names), c.weights, architecture=arch, config=config)
        save_model(main, model_path, info)
        return main, model_path
