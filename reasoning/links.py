"""Fast look-up of the links a graph already has, by (head, relation) and by (relation, tail).

Used to leave known links out of a ranking, to treat them as certain in multi-evidence ranking, and to filter
negatives when fitting a calibration. Memory is O(number of triples); no per-entity Python objects.
"""

from __future__ import annotations

import numpy as np


class LinkIndex:
    """Sorted views of a triple array: ``tails_of(h, r)``, ``heads_of(r, t)`` and ``contains(triples)``."""

    def __init__(self, triples: np.ndarray, num_entities: int) -> None:
        triples = np.asarray(triples, dtype=np.int64).reshape(-1, 3)
        self.num_entities = n = max(int(num_entities), 1)
        h, r, t = triples[:, 0], triples[:, 1], triples[:, 2]
        self._hr_keys, self._hr_tails = _sorted_by(r * n + h, t)
        self._rt_keys, self._rt_heads = _sorted_by(r * n + t, h)

    def tails_of(self, head: int, relation: int) -> np.ndarray:
        """Ids of every ``t`` with ``(head, relation, t)`` in the graph."""
        return _slice(self._hr_keys, self._hr_tails, relation * self.num_entities + head)

    def heads_of(self, relation: int, tail: int) -> np.ndarray:
        """Ids of every ``h`` with ``(h, relation, tail)`` in the graph."""
        return _slice(self._rt_keys, self._rt_heads, relation * self.num_entities + tail)

    def contains(self, triples: np.ndarray) -> np.ndarray:
        """Boolean array: which rows of an (n, 3) id array are links of the graph."""
        triples = np.asarray(triples, dtype=np.int64).reshape(-1, 3)
        keys = triples[:, 1] * self.num_entities + triples[:, 0]
        lo = np.searchsorted(self._hr_keys, keys, side="left")
        hi = np.searchsorted(self._hr_keys, keys, side="right")
        out = np.zeros(len(triples), dtype=bool)
        for i in np.flatnonzero(hi > lo):
            out[i] = bool(np.any(self._hr_tails[lo[i] : hi[i]] == triples[i, 2]))
        return out


def _sorted_by(keys: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    order = np.argsort(keys, kind="stable")
    return keys[order], values[order]


def _slice(keys: np.ndarray, values: np.ndarray, key: int) -> np.ndarray:
    lo = np.searchsorted(keys, key, side="left")
    hi = np.searchsorted(keys, key, side="right")
    return values[lo:hi]
