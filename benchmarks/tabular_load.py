"""Triple-table load time: WN18RR with its entity texts from the shared data (goal < 5 s), and PyKEEN's UMLS.
Prints a Markdown table.

    python benchmarks/tabular_load.py [--data ../shared/data] [--repeat 3] [--out report.md]

Each dataset is loaded ``--repeat`` times in one process; the first load also pays the lazy imports (pykeen).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)

    start = time.perf_counter()
    from kgemb.connectors import tabular

    import_s = time.perf_counter() - start
    os.environ.setdefault("KGEMB_SHARED_DATA", str(args.data))
    rows = []
    for name, source in (
        ("WN18RR + entity2text", args.data / "wn18rr"),
        ("pykeen:UMLS + texts", "pykeen:UMLS"),
    ):
        times = []
        for _ in range(args.repeat):
            start = time.perf_counter()
            kg = tabular.load(source)
            times.append(time.perf_counter() - start)
        counts = " / ".join(f"{len(kg.triples(s)):,}" for s in ("train", "valid", "test"))
        rows.append(
            f"| {name} | {kg.num_entities:,} | {kg.num_relations} | {counts} | {kg.no_text_count} "
            f"| {times[0]:.2f} | {min(times):.2f} |"
        )
    lines = [
        f"Triple-table loads (`kgemb.connectors.tabular.load`), {args.repeat} loads each (the first also pays lazy imports such as pykeen); "
        f"Python {sys.version.split()[0]}, {os.cpu_count()} CPU cores; importing the reader took {import_s:.1f} s.",
        "",
        "| data | entities | relations | train / valid / test | without text | first load (s) | best (s) |",
        "|---|---:|---:|---|---:|---:|---:|",
        *rows,
    ]
    report = "\n".join(lines) + "\n"
    print(report)
    if args.out:
        tmp = args.out.with_name(args.out.name + ".tmp")
        tmp.write_text(report, encoding="utf-8")
        os.replace(tmp, args.out)
    return report


if __name__ == "__main__":
    main()
