"""Checking and cleaning the texts given to ``TextEncoder.encode``: every text gets a defined handling."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from kgemb.errors import InputError

ROLES = ("document", "query")
_SURROGATE = re.compile("[\ud800-\udfff]")
_SHOWN = 5  # bad positions named in an error message


@dataclass
class CleanedTexts:
    """Texts ready to encode, and what was done to them (counted for ``EncodeReport``)."""

    texts: list[str]
    blank: int = 0  # empty or whitespace-only texts, encoded as ""
    surrogates: int = 0  # texts with lone surrogates, replaced by U+FFFD
    truncated: int = 0  # texts cut to max_chars characters


def check_role(role: str) -> str:
    """Return ``role`` if it is one the encoders know, else raise an InputError listing them."""
    if role not in ROLES:
        raise InputError(f"role={role!r} is not known: pass role='document' (entity texts) or role='query'")
    return role


def check_batch_size(batch_size: int | None) -> int | None:
    """Return ``batch_size`` if it is None or a positive whole number, else raise an InputError."""
    if batch_size is None:
        return None
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise InputError(f"batch_size={batch_size!r} is not a positive whole number: pass e.g. batch_size=64")
    return batch_size


def clean_texts(texts: Sequence[str], max_chars: int) -> CleanedTexts:
    """Validate ``texts`` and clean each one; raise an InputError naming the positions of non-strings.

    Every text is checked before any is encoded, so a bad text costs no work. Handling: a blank text (empty or
    whitespace only) becomes ""; lone UTF-16 surrogates become U+FFFD (paired ones are joined); a text longer
    than ``max_chars`` is cut to its first ``max_chars`` characters. Each is counted, none is silent.
    """
    if isinstance(texts, (str, bytes)):
        raise InputError(
            f"encode takes a list of texts, not a single {type(texts).__name__} ({_preview(texts)}): "
            "pass [text] to encode one text"
        )
    try:
        items = list(texts)
    except TypeError:
        raise InputError(
            f"encode takes a list of texts, not {type(texts).__name__}: pass a list of strings"
        ) from None
    bad = [i for i, text in enumerate(items) if not isinstance(text, str)]
    if bad:
        named = ", ".join(f"texts[{i}] is {_describe(items[i])}" for i in bad[:_SHOWN])
        more = f" and {len(bad) - _SHOWN} more" if len(bad) > _SHOWN else ""
        raise InputError(
            f"{len(bad)} of {len(items)} texts are not strings ({named}{more}): "
            "pass str values, with '' for an entity that has no text"
        )
    out = CleanedTexts(items)
    for i, text in enumerate(items):
        if not text or text.isspace():
            if text:
                items[i] = ""
            out.blank += 1
            continue
        if _SURROGATE.search(text):
            text = text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
            items[i] = text
            out.surrogates += 1
        if len(text) > max_chars:
            items[i] = text[:max_chars]
            out.truncated += 1
    return out


def _describe(value: object) -> str:
    return "None" if value is None else f"a {type(value).__name__} ({_preview(value)})"


def _preview(value: object, width: int = 40) -> str:
    text = repr(value)
    return text if len(text) <= width else text[: width - 3] + "..."
