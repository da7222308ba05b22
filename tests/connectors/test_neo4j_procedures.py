"""kgemb's Neo4j procedures against the real server: listed, the same top k (keys, scores, probabilities) as
Python's LinkPredictor for RotatE, ComplEx, DistMult and TransE, both directions, a reciprocal relation layout,
kgemb.score, known links and wrong types filtered (and kept on request), idempotent graph push, refresh after a
push, and clear client errors for bad calls."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

import kgemb

pytestmark = pytest.mark.neo4j
DATA = Path(__file__).resolve().parents[1] / "reasoning" / "data" / "medical.ttl"
INTERACTIONS = ("rotate", "complex", "distmult", "transe")
TOL = 1e-5


@pytest.fixture(scope="module")
def medical_kg():
    from kgemb.connectors import rdf

    return rdf.load(DATA).split(valid=0.1, test=0.1, seed=0)


@pytest.fixture(scope="module")
def models(medical_kg) -> dict:
    """One small structure-only model per interaction (seconds each), with its LinkPredictor."""
    from kgemb.reasoning import LinkPredictor

    out = {}
    for name in INTERACTIONS:
        model = kgemb.train(
            medical_kg,
            mode="structure",
            interaction=name,
            dim=16,
            epochs=15,
            batch_size=32,
            lr=0.02,
            early_stopping=False,
            show_progress=False,
            seed=0,
            rules=False,  # the vectors alone (the rule channel: test_the_rule_channel_equals_python)
        )
        out[name] = (model, LinkPredictor(model))
    return out


def push(model, predictor, driver, name: str):
    from kgemb.connectors import neo4j

    return neo4j.push(model, driver, name=name, progress=False, calibration=predictor.calibration)


def call(driver, query: str, **params):
    return driver.execute_query(query, params).records


def test_procedures_are_listed(neo4j_driver) -> None:
    procs = {
        r["name"] for r in call(neo4j_driver, "SHOW PROCEDURES YIELD name WHERE name STARTS WITH 'kgemb.'")
    }
    funcs = {
        r["name"] for r in call(neo4j_driver, "SHOW FUNCTIONS YIELD name WHERE name STARTS WITH 'kgemb.'")
    }
    assert {
        "kgemb.predict.tails",
        "kgemb.predict.heads",
        "kgemb.explain.rules",
        "kgemb.explain.votes",
        "kgemb.similar",
        "kgemb.models",
    } <= procs
    assert "kgemb.score" in funcs


def _anchors(model, r: int, column: int, n: int = 6) -> list[int]:
    triples = model.kg.all_triples()
    return sorted(set(triples[triples[:, 1] == r, column].tolist()))[:n]


def _procedure(driver, side: str, key: str, rel: str, k: int, config: dict) -> list[tuple[str, float, float]]:
    rows = call(
        driver,
        f"MATCH (n:KgembEntity {{key: $key}}) CALL kgemb.predict.{side}(n, $rel, $k, $config) "
        "YIELD node, score, probability, rank RETURN node.key AS key, score, probability, rank ORDER BY rank",
        key=key,
        rel=rel,
        k=k,
        config=config,
    )
    assert [r["rank"] for r in rows] == list(range(1, len(rows) + 1))
    return [(r["key"], r["score"], r["probability"]) for r in rows]


def _compare(got, want, rtol: float = 0.0) -> None:
    """``rtol``: for scores with a rule channel, which Python adds in float32 (weights up to 1,000)."""
    assert len(got) == len(want)
    assert np.allclose([g[1] for g in got], [w.raw for w in want], atol=TOL, rtol=rtol)
    assert np.allclose([g[2] for g in got], [w.score for w in want], atol=TOL, rtol=0)
    # same keys in the same order, except where two scores tie within the tolerance
    for g, w in zip(got, want, strict=True):
        if g[0] != w.key:
            near = TOL + rtol * abs(w.raw)
            assert abs(g[1] - w.raw) <= near and any(
                abs(x.raw - g[1]) <= near and x.key == g[0] for x in want
            )


@pytest.mark.parametrize("interaction", INTERACTIONS)
def test_top_k_equals_python(neo4j_driver, models, interaction: str) -> None:
    model, predictor = models[interaction]
    push(model, predictor, neo4j_driver, interaction)
    kg = model.kg
    compared = 0
    for r, rel in enumerate(kg.relations):
        rel_type = call(
            neo4j_driver,
            "MATCH (x:KgembRelation {model: $m, key: $k}) RETURN x.type AS t",
            m=interaction,
            k=rel,
        )[0]["t"]
        for h in _anchors(model, r, 0):
            got = _procedure(neo4j_driver, "tails", kg.entities[h].key, rel_type, 10, {"model": interaction})
            _compare(got, predictor.tails(kg.entities[h].key, r, k=10))
            compared += 1
        for t in _anchors(model, r, 2):
            got = _procedure(neo4j_driver, "heads", kg.entities[t].key, rel_type, 10, {"model": interaction})
            _compare(got, predictor.heads(r, kg.entities[t].key, k=10))
            compared += 1
        # known links and types kept on request
        h = _anchors(model, r, 0)[0]
        config = {"model": interaction, "filterKnown": False, "constraints": False}
        got = _procedure(neo4j_driver, "tails", kg.entities[h].key, rel, 12, config)
        _compare(got, predictor.tails(kg.entities[h].key, r, k=12, filter_known=False, constraints="none"))
    assert compared >= 20
    _score_equals_python(neo4j_driver, model, interaction)


def _score_equals_python(driver, model, name: str) -> None:
    """kgemb.score is the model's raw score of a triple (the first 20 of the graph)."""
    kg = model.kg
    hrt = kg.all_triples()[:20]
    rows = call(
        driver,
        "UNWIND $rows AS row MATCH (h:KgembEntity {key: row[0]}), (t:KgembEntity {key: row[2]}) "
        "RETURN kgemb.score(h, row[1], t, {model: $m}) AS s",
        rows=[[kg.entities[h].key, kg.relations[r], kg.entities[t].key] for h, r, t in hrt.tolist()],
        m=name,
    )
    assert np.allclose([x["s"] for x in rows], model.score_hrt(hrt), atol=TOL, rtol=0)


def test_known_links_and_wrong_types_are_left_out(neo4j_driver, models) -> None:
    model, predictor = models["rotate"]
    push(model, predictor, neo4j_driver, "kgemb")
    kg = model.kg
    r = 0
    h = _anchors(model, r, 0)[0]
    got = _procedure(neo4j_driver, "tails", kg.entities[h].key, kg.relations[r], 50, {})
    known = set(predictor.links.tails_of(h, r).tolist())
    assert known and not known & {kg.entity_id(k) for k, _, _ in got}
    allowed = predictor._constraint(None).mask(r, "tail")
    assert allowed is not None and all(allowed[kg.entity_id(k)] for k, _, _ in got)
    kept = _procedure(neo4j_driver, "tails", kg.entities[h].key, kg.relations[r], 50, {"filterKnown": False})
    assert known <= {kg.entity_id(k) for k, _, _ in kept}


def test_an_irreflexive_relations_anchor_is_never_an_answer(neo4j_driver, models) -> None:
    """Every candidate listed (k = all entities, known links and types kept): the procedures leave the anchor out
    exactly where Python does, for the relations without self-loops in training; the model's own score of the
    anchor would otherwise rank it (so the check can fail)."""
    model, predictor = models["complex"]
    push(model, predictor, neo4j_driver, "complex")
    kg = model.kg
    flags = model.pykeen_model.irreflexive
    assert flags is not None and bool(flags.all())  # the medical graph has no self-loops
    stored = call(neo4j_driver, "MATCH (x:KgembRelation {model: 'complex'}) RETURN x.irreflexive AS i")
    assert [x["i"] for x in stored] == [True] * kg.num_relations
    config = {"model": "complex", "filterKnown": False, "constraints": False}
    n = kg.num_entities
    for r, rel in enumerate(kg.relations):
        key = kg.entities[_anchors(model, r, 0, 1)[0]].key
        got = _procedure(neo4j_driver, "tails", key, rel, n, config)
        want = predictor.tails(key, r, k=n, filter_known=False, constraints="none")
        assert len(got) == len(want) == n - 1 and key not in [g[0] for g in got]
        _compare(got, want)
    model.pykeen_model.irreflexive = None
    try:
        key = kg.entities[_anchors(model, 0, 0, 1)[0]].key
        assert key in [p.key for p in predictor.tails(key, 0, k=n, filter_known=False, constraints="none")]
    finally:
        model.pykeen_model.irreflexive = flags


def test_graph_is_in_the_database_and_a_second_push_changes_nothing(neo4j_driver, models) -> None:
    model, predictor = models["distmult"]
    kg = model.kg

    def counts() -> dict:
        one = lambda q: call(neo4j_driver, q)[0][0]  # noqa: E731
        return {
            "nodes": one("MATCH (n) RETURN count(n)"),
            "entities": one("MATCH (n:KgembEntity) RETURN count(n)"),
            "links": one("MATCH (:KgembEntity)-[r]->(:KgembEntity) RETURN count(r)"),
            "relationships": one("MATCH ()-[r]->() RETURN count(r)"),
            "labels": sorted(one("CALL db.labels() YIELD label RETURN collect(label)")),
            "types": sorted(
                one("CALL db.relationshipTypes() YIELD relationshipType RETURN collect(relationshipType)")
            ),
            "typed": one("MATCH (n:KgembEntity) WHERE size(labels(n)) > 1 RETURN count(n)"),
        }

    push(model, predictor, neo4j_driver, "kgemb")
    first = counts()
    assert first["entities"] == kg.num_entities
    assert first["links"] == len(kg.all_triples())
    assert {"Disease", "Symptom", "Organ"} <= set(first["labels"])
    assert {"has_symptom", "affects"} <= set(first["types"])
    assert first["typed"] == sum(1 for e in kg.entities if e.types)
    push(model, predictor, neo4j_driver, "kgemb")
    assert counts() == first


def test_reciprocal_layout(neo4j_driver, models) -> None:
    """A reciprocal model (kgemb's default objective) holds 2R relation rows, row r+R the inverse of r, and scores
    (?, r, t) as (t, r+R, ?): the plugin's head answers equal Python's."""
    model, predictor = models["rotate"]
    assert model.config["reciprocal"] and len(model.relation_vectors()) == 2 * model.kg.num_relations
    push(model, predictor, neo4j_driver, "kgemb")
    assert call(neo4j_driver, "CALL kgemb.models() YIELD name, reciprocal RETURN reciprocal")[0]["reciprocal"]
    kg = model.kg
    for r, rel in enumerate(kg.relations):
        for t in _anchors(model, r, 2, 3):
            got = _procedure(neo4j_driver, "heads", kg.entities[t].key, rel, 10, {})
            _compare(got, predictor.heads(r, kg.entities[t].key, k=10))


def test_a_push_refreshes_the_loaded_model(neo4j_driver, models) -> None:
    kg = models["rotate"][0].kg
    h = kg.entities[_anchors(models["rotate"][0], 0, 0)[0]].key
    for name in ("rotate", "transe"):
        model, predictor = models[name]
        push(model, predictor, neo4j_driver, "kgemb")
        got = _procedure(neo4j_driver, "tails", h, kg.relations[0], 5, {})
        _compare(got, predictor.tails(h, 0, k=5))
    models_rows = call(neo4j_driver, "CALL kgemb.models() YIELD name, interaction, loaded RETURN *")
    assert [(m["name"], m["interaction"], m["loaded"]) for m in models_rows] == [
        ("kgemb", "transe", kg.num_entities)
    ]


@pytest.mark.parametrize(
    ("query", "message"),
    [
        (
            "MATCH (n:KgembEntity) WITH n LIMIT 1 CALL kgemb.predict.tails(n, 'no_such_rel', 5) YIELD node RETURN node",
            "unknown relType 'no_such_rel'",
        ),
        ("CALL kgemb.predict.tails(null, 'has_symptom', 5) YIELD node RETURN node", "head is null"),
        (
            "MATCH (n:KgembEntity) WITH n LIMIT 1 CALL kgemb.predict.heads(n, 'has_symptom', 0) YIELD node RETURN node",
            "k = 0",
        ),
        (
            "MATCH (n:KgembEntity) WITH n LIMIT 1 CALL kgemb.predict.tails(n, 'has_symptom', -3) YIELD node RETURN node",
            "k = -3",
        ),
        (
            "MATCH (n:KgembEntity) WITH n LIMIT 1 CALL kgemb.predict.tails(n, 'has_symptom', 5, {model: 'nope'}) YIELD node RETURN node",
            "no kgemb model 'nope'",
        ),
        (
            "MATCH (n:KgembModel) WITH n LIMIT 1 CALL kgemb.similar(n, 5) YIELD node RETURN node",
            "has no vector of kgemb model",
        ),
    ],
)
def test_bad_calls_give_client_errors(neo4j_driver, models, query: str, message: str) -> None:
    from neo4j.exceptions import ClientError

    model, predictor = models["rotate"]
    push(model, predictor, neo4j_driver, "kgemb")
    with pytest.raises(ClientError) as info:
        call(neo4j_driver, query)
    assert message in info.value.message
    assert "\tat " not in info.value.message and ".java:" not in info.value.message


def test_similar(neo4j_driver, models) -> None:
    model, predictor = models["complex"]
    push(model, predictor, neo4j_driver, "kgemb")
    kg = model.kg
    v = model.entity_vectors()
    unit = v / np.linalg.norm(v, axis=1, keepdims=True)
    cos = unit @ unit[0]
    cos[0] = -np.inf
    want = np.argsort(-cos, kind="stable")[:5]
    rows = call(
        neo4j_driver,
        "MATCH (n:KgembEntity {key: $key}) CALL kgemb.similar(n, 5) YIELD node, score, rank "
        "RETURN node.key AS key, score ORDER BY rank",
        key=kg.entities[0].key,
    )
    assert np.allclose([x["score"] for x in rows], cos[want], atol=1e-5)


def test_pure_cypher_path_leaves_known_links_and_wrong_types_out(neo4j_driver, models) -> None:
    """The plugin-free path (Aura) filters like the procedures, though its order is the approximate index's."""
    from kgemb.connectors import neo4j

    model, predictor = models["rotate"]
    push(model, predictor, neo4j_driver, "kgemb")
    kg = model.kg
    for side, column in (("tail", 0), ("head", 2)):
        x = _anchors(model, 0, column)[0]
        node = call(
            neo4j_driver, "MATCH (n:KgembEntity {key: $k}) RETURN elementId(n) AS id", k=kg.entities[x].key
        )
        rows = call(
            neo4j_driver,
            neo4j.tail_query_cypher("rotate", side),
            model="kgemb",
            relation=kg.relations[0],
            node=node[0]["id"],
            candidates=kg.num_entities,
        )
        got = {kg.entity_id(r["key"]) for r in rows}
        known = set(
            (predictor.links.tails_of(x, 0) if side == "tail" else predictor.links.heads_of(0, x)).tolist()
        )
        mask = predictor._constraint(None).mask(0, side)
        assert got and known and not got & known
        assert all(mask[i] for i in got)


@pytest.mark.parametrize("interaction", ["rotate", "distmult"])
def test_rank_equals_python(neo4j_driver, models, interaction: str) -> None:
    """kgemb.rank is LinkPredictor.rank (reasoning/evidence.py ported): the same order, L(x), P(x), and each
    item's match, matching term and model probability."""
    model, predictor = models[interaction]
    push(model, predictor, neo4j_driver, "kgemb")
    kg = model.kg
    r = 0
    evidence = _anchors(model, r, 2, 3)
    for target, ids in (("head", evidence), ("tail", _anchors(model, r, 0, 3))):
        keys = [kg.entities[i].key for i in ids]
        rows = call(
            neo4j_driver,
            "UNWIND $keys AS key MATCH (e:KgembEntity {key: key}) WITH collect(e) AS evidence "
            "CALL kgemb.rank(evidence, $rel, 10, {target: $target}) YIELD node, score, raw, rank, contributions "
            "RETURN node.key AS key, score, raw, rank, [c IN contributions | [c.node.key, c.probability, c.known, "
            "c.match, c.via.key, c.likelihoodRatio, c.logLikelihood]] AS c "
            "ORDER BY rank",
            keys=keys,
            rel=kg.relations[r],
            target=target,
        )
        want = predictor.rank([(key, r) for key in keys], k=10, target=target)
        assert len(rows) == len(want) > 0
        assert np.allclose([x["raw"] for x in rows], [w.raw for w in want], atol=1e-4, rtol=0)
        assert np.allclose([x["score"] for x in rows], [w.score for w in want], atol=TOL, rtol=0)
        assert [x["key"] for x in rows] == [w.key for w in want]
        for x, w in zip(rows, want, strict=True):
            assert [c[0] for c in x["c"]] == [c.entity for c in w.contributions]
            assert [c[2] for c in x["c"]] == [c.known for c in w.contributions]
            assert [c[3] for c in x["c"]] == [c.match for c in w.contributions]
            assert [c[4] for c in x["c"]] == [c.via for c in w.contributions]
            assert np.allclose([c[1] for c in x["c"]], [c.probability for c in w.contributions], atol=TOL)
            assert np.allclose(
                [c[5] for c in x["c"]], [c.likelihood_ratio for c in w.contributions], atol=TOL
            )
            assert np.allclose([c[6] for c in x["c"]], [c.log_likelihood for c in w.contributions], atol=1e-4)


def test_rank_through_the_hierarchy_equals_python(neo4j_driver) -> None:
    """On an rdfs:subClassOf ontology: vaguer and more specific terms match through their most informative
    common ancestor (information content, ties by entity id) in kgemb.rank exactly as in LinkPredictor.rank,
    with the model weight both chosen on validation and given."""
    from kgemb.connectors import neo4j, rdf
    from kgemb.reasoning import LinkPredictor

    kg = rdf.load(DATA.with_name("ontology.ttl"))
    model = kgemb.train(
        kg, mode="structure", interaction="rotate", dim=16, epochs=3, show_progress=False, seed=0, rules=False
    )
    for weight in (0.0, 0.3):
        predictor = LinkPredictor(model, evidence_weight=weight)
        neo4j.push(
            model, neo4j_driver, progress=False, calibration=predictor.calibration, evidence_weight=weight
        )
        rel = kg.relation_id("has phenotype")
        for names in (
            ["seizure", "ataxia", "cataract"],
            ["focal seizure", "fever"],
            ["rash", "tremor", "glaucoma"],
        ):
            keys = [kg.entities[predictor.entity(x)].key for x in names]
            rows = call(
                neo4j_driver,
                "UNWIND $keys AS key MATCH (e:KgembEntity {key: key}) WITH collect(e) AS evidence "
                "CALL kgemb.rank(evidence, $rel, 9) YIELD node, score, raw, contributions "
                "RETURN node.key AS key, score, raw, [c IN contributions | [c.match, c.via.key, c.likelihoodRatio]] AS c",
                keys=keys,
                rel=kg.relations[rel],
            )
            want = predictor.rank([(key, rel) for key in keys], k=9)
            assert [x["key"] for x in rows] == [w.key for w in want]
            assert np.allclose([x["raw"] for x in rows], [w.raw for w in want], atol=1e-4, rtol=0)
            assert np.allclose([x["score"] for x in rows], [w.score for w in want], atol=TOL, rtol=0)
            for x, w in zip(rows, want, strict=True):
                assert [c[:2] for c in x["c"]] == [[c.match, c.via] for c in w.contributions]
                assert np.allclose(
                    [c[2] for c in x["c"]], [c.likelihood_ratio for c in w.contributions], atol=TOL
                )


def _compare_with_channel(driver, predictor, side: str, key: str, r: int) -> tuple[list, list, list]:
    """kgemb.predict.tails/heads's top 10 of a query of a model with a rule channel against LinkPredictor's; the
    procedure's rows, their triples and the model's own score of each (``kgemb.score``, without the channel)."""
    rel = predictor.kg.relations[r]
    got = _procedure(driver, side, key, rel, 10, {})
    want = predictor.tails(key, r, k=10) if side == "tails" else predictor.heads(r, key, k=10)
    _compare(got, want, rtol=1e-6)
    pairs = [(key, rel, g[0]) if side == "tails" else (g[0], rel, key) for g in got]
    own = call(
        driver,
        "UNWIND $rows AS row MATCH (h:KgembEntity {key: row[0]}), (t:KgembEntity {key: row[2]}) "
        "RETURN kgemb.score(h, row[1], t) AS s",
        rows=[list(p) for p in pairs],
    )
    return got, pairs, own


@pytest.mark.parametrize("graph", ["medical", "nations"])
def test_the_rule_channel_equals_python(neo4j_driver, medical_kg, models, graph: str) -> None:
    """A model with mined rules: kgemb.predict.tails/heads add the rule channel as LinkPredictor does (the same
    top k, scores and probabilities), over every rule kind (the medical graph: path3, const, any; Nations: path1,
    path2 and more), the rules lifting some answers above the model's own score; kgemb.explain.rules lists the rules
    that fired for those answers as LinkPredictor.explain does; a push without rules removes them."""
    from kgemb.connectors import tabular
    from kgemb.reasoning import LinkPredictor
    from kgemb.reasoning.explain import fired_rules

    from kgemb.rules import KINDS

    kg = medical_kg if graph == "medical" else tabular.load("pykeen:nations")
    model = kgemb.train(
        kg,
        mode="structure",
        dim=16,
        epochs=10,
        batch_size=64,
        early_stopping=False,
        show_progress=False,
        seed=0,
    )
    channel = model.pykeen_model.rule_channel
    assert channel is not None and (channel.weights > 0).sum() >= 2
    kinds = {KINDS[k] for k in set(channel.rules.rules[:, 1].tolist())}
    assert kinds >= ({"path3", "const", "any"} if graph == "medical" else {"path1", "path2"})
    predictor = LinkPredictor(model)
    push(model, predictor, neo4j_driver, "kgemb")
    lifted = compared = 0
    explained: list[tuple[str, str, str]] = []
    for r in range(min(12, kg.num_relations)):
        for side, column in (("tails", 0), ("heads", 2)):
            for e in _anchors(model, r, column, 4):
                got, pairs, own = _compare_with_channel(neo4j_driver, predictor, side, kg.entities[e].key, r)
                compared += 1
                lifted_here = [p for g, x, p in zip(got, own, pairs, strict=True) if g[1] > x["s"] + 1e-3]
                lifted += len(lifted_here)
                explained.extend(lifted_here[:2])
    assert compared >= 16 and lifted >= 10, (compared, lifted)
    # kgemb.explain.rules lists the rules that fired as LinkPredictor.explain does: text, kind, confidence,
    # support, body support and the grounding's nodes
    grounded = 0
    for h_key, rel, t_key in explained:
        rows = call(
            neo4j_driver,
            "MATCH (h:KgembEntity {key: $h}), (t:KgembEntity {key: $t}) "
            "CALL kgemb.explain.rules(h, $rel, t, 5) YIELD rule, kind, confidence, support, bodySupport, path "
            "RETURN rule, kind, confidence, support, bodySupport, [n IN path | n.key] AS path",
            h=h_key,
            t=t_key,
            rel=rel,
        )
        want = fired_rules(predictor, kg.entity_id(h_key), kg.relation_id(rel), kg.entity_id(t_key), 5)
        got = [
            (r["rule"], r["kind"], round(r["confidence"], 4), r["support"], r["bodySupport"], r["path"])
            for r in rows
        ]
        assert got == [(f.rule, f.kind, f.confidence, f.support, f.body_support, f.path) for f in want]
        grounded += len(got)
    assert len(explained) >= 5 and grounded >= len(explained)
    if graph == "medical":
        # the rule set's other aggregates score alike (max: the best rule; noisy-or: 1 - prod(1 - c))
        anchors = [(kg.entities[e].key, r) for r in range(3) for e in _anchors(model, r, 0, 3)]
        before = [predictor.tails(key, r, k=10) for key, r in anchors]
        changed = 0
        for aggregate in ("max", "noisy-or"):
            channel.rules.aggregate = aggregate
            push(model, predictor, neo4j_driver, "kgemb")
            for (key, r), old in zip(anchors, before, strict=True):
                want = predictor.tails(key, r, k=10)
                _compare(_procedure(neo4j_driver, "tails", key, kg.relations[r], 10, {}), want, rtol=1e-6)
                changed += not np.allclose([w.raw for w in want], [w.raw for w in old], rtol=1e-6)
        assert changed >= 2, changed  # the comparison can fail: the aggregates give other scores here
        # a model without rules pushed under the same name leaves no rule channel behind
        plain, plain_predictor = models["complex"]
        push(plain, plain_predictor, neo4j_driver, "kgemb")
        record = call(neo4j_driver, "MATCH (m:KgembModel) RETURN m.rule_weights AS w, m.rule_triples AS t")[0]
        assert (record["w"], record["t"]) == (None, None)
        h = kg.entities[_anchors(plain, 0, 0)[0]].key
        _compare(
            _procedure(neo4j_driver, "tails", h, kg.relations[0], 10, {}), plain_predictor.tails(h, 0, k=10)
        )


def test_the_text_neighbour_vote_equals_python(neo4j_driver) -> None:
    """A text model of an inductive split with the text-neighbour vote in its rule channel (a weight per oriented
    relation, beside its rules): kgemb.predict.tails/heads add it as LinkPredictor does, entities without training
    triples among the answers it lifts."""
    from kgemb.connectors import rdf
    from kgemb.reasoning import LinkPredictor

    from kgemb.channels import RuleChannel, TextVotes
    from kgemb.rules import RuleSet
    from kgemb.training import seen_entities

    kg = rdf.load(DATA).split(valid=0.1, test=0.1, seed=0, inductive=True)
    model = kgemb.train(kg, mode="text", dim=16, epochs=3, early_stopping=False, show_progress=False, seed=0)
    seen = seen_entities(kg)
    rules = model.rules if model.rules is not None else RuleSet.from_graph(kg)
    channel = model.pykeen_model.rule_channel
    rule_weights = np.zeros(2 * kg.num_relations) if channel is None else channel.weights.numpy()
    votes = TextVotes.build(model.representation.text_mean, seen)
    vote_weights = np.linspace(1.0, 8.0, 2 * kg.num_relations, dtype=np.float32)
    model.pykeen_model.rule_channel = RuleChannel(rules, rule_weights, votes, vote_weights)
    predictor = LinkPredictor(model)
    push(model, predictor, neo4j_driver, "kgemb")
    lifted_unseen = compared = 0
    for r in range(kg.num_relations):
        for side, column in (("tails", 0), ("heads", 2)):
            for e in _anchors(model, r, column, 3):
                got, _, own = _compare_with_channel(neo4j_driver, predictor, side, kg.entities[e].key, r)
                compared += 1
                lifted_unseen += sum(
                    g[1] > x["s"] + 1e-3 and not bool(seen[kg.entity_id(g[0])])
                    for g, x in zip(got, own, strict=True)
                )
    assert compared >= 10 and lifted_unseen >= 5, (compared, lifted_unseen)
    # kgemb.explain.votes lists the vote's terms of a link as LinkPredictor.explain does, both directions
    explained = 0
    for h, r, _ in kg.triples("test")[:40].tolist():
        for found in predictor.tails(h, r, k=3):
            want = predictor.explain(h, r, found.key, paths=0, neighbours=0)
            rows = call(
                neo4j_driver,
                "MATCH (h:KgembEntity {key: $h}), (t:KgembEntity {key: $t}) "
                "CALL kgemb.explain.votes(h, $rel, t) YIELD node, direction, strength, weight "
                "RETURN node.key AS key, direction, strength, weight",
                h=kg.entities[h].key,
                t=found.key,
                rel=kg.relations[r],
            )
            for direction, terms, rel in (
                ("tail", want.tail_votes, r),
                ("head", want.head_votes, r + kg.num_relations),
            ):
                got = [x for x in rows if x["direction"] == direction]
                assert [x["key"] for x in got] == [n.key for n in terms]
                for x, n in zip(got, terms, strict=True):
                    assert x["strength"] == pytest.approx(n.similarity, abs=1e-4)
                    assert x["weight"] == pytest.approx(float(vote_weights[rel]))
            explained += len(rows) > 0
    assert explained >= 3, explained  # the comparison can fail: links with vote terms were compared


@pytest.mark.parametrize("mode", ["text", "fused"])
def test_a_similarity_channel_equals_python(neo4j_driver, medical_kg, fold_similarity, mode) -> None:
    """A similarity channel lives in the vectors (a text model's ``[projection ; c]`` against ``[r ; u_r 1]``, a
    late model's ``[s ; t ; c]`` against ``[r_s ; v_r r_t ; v_r u_r 1]``): the plugin's top k, both directions,
    equal Python's, and kgemb.score the model's raw score."""
    from kgemb.reasoning import LinkPredictor

    options = dict(
        dim=16, epochs=3, batch_size=32, early_stopping=False, show_progress=False, seed=0, rules=False
    )
    plain = kgemb.train(medical_kg, mode=mode, text_channel=mode == "fused", **options)
    # a different weight per oriented relation
    weights = np.linspace(1.0, 8.0, 2 * medical_kg.num_relations, dtype=np.float32)
    model, without = fold_similarity(plain, weights, weights[::-1].copy())
    blocks = 3 if mode == "fused" else 2
    assert model.entity_vectors().shape[1] == blocks * plain.representation.dim
    # it counts
    assert not torch.allclose(model.score_tails([0], [0]), without.score_tails([0], [0]), atol=0.1)
    predictor = LinkPredictor(model)
    push(model, predictor, neo4j_driver, "text_similarity")
    kg = model.kg
    for r, rel in enumerate(kg.relations):
        rel_type = call(
            neo4j_driver,
            "MATCH (x:KgembRelation {model: $m, key: $k}) RETURN x.type AS t",
            m="text_similarity",
            k=rel,
        )[0]["t"]
        config = {"model": "text_similarity"}
        for h in _anchors(model, r, 0, n=3):
            got = _procedure(neo4j_driver, "tails", kg.entities[h].key, rel_type, 10, config)
            _compare(got, predictor.tails(kg.entities[h].key, r, k=10))
        for t in _anchors(model, r, 2, n=3):
            got = _procedure(neo4j_driver, "heads", kg.entities[t].key, rel_type, 10, config)
            _compare(got, predictor.heads(r, kg.entities[t].key, k=10))
    _score_equals_python(neo4j_driver, model, "text_similarity")
