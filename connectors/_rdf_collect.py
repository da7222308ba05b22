"""Turns RDF statements into :class:`kgemb.GraphBuilder` calls by the rules of an :class:`RdfMapping`."""

from __future__ import annotations

from kgemb.graph import Entity, GraphBuilder, KnowledgeGraph

from ._rdf_mapping import RDF_TYPE, RDFS_DOMAIN, RDFS_RANGE, SCHEMA_TYPES, RdfMapping


class Collector:
    """Receives statements (already as plain strings) from every parser and fills one builder.

    Blank nodes are renamed ``_:b0``, ``_:b1``... in first-seen order, scoped per file (call :meth:`new_file`),
    so keys are deterministic and two files never share a blank node by accident.
    """

    def __init__(self, mapping: RdfMapping) -> None:
        self.mapping = mapping
        self.builder = GraphBuilder()
        self._bnodes: dict[str, str] = {}
        self._bnode_count = 0
        self.domain_range: dict[str, dict[str, list[str]]] = {}
        self.counts = {"statements": 0, "relation": 0, "text": 0, "type": 0, "attribute": 0, "skipped": 0}
        self._text = mapping.text
        self._ignore = mapping.ignore
        self._relations = mapping.relations
        self._keep_attributes = mapping.keep_attributes
        self._type_as_relation = mapping.type_as_relation

    def new_file(self) -> None:
        self._bnodes = {}

    def bnode(self, label: str) -> str:
        key = self._bnodes.get(label)
        if key is None:
            key = self._bnodes[label] = f"_:b{self._bnode_count}"
            self._bnode_count += 1
        return key

    def resource(self, s: str, p: str, o: str) -> None:
        """A statement whose object is an IRI or blank node (already renamed)."""
        counts = self.counts
        if p in self._ignore:
            counts["skipped"] += 1
        elif p == RDF_TYPE:
            self.builder.add_type(s, o)
            counts["type"] += 1
            if self._type_as_relation:
                self.builder.add_triple(s, p, o)
                counts["relation"] += 1
        elif p in (RDFS_DOMAIN, RDFS_RANGE):
            side = "domain" if p == RDFS_DOMAIN else "range"
            values = self.domain_range.setdefault(s, {}).setdefault(side, [])
            if o not in values:
                values.append(o)
        elif self._relations is None or p in self._relations:
            self.builder.add_triple(s, p, o)
            counts["relation"] += 1
        else:
            counts["skipped"] += 1

    def is_plain_relation(self, p: str) -> bool:
        """Whether :meth:`resource` with predicate ``p`` does nothing but record the relation triple, so a fast
        reader may batch such statements into :meth:`relations` (keeping their order among the others)."""
        return (
            p not in self._ignore
            and p not in (RDF_TYPE, RDFS_DOMAIN, RDFS_RANGE)
            and (self._relations is None or p in self._relations)
        )

    def literal(self, s: str, p: str, text: str, lang: str | None) -> None:
        """A statement whose object is a literal (lexical form, language tag or None)."""
        kind = self._text.get(p)
        if kind is not None and p not in self._ignore:
            self.builder.add_label(s, text, lang, kind)
            self.counts["text"] += 1
        elif self._keep_attributes and p not in self._ignore:
            self.builder.add_attribute(s, p, text)
            self.counts["attribute"] += 1
        else:
            self.counts["skipped"] += 1

    def build(self, metadata: dict) -> KnowledgeGraph:
        """The graph: relation labels taken from the predicates' own texts, vocabulary terms (classes, properties)
        that take part in no relation triple dropped, and only instances of ``entity_classes`` when mapped."""
        builder = self.builder
        relations = set()
        for key in list(builder.relation_keys()):
            relations.add(key)
            if builder.has_entity(key):
                e = builder.entity(key)
                builder.add_relation(key, e.labels or e.aliases)
        connected = builder.connected_entities()
        classes = self.mapping.entity_classes

        def keep(e: Entity) -> bool:
            if classes is not None:
                return any(t in classes for t in e.types)
            if connected[builder.add_entity(e.key)]:
                return True
            return e.key not in relations and not any(t in SCHEMA_TYPES for t in e.types)

        metadata = {
            **metadata,
            "counts": dict(self.counts),
            "domain_range": {k: v for k, v in self.domain_range.items() if k in relations},
        }
        return builder.build(metadata, entity_filter=keep)
