"""The reference frameworks (torch, torchvision, timm) that `convert` compares against.

They must be imported before TensorFlow: `import torchvision` after TensorFlow has loaded
crashes the process on this stack (torch._dynamo pulls in triton, whose native library clashes
with TensorFlow's; the other order is fine). `convert` calls `import_reference_frameworks`
before it touches Keras, and so does the CLI before it loads the backend, so Python users and
the CLI get the same parity report.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys

__all__ = ["import_reference_frameworks"]


def import_reference_frameworks(source: str = "torchvision") -> list[str]:
    """Import torch and torchvision (and timm for `source="timm"`) if they are installed and
    TensorFlow is not loaded yet; the names of the modules that are now imported."""
    names = ["torch", "torchvision"] + (["timm"] if source == "timm" else [])
    if "tensorflow" not in sys.modules:
        for name in names:
            if name not in sys.modules and importlib.util.find_spec(name) is not None:
                importlib.import_module(name)
    return [name for name in names if name in sys.modules]
