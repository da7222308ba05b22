"""kgemb: knowledge-graph embeddings that fuse multilingual entity text with PyKEEN relational scoring.

Public names are imported lazily (see ``_LAZY``), so ``import kgemb`` and the command line start fast.
"""

from __future__ import annotations

import importlib
from typing import Any

from kgemb._version import __version__
from kgemb.errors import ConfigError, DependencyError, InputError, KgembError

# public name -> module that defines it; add new public names here
_LAZY: dict[str, str] = {
    "KnowledgeGraph": "kgemb.graph",
    "GraphBuilder": "kgemb.graph",
    "Entity": "kgemb.graph",
    "load_encoder": "kgemb.encoders",
    "TextEncoder": "kgemb.encoders",
    "train": "kgemb.training",
    "TrainedModel": "kgemb.model",
    "load": "kgemb.artifact",
}

__all__ = ["ConfigError", "DependencyError", "InputError", "KgembError", "__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'kgemb' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    """The module's names plus the lazily loaded ones, so tab completion and ``dir()`` show them."""
    return sorted({*globals(), *_LAZY})
