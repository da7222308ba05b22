"""`explain` shows the mined rules that fired when the model folder carries rules (kgemb.rules)."""

from __future__ import annotations

import json
import shutil

from kgemb.rules import RuleSet

MED = "http://example.org/med/"


def test_explain_shows_the_rules_that_fired(tmp_path, medical_model_dir) -> None:
    from kgemb.reasoning import LinkPredictor

    folder = tmp_path / "model"
    shutil.copytree(medical_model_dir, folder)
    plain = LinkPredictor.load(folder).explain("measles", "has_symptom", "fever")
    assert plain.rules == []  # no rules in the folder: nothing shown, nothing fails

    RuleSet.from_graph(LinkPredictor.load(folder).kg).save(folder)
    found = LinkPredictor.load(folder).explain("measles", "has_symptom", "fever")
    assert found.rules, "diseases that share symptoms with measles have fever: some rule fires"
    conf = [f.confidence for f in found.rules]
    assert conf == sorted(conf, reverse=True) and all(0 < c <= 1 for c in conf)
    for fired in found.rules:
        assert fired.path[0] == MED + "measles" and fired.rule.startswith("has symptom(X,")
        if fired.kind in ("path1", "path2"):
            assert fired.path[-1] == MED + "fever" and len(fired.path) == {"path1": 2, "path2": 3}[fired.kind]
        assert fired.support <= fired.body_support
    assert "rules that fired" in found.format()
    assert json.loads(json.dumps(found.to_dict()))["rules"][0]["rule"] == found.rules[0].rule

    # rules mined on other triples (a retrained model left an old rules.json) are not shown, and a note says so
    kg = LinkPredictor.load(folder).kg
    RuleSet.mine(kg.triples("train")[1:], kg.num_entities, kg.num_relations).save(folder)
    stale = LinkPredictor.load(folder).explain("measles", "has_symptom", "fever")
    assert stale.rules == [] and any("mine them again" in n for n in stale.notes)
