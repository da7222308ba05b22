"""Neo4j connector benchmark: pull, push (batched against one write per node), index queries and predicted links,
side by side in one run, as a Markdown table.

WN18RR (40,943 nodes with their WordNet texts, all 93,003 relationships) is loaded into a Neo4j dev server started
here (or the server ``--uri`` names; its database is emptied first), then:
- pull: the whole graph through ``kgemb.connectors.neo4j.pull`` (goal >= 100,000 relationships/s; the relationships as packed blocks from the plugin);
- push: every node's 512-d vector in UNWIND batches, two sessions at once (goal >= 10,000 vectors/s), against
  the same Cypher with one node per transaction on the first ``--single`` nodes (the ratio), then the vector
  index until ONLINE;
- predict: ``predict_via_index`` (pure-Cypher query vector + ``db.index.vector.queryNodes`` + exact re-scoring)
  per query, and writing the top 5 predicted links of 1,000 heads twice (the second run changes nothing).

The model is an untrained RotatE model of dimension 512 on the graph: the speed of moving vectors does not depend on
the weights. Run it once, at the end, on a quiet machine:

    nice .venv/bin/python benchmarks/neo4j_bench.py --out benchmarks/results/neo4j.md

``--procedures`` measures kgemb's Neo4j procedures instead: top-10 tails latency of ``CALL kgemb.predict.tails``
and ``CALL kgemb.rank`` with 10 evidence nodes (goal <= 50 ms at 100k) over synthetic graphs of ``--sizes`` nodes
(untrained RotatE, dim 256, two types, one relation), beside Python's ``LinkPredictor.tails`` /
``LinkPredictor.rank`` and ``predict_via_index`` in the same run (goals on 2 cores: <= 30 ms at 100k, <= 150 ms at
1M). Graphs larger than ``--push-max`` nodes are not pushed (a push of 1M nodes takes about an hour on the shared
2-core machine): their procedure rows are the plugin's kernels alone (``KernelBench``, the same Java code the
procedures run, without Bolt and Cypher). Every size also gets the kernels' own figures and the floor: the bytes a
scan reads divided by the memory bandwidth measured by the same loop without the multiply.

    nice .venv/bin/python benchmarks/neo4j_bench.py --procedures --out benchmarks/results/neo4j_procedures.md
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]


def load_wn18rr(driver: Any, data: Path) -> tuple[int, int, float]:
    """WN18RR into Neo4j as ``(:Synset {id, name, description})`` nodes and typed relationships; counts, seconds."""
    texts: dict[str, tuple[str, str]] = {}
    for line in (data / "wn18rr" / "entity2text.tsv").read_text(encoding="utf-8").splitlines():
        key, _, text = line.partition("\t")
        lemma, _, gloss = text.partition(", ")
        texts[key] = (lemma, gloss)
    triples = []
    for split in ("train", "valid", "test"):
        for line in (data / "wn18rr" / f"{split}.txt").read_text(encoding="utf-8").splitlines():
            h, r, t = line.split("\t")
            triples.append((h, r.strip("_").upper(), t))
    keys = sorted({h for h, _, _ in triples} | {t for _, _, t in triples})
    began = time.perf_counter()
    with driver.session() as session:
        session.run(
            "CREATE CONSTRAINT synset_id IF NOT EXISTS FOR (s:Synset) REQUIRE s.id IS UNIQUE"
        ).consume()
        for start in range(0, len(keys), 10_000):
            rows = [
                {"id": k, "name": texts.get(k, (k, ""))[0], "description": texts.get(k, ("", ""))[1]}
                for k in keys[start : start + 10_000]
            ]
            session.run("UNWIND $rows AS row CREATE (s:Synset) SET s = row", rows=rows).consume()
        by_type: dict[str, list[list[str]]] = {}
        for h, r, t in triples:
            by_type.setdefault(r, []).append([h, t])
        for rel_type, pairs in by_type.items():
            assert rel_type.replace("_", "").isalpha()  # WN18RR's own relation names, not user input
            for start in range(0, len(pairs), 10_000):
                session.run(
                    "UNWIND $rows AS p MATCH (a:Synset {id: p[0]}), (b:Synset {id: p[1]}) "
                    f"CREATE (a)-[:`{rel_type}`]->(b)",
                    rows=pairs[start : start + 10_000],
                ).consume()
    return len(keys), len(triples), time.perf_counter() - began


class CpuClock:
    """CPU seconds used by this process plus the Neo4j server process (when it runs on this machine): on a
    shared machine the work done, where wall time also counts the waiting."""

    def __init__(self, server_pid: int | None) -> None:
        self.stat = Path(f"/proc/{server_pid}/stat") if server_pid else None
        self.tick = os.sysconf("SC_CLK_TCK")

    def __call__(self) -> float:
        used = time.process_time()
        if self.stat is not None and self.stat.exists():
            fields = self.stat.read_text().rsplit(")", 1)[1].split()
            used += (int(fields[11]) + int(fields[12])) / self.tick  # utime, stime
        return used


def one_write_per_node(driver: Any, element_ids: list[str], vectors: np.ndarray) -> float:
    """The baseline: the push's own Cypher, one node per managed transaction. Seconds."""
    from kgemb.connectors._neo4j_common import write_batches

    query = (
        "UNWIND $rows AS row MATCH (n) WHERE elementId(n) = row[0] SET n:`KgembEntity` "
        "WITH n, row CALL db.create.setNodeVectorProperty(n, $property, row[1])"
    )
    began = time.perf_counter()
    batches = ([[e, v]] for e, v in zip(element_ids, vectors.tolist(), strict=True))
    write_batches(driver, None, query, batches, property="embedding_single")
    return time.perf_counter() - began


def run(args: argparse.Namespace) -> list[tuple[str, str, str, str]]:
    import torch
    from kgemb.connectors import neo4j as kn
    from kgemb.connectors.neo4j_dev import DevServer

    from kgemb.model import TrainedModel, build_model

    rows: list[tuple[str, str, str, str]] = []
    server = None
    uri = args.uri
    if uri is None:
        server = DevServer(data_dir=Path(tempfile.mkdtemp(prefix="kgemb-neo4j-bench-")) / "data", heap="3g")
        server.start()
        uri = server.uri
    cpu = CpuClock(server._proc.pid if server is not None and server._proc is not None else None)
    try:
        driver = kn.connect(uri)
        with driver.session() as session:
            session.run("MATCH (n) CALL (n) { DETACH DELETE n } IN TRANSACTIONS OF 10000 ROWS").consume()
            for name in session.run(
                "SHOW INDEXES YIELD name, type WHERE type <> 'LOOKUP' RETURN name"
            ).value():
                session.run(f"DROP INDEX `{name}` IF EXISTS").consume()
            for name in session.run("SHOW CONSTRAINTS YIELD name RETURN name").value():
                session.run(f"DROP CONSTRAINT `{name}` IF EXISTS").consume()
        nodes, rels, seconds = load_wn18rr(driver, args.data)
        rows.append(
            ("load WN18RR (setup, not a goal)", f"{nodes:,} nodes, {rels:,} rels", f"{seconds:.1f} s", "")
        )

        pulls = []
        for _ in range(args.repeats):
            began, used = time.perf_counter(), cpu()
            kg = kn.pull(driver, key="id", progress=False)
            pulls.append((time.perf_counter() - began, cpu() - used))
        best, best_cpu = min(pulls)
        n_rel = len(kg.all_triples())
        rows.append(
            (
                "pull whole graph (key = id property, texts)",
                f"{n_rel:,} rels, {kg.num_entities:,} nodes",
                f"{best:.2f} s (best of {args.repeats}); CPU {best_cpu:.2f} s",
                f"**{n_rel / best:,.0f} relationships/s** (goal >= 100,000); {n_rel / best_cpu:,.0f} per CPU-second",
            )
        )

        torch.manual_seed(0)
        model = TrainedModel(
            kg,
            build_model(
                kg.to_triples_factory(), mode="structure", interaction="rotate", dim=512, features=None
            ),
            {"mode": "structure", "interaction": "rotate", "dim": 512},
        )
        marks: list[float] = []
        report = kn.push(
            model,
            driver,
            batch_size=args.batch_size,
            workers=args.workers,
            progress=False,
            on_batch=lambda done, total: marks.append(cpu()) if done in (args.batch_size, total) else None,
        )
        batched = report.vectors_per_second
        # CPU from the end of the first batch to the end of the last, scaled to all batches
        push_cpu = (marks[-1] - marks[0]) * report.nodes / max(report.nodes - args.batch_size, 1)
        rows.append(
            (
                f"push vectors, UNWIND batches of {args.batch_size}, {args.workers} sessions",
                f"{report.nodes:,} x {report.dim}-d",
                f"{report.write_seconds:.1f} s; CPU {push_cpu:.1f} s",
                f"**{batched:,.0f} vectors/s** (goal >= 10,000); {report.nodes / push_cpu:,.0f} per CPU-second",
            )
        )
        element_ids = [
            r[0]
            for r in driver.execute_query(
                "MATCH (s:Synset) RETURN elementId(s) ORDER BY s.id LIMIT $n", n=args.single
            ).records
        ]
        vectors = model.entity_vectors()[: len(element_ids)]
        used = cpu()
        single = one_write_per_node(driver, element_ids, vectors)
        single_cpu = cpu() - used
        rows.append(
            (
                "push vectors, one write (transaction) per node",
                f"{len(element_ids):,} x 512-d",
                f"{single:.1f} s; CPU {single_cpu:.1f} s",
                f"{len(element_ids) / single:,.0f} vectors/s; batched is **{batched * single / len(element_ids):.0f}x**"
                f" (per CPU-second {report.nodes / push_cpu * single_cpu / len(element_ids):.0f}x)",
            )
        )
        rows.append(
            (
                "vector index created until ONLINE",
                f"{report.nodes:,} x 512-d, {report.similarity}",
                f"{report.index_seconds:.1f} s",
                "",
            )
        )

        heads = [kg.entities[i].key for i in range(0, kg.num_entities, kg.num_entities // args.queries)][
            : args.queries
        ]
        relation = kg.relations[0]
        began = time.perf_counter()
        for head in heads:
            kn.predict_via_index(model, driver, head=head, relation=relation, k=10, candidates=100)
        per_query = (time.perf_counter() - began) / len(heads)
        rows.append(
            (
                "predict_via_index (Cypher query vector + queryNodes + exact re-scoring)",
                f"{len(heads)} queries, k=10 of 100 candidates",
                f"{per_query * 1000:.0f} ms/query",
                f"{1 / per_query:,.0f} queries/s",
            )
        )

        links = kn.predict_links(model, relation, k=5)
        head_keys = sorted({x.head for x in links})[: args.heads]
        links = [x for x in links if x.head in set(head_keys)]
        began = time.perf_counter()
        first = kn.write_links(links, model, driver, heads=head_keys)
        first_s = time.perf_counter() - began
        began = time.perf_counter()
        second = kn.write_links(links, model, driver, heads=head_keys)
        second_s = time.perf_counter() - began
        rows.append(
            (
                "write predicted links (MERGE), first run",
                f"{len(links):,} links of {len(head_keys):,} heads",
                f"{first_s:.1f} s",
                f"{len(links) / first_s:,.0f} links/s; {first.created:,} created",
            )
        )
        rows.append(
            (
                "write predicted links again (idempotent)",
                f"{len(links):,} links",
                f"{second_s:.1f} s",
                f"{second.created + second.updated + second.deleted} changes",
            )
        )
        driver.close()
    finally:
        if server is not None:
            server.stop()
    return rows


def synthetic_model(n: int, dim: int, seed: int = 0) -> Any:
    """An untrained RotatE model over ``n`` entities (half :A, half :B) and one relation A -> B with n/10 links:
    latency depends on the number and size of vectors, not on the weights."""
    import torch

    from kgemb.graph import GraphBuilder
    from kgemb.model import TrainedModel, build_model

    rng = np.random.default_rng(seed)
    builder = GraphBuilder()
    for i in range(n):
        key = f"e{i}"
        builder.add_entity(key)
        builder.add_type(key, "A" if i % 2 == 0 else "B")
    r = builder.add_relation("rel", {"en": ["rel"]})
    heads = rng.integers(0, n // 2, n // 10) * 2
    tails = rng.integers(0, n // 2, n // 10) * 2 + 1
    for h, t in zip(heads.tolist(), tails.tolist(), strict=True):
        builder.add_triple_ids(h, r, t)
    kg = builder.build({"source": "synthetic"})
    torch.manual_seed(seed)
    config = {"mode": "structure", "interaction": "rotate", "dim": dim}
    return TrainedModel(
        kg,
        build_model(kg.to_triples_factory(), mode="structure", interaction="rotate", dim=dim, features=None),
        config,
    )


def _ms(values: list[float]) -> str:
    a = np.asarray(values) * 1000
    return f"median {np.median(a):.1f} ms, p90 {np.percentile(a, 90):.1f} ms"


def kernel_bench(n: int, dim: int, queries: int, items: int = 10) -> dict[str, float]:
    """The plugin's kernels alone (``org.kgemb.neo4j.procedures.KernelBench`` in the plugin jar), random vectors."""
    import subprocess

    from kgemb.connectors.neo4j_dev import ensure_built

    jar = ensure_built()
    heap = f"{max(1, (n * dim * 4 * 2) >> 30) + 1}g"
    sizes = [str(n), str(dim), str(queries), str(items)]
    out = subprocess.run(
        ["java", f"-Xmx{heap}", "-cp", str(jar), "org.kgemb.neo4j.procedures.KernelBench", *sizes],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return {k: float(v) for k, v in (field.split("=") for field in out.split())}


def kernel_rows(n: int, dim: int, queries: int, pushed: bool) -> list[tuple[str, str, str, str]]:
    kb = kernel_bench(n, dim, queries)
    goal_tails = "<= 30 ms" if n <= 100_000 else "<= 150 ms"
    note = "" if pushed else " (not pushed: this size's procedure figure)"
    return [
        (
            f"floor: one read of the table, {n:,} x {dim}-d",
            f"{kb['bytes'] / 1e6:.0f} MB at {kb['bandwidth_gbs']:.2f} GB/s (measured, {kb['threads']:.0f} threads)",
            f"**{kb['floor_ms']:.1f} ms**",
            "",
        ),
        (
            f"kernel only: tails top 10, {n:,} nodes{note}",
            f"{queries} queries, KernelBench",
            f"**median {kb['tails_wall_ms']:.1f} ms**; CPU {kb['tails_cpu_ms']:.1f} ms/query",
            f"goal {goal_tails}; {kb['tails_wall_ms'] / kb['floor_ms']:.2f}x the floor",
        ),
        (
            f"kernel only: rank, {kb['rank_items']:.0f} evidence items, top 10, {n:,} nodes{note}",
            f"{max(10, queries // 5)} queries, KernelBench",
            f"**median {kb['rank_wall_ms']:.1f} ms**; CPU {kb['rank_cpu_ms']:.1f} ms/query",
            ("goal <= 50 ms; " if n <= 100_000 else "")
            + f"{kb['rank_wall_ms'] / kb['floor_ms']:.2f}x the floor",
        ),
    ]


def python_tails_rows(model: Any, predictor: Any, keys: list[str], n: int, cpu: Any, queries: int, got: Any):
    """Python's LinkPredictor.tails on the same model (and whether its top 10 is the procedure's)."""
    same = (
        ""
        if got is None
        else f"; same top 10 as the procedure: {[x.key for x in predictor.tails(keys[-1], 'rel', k=10)] == [r['key'] for r in got]}"
    )
    times, used = [], cpu()
    for key in keys[:queries]:
        began = time.perf_counter()
        predictor.tails(key, "rel", k=10)
        times.append(time.perf_counter() - began)
    py_cpu = (cpu() - used) / len(times)
    return (
        f"Python `LinkPredictor.tails` top 10, {n:,} nodes",
        f"{len(times)} queries{same}",
        f"{_ms(times)}; CPU {py_cpu * 1000:.1f} ms/query",
        "",
    )


def run_procedures(args: argparse.Namespace) -> list[tuple[str, str, str, str]]:
    """Procedure latency beside LinkPredictor.tails and predict_via_index, per graph size."""
    from kgemb.connectors import neo4j as kn
    from kgemb.connectors.neo4j_dev import DevServer
    from kgemb.reasoning import LinkPredictor
    from kgemb.reasoning.calibration import Calibration, model_signature

    rows: list[tuple[str, str, str, str]] = []
    server = DevServer(data_dir=Path(tempfile.mkdtemp(prefix="kgemb-neo4j-proc-")) / "data", heap=args.heap)
    server.start()
    cpu = CpuClock(server._proc.pid if server._proc is not None else None)
    try:
        driver = kn.connect(server.uri)
        for n in args.sizes:
            if n > args.push_max:
                rows.extend(kernel_rows(n, args.dim, args.kernel_queries, pushed=False))
                model = synthetic_model(n, args.dim)
                predictor = LinkPredictor(
                    model,
                    calibration=Calibration(np.ones(1), np.zeros(1), (1.0, 0.0), model_signature(model)),
                )
                rng = np.random.default_rng(1)
                keys = [f"e{2 * int(i)}" for i in rng.integers(0, n // 2, args.python_queries)]
                predictor.tails(keys[0], "rel", k=10)  # the first call builds the entity matrix
                rows.append(python_tails_rows(model, predictor, keys, n, cpu, args.python_queries, None))
                print(*(" | ".join(r) for r in rows[-4:]), sep="\n", flush=True)
                del model, predictor
                continue
            with driver.session() as session:
                session.run("MATCH (n) CALL (n) { DETACH DELETE n } IN TRANSACTIONS OF 10000 ROWS").consume()
                for name in session.run("SHOW CONSTRAINTS YIELD name RETURN name").value():
                    session.run(f"DROP CONSTRAINT `{name}` IF EXISTS").consume()  # before their indexes
                for name in session.run(
                    "SHOW INDEXES YIELD name, type WHERE type <> 'LOOKUP' RETURN name"
                ).value():
                    session.run(f"DROP INDEX `{name}` IF EXISTS").consume()
            index = not args.no_index and n <= args.index_max
            began = time.perf_counter()
            model = synthetic_model(n, args.dim)
            cal = Calibration(np.ones(1), np.zeros(1), (1.0, 0.0), model_signature(model))
            report = kn.push(model, driver, progress=False, calibration=cal, vector_index=index)
            rows.append(
                (
                    f"setup: synthetic graph + push ({n:,} nodes, not a goal)",
                    f"{n:,} x {args.dim}-d, {len(model.kg.all_triples()):,} rels",
                    f"{time.perf_counter() - began:.0f} s (index ONLINE after {report.index_seconds:.0f} s)"
                    if index
                    else f"{time.perf_counter() - began:.0f} s (no vector index)",
                    "",
                )
            )
            rng = np.random.default_rng(1)
            keys = [f"e{2 * int(i)}" for i in rng.integers(0, n // 2, args.queries)]
            query = (
                "MATCH (n:KgembEntity {key: $key}) CALL kgemb.predict.tails(n, 'rel', 10) "
                "YIELD node, score RETURN node.key AS key, score"
            )
            began = time.perf_counter()
            driver.execute_query(query, key=keys[0])
            load = time.perf_counter() - began
            for key in keys[: args.warmup]:  # let the JIT compile the scan before timing
                driver.execute_query(query, key=key)
            times, used = [], cpu()
            for key in keys:
                began = time.perf_counter()
                got = driver.execute_query(query, key=key).records
                times.append(time.perf_counter() - began)
            proc_cpu = (cpu() - used) / len(keys)
            goal = "<= 30 ms" if n <= 100_000 else "<= 150 ms" if n <= 1_000_000 else ""
            rows.append(
                (
                    f"`CALL kgemb.predict.tails` top 10, {n:,} nodes",
                    f"{len(keys)} queries (first call loads the vectors: {load:.1f} s)",
                    f"**{_ms(times)}**; CPU {proc_cpu * 1000:.1f} ms/query (client + server)",
                    f"goal {goal}",
                )
            )
            rank_query = (
                "UNWIND $keys AS key MATCH (e:KgembEntity {key: key}) WITH collect(e) AS evidence "
                "CALL kgemb.rank(evidence, 'rel', 10, {target: 'tail'}) YIELD node, score "
                "RETURN node.key AS key, score"
            )
            evidence = [keys[i : i + 10] for i in range(0, len(keys) - 10, 10)]
            for i in range(
                max(3, args.warmup // 2)
            ):  # warm-up (JIT); the first call also reads the annotations
                driver.execute_query(rank_query, keys=evidence[i % len(evidence)])
            times, used = [], cpu()
            for group in evidence:
                began = time.perf_counter()
                ranked = driver.execute_query(rank_query, keys=group).records
                times.append(time.perf_counter() - began)
            rank_cpu = (cpu() - used) / max(len(times), 1)
            rows.append(
                (
                    f"`CALL kgemb.rank` 10 evidence nodes, top 10, {n:,} nodes",
                    f"{len(times)} queries",
                    f"**{_ms(times)}**; CPU {rank_cpu * 1000:.1f} ms/query (client + server)",
                    "goal <= 50 ms" if n <= 100_000 else "",
                )
            )
            predictor = LinkPredictor(model, calibration=cal)
            rows.append(python_tails_rows(model, predictor, keys, n, cpu, args.python_queries, got))
            want = predictor.rank([(k, "rel") for k in evidence[-1]], k=10, target="tail")
            same = [w.key for w in want] == [r["key"] for r in ranked]
            close = np.allclose([w.score for w in want], [r["score"] for r in ranked], atol=1e-5)
            times, used = [], cpu()
            for group in evidence[: max(3, args.python_queries // 4)]:
                began = time.perf_counter()
                predictor.rank([(k, "rel") for k in group], k=10, target="tail")
                times.append(time.perf_counter() - began)
            rows.append(
                (
                    f"Python `LinkPredictor.rank` 10 evidence, top 10, {n:,} nodes",
                    f"{len(times)} queries; same top 10 as kgemb.rank: {same}, same P(x) (1e-5): {close}",
                    f"{_ms(times)}; CPU {(cpu() - used) / len(times) * 1000:.1f} ms/query",
                    "",
                )
            )
            if index:
                times, used = [], cpu()
                for key in keys[: args.python_queries]:
                    began = time.perf_counter()
                    kn.predict_via_index(model, driver, relation="rel", head=key, k=10)
                    times.append(time.perf_counter() - began)
                idx_cpu = (cpu() - used) / len(times)
                rows.append(
                    (
                        f"`predict_via_index` top 10 (approximate), {n:,} nodes",
                        f"{len(times)} queries",
                        f"{_ms(times)}; CPU {idx_cpu * 1000:.1f} ms/query (client + server)",
                        "",
                    )
                )
            rows.extend(kernel_rows(n, args.dim, args.kernel_queries, pushed=True))
            print(*(" | ".join(r) for r in rows[-9:]), sep="\n", flush=True)
            del model, predictor
        driver.close()
    finally:
        server.stop()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--data", type=Path, default=REPO.parent / "shared" / "data", help="the shared data folder"
    )
    parser.add_argument(
        "--uri", help="a running Neo4j 5 to use (its database is EMPTIED); default: start one"
    )
    parser.add_argument("--batch-size", type=int, default=1000, help="nodes per push transaction")
    parser.add_argument("--workers", type=int, default=2, help="sessions writing at once (push's default)")
    parser.add_argument("--single", type=int, default=2000, help="nodes for the one-write-per-node baseline")
    parser.add_argument("--queries", type=int, default=100, help="predict_via_index queries to time")
    parser.add_argument("--heads", type=int, default=1000, help="heads whose predicted links are written")
    parser.add_argument("--repeats", type=int, default=3, help="pulls to time (the best counts)")
    parser.add_argument("--out", type=Path, help="also write the Markdown report here")
    parser.add_argument("--procedures", action="store_true", help="measure kgemb's procedures (see above)")
    parser.add_argument(
        "--sizes",
        type=lambda s: [int(x) for x in s.split(",")],
        default=[100_000, 1_000_000],
        help="node counts",
    )
    parser.add_argument("--dim", type=int, default=256, help="vector dimension for --procedures")
    parser.add_argument(
        "--python-queries", type=int, default=20, help="queries timed for the Python baselines"
    )
    parser.add_argument(
        "--no-index",
        action="store_true",
        help="no vector index, so no predict_via_index row (the index build is slow)",
    )
    parser.add_argument("--warmup", type=int, default=30, help="untimed procedure calls before timing")
    parser.add_argument(
        "--push-max",
        type=int,
        default=100_000,
        help="larger graphs are not pushed: their procedure figures are the kernels alone (KernelBench)",
    )
    parser.add_argument(
        "--index-max",
        type=int,
        default=20_000,
        help="build the vector index (for the predict_via_index row) only up to this many nodes: building it over "
        "100k x 256 takes longer than 10 minutes on the shared machine",
    )
    parser.add_argument("--kernel-queries", type=int, default=50, help="queries timed by KernelBench")
    parser.add_argument("--heap", default="4g", help="the dev server's Java heap for --procedures")
    args = parser.parse_args()
    load_before = os.getloadavg()[0]
    rows = run_procedures(args) if args.procedures else run(args)
    load_after = os.getloadavg()[0]
    import neo4j

    try:
        import neo4j._rust

        rust = "with neo4j-rust-ext"
    except ImportError:
        rust = "pure-Python packstream"
    what = (
        f"kgemb's procedures over synthetic graphs (untrained RotatE, dim {args.dim}) in"
        if args.procedures
        else "WN18RR in"
    )
    command = (
        "benchmarks/neo4j_bench.py --procedures --out benchmarks/results/neo4j_procedures.md"
        if args.procedures
        else ("benchmarks/neo4j_bench.py --out benchmarks/results/neo4j.md")
    )
    lines = [
        "# Neo4j procedures benchmark" if args.procedures else "# Neo4j connector benchmark",
        "",
        f"{what} the Neo4j 5.26 dev server (`connectors/neo4j`), Python driver {neo4j.__version__} ({rust}); "
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}; "
        f"1-minute load average {load_before:.1f} before and {load_after:.1f} after the run (a machine shared with "
        "other work: wall-clock rates drop with the load, rates per CPU-second of client + server much less).",
        "",
        "| step | size | time | rate |",
        "|---|---|---|---|",
        *(f"| {a} | {b} | {c} | {d} |" for a, b, c, d in rows),
        "",
        f"Reproduce: `nice .venv/bin/python {command}`",
    ]
    report = "\n".join(lines) + "\n"
    print(report)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        tmp = args.out.with_name(args.out.name + ".tmp")
        tmp.write_text(report, encoding="utf-8")
        os.replace(tmp, args.out)


if __name__ == "__main__":
    main()
