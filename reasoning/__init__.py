"""Reasoning: rank, explain and calibrate links with a trained kgemb model.

``from kgemb.reasoning import LinkPredictor``. Names load lazily, so importing the package stays cheap.
"""

from __future__ import annotations

import importlib
from typing import Any

# public name -> module that defines it
_LAZY: dict[str, str] = {
    "LinkPredictor": "kgemb.reasoning.predictor",
    "Prediction": "kgemb.reasoning.predictor",
    "Predictions": "kgemb.reasoning.predictor",
    "Contribution": "kgemb.reasoning.predictor",
    "Calibration": "kgemb.reasoning.calibration",
    "Explanation": "kgemb.reasoning.explain",
}

__all__ = list(_LAZY)


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'kgemb.reasoning' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    """The module's names plus the lazily loaded ones, so tab completion and ``dir()`` show them."""
    return sorted({*globals(), *_LAZY})
