"""Which entities may fill the head or tail of a relation: type constraints for candidate filtering.

The allowed types of a relation's head (its domain) and tail (its range) come, in this order, from

1. the graph's metadata, when the source declared them (``rdfs:domain`` / ``rdfs:range`` in RDF), and
2. otherwise, learned from the training triples: the types (``rdf:type`` or Neo4j labels) of the entities seen
   in that position.

A candidate is left out only when its own known types contradict the allowed ones: an entity without any type
is kept (nothing says it is wrong), and a relation with no known domain/range constrains nothing. Mode
``"observed"`` is stricter and needs no types at all: only entities seen in that position of that relation in
training are kept.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

import numpy as np

from kgemb.errors import InputError

if TYPE_CHECKING:
    from kgemb.graph import KnowledgeGraph

Side = Literal["head", "tail"]
MODES = ("types", "observed", "none")


class TypeConstraints:
    """Boolean candidate masks per (relation, side), computed on first use and cached."""

    def __init__(self, kg: KnowledgeGraph, mode: str = "types") -> None:
        if mode not in MODES:
            raise InputError(f"constraint mode {mode!r} is unknown; use one of {', '.join(MODES)}")
        self.kg = kg
        self.mode = mode
        self._masks: dict[tuple[int, str], np.ndarray | None] = {}
        self._type_ids: dict[str, int] = {}
        self._entity_types: list[frozenset[int]] | None = None

    def _types(self) -> list[frozenset[int]]:
        if self._entity_types is None:
            ids = self._type_ids
            self._entity_types = [
                frozenset(ids.setdefault(t, len(ids)) for t in e.types) for e in self.kg.entities
            ]
        return self._entity_types

    def allowed_types(self, relation: int, side: Side) -> set[str] | None:
        """Type keys allowed at ``side`` of ``relation``, or ``None`` when nothing is known."""
        declared = _declared(self.kg, relation, side)
        if declared:
            return declared
        triples = self.kg.triples("train")
        column = 0 if side == "head" else 2
        seen = np.unique(triples[triples[:, 1] == relation, column])
        found = {t for i in seen.tolist() for t in self.kg.entities[i].types}
        return found or None

    def mask(self, relation: int, side: Side) -> np.ndarray | None:
        """``(num_entities,)`` booleans, True where an entity may fill ``side``; ``None`` = no constraint."""
        key = (relation, side)
        if key not in self._masks:
            self._masks[key] = self._compute(relation, side)
        return self._masks[key]

    def _compute(self, relation: int, side: Side) -> np.ndarray | None:
        if self.mode == "none":
            return None
        if self.mode == "observed":
            triples = self.kg.triples("train")
            mask = np.zeros(self.kg.num_entities, dtype=bool)
            mask[triples[triples[:, 1] == relation, 0 if side == "head" else 2]] = True
            return mask
        allowed = self.allowed_types(relation, side)
        if not allowed:
            return None
        entity_types = self._types()
        wanted = {self._type_ids[t] for t in allowed if t in self._type_ids}
        return np.fromiter(
            (not types or not types.isdisjoint(wanted) for types in entity_types),
            dtype=bool,
            count=len(entity_types),
        )

    def check(self, entity: int, relation: int, side: Side) -> None:
        """Raise a :class:`KgembError` when ``entity`` cannot fill ``side`` of ``relation``."""
        mask = self.mask(relation, side)
        if mask is None or mask[entity]:
            return
        kg = self.kg
        allowed = sorted(self.allowed_types(relation, side) or ())
        raise InputError(
            f"{kg.label(entity)!r} ({kg.entities[entity].key}) cannot be the {side} of "
            f"{kg.relation_text(relation)!r}: its types {kg.entities[entity].types} are not among {allowed}; "
            "give an entity of the right type, or turn type constraints off"
        )


def _declared(kg: KnowledgeGraph, relation: int, side: Side) -> set[str] | None:
    """Domain (head) or range (tail) types of a relation declared by the source, as the RDF reader records
    them: ``metadata["domain_range"][relation_key] = {"domain": [...], "range": [...]}``."""
    table = kg.metadata.get("domain_range")
    if not isinstance(table, dict):
        return None
    entry = table.get(kg.relations[relation]) or {}
    values = entry.get("domain" if side == "head" else "range") if isinstance(entry, dict) else None
    return set(values) if values else None
