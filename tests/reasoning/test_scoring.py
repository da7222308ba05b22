"""The one top-k path (:meth:`CandidateScorer.best`) against the plain computation: every entity's score from
``TrainedModel.score_tails`` / ``score_heads`` (rule channel included), masked, fully sorted. Each fast path —
float32, bfloat16 and int8 selection — must give the same top-k ids and scores (1e-5) for each interaction, for
reciprocal head queries, with the rule channel, masks and ties."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from kgemb.reasoning.scoring import PRECISIONS, CandidateScorer

from kgemb.errors import InputError
from kgemb.graph import Entity, KnowledgeGraph
from kgemb.model import TrainedModel, build_model

ENTITIES, RELATIONS = 3000, 4


def _graph(seed: int = 0) -> KnowledgeGraph:
    """Random links plus structure a rule miner finds: rel1 copies rel0 on most pairs, rel2 is symmetric."""
    rng = np.random.default_rng(seed)
    n = 6000
    base = np.stack(
        [rng.integers(0, ENTITIES, n), rng.integers(0, RELATIONS, n), rng.integers(0, ENTITIES, n)], 1
    )
    r0 = base[base[:, 1] == 0]
    copy = r0[: int(0.8 * len(r0))].copy()
    copy[:, 1] = 1
    sym = base[base[:, 1] == 2][:, ::-1].copy()
    data = np.unique(np.concatenate([base, copy, sym]), axis=0)
    rng.shuffle(data)
    return KnowledgeGraph(
        [Entity(f"e{i}") for i in range(ENTITIES)],
        [f"r{i}" for i in range(RELATIONS)],
        splits={"train": data[300:], "valid": data[:300]},
    )


KG = _graph()


def _model(interaction: str, *, reciprocal: bool = False, rules: bool = False, dim: int = 32) -> TrainedModel:
    pk = build_model(
        KG.to_triples_factory(),
        mode="structure",
        interaction=interaction,
        dim=dim,
        features=None,
        reciprocal=reciprocal,
    )
    model = TrainedModel(KG, pk, {"mode": "structure", "interaction": interaction, "dim": dim})
    if rules:
        from kgemb.channels import RuleChannel
        from kgemb.rules import RuleSet

        mined = RuleSet.mine(KG.triples("train"), KG.num_entities, KG.num_relations)
        assert len(mined) > 0
        scale = float(model.score_tails([0, 1], [0, 1]).std())  # rules large enough to reorder the top
        pk.rule_channel = RuleChannel(mined, np.full(2 * KG.num_relations, 3 * scale, dtype=np.float32))
    return model


def _plain(model: TrainedModel, side: str, anchors, rels, k, exclude=None, blocked=None):
    """Every entity's score (the model's own all-entity scorer, rules included), masked, sorted (ties: id)."""
    full = (model.score_tails(anchors, rels) if side == "tail" else model.score_heads(rels, anchors)).double()
    for row in range(len(anchors)):
        if exclude is not None and len(exclude[row]):
            full[row, torch.as_tensor(exclude[row])] = float("-inf")
        if blocked is not None and blocked[row] is not None:
            full[row, blocked[row]] = float("-inf")
    ids = torch.arange(full.shape[1]).expand_as(full)
    order = torch.argsort(full, dim=1, descending=True, stable=True)[:, :k]
    return full.gather(1, order), ids.gather(1, order)


def _check(
    model: TrainedModel,
    side: str,
    precision: str,
    k: int = 10,
    masks: bool = False,
    near_ties: bool = False,
    chunk_size: int | None = None,
    rows: int = 40,
) -> CandidateScorer:
    """``rows``: query rows at once (one takes the one-row product). ``near_ties``: scores closer than float32
    rounding may come in either order; then each id returned must have the plain score returned beside it (a valid
    top k), instead of the very same ids. ``chunk_size``: entities per block of the selection (default: the
    scorer's own)."""
    rng = np.random.default_rng(1)
    anchors = rng.integers(0, ENTITIES, rows)
    rels = rng.integers(0, RELATIONS, rows)
    exclude = blocked = None
    if masks:
        exclude = [np.sort(rng.choice(ENTITIES, rng.integers(0, 50), replace=False)) for _ in anchors]
        type_mask = torch.from_numpy(rng.random(ENTITIES) < 0.3)
        blocked = [type_mask if r % 2 else None for r in rels]
    want_v, want_i = _plain(model, side, anchors.tolist(), rels.tolist(), k, exclude, blocked)
    scorer = CandidateScorer(model, precision=precision, chunk_size=chunk_size)
    got_v, got_i = scorer.best(
        side,
        scorer.anchors(anchors),
        scorer.relations(rels),
        k,
        anchor_ids=anchors.tolist(),
        exclude=exclude,
        blocked=blocked,
    )
    np.testing.assert_allclose(got_v.numpy(), want_v.numpy(), rtol=1e-5, atol=1e-5)
    if not near_ties:
        assert (got_i == want_i).all(), (got_i, want_i)
    else:
        full, full_ids = _plain(model, side, anchors.tolist(), rels.tolist(), ENTITIES, exclude, blocked)
        plain_of = torch.empty_like(full).scatter_(1, full_ids, full)
        np.testing.assert_allclose(plain_of.gather(1, got_i).numpy(), got_v.numpy(), rtol=1e-5, atol=1e-5)
        assert all(len(set(row)) == k for row in got_i.tolist())
    return scorer


@pytest.mark.parametrize("precision", PRECISIONS)
@pytest.mark.parametrize("interaction", ["rotate", "complex", "distmult", "transe"])
def test_every_precision_gives_the_plain_top_k(interaction: str, precision: str) -> None:
    model = _model(interaction)
    for side in ("tail", "head"):
        _check(model, side, precision)
    _check(model, "tail", precision, k=25, masks=True)


@pytest.mark.parametrize("precision", PRECISIONS)
@pytest.mark.parametrize("interaction", ["rotate", "distmult"])
def test_the_group_filter_over_many_blocks_gives_the_plain_top_k(interaction: str, precision: str) -> None:
    """Blocks of 64 entities (two groups of the selection's filter each, 47 blocks, a short last one): only
    the groups whose maximum reaches the row's floor are kept, and the answers are still the plain ones."""
    model = _model(interaction, dim=64)
    for side in ("tail", "head"):
        _check(model, side, precision, chunk_size=64)
    _check(model, "tail", precision, k=25, masks=True, chunk_size=64)
    _check(model, "tail", precision, k=1, masks=True, chunk_size=256)


@pytest.mark.parametrize("precision", PRECISIONS)
@pytest.mark.parametrize("interaction", ["rotate", "complex"])
def test_one_query_row_gives_the_plain_top_k(interaction: str, precision: str) -> None:
    """One row at a time takes the matrix-vector product (SimSIMD where the CPU has its kernel), in one
    block and in many."""
    model = _model(interaction, dim=64)
    for side in ("tail", "head"):
        _check(model, side, precision, rows=1)
    _check(model, "tail", precision, k=25, masks=True, rows=1)
    _check(model, "tail", precision, k=5, masks=True, rows=1, chunk_size=64)


def test_the_one_row_product_equals_torchs() -> None:
    """int8 products exactly (float32 holds them), float32 and bfloat16 ones to float32 rounding; scaled alike
    whether they come as int32 (left-out entries :data:`_INT_OUT`) or as float32 (-inf there)."""
    from kgemb.reasoning.scoring import _INT_OUT, _product, _scaled, _simd_precisions

    if _simd_precisions() != frozenset(PRECISIONS):  # this project's machines have every kernel
        pytest.skip("the CPU lacks a SimSIMD kernel: the one-row product is then torch's own")
    gen = torch.Generator().manual_seed(0)
    block = torch.randint(-127, 128, (1000, 1024), dtype=torch.int8, generator=gen)
    q = torch.full((1, 1024), -127, dtype=torch.int8)  # the largest magnitudes: sums near 2^24
    want = torch._int_mm(q.repeat(2, 1), block.T)[:1]
    got = _product(q, block)
    assert got.dtype == torch.float32 and torch.equal(got.to(torch.int32), want)
    c = torch.tensor([[3e-4]])
    want[0, 7], got[0, 7] = _INT_OUT, float("-inf")
    assert torch.equal(_scaled(got, c), _scaled(want, c)) and _scaled(got, c)[0, 7] == float("-inf")
    e, x = torch.randn(1000, 256, generator=gen), torch.randn(1, 256, generator=gen)
    torch.testing.assert_close(_product(x, e), x @ e.T, rtol=1e-5, atol=1e-4)
    want = x.bfloat16().float() @ e.bfloat16().float().T
    torch.testing.assert_close(_product(x.bfloat16(), e.bfloat16()).float(), want, rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("precision", ["bf16", "int8"])
@pytest.mark.parametrize("interaction", ["rotate", "complex"])
@torch.no_grad()
def test_the_selection_error_bound_holds_for_every_entity(interaction: str, precision: str) -> None:
    """Every entity's selection value is within the bound of its exact value (float64), and the bound is not
    vacuous (the largest error reaches a fair part of it)."""
    from kgemb.reasoning.scoring import _Masks

    model = _model(interaction, dim=256)
    scorer = CandidateScorer(model, precision=precision)
    rng = np.random.default_rng(3)
    side, rel = scorer._orient("tail", scorer.relations(rng.integers(0, RELATIONS, 16)))
    q = scorer._query(side, scorer.anchors(rng.integers(0, ENTITIES, 16)), rel)
    table = scorer.table()
    values, ids = scorer._select(table, q, ENTITIES, _Masks(16, ENTITIES, None, None), precision)
    qd, ed = q.double(), table.real.double()
    exact = qd @ ed.T if scorer.form == "dot" else 2 * qd @ ed.T - (ed * ed).sum(dim=1)
    err = (values.double() - exact.gather(1, ids)).abs().amax(dim=1)
    bound = scorer._bound(table, q, precision).double()
    assert (err <= bound).all(), (err, bound)
    assert float((err / bound).max()) > 0.02


def test_int8_products_read_as_shifted_floats_are_exact() -> None:
    """The int8 distance forms read int32 products as float32 ``_MAGIC + x``: exact for every product of int8
    vectors of a dimension that fits (the extremes included), and not used where one could overflow."""
    from kgemb.reasoning.scoring import _MAGIC, _as_shifted_float, _magic_fits

    assert _magic_fits(256) and not _magic_fits(512)
    top = 127 * 127 * 256
    x = torch.cat(
        [torch.arange(-top, -top + 1000), torch.arange(-500, 500), torch.arange(top - 999, top + 1)]
    )
    got = _as_shifted_float(x.to(torch.int32)).double() - _MAGIC
    assert torch.equal(got, x.double())


@pytest.mark.parametrize("precision", ["fp32", "int8"])
@pytest.mark.parametrize("interaction", ["rotate", "complex"])
def test_reciprocal_head_queries_and_the_rule_channel(interaction: str, precision: str) -> None:
    model = _model(interaction, reciprocal=True, rules=True)
    assert model.pykeen_model.reciprocal
    for side in ("tail", "head"):
        _check(model, side, precision, masks=side == "tail")


def test_a_wide_model_at_low_precision_is_certified_without_fallbacks() -> None:
    """The error bound is tight enough that a random model's rows need no float32 second pass."""
    model = _model("rotate", dim=256)
    scorer = _check(model, "tail", "int8")
    assert scorer.fallbacks <= 4
    assert _check(model, "tail", "bf16").fallbacks <= 4


def test_ties_and_rows_with_few_candidates() -> None:
    """Identical entity vectors tie: the smaller id comes first, in every precision; a row with fewer allowed
    candidates than k is padded with -inf / -1."""
    model = _model("distmult")
    weight = None
    for name, p in model.pykeen_model.named_parameters():
        if name.startswith("entity_representations") and p.ndim == 2 and p.shape[0] == ENTITIES:
            weight = p
    assert weight is not None
    with torch.no_grad():
        weight[100:110] = weight[5]  # eleven copies of entity 5
    model.representation.clear_cache()
    for precision in PRECISIONS:
        scorer = CandidateScorer(model, precision=precision)
        anchor = scorer.anchors([0])
        rel = scorer.relations([0])
        full = model.score_tails([0], [0])[0]
        v, i = scorer.best("tail", anchor, rel, 5, blocked=[torch.arange(ENTITIES) != 5])
        assert i[0].tolist() == [5, -1, -1, -1, -1] and torch.isneginf(v[0, 1:]).all()
        if full[5] >= full.max() - 1e-6:
            continue
        # the copies of 5 rank together, in id order
        blocked = torch.ones(ENTITIES, dtype=torch.bool)
        blocked[[5, *range(100, 110), 7]] = False
        v, i = scorer.best("tail", anchor, rel, 12, blocked=[blocked])
        copies = [x for x in i[0].tolist() if x != 7]
        assert copies == [5, *range(100, 110)]


def test_scores_are_the_models_all_entity_scores() -> None:
    """In rows and in columns (one per query: rank's layout), for a product form with a distance (rotate), one
    with a dot product (complex) and one without (transe, p=1); one query row and several."""
    for interaction in ("rotate", "complex", "transe"):
        model = _model(interaction, reciprocal=True)
        scorer = CandidateScorer(model)
        for anchors, rels in (([3, 4, 9], [1, 2, 0]), ([5], [1])):
            a, r = scorer.anchors(anchors), scorer.relations(rels)
            want = model.score_heads(rels, anchors)
            torch.testing.assert_close(scorer.scores("head", a, r), want, rtol=1e-5, atol=1e-5)
            torch.testing.assert_close(
                scorer.scores("head", a, r, columns=True), want.T, rtol=1e-5, atol=1e-5
            )


def test_link_predictor_answers_the_same_in_every_precision() -> None:
    from kgemb.reasoning import LinkPredictor

    model = _model("rotate", reciprocal=True, rules=True)
    answers = {}
    for precision in PRECISIONS:
        lp = LinkPredictor(model, precision=precision)
        lp.calibrate(max_triples=64, save=False)
        ids, probs = lp.top_tails(np.arange(30), 1, k=7)
        heads = [p.key for p in lp.heads("r0", "e3", k=7)]
        answers[precision] = (ids.tolist(), np.round(probs, 6).tolist(), heads)
    assert answers["bf16"] == answers["fp32"] == answers["int8"]


def test_unknown_precision_is_refused() -> None:
    with pytest.raises(InputError, match="precision"):
        CandidateScorer(_model("distmult"), precision="fp8")


@pytest.mark.parametrize("precision", ["bf16", "int8"])
def test_rows_the_bound_cannot_certify_are_done_again_exactly(precision: str) -> None:
    """Entity vectors that differ by less than the low-precision rounding: the selection cannot tell them apart,
    the bound says so, and those rows are redone in float32; the answers stay the plain ones."""
    model = _model("distmult")
    for name, p in model.pykeen_model.named_parameters():
        if name.startswith("entity_representations") and p.ndim == 2 and p.shape[0] == ENTITIES:
            with torch.no_grad():
                p.copy_(p[:1] + 1e-4 * p)
    model.representation.clear_cache()
    scorer = _check(model, "tail", precision, near_ties=True)
    assert scorer.fallbacks > 0


def test_enrich_writes_the_same_bytes_in_any_batch_and_precision(tmp_path) -> None:
    """``kgemb enrich`` ranks subjects in large batches with the writing overlapped; the output does not depend
    on the batch size (7 subjects or the default 2,048) nor on the selection's precision."""
    import sys
    from pathlib import Path

    from kgemb.connectors import rdf

    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
    from rdf_stream import generate

    source = tmp_path / "graph.nt"
    generate(source, 24_000, 1500, relations=3)
    kg = rdf.load(source).split(valid=0.02, test=0.0, seed=0)
    pk = build_model(kg.to_triples_factory(), mode="structure", interaction="rotate", dim=64, features=None)
    model = TrainedModel(kg, pk, {"mode": "structure", "interaction": "rotate", "dim": 64})
    outputs = []
    for batch, precision in ((7, "fp32"), (2048, "fp32"), (2048, "bf16"), (300, "int8")):
        out = tmp_path / f"out-{batch}-{precision}.nt"
        result = rdf.enrich(
            source,
            out,
            model=model,
            relations=["http://example.org/r/rel0"],
            k=3,
            run_time="2024-01-01T00:00:00Z",
            batch_size=batch,
            precision=precision,
        )
        assert result.complete and result.predictions > 3000
        outputs.append(out.read_bytes())
    assert all(o == outputs[0] for o in outputs[1:])
