"""keras.applications' 40 constructors, each a thin call of `anyshape.create_model`.

    from anyshape.applications import ResNet50, EfficientNetB0, NASNetMobile
    model = ResNet50(weights=None, input_shape=(96, 160, 1))

Each has keras.applications' signature, in the same order with the same defaults (read from the
network's `Arch.keras_args`; tests/test_applications.py compares them with Keras'), then the
keyword-only extras every anyshape constructor takes: `data_format`, `preprocessing` and any other
build argument or weight option (`dropout_rate`, `channel_adapt`, ...). InceptionV3 keeps its own
hand-written constructor (`anyshape.inception_v3`), whose docstring describes every argument.

keras.applications' per-family modules have their twins here, so Keras' import lines work with
`keras` replaced: `from anyshape.applications.resnet50 import ResNet50, preprocess_input,
decode_predictions` (`resnet50.py`, `efficientnet.py`, ..., `imagenet_utils.py`; see
`_keras_modules`).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable

from anyshape.archs import get_arch, list_models
from anyshape.factory import create_model
from anyshape.inception_v3 import InceptionV3

__all__ = ["InceptionV3"]

_KEYWORD_EXTRAS = (
    inspect.Parameter("data_format", inspect.Parameter.KEYWORD_ONLY, default=None),
    inspect.Parameter("preprocessing", inspect.Parameter.KEYWORD_ONLY, default=None),
    inspect.Parameter("kwargs", inspect.Parameter.VAR_KEYWORD),
)


def _constructor(name: str) -> Callable:
    arch = get_arch(name)
    params = [inspect.Parameter(k, inspect.Parameter.POSITIONAL_OR_KEYWORD, default=v) for k, v in arch.keras_args]
    signature = inspect.Signature([*params, *_KEYWORD_EXTRAS])

    def constructor(*args, **kwargs):
        bound = signature.bind(*args, **kwargs)
        bound.apply_defaults()
        values = dict(bound.arguments)
        values.update(values.pop("kwargs"))
        return create_model(arch.name, **values)

    constructor.__name__ = constructor.__qualname__ = arch.keras_name
    constructor.__signature__ = signature  # type: ignore[attr-defined]
    constructor.__doc__ = (
        f"{arch.keras_name} ({arch.description}) at any input shape that works: keras.applications."
        f"{arch.keras_name}'s arguments with Keras' meaning, plus data_format, preprocessing and the "
        f"build and weight options of `anyshape.create_model('{arch.name}', ...)`."
    )
    constructor.__module__ = __name__
    return constructor


for _name in list_models():
    _arch = get_arch(_name)
    if _arch.keras_args:
        globals()[_arch.keras_name] = _constructor(_name)
        __all__.append(_arch.keras_name)
