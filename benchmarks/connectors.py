"""Connector throughput against its floor and its anchor, side by side in one run (issue 18): RDF loading with each
parser, Neo4j push in each vector form and number of sessions, Neo4j pull.

RDF: a generated graph (``benchmarks/rdf_stream.py``'s generator: labels in two languages, types, definitions,
relation triples, the relation triples in random order) as N-Triples and as Turtle, and as Turtle grouped by subject
(the statements sorted by subject, as tools usually write Turtle). Floor: pyoxigraph's parser alone (iterating its
statements, no work per statement); anchor: the pure-Python reader (``parser="rdflib"``: kgemb's line streamer for
N-Triples, rdflib for Turtle); kgemb: ``rdf.load`` with its default (``parser="auto"``, pyoxigraph). Rates are
statements per CPU-second of this process (best of ``--repeats``).

Neo4j: WN18RR (40,943 nodes, 93,003 relationships) in the dev server, as ``benchmarks/neo4j_bench.py`` loads it. Push:
every node's 512-d vector (untrained RotatE), ``vector_form`` cypher (a list of doubles per node through
``db.create.setNodeVectorProperty``) and procedure (float32 bytes through ``kgemb.vectors.set``), 1, 2 and 4
sessions; floor: the server writing the same number of vectors with no transfer (one vector parameter set on every
node by ``setNodeVectorProperty`` in transactions of 1,000). Pull: ``neo4j.pull`` (key property, texts) with the
relationships as lists through Cypher and as packed blocks from the plugin's ``kgemb.export.relationships`` (the
same graph, checked), and the procedure's stream alone, against the driver streaming bare (id, type, id) rows (the
least a record-per-relationship pull reads) and the server counting the same matches.
CPU-seconds are client + server (the dev server runs on this machine).

    nice .venv/bin/python benchmarks/connectors.py --out benchmarks/results/connectors.md
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import platform
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]

Row = tuple[str, str, str, str, str]


class _Printed(list):
    """Rows printed as they are measured, so a run that fails later still shows them."""

    def append(self, row: Row) -> None:
        print(" | ".join(row), flush=True)
        super().append(row)


def _module(name: str) -> Any:
    spec = importlib.util.spec_from_file_location(f"bench_{name}", REPO / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _best(repeats: int, work: Any) -> tuple[float, float, Any]:
    """(CPU seconds, wall seconds, result) of the run with the least CPU."""
    runs = []
    for _ in range(repeats):
        cpu, wall = time.process_time(), time.perf_counter()
        result = work()
        runs.append((time.process_time() - cpu, time.perf_counter() - wall, result))
    return min(runs, key=lambda r: r[0])


# --------------------------------------------------------------------------------------------------------- RDF
def rdf_rows(args: argparse.Namespace, folder: Path) -> list[Row]:
    import pyoxigraph as ox
    from kgemb.connectors import rdf

    nt = folder / "graph.nt"
    _module("rdf_stream").generate(nt, args.statements, args.statements // 10)
    ttl = folder / "graph.ttl"
    triples = (q.triple for q in ox.parse(path=str(nt), format=ox.RdfFormat.N_TRIPLES))
    ox.serialize(
        triples,
        output=str(ttl),
        format=ox.RdfFormat.TURTLE,
        prefixes={"e": "http://example.org/e/", "r": "http://example.org/r/"},
    )
    # Turtle as tools usually write it: each subject's statements together (';' and ','), here in the subjects'
    # sorted order
    grouped = folder / "graph_grouped.ttl"
    by_subject = sorted(nt.read_bytes().splitlines(keepends=True), key=lambda line: line.split(b" ", 1)[0])
    (folder / "grouped.nt").write_bytes(b"".join(by_subject))
    del by_subject
    ox.serialize(
        (q.triple for q in ox.parse(path=str(folder / "grouped.nt"), format=ox.RdfFormat.N_TRIPLES)),
        output=str(grouped),
        format=ox.RdfFormat.TURTLE,
        prefixes={"e": "http://example.org/e/", "r": "http://example.org/r/"},
    )
    rows: list[Row] = _Printed()
    goal = 300_000
    for name, path, fmt in (
        ("N-Triples", nt, ox.RdfFormat.N_TRIPLES),
        ("Turtle", ttl, ox.RdfFormat.TURTLE),
        ("Turtle grouped by subject", grouped, ox.RdfFormat.TURTLE),
    ):
        n = args.statements
        floor_cpu, floor_wall, _ = _best(
            args.repeats, lambda p=path, f=fmt: sum(1 for _ in ox.parse(path=str(p), format=f, lenient=True))
        )
        fast_cpu, fast_wall, kg = _best(args.repeats, lambda p=path: rdf.load(p))
        assert kg.metadata["counts"]["statements"] == n
        del kg
        plain_n = n if name == "N-Triples" else min(n, args.rdflib_statements)
        plain_path = path
        if plain_n < n:  # rdflib's Turtle parser is slow: every k-th statement, the same mix of statements
            plain_path = folder / "graph_part.ttl"
            step = n // plain_n
            every = ox.parse(path=str(nt), format=ox.RdfFormat.N_TRIPLES)
            part = (q.triple for i, q in enumerate(every) if i % step == 0)
            ox.serialize(part, output=str(plain_path), format=ox.RdfFormat.TURTLE)
            plain_n = len(range(0, n, step))
        plain_cpu, plain_wall, _ = _best(1, lambda p=plain_path: rdf.load(p, parser="rdflib"))
        fast = n / fast_cpu
        rows.append(
            (
                f"load {name}, {n:,} statements",
                f"{n / floor_cpu:,.0f}/CPU-s (pyoxigraph parse only; {floor_wall:.2f} s wall)",
                f"{plain_n / plain_cpu:,.0f}/CPU-s (parser='rdflib'"
                + (f", {plain_n:,} statements" if plain_n < n else "")
                + f"; {plain_wall:.2f} s wall)",
                f"**{fast:,.0f}/CPU-s** ({fast_cpu:.2f} CPU-s, {fast_wall:.2f} s wall)",
                f">= {goal:,}/CPU-s: {'met' if fast >= goal else f'missed by {goal / fast:.2f}x'}; "
                f"{fast / (n / floor_cpu):.2f} of floor, {fast / (plain_n / plain_cpu):.1f}x anchor",
            )
        )
    return rows


# ------------------------------------------------------------------------------------------------------- Neo4j
def admin_import(kg: Any, vectors: Any, folder: Path) -> tuple[float, float, float]:
    """``neo4j-admin database import full`` (from the Maven project's own jars) of the graph's nodes with their
    vectors and its relationships into an empty database: (import seconds as the tool reports them, wall seconds
    of the whole command, CPU seconds of the command)."""
    import re
    import resource
    import subprocess

    from kgemb.connectors.neo4j_dev import MAVEN_PROJECT, java_executable

    (folder / "home" / "conf").mkdir(parents=True)
    (folder / "home" / "conf" / "neo4j.conf").write_text("")
    with open(folder / "nodes.csv", "w", encoding="utf-8") as f:
        f.write("id:ID,embedding:float[]\n")
        for e, v in zip(kg.entities, vectors.tolist(), strict=True):
            f.write(f'"{e.key}",' + ";".join(f"{x:.7g}" for x in v) + "\n")
    with open(folder / "rels.csv", "w", encoding="utf-8") as f:
        f.write(":START_ID,:END_ID,:TYPE\n")
        for h, r, t in kg.all_triples().tolist():
            f.write(f'"{kg.entities[h].key}","{kg.entities[t].key}",{kg.relations[r]}\n')
    env = {**os.environ, "NEO4J_HOME": str(folder / "home"), "NEO4J_CONF": str(folder / "home" / "conf")}
    command = [
        java_executable(),
        "-cp",
        str(MAVEN_PROJECT / "target" / "lib" / "*"),
        "org.neo4j.cli.AdminTool",
        "database",
        "import",
        "full",
        "neo4j",
        f"--nodes=Synset={folder / 'nodes.csv'}",
        f"--relationships={folder / 'rels.csv'}",
        "--threads=2",
        f"--report-file={folder / 'import.report'}",
    ]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    wall = time.perf_counter()
    out = subprocess.run(command, env=env, capture_output=True, text=True, check=True).stdout
    wall = time.perf_counter() - wall
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    m = re.search(r"IMPORT DONE in (?:(\d+)m )?(\d+)s (\d+)ms", out)
    seconds = (int(m.group(1) or 0) * 60 + int(m.group(2)) + int(m.group(3)) / 1000) if m else float("nan")
    return seconds, wall, cpu


def neo4j_rows(args: argparse.Namespace) -> list[Row]:
    import numpy as np
    import torch
    from kgemb.connectors import neo4j as kn
    from kgemb.connectors.neo4j_dev import DevServer

    from kgemb.model import TrainedModel, build_model

    bench = _module("neo4j_bench")
    server = DevServer(data_dir=Path(tempfile.mkdtemp(prefix="kgemb-neo4j-bench-")) / "data", heap="3g")
    server.start()
    cpu = bench.CpuClock(server._proc.pid if server._proc is not None else None)
    rows: list[Row] = _Printed()
    try:
        driver = kn.connect(server.uri)
        nodes, rels, _ = bench.load_wn18rr(driver, args.data)

        def timed(work: Any) -> tuple[float, float, Any]:
            runs = []
            for _ in range(args.repeats):
                c, w = cpu(), time.perf_counter()
                result = work()
                runs.append((cpu() - c, time.perf_counter() - w, result))
            return min(runs, key=lambda r: r[0])

        # pull
        def timed_split(work: Any) -> tuple[float, float, float, Any]:
            """(CPU seconds client + server, of which client, wall seconds, result) of the run with the least CPU."""
            runs = []
            for _ in range(args.repeats):
                c, own, w = cpu(), time.process_time(), time.perf_counter()
                result = work()
                runs.append((cpu() - c, time.process_time() - own, time.perf_counter() - w, result))
            return min(runs, key=lambda r: r[0])

        def stream() -> int:
            with driver.session(fetch_size=10_000) as session:
                return sum(
                    1 for _ in session.run("MATCH (a:Synset)-[r]->(b:Synset) RETURN id(a), type(r), id(b)")
                )

        def packed() -> int:
            with driver.session(fetch_size=10_000) as session:
                blocks = session.run("CALL kgemb.export.relationships() YIELD data RETURN data").value()
            return len(np.frombuffer(b"".join(blocks), dtype=pull_record))

        from kgemb.connectors._neo4j_pull import _RECORD as pull_record

        count_cpu, count_wall, _ = timed(
            lambda: driver.execute_query("MATCH (a:Synset)-[r]->(b:Synset) RETURN count(*)").records
        )
        stream_cpu, stream_wall, n_stream = timed(stream)
        blocks_cpu, blocks_client, blocks_wall, n_packed = timed_split(packed)
        assert n_stream == n_packed == rels
        floor = f"{rels / count_cpu:,.0f}/CPU-s (server counts the matches; {count_wall:.2f} s wall)"
        anchor = f"{rels / stream_cpu:,.0f}/CPU-s (driver streams (id, type, id) rows; {rels / stream_wall:,.0f}/s wall)"
        goal = 100_000
        rows.append(
            (
                "kgemb.export.relationships alone: the packed blocks of the pull below, no nodes or texts",
                floor,
                anchor,
                f"**{rels / blocks_cpu:,.0f}/CPU-s** ({blocks_client:.2f} client + {blocks_cpu - blocks_client:.2f}"
                f" server CPU-s), {rels / blocks_wall:,.0f}/s wall",
                f"{(rels / blocks_cpu) / (rels / stream_cpu):.1f}x the bare stream per CPU-s",
            )
        )
        pulled = {}
        for form in ("cypher", "procedure"):
            pull_cpu, pull_client, pull_wall, kg = timed_split(
                lambda form=form: kn.pull(driver, key="id", relationship_form=form, progress=False)
            )
            pulled[form] = kg
            n_rel = len(kg.all_triples())
            assert kg.num_entities == nodes and n_rel == rels
            wall_rate = n_rel / pull_wall
            rows.append(
                (
                    f"pull WN18RR ({n_rel:,} rels, {nodes:,} nodes, texts), relationships as "
                    + (
                        "lists through Cypher"
                        if form == "cypher"
                        else "packed blocks (kgemb.export.relationships)"
                    ),
                    floor,
                    anchor,
                    f"**{n_rel / pull_cpu:,.0f}/CPU-s** ({pull_client:.2f} client + {pull_cpu - pull_client:.2f} server"
                    f" CPU-s: {n_rel / pull_client:,.0f} per client CPU-s), {wall_rate:,.0f}/s wall",
                    f">= {goal:,}/s: {'met' if wall_rate >= goal else f'missed by {goal / wall_rate:.2f}x'} (wall), "
                    f"{(n_rel / pull_cpu) / goal:.2f}x the goal per CPU-s; "
                    f"{(n_rel / pull_cpu) / (rels / stream_cpu):.2f} of the bare stream per CPU-s",
                )
            )
        a, b = pulled["cypher"], pulled["procedure"]
        assert [e.to_json() for e in a.entities] == [e.to_json() for e in b.entities]
        assert a.relations == b.relations and np.array_equal(a.all_triples(), b.all_triples())
        if args.no_push:
            return rows

        # push
        torch.manual_seed(0)
        model = TrainedModel(
            kg,
            build_model(
                kg.to_triples_factory(), mode="structure", interaction="rotate", dim=512, features=None
            ),
            {"mode": "structure", "interaction": "rotate", "dim": 512},
        )
        if not args.no_admin:
            with tempfile.TemporaryDirectory() as folder:
                tool, wall, tool_cpu = admin_import(kg, model.entity_vectors(), Path(folder))
            rows.append(
                (
                    f"neo4j-admin database import full: {nodes:,} nodes with 512-d vectors + {n_rel:,} rels "
                    "(offline, into an empty database: a bound)",
                    f"{nodes / tool:,.0f} vectors/s and {n_rel / tool:,.0f} rels/s wall (import phase, {tool:.1f} s)",
                    "",
                    "",
                    f"whole command {wall:.1f} s wall, {tool_cpu:.1f} CPU-s with JVM start: "
                    f"{nodes / tool_cpu:,.0f} vectors per CPU-s",
                )
            )

        from kgemb.reasoning import LinkPredictor

        calibration = LinkPredictor(model).calibration  # fitted once, not in every push
        vector = np.random.default_rng(0).standard_normal(512).astype(np.float32).tolist()
        c, w = cpu(), time.perf_counter()
        with driver.session() as session:  # CALL { } IN TRANSACTIONS needs an implicit transaction
            session.run(
                "MATCH (s:Synset) CALL (s) { CALL db.create.setNodeVectorProperty(s, 'floor', $v) } "
                "IN TRANSACTIONS OF 1000 ROWS",
                v=vector,
            ).consume()
        floor_cpu, floor_wall = cpu() - c, time.perf_counter() - w
        floor = nodes / floor_cpu
        goal = 20_000
        for form in ("cypher", "procedure"):
            for workers in (1, 2, 4):
                marks: list[float] = []

                def mark(done: int, total: int, marks: list[float] = marks) -> None:
                    if done in (args.batch_size, total):
                        marks.append(cpu())

                report = kn.push(
                    model,
                    driver,
                    name=f"bench_{form}_{workers}",
                    vector_property=f"v_{form}_{workers}",
                    batch_size=args.batch_size,
                    workers=workers,
                    progress=False,
                    vector_index=False,
                    vector_form=form,
                    calibration=calibration,
                    on_batch=mark,
                )
                scale = report.nodes / max(report.nodes - args.batch_size, 1)
                push_cpu = (marks[-1] - marks[0]) * scale
                rate_cpu = report.nodes / push_cpu
                rows.append(
                    (
                        f"push {report.nodes:,} x {report.dim}-d, {form}, {workers} session(s)",
                        f"{floor:,.0f}/CPU-s (server writes one vector on every node; {nodes / floor_wall:,.0f}/s wall)",
                        "",
                        f"**{rate_cpu:,.0f}/CPU-s**, {report.vectors_per_second:,.0f}/s wall",
                        f">= {goal:,}/s: "
                        + (
                            "met"
                            if report.vectors_per_second >= goal
                            else f"missed by {goal / report.vectors_per_second:.2f}x"
                        )
                        + f" (wall); {rate_cpu / floor:.2f} of floor per CPU-s",
                    )
                )
    finally:
        server.stop()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--data", type=Path, default=REPO.parent / "shared" / "data", help="shared data folder"
    )
    parser.add_argument(
        "--statements", type=int, default=1_000_000, help="statements of the generated RDF graph"
    )
    parser.add_argument(
        "--rdflib-statements",
        type=int,
        default=200_000,
        help="statements rdflib's Turtle parser reads (slow)",
    )
    parser.add_argument("--batch-size", type=int, default=1000, help="nodes per push transaction")
    parser.add_argument("--repeats", type=int, default=2, help="runs per measurement (the least CPU counts)")
    parser.add_argument("--no-rdf", action="store_true")
    parser.add_argument("--no-neo4j", action="store_true")
    parser.add_argument("--no-admin", action="store_true", help="skip the neo4j-admin import measurement")
    parser.add_argument("--no-push", action="store_true", help="Neo4j: the pull rows only")
    parser.add_argument("--out", type=Path, help="also write the Markdown report here")
    args = parser.parse_args()
    import neo4j

    load_before = os.getloadavg()[0]
    rows: list[Row] = []
    with tempfile.TemporaryDirectory() as folder:
        if not args.no_rdf:
            rows += rdf_rows(args, Path(folder))
    if not args.no_neo4j:
        rows += neo4j_rows(args)
    load_after = os.getloadavg()[0]
    try:
        import neo4j._rust

        rust = "with neo4j-rust-ext"
    except ImportError:
        rust = "pure-Python packstream"
    import pyoxigraph

    lines = [
        "# Connector throughput (issue 18)",
        "",
        f"pyoxigraph {pyoxigraph.__version__}; Neo4j 5.26 dev server, Python driver {neo4j.__version__} ({rust}); "
        f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}; 1-minute load average "
        f"{load_before:.1f} before and {load_after:.1f} after (a shared machine: wall-clock rates drop with the "
        "load, per-CPU-second rates much less). Neo4j CPU-seconds are client + server.",
        "",
        "| path | floor | anchor | kgemb | goal, ratios |",
        "|---|---|---|---|---|",
        *(f"| {' | '.join(r)} |" for r in rows),
        "",
        "neo4j-admin runs from the Maven project's jars (`org.neo4j.cli.AdminTool`, neo4j-import-tool 5.26) on CSV "
        "files written from the pulled graph and the same vectors.",
        "",
        "Reproduce: `nice .venv/bin/python benchmarks/connectors.py --out benchmarks/results/connectors.md`",
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
