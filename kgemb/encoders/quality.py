"""Quality checks of an encoder: translation retrieval P@1 and retrieval recall@k (tests and benchmarks use them)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from kgemb.encoders.base import TextEncoder
from kgemb.errors import InputError


def read_pairs(path: str | Path) -> list[tuple[str, str, str, str]]:
    """Rows (lang, domain, english, translation) of a tab-separated pair list; '#' lines and the header skipped."""
    rows = []
    for number, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip() or line.startswith("#") or line.startswith("lang\t"):
            continue
        fields = line.split("\t")
        if len(fields) != 4:
            raise InputError(
                f"{path}:{number} has {len(fields)} fields, not 4 (lang, domain, en, translation)"
            )
        rows.append((fields[0], fields[1], fields[2], fields[3]))
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
