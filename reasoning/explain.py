"""Explain a link ``(head, relation, tail)``: its calibrated probability, the strongest supporting paths in the
graph, and the nearest entities by text — so a person can see why the model believes it.

Paths are the simple paths of at most ``max_length`` edges between head and tail in the graph (edges followed
in either direction; the link itself is left out), found with networkx. A path's *strength* is how often its
relation pattern (e.g. ``affects, ^affects, has_symptom``: "diseases of the same organ share symptoms") is
right elsewhere in the graph: of the entities the pattern reaches from the heads of the relation's training
links, the share that are their tails — the confidence a rule miner would give ``pattern => relation``. Paths
are ranked by strength, then by length, then through less connected (more specific) entities first.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from kgemb.errors import KgembError

if TYPE_CHECKING:
    import networkx
    from kgemb.reasoning.predictor import EntityRef, LinkPredictor, RelationRef

Pattern = tuple[tuple[int, bool], ...]  # (relation id, followed forward?) per edge


@dataclass
class PathStep:
    """One edge of a path, as stored in the graph (``source -relation-> target``)."""

    source: str
    source_label: str
    relation: str
    relation_label: str
    target: str
    target_label: str


@dataclass
class SupportingPath:
    steps: list[PathStep]
    pattern: str  # relation names along the path; ``^`` marks an edge followed backwards
    strength: float  # confidence of "pattern => relation" elsewhere in the graph (0..1)


@dataclass
class FiredRule:
    """A mined rule (``kgemb.rules``) that predicts the link, with one grounding of its body in the graph."""

    rule: str  # readable, e.g. ``hypernym(X,Y) <= derivationally_related_form(X,Z), hypernym(Z,Y)``
    kind: str
    confidence: float
    support: int
    body_support: int
    path: list[str]  # entity keys along the grounding, from the head
    path_labels: list[str]


@dataclass
class Neighbour:
    key: str
    label: str
    similarity: float


@dataclass
class Explanation:
    head: str
    head_label: str
    relation: str
    relation_label: str
    tail: str
    tail_label: str
    probability: float
    raw: float
    known: bool
    paths: list[SupportingPath] = field(default_factory=list)
    head_neighbours: list[Neighbour] = field(default_factory=list)
    tail_neighbours: list[Neighbour] = field(default_factory=list)
    analogues: list[Neighbour] = field(
        default_factory=list
    )  # like the head by text, with the same link to the tail
    notes: list[str] = field(default_factory=list)
    rules: list[FiredRule] = field(default_factory=list)  # mined rules that fired (model folders with rules)
    # the text-neighbour vote (kgemb.channels): known answers of (head, relation, ?) the tail resembles by text,
    # with their strengths; and known answers of (?, relation, tail) the head resembles
    tail_votes: list[Neighbour] = field(default_factory=list)
    head_votes: list[Neighbour] = field(default_factory=list)
    # for a link already in the graph: the strongest predicted (missing) link for the same head and relation
    suggestion: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def format(self) -> str:
        """A readable report (the CLI's output without ``--json``)."""
        lines = [
            f"{self.head_label} -[{self.relation_label}]-> {self.tail_label}",
            f"probability {self.probability:.3f} (raw score {self.raw:.4f})"
            + ("; this link is already in the graph, so nothing is predicted" if self.known else ""),
        ]
        if self.suggestion is not None:
            lines.append(
                f"strongest predicted link instead: {self.head_label} -[{self.relation_label}]-> "
                f"{self.suggestion['label']} (probability {self.suggestion['score']:.3f}; "
                f"explain it with --tail {self.suggestion['key']})"
            )
        lines += [
            "",
            "supporting paths (strength = how often the same pattern leads to this relation elsewhere):",
        ]
        if not self.paths:
            lines.append("  (none within the length limit)")
        for p in self.paths:
            chain = " ; ".join(f"{s.source_label} -[{s.relation_label}]-> {s.target_label}" for s in p.steps)
            lines.append(f"  {p.strength:.2f}  {chain}")
        if self.rules:
            lines += ["", "rules that fired (confidence, support / body support; one grounding):"]
            lines.extend(
                f"  {f.confidence:.3f}  ({f.support}/{f.body_support})  {f.rule}   [{' -> '.join(f.path_labels)}]"
                for f in self.rules
            )
        for title, items in (
            (f"entities like {self.head_label} by text", self.head_neighbours),
            (f"entities like {self.tail_label} by text", self.tail_neighbours),
            (f"like {self.head_label}, and known to have this link to {self.tail_label}", self.analogues),
            (
                f"known {self.relation_label} answers of {self.head_label} that {self.tail_label} resembles by text "
                "(the text-neighbour vote; strength)",
                self.tail_votes,
            ),
            (
                f"entities known to have this link to {self.tail_label} that {self.head_label} resembles by text "
                "(the text-neighbour vote; strength)",
                self.head_votes,
            ),
        ):
            if items:
                lines.append("")
                lines.append(f"{title}:")
                lines.extend(f"  {n.similarity:.3f}  {n.label} ({n.key})" for n in items)
        lines.extend(f"note: {n}" for n in self.notes)
        return "\n".join(lines)


def explain(
    predictor: LinkPredictor,
    head: EntityRef,
    relation: RelationRef,
    tail: EntityRef,
    *,
    max_length: int = 3,
    paths: int = 5,
    neighbours: int = 5,
    max_paths_considered: int = 2000,
    sample: int = 200,
) -> Explanation:
    """Explain ``(head, relation, tail)`` (entities of the graph); see the module docstring."""
    if not isinstance(max_length, int) or max_length < 1:
        raise KgembError(f"max_length must be a whole number of edges, at least 1; got {max_length!r}")
    kg = predictor.kg
    h, r, t = predictor.entity(head), predictor.relation(relation), predictor.entity(tail)
    raw = float(predictor.model.score_hrt(np.array([[h, r, t]]))[0])
    prob = float(predictor.score(np.array([[h, r, t]]))[0])
    known = bool(predictor.links.contains(np.array([[h, r, t]]))[0])
    label = predictor._label
    out = Explanation(
        kg.entities[h].key,
        label(h),
        kg.relations[r],
        kg.relation_text(r, predictor.languages),
        kg.entities[t].key,
        label(t),
        prob,
        raw,
        known,
    )
    if known:
        try:
            best = predictor.tails(h, r, k=1, filter_known=True)
        except KgembError:
            best = []
        if best:
            out.suggestion = {"key": best[0].key, "label": best[0].label, "score": best[0].score}
    out.paths = _supporting_paths(predictor, h, r, t, max_length, paths, max_paths_considered, sample)
    out.rules = fired_rules(predictor, h, r, t, paths, out.notes)
    channel = predictor.model.pykeen_model.rule_channel
    if channel is not None and channel.votes is not None:
        for anchor, rel, candidate, target in (
            (h, r, t, out.tail_votes),
            (t, r + kg.num_relations, h, out.head_votes),
        ):
            if channel.vote_weights[rel] > 0:
                for z, strength in channel.votes.voters(channel.rules, anchor, rel, candidate):
                    target.append(Neighbour(kg.entities[z].key, label(z), round(strength, 4)))
    try:
        index = predictor.text_index
    except KgembError as exc:
        out.notes.append(f"no text neighbours: {exc}")
        return out
    for entity, target in ((h, out.head_neighbours), (t, out.tail_neighbours)):
        for i, sim in index.nearest(index.entity_vector(entity), neighbours, exclude=entity):
            target.append(Neighbour(kg.entities[i].key, label(i), sim))
    for i, sim in index.nearest(index.entity_vector(h), 50, exclude=h):
        if predictor.links.contains(np.array([[i, r, t]]))[0]:
            out.analogues.append(Neighbour(kg.entities[i].key, label(i), sim))
            if len(out.analogues) == neighbours:
                break
    return out


def fired_rules(
    predictor: LinkPredictor, h: int, r: int, t: int, k: int, notes: list[str] | None = None
) -> list[FiredRule]:
    """The ``k`` strongest mined rules that predict ``(h, r, t)``: from the model's ``rules`` attribute or the
    model folder's ``rules.json`` (:class:`kgemb.rules.RuleSet`); none when the model carries no rules."""
    from kgemb.rules import RULES_JSON, RuleSet

    rules = getattr(predictor, "_rules", None) or getattr(predictor.model, "rules", None)
    if rules is None and predictor.directory is not None and (predictor.directory / RULES_JSON).is_file():
        rules = RuleSet.load(predictor.directory)
    if rules is None:
        return []
    predictor._rules = rules  # type: ignore[attr-defined]
    kg = predictor.kg
    same = (rules.num_entities, rules.num_relations) == (kg.num_entities, kg.num_relations)
    if not (same and np.array_equal(rules.triples, kg.triples("train"))):
        if notes is not None:
            notes.append(
                "the rules in the model folder were mined on other training triples; mine them again"
            )
        return []
    return [
        FiredRule(
            f["rule"],
            f["kind"],
            round(f["confidence"], 4),
            f["support"],
            f["body_support"],
            [kg.entities[e].key for e in f["path"]],
            [predictor._label(e) for e in f["path"]],
        )
        for f in rules.explain(h, r, t, k, entity_name=predictor._label)
    ]


def _graph(predictor: LinkPredictor) -> networkx.MultiGraph:
    """The graph as an undirected networkx multigraph (cached on the predictor); edges keep their direction."""
    cached = getattr(predictor, "_explain_graph", None)
    if cached is None:
        import networkx as nx

        cached = nx.MultiGraph()
        cached.add_nodes_from(range(predictor.kg.num_entities))
        triples = predictor.kg.all_triples()
        cached.add_edges_from(
            (int(a), int(c), (int(b), int(a), int(c))) for a, b, c in triples
        )  # key = (relation, head, tail): unique, and says which way the edge points
        predictor._explain_graph = cached  # type: ignore[attr-defined]
    return cached


def _supporting_paths(
    predictor: LinkPredictor,
    h: int,
    r: int,
    t: int,
    max_length: int,
    limit: int,
    considered: int,
    sample: int,
) -> list[SupportingPath]:
    import networkx as nx

    kg = predictor.kg
    g = _graph(predictor)
    found: list[tuple[Pattern, list[tuple[int, int, int]]]] = []
    edge_paths = nx.all_simple_edge_paths(g, h, t, cutoff=max_length)
    for edges in itertools.islice(edge_paths, considered):
        keys = [key for _, _, key in edges]
        if len(keys) == 1 and keys[0] == (r, h, t):
            continue  # the link being explained is no evidence for itself
        pattern: list[tuple[int, bool]] = []
        node = h
        for rel, a, c in keys:
            forward = a == node
            pattern.append((rel, forward))
            node = c if forward else a
        found.append((tuple(pattern), keys))
    if not found:
        return []
    strengths = {p: _pattern_support(predictor, p, r, sample, exclude=(h, t)) for p in {p for p, _ in found}}
    degree = g.degree

    def order(item: tuple[Pattern, list[tuple[int, int, int]]]) -> tuple[float, int, float]:
        pattern, keys = item
        inner = {n for _, a, c in keys for n in (a, c)} - {h, t}
        return (-strengths[pattern], len(keys), sum(math.log1p(degree[n]) for n in inner))

    out = []
    for pattern, keys in sorted(found, key=order)[:limit]:
        steps = [
            PathStep(
                kg.entities[a].key,
                predictor._label(a),
                kg.relations[rel],
                kg.relation_text(rel, predictor.languages),
                kg.entities[c].key,
                predictor._label(c),
            )
            for rel, a, c in keys
        ]
        names = ", ".join(("" if fwd else "^") + kg.relation_text(rel) for rel, fwd in pattern)
        out.append(SupportingPath(steps, names, round(strengths[pattern], 4)))
    return out


def _pattern_support(
    predictor: LinkPredictor, pattern: Pattern, r: int, sample: int, exclude: tuple[int, int]
) -> float:
    """Confidence of the rule ``pattern => r`` on the graph: over (a sample of) the heads ``x`` of ``r``'s
    training links, the share of the entities that ``pattern`` reaches from ``x`` that are tails of ``(x, r)``.
    A pattern that reaches everything (through a hub, say) scores low; one that reaches exactly the right
    entities scores near 1. The link being explained is left out."""
    train = predictor.kg.triples("train")
    heads = np.unique(train[train[:, 1] == r, 0])
    if len(heads) > sample:
        heads = np.sort(np.random.default_rng(0).choice(heads, sample, replace=False))
    index = predictor.links
    hits = reached = 0
    for x in heads.tolist():
        frontier = {x}
        for rel, forward in pattern:
            step: set[int] = set()
            for node in frontier:
                step.update((index.tails_of(node, rel) if forward else index.heads_of(rel, node)).tolist())
                if len(step) > 5000:  # a hub: stop widening; the pattern is not specific here anyway
                    break
            frontier = step
            if not frontier:
                break
        truth = set(index.tails_of(x, r).tolist())
        if x == exclude[0]:
            truth.discard(exclude[1])
            frontier.discard(exclude[1])
        hits += len(frontier & truth)
        reached += len(frontier)
    return hits / reached if reached else 0.0
