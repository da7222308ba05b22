"""The query vector each interaction implies, in numpy and as a Cypher list expression, and the index similarity.

A vector index finds the stored entity vectors nearest to a query vector. For a (head, relation, ?) question the
best tails are those nearest to what the interaction maps the head to: ``h + r`` for TransE, ``h ∘ r`` (complex
product) for RotatE, ``h ∘ r`` for DistMult and ComplEx (largest dot product, so the cosine index gives candidates).
Complex vectors are stored as interleaved reals ``[re0, im0, re1, im1, …]`` (what ``TrainedModel.entity_vectors``
returns), so a Euclidean distance between stored vectors is the complex modulus distance RotatE scores with.
The index only proposes candidates; kgemb re-scores them exactly with the model.
"""

from __future__ import annotations

import numpy as np

from kgemb.errors import ConfigError

#: index similarity per interaction: distance-based ones use Euclidean, product-based ones cosine
SIMILARITY: dict[str, str] = {
    "transe": "euclidean",
    "rotate": "euclidean",
    "pairre": "euclidean",
    "distmult": "cosine",
    "complex": "cosine",
}
DIRECTIONS = ("tail", "head")


def similarity_for(interaction: str) -> str:
    """The vector index similarity function that suits ``interaction``."""
    try:
        return SIMILARITY[interaction]
    except KeyError:
        raise ConfigError(
            f"no vector-index query is defined for interaction {interaction!r}; "
            f"the index path supports {', '.join(SIMILARITY)}"
        ) from None


def _complex(x: np.ndarray) -> np.ndarray:
    return x[..., 0::2] + 1j * x[..., 1::2]


def _real(z: np.ndarray) -> np.ndarray:
    out = np.empty((*z.shape[:-1], z.shape[-1] * 2), dtype=np.float32)
    out[..., 0::2] = z.real
    out[..., 1::2] = z.imag
    return out


def query_vectors(interaction: str, direction: str, known: np.ndarray, relation: np.ndarray) -> np.ndarray:
    """Query vectors, shape ``(n, dim)``: for ``direction="tail"`` ``known`` are heads, for ``"head"`` tails.

    ``relation`` rows are ``TrainedModel.relation_vectors()`` rows (PairRE: head and tail parts side by side).
    """
    similarity_for(interaction)
    if direction not in DIRECTIONS:
        raise ConfigError(f"direction {direction!r} is unknown; use 'tail' or 'head'")
    x = np.atleast_2d(np.asarray(known, dtype=np.float64))
    r = np.atleast_2d(np.asarray(relation, dtype=np.float64))
    tail = direction == "tail"
    if interaction == "transe":
        q = x + r if tail else x - r
    elif interaction == "distmult":
        q = x * r
    elif interaction in ("rotate", "complex"):
        z, w = _complex(x), _complex(r)
        q = _real(z * w if tail else z * np.conj(w))
    else:  # pairre: ||h∘r_h - t∘r_t||, so t ≈ h∘r_h / r_t and h ≈ t∘r_t / r_h
        d = x.shape[1]
        rh, rt = r[:, :d], r[:, d:]
        num, den = (rh, rt) if tail else (rt, rh)
        safe = np.where(np.abs(den) < 1e-6, 1.0, den)
        q = x * num / safe
    return np.asarray(q, dtype=np.float32)


def cypher_query_vector(interaction: str, direction: str, known: str = "v", relation: str = "r") -> str:
    """The Cypher list expression computing :func:`query_vectors` from two list variables, ``known`` (the stored
    entity vector) and ``relation`` (the stored relation vector), for use in a pure-Cypher query."""
    similarity_for(interaction)
    if direction not in DIRECTIONS:
        raise ConfigError(f"direction {direction!r} is unknown; use 'tail' or 'head'")
    v, r = known, relation
    tail = direction == "tail"
    if interaction == "transe":
        body = f"{v}[i] + {r}[i]" if tail else f"{v}[i] - {r}[i]"
    elif interaction == "distmult":
        body = f"{v}[i] * {r}[i]"
    elif interaction in ("rotate", "complex"):
        if tail:  # (a+bi)(c+di) = (ac-bd) + (ad+bc)i
            body = (
                f"CASE i % 2 WHEN 0 THEN {v}[i] * {r}[i] - {v}[i + 1] * {r}[i + 1] "
                f"ELSE {v}[i - 1] * {r}[i] + {v}[i] * {r}[i - 1] END"
            )
        else:  # (a+bi)(c-di) = (ac+bd) + (bc-ad)i
            body = (
                f"CASE i % 2 WHEN 0 THEN {v}[i] * {r}[i] + {v}[i + 1] * {r}[i + 1] "
                f"ELSE {v}[i] * {r}[i - 1] - {v}[i - 1] * {r}[i] END"
            )
    else:
        num, den = (f"{r}[i]", f"{r}[size({v}) + i]") if tail else (f"{r}[size({v}) + i]", f"{r}[i]")
        body = f"CASE WHEN abs({den}) < 1e-6 THEN {v}[i] * {num} ELSE {v}[i] * {num} / {den} END"
    return f"[i IN range(0, size({v}) - 1) | {body}]"
