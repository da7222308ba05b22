"""KnowledgeGraph and GraphBuilder: ids, texts by language, look-up, splits, PyKEEN / networkx / disk round trips."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from kgemb import GraphBuilder, KgembError, KnowledgeGraph
from kgemb.names import readable_key

EX = "http://example.org/med#"


def medical() -> KnowledgeGraph:
    b = GraphBuilder()
    b.add_label(EX + "Fever", "Fever", "en")
    b.add_label(EX + "Fever", "发烧", "zh")
    b.add_label(EX + "Fever", "Fieber", "de")
    b.add_label(EX + "Fever", "Fièvre", "fr")
    b.add_label(EX + "Fever", "pyrexia", "en", kind="alias")
    b.add_label(EX + "Fever", "A body temperature above normal.", "en", kind="description")
    b.add_label(EX + "Fever", "Körpertemperatur über dem Normalwert.", "de", kind="description")
    b.add_label(EX + "Flu", "Influenza", "en")
    b.add_label(EX + "Flu", "Grippe", "de")
    b.add_label(EX + "Flu", "Grippe", "fr")
    b.add_label(EX + "Cold", "Grippe", "")  # same label as Flu: an ambiguous name
    b.add_type(EX + "Fever", EX + "Symptom")
    b.add_attribute(EX + "Fever", "icd10", "R50.9")
    b.add_relation(EX + "symptomOf", {"en": ["symptom of"], "de": ["Symptom von"]})
    b.add_triple(EX + "Fever", EX + "symptomOf", EX + "Flu")
    b.add_triple(EX + "Fever", EX + "symptomOf", EX + "Flu")  # duplicate
    b.add_triple(EX + "Cough", EX + "symptomOf", EX + "Cold", split="test")
    b.add_triple(EX + "Cough", EX + "symptomOf", EX + "Flu")
    b.add_triple(EX + "Fever", EX + "symptomOf", EX + "Cold", split="valid")
    b.add_triple(EX + "Fever", EX + "symptomOf", EX + "Flu", split="test")  # duplicate across splits
    return b.build({"source": "test"})


def test_ids_are_first_seen_and_duplicates_counted() -> None:
    kg = medical()
    assert [e.key for e in kg.entities] == [EX + "Fever", EX + "Flu", EX + "Cold", EX + "Cough"]
    assert kg.relations == [EX + "symptomOf"]
    assert kg.num_entities == 4 and kg.num_relations == 1
    assert kg.triples().tolist() == [[0, 0, 1], [3, 0, 1]]
    assert kg.triples("valid").tolist() == [[0, 0, 2]]
    assert kg.triples("test").tolist() == [[3, 0, 2]]
    assert kg.metadata["duplicates_dropped"] == 2
    assert kg.all_triples().shape == (4, 3) and kg.all_triples().dtype == np.int64
    assert kg.entity_id(EX + "Cough") == 3
    with pytest.raises(KgembError, match="Nope"):
        kg.entity_id("Nope")
    with pytest.raises(KgembError, match="unknown split 'dev'"):
        kg.triples("dev")


def test_entity_text_language_order_and_template() -> None:
    kg = medical()
    assert kg.entity_text(0) == "Fever: A body temperature above normal."
    assert kg.entity_text(0, languages=["de"]) == "Fieber: Körpertemperatur über dem Normalwert."
    # French label, no French description: falls back to English (the default order) for the description
    assert kg.entity_text(0, languages=["fr"]) == "Fièvre: A body temperature above normal."
    assert kg.entity_text(0, languages=["zh"]).startswith("发烧: ")
    assert kg.entity_text(1, languages=["es"]) == "Influenza"  # no Spanish: falls back to English
    assert kg.entity_text(2) == "Grippe"  # untagged only
    assert kg.entity_text(0, template="{label} ({aliases}) [{types}]") == "Fever (pyrexia) [Symptom]"
    assert kg.entity_text(1, template="{label}: {description}") == "Influenza"
    with pytest.raises(KgembError, match="template"):
        kg.entity_text(0, template="{nope}")
    assert kg.entity_texts() == [kg.entity_text(i) for i in range(4)]
    assert kg.label(0, ["zh"]) == "发烧"


def test_no_text_entities_get_a_readable_key() -> None:
    kg = medical()
    assert kg.no_text_count == 1
    assert kg.entity_text(3) == "Cough"
    assert kg.entity_views(3) == ["Cough"]
    assert readable_key("http://ex.org/onto#HeartAttack") == "Heart Attack"
    assert readable_key("http://ex.org/dis/Crohn%27s_disease") == "Crohn's disease"
    assert readable_key("http://ex.org/things/") == "things"
    assert readable_key("_member_of_domain_usage") == "member of domain usage"
    assert readable_key("urn:isbn:0451450523") == "0451450523"


def test_entity_views_are_distinct_labels_then_descriptions() -> None:
    kg = medical()
    views = kg.entity_views(0)
    assert views[0] == "Fever"
    assert set(views) == {
        "Fever",
        "发烧",
        "Fieber",
        "Fièvre",
        "A body temperature above normal.",
        "Körpertemperatur über dem Normalwert.",
    }
    assert kg.entity_views(1) == ["Influenza", "Grippe"]  # de and fr share "Grippe": once


def test_lookup_by_key_iri_and_label_in_any_language() -> None:
    kg = medical()
    assert kg.lookup(EX + "Fever") == [0]
    assert kg.lookup(f"<{EX}Fever>") == [0]
    assert kg.lookup("fieber") == [0]
    assert kg.lookup(" 发烧 ") == [0]
    assert kg.lookup("FIÈVRE") == [0]
    assert kg.lookup("Pyrexia") == [0]
    assert kg.lookup("grippe") == [1, 2]  # ambiguous: all candidates
    assert kg.lookup("cough") == [3]  # readable key of an entity without text
    assert kg.lookup("nothing like this") == []


def test_relation_id_by_key_or_label() -> None:
    kg = medical()
    assert kg.relation_id(EX + "symptomOf") == 0
    assert kg.relation_id("Symptom von") == 0
    assert kg.relation_id("symptom of") == 0
    assert kg.relation_text(0) == "symptom of"
    with pytest.raises(KgembError, match="known relations: 'symptom of'"):
        kg.relation_id("treats")


def chain_graph(n: int = 300, seed: int = 1) -> KnowledgeGraph:
    rng = np.random.default_rng(seed)
    b = GraphBuilder()
    for _ in range(n * 4):
        h, t = rng.integers(0, n, size=2)
        b.add_triple(f"e{h}", f"r{rng.integers(0, 5)}", f"e{t}")
    return b.build()


def test_transductive_split_is_deterministic_and_covered() -> None:
    kg = chain_graph()
    a, b, c = kg.split(seed=3), kg.split(seed=3), kg.split(seed=4)
    for name in ("train", "valid", "test"):
        assert np.array_equal(a.triples(name), b.triples(name))
    assert not np.array_equal(a.triples("test"), c.triples("test"))
    total = len(kg.all_triples())
    assert sum(len(a.triples(s)) for s in ("train", "valid", "test")) == total
    assert 0.05 * total < len(a.triples("test")) <= 0.1 * total + 1
    train = a.triples("train")
    seen_e = set(train[:, 0]) | set(train[:, 2])
    seen_r = set(train[:, 1])
    for s in ("valid", "test"):
        held = a.triples(s)
        assert set(held[:, 0]) | set(held[:, 2]) <= seen_e
        assert set(held[:, 1]) <= seen_r
    assert a.metadata["split"]["seed"] == 3


def test_inductive_split_keeps_test_entities_out_of_training() -> None:
    kg = chain_graph()
    ind = kg.split(valid=0.1, test=0.2, seed=0, inductive=True)
    train = ind.triples("train")
    train_entities = set(train[:, 0].tolist()) | set(train[:, 2].tolist())
    for s in ("valid", "test"):
        held = ind.triples(s)
        assert len(held) > 0
        new = {e for h, _, t in held.tolist() for e in (h, t) if e not in train_entities}
        assert new, f"{s} must contain unseen entities"
        # every held-out triple touches at least one entity that training never sees
        assert all(h not in train_entities or t not in train_entities for h, _, t in held.tolist())
    assert ind.metadata["split"]["held_out_entities"]["test"] > 0
    with pytest.raises(KgembError, match="split fractions"):
        kg.split(valid=0.6, test=0.5)


def test_triples_factory_keeps_ids() -> None:
    kg = medical()
    tf = kg.to_triples_factory()
    assert tf.num_entities == kg.num_entities and tf.num_relations == kg.num_relations
    assert tf.entity_to_id == {e.key: i for i, e in enumerate(kg.entities)}
    assert tf.relation_to_id == {EX + "symptomOf": 0}
    assert tf.mapped_triples.tolist() == kg.triples().tolist()
    assert kg.to_triples_factory("test").mapped_triples.tolist() == kg.triples("test").tolist()


def assert_same(a: KnowledgeGraph, b: KnowledgeGraph) -> None:
    assert [e for e in a.entities] == [e for e in b.entities]
    assert a.relations == b.relations and a.relation_labels == b.relation_labels
    for s in ("train", "valid", "test"):
        assert a.triples(s).tolist() == b.triples(s).tolist()


def test_networkx_round_trip() -> None:
    kg = medical()
    g = kg.to_networkx()
    assert g.number_of_nodes() == 4 and g.number_of_edges() == 4
    assert g.nodes[EX + "Fever"]["labels"]["zh"] == ["发烧"]
    back = KnowledgeGraph.from_networkx(g)
    assert_same(kg, back)


def test_from_plain_networkx_graph() -> None:
    import networkx as nx

    g = nx.DiGraph()
    g.add_node("a", name="Alpha")
    g.add_edge("a", "b", label="knows")
    g.add_edge("b", "c")
    kg = KnowledgeGraph.from_networkx(g)
    assert [e.key for e in kg.entities] == ["a", "b", "c"]
    assert kg.relations == ["knows", "related_to"]
    assert kg.label(0) == "Alpha"


def test_save_load_round_trip(tmp_path: Path) -> None:
    kg = medical()
    kg.save(tmp_path / "g")
    assert not list((tmp_path / "g").glob("*.tmp"))
    back = KnowledgeGraph.load(tmp_path / "g")
    assert_same(kg, back)
    assert back.metadata["source"] == "test"
    with pytest.raises(KgembError, match="no saved knowledge graph"):
        KnowledgeGraph.load(tmp_path / "missing")


def test_entity_filter_renumbers() -> None:
    b = GraphBuilder()
    b.add_type("x", "Keep")
    b.add_type("y", "Keep")
    b.add_triple("x", "r", "junk")
    b.add_triple("x", "r", "y")
    kg = b.build(entity_filter=lambda e: "Keep" in e.types)
    assert [e.key for e in kg.entities] == ["x", "y"]
    assert kg.triples().tolist() == [[0, 0, 1]]
    assert kg.metadata["filtered_out"] == {"entities": 1, "triples": 1}


def test_clean_text_collapses_every_unicode_whitespace_like_the_regex() -> None:
    import re
    import sys

    from kgemb.names import clean_text

    spaces = "".join(chr(c) for c in range(sys.maxunicode + 1) if re.fullmatch(r"\s", chr(c)))
    assert len(spaces) > 20  # tabs, newlines, no-break and ideographic spaces ...
    for text in (f"{spaces}a{spaces}b c\u3000d{spaces}", "  x  ", "", spaces, "plain"):
        assert clean_text(text) == re.sub(r"\s+", " ", text).strip()


def test_add_text_column_keeps_what_add_label_keeps() -> None:
    values = ["  a  b ", None, ["x", 3, " x ", "", "y"], 7, "", "a b"]
    column, one_by_one = GraphBuilder(), GraphBuilder()
    ids = [column.add_entity(f"e{i % 4}") for i in range(len(values))]
    column.add_text_column(ids, values, "EN", "alias")
    for i, value in enumerate(values):
        one_by_one.add_entity(f"e{i % 4}")
        for text in value if isinstance(value, list) else [value]:
            if isinstance(text, str):
                one_by_one.add_label(f"e{i % 4}", text, "EN", "alias")
    assert [e.to_json() for e in column.build().entities] == [
        e.to_json() for e in one_by_one.build().entities
    ]
    assert column.build().entities[2].aliases == {"en": ["x", "y"]}
    with pytest.raises(KgembError, match="text kind 'name' is unknown"):
        column.add_text_column(ids, values, "", "name")
