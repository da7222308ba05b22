"""The knowledge graph every part of kgemb works on: entities with multilingual texts, relations, triple splits.

Ids are positions: connectors add entities and relations through :class:`GraphBuilder`, which numbers them in
first-seen order (so the same input always gives the same ids), and every conversion (PyKEEN, networkx, save/load)
keeps exactly those ids.
"""

from __future__ import annotations

import contextlib
import gc
import json
import os
from array import array
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from itertools import compress
from operator import attrgetter
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from kgemb.errors import InputError
from kgemb.files import write_atomic
from kgemb.names import (
    clean_text,
    language_order,
    normalize_language,
    normalize_name,
    pick_texts,
    readable_key,
)

if TYPE_CHECKING:
    import networkx
    import pykeen.triples

SPLITS: tuple[str, ...] = ("train", "valid", "test")
TEXT_KINDS: tuple[str, ...] = ("label", "alias", "description")
FORMAT = "kgemb.graph/1"
_GRAPH_JSON = "graph.json"


@dataclass(slots=True)
class Entity:
    """One node of the graph: a stable key plus its texts by language tag (``""`` = untagged)."""

    key: str
    labels: dict[str, list[str]] = field(default_factory=dict)
    aliases: dict[str, list[str]] = field(default_factory=dict)
    descriptions: dict[str, list[str]] = field(default_factory=dict)
    types: list[str] = field(default_factory=list)
    attributes: dict[str, list[str]] = field(default_factory=dict)

    @property
    def has_text(self) -> bool:
        """Whether any label, alias or description is present."""
        return any(any(v) for d in (self.labels, self.aliases, self.descriptions) for v in d.values())

    def to_json(self) -> dict[str, Any]:
        """Compact JSON form (empty fields left out)."""
        out: dict[str, Any] = {"key": self.key}
        for name in ("labels", "aliases", "descriptions", "types", "attributes"):
            value = getattr(self, name)
            if value:
                out[name] = value
        return out

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Entity:
        return cls(
            key=str(data["key"]),
            labels={k: list(v) for k, v in data.get("labels", {}).items()},
            aliases={k: list(v) for k, v in data.get("aliases", {}).items()},
            descriptions={k: list(v) for k, v in data.get("descriptions", {}).items()},
            types=list(data.get("types", [])),
            attributes={k: list(v) for k, v in data.get("attributes", {}).items()},
        )


def _empty_triples() -> np.ndarray:
    return np.zeros((0, 3), dtype=np.int64)


class KnowledgeGraph:
    """Entities, relations and (head, relation, tail) id triples split into train / valid / test.

    Build one with a connector (``kgemb.connectors.rdf.load``, ``.tabular.load``, ``.neo4j``) or
    :class:`GraphBuilder`; the position of an entity or relation in its list is its id.
    """

    def __init__(
        self,
        entities: Sequence[Entity],
        relations: Sequence[str],
        relation_labels: Sequence[dict[str, list[str]]] | None = None,
        splits: dict[str, np.ndarray] | None = None,
        metadata: dict | None = None,
    ) -> None:
        self.entities: list[Entity] = list(entities)
        self.relations: list[str] = list(relations)
        self.relation_labels: list[dict[str, list[str]]] = (
            [dict(d) for d in relation_labels]
            if relation_labels is not None
            else [{} for _ in self.relations]
        )
        if len(self.relation_labels) != len(self.relations):
            raise InputError(
                f"relation_labels has {len(self.relation_labels)} entries for {len(self.relations)} relations; "
                "give one dict per relation"
            )
        self.splits: dict[str, np.ndarray] = {}
        for name in SPLITS:
            arr = (splits or {}).get(name)
            self.splits[name] = self._checked_triples(name, arr)
        for name, arr in (splits or {}).items():
            if name not in self.splits:
                self.splits[name] = self._checked_triples(name, arr)
        self.metadata: dict = dict(metadata or {})
        keys = list(map(attrgetter("key"), self.entities))
        self._entity_index: dict[str, int] = dict(zip(keys, range(len(keys)), strict=True))
        if len(self._entity_index) != len(keys):
            seen: dict[str, int] = {}
            for i, key in enumerate(keys):
                if key in seen:
                    raise InputError(f"entity key {key!r} appears twice (ids {seen[key]} and {i})")
                seen[key] = i
        self._relation_index: dict[str, int] = {}
        for i, r in enumerate(self.relations):
            if r in self._relation_index:
                raise InputError(f"relation key {r!r} appears twice")
            self._relation_index[r] = i
        self._name_index: dict[str, list[int]] | None = None

    def _checked_triples(self, name: str, arr: np.ndarray | None) -> np.ndarray:
        if arr is None:
            return _empty_triples()
        arr = np.asarray(arr, dtype=np.int64).reshape(-1, 3)
        if len(arr):
            ends = (arr[:, 0], arr[:, 2])  # strided views: no copies of large arrays
            if min(v.min() for v in ends) < 0 or max(v.max() for v in ends) >= len(self.entities):
                raise InputError(f"split {name!r} has entity ids outside 0..{len(self.entities) - 1}")
            if arr[:, 1].min() < 0 or arr[:, 1].max() >= len(self.relations):
                raise InputError(f"split {name!r} has relation ids outside 0..{len(self.relations) - 1}")
        return np.ascontiguousarray(arr)

    # ------------------------------------------------------------------ sizes and ids
    @property
    def num_entities(self) -> int:
        return len(self.entities)

    @property
    def num_relations(self) -> int:
        return len(self.relations)

    @property
    def no_text_count(self) -> int:
        """How many entities have no label, alias or description (their key is made readable instead)."""
        return sum(not e.has_text for e in self.entities)

    def __repr__(self) -> str:
        counts = ", ".join(f"{k}={len(v)}" for k, v in self.splits.items())
        return f"KnowledgeGraph(entities={self.num_entities}, relations={self.num_relations}, {counts})"

    def entity_id(self, key: str) -> int:
        """The id of the entity with this exact key."""
        try:
            return self._entity_index[key]
        except KeyError:
            raise InputError(
                f"unknown entity key {key!r}; use KnowledgeGraph.lookup() to find an entity by label or IRI"
            ) from None

    def relation_id(self, key_or_label: str) -> int:
        """The id of a relation, by exact key, or by key/label compared case-insensitively."""
        if key_or_label in self._relation_index:
            return self._relation_index[key_or_label]
        wanted = normalize_name(key_or_label)
        wanted_readable = normalize_name(readable_key(key_or_label))  # "has_symptom" finds ex:has_symptom
        hits = {
            i
            for i, key in enumerate(self.relations)
            if wanted in (normalize_name(key), normalize_name(readable_key(key)))
            or wanted_readable == normalize_name(readable_key(key))
            or any(wanted == normalize_name(t) for texts in self.relation_labels[i].values() for t in texts)
        }
        if len(hits) == 1:
            return hits.pop()
        known = ", ".join(repr(self.relation_text(i)) for i in range(min(self.num_relations, 30)))
        more = f" (and {self.num_relations - 30} more)" if self.num_relations > 30 else ""
        if hits:
            raise InputError(
                f"relation {key_or_label!r} is ambiguous: it matches {sorted(self.relations[i] for i in hits)}; "
                "give the relation key"
            )
        raise InputError(f"unknown relation {key_or_label!r}; known relations: {known}{more}")

    # ------------------------------------------------------------------ triples
    def triples(self, split: str = "train") -> np.ndarray:
        """The (n, 3) int64 array of (head, relation, tail) ids of one split."""
        if split not in self.splits:
            raise InputError(f"unknown split {split!r}; this graph has {sorted(self.splits)}")
        return self.splits[split]

    def has_triples(self, split: str) -> bool:
        """Whether the graph has split ``split`` and it holds at least one triple."""
        return len(self.splits.get(split, ())) > 0

    def all_triples(self) -> np.ndarray:
        """Train, valid and test triples stacked (in that order)."""
        return np.concatenate([self.splits[s] for s in SPLITS], axis=0)

    # ------------------------------------------------------------------ text
    def label(self, i: int, languages: Sequence[str] | None = None) -> str:
        """Preferred display label: first label (else alias) in the language order, else the readable key."""
        e = self.entities[i]
        texts = pick_texts(e.labels, languages) or pick_texts(e.aliases, languages)
        return texts[0] if texts else readable_key(e.key)

    def description(self, i: int, languages: Sequence[str] | None = None) -> str:
        """Preferred description ("" when none)."""
        texts = pick_texts(self.entities[i].descriptions, languages)
        return texts[0] if texts else ""

    def entity_text(
        self, i: int, languages: Sequence[str] | None = None, template: str | Callable | None = None
    ) -> str:
        """The text to embed for entity ``i``.

        Default: ``"<label>: <description>"`` (just the label when there is no description), each picked in the
        language order (English, untagged, then any other). ``template`` is a ``str.format`` pattern with the
        fields ``label``, ``description``, ``aliases``, ``types``, ``key``, or a callable ``(graph, i, languages)``.
        """
        if callable(template):
            return str(template(self, i, languages))
        label = self.label(i, languages)
        desc = self.description(i, languages)
        if template is None:
            return f"{label}: {desc}" if desc and desc != label else label
        e = self.entities[i]
        fields = {
            "label": label,
            "description": desc,
            "aliases": ", ".join(pick_texts(e.aliases, languages)),
            "types": ", ".join(readable_key(t) for t in e.types),
            "key": e.key,
        }
        try:
            text = template.format(**fields)
        except (KeyError, IndexError, ValueError) as exc:
            raise InputError(
                f"entity text template {template!r} is invalid ({exc}); use the fields {sorted(fields)}"
            ) from None
        return clean_text(text).rstrip(" :;,-|") or label

    def entity_texts(
        self, languages: Sequence[str] | None = None, template: str | Callable | None = None
    ) -> list[str]:
        """:meth:`entity_text` for every entity, in id order."""
        return [self.entity_text(i, languages, template) for i in range(self.num_entities)]

    def entity_views(self, i: int, languages: Sequence[str] | None = None) -> list[str]:
        """Distinct texts of an entity: every label (languages in preference order), then every description.
        Never empty: an entity without text gives its readable key."""
        e = self.entities[i]
        views: list[str] = []
        for source in (e.labels, e.descriptions):
            for lang in language_order(source, languages):
                views.extend(t for t in source[lang] if t not in views)
        return views or [self.label(i, languages)]

    def relation_text(self, r: int, languages: Sequence[str] | None = None) -> str:
        """Readable name of relation ``r``: its label in the language order, else its key made readable."""
        texts = pick_texts(self.relation_labels[r], languages)
        return texts[0] if texts else readable_key(self.relations[r])

    # ------------------------------------------------------------------ look-up
    def _names(self) -> dict[str, list[int]]:
        if self._name_index is None:
            index: dict[str, list[int]] = {}

            def add(text: str, i: int) -> None:
                ids = index.setdefault(normalize_name(text), [])
                if not ids or ids[-1] != i:
                    ids.append(i)

            for i, e in enumerate(self.entities):
                add(e.key, i)
                for d in (e.labels, e.aliases):
                    for texts in d.values():
                        for t in texts:
                            add(t, i)
                if not e.labels and not e.aliases:
                    add(readable_key(e.key), i)
            self._name_index = index
        return self._name_index

    def lookup(self, name: str) -> list[int]:
        """Entity ids for a key, IRI (``<...>`` allowed) or label/alias in any language, compared case- and
        whitespace-insensitively; ``[]`` when nothing matches, several ids when a label is ambiguous."""
        name = name.strip()
        if name.startswith("<") and name.endswith(">"):
            name = name[1:-1]
        if name in self._entity_index:
            return [self._entity_index[name]]
        return sorted(self._names().get(normalize_name(name), []))

    # ------------------------------------------------------------------ splits
    def split(
        self, valid: float = 0.1, test: float = 0.1, seed: int = 0, inductive: bool = False
    ) -> KnowledgeGraph:
        """A new graph with all triples re-split deterministically by ``seed``.

        Transductive (default): every valid/test entity and relation also occurs in train (triples that would
        break this move to train, so the held-out fractions can come out a little smaller). ``inductive=True``:
        whole entities are held out, and no test or valid entity appears in any training triple.
        """
        from kgemb.splitting import inductive_split, transductive_split

        triples = self.all_triples()
        info: dict[str, Any] = {"seed": seed, "valid": valid, "test": test, "inductive": inductive}
        if inductive:
            splits, held = inductive_split(triples, self.num_entities, valid, test, seed)
            info["held_out_entities"] = {k: len(v) for k, v in held.items()}
        else:
            splits = transductive_split(triples, self.num_entities, self.num_relations, valid, test, seed)
        info["counts"] = {k: len(v) for k, v in splits.items()}
        return KnowledgeGraph(
            self.entities, self.relations, self.relation_labels, splits, {**self.metadata, "split": info}
        )

    # ------------------------------------------------------------------ conversions
    def to_triples_factory(self, split: str = "train", **kwargs: Any) -> pykeen.triples.TriplesFactory:
        """A PyKEEN ``TriplesFactory`` of one split with exactly this graph's entity and relation ids."""
        import torch
        from pykeen.triples import TriplesFactory

        return TriplesFactory(
            mapped_triples=torch.as_tensor(self.triples(split), dtype=torch.long),
            entity_to_id={e.key: i for i, e in enumerate(self.entities)},
            relation_to_id={r: i for i, r in enumerate(self.relations)},
            num_entities=self.num_entities,
            num_relations=self.num_relations,
            **kwargs,
        )

    def to_networkx(self) -> networkx.MultiDiGraph:
        """A ``MultiDiGraph`` keyed by entity key; nodes carry ``id`` and the texts, edges ``relation`` and
        ``split`` (edge key = relation key); :meth:`from_networkx` restores the same ids."""
        import networkx as nx

        g = nx.MultiDiGraph(
            relations=list(self.relations),
            relation_labels=[dict(d) for d in self.relation_labels],
            metadata=dict(self.metadata),
        )
        for i, e in enumerate(self.entities):
            g.add_node(
                e.key,
                id=i,
                labels=e.labels,
                aliases=e.aliases,
                descriptions=e.descriptions,
                types=e.types,
                attributes=e.attributes,
            )
        keys = [e.key for e in self.entities]
        for name, arr in self.splits.items():
            for h, r, t in arr.tolist():
                rel = self.relations[r]
                g.add_edge(keys[h], keys[t], key=rel, relation=rel, split=name)
        return g

    @classmethod
    def from_triples_factory(
        cls, factory: pykeen.triples.TriplesFactory, split: str = "train"
    ) -> KnowledgeGraph:
        """A graph from a PyKEEN ``TriplesFactory`` (its labels become keys, ids kept), all triples in ``split``;
        a ``TriplesNumericLiteralsFactory`` or any subclass works the same."""
        builder = GraphBuilder()
        entity_to_id = getattr(factory, "entity_to_id", None) or {
            str(i): i for i in range(factory.num_entities)
        }
        relation_to_id = getattr(factory, "relation_to_id", None) or {
            str(i): i for i in range(factory.num_relations)
        }
        for key, _ in sorted(entity_to_id.items(), key=lambda item: item[1]):
            builder.add_entity(str(key))
        for key, _ in sorted(relation_to_id.items(), key=lambda item: item[1]):
            builder.add_relation(str(key))
        for h, r, t in factory.mapped_triples.tolist():
            builder.add_triple_ids(h, r, t, split)
        return builder.build({"source": f"pykeen.{type(factory).__name__}"})

    @classmethod
    def from_networkx(cls, g: networkx.Graph) -> KnowledgeGraph:
        """A graph from any networkx graph. Node keys are ``str(node)``; texts come from the node attributes
        ``labels``/``descriptions``/... (as :meth:`to_networkx` writes them) or a plain ``label``/``name``; an
        edge's relation is its ``relation``, ``label`` or ``type`` attribute, else its multigraph key, else
        ``related_to``; its split is the ``split`` attribute (default train)."""
        nodes = list(g.nodes(data=True))
        if nodes and all(isinstance(d.get("id"), int) for _, d in nodes):
            nodes.sort(key=lambda nd: nd[1]["id"])
        builder = GraphBuilder()
        for node, data in nodes:
            key = str(node)
            builder.add_entity(key)
            for kind, attr in (("label", "labels"), ("alias", "aliases"), ("description", "descriptions")):
                for lang, texts in (data.get(attr) or {}).items():
                    for text in texts:
                        builder.add_label(key, text, lang, kind)
            for attr in ("label", "name"):
                if isinstance(data.get(attr), str):
                    builder.add_label(key, data[attr])
            if isinstance(data.get("description"), str):
                builder.add_label(key, data["description"], kind="description")
            for t in data.get("types") or ():
                builder.add_type(key, t)
            for name, values in (data.get("attributes") or {}).items():
                for value in values:
                    builder.add_attribute(key, name, value)
        relations = list(g.graph.get("relations") or [])
        relation_labels = list(g.graph.get("relation_labels") or [])
        for r, key in enumerate(relations):
            builder.add_relation(key, relation_labels[r] if r < len(relation_labels) else None)
        edges = (
            g.edges(keys=True, data=True)
            if g.is_multigraph()
            else ((u, v, None, d) for u, v, d in g.edges(data=True))
        )
        for u, v, k, data in edges:
            rel = data.get("relation") or data.get("label") or data.get("type")
            if rel is None:
                rel = k if isinstance(k, str) else "related_to"
            builder.add_triple(str(u), str(rel), str(v), data.get("split", "train"))
        return builder.build(dict(g.graph.get("metadata") or {}))

    # ------------------------------------------------------------------ save / load
    def save(self, directory: str | os.PathLike) -> None:
        """Write ``graph.json`` (entities, relations, metadata) and one ``triples_<split>.npy`` per split; each
        file is written to a temporary name and renamed, ``graph.json`` last."""
        out = Path(directory)
        out.mkdir(parents=True, exist_ok=True)
        for name, arr in self.splits.items():
            write_atomic(out / f"triples_{name}.npy", lambda f, a=arr: np.save(f, a, allow_pickle=False))
        doc = {
            "format": FORMAT,
            "entities": [e.to_json() for e in self.entities],
            "relations": self.relations,
            "relation_labels": self.relation_labels,
            "splits": list(self.splits),
            "metadata": self.metadata,
        }
        payload = json.dumps(doc, ensure_ascii=False).encode("utf-8")
        write_atomic(out / _GRAPH_JSON, lambda f: f.write(payload))

    @classmethod
    def load(cls, directory: str | os.PathLike) -> KnowledgeGraph:
        """Read a graph written by :meth:`save` (JSON and ``.npy`` only, never pickle)."""
        src = Path(directory)
        path = src / _GRAPH_JSON
        if not path.is_file():
            raise InputError(
                f"{src} holds no saved knowledge graph ({_GRAPH_JSON} is missing); save one first"
            )
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise InputError(
                f"{path} is not a valid kgemb graph file ({exc}); save the graph again"
            ) from None
        if not isinstance(doc, dict) or doc.get("format") != FORMAT:
            found = doc.get("format") if isinstance(doc, dict) else type(doc).__name__
            raise InputError(f"{path} has format {found!r}, expected {FORMAT!r}; save the graph again")
        for field_name, kind in (("splits", list | dict), ("entities", list), ("relations", list),
                                 ("relation_labels", list), ("metadata", dict | None)):  # fmt: skip
            if not isinstance(doc.get(field_name), kind) and not (
                field_name == "metadata" and field_name not in doc
            ):
                raise InputError(
                    f"{path}: field {field_name!r} is missing or not a {'list' if kind is list else 'JSON object'}; "
                    "this is not a graph kgemb saved: save the graph again"
                )
        splits = {}
        for name in doc["splits"]:
            if name not in SPLITS:
                raise InputError(
                    f"{path}: field 'splits' names {name!r}, not one of {list(SPLITS)}; save again"
                )
            npy = src / f"triples_{name}.npy"
            try:
                splits[name] = np.load(npy, allow_pickle=False)
            except (OSError, ValueError) as exc:
                raise InputError(f"{npy} cannot be read ({exc}); save the graph again") from None
        try:
            entities = [Entity.from_json(e) for e in doc["entities"]]
        except (KeyError, TypeError, AttributeError, ValueError) as exc:
            raise InputError(
                f"{path}: an item of field 'entities' is malformed ({type(exc).__name__}: {exc}); save the graph again"
            ) from None
        return cls(entities, doc["relations"], doc["relation_labels"], splits, doc.get("metadata") or {})


@contextlib.contextmanager
def gc_paused() -> Iterator[None]:
    """Python's cyclic garbage collector off for a bulk build: it would pass over every entity made so far each
    few hundred allocations (a third of a large pull's time), and a build makes no cycles to free."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


class _EntityIds(dict):
    """Entity key -> id; looking a new key up with ``[]`` adds the entity (:meth:`GraphBuilder.add_entities`)."""

    __slots__ = ("entities",)

    def __init__(self, entities: list[Entity]) -> None:
        super().__init__()
        self.entities = entities

    def __missing__(self, key: str) -> int:
        i = self[key] = len(self.entities)
        self.entities.append(Entity(key))
        return i


class GraphBuilder:
    """Collects entities, texts and triples by key (what connectors call), then :meth:`build` numbers them.

    Entities and relations get ids in first-seen order. Duplicate triples (also across splits: the first one
    wins) are dropped at build time and counted in ``metadata["duplicates_dropped"]``.
    """

    def __init__(self) -> None:
        self._entities: list[Entity] = []
        self._entity_ids: dict[str, int] = _EntityIds(self._entities)
        self._relation_ids: dict[str, int] = {}
        self._relation_labels: list[dict[str, list[str]]] = []
        self._triples: dict[str, array] = {}
        self._types: dict[str, str] = {}

    @property
    def num_entities(self) -> int:
        return len(self._entities)

    @property
    def num_triples(self) -> int:
        return sum(len(a) for a in self._triples.values()) // 3

    def has_entity(self, key: str) -> bool:
        return key in self._entity_ids

    def has_relation(self, key: str) -> bool:
        return key in self._relation_ids

    def relation_keys(self) -> list[str]:
        """Relation keys in id order."""
        return list(self._relation_ids)

    def connected_entities(self) -> np.ndarray:
        """Boolean mask by entity id: True where the entity is the head or tail of some triple so far."""
        mask = np.zeros(len(self._entities), dtype=bool)
        for buf in self._triples.values():
            arr = np.frombuffer(buf, dtype=np.int64).reshape(-1, 3)
            mask[arr[:, 0]] = True
            mask[arr[:, 2]] = True
        return mask

    def entities(self) -> list[Entity]:
        """The entities so far, in id order (the builder's own list: read it, do not change it)."""
        return self._entities

    def entity(self, key: str) -> Entity:
        """The entity being built for ``key`` (created if new)."""
        return self._entities[self.add_entity(key)]

    def add_entity(self, key: str) -> int:
        """Id of the entity ``key``, creating it if new."""
        return self._entity_ids[key]  # a new key is added by _EntityIds.__missing__

    def add_entities(self, keys: Sequence[str]) -> np.ndarray:
        """Ids of the entities ``keys`` (the bulk form of :meth:`add_entity`): new ones numbered in the order of
        ``keys``, one dict lookup per key and no Python call but for a new entity."""
        return np.fromiter(map(self._entity_ids.__getitem__, keys), dtype=np.int64, count=len(keys))

    def add_label(self, key: str, text: str, lang: str | None = "", kind: str = "label") -> None:
        """Add a text of ``kind`` label, alias or description (whitespace tidied; empty and repeated texts skipped)."""
        if kind not in TEXT_KINDS:
            raise InputError(f"text kind {kind!r} is unknown; use one of {', '.join(TEXT_KINDS)}")
        text = clean_text(text)
        if text:
            _store_text(self.entity(key), kind, normalize_language(lang), text)

    def add_text_column(
        self, entity_ids: Sequence[int], values: Sequence[Any], lang: str | None = "", kind: str = "label"
    ) -> None:
        """:meth:`add_label` for many entities at once: ``values[i]`` (a string, a list of strings, or None) to
        the entity ``entity_ids[i]``; anything that is not a string is skipped (a property read from a database)."""
        if kind not in TEXT_KINDS:
            raise InputError(f"text kind {kind!r} is unknown; use one of {', '.join(TEXT_KINDS)}")
        entities = self._entities
        lang = normalize_language(lang)
        for entity_id, value in zip(entity_ids, values, strict=True):
            if value is None:
                continue
            for text in (value,) if isinstance(value, str) else value if isinstance(value, list) else ():
                if isinstance(text, str):
                    text = clean_text(text)
                    if text:
                        _store_text(entities[entity_id], kind, lang, text)

    def add_texts(
        self, entity_ids: Sequence[int], kinds: Sequence[str], langs: Sequence[str], texts: Sequence[str]
    ) -> None:
        """:meth:`add_label` for many statements, in order, by entity id: ``texts`` already tidied by
        :func:`kgemb.names.clean_text` (empty ones skipped) and ``langs`` by :func:`~kgemb.names.normalize_language`."""
        unknown = set(kinds) - set(TEXT_KINDS)
        if unknown:  # checked before any text is stored
            raise InputError(f"text kind {min(unknown)!r} is unknown; use one of {', '.join(TEXT_KINDS)}")
        entities = self._entities
        for i, kind, lang, text in zip(entity_ids, kinds, langs, texts, strict=True):
            if text:
                _store_text(entities[i], kind, lang, text)

    def add_type(self, key: str, type_key: str) -> None:
        self.add_types([self.add_entity(key)], [type_key])

    def add_types(self, entity_ids: Sequence[int], type_keys: Sequence[str]) -> None:
        """:meth:`add_type` for many statements, in order, by entity id."""
        entities, types = self._entities, self._types
        for i, type_key in zip(entity_ids, type_keys, strict=True):
            e = entities[i]
            if type_key not in e.types:
                e.types.append(types.setdefault(type_key, type_key))  # one string object per type

    def add_attribute(self, key: str, name: str, value: str) -> None:
        self.add_attributes([self.add_entity(key)], [name], [value])

    def add_attributes(self, entity_ids: Sequence[int], names: Sequence[str], values: Sequence[str]) -> None:
        """:meth:`add_attribute` for many statements, in order, by entity id."""
        entities = self._entities
        for i, name, value in zip(entity_ids, names, values, strict=True):
            found = entities[i].attributes.setdefault(name, [])
            if value not in found:
                found.append(value)

    def add_relation(self, key: str, labels: dict[str, list[str]] | None = None) -> int:
        """Id of relation ``key`` (created if new), merging any ``labels`` given (language -> texts)."""
        r = self._relation_ids.get(key)
        if r is None:
            r = self._relation_ids[key] = len(self._relation_labels)
            self._relation_labels.append({})
        for lang, texts in (labels or {}).items():
            target = self._relation_labels[r].setdefault(normalize_language(lang), [])
            for text in texts:
                text = clean_text(text)
                if text and text not in target:
                    target.append(text)
        return r

    def add_triple(self, head_key: str, relation_key: str, tail_key: str, split: str = "train") -> None:
        """Record a (head, relation, tail) triple by keys, creating entities and relation as needed."""
        ids = self._entity_ids
        h = ids.get(head_key)
        if h is None:
            h = self.add_entity(head_key)
        t = ids.get(tail_key)
        if t is None:
            t = self.add_entity(tail_key)
        r = self._relation_ids.get(relation_key)
        if r is None:
            r = self.add_relation(relation_key)
        self.add_triple_ids(h, r, t, split)

    def add_triple_id_rows(self, rows: np.ndarray, split: str = "train") -> None:
        """Record many triples at once as ``(n, 3)`` rows of ids already returned by :meth:`add_entity` /
        :meth:`add_relation`, in order (the bulk form of :meth:`add_triple_ids`)."""
        rows = np.asarray(rows, dtype=np.int64).reshape(-1, 3)
        if len(rows) and (
            rows[:, [0, 2]].min() < 0
            or rows[:, [0, 2]].max() >= len(self._entities)
            or rows[:, 1].min() < 0
            or rows[:, 1].max() >= len(self._relation_labels)
        ):
            raise InputError("add_triple_id_rows: an id is not one the builder has given out")
        buf = self._triples.get(split)
        if buf is None:
            buf = self._triples[split] = array("q")
        buf.frombytes(np.ascontiguousarray(rows).tobytes())

    def add_triple_ids(self, h: int, r: int, t: int, split: str = "train") -> None:
        """Record a triple by ids already returned by :meth:`add_entity` / :meth:`add_relation` (fast path)."""
        buf = self._triples.get(split)
        if buf is None:
            buf = self._triples[split] = array("q")
        buf.append(h)
        buf.append(r)
        buf.append(t)

    def build(
        self,
        metadata: dict | None = None,
        entity_filter: Callable[[Entity], bool] | None = None,
        *,
        keep: np.ndarray | None = None,
    ) -> KnowledgeGraph:
        """The finished graph. ``entity_filter`` keeps only entities it accepts (and triples between them),
        renumbering in first-seen order; ``keep`` does the same with a boolean mask by entity id (no call per
        entity)."""
        entities = self._entities
        relations = list(self._relation_ids)
        relation_labels = self._relation_labels
        raw = {
            name: np.frombuffer(buf, dtype=np.int64).reshape(-1, 3)  # views; the results below are copies
            for name, buf in self._triples.items()
        }
        meta = dict(metadata or {})
        if entity_filter is not None and keep is not None:
            raise InputError("build: give entity_filter or keep, not both")
        if entity_filter is not None:
            keep = np.fromiter((bool(entity_filter(e)) for e in entities), dtype=bool, count=len(entities))
        if keep is not None:
            keep = np.asarray(keep, dtype=bool)
            if keep.shape != (len(entities),):
                raise InputError(
                    f"build: keep has shape {keep.shape}, not ({len(entities)},): one flag per entity"
                )
            new_id = np.cumsum(keep) - 1
            dropped = 0
            for name, arr in raw.items() if not keep.all() else ():
                ok = keep[arr[:, 0]] & keep[arr[:, 2]]
                dropped += int((~ok).sum())
                arr = arr[ok]  # a copy, renumbered in place
                arr[:, 0] = new_id[arr[:, 0]]
                arr[:, 2] = new_id[arr[:, 2]]
                raw[name] = arr
            entities = list(compress(entities, keep.tolist()))
            meta["filtered_out"] = {"entities": int((~keep).sum()), "triples": dropped}
        splits, duplicates = _deduplicate(raw, len(entities), len(relations))
        meta["duplicates_dropped"] = duplicates
        return KnowledgeGraph(entities, relations, relation_labels, splits, meta)


def _store_text(entity: Entity, kind: str, lang: str, text: str) -> None:
    """Keep a tidied, non-empty ``text`` of ``kind`` in ``lang`` unless the entity has it already."""
    target = entity.labels if kind == "label" else entity.aliases if kind == "alias" else entity.descriptions
    texts = target.get(lang)
    if texts is None:
        target[lang] = [text]
    elif text not in texts:
        texts.append(text)


def _deduplicate(raw: dict[str, np.ndarray], num_entities: int, num_relations: int) -> tuple[dict, int]:
    """Drop repeated triples, keeping the first (splits in train, valid, test, then other order). Works on one
    int64 code per triple rather than on stacked rows, so large graphs need little extra memory; returns copies."""
    order = [s for s in SPLITS if s in raw] + [s for s in raw if s not in SPLITS]
    total = sum(len(raw[s]) for s in order)
    if total == 0:
        return {s: np.array(raw[s], dtype=np.int64).reshape(-1, 3) for s in order}, 0
    n_e, n_r = max(num_entities, 1), max(num_relations, 1)
    if float(n_e) * n_e * n_r < 2**62:
        codes = np.concatenate([(raw[s][:, 0] * n_r + raw[s][:, 1]) * n_e + raw[s][:, 2] for s in order])
        _, first = np.unique(codes, return_index=True)
        del codes
    else:
        _, first = np.unique(np.concatenate([raw[s] for s in order]), axis=0, return_index=True)
    keep = np.zeros(total, dtype=bool)
    keep[first] = True
    out, start = {}, 0
    for s in order:
        n = len(raw[s])
        out[s] = raw[s][keep[start : start + n]]
        start += n
    return out, int(total - len(first))


def as_graph(value: Any) -> KnowledgeGraph:
    """``value`` as a KnowledgeGraph: itself, or converted from a PyKEEN ``TriplesFactory``; anything else is
    refused with a message naming what is accepted."""
    if isinstance(value, KnowledgeGraph):
        return value
    if hasattr(value, "mapped_triples") and hasattr(value, "num_entities"):
        return KnowledgeGraph.from_triples_factory(value)
    raise InputError(
        f"cannot train on a {type(value).__name__}: pass a kgemb.KnowledgeGraph (rdf.load, tabular.load, "
        "neo4j.pull) or a PyKEEN TriplesFactory"
    )
