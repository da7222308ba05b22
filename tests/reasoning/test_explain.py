"""Explanations: supporting paths in the graph (bounded, networkx), rule strength, text neighbours."""

from __future__ import annotations

import json

import numpy as np
import pytest

from kgemb.errors import KgembError

MED = "http://example.org/med/"


def test_explain_a_known_link(predictor) -> None:
    found = predictor.explain("measles", "has_symptom", "fever")
    assert found.known and 0.0 <= found.probability <= 1.0
    assert found.head == MED + "measles" and found.tail == MED + "fever"
    assert found.paths, "measles and fever are connected through other diseases and symptoms"
    for path in found.paths:
        assert 1 <= len(path.steps) <= 3 and 0.0 <= path.strength <= 1.0
        ends = [path.steps[0].source, path.steps[0].target, path.steps[-1].source, path.steps[-1].target]
        assert MED + "measles" in ends[:2] and MED + "fever" in ends[2:]
        assert not (len(path.steps) == 1 and path.steps[0].relation == MED + "has_symptom")  # not itself
        for a, b in zip(path.steps, path.steps[1:], strict=False):  # consecutive edges share an entity
            assert {a.source, a.target} & {b.source, b.target}
    strengths = [p.strength for p in found.paths]
    assert strengths == sorted(strengths, reverse=True)
    # chickenpox is like measles by text (rash, fever) and has the same link: an analogue
    assert MED + "chickenpox" in {n.key for n in found.analogues}
    assert len(found.head_neighbours) == 5 and MED + "measles" not in {n.key for n in found.head_neighbours}
    text = found.format()
    assert "measles -[has symptom]-> fever" in text and "supporting paths" in text
    assert "already in the graph" in text and "strongest predicted link instead" in text
    # a known link offers the strongest predicted (missing) link for the same head and relation instead
    assert found.suggestion is not None
    assert not predictor.links.contains(
        np.array(
            [
                [
                    predictor.entity("measles"),
                    predictor.relation("has_symptom"),
                    predictor.entity(found.suggestion["key"]),
                ]
            ]
        )
    )[0]
    json.dumps(found.to_dict())


def test_path_strength_prefers_specific_patterns(predictor) -> None:
    """Diseases of the same organ share symptoms more often than any two diseases do."""
    found = predictor.explain("pneumonia", "has_symptom", "cough", paths=50)
    by_pattern = {p.pattern: p.strength for p in found.paths}
    assert by_pattern, "paths expected"
    assert max(by_pattern.values()) > min(by_pattern.values())


def test_explain_respects_the_length_bound(predictor) -> None:
    found = predictor.explain("influenza", "has_symptom", "rash", max_length=1)
    assert not found.known and found.paths == []
    with pytest.raises(KgembError, match="max_length"):
        predictor.explain("influenza", "has_symptom", "rash", max_length=0)
