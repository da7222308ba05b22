"""`kgemb predict` and `LinkPredictor.tails/heads` refuse an anchor whose type the relation does not take (a
symptom as the head of has_symptom), unless type constraints are turned off."""

from __future__ import annotations

import pytest

from kgemb.cli import main
from kgemb.errors import InputError


def test_a_head_of_the_wrong_type_is_refused(capsys, medical_model_dir, predictor) -> None:
    code = main(["predict", str(medical_model_dir), "--head", "fever", "--relation", "has_symptom"])
    err = capsys.readouterr().err
    assert code == 2 and "cannot be the head" in err and "turn type constraints off" in err, err
    code = main(["predict", str(medical_model_dir), "--head", "fever", "--relation", "has_symptom",
                 "--constraints", "none", "--json"])  # fmt: skip
    assert code == 0
    with pytest.raises(InputError, match="cannot be the tail"):
        predictor.heads("has_symptom", "influenza")
    assert predictor.heads("has_symptom", "fever", k=3)  # the right type still works
