"""kgemb: knowledge-graph embeddings that fuse multilingual entity text with PyKEEN relational scoring."""

from __future__ import annotations

from kgemb._version import __version__
from kgemb.errors import ConfigError, DependencyError, InputError, KgembError

__all__ = ["ConfigError", "DependencyError", "InputError", "KgembError", "__version__"]
