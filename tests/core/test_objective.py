"""kgemb's training objective: reciprocal scoring, candidates with self-negatives, known-answer masks, RowAdam."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch
from kgemb.connectors import tabular

import kgemb
from kgemb.objective import (
    KnownAnswers,
    Objective,
    OneToNLoop,
    RowAdam,
    reciprocal_examples,
    shared_candidates,
)

FAST = dict(dim=16, epochs=12, batch_size=16, lr=0.02, show_progress=False, seed=0)


def test_reciprocal_examples_and_known_answers() -> None:
    triples = np.array([[0, 0, 1], [0, 0, 2], [3, 1, 0]])
    ex = reciprocal_examples(triples, num_relations=2)
    assert ex.tolist() == [[0, 0, 1], [0, 0, 2], [3, 1, 0], [1, 2, 0], [2, 2, 0], [0, 3, 3]]
    known = KnownAnswers(ex[:, 0], ex[:, 1], ex[:, 2], num_relations=4)
    rows, ents = known.pairs(known.query_of[torch.tensor([0, 5])])
    assert sorted(zip(rows.tolist(), ents.tolist(), strict=True)) == [(0, 1), (0, 2), (1, 3)]


def test_candidates_hold_every_query_entity_and_answer() -> None:
    torch.manual_seed(0)
    anchors, answers = torch.tensor([5, 17, 99]), torch.tensor([6, 18, 42])
    cand = shared_candidates(1000, 20, anchors, answers)
    assert torch.equal(cand, torch.unique(cand))  # sorted, no repeats
    assert set(anchors.tolist()) <= set(cand.tolist()) and set(answers.tolist()) <= set(cand.tolist())


@pytest.mark.parametrize("sampled", [False, True])
def test_other_true_answers_are_masked_never_the_target(tiny_kg, sampled) -> None:
    model = kgemb.train(tiny_kg, mode="structure", **{**FAST, "epochs": 1})
    triples = tiny_kg.triples("train")

    loop = OneToNLoop(model.pykeen_model, triples, Objective(negatives=8 if sampled else None))
    rows = torch.arange(len(loop.examples))
    batch = loop.examples[rows]
    candidates = shared_candidates(tiny_kg.num_entities, 8, batch[:, 0], batch[:, 2]) if sampled else None
    target = batch[:, 2] if candidates is None else torch.searchsorted(candidates, batch[:, 2].contiguous())
    width = tiny_kg.num_entities if candidates is None else len(candidates)
    mask = loop._mask(loop.known.query_of[rows], target, candidates, width)
    assert not mask[torch.arange(len(rows)), target].any()
    truth = {(a, r, t) for a, r, t in loop.examples.tolist()}
    ids = torch.arange(width) if candidates is None else candidates
    for i, (a, r, _) in enumerate(batch.tolist()):
        masked = {int(ids[j]) for j in torch.nonzero(mask[i]).flatten()}
        others = {t for (a2, r2, t) in truth if (a2, r2) == (a, r)} - {int(batch[i, 2])}
        assert masked == others & {int(x) for x in ids}


def test_row_adam_is_adam_for_dense_and_touches_only_sparse_rows() -> None:
    torch.manual_seed(0)
    w1 = torch.nn.Parameter(torch.randn(6, 4))
    w2 = torch.nn.Parameter(w1.detach().clone())
    ours, theirs = RowAdam([w1], lr=0.1, weight_decay=0.01), torch.optim.Adam([w2], lr=0.1, weight_decay=0.01)
    for _ in range(5):
        for w, opt in ((w1, ours), (w2, theirs)):
            opt.zero_grad()
            (w.sin() * torch.arange(24.0).view(6, 4)).sum().backward()
            opt.step()
    torch.testing.assert_close(w1, w2)
    emb = torch.nn.Embedding(10, 3, sparse=True)
    before = emb.weight.detach().clone()
    opt = RowAdam(emb.parameters(), lr=0.1)
    emb(torch.tensor([2, 7, 2])).sum().backward()
    opt.step()
    changed = (emb.weight.detach() != before).any(dim=1)
    assert changed.nonzero().flatten().tolist() == [2, 7]


@pytest.mark.parametrize("interaction", ["complex", "rotate", "distmult", "transe", "pairre"])
def test_a_reciprocal_model_answers_head_queries_with_the_inverse_relation(tiny_kg, interaction) -> None:
    model = kgemb.train(tiny_kg, mode="structure", interaction=interaction, **{**FAST, "epochs": 2})
    pk = model.pykeen_model
    assert pk.reciprocal and pk.num_relations == 2 * tiny_kg.num_relations
    rels, tails = torch.tensor([0, 1, 2]), torch.tensor([3, 4, 5])
    heads_all = model.score_heads(rels, tails)
    with torch.no_grad():
        as_tails = pk.score_t(torch.stack([tails, rels + tiny_kg.num_relations], 1)).float()
    torch.testing.assert_close(heads_all, as_tails, rtol=1e-5, atol=1e-5)
    # PyKEEN's path with explicit candidates agrees with the all-entity product
    with torch.no_grad():
        explicit = pk.score_h(torch.stack([rels, tails], 1), heads=torch.arange(tiny_kg.num_entities))
    torch.testing.assert_close(explicit.float(), heads_all, rtol=1e-4, atol=1e-4)
    # and the reasoning scorer ranks heads by the same scores
    from kgemb.reasoning import LinkPredictor

    lp = LinkPredictor(model)
    best = lp.heads(
        tiny_kg.relations[2], tiny_kg.entities[5].key, k=3, filter_known=False, constraints="none"
    )
    top = torch.topk(heads_all[2], 3).values
    np.testing.assert_allclose([p.raw for p in best], top.numpy(), rtol=1e-4, atol=1e-4)


def test_umls_with_the_default_objective_and_rules(tmp_path) -> None:
    """A floor a little under what was measured at these settings (test MRR 0.976 with rules; the embedding alone
    0.904 on validation), and the rule channel seen the same way by evaluation, LinkPredictor and a reloaded model."""
    kg = tabular.load("pykeen:UMLS")
    model = kgemb.train(kg, mode="structure", dim=256, epochs=20, show_progress=False)
    rules = model.config["rules"]
    assert rules["used"] and rules["valid_mrr_combined"] > rules["valid_mrr_embedding"]
    assert model.evaluate("test")["mrr"] > 0.95
    from kgemb.reasoning import LinkPredictor

    h, r = 0, int(np.argmax(rules["weights"][: kg.num_relations]))  # a relation whose rules count
    best = LinkPredictor(model).tails(kg.entities[h].key, kg.relations[r], k=5, filter_known=False)
    row = model.score_tails([h], [r])[0]
    np.testing.assert_allclose([p.raw for p in best], torch.topk(row, 5).values.numpy(), rtol=1e-5, atol=1e-4)
    model.save(tmp_path / "m")
    again = kgemb.load(tmp_path / "m")
    torch.testing.assert_close(again.score_tails([h], [r])[0], row)
    # calibration is fitted on the scores the predictor reports: rules included
    from kgemb.reasoning.calibration import calibration_examples

    ex = calibration_examples(model, "valid", negatives=2, max_triples=5, seed=0)
    valid = kg.triples("valid")
    valid = valid[np.sort(np.random.default_rng(0).choice(len(valid), 5, replace=False))]  # as it samples
    whole = model.score_tails(valid[:, 0], valid[:, 1])[torch.arange(5), valid[:, 2]]  # tail positives first
    np.testing.assert_allclose(ex.scores[ex.labels == 1][:5], whole.numpy(), rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("combination", ["gate", "late"])
def test_text_channel_is_folded_into_every_scorer(tmp_path, combination) -> None:
    """A fused ComplEx model's text channel: the folded model scores ``fused + w[r] * text part`` with the weights
    chosen on validation (the inverse relation's weight for head queries), and the LinkPredictor and a reloaded
    model see the same scores. On validation the combination is never below either part alone. A late model's
    fused part is its structural part, each part has its own block of the relation rows, and its text part adds
    its similarity channel where validation takes it (UMLS does at this size)."""
    kg = tabular.load("pykeen:UMLS")
    train = kg.triples("train")
    keep = np.random.default_rng(0).random(len(train)) < 0.9  # the rest comes in by update() below
    first = kgemb.KnowledgeGraph(
        kg.entities, kg.relations, kg.relation_labels, {**kg.splits, "train": train[keep]}
    )
    model = kgemb.train(
        first, mode="fused", dim=64, epochs=10, show_progress=False, rules=False, combination=combination
    )
    channel = model.config["text_channel"]
    assert channel["used"], channel
    late = combination == "late"
    # a late model reports its two parts (the ends of its weight grid are not the parts alone)
    parts = (
        ("valid_mrr_structure", "valid_mrr_text") if late else ("valid_mrr_embedding", "valid_mrr_text_first")
    )
    assert channel["valid_mrr_combined"] >= max(channel[k] for k in parts), channel
    if late:  # a late model's text part always counts
        assert 0.0 not in channel["weights"]
    rep = model.representation
    # a late model's text part may take its similarity channel (UMLS does): a third block
    width = 64 * (3 if rep.similarity else 2)
    assert rep.out_dim == width and model.entity_vectors().shape == (kg.num_entities, width)
    w = torch.tensor(channel["weights"])
    r_base = kg.num_relations
    r = int(torch.argmax(w[:r_base]))  # a relation whose text weight is positive
    fused, text = rep.parts(None)
    folded = model.pykeen_model.relation_representations[0](indices=None)
    relation = folded[:, :32]  # the unfolded rows
    text_relation = folded[:, 32:64] / w.unsqueeze(1) if late else relation
    if late:
        assert not torch.allclose(text_relation, relation)
    u, cosine = torch.zeros_like(w), torch.zeros(kg.num_entities, kg.num_entities)
    if rep.similarity:  # + w_r · u_r · cos(c_a, c_e)
        from kgemb.model import similarity_vectors

        c = similarity_vectors(rep.text_mean, rep.similarity_map)
        u, cosine = torch.tensor(channel["similarity_weights"]), c @ c.T

    def by_hand(anchor: int, rel: int) -> torch.Tensor:
        f = (fused[anchor] * relation[rel] * fused.conj()).sum(-1).real
        t = (text[anchor] * text_relation[rel] * text.conj()).sum(-1).real
        return f + w[rel] * (t + u[rel] * cosine[anchor])

    torch.testing.assert_close(model.score_tails([3], [r])[0], by_hand(3, r), rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(model.score_heads([r], [3])[0], by_hand(3, r + r_base), rtol=1e-4, atol=1e-4)
    from kgemb.reasoning import LinkPredictor

    best = LinkPredictor(model).tails(kg.entities[3].key, kg.relations[r], k=5, filter_known=False)
    top = torch.topk(model.score_tails([3], [r])[0], 5)
    assert [kg.entities[i].key for i in top.indices.tolist()] == [p.key for p in best]
    model.save(tmp_path / "m")
    again = kgemb.load(tmp_path / "m")
    torch.testing.assert_close(again.score_tails([3], [r]), model.score_tails([3], [r]))
    # continued training unfolds, trains and folds again with refitted weights
    updated = model.update(kg, epochs=2)
    assert updated.config["text_channel"] is not None
    assert updated.evaluate("test")["mrr"] > 0.5


def test_similarity_channel_is_folded_into_every_scorer(tmp_path, tiny_split, fold_similarity) -> None:
    """A text ComplEx model's similarity channel: folded, the model scores ``text(a, r, e) + u[r] · cos(c_a, c_e)``
    (the inverse relation's weight for head queries), and a reloaded model, a new entity's vector from its text and
    continued training see the same layout. Trained with it, the weights are chosen on validation and the
    combination is never below the model alone there."""
    options = dict(FAST, mode="text", interaction="complex", rules=False)
    model = kgemb.train(tiny_split, text_channel=False, **options)
    assert model.config["text_channel"] is None
    # a different weight per oriented relation
    u = np.arange(2 * tiny_split.num_relations, dtype=np.float32) + 1
    both, _ = fold_similarity(model, u)
    assert both.config["text_channel"]["used"] and both.representation.out_dim == 2 * model.representation.dim
    _check_similarity_channel(tmp_path, both, model, u)
    # trained with it: weighed on validation
    weighed = kgemb.train(tiny_split, **options)
    channel = weighed.config["text_channel"]
    assert len(channel["weights"]) == 2 * tiny_split.num_relations
    assert channel["valid_mrr_combined"] >= channel["valid_mrr_embedding"], channel


def test_a_late_models_text_part_carries_its_similarity_channel(
    tmp_path, tiny_split, fold_similarity
) -> None:
    """A late ComplEx model with its text part's similarity channel: vectors ``[s ; t ; c]``, relation rows
    ``[r_s ; v r_t ; v u 1]``, so it scores ``structure + v[r] · (text + u[r] · cos(c_a, c_e))`` in both directions;
    a reloaded model, a new entity's vector from its text and continued training see the same layout, and
    unfolding gives the two parts back. Trained, the text part's weights are chosen on validation as a text
    model's are, and reported."""
    from kgemb.model import unfold_text_channel

    model = kgemb.train(tiny_split, **dict(FAST, mode="fused", interaction="complex", rules=False))
    channel = model.config["text_channel"]
    assert model.representation.late and len(channel["similarity_weights"]) == 2 * tiny_split.num_relations
    assert channel["valid_mrr_text"] >= channel["valid_mrr_text_alone"], channel
    r2 = 2 * tiny_split.num_relations
    v = 2.0 ** (np.arange(r2, dtype=np.float32) % 4 - 1)  # text weights 1/2 … 4
    u = np.arange(r2, dtype=np.float32) + 1
    both, two = fold_similarity(model, u, v)
    assert both.config["text_channel"]["similarity_weights"] == u.tolist()
    assert both.representation.similarity and both.representation.out_dim == 3 * model.representation.dim
    _check_similarity_channel(tmp_path, both, two, v * u)
    rows = "relation_representations.0._embeddings.weight"
    unfolded = unfold_text_channel(both.pykeen_model.state_dict(), v)[rows]
    torch.testing.assert_close(unfolded, unfold_text_channel(two.pykeen_model.state_dict(), v)[rows])


def _check_similarity_channel(tmp_path: Any, both: Any, plain: Any, u: np.ndarray) -> None:
    """``both`` scores as ``plain`` plus ``u[r]`` times the cosine of the similarity components, both directions;
    reloaded, for a new entity's text and after continued training too."""
    from kgemb.model import similarity_vectors

    kg, rep = both.kg, both.representation
    c = similarity_vectors(rep.text_mean, rep.similarity_map)
    torch.testing.assert_close(c.norm(dim=1), torch.ones(len(c)))
    r_base = kg.num_relations
    for r in range(r_base):
        for a in (0, 5, 17):
            cos = c[a] @ c.T
            expected = plain.score_tails([a], [r])[0] + u[r] * cos
            torch.testing.assert_close(both.score_tails([a], [r])[0], expected, rtol=1e-4, atol=1e-4)
            expected = plain.score_heads([r], [a])[0] + u[r + r_base] * cos
            torch.testing.assert_close(both.score_heads([r], [a])[0], expected, rtol=1e-4, atol=1e-4)
    both.save(tmp_path / "m")
    again = kgemb.load(tmp_path / "m")
    torch.testing.assert_close(again.score_tails([3], [1]), both.score_tails([3], [1]))
    heart = next(i for i, e in enumerate(kg.entities) if e.key == "heart")  # one view, its key
    # a seen entity's vector from its text alone: its text part and similarity components are the stored ones (a
    # late model's structural part is estimated)
    kept = slice(rep.dim if rep.late else 0, None)
    torch.testing.assert_close(
        again.embed_texts(["heart"])[0][kept], torch.from_numpy(again.entity_vectors()[heart])[kept]
    )
    assert again.update(kg.split(valid=0.1, test=0.1, seed=1), epochs=1).evaluate("test")["mrr"] > 0


def test_row_adam_updates_dense_complex_weights_as_adam_does() -> None:
    torch.manual_seed(0)
    w1 = torch.nn.Parameter(torch.randn(5, 3, dtype=torch.cfloat))
    w2 = torch.nn.Parameter(w1.detach().clone())
    ours, theirs = RowAdam([w1], lr=0.1, weight_decay=0.01), torch.optim.Adam([w2], lr=0.1, weight_decay=0.01)
    for _ in range(5):
        for w, opt in ((w1, ours), (w2, theirs)):
            opt.zero_grad()
            (torch.view_as_real(w).sin() * torch.arange(30.0).view(5, 3, 2)).sum().backward()
            opt.step()
    torch.testing.assert_close(w1, w2)


def test_one_view_fast_path_trains_as_the_attention_pooling_does() -> None:
    """With one view per entity the pooled text is the constant view itself (attention weight exactly 1): the fast
    path skips the pooling and must train to the same weights and scores as the plain path."""

    def trained(fast: bool) -> torch.Tensor:
        model, triples = _small_fused_model()
        rep = model.entity_representations[0]
        assert rep.one_view
        rep.one_view = fast
        loop = OneToNLoop(model, triples, Objective(n3=0.01, text_loss=1.0, weight_decay=1e-5))
        torch.manual_seed(0)
        loop.train(num_epochs=3, batch_size=8, use_tqdm=False)
        model.eval()
        return model.score_t(torch.tensor([[0, 0], [1, 1], [2, 4], [5, 2]]))

    torch.testing.assert_close(trained(True), trained(False), atol=1e-5, rtol=1e-5)


def test_n3_penalty_and_its_gradient_equal_autograds_abs_cubed() -> None:
    """The N3 term written out (real and complex factors: the modulus cubed, gradient 3 |x| x) equals autograd's
    ``x.abs().pow(3).sum()``, value and gradient, including at zero."""
    from kgemb.objective import _N3

    gen = torch.Generator().manual_seed(0)
    for dtype in (torch.float32, torch.complex64):
        x0 = torch.randn(40, 16, dtype=dtype, generator=gen)
        x0[0] = 0
        want_x, got_x = x0.clone().requires_grad_(True), x0.clone().requires_grad_(True)
        want = want_x.abs().pow(3).sum()
        got = _N3.apply(got_x)
        (2.5 * want).backward()
        (2.5 * got).backward()
        torch.testing.assert_close(got, want)
        torch.testing.assert_close(got_x.grad, want_x.grad)


def test_the_text_parts_loss_trains_the_text_part_not_the_relations() -> None:
    """A convex fused model's text-part loss moves the text projection but not the relations: their gradient is the
    fused loss's alone. With the ``gate`` combination that loss trains the relations too."""

    def gradients(text_loss: float, combination: str = "convex") -> dict[str, torch.Tensor]:
        model, triples = _small_fused_model(combination)
        loop = OneToNLoop(model, triples, Objective(text_loss=text_loss))
        loop._step(torch.arange(16))
        return {name: p.grad.to_dense().clone() for name, p in model.named_parameters() if p.grad is not None}

    alone, with_text = gradients(0.0), gradients(1.0)
    relations = [name for name in alone if name.startswith("relation_representations")]
    assert relations
    for name in relations:
        torch.testing.assert_close(with_text[name], alone[name])
    projection = "entity_representations.0.project.weight"
    assert not torch.allclose(with_text[projection], alone[projection])
    gate_alone, gate_with_text = gradients(0.0, "gate"), gradients(1.0, "gate")
    assert not all(torch.allclose(gate_with_text[name], gate_alone[name]) for name in relations)


def _small_fused_model(combination: str = "gate") -> tuple[Any, np.ndarray]:
    """A fused ComplEx model (dim 8, reciprocal) over 12 entities with one random text view each, and 40 random
    triples over 3 relations; the same every call."""
    from pykeen.triples import KGInfo

    from kgemb.features import TextFeatures
    from kgemb.model import build_model

    n, r = 12, 3
    gen = torch.Generator().manual_seed(0)
    features = TextFeatures(torch.randn(n, 8, generator=gen), torch.arange(n + 1), torch.zeros(8), 1.0)
    heads, tails = (torch.randint(n, (40,), generator=gen).numpy() for _ in range(2))
    model = build_model(
        KGInfo(n, r, False),
        mode="fused",
        interaction="complex",
        dim=8,
        features=features,
        reciprocal=True,
        combination=combination,
    )
    return model, np.stack([heads, np.arange(40) % r, tails], axis=1)


@pytest.mark.parametrize("negatives", [None, 4])
def test_an_entity_unseen_in_training_is_never_a_negative(negatives) -> None:
    """A text-using model's candidates are the entities with training triples (all of them, or ``negatives`` drawn
    from them plus the batch's answers and anchors): an unseen entity, scored from its text, is never pushed down."""
    model, triples = _small_fused_model()
    rep = model.entity_representations[0]
    unseen = [3, 7]
    seen = torch.ones(rep.max_id, dtype=torch.bool)
    seen[unseen] = False
    rep.seen.copy_(seen)
    triples = triples[~np.isin(triples[:, [0, 2]], unseen).any(axis=1)]
    loop = OneToNLoop(model, triples, Objective(n3=0.01, negatives=negatives))
    widths = []
    scores = loop._scores
    loop._scores = lambda anchor, rels, ents: widths.append(len(ents)) or scores(anchor, rels, ents)
    torch.manual_seed(0)
    for _ in range(5):
        loop._step(torch.arange(8))
    assert loop.pool.tolist() == [e for e in range(rep.max_id) if e not in unseen]
    assert max(widths) <= rep.max_id - len(unseen) and (negatives is not None or min(widths) == 10)
    for _ in range(200):  # the draws themselves
        drawn = shared_candidates(rep.max_id, 4, torch.tensor([0]), torch.tensor([1]), loop.pool)
        assert not np.isin(drawn.numpy(), unseen).any()
    from pykeen.triples import KGInfo

    from kgemb.model import build_model

    structure = build_model(
        KGInfo(12, 3, False), mode="structure", interaction="complex", dim=8, features=None, reciprocal=True
    )
    structure.entity_representations[0].seen.copy_(seen)
    assert OneToNLoop(structure, triples, Objective()).pool is None  # no text: every entity, as before


def test_a_late_models_parts_train_as_two_models() -> None:
    """``combination="late"``: the structural part answers with the first half of each relation row, the text part
    with the second, each with a loss of its own; the text part's loss moves neither the structural part nor its
    half of the relations, and trains the text part's half."""

    def gradients(text_loss: float) -> dict[str, torch.Tensor]:
        model, triples = _small_fused_model("late")
        loop = OneToNLoop(model, triples, Objective(text_loss=text_loss, n3=0.01))
        loop._step(torch.arange(16))
        return {name: p.grad.to_dense().clone() for name, p in model.named_parameters() if p.grad is not None}

    alone, with_text = gradients(0.0), gradients(1.0)
    structure = "entity_representations.0.structure._embeddings.weight"
    torch.testing.assert_close(with_text[structure], alone[structure])
    relation = "relation_representations.0._embeddings.weight"
    half = with_text[relation].shape[1] // 2
    torch.testing.assert_close(with_text[relation][:, :half], alone[relation][:, :half])
    assert not torch.allclose(with_text[relation][:, half:], alone[relation][:, half:])
    assert "entity_representations.0.gate.weight" not in with_text  # no gate: the parts are scored apart


def test_a_late_model_is_its_structure_and_text_models_added_with_their_rules(tmp_path) -> None:
    """A late model scores as the structure model and the text model of the same settings, each with the rule
    channel it has alone, added with the text weights: rule weights ``a_s + w·a_t`` (moved only where validation
    shows a significant gain on the sum) and scores ``structure + w·text``, both directions; the text model with its
    similarity channel as it has it alone."""
    kg = tabular.load("pykeen:Nations")
    settings = dict(dim=32, epochs=15, show_progress=False, seed=0, threads=1)
    alone = {mode: kgemb.train(kg, mode=mode, **settings) for mode in ("structure", "text")}
    late = kgemb.train(kg, mode="fused", **settings)
    assert late.representation.late
    w = np.asarray(late.config["text_channel"]["weights"])
    a_s, a_t = (np.asarray(alone[mode].config["rules"]["weights"]) for mode in ("structure", "text"))
    rules = late.config["rules"]
    assert rules["used"] and (a_s > 0).any() and (a_t > 0).any()
    kept = np.isclose(rules["weights"], a_s + w * a_t, rtol=1e-6)
    assert rules["moved"] == int((~kept).sum()) and kept.mean() > 0.9
    text = late.config["text_channel"]  # each part's validation MRR with the rules it has alone
    # the text part's similarity weights are the text model's
    assert text["similarity_weights"] == alone["text"].config["text_channel"]["weights"]
    for mode in ("structure", "text"):
        assert text[f"valid_mrr_{mode}"] == rules[f"valid_mrr_{mode}_with_rules"]
        assert text[f"valid_mrr_{mode}"] == pytest.approx(
            alone[mode].config["rules"]["valid_mrr_combined"], abs=0.02
        )
    r_base = kg.num_relations
    relations = np.array([r for r in range(r_base) if kept[r] and kept[r + r_base]])
    heads = np.arange(len(relations)) % kg.num_entities
    both = torch.as_tensor(np.concatenate([w[relations], w[relations + r_base]])).float().unsqueeze(1)

    def scores(model: Any) -> torch.Tensor:
        return torch.cat([model.score_tails(heads, relations), model.score_heads(relations, heads)])

    expected = scores(alone["structure"]) + both * scores(alone["text"])
    torch.testing.assert_close(scores(late), expected, rtol=1e-4, atol=1e-3)
    late.save(tmp_path / "m")  # the summed rule weights are kept as they are
    again = kgemb.load(tmp_path / "m")
    torch.testing.assert_close(
        again.pykeen_model.rule_channel.weights, late.pykeen_model.rule_channel.weights
    )
    torch.testing.assert_close(scores(again), scores(late))


def test_late_text_weights_leave_one_only_on_a_significant_validation_gain() -> None:
    """The text weights of a late model stay 1 unless validation shows a significant gain (paired, in standard
    errors); picked by the largest mean they would follow the noise of every relation."""
    from kgemb.channels import LATE_WEIGHTS, _fit

    kg = tabular.load("pykeen:UMLS")
    n, r2 = kg.num_entities, 2 * kg.num_relations
    gen = torch.Generator().manual_seed(0)
    base_table, extra_table = torch.randn(r2, n, n, generator=gen), torch.randn(r2, n, n, generator=gen)
    helped = int(
        torch.bincount(torch.as_tensor(kg.triples("valid")[:, 1])).argmax()
    )  # most validation triples

    def base(batch: torch.Tensor) -> torch.Tensor:
        return base_table[batch[:, 1], batch[:, 0]]

    def noise(batch: torch.Tensor) -> torch.Tensor:
        return extra_table[batch[:, 1], batch[:, 0]]

    def knowing(
        batch: torch.Tensor,
    ) -> torch.Tensor:  # noise, except that it knows the answers of one relation
        out = noise(batch).clone()
        rows = torch.nonzero(batch[:, 1] == helped).flatten()
        out[rows, batch[rows, 2]] += 3.0
        return out

    guarded, _ = _fit(base, noise, LATE_WEIGHTS, kg, None, 0, "text", prefer=1.0)
    greedy, _ = _fit(base, noise, LATE_WEIGHTS, kg, None, 0, "text")
    assert (guarded != 1).mean() < 0.1 < 0.5 < (greedy != 1).mean()
    helped_weights, _ = _fit(base, knowing, LATE_WEIGHTS, kg, None, 0, "text", prefer=1.0)
    assert helped_weights[helped] > 1

    # a weight of each relation's own (a late model's rule weights): the greedy choice only where it does not
    # overfit under cross-validation. A base that knows every answer and noise added: greedy picks follow the noise
    # of small relations and lose on the other half, so every relation keeps its own weight.
    def informed(batch: torch.Tensor) -> torch.Tensor:
        out = base(batch).clone()
        out[torch.arange(len(batch)), batch[:, 2]] += 2.0
        return out

    own = np.full(r2, LATE_WEIGHTS[0], np.float32)
    kept, _ = _fit(informed, noise, LATE_WEIGHTS, kg, None, 0, "text", prefer=own)
    assert (kept == own).all()
    greedy, _ = _fit(informed, noise, LATE_WEIGHTS, kg, None, 0, "text")
    assert (greedy != own).any()  # what the guard kept out
    moved, _ = _fit(informed, knowing, LATE_WEIGHTS, kg, None, 0, "text", prefer=own)
    assert moved[helped] > own[helped]  # a large relation the extra scores know: the greedy choice gains


def test_a_late_models_structure_map_is_trained_for_ranking() -> None:
    """The text -> structural part map starts from the ridge regression and its ranking loss falls; nothing else
    moves."""
    from kgemb.objective import train_structure_map

    model, triples = _small_fused_model("late")
    loop = OneToNLoop(model, triples, Objective(text_loss=1.0, n3=0.01))
    torch.manual_seed(0)
    loop.train(num_epochs=20, batch_size=8, use_tqdm=False)
    model.eval()
    rep = model.entity_representations[0]
    rep.fit_structure_map()
    ridge = rep.structure_map.clone()
    before = {k: v.clone() for k, v in model.state_dict().items() if not k.endswith("structure_map")}
    losses = train_structure_map(model, triples, epochs=10, batch_size=8)
    assert losses[-1] < 0.9 * losses[0]
    assert not torch.allclose(rep.structure_map, ridge)
    after = model.state_dict()
    assert all(torch.equal(value, after[name]) for name, value in before.items())
