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

import contextlib

import keras
from keras import layers
from keras.src.models.functional import Functional

from anyshape.archs.ops import Ops

__all__ = ["KerasOps", "LayerScale", "SizeCheckedModel", "build"]

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


def _image_shape(data) -> tuple | None:
    """The shape of the image batches `data` holds where it is known without reading a batch: an
    array or tensor; the first item of a tuple or list ((x, y), a one-input list) or of a one-key
    dict; a tf.data.Dataset's `element_spec`. None otherwise (a generator, a PyDataset, a loader)."""
    for _ in range(4):
        spec = getattr(data, "element_spec", None)
        if spec is not None:
            data = spec
        elif isinstance(data, (tuple, list)) and data:
            data = data[0]
        elif isinstance(data, dict) and len(data) == 1:
            data = next(iter(data.values()))
        else:
            break
    shape = getattr(data, "shape", None)
    try:
        dims = tuple(shape) if shape is not None else ()  # a TensorShape of unknown rank raises ValueError
    except (TypeError, ValueError):
        return None
    return dims if len(dims) == 4 else None


def _trainer_variables(model) -> list:
    """Every variable Keras' JAX trainer detaches: the model's, its metrics' and its optimizer's."""
    optimizer = getattr(model, "optimizer", None)
    extra = list(optimizer.variables) if optimizer is not None else []
    return [*model.trainable_variables, *model.non_trainable_variables, *model.metrics_variables, *extra]


@contextlib.contextmanager
def _guarded(model):
    """A trainer loop (fit, evaluate, predict) of a size-checked model:
    - on TensorFlow, the graph's refusal (`SizeCheckedModel._graph_check`) raised again in Python's
      words (InvalidInputShape, not the InvalidArgumentError TensorFlow raises it as);
    - on JAX, the model kept usable when the loop raises. Keras' JAX trainer detaches the variables'
      values at the start of those loops (`_get_jax_state(purge_model_variables=True)`) and
      reattaches them at the end (`jax_state_sync`; keras/src/backend/jax/trainer.py), so an
      exception in between (a size refused while the first batch is traced) left every later call
      failing ('NoneType' object is not callable). On an exception: the last state a finished step
      kept, else the values before the call (no step ran: nothing was donated)."""
    backend, check = keras.backend.backend(), getattr(model, "anyshape_size_check", None)
    if check is None:  # a model that takes every size: Keras' loops as they are
        yield
        return
    if backend != "jax":
        try:
            yield
        except Exception as error:
            if backend == "tensorflow" and _GRAPH_REFUSAL in str(error):
                raise check.error(None) from None  # InvalidInputShape
            raise
        return
    model.jax_state_sync()  # a no-op unless some state was left unsynced
    model._jax_state = None  # a stale state (predict_on_batch keeps its last) must not be restored below
    optimizer = getattr(model, "optimizer", None)
    if optimizer is not None and not optimizer.built:  # built here, not inside the loop: its values are kept too
        optimizer.build(model.trainable_variables)
    before = [(v, v.value) for v in _trainer_variables(model)]
    try:
        yield
    except BaseException:
        if getattr(model, "_jax_state", None) is not None:
            model.jax_state_sync()
            model._jax_state = None
        for variable, value in before:
            if variable._value is None:  # detached by the trainer
                variable.assign(value)
        raise


_GRAPH_REFUSAL = "anyshape: images below the minimum size"  # no quote: TensorFlow escapes them


class SizeCheckedModel(Functional):
    """A Functional model that checks its images' height and width before Keras runs them. A
    free-size network below its minimum would otherwise fail deep in the backend (TensorFlow's
    "Negative dimension size"); `anyshape.create_model` sets `anyshape_size_check`, a callable that
    takes an input's shape and raises `InvalidInputShape` (without it, the model is a plain Functional).

    Where the check runs: predict, fit (and its validation_data), evaluate and the *_on_batch methods
    check their input before Keras' trainer starts, when its shape is known (`_image_shape`);
    `__call__` checks a direct `model(x)` (and is what the TensorFlow and PyTorch trainers call);
    `call` checks what the JAX trainer traces (it calls `stateless_call`, hence `call`, not
    `__call__`), a generator's batches, with `_guarded` making sure the model still runs
    after such a refusal. TensorFlow's trainer may trace a generator's batches with the height and
    width unknown (tf.function relaxes a shape that changed between calls to None), where MobileNet
    would return uninitialised memory below its minimum: there the check is an assertion in the
    graph (`_graph_check`; XLA compiles assertions to nothing, and Keras compiles TensorFlow with
    XLA only where there is an accelerator).

    It reports its class as Functional, so saving, get_config, clone_model and pickling see a
    plain Functional of built-in layers (serialize_keras_object reads `obj.__class__`:
    keras/src/saving/serialization_lib.py): a reloaded or cloned model has no check."""

    __class__ = property(lambda self: Functional)

    def _check_size(self, data) -> None:
        check = getattr(self, "anyshape_size_check", None)
        shape = None if check is None else _image_shape(data)
        if check is not None and shape is not None:
            check(shape)

    def __call__(self, *args, **kwargs):  # before Keras adds its call information to the message
        self._check_size(args[0] if args else kwargs.get("inputs"))
        return super().__call__(*args, **kwargs)

    def call(self, inputs, training=None, mask=None, **kwargs):
        self._check_size(inputs)
        return super().call(self._graph_check(inputs), training=training, mask=mask, **kwargs)

    def _graph_check(self, inputs):
        """`inputs` after a TensorFlow assertion that its height and width are at least the
        network's minimum, where a traced graph does not know them; else `inputs` as they are."""
        check = getattr(self, "anyshape_size_check", None)
        shape = getattr(inputs, "shape", None)
        if check is None or keras.backend.backend() != "tensorflow" or shape is None or len(shape) != 4:
            return inputs
        if all(shape[axis] is not None for axis in check.axes):
            return inputs  # checked while tracing
        import tensorflow as tf

        if tf.executing_eagerly() or not tf.is_tensor(inputs):
            return inputs
        sides, (mh, mw) = tf.shape(inputs), check.minimum
        message = f"{_GRAPH_REFUSAL} ({check.network} takes at least {mh}x{mw} px)"  # also in an exported graph
        asserts = [
            tf.debugging.assert_greater_equal(sides[axis], least, message=message)
            for axis, least in zip(check.axes, check.minimum)
        ]
        with tf.control_dependencies(asserts):
            return tf.identity(inputs)

    def predict(self, x, *args, **kwargs):
        self._check_size(x)
        with _guarded(self):
            return super().predict(x, *args, **kwargs)

    def fit(self, x=None, *args, **kwargs):
        self._check_size(x)
        self._check_size(kwargs.get("validation_data"))
        with _guarded(self):
            return super().fit(x, *args, **kwargs)

    def evaluate(self, x=None, *args, **kwargs):
        self._check_size(x)
        with _guarded(self):
            return super().evaluate(x, *args, **kwargs)

    def predict_on_batch(self, x):
        self._check_size(x)
        return super().predict_on_batch(x)

    def train_on_batch(self, x, *args, **kwargs):
        self._check_size(x)
        return super().train_on_batch(x, *args, **kwargs)

    def test_on_batch(self, x, *args, **kwargs):
        self._check_size(x)
        return super().test_on_batch(x, *args, **kwargs)


def build(arch, config, input_tensor=None) -> keras.Model:
    """The Keras model of `arch` built with `config` (whose input_shape is resolved). No checks and
    no weights: `anyshape.create_model` explains the shape first and loads weights after, and gives
    a free-size model (a `SizeCheckedModel`) its size check."""
    inputs, x = _inputs(input_tensor, config.input_shape)
    channels_first = config.data_format == "channels_first"
    if channels_first:
        x = layers.Permute((2, 3, 1), name="to_channels_last")(x)
    outputs = arch.network(KerasOps(), config, x)
    if channels_first and not isinstance(outputs, (list, tuple)) and len(outputs.shape) == 4:
        outputs = layers.Permute((3, 1, 2), name="to_channels_first")(outputs)
    free = None in tuple(x.shape)[1:3]
    return (SizeCheckedModel if free else keras.Model)(inputs, outputs, name=config.name or arch.name)
