"""The rule channel's text-neighbour vote (:class:`kgemb.channels.TextVotes`): neighbours, scores, training on an
inductive split, save and load."""

from __future__ import annotations

import numpy as np
import torch

import kgemb
from kgemb.channels import RuleChannel, TextVotes
from kgemb.rules import RuleSet
from kgemb.training import seen_entities

FAST = dict(dim=16, epochs=12, batch_size=16, lr=0.02, show_progress=False, seed=0)


def test_neighbours_are_the_nearest_seen_entities_by_text_never_the_entity_itself() -> None:
    text = torch.randn(12, 6, generator=torch.Generator().manual_seed(0))
    seen = torch.tensor([True, False] * 6)
    votes = TextVotes.build(text, seen, k=3, temperature=0.05)
    x = text - text.mean(0)
    x = x / x.norm(dim=1, keepdim=True)
    cos = x @ x.T
    for e in range(12):
        others = [z for z in range(12) if seen[z] and z != e]
        want = sorted(others, key=lambda z: -float(cos[e, z]))[:3]
        assert votes.near[e].tolist() == want
        top = cos[e, want]
        np.testing.assert_allclose(votes.strength[e], torch.softmax((top - top[0]) / 0.05, 0), rtol=1e-5)


def test_a_candidate_scores_the_strengths_of_its_neighbours_among_the_answers() -> None:
    rng = np.random.default_rng(0)
    n, relations = 30, 3
    triples = np.unique(
        np.stack([rng.integers(0, 20, 80), rng.integers(0, 3, 80), rng.integers(0, 20, 80)], 1), axis=0
    )
    rules = RuleSet.mine(triples, n, relations)
    seen = torch.zeros(n, dtype=torch.bool)
    seen[torch.as_tensor(triples[:, [0, 2]].ravel())] = True
    votes = TextVotes.build(torch.randn(n, 8, generator=torch.Generator().manual_seed(1)), seen, k=4)
    anchors = np.arange(20).repeat(2 * relations)
    rels = np.tile(np.arange(2 * relations), 20)  # r + R: the head query of r
    got = votes.scores(rules, anchors, rels).numpy()
    for i, (a, r) in enumerate(zip(anchors.tolist(), rels.tolist(), strict=True)):
        if r < relations:
            answers = set(triples[(triples[:, 0] == a) & (triples[:, 1] == r), 2].tolist())
        else:
            answers = set(triples[(triples[:, 2] == a) & (triples[:, 1] == r - relations), 0].tolist())
        want = [
            sum(s for z, s in zip(votes.near[e], votes.strength[e], strict=True) if z in answers)
            for e in range(n)
        ]
        np.testing.assert_allclose(got[i], want, rtol=1e-6, atol=1e-7)
    assert (got > 0).sum() > 50  # the comparison can fail: many candidates get votes
    # unseen entities (20..29) get votes from the seen ones they resemble
    assert (got[:, 20:] > 0).any()


def test_an_inductive_model_weighs_the_vote_and_keeps_it_when_saved(
    tmp_path, tiny_kg, default_encoder
) -> None:
    """On a graph with entities without training triples, a text model's rule channel weighs the vote on
    validation (never below the model there); a channel with it scores what its parts say in every scorer and
    after save and load."""
    ind = tiny_kg.split(valid=0.15, test=0.15, seed=1, inductive=True)
    model = kgemb.train(ind, encoder=default_encoder, mode="text", **FAST)
    recorded = model.config["rules"]["votes"]
    assert recorded["unseen_entities"] == int((~seen_entities(ind)).sum()) > 0
    assert len(recorded["weights"]) == 2 * ind.num_relations
    assert recorded["valid_mrr_combined"] >= recorded["valid_mrr_embedding"], recorded
    # a channel with the vote, a weight per oriented relation
    pm = model.pykeen_model
    rules = RuleSet.from_graph(ind)
    votes = TextVotes.build(model.representation.text_mean, seen_entities(ind))
    rule_weights = np.zeros(2 * ind.num_relations, np.float32)
    vote_weights = np.arange(2 * ind.num_relations, dtype=np.float32) + 1
    pm.rule_channel = None
    test = torch.as_tensor(ind.triples("test"))
    alone_t, alone_h = model.score_tails(test[:, 0], test[:, 1]), model.score_heads(test[:, 1], test[:, 2])
    pm.rule_channel = RuleChannel(rules, rule_weights, votes, vote_weights)
    tails, heads = model.score_tails(test[:, 0], test[:, 1]), model.score_heads(test[:, 1], test[:, 2])
    r = test[:, 1].numpy()
    want_t = votes.scores(rules, test[:, 0].numpy(), r) * torch.as_tensor(vote_weights[r]).unsqueeze(1)
    inverse = r + ind.num_relations
    want_h = votes.scores(rules, test[:, 2].numpy(), inverse) * torch.as_tensor(
        vote_weights[inverse]
    ).unsqueeze(1)
    torch.testing.assert_close(tails, alone_t + want_t)
    torch.testing.assert_close(heads, alone_h + want_h)
    assert want_t.abs().sum() + want_h.abs().sum() > 0  # it counts
    # explain lists the vote's terms: known answers the candidate resembles, with their strengths
    from kgemb.reasoning import LinkPredictor

    if torch.count_nonzero(want_t):  # a test query and a candidate the vote reaches
        i, t = (int(x) for x in torch.nonzero(want_t)[0])
        h, r = int(test[i, 0]), int(test[i, 1])
        side, terms = "tail_votes", votes.voters(rules, h, r, t)
    else:
        i, h = (int(x) for x in torch.nonzero(want_h)[0])
        r, t = int(test[i, 1]), int(test[i, 2])
        side, terms = "head_votes", votes.voters(rules, t, r + ind.num_relations, h)
    found = LinkPredictor(model).explain(ind.entities[h].key, r, ind.entities[t].key)
    want = [(ind.entities[z].key, round(x, 4)) for z, x in terms]
    assert want and [(n.key, n.similarity) for n in getattr(found, side)] == want
    assert "text-neighbour vote" in found.format()
    model.config["rules"] = {
        "used": True,
        "weights": rule_weights.tolist(),
        "votes": {"used": True, "weights": vote_weights.tolist()},
    }
    model.save(tmp_path / "voted")
    loaded = kgemb.load(tmp_path / "voted")
    torch.testing.assert_close(loaded.score_tails(test[:, 0], test[:, 1]), tails)
    torch.testing.assert_close(loaded.score_heads(test[:, 1], test[:, 2]), heads)
    # saved again without it, the folder holds no vote
    pm.rule_channel = None
    model.config["rules"] = None
    model.save(tmp_path / "voted")
    assert not (tmp_path / "voted" / "votes.npz").exists()
    torch.testing.assert_close(kgemb.load(tmp_path / "voted").score_tails(test[:, 0], test[:, 1]), alone_t)
    # a late fused model's text part weighs it as the text model does
    late = kgemb.train(ind, encoder=default_encoder, mode="fused", **FAST)
    recorded = late.config["rules"]["votes"]
    assert recorded["chosen_on"] == "text part" and len(recorded["weights"]) == 2 * ind.num_relations
    assert recorded["valid_mrr_combined"] >= recorded["valid_mrr_embedding"], recorded
    # a graph whose entities all have training triples weighs it too; a structure model has none
    split = tiny_kg.split(valid=0.1, test=0.1, seed=0)
    assert bool(seen_entities(split).all())
    plain = kgemb.train(split, encoder=default_encoder, mode="text", **FAST)
    assert plain.config["rules"]["votes"]["unseen_entities"] == 0
    structure = kgemb.train(split, mode="structure", **FAST)
    assert "votes" not in structure.config["rules"]


def test_the_settings_line_names_the_vote_only_where_the_graph_gets_one(tiny_kg, monkeypatch) -> None:
    """describe() (printed before training) says "with a text-neighbour vote" for a text model, and not for a graph
    with more entity pairs than the vote compares (kgemb.channels.VOTE_MAX_PAIRS), where training skips it."""
    import kgemb.channels
    from kgemb.training import TrainingConfig

    kg = tiny_kg.split(valid=0.15, test=0.15, seed=1)
    cfg = TrainingConfig(mode="text").resolved(len(kg.triples("train")), kg.num_entities)
    assert "rules mined and weighed on validation with a text-neighbour vote" in cfg.describe(kg)
    assert "vote" not in TrainingConfig(mode="structure").resolved(100, 10).describe(kg)
    monkeypatch.setattr(kgemb.channels, "VOTE_MAX_PAIRS", 1)
    assert "rules mined and weighed on validation" in cfg.describe(kg)
    assert "vote" not in cfg.describe(kg)
