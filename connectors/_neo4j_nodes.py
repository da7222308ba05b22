"""Finding a model's entities in Neo4j: by element id, or by a key property (per label)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from kgemb.connectors._neo4j_common import (
    ELEMENT_ID,
    chunks,
    label_expression,
    quote,
    read,
    write_schema,
)

from kgemb.errors import InputError

if TYPE_CHECKING:
    from kgemb.graph import KnowledgeGraph


@dataclass(frozen=True)
class _Nodes:
    """How a model's entities are found in Neo4j: by element id, or by a key property (per label)."""

    key: str
    key_type: str
    create_label: str | None  # the graph did not come from Neo4j: nodes are MERGEd with this label

    @classmethod
    def of(cls, kg: KnowledgeGraph, entity_label: str) -> _Nodes:
        info = kg.metadata.get("neo4j") if kg.metadata.get("source") == "neo4j" else None
        if isinstance(info, dict) and info.get("key"):
            return cls(str(info["key"]), str(info.get("key_type") or "str"), None)
        return cls("key", "str", entity_label)

    def value(self, entity_key: str) -> str | int:
        return int(entity_key) if self.key_type == "int" else entity_key

    def resolve(
        self, driver: Any, database: str | None, kg: KnowledgeGraph, ids: Sequence[int]
    ) -> dict[int, str]:
        """Entity id -> element id of its node, for the given entity ids that exist in the database (looked up
        10,000 at a time)."""
        out: dict[int, str] = {}
        if self.key == ELEMENT_ID:
            ids = list(ids)
            for start, stop in chunks(len(ids), 10_000):
                keys = [kg.entities[i].key for i in ids[start:stop]]
                found = read(
                    driver,
                    database,
                    "UNWIND $ids AS id MATCH (n) WHERE elementId(n) = id RETURN collect(id) AS found",
                    ids=keys,
                )[0]["found"]
                present = set(found)
                out.update({i: key for i, key in zip(ids[start:stop], keys, strict=True) if key in present})
            return out
        groups: dict[str | None, list[int]] = {}
        for i in ids:
            types = kg.entities[i].types
            label = self.create_label or (types[0] if types else None)
            groups.setdefault(label, []).append(i)
        prop = quote(self.key, "key property")
        for label, members in groups.items():
            node = f"(n{label_expression([label]) if label else ''} {{{prop}: k}})"
            by_value = {self.value(kg.entities[i].key): i for i in members}
            values = list(by_value)
            for start, stop in chunks(len(values), 10_000):
                rec = read(
                    driver,
                    database,
                    f"UNWIND $keys AS k MATCH {node} RETURN collect(k) AS keys, collect(elementId(n)) AS ids",
                    keys=values[start:stop],
                )[0]
                out.update({by_value[k]: eid for k, eid in zip(rec["keys"], rec["ids"], strict=True)})
        return out

    def check(self, kg: KnowledgeGraph) -> None:
        """Raise before any write when a key or a label the lookups would use cannot go into Cypher."""
        if self.key == ELEMENT_ID:
            return
        quote(self.key, "key property")
        labels = {self.create_label} if self.create_label else {e.types[0] for e in kg.entities if e.types}
        for label in sorted(labels):
            quote(label, "node label (an entity type) of the model's graph")
        if self.key_type == "int":
            bad = next((e.key for e in kg.entities if not e.key.lstrip("-").isdigit()), None)
            if bad is not None:
                raise InputError(
                    f"entity key {bad!r} is not a whole number, though the graph's keys are; pull again"
                )

    def ensure_key_index(self, driver: Any, database: str | None, kg: KnowledgeGraph) -> None:
        """A range index on (label, key) for each label the lookups use (a uniqueness constraint for nodes
        kgemb creates), so writing back is one index seek per node, not a label scan."""
        if self.key == ELEMENT_ID:
            return
        prop = quote(self.key, "key property")
        if self.create_label:
            label = label_expression([self.create_label])
            write_schema(
                driver, database, f"CREATE CONSTRAINT IF NOT EXISTS FOR (n{label}) REQUIRE n.{prop} IS UNIQUE"
            )
            return
        indexed = {
            (tuple(r["labelsOrTypes"] or ()), tuple(r["properties"] or ()))
            for r in read(
                driver,
                database,
                "SHOW INDEXES YIELD entityType, labelsOrTypes, properties, type "
                "WHERE entityType = 'NODE' AND type IN ['RANGE', 'TEXT'] RETURN labelsOrTypes, properties",
            )
        }
        for label in sorted({e.types[0] for e in kg.entities if e.types}):
            if ((label,), (self.key,)) not in indexed:
                write_schema(
                    driver,
                    database,
                    f"CREATE INDEX IF NOT EXISTS FOR (n{label_expression([label])}) ON (n.{prop})",
                )
