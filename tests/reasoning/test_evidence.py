"""Multi-evidence ranking over an ontology (``reasoning/evidence.py``): the formula itself, then
``LinkPredictor.rank`` on a small rdfs:subClassOf graph with a real (tiny) trained model."""

from __future__ import annotations

import itertools
import math
from pathlib import Path

import numpy as np
import pytest
from kgemb.reasoning.evidence import ItemEvidence, log_likelihood, normalise, order

from kgemb.errors import KgembError

ONTO = "http://example.org/onto/"
DATA = Path(__file__).parent / "data"


def test_the_formula_on_hand_made_inputs() -> None:
    """Two items, four candidates; the numbers a port of the formula must reproduce."""
    items = [
        # item 0 = term 5 with ancestors 5 (IC 2.0) and 1 (IC 0.5); candidate 0 has term 5 itself, 1 only term 1
        ItemEvidence(
            5, np.array([1, 5]), np.array([0.5, 2.0]), [np.array([0, 1, 2]), np.array([0])], np.array([0])
        ),
        # item 1 = term 7 (IC 1.5), carried by candidate 2 through a more specific annotation
        ItemEvidence(7, np.array([7]), np.array([1.5]), [np.array([2])], np.array([], dtype=np.int64)),
    ]
    counts = np.array([2, 8, 1, 0])
    eps, beta, lam = 0.3, 0.4, 0.5
    scores = log_likelihood(items, 4, counts, eps=eps, beta=beta, lam=lam)
    coverage = [1.0, (2 / 8) ** beta, 1.0, 1.0]
    match = [[2.0, lam * 0.5, lam * 0.5, 0.0], [0.0, 0.0, 1.5, 0.0]]  # term 1 is only an ancestor of term 5
    for x in range(4):
        expected = sum(math.log(eps + (1 - eps) * coverage[x] * math.exp(match[i][x])) for i in range(2))
        assert scores.total[x] == pytest.approx(expected, abs=1e-12)
    assert scores.kind[:, 0].tolist() == [2, 0] and scores.kind[:, 2].tolist() == [1, 1]
    assert scores.via[0].tolist() == [5, 1, 1, -1]
    logp = np.log(np.full((2, 4), 0.5))
    with_model = log_likelihood(items, 4, counts, logp, alpha=2.0, eps=eps, beta=beta, lam=lam)
    assert with_model.total == pytest.approx(scores.total + 2.0 * 2 * math.log(0.5))
    probs = normalise(scores.total, np.array([True, True, True, False]))
    assert probs.sum() == pytest.approx(1.0) and probs[3] == 0.0
    assert order(scores.total).tolist()[0] == 0


@pytest.fixture(scope="module")
def onto():  # -> LinkPredictor
    from kgemb.connectors import rdf
    from kgemb.reasoning import LinkPredictor

    import kgemb

    kg = rdf.load(DATA / "ontology.ttl")
    model = kgemb.train(
        kg, mode="structure", interaction="rotate", dim=16, epochs=3, show_progress=False, seed=0
    )
    return LinkPredictor(model, evidence_weight=0.0)


def test_a_vaguer_term_still_ranks_the_right_disease_first(onto) -> None:
    found = onto.rank(["seizure", "ataxia", "cataract"], relation="has phenotype", k=5)
    assert found[0].key == ONTO + "neuro_a"  # annotated with focal seizure, a kind of seizure
    seizure = found[0].contributions[0]
    assert seizure.match == "hierarchy" and not seizure.known and seizure.via == ONTO + "seizure"
    assert [c.match for c in found[0].contributions[1:]] == ["exact", "exact"]
    # a more specific term than the annotation gets partial credit through the common ancestor
    found = onto.rank(["focal seizure", "fever"], relation="has phenotype", k=9)
    rank = {p.key[len(ONTO) :]: p for p in found}
    first = rank["epilepsy"].contributions[0]
    assert first.match == "hierarchy" and first.via == ONTO + "seizure"
    assert 0 < first.information < onto.evidence_index.annotations(1, "head").ic[onto.entity("focal seizure")]
    # epilepsy (seizure, fever) is closer than the diseases with fever alone
    assert rank["epilepsy"].rank < min(rank["infection"].rank, rank["dermatitis"].rank)


def test_one_irrelevant_symptom_keeps_the_right_disease_in_the_top_3(onto) -> None:
    found = onto.rank(["seizure", "ataxia", "cataract", "eczema"], relation="has phenotype", k=3)
    assert ONTO + "neuro_a" in [p.key for p in found]
    neuro = next(p for p in found if p.key == ONTO + "neuro_a")
    assert neuro.contributions[-1].match in ("unmatched", "hierarchy")  # eczema: at most the root in common


def test_probabilities_sum_to_one_and_ties_only_where_the_evidence_is_identical(onto) -> None:
    for evidence in (["tremor", "glaucoma"], ["fever", "rash", "hearing loss"], ["skin abnormality"]):
        found = onto.rank(evidence, relation="has phenotype", k=100)
        assert len(found) == 9  # every disease, nothing else
        assert sum(p.score for p in found) == pytest.approx(1.0)
        for a, b in itertools.pairwise(found):
            same = [(c.match, c.via, c.information) for c in a.contributions] == [
                (c.match, c.via, c.information) for c in b.contributions
            ]
            if a.raw == b.raw:
                assert same, (a, b)
            else:
                assert a.raw > b.raw and a.score > b.score
    found = onto.rank(["tremor", "glaucoma"], relation="has phenotype", k=2)
    assert {p.key for p in found} == {ONTO + "twin_one", ONTO + "twin_two"}  # identical evidence: a tie
    assert found[0].raw == found[1].raw


def test_hierarchy_relation_can_be_named_and_bad_names_are_explained(onto) -> None:
    from kgemb.reasoning import LinkPredictor

    flat = LinkPredictor(onto.model, evidence_weight=0.0, hierarchy=[])
    found = flat.rank(["seizure", "ataxia", "cataract"], relation="has phenotype", k=9)
    neuro = next(p for p in found if p.key == ONTO + "neuro_a")
    assert neuro.contributions[0].match == "unmatched"  # without the hierarchy, seizure says nothing of it
    with pytest.raises(KgembError, match="hierarchy relation"):
        LinkPredictor(onto.model, hierarchy=["no_such_relation"]).rank(["fever"], relation="has phenotype")
    with pytest.raises(KgembError, match="model_weight"):
        onto.rank(["fever"], relation="has phenotype", model_weight=-1)


def test_shared_test_vectors() -> None:
    """``data/evidence_vectors.json``: inputs and outputs of the formula, for the Java ``kgemb.rank`` to reproduce."""
    import json

    doc = json.loads((DATA / "evidence_vectors.json").read_text())
    for case in doc["cases"]:
        items = [
            ItemEvidence(
                it["term"],
                np.array(it["terms"]),
                np.array(it["ic"]),
                [np.array(c, dtype=np.int64) for c in it["carriers"]],
                np.array(it["direct"], dtype=np.int64),
            )
            for it in case["items"]
        ]
        logp = case["model_log_probability"]
        p = case["params"]
        got = log_likelihood(
            items,
            case["num_candidates"],
            np.array(case["annotation_counts"]),
            None if logp is None else np.array(logp),
            alpha=p["alpha"],
            eps=p["eps"],
            beta=p["beta"],
            lam=p["lam"],
        )
        want = case["expected"]
        assert got.total == pytest.approx(want["total"], abs=1e-12)
        assert got.kind.tolist() == want["kind"] and got.via.tolist() == want["via"]
        assert normalise(got.total) == pytest.approx(want["probability"], abs=1e-12)
