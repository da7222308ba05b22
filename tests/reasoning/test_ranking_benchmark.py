"""benchmarks/ranking.py at a tiny size: it runs, and kgemb's top-10 and multi-evidence ranking agree with
PyKEEN's own scoring of the same model (the script stops with an error when they differ)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "ranking.py"


def test_ranking_benchmark_small() -> None:
    spec = importlib.util.spec_from_file_location("kgemb_ranking_benchmark", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    report = module.main(
        [
            "--entities",
            "3000",
            "--rank-entities",
            "3000",
            "--queries",
            "3",
            "--batch",
            "8",
            "--pykeen-queries",
            "2",
        ]
    )
    assert "top-10 agree" in report and "| rank, 10 pieces of evidence (3,000 entities, dim 256) |" in report
