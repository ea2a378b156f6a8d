"""adcbench: the reference benchmark for communication-efficient split learning of ViTs.

Layers, each importing only those below it (docs/architecture.md; enforced by import-linter):

    cli  ->  report  ->  sweep  ->  train  ->  model | transport  ->  data  ->  core  ->  wire
    (errors.py is below them all; methods/ and tasks/ are plugins on top of core and data)

The plugin API is importable from here: `from adcbench import register_method, Method, Field`.
It is resolved lazily, so `import adcbench` (and the CLI's argument checking) stays cheap.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from adcbench import _aliases

__version__ = "0.1.0"

# Public name -> module that defines it. Plugins import these from `adcbench` only.
_PUBLIC = {
    # methods (docs/methods.md)
    "register_method": "adcbench.core.method",
    "Method": "adcbench.core.method",
    "Context": "adcbench.core.method",
    "Cut": "adcbench.core.method",
    "Decoded": "adcbench.core.method",
    "Fields": "adcbench.core.method",
    "METHODS": "adcbench.core.method",
    "label_field": "adcbench.core.method",
    "label_nbytes": "adcbench.core.method",
    "Param": "adcbench.core.params",
    # the wire
    "Message": "adcbench.wire",
    "Field": "adcbench.wire",
    "Category": "adcbench.wire",
    "bits_for": "adcbench.wire",
    "packed_nbytes": "adcbench.wire",
    # tasks (docs/tasks.md)
    "register_task": "adcbench.data.task",
    "Task": "adcbench.data.task",
    "TASKS": "adcbench.data.task",
    "ImageTask": "adcbench.data.imagetask",
    "Preset": "adcbench.data.imagetask",
    "small_vit": "adcbench.data.imagetask",
    # errors
    "AdcbenchError": "adcbench.errors",
    "ParamError": "adcbench.errors",
    "WireFormatError": "adcbench.errors",
}
__all__ = [
    "AdcbenchError",
    "Category",
    "Context",
    "Cut",
    "Decoded",
    "Field",
    "Fields",
    "ImageTask",
    "METHODS",
    "Message",
    "Method",
    "Param",
    "ParamError",
    "Preset",
    "TASKS",
    "Task",
    "WireFormatError",
    "bits_for",
    "label_field",
    "label_nbytes",
    "packed_nbytes",
    "register_method",
    "register_task",
    "small_vit",
    "__version__",
]

if TYPE_CHECKING:
    from adcbench.core.method import (
        METHODS,
        Context,
        Cut,
        Decoded,
        Fields,
        Method,
        label_field,
        label_nbytes,
        register_method,
    )
    from adcbench.core.params import Param
    from adcbench.data.imagetask import ImageTask, Preset, small_vit
    from adcbench.data.task import TASKS, Task, register_task
    from adcbench.errors import AdcbenchError, ParamError, WireFormatError
    from adcbench.wire import Category, Field, Message, bits_for, packed_nbytes


def __getattr__(name: str) -> Any:
    if name in _PUBLIC:
        value = getattr(importlib.import_module(_PUBLIC[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'adcbench' has no attribute {name!r}")


_aliases.install()
