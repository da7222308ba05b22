"""Phenotype-driven diagnosis on simulated patients: kgemb's evidence ranking against pyhpo's similarity methods and
the exact-match count, on the same patients, in one run.

    nice -n 10 python benchmarks/diagnosis.py                        # 1,000 Orphanet diseases, 3 seeds x 100
    python benchmarks/diagnosis.py --diseases 1000 --patients 50 --seeds 0 --out report.md

Data: pyhpo's bundled HPO (``hp.obo``) and Orphanet annotations (``phenotype.hpoa``). Candidates: ``--diseases``
Orphanet diseases with at least 6 annotations (a seeded sample), every one a candidate for every patient. The
kgemb graph: HPO terms and the candidate diseases, ``has_phenotype`` and ``is_a`` links. A patient of disease D:
5 of D's annotations; ``vaguer`` of them replaced by an ancestor ``levels`` levels up (imprecision); ``noise``
terms added that D's propagated annotations do not contain. Settings: *easy* (1 term one level vaguer, 1 noise),
*hard* (2 terms two levels vaguer, 2 noise), *specific* (2 terms replaced by a child term, more specific than the
annotation, 1 noise). Rankers:

* kgemb: :mod:`kgemb.reasoning.evidence` on the graph (hierarchy found automatically, no model signal: the
  ontology part that ``LinkPredictor.rank`` adds the model to);
* exact-match count: how many patient terms are annotations of the disease, ties at mid-rank;
* pyhpo Resnik with funSimAvg and BMA, and Lin with funSimAvg (``HPOSet.similarity``, information content
  ``orpha``): computed here as matrices from pyhpo's own information content and ancestors, and checked equal to
  ``HPOSet.similarity`` for every candidate of the first ``--check`` patients (pyhpo itself takes ~3 s per patient
  over 1,000 diseases).

Ranks count ties at mid-rank for every ranker. Latency: kgemb's time per patient (scores, the top 10 in order,
probabilities, and the top 10's contributions).
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

# name -> (imprecise terms, levels up (negative: down to a child), noise terms)
SETTINGS = {"easy": (1, 1, 1), "hard": (2, 2, 2), "specific": (2, -1, 1)}
ROOT = "HP:0000001"


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


@dataclass
class Data:
    terms: list[str]  # HPO ids, index = term id
    parents: list[list[int]]
    diseases: list[str]  # Orphanet names of the candidates
    annotations: list[np.ndarray]  # per disease: term ids
    ic: np.ndarray  # pyhpo's orpha information content per term
    ontology: object  # pyhpo.Ontology


def load(n_diseases: int, seed: int) -> Data:
    from pyhpo import Ontology

    ont = Ontology()
    terms = sorted(str(t.id) for t in ont)
    index = {t: i for i, t in enumerate(terms)}
    parents = [[] for _ in terms]
    ic = np.zeros(len(terms))
    for term in ont:
        i = index[str(term.id)]
        parents[i] = sorted(index[str(p.id)] for p in term.parents)
        ic[i] = term.information_content["orpha"]
    pool = sorted(
        (d for d in ont.orpha_diseases if len(d.hpo) >= 6), key=lambda d: int(d.id)
    )  # Orphanet disease objects
    rng = np.random.default_rng(seed)
    chosen = sorted(rng.choice(len(pool), size=min(n_diseases, len(pool)), replace=False).tolist())
    diseases, annotations = [], []
    for j in chosen:
        d = pool[j]
        ids = sorted(index[str(ont[h].id)] for h in d.hpo)
        diseases.append(f"ORPHA:{d.id} {d.name}")
        annotations.append(np.array(ids, dtype=np.int64))
    return Data(terms, parents, diseases, annotations, ic, ont)


def ancestors_table(parents: list[list[int]]) -> list[np.ndarray]:
    """anc(t) with t itself, for every term."""
    memo: dict[int, frozenset[int]] = {}
    sys.setrecursionlimit(10_000)

    def anc(t: int) -> frozenset[int]:
        if t not in memo:
            found = {t}
            for p in parents[t]:
                found |= anc(p)
            memo[t] = frozenset(found)
        return memo[t]

    return [np.array(sorted(anc(t)), dtype=np.int64) for t in range(len(parents))]


def simulate(
    data: Data, anc: list[np.ndarray], setting: str, n: int, seed: int
) -> list[tuple[int, list[int]]]:
    """(true disease index, patient term ids) for ``n`` patients; see the module docstring."""
    vaguer, levels, noise = SETTINGS[setting]
    rng = np.random.default_rng(1000 + seed)
    root = data.terms.index(ROOT)
    children: list[list[int]] = [[] for _ in data.parents]
    for c, ps in enumerate(data.parents):
        for p in ps:
            children[p].append(c)
    vocabulary = np.unique(np.concatenate(data.annotations))
    patients = []
    while len(patients) < n:
        d = int(rng.integers(len(data.diseases)))
        terms = rng.choice(data.annotations[d], size=5, replace=False).tolist()
        for k in rng.choice(5, size=vaguer, replace=False).tolist():
            t = terms[k]
            for _ in range(abs(levels)):
                steps = [p for p in data.parents[t] if p != root] if levels > 0 else children[t]
                if steps:
                    t = int(rng.choice(steps))
            terms[k] = t
        carried = set(np.concatenate([anc[a] for a in data.annotations[d]]).tolist())
        added = 0
        while added < noise:
            t = int(rng.choice(vocabulary))
            if t not in carried and t not in terms:
                terms.append(t)
                added += 1
        patients.append((d, terms))
    return patients


def simulate_on_graph(
    predictor, relation: int, n: int, seed: int = 0, *, size: int = 5, vaguer: int = 1, noise: int = 1
) -> list[tuple[int, list[int]]]:
    """Patients from any graph a :class:`~kgemb.reasoning.LinkPredictor` serves: ``(head id, evidence ids)`` with
    ``size`` of the head's ``relation`` links, ``vaguer`` of them replaced by a parent along the hierarchy, and
    ``noise`` terms its propagated annotations do not contain. Heads need at least ``size`` links."""
    index = predictor.evidence_index
    ann = index.annotations(relation, "head")
    heads = np.flatnonzero(ann.counts >= size)
    vocabulary = np.unique(index.triples[index.triples[:, 1] == relation, 2])
    rng = np.random.default_rng(seed)
    patients = []
    while heads.size and len(patients) < n:
        h = int(rng.choice(heads))
        own = predictor.links.tails_of(h, relation)
        terms = rng.choice(own, size=size, replace=False).tolist()
        for k in rng.choice(size, size=vaguer, replace=False).tolist():
            ups = index.hierarchy.parents(terms[k])
            if len(ups):
                terms[k] = int(rng.choice(ups))
        carried = set(np.concatenate([index.hierarchy.ancestors(int(a)) for a in own]).tolist())
        spare = [int(t) for t in vocabulary if int(t) not in carried and int(t) not in terms]
        terms += rng.choice(spare, size=min(noise, len(spare)), replace=False).tolist() if spare else []
        patients.append((h, [int(t) for t in terms]))
    return patients


def headline(predictor, relation: int, n: int = 100, seed: int = 0) -> str:
    """One line: top-1 / top-10 of ``LinkPredictor.rank`` and of the exact-match count on ``n`` simulated
    patients of the predictor's own graph (1 term one level vaguer, 1 noise term)."""
    patients = simulate_on_graph(predictor, relation, n, seed)
    ours, count = [], []
    ann = predictor.evidence_index.annotations(relation, "head")
    candidates = np.flatnonzero(ann.counts > 0)
    for h, terms in patients:
        found = predictor.rank([(t, relation) for t in terms], k=10)
        ours.append(next((p.rank for p in found if p.id == h), 11))
        matches = np.array(
            [len(set(predictor.links.tails_of(int(c), relation).tolist()) & set(terms)) for c in candidates]
        )
        count.append(mid_rank(matches, int(np.flatnonzero(candidates == h)[0])))
    ours_a, count_a = np.array(ours), np.array(count)
    return (
        f"diagnosis of {len(patients)} simulated patients of this graph ({len(candidates)} candidates; 5 findings, "
        f"1 one level vaguer, 1 noise): kgemb top-1 {(ours_a <= 1).mean():.2f}, top-10 {(ours_a <= 10).mean():.2f}; "
        f"exact-match count top-1 {(count_a <= 1).mean():.2f}, top-10 {(count_a <= 10).mean():.2f}"
    )


def mid_rank(scores: np.ndarray, truth: int) -> float:
    s = scores[truth]
    return float((scores > s).sum() + ((scores == s).sum() + 1) / 2)


class PyhpoSimilarity:
    """pyhpo's term similarity (max IC of the common ancestors = Resnik; Lin = 2 Resnik / (IC1 + IC2)) and its
    set combinations, as matrices over every candidate at once."""

    def __init__(self, data: Data, anc: list[np.ndarray]) -> None:
        self.ic = data.ic
        pairs = [(a, t) for t in range(len(anc)) for a in anc[t].tolist()]  # (ancestor, term)
        arr = np.array(pairs, dtype=np.int64)
        arr = arr[np.lexsort((arr[:, 1], arr[:, 0]))]
        self.ptr = np.searchsorted(arr[:, 0], np.arange(len(anc) + 1))
        self.desc = arr[:, 1]
        self.anc = anc
        self.flat = np.concatenate(data.annotations)
        self.starts = np.cumsum([0] + [len(a) for a in data.annotations[:-1]])

    def resnik_rows(self, query: list[int]) -> np.ndarray:
        """(|query|, terms): Resnik similarity of each query term to every term."""
        out = np.zeros((len(query), len(self.anc)))
        for i, q in enumerate(query):
            a = self.anc[q]
            for t in a[np.argsort(self.ic[a], kind="stable")].tolist():
                out[i, self.desc[self.ptr[t] : self.ptr[t + 1]]] = self.ic[t]
        return out

    def scores(self, query: list[int]) -> dict[str, np.ndarray]:
        resnik = self.resnik_rows(query)[:, self.flat]  # (q, all annotations)
        ic_q = self.ic[query][:, None]
        ic_a = self.ic[self.flat][None, :]
        with np.errstate(divide="ignore", invalid="ignore"):
            lin = np.where(ic_q + ic_a > 0, 2 * resnik / (ic_q + ic_a), 0.0)
        out = {}
        counts = np.diff(np.append(self.starts, len(self.flat)))
        for name, m in (("resnik", resnik), ("lin", lin)):
            row = np.maximum.reduceat(m, self.starts, axis=1)  # (q, diseases): best match of each query term
            col = m.max(axis=0)  # best match of each annotation
            col_sum = np.add.reduceat(col, self.starts)
            row_mean = row.mean(axis=0)
            col_mean = col_sum / counts
            out[f"pyhpo {name} / funSimAvg"] = (row_mean + col_mean) / 2
            if name == "resnik":
                out["pyhpo resnik / BMA"] = (row.sum(axis=0) + col_sum) / (len(query) + counts)
        return out


def check_against_pyhpo(data: Data, sim: PyhpoSimilarity, patients: list[tuple[int, list[int]]]) -> int:
    """Compare with pyhpo's own HPOSet.similarity for every candidate; return how many scores were compared."""
    from pyhpo import HPOSet

    sets = [HPOSet.from_queries([data.terms[t] for t in a.tolist()]) for a in data.annotations]
    compared = 0
    for _, query in patients:
        ours = sim.scores(query)
        patient = HPOSet.from_queries([data.terms[t] for t in query])
        for method, combine, name in (
            ("resnik", "funSimAvg", "pyhpo resnik / funSimAvg"),
            ("resnik", "BMA", "pyhpo resnik / BMA"),
            ("lin", "funSimAvg", "pyhpo lin / funSimAvg"),
        ):
            theirs = np.array(
                [patient.similarity(s, kind="orpha", method=method, combine=combine) for s in sets]
            )
            if not np.allclose(theirs, ours[name], atol=1e-9):
                worst = float(np.abs(theirs - ours[name]).max())
                raise SystemExit(f"{name} differs from pyhpo's HPOSet.similarity by up to {worst}")
            compared += len(sets)
    return compared


def build_graph(data: Data):  # -> kgemb.KnowledgeGraph
    """HPO terms and the candidate diseases as a KnowledgeGraph: ``has_phenotype`` and ``is_a`` links."""
    from kgemb.graph import Entity, KnowledgeGraph

    entities = [
        Entity(t, {"en": [str(data.ontology.get_hpo_object(t).name)]}, types=["Phenotype"])
        for t in data.terms
    ]
    entities += [
        Entity(d.split(" ", 1)[0], {"en": [d.split(" ", 1)[1]]}, types=["Disease"]) for d in data.diseases
    ]
    offset = len(data.terms)
    rows = [(c, 1, p) for c, ps in enumerate(data.parents) for p in ps]
    rows += [(offset + j, 0, int(t)) for j, a in enumerate(data.annotations) for t in a.tolist()]
    return KnowledgeGraph(
        entities, ["has_phenotype", "is_a"], splits={"train": np.array(rows, dtype=np.int64)}
    ), offset


def main(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--diseases", type=int, default=1000)
    parser.add_argument("--patients", type=int, default=100, help="patients per seed and setting")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--check", type=int, default=2, help="patients checked against pyhpo itself")
    parser.add_argument("--eps", type=float, default=None, help="noise share (default evidence.EPS)")
    parser.add_argument("--rho", type=float, default=None, help="vaguer-term share (default evidence.RHO)")
    parser.add_argument(
        "--gamma", type=float, default=None, help="decay per step up (default evidence.GAMMA)"
    )
    parser.add_argument("--kappa", type=float, default=None, help="closeness share (default evidence.KAPPA)")
    parser.add_argument(
        "--train-epochs",
        type=int,
        default=0,
        help="also train a structure model (RotatE) for this many epochs and rank through LinkPredictor.rank "
        "with the model weight chosen on validation (0: skip)",
    )
    parser.add_argument("--dim", type=int, default=64, help="the trained model's dimension")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "diagnosis.md")
    args = parser.parse_args(argv)
    from kgemb.reasoning import evidence

    eps = evidence.EPS if args.eps is None else args.eps
    rho = evidence.RHO if args.rho is None else args.rho
    gamma = evidence.GAMMA if args.gamma is None else args.gamma
    kappa = evidence.KAPPA if args.kappa is None else args.kappa
    began, cpu0 = time.perf_counter(), cpu_seconds()
    data = load(args.diseases, seed=0)
    anc = ancestors_table(data.parents)
    t_load = time.perf_counter() - began
    t0 = time.perf_counter()
    kg, offset = build_graph(data)
    index = evidence.EvidenceIndex(kg, rho=rho, gamma=gamma)
    index.annotations(0, "head")
    t_build = time.perf_counter() - t0
    lp, t_train, alpha = None, 0.0, None
    if args.train_epochs:
        from kgemb.reasoning import LinkPredictor

        import kgemb

        t0, c0 = time.perf_counter(), cpu_seconds()
        split = kg.split(valid=0.02, test=0.0, seed=0)
        model = kgemb.train(
            split,
            mode="structure",
            interaction="rotate",
            dim=args.dim,
            epochs=args.train_epochs,
            seed=0,
            show_progress=False,
        )
        lp = LinkPredictor(model)  # candidates of the right type (Disease), learned from the training links
        alpha = lp.evidence_weight  # chosen on the validation links
        t_train = time.perf_counter() - t0
        print(f"trained and fitted in {t_train:.0f} s ({cpu_seconds() - c0:.0f} CPU-s); model weight {alpha}")
    candidates = np.zeros(kg.num_entities, dtype=bool)
    candidates[offset:] = True
    sim = PyhpoSimilarity(data, anc)
    direct = [set(a.tolist()) for a in data.annotations]
    results: dict[str, dict[str, list[float]]] = {}
    latency: list[float] = []
    checked = 0
    for setting in SETTINGS:
        for seed in args.seeds:
            patients = simulate(data, anc, setting, args.patients, seed)
            if seed == args.seeds[0] and setting == "hard" and args.check:
                checked += check_against_pyhpo(data, sim, patients[: args.check])
            for truth, query in patients:
                start = time.perf_counter()
                items = index.items([(t, 0) for t in query], "head")
                total = evidence.totals(items, kg.num_entities, eps=eps, kappa=kappa)
                top = evidence.order(total, candidates, 10)
                evidence.normalise(total, candidates)
                evidence.log_likelihood(items, kg.num_entities, eps=eps, kappa=kappa, candidates=top)
                latency.append(time.perf_counter() - start)
                ranked = {"kgemb evidence (ontology, no model)": total[offset:]}
                if lp is not None:
                    found = lp.rank([(t, 0) for t in query], k=len(data.diseases))
                    position = {p.id - offset: len(found) - p.rank for p in found if p.id >= offset}
                    ranked[f"kgemb LinkPredictor.rank (+ model, weight {alpha})"] = np.array(
                        [position.get(j, -1) for j in range(len(data.diseases))], dtype=float
                    )
                ranked["exact-match count"] = np.array(
                    [len(direct[j] & set(query)) for j in range(len(direct))]
                )
                ranked.update(sim.scores(query))
                for name, values in ranked.items():
                    results.setdefault(name, {}).setdefault(setting, []).append(mid_rank(values, truth))
    wall, cpu = time.perf_counter() - began, cpu_seconds() - cpu0
    n = len(args.seeds) * args.patients
    lines = [
        "# Diagnosis on simulated patients (pyhpo's HPO and Orphanet annotations)",
        "",
        f"`python benchmarks/diagnosis.py {' '.join(argv if argv is not None else sys.argv[1:])}`".replace(
            " `", "`"
        ),
        "",
        f"{len(data.diseases):,} candidate Orphanet diseases, {len(data.terms):,} HPO terms; {n} patients per "
        f"setting (seeds {', '.join(map(str, args.seeds))} x {args.patients}); easy = 1 term one level vaguer + "
        "1 noise term, hard = 2 terms two levels vaguer + 2 noise terms, specific = 2 terms replaced by a child "
        "(more specific than the annotation) + 1 noise term. Ties at mid-rank. pyhpo's scores "
        f"checked equal to `HPOSet.similarity` on {checked:,} (patient, disease) pairs. kgemb: eps {eps}, "
        f"rho {rho}, gamma {gamma}, kappa {kappa} (chosen on seed 7's patients).",
        "",
        "| ranker | " + " | ".join(f"{s} top-1 | {s} top-10 | {s} MRR" for s in SETTINGS) + " |",
        "|---|" + "---|---|---|" * len(SETTINGS),
    ]
    for name, by_setting in results.items():
        cells = []
        for setting in SETTINGS:
            ranks = np.array(by_setting[setting])
            cells += [
                f"{(ranks <= 1).mean():.3f}",
                f"{(ranks <= 10).mean():.3f}",
                f"{(1 / ranks).mean():.3f}",
            ]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    ours = (
        next(name for name in results if name.startswith("kgemb LinkPredictor"))
        if lp
        else next(iter(results))
    )
    lines += ["", f"Goals, for `{ours}` against the best pyhpo method on the same patients:", ""]
    for setting in SETTINGS:
        top1 = {name: float((np.array(r[setting]) <= 1).mean()) for name, r in results.items()}
        best = max((name for name in top1 if name.startswith("pyhpo")), key=top1.get)
        top10 = float((np.array(results[ours][setting]) <= 10).mean())
        lines.append(
            f"- {setting}: top-1 {top1[ours]:.3f} vs {best} {top1[best]:.3f} "
            f"({(top1[ours] - top1[best]) * 100:+.1f} points; goal >= 0.92 and +5), top-10 {top10:.3f}"
        )
    lines += [
        "",
        f"kgemb latency per patient over {len(data.diseases):,} candidates: median "
        f"{statistics.median(latency) * 1000:.1f} ms, p95 {np.percentile(latency, 95) * 1000:.1f} ms "
        f"({len(latency)} patients).",
        f"Loading pyhpo's ontology {t_load:.0f} s; building the kgemb graph and its evidence index "
        f"{t_build:.1f} s"
        + (
            f"; training ({args.train_epochs} epochs, dim {args.dim}) and choosing the model weight {t_train:.0f} s"
            if lp
            else ""
        )
        + f". Whole run {wall:.0f} s wall, {cpu:.0f} CPU-s (os.cpu_count() = {os.cpu_count()}).",
    ]
    report = "\n".join(lines) + "\n"
    print(report)
    if args.out:
        from kgemb.files import write_atomic

        args.out.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(args.out, report.encode("utf-8"))
    return report


if __name__ == "__main__":
    main()
