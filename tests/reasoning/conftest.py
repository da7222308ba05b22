"""One small trained model for all reasoning tests: the medical graph in ``data/medical.ttl`` (diseases,
symptoms and organs with English, Chinese and German labels), trained once per session in ``fused`` mode."""

from __future__ import annotations

from pathlib import Path

import pytest

DATA = Path(__file__).parent / "data"


@pytest.fixture(scope="session")
def medical_kg():  # -> kgemb.KnowledgeGraph
    from kgemb.connectors import rdf

    return rdf.load(DATA / "medical.ttl").split(valid=0.1, test=0.1, seed=0)


@pytest.fixture(scope="session")
def medical_model_dir(tmp_path_factory: pytest.TempPathFactory, medical_kg) -> Path:
    """A fused RotatE model of the medical graph, saved like `kgemb train` saves one."""
    import kgemb

    model = kgemb.train(
        medical_kg,
        mode="fused",
        interaction="rotate",
        dim=32,
        epochs=20,
        batch_size=32,
        lr=0.01,
        early_stopping=False,
        show_progress=False,
        seed=0,
        rules=False,  # the embedding's own scores; the rule channel is tested in tests/core/test_objective.py
    )
    out = tmp_path_factory.mktemp("medical-model")
    model.save(out)
    return out


@pytest.fixture(scope="session")
def predictor(medical_model_dir: Path):  # -> kgemb.reasoning.LinkPredictor
    from kgemb.reasoning import LinkPredictor

    return LinkPredictor.load(medical_model_dir)
