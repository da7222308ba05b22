"""Streaming N-Triples speed and memory: generate an N-Triples file, load it with ``kgemb.connectors.rdf.load``
in a fresh process per size, and print a Markdown table (triples per second, peak memory).

    nice python benchmarks/rdf_stream.py                      # 2,000,000 triples, 100,000 entities
    python benchmarks/rdf_stream.py --triples 200000 --out report.md

Wall-clock time counts other work on a shared machine too; CPU time is the reader's own (one thread).
Each size is loaded in its own process so that peak RSS (``ru_maxrss``) belongs to that load alone; "RSS over
baseline" subtracts the peak of a process that only imports kgemb and rdflib. The half-size run uses the same
number of entities, to show how memory grows with the input (the triple arrays) against the entities.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
from pathlib import Path

LOADER = r"""
import json, resource, sys, time
from kgemb.connectors import rdf
if sys.argv[1] != "-":
    start, cpu = time.perf_counter(), time.process_time()
    kg = rdf.load(sys.argv[1])
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    info = {"seconds": seconds, "cpu": cpu, "statements": kg.metadata["counts"]["statements"], "entities": kg.num_entities,
            "relations": kg.num_relations, "relation_triples": int(len(kg.all_triples()))}
else:
    info = {}
info["max_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps(info))
"""

RDFS_LABEL = "<http://www.w3.org/2000/01/rdf-schema#label>"
RDF_TYPE = "<http://www.w3.org/1999/02/22-rdf-syntax-ns#type>"
SKOS_DEF = "<http://www.w3.org/2004/02/skos/core#definition>"


def generate(path: Path, triples: int, entities: int, relations: int = 20, seed: int = 0) -> None:
    """An N-Triples file of exactly ``triples`` statements: per entity an English and a German label, a type,
    a definition for one in ten; the rest are relation triples between random entities."""
    rng = random.Random(seed)
    ent = [f"<http://example.org/e/{i}>" for i in range(entities)]
    rel = [f"<http://example.org/r/rel{i}>" for i in range(relations)]
    written = 0
    with open(path, "w", encoding="utf-8") as f:
        for i, e in enumerate(ent):
            lines = [
                f'{e} {RDFS_LABEL} "entity {i}"@en .\n',
                f'{e} {RDFS_LABEL} "Entität {i} \\"{i % 7}\\""@de .\n',
                f"{e} {RDF_TYPE} <http://example.org/class/C{i % 50}> .\n",
            ]
            if i % 10 == 0:
                lines.append(f'{e} {SKOS_DEF} "A generated entity number {i}, for the benchmark."@en .\n')
            lines = lines[: triples - written]
            f.writelines(lines)
            written += len(lines)
        batch: list[str] = []
        while written < triples:
            h, t = rng.randrange(entities), rng.randrange(entities)
            batch.append(f"{ent[h]} {rel[rng.randrange(relations)]} {ent[t]} .\n")
            written += 1
            if len(batch) == 100_000:
                f.writelines(batch)
                batch.clear()
        f.writelines(batch)


def run_loader(path: str) -> dict:
    out = subprocess.run([sys.executable, "-c", LOADER, path], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--triples", type=int, default=2_000_000)
    parser.add_argument("--entities", type=int, default=100_000)
    parser.add_argument("--out", type=Path, help="also write the Markdown report here")
    args = parser.parse_args(argv)

    baseline = run_loader("-")["max_rss_mb"]
    rows = []
    with tempfile.TemporaryDirectory(prefix="kgemb-rdf-bench-") as tmp:
        for size in (args.triples // 2, args.triples):
            path = Path(tmp) / f"bench-{size}.nt"
            generate(path, size, args.entities)
            result = run_loader(str(path))
            result["triples"] = size
            result["file_mb"] = path.stat().st_size / 2**20
            rows.append(result)
            path.unlink()
    lines = [
        f"Streaming N-Triples load (`kgemb.connectors.rdf.load`), {args.entities:,} entities, 20 relations; "
        f"Python {sys.version.split()[0]}, {os.cpu_count()} CPU cores.",
        "",
        "| statements | file (MB) | load, wall (s) | load, CPU (s) | statements/s (wall) | statements/s (CPU) "
        "| entities | relation triples | peak RSS (MB) | RSS over baseline (MB) |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['triples']:,} | {r['file_mb']:.0f} | {r['seconds']:.1f} | {r['cpu']:.1f} "
            f"| {r['triples'] / r['seconds']:,.0f} | {r['triples'] / r['cpu']:,.0f} "
            f"| {r['entities']:,} | {r['relation_triples']:,} | {r['max_rss_mb']:.0f} "
            f"| {r['max_rss_mb'] - baseline:.0f} |"
        )
    lines.append("")
    lines.append(f"Baseline (a process that only imports kgemb's RDF reader): {baseline:.0f} MB peak RSS.")
    report = "\n".join(lines) + "\n"
    print(report)
    if args.out:
        tmp_out = args.out.with_name(args.out.name + ".tmp")
        tmp_out.write_text(report, encoding="utf-8")
        os.replace(tmp_out, args.out)
    return report


if __name__ == "__main__":
    main()
