"""Ranking speed of ``kgemb.reasoning.LinkPredictor`` against ``pykeen.predict.predict_target`` on the same model.

    nice python benchmarks/ranking.py                          # the issue's sizes: 1,000,000 and 100,000 entities
    python benchmarks/ranking.py --entities 20000 --rank-entities 20000 --out report.md

The models are real ``kgemb.TrainedModel`` objects (structure mode, RotatE, dim 256 = 128 complex numbers) with
random weights — speed does not depend on what the weights learned — over a graph of random triples. Both
sides score the same model: ``LinkPredictor.tails`` (the exact top-k of :mod:`kgemb.reasoning.scoring`, in
each selection precision fp32 / bf16 / int8, known links left out, calibrated probabilities) and ``predict_target`` (PyKEEN's broadcast scoring of every entity, then its
DataFrame). The top-10 of both is checked to agree, and the three precisions to agree. Each row shows its floor:
the larger of the product's arithmetic at this machine's measured rate and the bytes of the entity matrix at its
measured memory bandwidth (both measured in the same run). Peak memory is how far the process's
resident memory rose above what it held (the model) while the queries ran a second time, sampled every
millisecond; the timed pass runs without the sampler (it takes the GIL every millisecond).
"""

from __future__ import annotations

import argparse
import functools
import gc
import os
import statistics
import threading
import time
from pathlib import Path

import numpy as np


def build_model(entities: int, dim: int, triples: int, relations: int = 10, seed: int = 0):  # -> TrainedModel
    """A TrainedModel with random RotatE weights over ``entities`` entities and ``triples`` random triples."""
    from kgemb.graph import Entity, KnowledgeGraph
    from kgemb.model import TrainedModel, build_model

    rng = np.random.default_rng(seed)
    data = np.stack(
        [
            rng.integers(0, entities, triples),
            rng.integers(0, relations, triples),
            rng.integers(0, entities, triples),
        ],
        axis=1,
    )
    data = np.unique(data, axis=0)
    rng.shuffle(data)
    n_valid = min(2000, len(data) // 20)
    kg = KnowledgeGraph(
        [Entity(f"e{i}") for i in range(entities)],
        [f"r{i}" for i in range(relations)],
        splits={"train": data[n_valid:], "valid": data[:n_valid]},
    )
    model = build_model(
        kg.to_triples_factory(), mode="structure", interaction="rotate", dim=dim, features=None
    )
    return TrainedModel(kg, model, {"mode": "structure", "interaction": "rotate", "dim": dim})


class PeakRSS:
    """Highest resident memory of this process while the ``with`` block runs, above what it held at the start
    (sampled every millisecond from /proc; torch's kernels release the GIL, so the sampler sees their peaks)."""

    def __enter__(self) -> PeakRSS:
        self.start = self.peak = _rss_mb()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.wait(0.001):
            self.peak = max(self.peak, _rss_mb())

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, _rss_mb())

    @property
    def growth_mb(self) -> float:
        return self.peak - self.start


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _ms(times: list[float]) -> str:
    return f"{statistics.median(times) * 1000:.1f}"


def machine_rates(dim: int) -> dict[str, float]:
    """This machine's measured rates, in the same run: memory bandwidth (bytes/s, reading a 512 MB matrix once)
    and matrix-product rates (operations/s) for float32, bfloat16 and int8 at the shape the scorer uses
    (64 queries x 65,536 entities). float32 is the faster of MKL's ``q @ e.T`` and oneDNN's kernel
    (``kgemb.model.matmul_t`` without gradients); ``fp32_mkl`` keeps MKL's alone."""
    import torch

    from kgemb.model import matmul_t

    rates = {}
    big = torch.ones(1 << 27)  # 512 MB
    big.sum()
    rates["bandwidth"] = big.numel() * 4 / min(_timed(big.sum) for _ in range(3))
    del big
    q, e = torch.randn(64, dim), torch.randn(1 << 16, dim)
    ops = 2 * q.shape[0] * e.shape[0] * dim
    qb, eb = q.bfloat16(), e.bfloat16()
    q8 = torch.randint(-127, 127, q.shape, dtype=torch.int8)
    e8 = torch.randint(-127, 127, e.shape, dtype=torch.int8)
    for name, fn in (
        ("fp32_mkl", lambda: q @ e.T),
        ("fp32", torch.no_grad()(lambda: matmul_t(q, e))),
        ("bf16", lambda: qb @ eb.T),
        ("int8", lambda: torch._int_mm(q8, e8.T)),
    ):
        fn()
        rates[name] = ops / min(_timed(fn) for _ in range(5))
    rates["fp32"] = max(rates["fp32"], rates["fp32_mkl"])
    return rates


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def _clocked(fn) -> tuple[float, float]:
    """(wall seconds, CPU seconds of this process, all threads) of one call."""
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - wall, time.process_time() - cpu


BYTES = {"fp32": 4, "bf16": 2, "int8": 1}


def bench_tails(
    entities: int, dim: int, queries: int, batch: int, pykeen_queries: int, rates: dict[str, float]
) -> list[tuple[str, ...]]:
    from kgemb.reasoning import LinkPredictor
    from pykeen.models import ERModel
    from pykeen.predict import predict_target

    model = build_model(entities, dim, triples=2 * entities)
    base = LinkPredictor(model)
    base.calibrate(max_triples=32, save=False)  # a small fit: the timing is about ranking, not calibration
    ents = model.representation(indices=None)
    model_mb = (ents.numel() * ents.element_size()) / 2**20
    rng = np.random.default_rng(1)
    heads = rng.integers(0, entities, queries + batch)
    rels = rng.integers(0, model.kg.num_relations, queries + batch)
    size = f"{entities:,} entities, dim {dim}"
    rows: list[tuple[str, ...]] = []
    one_query: dict[str, float] = {}
    answers = {}

    def queries_of(precision: str) -> tuple[LinkPredictor, list, tuple[float, float]]:
        lp = LinkPredictor(model, calibration=base.calibration, precision=precision)
        for r in range(model.kg.num_relations):  # warm-up: type masks per relation, the matrix copies
            lp.tails(int(heads[0]), r, k=10)
        single = [
            _clocked(functools.partial(lp.tails, h, r, k=10))
            for h, r in zip(heads[:queries].tolist(), rels[:queries].tolist(), strict=True)
        ]
        runs = [
            _clocked(functools.partial(lp.top_tails, heads[queries:], rels[queries:], k=10)) for _ in range(3)
        ]
        batched = sorted(runs)[1]  # the median batch (wall, its CPU)
        return lp, single, batched

    # timed without the memory sampler (it takes the GIL every millisecond: +2-3 ms on a 15 ms query), then the
    # same work again under it; each precision's predictor (and its matrix copy) is dropped before the next
    for precision in ("fp32", "bf16", "int8"):
        gc.collect()
        lp, single, (wall, cpu) = queries_of(precision)
        answers[precision] = lp.top_tails(heads[:queries], rels[:queries], k=10)[0].tolist()
        one_query[precision] = statistics.median(w for w, _ in single)
        read = entities * dim * BYTES[precision] / rates["bandwidth"]
        work = 2 * entities * dim / rates[precision]
        rows.append(
            (
                f"top-10 tails, one query, {precision} ({size})",
                f"{one_query[precision] * 1000:.1f} ms",
                f"{statistics.median(c for _, c in single) * 1000:.1f} ms",
                f"{max(read, work) * 1000:.1f} ms",
                f"median of {queries}; floor: reading the {precision} matrix once",
            )
        )
        rows.append(
            (
                f"top-10 tails, batch of {batch}, {precision} ({size})",
                f"{wall / batch * 1000:.2f} ms / query",
                f"{cpu / batch * 1000:.2f} ms",
                f"{max(work, read / batch) * 1000:.2f} ms",
                f"LinkPredictor.top_tails, median of 3 batches; floor: the {precision} product at the measured rate; "
                f"{lp.scorer.fallbacks} rows redone in fp32",
            )
        )
        del lp
    gc.collect()
    with PeakRSS() as ours_mem:
        for precision in ("fp32", "bf16", "int8"):
            queries_of(precision)
            gc.collect()
    if not answers["fp32"] == answers["bf16"] == answers["int8"]:
        raise SystemExit("the precisions disagree on the top-10")
    ours_top = {}
    for h, r in zip(heads[:pykeen_queries].tolist(), rels[:pykeen_queries].tolist(), strict=True):
        ours_top[(h, r)] = [
            p.id for p in base.tails(h, r, k=10, filter_known=False)
        ]  # as predict_target ranks

    gc.collect()
    theirs = []
    # PyKEEN's own broadcast scoring, not the one-matrix-product path kgemb's model gives predict_target too
    model.pykeen_model.score_t = functools.partial(ERModel.score_t, model.pykeen_model)
    with PeakRSS() as theirs_mem:
        for h, r in ours_top:
            start = time.perf_counter()
            df = predict_target(model=model.pykeen_model, head=h, relation=r).df.head(10)
            theirs.append(time.perf_counter() - start)
            if df["tail_id"].tolist() != ours_top[(h, r)]:
                raise SystemExit(
                    f"top-10 differ for ({h}, {r}): {df['tail_id'].tolist()} vs {ours_top[(h, r)]}"
                )
    fastest = min(one_query, key=one_query.get)
    ratio = statistics.median(theirs) / one_query[fastest]
    return [
        *rows,
        (
            f"pykeen.predict.predict_target, one query ({size})",
            f"{_ms(theirs)} ms",
            "",
            "",
            f"median of {pykeen_queries} (the anchor)",
        ),
        (
            f"speed-up over predict_target (one query, {fastest})",
            f"{ratio:.1f}x",
            "",
            "",
            "same model, same run; top-10 agree; the three precisions agree",
        ),
        (
            "peak memory above the model, kgemb",
            f"{ours_mem.growth_mb:,.0f} MB",
            "",
            "",
            f"model: {model_mb:,.0f} MB",
        ),
        ("peak memory above the model, predict_target", f"{theirs_mem.growth_mb:,.0f} MB", "", "", ""),
    ]


def bench_rank(
    entities: int, dim: int, evidence: int, repeats: int, rates: dict[str, float]
) -> list[tuple[str, ...]]:
    import torch
    from kgemb.reasoning import LinkPredictor

    model = build_model(entities, dim, triples=5 * entities)
    lp = LinkPredictor(model, evidence_weight=1.0)  # the model's log-probabilities at full weight
    lp.calibrate(max_triples=256, save=False)
    rng = np.random.default_rng(2)
    runs, cpus, naive = [], [], []
    for n in range(repeats + 1):
        items = [(int(e), 0) for e in rng.choice(entities, evidence, replace=False)]
        start, cpu = time.perf_counter(), time.process_time()
        found = lp.rank(items, k=10)
        runs.append(time.perf_counter() - start)
        cpus.append(time.process_time() - cpu)
        if n > 3:
            continue
        # the same combination through TrainedModel.score_heads (PyKEEN's broadcast scoring), for comparison
        start = time.perf_counter()
        ids = torch.as_tensor([e for e, _ in items])
        logp = lp.calibration.log_probability(model.score_heads(torch.zeros_like(ids), ids).double(), 0)
        total = lp.evidence_index.scores(items, "head", logp.numpy(), alpha=1.0).total
        total[ids.numpy()] = float("-inf")
        top = np.argsort(-total, kind="stable")[:10].tolist()
        naive.append(time.perf_counter() - start)
        if top[:3] != [p.id for p in found][:3]:
            raise SystemExit(f"rank differs from the plain computation: {top} vs {[p.id for p in found]}")
    runs, cpus, naive = runs[1:], cpus[1:], naive[1:]
    size = f"{entities:,} entities, dim {dim}"
    floor = max(2 * evidence * entities * dim / rates["fp32"], entities * dim * 4 / rates["bandwidth"])
    return [
        (
            f"rank, {evidence} pieces of evidence ({size})",
            f"{_ms(runs)} ms",
            f"{_ms(cpus)} ms",
            f"{floor * 1000:.1f} ms",
            f"median of {repeats}; goal <= 20 ms; floor: the {evidence}-row float32 product or reading the matrix",
        ),
        (
            "same ranking via TrainedModel.score_heads + evidence.log_likelihood",
            f"{_ms(naive)} ms",
            "",
            "",
            "every entity's score for each evidence; median of 3",
        ),
    ]


def main(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entities", type=int, default=1_000_000, help="entities for the top-k tails part")
    parser.add_argument("--rank-entities", type=int, default=100_000, help="entities for the rank part")
    parser.add_argument("--dim", type=int, default=256, help="real numbers per entity vector")
    parser.add_argument("--queries", type=int, default=20)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--pykeen-queries", type=int, default=3)
    parser.add_argument("--evidence", type=int, default=10)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: all cores)")
    parser.add_argument("--out", type=Path, help="also write the Markdown report here")
    args = parser.parse_args(argv)
    # OpenMP threads that spin while waiting lose badly when other processes share the cores (up to 6x here);
    # set before torch loads, unless the caller chose a policy
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    rates = machine_rates(args.dim)
    rows = bench_tails(args.entities, args.dim, args.queries, args.batch, args.pykeen_queries, rates)
    rows += bench_rank(args.rank_entities, args.dim, args.evidence, args.queries, rates)
    lines = [
        f"Ranking speed, RotatE with random weights, {torch.get_num_threads()} CPU threads, "
        f"OMP_WAIT_POLICY={os.environ['OMP_WAIT_POLICY']}. Measured in this run: memory bandwidth "
        f"{rates['bandwidth'] / 1e9:.1f} GB/s; products fp32 {rates['fp32'] / 1e9:.0f} GFLOP/s (MKL alone "
        f"{rates['fp32_mkl'] / 1e9:.0f}), bf16 "
        f"{rates['bf16'] / 1e9:.0f} GFLOP/s, int8 {rates['int8'] / 1e9:.0f} GOP/s. A floor is the larger of the "
        "arithmetic at that rate and the bytes read at that bandwidth. CPU is this process's CPU time (all "
        "threads); on a shared machine wall time also counts other work.",
        "",
        "| measurement | wall | CPU | floor | note |",
        "|---|---|---|---|---|",
        *("| " + " | ".join(row) + " |" for row in rows),
    ]
    report = "\n".join(lines)
    print(report)
    if args.out:
        tmp = args.out.with_name(f".{args.out.name}.tmp")
        tmp.write_text(report + "\n", encoding="utf-8")
        tmp.replace(args.out)
    return report


if __name__ == "__main__":
    main()
