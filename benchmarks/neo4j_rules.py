"""Link-prediction quality through kgemb's Neo4j procedures, with and without the model's rule channel.

One model is trained (structure by default, seed 0), evaluated in Python (filtered test MRR, rules included, as
``TrainedModel.evaluate`` scores), then pushed to the Neo4j dev server twice: with its rule channel and with the
vectors only (the procedures before the rule channel was ported). Every test triple is asked both ways through
``kgemb.predict.tails`` / ``kgemb.predict.heads`` (``filterKnown: false``, the known answers of all splits filtered
here, as evaluation filters them) and ranked; MRR@k counts an answer outside the k best as 0, for the procedures
and for Python's own ranks alike, so the rows compare like with like.

    nice python benchmarks/neo4j_rules.py --dataset umls --epochs 20
    nice python benchmarks/neo4j_rules.py --dataset wn18rr --epochs 5 --out benchmarks/results/neo4j_rules.md
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))

QUERY = {
    "tails": "UNWIND $rows AS row MATCH (n:KgembEntity {key: row.key}) "
    "CALL kgemb.predict.tails(n, row.rel, row.k, $config) YIELD node, rank "
    "WITH row, node.key AS key, rank ORDER BY row.i, rank RETURN row.i AS i, collect(key) AS keys",
    "heads": "UNWIND $rows AS row MATCH (n:KgembEntity {key: row.key}) "
    "CALL kgemb.predict.heads(n, row.rel, row.k, $config) YIELD node, rank "
    "WITH row, node.key AS key, rank ORDER BY row.i, rank RETURN row.i AS i, collect(key) AS keys",
}


def known_answers(kg: Any) -> tuple[dict, dict]:
    """(h, r) -> tails and (r, t) -> heads over every split (what filtered evaluation leaves out)."""
    tails, heads = defaultdict(set), defaultdict(set)
    for h, r, t in kg.all_triples().tolist():
        tails[h, r].add(t)
        heads[r, t].add(h)
    return tails, heads


def procedure_ranks(driver: Any, kg: Any, test: np.ndarray, k: int, batch: int = 200) -> np.ndarray:
    """The filtered rank of every test triple's answer (tails first, then heads, as evaluation orders them),
    ``k + 1`` where it is not among the k best after filtering."""
    tails, heads = known_answers(kg)
    keys = [e.key for e in kg.entities]
    ranks = []
    for side in ("tails", "heads"):
        rows, wanted, others = [], [], []
        for i, (h, r, t) in enumerate(test.tolist()):
            anchor, answer, known = (h, t, tails[h, r]) if side == "tails" else (t, h, heads[r, t])
            other = {keys[x] for x in known if x != answer}
            rows.append({"i": i, "key": keys[anchor], "rel": kg.relations[r], "k": k + len(other)})
            wanted.append(keys[answer])
            others.append(other)
        found: dict[int, list[str]] = {}
        config = {"filterKnown": False, "constraints": False}
        for start in range(0, len(rows), batch):
            for record in driver.execute_query(
                QUERY[side], rows=rows[start : start + batch], config=config
            ).records:
                found[record["i"]] = record["keys"]
        for i, answer in enumerate(wanted):
            listed = [x for x in found.get(i, []) if x not in others[i]]
            ranks.append(listed.index(answer) + 1 if answer in listed[:k] else k + 1)
    return np.asarray(ranks)


def mrr_at(ranks: np.ndarray, k: int) -> float:
    return float(np.where(ranks <= k, 1.0 / ranks, 0.0).mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", choices=["umls", "wn18rr", "nations", "kinships"], default="umls")
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    parser.add_argument("--mode", default="structure", help="kgemb.train's mode")
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--k", type=int, default=100, help="answers asked per query (MRR@k)")
    parser.add_argument("--heap", default="4g", help="the dev server's Java heap")
    parser.add_argument("--out", type=Path, help="also write the Markdown report here")
    args = parser.parse_args()

    from kgemb.connectors import neo4j as kn
    from kgemb.connectors.neo4j_dev import DevServer
    from kgemb.reasoning import LinkPredictor
    from linkpred import load_graph

    import kgemb

    kg = load_graph(args.dataset, args.data)
    test = kg.triples("test")
    cpu, wall = time.process_time(), time.perf_counter()
    model = kgemb.train(kg, mode=args.mode, epochs=args.epochs, seed=0, show_progress=False)
    train_cpu, train_wall = time.process_time() - cpu, time.perf_counter() - wall
    channel = model.pykeen_model.rule_channel
    if channel is None:
        raise SystemExit("the model has no rule channel (no rule weight above 0): nothing to compare")
    python_ranks: list[np.ndarray] = []
    full = model.evaluate("test", ranks_out=python_ranks)
    py = np.concatenate(python_ranks)
    calibration = LinkPredictor(model).calibration
    rows = [
        (
            "Python: TrainedModel.evaluate (rules included)",
            f"{full['mrr']:.4f}",
            f"{mrr_at(py, args.k):.4f}",
            "",
        ),
    ]
    server = DevServer(data_dir=Path(tempfile.mkdtemp(prefix="kgemb-neo4j-rules-")) / "data", heap=args.heap)
    server.start()
    try:
        driver = kn.connect(server.uri)
        for label, with_rules in (("with the rule channel", True), ("vectors only (before)", False)):
            model.pykeen_model.rule_channel = channel if with_rules else None
            began = time.perf_counter()
            kn.push(model, driver, progress=False, calibration=calibration, vector_index=False)
            pushed = time.perf_counter() - began
            began = time.perf_counter()  # the first call loads the model (and its rules) into the server
            procedure_ranks(driver, kg, test[:1], args.k)
            loaded = time.perf_counter() - began
            cpu, wall = time.process_time(), time.perf_counter()
            ranks = procedure_ranks(driver, kg, test, args.k)
            spent = time.perf_counter() - wall
            rows.append(
                (
                    f"Neo4j: kgemb.predict.tails/heads, {label}",
                    "",
                    f"**{mrr_at(ranks, args.k):.4f}**",
                    f"{2 * len(test):,} queries in {spent:.1f} s wall ({1000 * spent / (2 * len(test)):.1f} ms"
                    f" each, client {time.process_time() - cpu:.1f} CPU-s); push {pushed:.0f} s; first call (loads"
                    f" the model) {loaded:.1f} s",
                )
            )
            print(" | ".join(rows[-1]), flush=True)
        driver.close()
    finally:
        server.stop()
    model.pykeen_model.rule_channel = channel
    kinds = ", ".join(
        f"{name} {int((channel.rules.rules[:, 1] == i).sum())}"
        for i, name in enumerate(("path1", "path2", "path3", "const", "any"))
    )
    head = (
        f"# Link prediction through the Neo4j procedures: {args.dataset}\n\n"
        f"kgemb.train(mode={args.mode!r}, epochs={args.epochs}, seed=0): {train_wall / 60:.1f} min wall, "
        f"{train_cpu / 60:.1f} CPU min; {len(channel.rules):,} rules ({kinds}), "
        f"{int((channel.weights > 0).sum())} of {len(channel.weights)} oriented relations with a rule weight above 0. "
        f"Test: {len(test):,} triples, both directions, filtered (all splits). MRR@{args.k}: an answer outside the "
        f"{args.k} best counts 0. {os.cpu_count()} CPUs.\n\n"
        f"| scorer | test MRR | MRR@{args.k} | note |\n|---|---|---|---|\n"
    )
    report = (
        head
        + "\n".join("| " + " | ".join(r) + " |" for r in rows)
        + (
            f"\n\nReproduce: `nice .venv/bin/python benchmarks/neo4j_rules.py --dataset {args.dataset} "
            f"--mode {args.mode} --epochs {args.epochs}`\n"
        )
    )
    print(report)
    if args.out:
        args.out.write_text(report, encoding="utf-8")


if __name__ == "__main__":
    main()
