"""Training speed: kgemb's structure training against PyKEEN's own training loop with the same model, loss and batch.

Issue 18's row "training epoch, structure, WN18RR ≥ PyKEEN's pipeline with the same model, loss and batch". Both
sides train ComplEx (128 complex numbers = 256 reals) with reciprocal relations (PyKEEN: inverse triples), softmax
cross-entropy over every one of WN18RR's 40,943 entities (kgemb: ``negatives`` = all entities; PyKEEN: the LCWA loop
with ``CrossEntropyLoss``), label smoothing 0.1, Adam, batches of 1,024 queries, on a random fraction of WN18RR's
training triples (all entities kept, since a 1-N step costs ``batch × entities``). kgemb's rule mining and early
stopping are off, so both time the epochs alone. Prints triples per second, wall and CPU seconds, and the ratio.

    KGEMB_SHARED_DATA=../shared/data python benchmarks/train_speed.py --fraction 0.05 --epochs 1
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import warnings
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from linkpred import DEFAULT_DATA, load_graph  # noqa: E402


def run_kgemb(kg, args) -> dict[str, float]:
    import kgemb

    started, cpu = time.perf_counter(), time.process_time()
    model = kgemb.train(
        kg,
        mode="structure",
        interaction="complex",
        dim=256,
        batch_size=args.batch_size,
        negatives=kg.num_entities,  # every entity a candidate: the full 1-N softmax
        label_smoothing=0.1,
        epochs=args.epochs,
        rules=False,
        early_stopping=False,
        eval_every=10_000,
        threads=args.threads,
        show_progress=False,
    )
    wall, cpu = time.perf_counter() - started, time.process_time() - cpu
    fit = model.config["training"]["fit_seconds"]
    return {"fit_s": fit, "wall_s": wall, "cpu_s": cpu}


def run_pykeen(kg, args) -> dict[str, float]:
    import torch
    from pykeen.models import ComplEx
    from pykeen.training import LCWATrainingLoop
    from pykeen.triples import TriplesFactory

    base = kg.to_triples_factory("train")
    tf = TriplesFactory(
        mapped_triples=base.mapped_triples,
        entity_to_id=base.entity_to_id,
        relation_to_id=base.relation_to_id,
        create_inverse_triples=True,  # reciprocal relations, as kgemb trains
    )
    torch.manual_seed(0)
    model = ComplEx(triples_factory=tf, embedding_dim=128, loss="crossentropy")
    loop = LCWATrainingLoop(model=model, triples_factory=tf, optimizer="adam", optimizer_kwargs={"lr": 0.01})
    started, cpu = time.perf_counter(), time.process_time()
    loop.train(
        triples_factory=tf,
        num_epochs=args.epochs,
        batch_size=args.batch_size,
        sub_batch_size=args.pykeen_sub_batch,
        label_smoothing=0.1,
        use_tqdm=False,
    )
    wall, cpu = time.perf_counter() - started, time.process_time() - cpu
    return {"fit_s": wall, "wall_s": wall, "cpu_s": cpu}


def gemm_rate(entities: int, dim: int, batch: int, threads: int) -> float:
    """FLOP/s of this machine's float32 product of one batch of queries with every entity (best of 5)."""
    import torch

    q, e = torch.randn(batch, dim), torch.randn(entities, dim)
    best = float("inf")
    for _ in range(5):
        start = time.perf_counter()
        q @ e.T
        best = min(best, time.perf_counter() - start)
    return 2 * batch * entities * dim / best


def main(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="the shared data folder")
    parser.add_argument("--fraction", type=float, default=0.05, help="of WN18RR's training triples")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=1024)
    parser.add_argument("--pykeen-sub-batch", type=int, default=64, help="PyKEEN's sub-batches (memory)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, help="also write the Markdown report here")
    args = parser.parse_args(argv)
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    warnings.simplefilter("ignore")
    import torch

    torch.set_num_threads(args.threads)
    kg = load_graph("wn18rr", args.data, train_fraction=args.fraction)
    n = len(kg.triples("train"))
    rate = gemm_rate(kg.num_entities, 256, args.batch_size, args.threads)
    # the arithmetic an epoch needs: each query (2 per triple: reciprocal) against every entity, forward and the two
    # products of the backward pass
    floor = 3 * 2 * (2 * n * args.epochs) * kg.num_entities * 256 / rate
    rows = {"kgemb (own 1-N loop)": run_kgemb(kg, args), "PyKEEN LCWATrainingLoop": run_pykeen(kg, args)}
    ours, theirs = rows["kgemb (own 1-N loop)"], rows["PyKEEN LCWATrainingLoop"]
    lines = [
        f"Training speed on WN18RR ({n:,} of its training triples, all {kg.num_entities:,} entities), ComplEx 128 "
        f"complex, reciprocal, softmax cross-entropy over every entity, label smoothing 0.1, Adam, batch "
        f"{args.batch_size}, {args.epochs} epoch(s), {args.threads} torch threads, CPU. Measured float32 GEMM rate "
        f"{rate / 1e9:.0f} GFLOP/s; the floor (3 products of every query with every entity) is {floor:.1f} s, "
        f"{n * args.epochs / floor:,.0f} triples/s.",
        "",
        "| trainer | triples/s (epochs × triples ÷ training s) | training s | CPU s | CPU s per 1,000 triples |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, r in rows.items():
        lines.append(
            f"| {name} | {n * args.epochs / r['fit_s']:,.0f} | {r['fit_s']:.1f} | {r['cpu_s']:.1f} | "
            f"{1000 * r['cpu_s'] / (n * args.epochs):.2f} |"
        )
    lines += [
        "",
        f"kgemb ÷ PyKEEN, triples per second: **{theirs['fit_s'] / ours['fit_s']:.2f}×** "
        f"(CPU seconds: {theirs['cpu_s'] / ours['cpu_s']:.2f}×); kgemb at {ours['fit_s'] / floor:.1f}× the floor. kgemb's CPU seconds include building the model "
        "and its final bookkeeping; its training seconds are its own `fit_seconds`.",
    ]
    report = "\n".join(lines)
    print(report)
    if args.out:
        args.out.write_text(report + "\n", encoding="utf-8")
    return report


if __name__ == "__main__":
    main()
