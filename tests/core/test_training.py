"""Training: determinism, early stopping, checkpoints and resume, losses and samplers, bad input, UMLS, update."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import kgemb
from kgemb.encoders import TextEncoder
from kgemb.errors import InputError
from kgemb.evaluation import _self_loops
from kgemb.graph import GraphBuilder, KnowledgeGraph
from kgemb.sampling import TextHardNegativeSampler, text_neighbours
from kgemb.training import TrainingConfig, seen_entities

FAST = dict(dim=16, epochs=12, batch_size=16, lr=0.02, show_progress=False, seed=0)


class NaNEncoder(TextEncoder):
    """A real TextEncoder backend whose model is broken: every vector is NaN."""

    dim = 8
    fingerprint = "test-nan-encoder"

    def __init__(self) -> None:
        super().__init__(cache=False)

    def _encode_texts(self, texts, role, batch_size, progress):
        progress(len(texts))
        return np.full((len(texts), self.dim), np.nan, dtype=np.float32), 0


def test_same_seed_same_model_other_seed_other_model(tiny_split, default_encoder):
    runs = [
        kgemb.train(
            tiny_split, encoder=default_encoder, mode="fused", early_stopping=False, **{**FAST, "seed": seed}
        )
        for seed in (0, 0, 1)
    ]
    np.testing.assert_array_equal(runs[0].entity_vectors(), runs[1].entity_vectors())
    assert not np.allclose(runs[0].entity_vectors(), runs[2].entity_vectors())


@pytest.mark.parametrize("combination", ["gate", "late"])
def test_resume_ends_where_an_uninterrupted_run_ends(tiny_split, default_encoder, tmp_path, combination):
    """A late model's parts are trained one after the other, each with its checkpoints in a folder of its own."""
    options = dict(
        encoder=default_encoder,
        mode="fused",
        combination=combination,
        eval_every=2,
        patience=10,
        **{**FAST, "epochs": 6},
    )
    whole = kgemb.train(tiny_split, **options)
    ckpt = tmp_path / "ckpt"
    kgemb.train(tiny_split, **{**options, "epochs": 3}, checkpoint_dir=str(ckpt), checkpoint_every=3)
    folders = [ckpt / "structure", ckpt / "text"] if combination == "late" else [ckpt]
    for folder in folders:
        assert (folder / "checkpoint.json").is_file() and (folder / "checkpoint.safetensors").is_file()
    resumed = kgemb.train(tiny_split, **options, checkpoint_dir=str(ckpt), checkpoint_every=3, resume=True)
    np.testing.assert_array_equal(whole.entity_vectors(), resumed.entity_vectors())
    histories = [
        [
            part["valid_history"]
            for part in (model.config["training"].get("parts") or {"": model.config["training"]}).values()
        ]
        for model in (whole, resumed)
    ]
    assert histories[0] == histories[1] and all(histories[0])
    # a checkpoint of other settings is refused, not silently mixed in
    with pytest.raises(InputError, match="other settings"):
        kgemb.train(tiny_split, **{**options, "lr": 0.05}, checkpoint_dir=str(ckpt), resume=True)
    # a damaged checkpoint is refused
    (folders[0] / "checkpoint.safetensors").write_bytes(b"garbage")
    with pytest.raises(InputError, match="damaged"):
        kgemb.train(tiny_split, **options, checkpoint_dir=str(ckpt), resume=True)


def test_early_stopping_keeps_the_best_validation_epoch(tiny_split, default_encoder):
    model = kgemb.train(
        tiny_split,
        encoder=default_encoder,
        mode="text",
        eval_every=1,
        patience=2,
        rules=False,  # the history is of the embedding; rules are weighed after training
        **{**FAST, "epochs": 40},
    )
    training = model.config["training"]
    history = dict(training["valid_history"])
    assert training["best_epoch"] == max(history, key=history.get)
    assert training["epochs_run"] < 40 or len(history) == 40
    # the kept weights are the best epoch's: evaluating them reproduces the recorded validation MRR
    assert model.evaluate("valid")["mrr"] == pytest.approx(history[training["best_epoch"]], abs=1e-6)
    assert model.config["metrics"]["valid"]["mrr"] == pytest.approx(history[training["best_epoch"]])


@pytest.mark.parametrize("loss", ["infonce", "nssa", "crossentropy", "margin", "softplus"])
def test_other_losses_train(tiny_kg, default_encoder, loss):
    model = kgemb.train(
        tiny_kg, encoder=default_encoder, mode="fused", interaction="distmult", loss=loss, **FAST
    )
    assert model.config["training"]["loss"] == loss
    assert math.isfinite(model.config["training"]["final_loss"])
    if loss == "infonce":
        assert model.config["training"]["sampler"] == "hard"


def test_inductive_split_is_evaluated_on_entities_never_trained(tiny_kg, default_encoder):
    kg = tiny_kg.split(valid=0.15, test=0.15, seed=1, inductive=True)
    model = kgemb.train(kg, encoder=default_encoder, mode="text", **FAST)
    test = kg.triples("test")
    unseen = ~model.representation.seen.numpy()
    assert unseen[test[:, 0]].any() or unseen[test[:, 2]].any()
    metrics = model.evaluate("test")
    assert metrics["n"] == len(test) and 0 < metrics["mrr"] <= 1
    # the test-graph protocol: ranks among the test triples' entities only, checked against a plain computation
    ranks: list[np.ndarray] = []
    among = model.evaluate("test", candidates="split", ranks_out=ranks)
    candidates = np.unique(test[:, [0, 2]])
    known = {tuple(t) for s in kg.splits for t in kg.triples(s).tolist()}
    irreflexive = model.pykeen_model.irreflexive.tolist()  # such a query's anchor is filtered too
    assert any(irreflexive[r] for r in test[:, 1])
    # the anchors are filtered by two rows per evaluated triple, not one per entity and irreflexive relation
    loops = _self_loops(model.pykeen_model, torch.from_numpy(test))
    assert 0 < len(loops) <= 2 * len(test) and (loops[:, 0] == loops[:, 2]).all()
    expected = {"head": [], "tail": []}
    for h, r, t in test.tolist():
        for side, scores, true, anchor in (
            ("tail", model.score_tails([h], [r])[0], t, h),
            ("head", model.score_heads([r], [t])[0], h, t),
        ):
            others = [
                c for c in candidates
                if c != true and ((h, r, c) if side == "tail" else (c, r, t)) not in known
                and not (irreflexive[r] and c == anchor)
            ]  # fmt: skip
            s, x = scores[others].numpy(), float(scores[true])
            expected[side].append(1 + (s > x).sum() + 0.5 * (s == x).sum())
    got = np.sort(np.concatenate(ranks))
    want = np.sort(np.concatenate([expected["head"], expected["tail"]]))
    np.testing.assert_allclose(got, want)
    assert among["mrr"] >= metrics["mrr"] and len(candidates) < kg.num_entities
    with pytest.raises(InputError, match="candidates"):
        model.evaluate("test", candidates="all")


def test_structure_stops_on_the_validation_triples_it_can_rank(tiny_kg, default_encoder):
    """A structural model's early stopping leaves out validation triples naming an entity without training
    triples (they rank at random for it); a text model, which scores such an entity from its text, keeps them.
    On an inductive split, where every validation triple names one, the structural model trains its epochs."""
    ind = tiny_kg.split(valid=0.15, test=0.15, seed=1, inductive=True)
    options = dict(eval_every=1, patience=1, rules=False, **{**FAST, "lr": 0.5})  # a rate that overshoots
    late = kgemb.train(ind, encoder=default_encoder, mode="fused", combination="late", **options)
    parts = late.config["training"]["parts"]
    assert parts["structure"]["valid_triples"] == 0 and parts["structure"]["epochs_run"] == FAST["epochs"]
    assert parts["text"]["valid_triples"] == len(ind.triples("valid"))
    late_config = TrainingConfig(mode="fused", combination="late", **options).resolved(10, 10)
    assert "the structural part trains every epoch: no validation triple between" in late_config.describe(ind)
    # validation triples of both kinds: four training triples moved to validation beside the inductive ones
    train = ind.triples("train")
    kg = KnowledgeGraph(
        ind.entities,
        ind.relations,
        splits={
            "train": train[4:],
            "valid": np.concatenate([train[:4], ind.triples("valid")]),
            "test": ind.triples("test"),
        },
    )
    valid, seen = kg.triples("valid"), seen_entities(kg).numpy()
    known = seen[valid[:, 0]] & seen[valid[:, 2]]
    assert 0 < known.sum() < len(valid)
    assert kgemb.train(kg, mode="structure", **options).config["training"]["valid_triples"] == known.sum()
    text = kgemb.train(kg, encoder=default_encoder, mode="text", **options).config["training"]
    assert text["valid_triples"] == len(valid)
    structure_config = TrainingConfig(mode="structure", **options).resolved(10, 10)
    assert "trains every epoch" not in structure_config.describe(kg)


def test_hard_negative_sampler_mixes_neighbours_batch_and_uniform():
    pooled = torch.eye(6) + 0.1 * torch.arange(6).float().unsqueeze(1)
    neighbours = text_neighbours(pooled, k=2)
    assert neighbours.shape == (6, 2) and not (neighbours == torch.arange(6).unsqueeze(1)).any()
    triples = torch.tensor([[0, 0, 1], [2, 0, 3], [4, 1, 5]])
    sampler = TextHardNegativeSampler(
        mapped_triples=triples, num_entities=6, num_relations=2, num_negs_per_pos=8, neighbours=neighbours,
        hard=0.5, in_batch=0.25, filtered=False,
    )  # fmt: skip
    torch.manual_seed(0)
    negatives = sampler.corrupt_batch(triples)
    assert negatives.shape == (3, 8, 3)
    # first half corrupts heads (tails kept), second half tails; relations never change
    assert (negatives[:, :4, 2] == triples[:, 2:3]).all() and (negatives[:, 4:, 0] == triples[:, 0:1]).all()
    assert (negatives[..., 1] == triples[:, 1:2]).all()
    # the hard slots hold text neighbours of the replaced entity
    for b in range(3):
        assert set(negatives[b, :2, 0].tolist()) <= set(neighbours[triples[b, 0]].tolist())
        assert set(negatives[b, 4:6, 2].tolist()) <= set(neighbours[triples[b, 2]].tolist())


def test_graph_without_triples_is_refused(default_encoder):
    b = GraphBuilder()
    b.add_label("a", "alpha")
    with pytest.raises(InputError, match="no training triples"):
        kgemb.train(b.build(), encoder=default_encoder, **FAST)


def test_relation_only_in_test_is_refused(tiny_kg, default_encoder):
    b = GraphBuilder()
    for h, r, t in tiny_kg.triples("train").tolist():
        b.add_triple(tiny_kg.entities[h].key, tiny_kg.relations[r], tiny_kg.entities[t].key)
    b.add_triple("flu", "treated_by", "fever", split="test")
    with pytest.raises(InputError, match=r"'treated_by'.*only in valid/test"):
        kgemb.train(b.build(), encoder=default_encoder, **FAST)


def test_entity_without_text_uses_its_key_with_a_warning(tiny_kg, default_encoder):
    assert tiny_kg.no_text_count == 1
    with pytest.warns(UserWarning, match="1 of 26 entities have no label"):
        model = kgemb.train(tiny_kg, encoder=default_encoder, mode="text", **FAST)
    assert model.config["no_text_entities"] == 1


def test_nan_text_features_are_refused(tiny_kg):
    with pytest.raises(InputError, match="NaN"):
        kgemb.train(tiny_kg, encoder=NaNEncoder(), mode="text", **FAST)


def test_fused_on_umls_beats_random_by_far(default_encoder):
    """Four epochs of a small fused model on UMLS (135 entities: random MRR is about 0.04; this gave 0.70-0.78)."""
    from kgemb.connectors import tabular

    kg = tabular.load("pykeen:UMLS")
    model = kgemb.train(
        kg,
        encoder=default_encoder,
        mode="fused",
        dim=64,
        epochs=4,
        lr=0.01,
        early_stopping=False,
        show_progress=False,
    )
    metrics = model.evaluate("test")
    assert metrics["n"] == 661
    assert metrics["mrr"] > 0.5, metrics


def test_update_learns_new_triples_and_entities_without_forgetting(tiny_kg, default_encoder):
    base = kgemb.train(tiny_kg, encoder=default_encoder, mode="fused", **{**FAST, "epochs": 40})
    old_train = tiny_kg.triples("train")
    new = [
        ("pneumonia", "has_symptom", "fever"),
        ("pneumonia", "has_symptom", "cough"),
        ("pneumonia", "affects", "lung"),
    ]
    updated = base.update(new, epochs=20)
    kg = updated.kg
    assert kg.num_entities == tiny_kg.num_entities + 1 and updated.kg.entity_id("pneumonia") == 26
    assert updated.config["updates"][0]["new_triples"] == 3
    # the new triples are learned: the true tails rank high among all entities
    p, hs, af = kg.entity_id("pneumonia"), kg.relation_id("has_symptom"), kg.relation_id("affects")
    scores = updated.score_tails([p, p], [hs, af])
    for row, tail in zip(scores, ("fever", "lung"), strict=True):
        assert int((row > row[kg.entity_id(tail)]).sum()) < 5

    # old triples keep their scores' ranking: training MRR on the old triples does not fall much (on this
    # 26-entity graph it fell 0.013-0.054 over seeds 0-2, base 0.734, with or without the text loss)
    def old_mrr(model):
        s = model.score_tails(old_train[:, 0], old_train[:, 1])
        true = s[torch.arange(len(old_train)), torch.as_tensor(old_train[:, 2])]
        return float((1.0 / ((s > true.unsqueeze(1)).sum(1) + 1).float()).mean())

    assert old_mrr(updated) > old_mrr(base) - 0.07


def test_a_new_entity_of_a_late_model_starts_where_it_was_scored_while_unseen(tiny_kg, default_encoder):
    """update(): a late model's new entity starts with the structural part the model gave it while unseen (the map
    from its text part), not 0; at lr 1e-12 training does not move it, so its vector is the old model's vector of its text."""
    base = kgemb.train(tiny_kg, encoder=default_encoder, mode="fused", **{**FAST, "epochs": 5})
    assert base.representation.late
    unseen = torch.as_tensor(base.embed_texts(["pneumonia"])[0])
    updated = base.update([("pneumonia", "has_symptom", "fever")], epochs=1, lr=1e-12)
    vector = torch.as_tensor(updated.entity_vectors()[updated.kg.entity_id("pneumonia")])
    half = len(vector) // 2
    torch.testing.assert_close(vector[half:], unseen[half:], rtol=1e-4, atol=1e-5)  # the same text part
    torch.testing.assert_close(vector[:half], unseen[:half], rtol=1e-4, atol=1e-5)
    assert vector[:half].abs().sum() > 0


def test_encoder_options_are_recorded_but_not_this_machines(tiny_kg, tmp_path):
    """config.json keeps the options that shape the vectors (a reloaded model re-creates the same encoder), not
    threads, cache or device, and never trust_remote_code."""
    encoder = kgemb.load_encoder("default", max_chars=2000, threads=1, cache=False)
    model = kgemb.train(tiny_kg, encoder=encoder, mode="text", **{**FAST, "epochs": 2})
    assert model.config["encoder"]["options"] == {"max_chars": 2000}
    model.save(tmp_path / "m")
    loaded = kgemb.load(tmp_path / "m")
    assert loaded.encoder.max_chars == 2000 and loaded.encoder is not encoder
    torch.testing.assert_close(loaded.embed_texts(["a cat"]), model.embed_texts(["a cat"]))
