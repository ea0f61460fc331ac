"""The layer vocabulary (`anyshape.archs.ops.Ops`) as Keras 3 layers, and the one model builder.

Every layer is a built-in Keras layer, so a saved model of any network loads with plain
`keras.saving.load_model` wherever Keras is installed, without anyshape. That matters because Keras
imports the module of a custom class on its own only for its own packages: `_retrieve_class_or_fn`
in keras/src/saving/serialization_lib.py imports a class's module when its package is one of
keras, keras_hub, keras_cv, keras_nlp, and for anything else needs the class registered in this
process first. keras_hub's layers load without an import because of that list (their
`keras_hub_export` decorator, keras_hub/src/api_export.py, only registers them under
package="keras_hub"); a third-party package cannot be on it. So ConvNeXt's layer scale (x * gamma,
one learned value per channel) is Keras' `EinsumDense("abcd,d->abcd")`, whose one weight has
keras.applications' LayerScale layout (shape (channels,)). `LayerScale`, the custom layer models
built before used, stays registered (package "anyshape") so that their files still load through
`anyshape.model_info.load_model`, which imports this module first.

All layers compute in channels_last. A channels_first model transposes its input to NHWC once and
its 4-D outputs back to NCHW (`build`): TensorFlow's CPU kernels have no NCHW convolution (which is
why keras.applications' channels_first models build and then fail at predict there), and DenseNet,
NASNet and ConvNeXt refuse channels_first in keras.applications for that reason. Here every
backend runs every network in either format, with equal outputs.
"""

from __future__ import annotations

import keras
from keras import layers

from anyshape.archs.ops import Ops

__all__ = ["KerasOps", "LayerScale", "build"]

_CL = "channels_last"


@keras.saving.register_keras_serializable(package="anyshape")
class LayerScale(layers.Layer):
    """x * gamma with one learned gamma per channel (ConvNeXt; Touvron et al. 2021, "CaiT").

    Kept for files saved before ConvNeXt used Keras' EinsumDense for it (see the module docstring):
    new models never contain it. The same weight (shape (channels,)) as keras.applications'
    ConvNeXt LayerScale.
    """

    def __init__(self, init_values: float = 1e-6, **kwargs):
        super().__init__(**kwargs)
        self.init_values = init_values

    def build(self, input_shape):
        self.gamma = self.add_weight(
            name="gamma",
            shape=(input_shape[-1],),
            initializer=keras.initializers.Constant(self.init_values),
            trainable=True,
        )

    def call(self, x):
        return x * keras.ops.cast(self.gamma, x.dtype)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "init_values": self.init_values}


class KerasOps(Ops):
    """Creates the Keras layer for each call and applies it."""

    def _make(self, op: str, inputs: list, name: str, **a):
        if op == "layer_scale":  # EinsumDense states its output shape: the input's (a fixed size stays fixed)
            a["shape"] = tuple(inputs[0].shape[1:])
        layer = getattr(self, f"_{op}")(name, **a)
        return layer(inputs if op in _MERGES else inputs[0])

    @staticmethod
    def _conv(name, *, filters, kernel, strides, padding, use_bias, activation, dilation, groups):
        return layers.Conv2D(
            filters,
            kernel,
            strides=strides,
            padding=padding,
            use_bias=use_bias,
            activation=activation,
            dilation_rate=dilation,
            groups=groups,
            data_format=_CL,
            name=name,
        )

    @staticmethod
    def _depthwise(name, *, kernel, strides, padding, use_bias, depth_multiplier, activation):
        return layers.DepthwiseConv2D(
            kernel,
            strides=strides,
            padding=padding,
            use_bias=use_bias,
            depth_multiplier=depth_multiplier,
            activation=activation,
            data_format=_CL,
            name=name,
        )

    @staticmethod
    def _separable(name, *, filters, kernel, strides, padding, use_bias):
        return layers.SeparableConv2D(
            filters, kernel, strides=strides, padding=padding, use_bias=use_bias, data_format=_CL, name=name
        )

    @staticmethod
    def _bn(name, *, epsilon, momentum, scale, center):
        return layers.BatchNormalization(
            axis=-1, epsilon=epsilon, momentum=momentum, scale=scale, center=center, name=name
        )

    @staticmethod
    def _layer_norm(name, *, epsilon):
        return layers.LayerNormalization(axis=-1, epsilon=epsilon, name=name)

    @staticmethod
    def _normalization(name, *, mean, variance):
        return layers.Normalization(axis=-1, mean=mean, variance=variance, name=name)

    @staticmethod
    def _rescaling(name, *, scale, offset):
        if isinstance(scale, (list, tuple)):
            # shaped (1, 1, C): Keras' Rescaling reshapes a 1-D scale to (C, 1, 1) whenever
            # keras.config's image_data_format is channels_first, but this graph is channels_last
            scale = [[list(scale)]]
        return layers.Rescaling(scale=scale, offset=offset, name=name)

    @staticmethod
    def _layer_scale(name, *, init_values, shape):
        # x * gamma as a built-in layer (a file loads without anyshape): the kernel is gamma, (C,);
        # the output shape is the input's, so that a model built at a fixed size keeps its static
        # shapes after it (with (None, None, C) every later layer of a fixed-size model was free)
        return layers.EinsumDense(
            "abcd,d->abcd",
            output_shape=shape,
            kernel_initializer=keras.initializers.Constant(init_values),
            name=name,
        )

    @staticmethod
    def _activation(name, *, kind):
        return layers.Activation(kind, name=name)

    @staticmethod
    def _relu(name, *, max_value):
        return layers.ReLU(max_value=max_value, name=name)

    @staticmethod
    def _pad(name, *, padding):
        return layers.ZeroPadding2D(padding, data_format=_CL, name=name)

    @staticmethod
    def _crop(name, *, cropping):
        return layers.Cropping2D(cropping, data_format=_CL, name=name)

    @staticmethod
    def _max_pool(name, *, pool, strides, padding):
        return layers.MaxPooling2D(pool, strides=strides, padding=padding, data_format=_CL, name=name)

    @staticmethod
    def _avg_pool(name, *, pool, strides, padding):
        return layers.AveragePooling2D(pool, strides=strides, padding=padding, data_format=_CL, name=name)

    @staticmethod
    def _global_pool(name, *, kind, keepdims):
        cls = layers.GlobalAveragePooling2D if kind == "avg" else layers.GlobalMaxPooling2D
        return cls(data_format=_CL, keepdims=keepdims, name=name)

    @staticmethod
    def _add(name):
        return layers.Add(name=name)

    @staticmethod
    def _multiply(name):
        return layers.Multiply(name=name)

    @staticmethod
    def _average(name):
        return layers.Average(name=name)

    @staticmethod
    def _concat(name):
        return layers.Concatenate(axis=-1, name=name)

    @staticmethod
    def _dense(name, *, units, activation, use_bias):
        return layers.Dense(units, activation=activation, use_bias=use_bias, name=name)

    @staticmethod
    def _dropout(name, *, rate, noise_shape):
        return layers.Dropout(rate, noise_shape=noise_shape, name=name)

    @staticmethod
    def _flatten(name):
        return layers.Flatten(data_format=_CL, name=name)

    @staticmethod
    def _reshape(name, *, target):
        return layers.Reshape(target, name=name)


_MERGES = frozenset({"add", "multiply", "average", "concat"})


def _inputs(input_tensor, input_shape):
    """(the model's inputs, the tensor the network reads)."""
    if input_tensor is None:
        x = layers.Input(shape=input_shape, name="input_layer")
        return x, x
    if keras.backend.is_keras_tensor(input_tensor):
        return keras.utils.get_source_inputs(input_tensor), input_tensor
    x = layers.Input(tensor=input_tensor, shape=input_shape, name="input_layer")
    return x, x


def build(arch, config, input_tensor=None) -> keras.Model:
    """The Keras model of `arch` built with `config` (whose input_shape is resolved). No checks and
    no weights: `anyshape.create_model` explains the shape first and loads weights after."""
    inputs, x = _inputs(input_tensor, config.input_shape)
    channels_first = config.data_format == "channels_first"
    if channels_first:
        x = layers.Permute((2, 3, 1), name="to_channels_last")(x)
    outputs = arch.network(KerasOps(), config, x)
    if channels_first and not isinstance(outputs, (list, tuple)) and len(outputs.shape) == 4:
        outputs = layers.Permute((3, 1, 2), name="to_channels_first")(outputs)
    return keras.Model(inputs, outputs, name=config.name or arch.name)
