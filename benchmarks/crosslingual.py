"""Cross-lingual search: language bias of ``TextIndex`` and the alignment a graph's own parallel labels teach.

    nice python benchmarks/crosslingual.py [--epochs 10] [--out benchmarks/results/crosslingual.md]
    nice python benchmarks/crosslingual.py --bias-only    # part 2 with the raw encoder only (minutes)

Data: CLDR display names (``babel``) and ISO names with translations (``pycountry``), see
``benchmarks/multilingual_names.py``; for each of zh, ja, de, fr, es the candidates are all concepts that have a
name in that language (2,109 to 5,944). Concepts are split in half by a hash of their key: the *training* half's
labels are the parallel pairs the adapter learns from (and the labels some entities carry in the bias check); the
*held-out* half is only queried. Encoder: the default (USE multilingual v3), frozen.

1. Alignment: P@1 of a held-out concept's name in x among the English names of all candidates (x->en), and the
   other way (en->x), for the raw encoder and the adapter trained on the training half's pairs (all 5 languages).
2. No language bias: graph "mixed" = every candidate with its English label, the training half also with its x
   label; graph "no-x" = English labels only. Query: the x name of a held-out (so English-only) concept; P@1 via
   ``TextIndex`` (the search code), and via the previous rule (best view of any language, thresholds off). About
   5% of these names are also, verbatim, the x label of another candidate (CLDR and ISO give one Chinese name to a
   language and a script, say): such a query names both, so the "unambiguous" column leaves them out.
"""

from __future__ import annotations

import argparse
import hashlib
import resource
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
from multilingual_names import LANGUAGES, concepts

TARGETS = LANGUAGES[1:]


def half(key: str) -> int:
    """0 = training half, 1 = held-out half (stable across runs and machines)."""
    return int(hashlib.sha256(key.encode()).hexdigest(), 16) % 2


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def graph(names: dict[str, dict[str, str]], keys: list[str], foreign: str | None, labelled: set[str]):
    """A graph of ``keys`` with English labels; ``labelled`` keys also carry their ``foreign`` label."""
    from kgemb.graph import GraphBuilder

    builder = GraphBuilder()
    for key in keys:
        builder.add_entity(key)
        builder.add_label(key, names[key]["en"], "en")
        if foreign and key in labelled:
            builder.add_label(key, names[key][foreign], foreign)
    return builder.build()


def _hits(index, queries: list[str], targets: list[int]) -> np.ndarray:
    """1.0 where the top answer is the target, per query."""
    hits = index.search_many(queries, k=1)
    return np.array([bool(h) and h[0][0] == t for h, t in zip(hits, targets, strict=True)], dtype=float)


def main(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--out", type=Path)
    parser.add_argument("--bias-only", action="store_true", help="part 2 with the raw encoder only")
    args = parser.parse_args(argv)

    from kgemb.reasoning.search import TextIndex

    import kgemb
    from kgemb.encoders.align import adapter_for_graph

    torch.manual_seed(0)
    start, cpu0 = time.perf_counter(), cpu_seconds()
    names = concepts()
    encoder = kgemb.load_encoder("default")
    train_keys = [k for k in sorted(names) if half(k) == 0]
    lines = [
        "# Cross-lingual search (benchmarks/crosslingual.py)",
        "",
        f"Data: {len(names):,} concepts from babel (CLDR) and pycountry; encoder {encoder.fingerprint}.",
    ]

    # the adapter: every training-half concept with all its names, as the graph's own parallel labels
    from kgemb.graph import GraphBuilder

    builder = GraphBuilder()
    for key in train_keys:
        for lang, name in names[key].items():
            builder.add_label(key, name, lang)
    t0, c0 = time.perf_counter(), cpu_seconds()
    adapter = None if args.bias_only else adapter_for_graph(builder.build(), encoder, epochs=args.epochs)
    if adapter is not None:
        lines.append(
            f"Adapter: {adapter.info['pairs']:,} parallel labels of {len(train_keys):,} training concepts, "
            f"{args.epochs} epochs, {time.perf_counter() - t0:.0f} s wall / {cpu_seconds() - c0:.0f} CPU-s."
        )
    lines += (
        []
        if adapter is None
        else [
            "",
            "## 1. Alignment on held-out concepts (P@1)",
            "",
            "| lang | candidates | queries | x→en raw | x→en adapter | gain | en→x raw | en→x adapter | gain |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
    )
    bias_rows = []
    for x in TARGETS:
        keys = sorted(k for k in names if x in names[k])
        held = [i for i, k in enumerate(keys) if half(k) == 1 and names[k][x] != names[k]["en"]]
        en = encoder.encode([names[k]["en"] for k in keys])
        fx = encoder.encode([names[k][x] for k in keys])
        row = [x, f"{len(keys):,}", f"{len(held):,}"]
        for a, b in ((fx, en), (en, fx)) if adapter is not None else ():  # x->en, en->x
            raw = float(np.mean((a[held] @ b.T).argmax(1) == held))
            aa, bb = adapter.apply(a[held]), adapter.apply(b)
            adapted = float(np.mean((aa @ bb.T).argmax(1) == held))
            row += [f"{raw:.3f}", f"{adapted:.3f}", f"{100 * (adapted - raw):+.1f}"]
        if adapter is not None:
            lines.append("| " + " | ".join(row) + " |")

        # 2. language bias, through the search code
        labelled = {k for k in keys if half(k) == 0}
        queries = [names[keys[i]][x] for i in held]
        mixed, plain = graph(names, keys, x, labelled), graph(names, keys, None, set())
        taken = {names[k][x] for k in labelled}
        clear = [n for n, q in enumerate(queries) if q not in taken]
        out = [x, f"{len(queries):,}", f"{len(clear):,}"]
        for adapt in (None, adapter) if adapter is not None else (None,):
            idx_mixed = TextIndex.from_graph(mixed, encoder, adapter=adapt)
            idx_plain = TextIndex.from_graph(plain, encoder, adapter=adapt)
            none, now = (_hits(index, queries, held) for index in (idx_plain, idx_mixed))
            idx_mixed.thresholds[:] = -1.0  # the previous rule: any view of any language counts
            before = _hits(idx_mixed, queries, held)
            for subset in (slice(None), clear):
                a, b, c = (float(np.mean(v[subset])) for v in (none, now, before))
                out += [f"{a:.3f}", f"{b:.3f}", f"{100 * (b - a):+.1f}", f"{c:.3f}"]
        bias_rows.append("| " + " | ".join(out) + " |")
    lines += [
        "",
        "## 2. No language bias: English-only entities queried by their x name (P@1 via TextIndex)",
        "",
        "Half the candidates also carry their x label (the training half); queries are the other half's x names.",
        "",
        "Each group of four: P@1 in the no-x graph, in the mixed graph, the difference in points, and in the mixed "
        "graph with the previous rule (best text of any language).",
        "",
        "| lang | queries | unambiguous | "
        + " | ".join(
            f"{enc}, {sub}: no-x | mixed | Δ | before"
            for enc in (("raw",) if adapter is None else ("raw", "adapter"))
            for sub in ("all", "unambiguous")
        )
        + " |",
        "|---|---|---|" + "---|---|---|---|" * (2 if adapter is None else 4),
        *bias_rows,
        "",
        f"Total {time.perf_counter() - start:.0f} s wall, {cpu_seconds() - cpu0:.0f} CPU-s (shared 2-core machine).",
    ]
    report = "\n".join(lines) + "\n"
    print(report)
    if args.out:
        from kgemb.files import write_atomic

        write_atomic(args.out, report.encode("utf-8"))
    return report


if __name__ == "__main__":
    main()
