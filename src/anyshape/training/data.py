"""The data of a run: the dataset read at the network's size, its preprocessing (the weights', or
from scratch the network's own) and the tf.data pipelines (augmentation, scaling, batches)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from anyshape.errors import Message
from anyshape.model_info import RUN_INFO_FILE
from anyshape.training.network import NetworkBuilder
from anyshape.training.run_folder import _write_json

__all__ = ["DataPipeline"]


@dataclass
class _Pipelines:
    """The tf.data pipelines of a run."""

    train: Any
    steps_per_epoch: int
    recalibration: Any  # training images without augmentation or labels, for BatchNorm statistics
    val: Any | None


class DataPipeline(NetworkBuilder):
    """`Trainer`'s part that reads the data and feeds it."""

    def _load_data(self):
        from anyshape.datasets import load_dataset

        c = self.config
        shape = c.input_shape or self._default_size()
        if self.dataset is None:
            t = time.time()
            self.dataset = load_dataset(
                c.data,
                shape,
                val_split=c.val_split,
                test_split=c.test_split,
                seed=c.seed,
                skip_bad_images=c.skip_bad_images,
            )
            self.log(f"data: {self.dataset.summary()} (read in {time.time() - t:.1f} s)")
        for note in self.dataset.notes:
            self.log(Message("data: {note}", note=note))
        ds = self.dataset
        self.input_shape = tuple(ds.train.images.shape[1:3]) + (ds.channels,)
        if len(ds.train) < 1:
            raise ValueError("no training images")

    def _data_config(self):
        """How the run feeds its model: the weights' scaling (from scratch, the network's own
        preprocessing, "tf" for InceptionV3), training's resize."""
        from anyshape.data_config import CAFFE_MEAN, DataConfig, resolve_data_config

        c = self.config
        if c.weights is None and c.preprocessing is None and self.arch.preprocessing != "tf":
            mode = self.arch.preprocessing
            if mode == "torch":
                data = resolve_data_config(None, channels=self.input_shape[2], preprocessing="torch")
            else:
                data = DataConfig(mode=mode, mean=CAFFE_MEAN if mode == "caffe" else None)
                data = data.for_channels(self.input_shape[2])
        else:
            source = c.weights
            if isinstance(source, str) or hasattr(source, "__fspath__"):
                from anyshape.weights import resolve

                # "imagenet" means this network's own set (resolve's arch=), not InceptionV3's
                source = resolve(source, c.preprocessing, arch=self.arch.name)
            data = resolve_data_config(source, channels=self.input_shape[2], preprocessing=c.preprocessing)
        return data.for_training()

    def _reverses_channels(self) -> bool:
        """Mode caffe on 3 channels: RGB -> BGR before its mean (keras.applications.imagenet_utils)."""
        return self.preprocess["mode"] == "caffe" and self.input_shape[2] == 3

    def _scale_offset(self):
        """preprocess_input as x * scale + offset per channel (it is affine), for the tf.data map,
        after the channels are reversed where mode caffe reverses them (`_reverses_channels`): the
        probes are constant images, which the reversal leaves as they are."""
        from anyshape.preprocess import preprocess_input

        c = self.input_shape[2]
        zero = preprocess_input(np.zeros((1, 1, 1, c), np.float32), "channels_last", **self.preprocess)
        one = preprocess_input(np.ones((1, 1, 1, c), np.float32), "channels_last", **self.preprocess)
        return (one - zero).reshape(c).astype(np.float32), zero.reshape(c).astype(np.float32)

    def _augmenter(self):
        import keras

        parts = [p.strip() for p in self.config.augment.split(",") if p.strip() and p.strip() != "none"]
        unknown = set(parts) - {"crop", "flip"}
        if unknown:
            raise ValueError(f"augment: unknown {sorted(unknown)}; use none, or a comma list of crop, flip")
        layers = []
        if "crop" in parts:
            # Random resized crop from Keras preprocessing layers (Keras 3 has no RandomResizedCrop):
            # zoom in by up to 30% on each axis independently (area 49-100%, aspect 0.7-1.4),
            # then shift by up to 10% with reflected borders.
            layers.append(keras.layers.RandomZoom((-0.3, 0.0), (-0.3, 0.0), fill_mode="reflect", seed=self.config.seed))
            layers.append(keras.layers.RandomTranslation(0.1, 0.1, fill_mode="reflect", seed=self.config.seed + 1))
        if "flip" in parts:
            layers.append(keras.layers.RandomFlip("horizontal", seed=self.config.seed + 2))
        if not layers:
            return None

        def augment(x):
            # each layer called on its own: a Keras preprocessing layer runs on TensorFlow inside
            # tf.data whatever the backend, a keras.Sequential of them does not (on JAX it tries
            # to turn the symbolic tf.Tensor into an array)
            for layer in layers:
                x = layer(x, training=True)
            return x

        return augment

    def _pipeline(self, split, *, training: bool, labels: bool = True):
        import tensorflow as tf

        c = self.config
        scale, offset = self._scale_offset()
        n_classes = self.dataset.num_classes
        reverse = self._reverses_channels()
        aug = self._augmenter() if training else None
        ds = tf.data.Dataset.from_tensor_slices((split.images, split.labels))
        if training:
            ds = ds.shuffle(len(split), seed=c.seed, reshuffle_each_iteration=True)
        # a last batch of a few images gives noisy BatchNorm statistics: training drops it
        ds = ds.batch(c.batch_size, drop_remainder=training and len(split) >= c.batch_size)

        def prepare(x, y):
            x = tf.cast(x, tf.float32)
            if aug is not None:
                x = aug(x)
            if reverse:
                x = x[..., ::-1]
            x = x * scale + offset
            if not labels:
                return x
            y = tf.one_hot(y, n_classes)
            return (x, (y, y)) if c.aux_logits else (x, y)

        ds = ds.map(prepare, num_parallel_calls=tf.data.AUTOTUNE)
        return ds.prefetch(2)

    def _prepare_data(self):
        """Load the data, check it against a checkpoint, write classes.json; the run's DataConfig."""
        self._load_data()
        ds = self.dataset
        if self.state is not None and self.state.get("class_names") != ds.class_names:
            raise ValueError(
                f"the data's classes {ds.class_names} differ from the checkpoint's {self.state.get('class_names')}"
            )
        data_config = self._data_config()
        self.preprocess = data_config.preprocess_kwargs()
        run_info = {
            "classes": ds.class_names,
            "input_shape": list(self.input_shape),
            "data_format": "channels_last",
            "preprocess": self.preprocess,
            "resize": data_config.resize_policy(),
            "output": "softmax",
            "model": "model.keras",
        }
        _write_json(self.run_dir / RUN_INFO_FILE, run_info)
        return data_config

    def _pipelines(self) -> _Pipelines:
        ds = self.dataset
        train = self._pipeline(ds.train, training=True)
        return _Pipelines(
            train=train,
            steps_per_epoch=int(train.cardinality()),
            recalibration=self._pipeline(ds.train, training=False, labels=False),
            val=self._pipeline(ds.val, training=False) if ds.val is not None and len(ds.val) else None,
        )
