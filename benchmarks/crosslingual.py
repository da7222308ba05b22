"""Cross-lingual search: language bias of ``TextIndex`` and the alignment a graph's own parallel labels teach.

    nice python benchmarks/crosslingual.py [--epochs 10] [--ft-epochs 4] [--out benchmarks/results/crosslingual.md]
    nice python benchmarks/crosslingual.py --bias-only    # part 2 with the raw encoder only (minutes)
    nice python benchmarks/crosslingual.py --subset 4     # every 4th concept only, to iterate (not comparable)
    nice python benchmarks/crosslingual.py --ft-no-refresh   # fine-tuning's hard negatives mined once (control)

Data: CLDR display names (``babel``) and ISO names with translations (``pycountry``), see
``benchmarks/multilingual_names.py``; for each of zh, ja, de, fr, es the candidates are all concepts that have a
name in that language (2,109 to 5,944). Concepts are split in half by a hash of their key: the *training* half's
labels are the parallel pairs the adapter learns from (and the labels some entities carry in the bias check); the
*held-out* half is only queried. Encoder: the default (USE multilingual v3): frozen (raw, and under the adapter),
and fine-tuned on the same training pairs through its PyTorch port (``kgemb/encoders/finetune.py``).

1. Alignment: P@1 of a held-out concept's name in x among the English names of all candidates (x->en), and the
   other way (en->x), for the raw encoder, the adapter trained on the training half's pairs (all 5 languages), the
   fine-tuned encoder, and an adapter trained on the fine-tuned encoder's vectors (the two stacked). Forgetting:
   P@1 of WordNet (WN18RR) names among 2,000 definitions (English), and of the 100 hand-written medical and
   everyday translation pairs of ``tests/core/data/translation_pairs.tsv``; nothing of either is trained on.
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


def general_pairs(n: int = 2000) -> tuple[list[str], list[str]]:
    """WordNet names and their definitions (WN18RR's entity texts, the first ``n``): general English retrieval."""
    path = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "wn18rr" / "entity2text.tsv"
    rows = [line.split("\t", 1)[1].strip() for line in path.read_text(encoding="utf-8").splitlines()[:n]]
    names, definitions = zip(*(row.split(", ", 1) for row in rows if ", " in row), strict=True)
    return list(names), list(definitions)


def p_at_1(queries: np.ndarray, candidates: np.ndarray, targets: list[int] | np.ndarray) -> float:
    return float(np.mean((queries @ candidates.T).argmax(1) == np.asarray(targets)))


def main(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=10, help="adapter epochs")
    parser.add_argument(
        "--ft-epochs", type=int, default=4, help="encoder fine-tuning epochs (0: no fine-tuning)"
    )
    parser.add_argument("--ft-anchor", type=float, default=0.0, help="L2 pull towards the package's weights")
    parser.add_argument(
        "--ft-no-refresh", action="store_true", help="mine the hard negatives once, not before every epoch"
    )
    parser.add_argument(
        "--subset", type=int, default=1, help="keep every n-th concept (to iterate; not comparable)"
    )
    parser.add_argument("--out", type=Path)
    parser.add_argument("--bias-only", action="store_true", help="part 2 with the raw encoder only")
    args = parser.parse_args(argv)

    from kgemb.reasoning.search import TextIndex

    import kgemb
    from kgemb.encoders.align import adapter_for_graph
    from kgemb.encoders.finetune import finetune_for_graph

    torch.manual_seed(0)
    start, cpu0 = time.perf_counter(), cpu_seconds()
    names = concepts()
    if args.subset > 1:
        names = {
            k: v
            for k, v in names.items()
            if int(hashlib.sha256(f"s{k}".encode()).hexdigest(), 16) % args.subset == 0
        }
    encoder = kgemb.load_encoder("default")
    train_keys = [k for k in sorted(names) if half(k) == 0]
    lines = [
        "# Cross-lingual search (benchmarks/crosslingual.py)",
        "",
        f"Data: {len(names):,} concepts from babel (CLDR) and pycountry"
        + (
            f" (**subset**: every {args.subset}th concept, not comparable with full runs)"
            if args.subset > 1
            else ""
        )
        + f"; encoder {encoder.fingerprint}.",
    ]

    # the graph's own parallel labels: every training-half concept with all its names
    from kgemb.graph import GraphBuilder

    builder = GraphBuilder()
    for key in train_keys:
        for lang, name in names[key].items():
            builder.add_label(key, name, lang)
    train_kg = builder.build()
    variants: dict[str, tuple] = {"raw": (encoder, None)}  # name -> (encoder, adapter)
    if not args.bias_only:
        t0, c0 = time.perf_counter(), cpu_seconds()
        adapter = adapter_for_graph(train_kg, encoder, epochs=args.epochs)
        lines.append(
            f"Adapter: {adapter.info['pairs']:,} parallel labels of {len(train_keys):,} training concepts, "
            f"{args.epochs} epochs, {time.perf_counter() - t0:.0f} s wall / {cpu_seconds() - c0:.0f} CPU-s."
        )
        variants["adapter"] = (encoder, adapter)
        if args.ft_epochs > 0:
            t0, c0 = time.perf_counter(), cpu_seconds()
            tuned = finetune_for_graph(
                train_kg,
                epochs=args.ft_epochs,
                anchor=args.ft_anchor,
                refresh_negatives=not args.ft_no_refresh,
                seed=0,
            )
            lines.append(
                f"Fine-tuned encoder: the same pairs, {args.ft_epochs} epochs, all weights (settings "
                f"{ {k: tuned.info[k] for k in ('lr', 'embedding_lr', 'batch_size', 'hard_negatives', 'refresh_negatives', 'anchor')} }, learned "
                f"τ {tuned.info['temperature']}), {time.perf_counter() - t0:.0f} s wall / {cpu_seconds() - c0:.0f} CPU-s."
            )
            import tempfile

            with tempfile.TemporaryDirectory() as folder:
                size = sum((Path(folder) / name).stat().st_size for name in tuned.save(folder))
            lines.append(f"Saved fine-tuned encoder (changed token rows + layers): {size / 1e6:.1f} MB.")
            variants["fine-tuned"] = (tuned, None)
            t0, c0 = time.perf_counter(), cpu_seconds()
            stacked = adapter_for_graph(train_kg, tuned, epochs=args.epochs)
            lines.append(
                f"Adapter on the fine-tuned encoder: {args.epochs} epochs, {time.perf_counter() - t0:.0f} s wall / "
                f"{cpu_seconds() - c0:.0f} CPU-s."
            )
            variants["fine-tuned + adapter"] = (tuned, stacked)

    def vectors(variant: str, texts: list[str]) -> np.ndarray:
        enc, adapt = variants[variant]
        out = enc.encode(texts)
        return out if adapt is None else adapt.apply(out)

    others = [v for v in variants if v != "raw"]
    if others:
        lines += [
            "",
            "## 1. Alignment on held-out concepts (P@1)",
            "",
            "Gains in points over the raw encoder in brackets.",
            "",
            "| lang | candidates | queries | x→en raw | "
            + " | ".join(f"x→en {v}" for v in others)
            + " | en→x raw | "
            + " | ".join(f"en→x {v}" for v in others)
            + " |",
            "|---|---|---|" + "---|" * (2 * len(variants)),
        ]
    bias_rows = []
    for x in TARGETS:
        keys = sorted(k for k in names if x in names[k])
        held = [i for i, k in enumerate(keys) if half(k) == 1 and names[k][x] != names[k]["en"]]
        if others:
            row = [x, f"{len(keys):,}", f"{len(held):,}"]
            cells: dict[str, list[str]] = {"x→en": [], "en→x": []}
            for variant in variants:
                en = vectors(variant, [names[k]["en"] for k in keys])
                fx = vectors(variant, [names[k][x] for k in keys])
                for direction, (a, b) in (("x→en", (fx, en)), ("en→x", (en, fx))):
                    cells[direction].append(p_at_1(a[held], b, held))
            for direction in cells:
                raw = cells[direction][0]
                row += [f"{raw:.3f}"] + [f"{v:.3f} ({100 * (v - raw):+.1f})" for v in cells[direction][1:]]
            lines.append("| " + " | ".join(row) + " |")

        # 2. language bias, through the search code
        labelled = {k for k in keys if half(k) == 0}
        queries = [names[keys[i]][x] for i in held]
        mixed, plain = graph(names, keys, x, labelled), graph(names, keys, None, set())
        taken = {names[k][x] for k in labelled}
        clear = [n for n, q in enumerate(queries) if q not in taken]
        for variant, (enc, adapt) in variants.items():
            out = [x, variant, f"{len(queries):,}", f"{len(clear):,}"]
            idx_mixed = TextIndex.from_graph(mixed, enc, adapter=adapt)
            idx_plain = TextIndex.from_graph(plain, enc, adapter=adapt)
            none, now = (_hits(index, queries, held) for index in (idx_plain, idx_mixed))
            idx_mixed.thresholds[:] = -1.0  # the previous rule: any view of any language counts
            before = _hits(idx_mixed, queries, held)
            for subset in (slice(None), clear):
                a, b, c = (float(np.mean(v[subset])) for v in (none, now, before))
                out += [f"{a:.3f}", f"{b:.3f}", f"{100 * (b - a):+.1f}", f"{c:.3f}"]
            bias_rows.append("| " + " | ".join(out) + " |")
    if others:
        general, definitions = general_pairs()
        cells = [
            p_at_1(vectors(v, general), vectors(v, definitions), np.arange(len(general))) for v in variants
        ]
        from kgemb.encoders.quality import read_pairs

        pairs = read_pairs(
            Path(__file__).resolve().parents[1] / "tests" / "core" / "data" / "translation_pairs.tsv"
        )
        hand = []
        for v in variants:
            hits = []
            for lang in sorted({p[0] for p in pairs}):
                rows = [p for p in pairs if p[0] == lang]
                en, fx = vectors(v, [r[2] for r in rows]), vectors(v, [r[3] for r in rows])
                hits += [p_at_1(fx, en, np.arange(len(rows))), p_at_1(en, fx, np.arange(len(rows)))]
            hand.append(float(np.mean(hits)))
        lines += [
            "",
            "Forgetting checks, texts nothing was trained on: general English (WN18RR: "
            f"{len(general):,} WordNet names → their definitions, P@1): "
            + ", ".join(f"{v} {c:.3f}" for v, c in zip(variants, cells, strict=True))
            + f"; hand-written medical and everyday terms ({len(pairs)} pairs, zh/de/fr/es ↔ en among 25, "
            "both directions, P@1): "
            + ", ".join(f"{v} {c:.3f}" for v, c in zip(variants, hand, strict=True))
            + ".",
        ]
    lines += [
        "",
        "## 2. No language bias: English-only entities queried by their x name (P@1 via TextIndex)",
        "",
        "Half the candidates also carry their x label (the training half); queries are the other half's x names.",
        "",
        "Each group of four: P@1 in the no-x graph, in the mixed graph, the difference in points, and in the mixed "
        "graph with the previous rule (best text of any language). *Unambiguous*: without the queries that are "
        "verbatim another candidate's x label.",
        "",
        "| lang | encoder | queries | unambiguous | all: no-x | mixed | Δ | before | unambiguous: no-x | mixed | Δ | before |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
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
