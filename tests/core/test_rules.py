"""Rule mining and the rule score: exact confidences on a handmade graph, ranking, save/load, UMLS quality."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from kgemb.errors import InputError
from kgemb.rules import PATH3, RuleSet, rule_metrics

PARENT, CHILD, GRAND = 0, 1, 2  # forward relations; +3 is the inverse
NAMES = ["parent_of", "child_of", "grandparent_of"]
R = 3


def family() -> np.ndarray:
    """Two families; child_of is the inverse of parent_of with one link missing (6 child_of 2), and
    grandparent_of holds for 3 of the 5 parent-of-parent paths (0 -> 6 and 7 -> 9 missing)."""
    parent = [(0, 1), (0, 2), (1, 3), (1, 4), (2, 5), (2, 6), (7, 8), (8, 9)]
    child = [(c, p) for p, c in parent if (c, p) != (6, 2)]
    grand = [(0, 3), (0, 4), (0, 5)]
    return np.array(
        [(h, PARENT, t) for h, t in parent]
        + [(h, CHILD, t) for h, t in child]
        + [(h, GRAND, t) for h, t in grand]
    )


def find(rs: RuleSet, head: int, kind: int, b: int, u: int = -1, v: int = -1) -> np.ndarray:
    t = rs.rules
    return np.flatnonzero(
        (t[:, 0] == head) & (t[:, 1] == kind) & (t[:, 2] == b) & (t[:, 3] == u) & (t[:, 4] == v)
    )


def rule(rs: RuleSet, head: int, kind: int, b: int, u: int = -1, v: int = -1) -> int:
    hits = find(rs, head, kind, b, u, v)
    assert len(hits) == 1, f"rule {(head, kind, b, u, v)} not found once"
    return int(hits[0])


def test_inverse_and_path_rules_have_their_confidence() -> None:
    rs = RuleSet.mine(family(), 10, R, relation_names=NAMES, constants=False)
    # child_of(X,Y) <= parent_of(Y,X): 8 body pairs, 7 of them child_of -> 7 / (8 + 5)
    i = rule(rs, CHILD, 0, PARENT + R)
    assert (rs.support[i], rs.body_support[i]) == (7, 8)
    assert rs.confidence[i] == pytest.approx(7 / 13)
    assert rs.rule_text(i) == "child_of(X,Y) <= parent_of(Y,X)"
    # grandparent_of(X,Y) <= parent_of(X,Z), parent_of(Z,Y): 5 paths, 3 hold -> 3 / (5 + 5)
    j = rule(rs, GRAND, 1, PARENT, PARENT)
    assert (rs.support[j], rs.body_support[j]) == (3, 5)
    assert rs.confidence[j] == pytest.approx(0.3)
    # the mirror for head queries: grandparent_of^-1(X,Y) <= parent_of^-1(X,Z), parent_of^-1(Z,Y), same numbers
    m = rule(rs, GRAND + R, 1, PARENT + R, PARENT + R)
    assert rs.confidence[m] == pytest.approx(0.3)
    # the inverse of child_of's head query is the forward parent_of: parent_of(X,Y) <= child_of(Y,X)
    k = rule(rs, PARENT, 0, CHILD + R)
    assert (rs.support[k], rs.body_support[k]) == (7, 7)


def test_length_3_rules_and_distinct_entities() -> None:
    # a chain 0 -> 1 -> ... -> 9 (next, 0) with three_ahead (1) for 5 of the 7 three-step pairs
    chain = [(i, 0, i + 1) for i in range(9)] + [(i, 1, i + 3) for i in range(5)]
    rs = RuleSet.mine(np.array(chain), 10, 2, relation_names=["next", "three_ahead"], constants=False)
    i = rule(rs, 1, PATH3, 0, 0, 0)
    assert (rs.support[i], rs.body_support[i]) == (5, 7) and rs.confidence[i] == pytest.approx(5 / 12)
    assert rs.rule_text(i) == "three_ahead(X,Y) <= next(X,A), next(A,B), next(B,Y)"
    scores = rs.tail_scores([5, 8], [1, 1 + 2])  # (5, three_ahead, ?) and (?, three_ahead, 8)
    assert int(scores[0].argmax()) == 8 and int(scores[1].argmax()) == 5
    assert any(f["path"] == [5, 6, 7, 8] and f["kind"] == "path3" for f in rs.explain(5, 1, 8, k=50))
    # parent_of(X,Y) <= parent_of(X,A), parent_of(A,B), child_of(B,Y) holds only through A = Y (each child has
    # one parent): with distinct variables it has no support and is not mined
    fam = RuleSet.mine(family(), 10, R, constants=False)
    assert len(find(fam, PARENT, PATH3, PARENT, PARENT, CHILD)) == 0


@pytest.mark.parametrize("constants", [False, True])
def test_tail_scores_rank_the_implied_tail_first(constants: bool) -> None:
    rs = RuleSet.mine(family(), 10, R, constants=constants)
    scores = rs.tail_scores([6, 7, 2], [CHILD, GRAND, PARENT + R])
    assert scores.shape == (3, 10) and scores.dtype == torch.float32
    assert int(scores[0].argmax()) == 2  # 6 child_of 2, by the inverse rule
    assert int(scores[1].argmax()) == 9  # 7 grandparent_of 9, by the path rule
    assert (
        int(scores[2].argmax()) == 0
    )  # head query (?, parent_of, 2) = (2, parent_of^-1, ?): 0, a known answer
    assert float(scores[1, 9]) >= 0.3
    assert float(scores[1, 7]) == 0.0  # a rule never predicts the anchor itself


def test_explain_names_the_rule_and_its_grounding() -> None:
    rs = RuleSet.mine(family(), 10, R, relation_names=NAMES, constants=False)
    found = rs.explain(7, GRAND, 9)
    assert found, "the path rule should fire for 7 grandparent_of 9"
    assert [f["confidence"] for f in found] == sorted((f["confidence"] for f in found), reverse=True)
    by_text = {f["rule"]: f for f in found}
    top = by_text["grandparent_of(X,Y) <= parent_of(X,Z), parent_of(Z,Y)"]
    assert top["path"] == [7, 8, 9] and top["confidence"] == pytest.approx(0.3)
    assert (top["support"], top["body_support"], top["kind"]) == (3, 5, "path2")
    assert rs.explain(7, GRAND, 5) == []


def test_save_load_round_trip_gives_identical_scores(tmp_path) -> None:
    rs = RuleSet.mine(family(), 10, R, relation_names=NAMES)
    rs.save(tmp_path)
    back = RuleSet.load(tmp_path)
    anchors, rels = np.arange(10), np.arange(10) % (2 * R)
    assert torch.equal(rs.tail_scores(anchors, rels), back.tail_scores(anchors, rels))
    assert back.relation_names == NAMES and len(back) == len(rs)
    # a changed array file is refused
    data = bytearray((tmp_path / "rules.npz").read_bytes())
    data[-20] ^= 1
    (tmp_path / "rules.npz").write_bytes(bytes(data))
    with pytest.raises(InputError, match="checksum"):
        RuleSet.load(tmp_path)
    meta = json.loads((tmp_path / "rules.json").read_text())
    meta["format"] = "something else"
    (tmp_path / "rules.json").write_text(json.dumps(meta))
    with pytest.raises(InputError, match="not a kgemb rule set"):
        RuleSet.load(tmp_path)


def test_bad_input_is_named() -> None:
    with pytest.raises(InputError, match="relation ids"):
        RuleSet.mine(np.array([[0, 5, 1]]), 3, 2)
    rs = RuleSet.mine(family(), 10, R)
    with pytest.raises(InputError, match="relation ids"):
        rs.tail_scores([0], [2 * R])
    with pytest.raises(InputError, match="unknown rule-mining option"):
        RuleSet.mine(family(), 10, R, min_suport=3)


def test_scores_fired_in_chunks_equal_one_chunk(monkeypatch) -> None:
    """tail_scores fires the rules for a chunk of queries at a time (memory bounded by the firings of a chunk): the
    same scores as all queries at once, on UMLS's rules (path1 to path3 and constants)."""
    from kgemb.connectors.tabular import load

    import kgemb.rules

    kg = load("pykeen:UMLS")
    rs = RuleSet.mine(kg.triples("train"), kg.num_entities, kg.num_relations)
    test = kg.triples("test")[:300]
    anchors = np.concatenate([test[:, 0], test[:, 2]])
    rels = np.concatenate([test[:, 1], test[:, 1] + kg.num_relations])
    monkeypatch.setattr(kgemb.rules, "FIRST_CHUNK_CELLS", 1 << 40)
    monkeypatch.setattr(kgemb.rules, "FIRINGS_PER_CHUNK", 1 << 40)
    whole = rs.tail_scores(anchors, rels)
    calls = []
    fire = RuleSet.firings
    monkeypatch.setattr(RuleSet, "firings", lambda self, a, h: calls.append(len(a)) or fire(self, a, h))
    monkeypatch.setattr(kgemb.rules, "FIRST_CHUNK_CELLS", 3 * kg.num_entities)
    monkeypatch.setattr(kgemb.rules, "FIRINGS_PER_CHUNK", 5000)
    assert torch.equal(rs.tail_scores(anchors, rels), whole)
    assert len(calls) > 2 * len(np.unique(rels)) and max(calls) < 50  # it did chunk
    assert float(whole.abs().sum()) > 0


def test_umls_rules_alone_rank_well() -> None:
    from kgemb.connectors.tabular import load

    kg = load("pykeen:UMLS")
    rs = RuleSet.mine(kg.triples("train"), kg.num_entities, kg.num_relations)
    metrics = rule_metrics(rs, kg.triples("test"), [kg.triples(s) for s in ("train", "valid", "test")])
    assert metrics["n"] == 2 * len(kg.triples("test"))
    assert metrics["mrr"] > 0.93  # measured 0.949 (maxplus)
    assert metrics["hits@10"] > 0.97  # measured 0.985


def test_irreflexive_relations_need_enough_triples_and_almost_no_self_loops() -> None:
    from kgemb.rules import irreflexive_relations

    rng = np.random.default_rng(0)
    rows = []
    for r, (n, loops) in enumerate(((20, 0), (20, 1), (9, 0), (3000, 3), (3000, 4))):
        h = rng.integers(0, 50, n)
        t = (h + 1 + rng.integers(0, 48, n)) % 50  # never h
        t[:loops] = h[:loops]
        rows.append(np.stack([h, np.full(n, r), t], axis=1))
    # 0: no loop; 1: one in 20; 2: too few triples; 3: 3 in 3,000 (0.1%); 4: 4 in 3,000
    assert irreflexive_relations(np.concatenate(rows), 6).tolist() == [True, False, False, True, False, False]


def test_a_model_never_answers_the_anchor_of_an_irreflexive_relation(tmp_path) -> None:
    """Relation ``near`` has self-loops in training, ``links`` none: evaluation and the reasoning predictor leave
    the anchor out of ``links`` queries only, the choice is saved with the model, and ``irreflexive=False`` keeps
    every anchor."""
    from kgemb.reasoning import LinkPredictor

    import kgemb
    from kgemb.evaluation import rank_metrics
    from kgemb.graph import GraphBuilder

    b = GraphBuilder()
    names = [f"e{i}" for i in range(30)]
    for i, key in enumerate(names):
        b.add_label(key, f"entity number {i}", "en")
    for rel in ("near", "links"):
        b.add_relation(rel, {"en": [rel]})
    for i in range(30):
        b.add_triple(names[i], "links", names[(i + 1) % 30])
        b.add_triple(names[i], "near", names[i] if i % 3 == 0 else names[(i + 2) % 30])
    kg = b.build({"source": "test"})
    options = {"mode": "structure", "dim": 8, "epochs": 2, "show_progress": False, "rules": False}
    model = kgemb.train(kg, **options)
    links = kg.relation_id("links")
    assert model.config["irreflexive"] == ["links"]
    pm, triples = model.pykeen_model, kg.triples("train")
    # evaluation filters the anchor of each ``links`` query: its rank falls by one exactly where the model scores
    # the anchor above the true answer (a half on a tie)
    queries = triples[triples[:, 1] == links]
    with torch.no_grad():
        tails = model.score_tails(queries[:, 0], queries[:, 1]).numpy()
        heads = model.score_heads(queries[:, 1], queries[:, 2]).numpy()
    above = 0.0
    for scores, anchor, true in (
        (heads, queries[:, 2], queries[:, 0]),
        (tails, queries[:, 0], queries[:, 2]),
    ):
        own, want = scores[np.arange(len(queries)), anchor], scores[np.arange(len(queries)), true]
        above += float((own > want).sum() + 0.5 * (own == want).sum())
    flags, ranks = pm.irreflexive, {}
    for name, setting in (("filtered", flags), ("kept", None)):
        pm.irreflexive, ranks[name] = setting, []
        rank_metrics(pm, queries, [triples], ranks_out=ranks[name])
    pm.irreflexive = flags
    gain = np.concatenate(ranks["kept"]) - np.concatenate(ranks["filtered"])
    assert above >= 5 and gain.sum() == above and set(gain) <= {0.0, 0.5, 1.0}
    predictor = LinkPredictor(model, filter_known=False)
    for key in names[:5]:
        assert key not in [p.key for p in predictor.tails(key, "links", k=30)]
        assert key not in [p.key for p in predictor.heads("links", key, k=30)]
        assert len(predictor.tails(key, "links", k=30)) == 29
    assert all(len(predictor.tails(key, "near", k=30)) == 30 for key in names[:5])  # the anchor among them
    model.save(tmp_path / "m")
    assert kgemb.load(tmp_path / "m").pykeen_model.irreflexive.tolist() == pm.irreflexive.tolist()
    kept = kgemb.train(kg, irreflexive=False, **options)
    assert kept.config["irreflexive"] is None and kept.pykeen_model.irreflexive is None
    assert len(LinkPredictor(kept, filter_known=False).tails(names[0], "links", k=30)) == 30
