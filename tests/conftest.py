"""Shared test setup.

torch and torchvision are imported before Keras loads its backend: `import torchvision` after
TensorFlow is loaded segfaults in one process on this stack (torch._dynamo pulls in triton,
whose native library clashes with TensorFlow's); the other order is fine.
"""

import os

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

try:  # optional: parity tests against torchvision skip cleanly without it
    import torch  # noqa: F401
    import torchvision  # noqa: F401
except ImportError:
    pass


import pytest


@pytest.fixture(scope="session")
def trained_digits(tmp_path_factory):
    """InceptionV3 trained on digits (75x75x1) by anyshape.train: see tests/trained_digits.py."""
    from trained_digits import train_digits

    return train_digits(tmp_path_factory.mktemp("trained-digits"))
