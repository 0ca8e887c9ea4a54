"""Lazy access to the two framework builds, so TensorFlow is imported only when used."""

from __future__ import annotations

import importlib
from types import ModuleType

FRAMEWORK_FLAGS = {"tf": "tensorflow", "torch": "pytorch"}
_MODULES = {"tensorflow": "trainers.tf_model", "pytorch": "trainers.torch_model"}


def frameworks_for(flag: str) -> list[str]:
    """`tf` | `torch` | `both` -> framework names in training order."""
    if flag == "both":
        return list(FRAMEWORK_FLAGS.values())
    return [FRAMEWORK_FLAGS[flag]]


def load_framework(name: str) -> ModuleType:
    """The module implementing build_model, Trainer, export, load_predictor, ..."""
    return importlib.import_module(_MODULES[name])
