"""Rule channel quality and cost: rules mined from the training graph, scored alone, on WN18RR and UMLS.

    nice -n 10 python benchmarks/rules.py --out benchmarks/results/rules.md
    python benchmarks/rules.py --datasets umls

Rows per dataset: the reverse-edge rule alone (``r(X,Y) <= r(Y,X)`` with confidence 1: the baseline of
FINDINGS.md), path rules only (length 1, 2, and 3 where the graph's walks fit ``max_walks``), and all rules (path +
constant rules) under each aggregation (``maxplus``, ``noisy-or``, ``max``). Filtered test MRR / Hits@k over both directions (head queries as ``(t, r + R, ?)``), ties at
the mean of the optimistic and pessimistic rank (PyKEEN's "realistic" rank), all train/valid/test triples filtered.
Mining and scoring times are wall-clock with CPU-seconds beside them (the machine is shared).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO.parent / "shared" / "data"
PUBLISHED = {"wn18rr": "AnyBURL 0.48, SAFRAN 0.50 (CPU rule learners, from their papers; not run here)"}


def load(dataset: str, data: Path):
    from kgemb.connectors import tabular

    return tabular.load("pykeen:UMLS" if dataset == "umls" else data / "wn18rr")


def reverse_edge_rules(kg):
    """The reverse-edge rule alone: (x, r, ?) -> every y with (y, r, x) in train, confidence 1."""
    from kgemb.rules import COLUMNS, PATH1, RuleSet

    nr = kg.num_relations
    heads = np.arange(2 * nr)
    table = np.full((2 * nr, len(COLUMNS)), -1, dtype=np.int64)
    table[:, 0], table[:, 1], table[:, 2] = heads, PATH1, np.where(heads < nr, heads + nr, heads - nr)
    ones = np.ones(2 * nr, dtype=np.int64)
    return RuleSet(kg.triples("train"), kg.num_entities, nr, table, ones, ones, np.ones(2 * nr))


def timed(fn):
    wall, cpu = time.perf_counter(), time.process_time()
    out = fn()
    return out, time.perf_counter() - wall, time.process_time() - cpu


def run(dataset: str, data: Path) -> tuple[list[dict], list[str]]:
    from kgemb.rules import RuleSet, rule_metrics

    kg = load(dataset, data)
    train, test = kg.triples("train"), kg.triples("test")
    known = [kg.triples(s) for s in ("train", "valid", "test")]
    names = list(kg.relations)
    rows, notes = [], []

    def evaluate(label: str, rs, mine_wall: float, mine_cpu: float, ranks: list | None = None) -> None:
        metrics, wall, cpu = timed(lambda: rule_metrics(rs, test, known, ranks_out=ranks))
        batches = -(-metrics["n"] // 512)
        rows.append(
            {
                "dataset": dataset,
                "rules": label,
                "aggregate": rs.aggregate,
                "n_rules": len(rs),
                "mine_wall_s": round(mine_wall, 2),
                "mine_cpu_s": round(mine_cpu, 2),
                "score_s_per_512": round(wall / batches, 3),
                "score_cpu_s_per_512": round(cpu / batches, 3),
                **{k: round(v, 4) if isinstance(v, float) else v for k, v in metrics.items()},
            }
        )
        print(json.dumps(rows[-1]), flush=True)

    evaluate("reverse-edge rule alone (baseline)", reverse_edge_rules(kg), 0.0, 0.0)
    paths, wall, cpu = timed(
        lambda: RuleSet.mine(train, kg.num_entities, kg.num_relations, relation_names=names, constants=False)
    )
    evaluate("path rules (length 1-3)", paths, wall, cpu)
    full, wall, cpu = timed(
        lambda: RuleSet.mine(train, kg.num_entities, kg.num_relations, relation_names=names)
    )
    kinds = ", ".join(f"{k} {v:,}" for k, v in full.stats["rules_by_kind"].items())
    notes.append(f"{dataset}: {len(full):,} rules ({kinds}); {len(train):,} train triples")
    ranks: list[np.ndarray] = []
    for aggregate in ("maxplus", "noisy-or", "max"):
        full.aggregate = aggregate
        evaluate("path + constant rules", full, wall, cpu, ranks if aggregate == "maxplus" else None)
    if (
        dataset == "wn18rr"
    ):  # per relation, both directions, the maxplus row: what a per-relation weighting sees
        rank = ranks[0]
        rel = np.concatenate([test[:, 1], test[:, 1]])
        notes.append("WN18RR per relation (path + constant rules, maxplus), MRR both directions (test n):")
        for r in np.unique(rel):
            m = rel == r
            notes.append(f"  {names[r]}: {np.mean(1 / rank[m]):.3f} ({int(m.sum())})")
    return rows, notes


def report(rows: list[dict], notes: list[str]) -> str:
    head = (
        "| dataset | rules | aggregate | # rules | mine wall s | mine CPU s | MRR | Hits@1 | Hits@3 | Hits@10 | n "
        "| score s / 512 queries (CPU s) |"
    )
    lines = [
        "Rule channel alone: filtered test MRR, both directions, realistic ranks, train/valid/test filtered. "
        "Machine: 2 shared CPU cores.",
        "",
        head,
        "|" + "---|" * 12,
    ]
    for r in rows:
        lines.append(
            f"| {r['dataset']} | {r['rules']} | {r['aggregate']} | {r['n_rules']:,} | {r['mine_wall_s']} "
            f"| {r['mine_cpu_s']} | {r['mrr']:.3f} | {r['hits@1']:.3f} | {r['hits@3']:.3f} | {r['hits@10']:.3f} "
            f"| {r['n']} | {r['score_s_per_512']} ({r['score_cpu_s_per_512']}) |"
        )
    lines += ["", *[f"Published: {k} {v}" for k, v in PUBLISHED.items()], "", *notes]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--datasets", nargs="+", default=["wn18rr", "umls"], choices=["wn18rr", "umls"])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    rows, notes = [], []
    for dataset in args.datasets:
        r, n = run(dataset, args.data)
        rows += r
        notes += n
    text = report(rows, notes)
    print(text)
    if args.out:
        from kgemb.files import write_atomic

        write_atomic(args.out, text.encode("utf-8"))


if __name__ == "__main__":
    main()
