"""The text-aware model: every mode and interaction on a tiny graph, scoring APIs, inductive text queries."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import kgemb
from kgemb.errors import ConfigError, KgembError
from kgemb.model import INTERACTIONS, MODES, ViewPooling, interaction_spec, relation_text_initializer

FAST = dict(dim=16, epochs=25, batch_size=16, lr=0.02, early_stopping=False, show_progress=False, seed=0)


def train_mrr(model) -> float:
    """MRR of the training tails (unfiltered, tails only): how well the model fits what it was trained on."""
    train = model.kg.triples("train")
    scores = model.score_tails(train[:, 0], train[:, 1])
    true = scores[torch.arange(len(train)), torch.as_tensor(train[:, 2])]
    ranks = (scores > true.unsqueeze(1)).sum(dim=1) + 1
    return float((1.0 / ranks.float()).mean())


@pytest.mark.parametrize("interaction", sorted(INTERACTIONS))
@pytest.mark.parametrize("mode", MODES)
def test_every_mode_and_interaction_learns_the_tiny_graph(tiny_kg, default_encoder, mode, interaction):
    model = kgemb.train(tiny_kg, encoder=default_encoder, mode=mode, interaction=interaction, **FAST)
    n, d = tiny_kg.num_entities, 16
    train = tiny_kg.triples("train")
    # the three scoring paths agree
    hrt_scores = model.score_hrt(train[:8])
    tails = model.score_tails(train[:8, 0], train[:8, 1])
    heads = model.score_heads(train[:8, 1], train[:8, 2])
    assert tails.shape == heads.shape == (8, n)
    np.testing.assert_allclose(tails[np.arange(8), train[:8, 2]].numpy(), hrt_scores, rtol=1e-4, atol=1e-4)
    # a reciprocal model (the default objective) scores a head query as the tail query of the inverse relation
    r_count = tiny_kg.num_relations
    assert model.config["reciprocal"]
    inverse = torch.as_tensor(np.stack([train[:8, 2], train[:8, 1] + r_count], axis=1))
    with torch.no_grad():
        inverse_scores = model.pykeen_model.score_hrt(
            torch.cat([inverse, torch.as_tensor(train[:8, :1])], dim=1)
        ).reshape(-1)
    np.testing.assert_allclose(
        heads[np.arange(8), train[:8, 0]].numpy(), inverse_scores.numpy(), rtol=1e-4, atol=1e-4
    )
    # fused with a dot-product interaction is "late" by default: [structural part ; text part]
    late = mode == "fused" and interaction in ("complex", "distmult")
    assert model.representation.late == late
    assert model.entity_vectors().shape == (n, 2 * d if late else d)
    assert model.relation_vectors().shape[0] == 2 * r_count
    # it learned the graph: far above the ~0.15 MRR of random scores over 26 entities
    assert train_mrr(model) > 0.4, (mode, interaction)


@pytest.mark.parametrize("combination", ["elementwise", "sum"])
def test_fused_combinations_learn_and_reload(tiny_kg, default_encoder, combination, tmp_path):
    model = kgemb.train(
        tiny_kg, encoder=default_encoder, mode="fused", interaction="complex", combination=combination, **FAST
    )
    gate = model.representation.gate
    assert (gate is None) == (combination == "sum")
    assert model.config["training"]["structure_dropout"] == 0.0  # dropout is convex's default only
    if gate is not None:  # a gate per dimension: 3 * dim weights, not the full gate's 2 * dim * dim
        assert sum(p.numel() for p in gate.parameters()) == 3 * 16
    assert train_mrr(model) > 0.4
    model.save(tmp_path / "m")
    train = tiny_kg.triples("train")
    torch.testing.assert_close(
        kgemb.load(tmp_path / "m").score_tails(train[:8, 0], train[:8, 1]),
        model.score_tails(train[:8, 0], train[:8, 1]),
    )


def test_vectors_score_like_ids(tiny_kg, default_encoder):
    """score_*_from_vectors with an entity's own vector gives the same scores as by its id."""
    model = kgemb.train(tiny_kg, encoder=default_encoder, mode="fused", interaction="rotate", **FAST)
    vectors = torch.as_tensor(model.entity_vectors()[:3])
    by_id = model.score_tails([0, 1, 2], [0, 0, 1])
    torch.testing.assert_close(
        model.score_tails_from_vectors(vectors, [0, 0, 1]), by_id, rtol=1e-5, atol=1e-5
    )
    by_id = model.score_heads([0, 0, 1], [0, 1, 2])
    torch.testing.assert_close(
        model.score_heads_from_vectors([0, 0, 1], vectors), by_id, rtol=1e-5, atol=1e-5
    )


@pytest.mark.parametrize("interaction", ["rotate", "complex", "distmult"])
def test_ranking_every_entity_is_one_matrix_product_with_pykeens_ranks(
    tiny_kg, default_encoder, interaction, monkeypatch
):
    """Evaluation and score_tails/heads skip PyKEEN's batch x entities x dim broadcast (the interaction is never
    called) and give the same scores and metrics as PyKEEN's own path."""
    import kgemb.model

    model = kgemb.train(tiny_kg, encoder=default_encoder, mode="fused", interaction=interaction, **FAST)
    pm = model.pykeen_model
    calls = []
    forward = pm.interaction.forward
    monkeypatch.setattr(pm.interaction, "forward", lambda *a, **k: calls.append(1) or forward(*a, **k))
    fast = model.evaluate("train")
    tails = model.score_tails([0, 1, 2], [0, 0, 1])
    assert not calls
    monkeypatch.setattr(kgemb.model, "product_form", lambda interaction: None)
    assert model.evaluate("train") == pytest.approx(fast, abs=1e-9)
    torch.testing.assert_close(model.score_tails([0, 1, 2], [0, 0, 1]), tails, rtol=1e-5, atol=1e-5)
    assert calls  # PyKEEN's path this time


def test_the_convex_gate_mixes_text_and_structure_and_can_switch_either_off(tiny_kg, default_encoder):
    """The convex fused vector is ``(1 - g) t + g s``: a gate shut at 0 gives the text part, open at 1 the
    structural part, and in between the mix; ``gate`` keeps the whole text part, ``t + g s``."""
    model = kgemb.train(
        tiny_kg, encoder=default_encoder, mode="fused", interaction="transe", combination="convex", **FAST
    )
    rep = model.representation
    assert rep.combination == "convex"
    assert rep.structure_dropout == model.config["training"]["structure_dropout"] == 0.25  # its default
    s = rep.structure(indices=None).detach()
    with torch.no_grad():
        t = rep.project(rep._pooled_text(None))
        g = torch.sigmoid(rep.gate(torch.cat([t, s], dim=-1)))
        assert 0.05 < float(g.mean()) < 0.95  # a trained gate that mixes
        torch.testing.assert_close(rep.real_vectors(None), (1 - g) * t + g * s)
        for bias, expected in ((-60.0, t), (60.0, s)):
            rep.gate.weight.zero_()
            rep.gate.bias.fill_(bias)
            torch.testing.assert_close(rep.real_vectors(None), expected)
        rep.combination = "gate"
        torch.testing.assert_close(rep.real_vectors(None), t + s)


@pytest.mark.parametrize(
    ("interaction", "combination"),
    [("transe", "convex"), ("transe", "gate"), ("complex", "convex"), ("complex", "late")],
)
def test_unseen_entity_falls_back_to_its_text(
    tiny_kg, default_encoder, interaction, combination, monkeypatch
):
    """An entity in no training triple gets in fused mode what its text alone gives: the vector embed_texts gives
    its label (with a text channel, ``[fused ; text part]`` of it; a late model's structural part is 0)."""
    import kgemb.channels
    from kgemb.graph import GraphBuilder

    b = GraphBuilder()
    for e in tiny_kg.entities:
        b.add_entity(e.key)
        for lang, texts in e.labels.items():
            for t in texts:
                b.add_label(e.key, t, lang)
    b.add_label("pneumonia", "pneumonia", "en")  # in the graph, in no triple
    channel = interaction == "complex"
    if channel:  # a validation split, and a text channel folded in with weight 1 for every relation
        monkeypatch.setattr(kgemb.channels, "TEXT_WEIGHTS", (1.0,))
        monkeypatch.setattr(kgemb.channels, "LATE_WEIGHTS", (1.0,))
    for i, (h, r, t) in enumerate(tiny_kg.triples("train").tolist()):
        split = "valid" if channel and i % 8 == 0 else "train"
        b.add_triple(tiny_kg.entities[h].key, tiny_kg.relations[r], tiny_kg.entities[t].key, split=split)
    kg = b.build()
    model = kgemb.train(
        kg,
        encoder=default_encoder,
        mode="fused",
        interaction=interaction,
        combination=combination,
        rules=False,
        **FAST,
    )
    assert model.representation.text_channel == channel
    i = kg.entity_id("pneumonia")
    assert not bool(model.representation.seen[i])
    np.testing.assert_allclose(
        model.entity_vectors()[i], model.embed_texts(["pneumonia"])[0].numpy(), atol=1e-5
    )
    # the new-entity query path ranks real entities
    scores = model.score_tails_from_vectors(
        model.embed_texts(["Lungenentzündung"]), [kg.relation_id("affects")]
    )
    assert scores.shape == (1, kg.num_entities) and torch.isfinite(scores).all()


def test_structure_mode_has_no_text_part(tiny_kg):
    model = kgemb.train(tiny_kg, encoder=None, mode="structure", interaction="distmult", **FAST)
    assert model.encoder_fingerprint is None
    with pytest.raises(ConfigError, match="text part"):
        model.embed_texts(["fever"])


def test_attention_pooling_starts_as_the_mean_and_learns_weights():
    views = torch.randn(7, 8)
    segment = torch.tensor([0, 0, 0, 1, 2, 2, 2])
    attention, mean = ViewPooling(8, heads=2, kind="attention"), ViewPooling(8, kind="mean")
    attention.reset_parameters()
    torch.testing.assert_close(attention(views, segment, 3), mean(views, segment, 3))
    with torch.no_grad():
        attention.query.weight.normal_()
    pooled = attention(views, segment, 3)
    assert not torch.allclose(pooled, mean(views, segment, 3))
    torch.testing.assert_close(pooled[1], views[3])  # one view: attention returns it unchanged


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (dict(interaction="rotate", dim=33), "odd"),
        (dict(interaction="complex", dim=15), "odd"),
        (dict(interaction="conve"), "unknown interaction"),
        (dict(mode="hybrid"), "unknown mode"),
        (dict(epochs=0), "epochs"),
        (dict(loss="hinge"), "unknown loss"),
        (dict(pooling="max"), "unknown pooling"),
        (dict(lr=0), "lr"),
        (dict(loss="crossentropy", margin=1.0), "no margin"),
        (dict(resume=True), "checkpoint_dir"),
        (dict(learning_rate=0.1), "unknown training option"),
        (dict(mode="fused", interaction="rotate", combination="late"), "late"),
        (dict(mode="fused", combination="late", text_channel=False), "late"),
    ],
)
def test_bad_settings_are_clear_errors(tiny_kg, options, message):
    with pytest.raises(KgembError, match=message):
        kgemb.train(tiny_kg, encoder=None, **{"mode": "structure", **options})


def test_relation_vectors_can_start_from_relation_names(tiny_kg, default_encoder):
    raw = default_encoder.encode(["has symptom", "affects", "has symptom", "felt in"])
    (init,) = relation_text_initializer(raw, interaction_spec("rotate"), dim=16, seed=0)
    vectors = torch.view_as_complex(init.tensor)
    assert vectors.shape == (4, 8)
    torch.testing.assert_close(vectors[0], vectors[2])  # same name, same start
    torch.testing.assert_close(vectors.abs(), torch.ones(4, 8))  # RotatE relations are rotations
    model = kgemb.train(
        tiny_kg,
        encoder=default_encoder,
        interaction="rotate",
        relation_text_init=True,
        **{**FAST, "epochs": 2},
    )
    assert model.config["training"]["relation_text_init"] is True
    # a late model (the complex default): both halves of its relation rows start from the names
    late = kgemb.train(tiny_kg, encoder=default_encoder, relation_text_init=True, **{**FAST, "epochs": 2})
    assert late.representation.late and late.config["training"]["relation_text_init"] is True


@pytest.mark.parametrize("rows", [1, 2, 10, 32, 33, 70])
def test_product_scores_equal_the_plain_formulas_in_both_orientations(rows: int) -> None:
    """Few queries are multiplied as candidates @ queries (a faster orientation), more as queries @ candidates,
    from 8 rows without gradients through oneDNN instead of MKL; each gives q·t and -|q - t| (and the ranking proxy
    2 q·t - |t|²) to float32 accuracy, and with gradients (MKL) the same."""
    from kgemb.model import _by_dnn, _dnn_works, product_scores

    gen = torch.Generator().manual_seed(rows)
    q, cand = torch.randn(rows, 24, generator=gen), torch.randn(500, 24, generator=gen)
    q64, c64 = q.double(), cand.double()
    assert _by_dnn(q, cand) == (rows >= 8 and _dnn_works())
    expected = {
        ("dot", True): q64 @ c64.T,
        ("distance", True): -torch.cdist(q64, c64),
        ("distance", False): 2 * q64 @ c64.T - (c64 * c64).sum(dim=1),
    }
    for (form, raw), want in expected.items():
        got = product_scores(form, q, cand, raw=raw)
        assert got.shape == (rows, 500) and got.is_contiguous()
        torch.testing.assert_close(got.double(), want, rtol=1e-5, atol=1e-4)
    leaf = q.clone().requires_grad_(True)
    product_scores("distance", leaf, cand).sum().backward()
    want_grad = torch.func.grad(lambda x: -torch.cdist(x, c64).sum())(q64)
    torch.testing.assert_close(leaf.grad.double(), want_grad, rtol=1e-5, atol=1e-4)
