"""Quality checks of an encoder: translation retrieval P@1 and retrieval recall@k (tests and benchmarks use them)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from kgemb.encoders.base import TextEncoder
from kgemb.errors import InputError

_LANG = re.compile(r"[a-z]{2,3}(?:[-_][A-Za-z0-9]{2,8})?")


def read_pairs(path: str | Path) -> list[tuple[str, str, str, str]]:
    """Rows (lang, domain, english, translation) of a tab-separated pair list; '#' lines skipped. Three layouts:
    long (``lang, domain, en, translation``, an optional ``lang`` header), three columns (``lang, en,
    translation``), or wide: a header of language codes with ``en`` among them (``en  zh  ja``), a term a row."""
    lines = [
        (number, line.rstrip("\r"))
        for number, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1)
        if line.strip() and not line.startswith("#")
    ]
    if not lines:
        raise InputError(f"{path} holds no translation pairs; one pair a line, tab-separated")
    header = [f.strip() for f in lines[0][1].split("\t")]
    if "en" in header and len(header) >= 2 and all(_LANG.fullmatch(h) for h in header):
        return _wide_pairs(path, header, lines[1:])
    rows = []
    for number, line in lines:
        fields = line.split("\t")
        if fields[0] == "lang":
            continue
        if len(fields) == 4:
            rows.append((fields[0], fields[1], fields[2], fields[3]))
        elif len(fields) == 3:
            rows.append((fields[0], "", fields[1], fields[2]))
        else:
            raise InputError(
                f"{path}:{number} has {len(fields)} fields; write lang, domain, en, translation (or lang, en, "
                "translation), or start the file with a header of language codes such as en<TAB>zh"
            )
    return rows


def _wide_pairs(
    path: str | Path, header: list[str], lines: list[tuple[int, str]]
) -> list[tuple[str, str, str, str]]:
    """Pairs of a wide table: the ``en`` column against every other language column."""
    en = header.index("en")
    rows = []
    for number, line in lines:
        fields = line.split("\t")
        if len(fields) != len(header):
            raise InputError(
                f"{path}:{number} has {len(fields)} fields, the header {len(header)}; fix that line"
            )
        for i, lang in enumerate(header):
            if i != en and fields[i].strip() and fields[en].strip():
                rows.append((lang, "", fields[en].strip(), fields[i].strip()))
    return rows


def translation_p_at_1(encoder: TextEncoder, pairs: Sequence[tuple[str, str, str, str]]) -> dict[str, float]:
    """P@1 of finding each term's translation among all terms of that language pair, both directions.

    Returns {"en->xx": p, "xx->en": p, ..., "all": p over every query of both directions}.
    """
    result: dict[str, float] = {}
    hits = total = 0
    for lang in sorted({p[0] for p in pairs}):
        rows = [p for p in pairs if p[0] == lang]
        english = encoder.encode([r[2] for r in rows], role="query")
        foreign = encoder.encode([r[3] for r in rows], role="query")
        truth = np.arange(len(rows))
        for name, a, b in ((f"en->{lang}", english, foreign), (f"{lang}->en", foreign, english)):
            correct = int(((a @ b.T).argmax(axis=1) == truth).sum())
            result[name] = correct / len(rows)
            hits, total = hits + correct, total + len(rows)
    result["all"] = hits / total
    return result


def recall_at_k(queries: np.ndarray, documents: np.ndarray, k: int = 10) -> float:
    """Share of queries whose own document (same row) is among the k most similar documents."""
    scores = queries @ documents.T
    own = scores[np.arange(len(queries)), np.arange(len(queries))]
    rank = (scores > own[:, None]).sum(axis=1)
    return float((rank < k).mean())
