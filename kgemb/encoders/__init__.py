"""Text encoders that turn entity texts (labels, descriptions, any language) into vectors.

``load_encoder("default")`` is USE multilingual v3 (offline, numpy); any other spec is a Hugging Face model
(Qwen3-Embedding recommended) run through ``transformers``. Heavy modules load only when an encoder is built.
"""

from kgemb.encoders.base import EncodeReport, TextEncoder
from kgemb.encoders.loader import load_encoder

__all__ = ["EncodeReport", "TextEncoder", "load_encoder"]
