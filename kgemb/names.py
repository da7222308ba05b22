"""Small text helpers shared by the graph and the connectors: readable keys, look-up normalisation, languages."""

from __future__ import annotations

import functools
import re
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from urllib.parse import unquote

#: Default language preference: English first, then untagged; any other language follows in sorted order.
DEFAULT_LANGUAGES: tuple[str, ...] = ("en", "")

_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])")
_SPACES = re.compile(r"\s+")


def readable_key(key: str) -> str:
    """A display text made from a key: last IRI segment (after ``#`` or ``/``), percent-decoded, words split.

    ``http://ex.org/onto#HeartAttack`` -> ``Heart Attack``; ``_member_of_domain_usage`` -> ``member of domain usage``.
    """
    text = key.strip()
    stripped = text.rstrip("/#")
    if "://" in stripped or stripped.startswith(("urn:", "_:")):
        for sep in ("#", "/", ":"):
            if sep in stripped:
                candidate = stripped.rsplit(sep, 1)[1]
                if candidate:
                    stripped = candidate
                    break
    text = unquote(stripped)
    text = text.replace("_", " ").replace("+", " ")
    text = _CAMEL.sub(" ", text)
    text = _SPACES.sub(" ", text).strip()
    return text or key


def normalize_name(text: str) -> str:
    """Look-up form of a name: Unicode NFKC, case-folded, whitespace collapsed (so ``Fever``, ``fever `` match)."""
    return _SPACES.sub(" ", unicodedata.normalize("NFKC", text).casefold()).strip()


def clean_text(text: str) -> str:
    """A label or description as stored: surrounding whitespace removed, inner whitespace runs made one space
    (``str.split`` splits at exactly the characters ``re``'s ``\\s`` matches, several times faster)."""
    return " ".join(text.split())


@functools.lru_cache(maxsize=4096)
def normalize_language(tag: str | None) -> str:
    """A BCP 47 language tag in the form kgemb stores it: lower case, ``-`` separated; ``None`` -> untagged ``""``.
    Cached, so that millions of labels share one string per tag."""
    return (tag or "").strip().lower().replace("_", "-")


def language_order(available: Iterable[str], languages: Sequence[str] | None = None) -> list[str]:
    """Order the language tags ``available`` by preference.

    Each preferred language matches itself first, then its regional forms (``en`` -> ``en-gb``); the defaults
    (English, untagged) follow the caller's list, and every other language present comes last in sorted order, so
    the result always falls back to any language that has text.
    """
    tags = sorted(set(available))
    order: list[str] = []
    wanted = [normalize_language(lang) for lang in (languages or ())]
    for lang in [*wanted, *DEFAULT_LANGUAGES]:
        if lang in tags and lang not in order:
            order.append(lang)
        if lang:
            order.extend(t for t in tags if t.startswith(lang + "-") and t not in order)
    order.extend(t for t in tags if t not in order)
    return order


def pick_texts(by_language: Mapping[str, list[str]], languages: Sequence[str] | None = None) -> list[str]:
    """The texts of the most preferred language that has any (empty list when none has)."""
    for lang in language_order(by_language, languages):
        if by_language[lang]:
            return by_language[lang]
    return []
