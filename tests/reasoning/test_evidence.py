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
        # item 0 = term 5 with ancestors 5 (IC 2.0) and 1 (IC 0.5); candidate 0 carries term 5 (p = 0.4,
        # background 0.1), candidates 1 and 2 only term 1
        ItemEvidence(
            5,
            np.array([1, 5]),
            np.array([0.5, 2.0]),
            [np.array([0, 1, 2]), np.array([0])],
            np.array([0]),
            np.array([0.4]),
            0.1,
        ),
        # item 1 = term 7 (IC 1.5), carried by candidate 2 through a more specific annotation
        ItemEvidence(
            7,
            np.array([7]),
            np.array([1.5]),
            [np.array([2])],
            np.array([], dtype=np.int64),
            np.array([0.3]),
            0.15,
        ),
    ]
    eps, kappa = 0.1, 0.4
    scores = log_likelihood(items, 4, eps=eps, kappa=kappa)
    ratio = [[0.4 / 0.1, kappa * 0.5 / 2.0, kappa * 0.5 / 2.0, 0.0], [0.0, 0.0, 0.3 / 0.15, 0.0]]
    assert scores.ratio == pytest.approx(np.array(ratio), abs=1e-12)
    for x in range(4):
        expected = sum(math.log(eps + (1 - eps) * ratio[i][x]) for i in range(2))
        assert scores.total[x] == pytest.approx(expected, abs=1e-12)
    assert scores.kind[:, 0].tolist() == [2, 0] and scores.kind[:, 2].tolist() == [1, 1]
    assert scores.via[0].tolist() == [5, 1, 1, -1] and scores.via[1].tolist() == [-1, -1, 7, -1]
    logp = np.log(np.full((2, 4), 0.5))
    with_model = log_likelihood(items, 4, logp, alpha=2.0, eps=eps, kappa=kappa)
    assert with_model.total == pytest.approx(scores.total + 2.0 * 2 * math.log(0.5))
    probs = normalise(scores.total, np.array([True, True, True, False]))
    assert probs.sum() == pytest.approx(1.0) and probs[3] == 0.0
    assert order(scores.total).tolist()[0] == 0


def test_sparse_totals_subsets_and_top_k_agree_with_the_full_formula() -> None:
    """rank's fast path (totals over the touched candidates, details for the ranked ones, a partial top-k) gives
    the full formula's numbers and order, ties broken by id."""
    from kgemb.reasoning.evidence import totals

    rng = np.random.default_rng(0)
    n = 60
    items = []
    for term in (3, 7, -1):
        carriers = [np.unique(rng.integers(0, n, size)) for size in (40, 20, 8)]
        items.append(
            ItemEvidence(
                term,
                np.array([1, 2, term]),
                np.array([0.0, 0.7, 2.1]),
                carriers,
                carriers[2][:3],
                rng.uniform(0.01, 0.5, len(carriers[2])),
                0.05,
            )
        )
    full = log_likelihood(items, n, eps=0.1, kappa=0.3)
    assert totals(items, n, eps=0.1, kappa=0.3) == pytest.approx(full.total, abs=1e-12)
    picked = np.array([17, 3, 42, 0])
    part = log_likelihood(items, n, eps=0.1, kappa=0.3, candidates=picked)
    for name in ("total", "per_item", "ratio", "kind", "via"):
        assert np.allclose(getattr(part, name), getattr(full, name)[..., picked]), name
    tied = np.round(full.total, 1)  # many ties
    allowed = rng.random(n) > 0.2
    for k in (1, 5, 20, 100):
        assert order(tied, allowed, k).tolist() == order(tied, allowed).tolist()[:k]


def test_the_index_builds_the_generative_model() -> None:
    """p(q | x) and b(q) from a graph: a finding is an annotation itself (1 - rho) or a vaguer term, nearer ones
    likelier (gamma per step), divided by the candidate's number of annotations."""
    from kgemb.reasoning.evidence import EvidenceIndex

    from kgemb.graph import Entity, KnowledgeGraph

    # terms: 0 root <- 1 <- 2 (chain), 3 <- root; candidates 4 (annotated 2, 3) and 5 (annotated 1)
    rows = [(1, 0, 0), (2, 0, 1), (3, 0, 0), (4, 1, 2), (4, 1, 3), (5, 1, 1)]
    kg = KnowledgeGraph(
        [Entity(str(i), {"en": [f"e{i}"]}) for i in range(6)],
        ["is_a", "has"],
        splits={"train": np.array(rows, dtype=np.int64)},
    )
    rho, gamma = 0.3, 0.5
    ann = EvidenceIndex(kg, rho=rho, gamma=gamma).annotations(1, "head")
    up2 = rho * np.array([gamma, gamma**2]) / (gamma + gamma**2)  # from term 2 to 1 and to 0
    assert ann.carriers(1).tolist() == [4, 5]
    assert ann.probability(1) == pytest.approx([up2[0] / 2, 1 - rho])  # 4: via 2, two annotations; 5: itself
    assert ann.probability(0) == pytest.approx([(up2[1] + rho) / 2, rho])  # 3's only ancestor is 0
    assert ann.background[1] == pytest.approx((up2[0] / 2 + 1 - rho) / 2)
    assert ann.ic[0] == pytest.approx(0.0)  # every candidate carries the root


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
    assert 0 < first.likelihood_ratio < 1  # closeness: a share of a neutral item, never evidence for epilepsy
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
            same = [(c.match, c.via, c.likelihood_ratio) for c in a.contributions] == [
                (c.match, c.via, c.likelihood_ratio) for c in b.contributions
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
                np.array(it["probability"], dtype=np.float64),
                it["background"],
            )
            for it in case["items"]
        ]
        logp = case["model_log_probability"]
        p = case["params"]
        got = log_likelihood(
            items,
            case["num_candidates"],
            None if logp is None else np.array(logp),
            alpha=p["alpha"],
            eps=p["eps"],
            kappa=p["kappa"],
        )
        want = case["expected"]
        assert got.total == pytest.approx(want["total"], abs=1e-12)
        assert got.ratio == pytest.approx(np.array(want["ratio"]), abs=1e-12)
        assert got.kind.tolist() == want["kind"] and got.via.tolist() == want["via"]
        assert normalise(got.total) == pytest.approx(want["probability"], abs=1e-12)


def test_a_fitted_evidence_weight_is_kept_with_the_calibration(medical_model_dir, tmp_path) -> None:
    """The weight chosen on validation is stored in calibration.json (per hierarchy and constraint mode), so the
    next predictor of the same model reads it instead of fitting again."""
    import json
    import shutil

    from kgemb.reasoning import LinkPredictor

    folder = tmp_path / "model"
    shutil.copytree(medical_model_dir, folder)
    grid = (0.001, 0.03, 0.1, 0.3, 1.0)
    first = LinkPredictor.load(folder).evidence_weight
    assert first in grid
    path = folder / "calibration.json"
    doc = json.loads(path.read_text(encoding="utf-8"))
    (key,) = doc["info"]["evidence_weight"]
    assert doc["info"]["evidence_weight"][key] == first
    doc["info"]["evidence_weight"][key] = 0.77  # a value no fit gives: read back, not fitted again
    path.write_text(json.dumps(doc), encoding="utf-8")
    assert LinkPredictor.load(folder).evidence_weight == 0.77
    other = LinkPredictor.load(
        folder, constraints="none"
    ).evidence_weight  # another setting: fitted and added
    assert other in grid
    assert len(json.loads(path.read_text(encoding="utf-8"))["info"]["evidence_weight"]) == 2
    assert LinkPredictor.load(folder, evidence_weight=0.2).evidence_weight == 0.2  # a given weight wins
