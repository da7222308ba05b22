"""LinkPredictor on a small trained medical model: tails, heads, relations, scores, multi-evidence ranking,
entity resolution in several languages, constraints, calibration, search, and every bad input of the issue."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from kgemb.errors import KgembError

MED = "http://example.org/med/"
SYMPTOMS_OF = {  # as written in data/medical.ttl
    "measles": {"fever", "rash", "red_eyes", "cough", "runny_nose"},
    "influenza": {"fever", "cough", "headache", "muscle_pain", "fatigue", "chills", "sore_throat"},
    "malaria": {"fever", "chills", "sweating", "headache", "nausea"},
}


def types_of(predictor, key: str) -> list[str]:
    return predictor.kg.entities[predictor.kg.entity_id(key)].types


def test_tails_are_ranked_calibrated_new_and_of_the_right_type(predictor) -> None:
    found = predictor.tails("influenza", "has_symptom", k=5)
    assert len(found) == 5
    assert [p.rank for p in found] == [1, 2, 3, 4, 5]
    scores = [p.score for p in found]
    assert scores == sorted(scores, reverse=True) and all(0.0 <= s <= 1.0 for s in scores)
    assert all(types_of(predictor, p.key) == [MED + "Symptom"] for p in found)
    known = {MED + s for s in SYMPTOMS_OF["influenza"]}
    assert not known & {p.key for p in found}  # links already in the graph are left out by default
    listed = predictor.tails("influenza", "has_symptom", k=7, filter_known=False)
    assert any(p.known for p in listed) and all(p.known == (p.key in known) for p in listed)


def test_heads_by_chinese_label_and_other_names(predictor) -> None:
    by_zh = predictor.heads("has symptom", "发烧", k=3, filter_known=False)
    by_iri = predictor.heads(MED + "has_symptom", f"<{MED}fever>", k=3, filter_known=False)
    by_de = predictor.heads("has_symptom", "Fieber", k=3, filter_known=False)
    assert [p.key for p in by_zh] == [p.key for p in by_iri] == [p.key for p in by_de]
    assert all(types_of(predictor, p.key) == [MED + "Disease"] for p in by_zh)
    assert predictor.entity("流行性感冒") == predictor.kg.entity_id(MED + "influenza")


def test_batched_queries_match_single_queries(predictor) -> None:
    kg = predictor.kg
    heads = [kg.entity_id(MED + d) for d in ("influenza", "measles", "malaria")]
    r = kg.relation_id("has_symptom")
    ids, probs = predictor.top_tails(heads, r, k=4)
    for row, h in enumerate(heads):
        single = predictor.tails(h, r, k=4)
        assert [p.id for p in single] == ids[row].tolist()
        np.testing.assert_allclose([p.score for p in single], probs[row], rtol=1e-5)
    ids_h, _ = predictor.top_heads(r, [kg.entity_id(MED + "fever")], k=2, filter_known=False)
    assert ids_h.shape == (1, 2)


def test_k_larger_than_the_candidates_returns_them_all(predictor) -> None:
    kg = predictor.kg
    symptoms = sum(e.types == [MED + "Symptom"] for e in kg.entities)
    flu, r = kg.entity_id(MED + "influenza"), kg.relation_id("has_symptom")
    known = len(predictor.links.tails_of(flu, r))
    assert len(predictor.tails("influenza", "has_symptom", k=1000)) == symptoms - known
    everything = predictor.tails("influenza", "has_symptom", k=1000, constraints="none")
    assert (
        len(everything) == kg.num_entities - known - 1
    )  # has_symptom is irreflexive: never influenza itself
    assert bool(predictor.model.pykeen_model.irreflexive[r]) and flu not in [p.id for p in everything]


def test_min_score_drops_weak_answers(predictor) -> None:
    everything = predictor.tails("influenza", "has_symptom", k=1000)
    floor = everything[len(everything) // 2].score
    kept = predictor.tails("influenza", "has_symptom", k=1000, min_score=floor)
    assert kept and all(p.score >= floor for p in kept) and len(kept) < len(everything)


def test_relations_between_two_entities(predictor) -> None:
    found = predictor.relations("influenza", "lungs", k=5, filter_known=False)
    assert [p.key for p in found] == [MED + "affects"]  # has_symptom cannot end at an organ
    assert found[0].known and 0.0 <= found[0].score <= 1.0
    assert predictor.relations("influenza", "lungs") == []  # the only fitting link is already known


def test_score_gives_the_model_probability_of_triples(predictor) -> None:
    probs = predictor.score(
        [("measles", "has_symptom", "rash"), ("measles", "has_symptom", "frequent urination")]
    )
    assert probs.shape == (2,) and ((probs >= 0) & (probs <= 1)).all()
    assert probs[0] > probs[1]
    raw = predictor.score(np.array([[0, 0, 1]]), raw=True)
    assert raw.shape == (1,)


def test_rank_puts_the_disease_with_all_three_symptoms_first(predictor) -> None:
    evidence = [("发烧", "has_symptom"), ("rash", "has_symptom"), ("rote Augen", "has_symptom")]
    found = predictor.rank(evidence, k=5)
    assert found[0].key == MED + "measles"
    top = found[0].contributions
    assert [c.entity for c in top] == [MED + "fever", MED + "rash", MED + "red_eyes"]
    assert all(c.known and c.match == "exact" and c.via == c.entity for c in top)
    # the runner-up (chickenpox has fever and rash) is held back by its unmatched third item
    assert found[1].score < found[0].score and any(c.match == "unmatched" for c in found[1].contributions)
    assert all(types_of(predictor, p.key) == [MED + "Disease"] for p in found)
    assert [p.score for p in found] == sorted((p.score for p in found), reverse=True)
    everyone = predictor.rank(evidence, k=1000)
    assert sum(p.score for p in everyone) == pytest.approx(1.0)  # normalised over the candidates


def test_rank_sums_the_items_log_likelihoods(predictor) -> None:
    found = predictor.rank(["headache", "nausea", "dizziness"], relation="has_symptom", k=14)
    for p in found:
        assert p.raw == pytest.approx(sum(c.log_likelihood for c in p.contributions), abs=1e-9)
    assert found[0].key == MED + "migraine"  # the only disease with all three
    raws = [p.raw for p in found]
    assert raws == sorted(raws, reverse=True)


def test_rank_tails_from_several_diseases(predictor) -> None:
    found = predictor.rank([("influenza", "has_symptom"), ("malaria", "has_symptom")], target="tail", k=3)
    shared = {MED + s for s in SYMPTOMS_OF["influenza"] & SYMPTOMS_OF["malaria"]}
    assert {p.key for p in found} == shared  # fever, chills, headache: known for both
    assert all(c.known for p in found for c in p.contributions)


def test_free_text_for_an_entity_not_in_the_graph(predictor) -> None:
    found = predictor.tails("a fever with a red itchy skin rash", "has_symptom", k=3, allow_new=True)
    assert len(found) == 3 and all(types_of(predictor, p.key) == [MED + "Symptom"] for p in found)
    with pytest.raises(KgembError, match="unknown entity"):
        predictor.tails("a fever with a red itchy skin rash", "has_symptom")


def test_search_in_any_language(predictor) -> None:
    assert predictor.search("Lungenentzündung", k=3)[0].key == MED + "pneumonia"
    assert predictor.search("发烧", k=1)[0].key == MED + "fever"
    hits = predictor.search("high blood sugar", k=3)
    assert MED + "diabetes" in {p.key for p in hits}
    assert [p.score for p in hits] == sorted((p.score for p in hits), reverse=True)


def test_json_form_of_a_ranking(predictor) -> None:
    found = predictor.rank(["fever", "cough"], relation="has_symptom", k=2)
    doc = json.loads(json.dumps([p.to_dict() for p in found]))
    assert set(doc[0]) == {"key", "label", "score", "rank", "contributions"}
    assert set(predictor.tails("influenza", "has_symptom", k=1)[0].to_dict()) == {
        "key",
        "label",
        "score",
        "rank",
    }


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda lp: lp.tails("influenza", "treats"), "unknown relation 'treats'; known relations"),
        (lambda lp: lp.tails("influenza", "has_symptom", k=0), "k must be a positive"),
        (lambda lp: lp.tails("influenza", "has_symptom", k=-3), "k must be a positive"),
        (lambda lp: lp.tails("influenza", "has_symptom", min_score=2), "min_score must be a probability"),
        (lambda lp: lp.tails("cold", "has_symptom"), "ambiguous: it names 2 entities"),
        (lambda lp: lp.tails("", "has_symptom"), "empty"),
        (lambda lp: lp.rank([], k=3), "evidence is empty"),
        (lambda lp: lp.rank([("influenza", "has_symptom")]), "cannot be the tail of 'has symptom'"),
        (lambda lp: lp.rank(["fever"]), "has no relation"),
        (lambda lp: lp.rank([("fever", "has_symptom")], target="side"), "target 'side'"),
        (lambda lp: lp.search("  "), "empty"),
        (lambda lp: lp.score([("measles", "has_symptom")]), "(head, relation, tail)"),
    ],
)
def test_bad_input_gives_a_clear_error(predictor, call, message) -> None:
    with pytest.raises(KgembError, match=message.replace("(", r"\(").replace(")", r"\)")):
        call(predictor)


def test_unknown_entity_suggests_the_closest_by_text(predictor) -> None:
    with pytest.raises(KgembError, match="closest by text") as err:
        predictor.heads("has_symptom", "Lungenentzündungen")
    assert "pneumonia" in str(err.value)


def test_a_directory_that_is_not_a_model(tmp_path) -> None:
    from kgemb.reasoning import LinkPredictor

    with pytest.raises(KgembError, match="not a kgemb model directory"):
        LinkPredictor.load(tmp_path)
    with pytest.raises(KgembError, match="not a kgemb model directory"):
        LinkPredictor.load(tmp_path / "missing")


def test_calibration_is_saved_and_reloaded(predictor, medical_model_dir) -> None:
    from kgemb.reasoning import LinkPredictor
    from kgemb.reasoning.calibration import CALIBRATION_FILE, calibration_metrics, fit_calibration

    cal = predictor.calibration
    assert (medical_model_dir / CALIBRATION_FILE).is_file()
    assert (cal.a > 0).all() and cal.info["split"] == "valid"
    again = LinkPredictor.load(medical_model_dir).calibration
    np.testing.assert_allclose(again.a, cal.a)
    np.testing.assert_allclose(again.b, cal.b)
    flat = fit_calibration(predictor.model, per_relation=False)
    assert np.unique(flat.a).size == 1 and flat.info["per_relation"] is False
    metrics = calibration_metrics(predictor.model, cal, "test")
    assert set(metrics) == {"brier", "ece"}
    assert 0.0 <= metrics["brier"] <= 0.3  # a tiny model: sane numbers (quality: benchmarks/calibration.py)
    assert 0.0 <= metrics["ece"] <= 0.5


def test_platt_fit_recovers_known_parameters() -> None:
    from kgemb.reasoning.calibration import _platt, brier_and_ece

    rng = np.random.default_rng(0)
    z = rng.normal(size=20000)
    y = (rng.random(20000) < 1 / (1 + np.exp(-(2.0 * z - 0.5)))).astype(float)
    a, b = _platt(z, y, np.ones_like(z), prior=np.array([1.0, 0.0]), strength=1e-6)
    assert a == pytest.approx(2.0, abs=0.1) and b == pytest.approx(-0.5, abs=0.1)
    perfect = brier_and_ece(np.array([0.0, 1.0, 1.0]), np.array([0, 1, 1]))
    assert perfect == {"brier": 0.0, "ece": 0.0}
    off = brier_and_ece(np.array([0.8, 0.8]), np.array([1, 0]))
    assert off["brier"] == pytest.approx(0.34) and off["ece"] == pytest.approx(0.3)


@pytest.mark.parametrize("interaction", ["rotate", "complex", "distmult", "transe", "pairre"])
def test_chunked_scorer_matches_the_model(medical_kg, interaction) -> None:
    """The fast top-k path scores exactly like TrainedModel.score_tails / score_heads, in any chunking."""
    from kgemb.reasoning.scoring import CandidateScorer

    from kgemb.model import TrainedModel, build_model

    model = build_model(
        medical_kg.to_triples_factory(), mode="structure", interaction=interaction, dim=16, features=None
    )
    tm = TrainedModel(medical_kg, model, {"mode": "structure", "interaction": interaction, "dim": 16})
    scorer = CandidateScorer(tm, chunk_size=7)
    h, r = torch.tensor([0, 5, 9]), torch.tensor([0, 1, 0])
    anchors, rels = scorer.anchors(h), scorer.relations(r)
    for side, ref in (("tail", tm.score_tails(h, r)), ("head", tm.score_heads(r, h))):
        torch.testing.assert_close(scorer.scores(side, anchors, rels), ref, atol=1e-5, rtol=1e-5)
        for precision in ("fp32", "bf16", "int8"):
            values, ids = scorer.best(side, anchors, rels, 4, precision=precision)
            assert torch.equal(ids, torch.topk(ref, 4).indices)
            torch.testing.assert_close(values, torch.topk(ref, 4).values)
        torch.testing.assert_close(scorer.exact(side, anchors, rels, ids), torch.topk(ref, 4).values)


def test_log_probability_in_place_matches_float64_logsigmoid() -> None:
    """The in-place log-sigmoid (no gradients) against float64, over large |x| and the infinities; with gradients
    torch's own (the logits keep their graph)."""
    from kgemb.reasoning.calibration import Calibration

    cal = Calibration(np.array([1.5, 0.5]), np.array([-2.0, 1.0]), (1.0, 0.0), "sig")
    scores = torch.cat([torch.linspace(-60, 60, 2001), torch.tensor([float("inf"), float("-inf")])])
    scores = torch.stack([scores, scores])  # one row per relation
    rels = torch.tensor([0, 1])
    want = torch.nn.functional.logsigmoid(cal.logits(scores.double(), rels))
    got = cal.log_probability(scores, rels)
    assert got.dtype == torch.float32
    torch.testing.assert_close(got.double(), want, rtol=1e-6, atol=1e-6)
    leaf = scores[:, :5].clone().requires_grad_(True)
    cal.log_probability(leaf, rels).sum().backward()
    assert leaf.grad is not None and torch.isfinite(leaf.grad).all()
