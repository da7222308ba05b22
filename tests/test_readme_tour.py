"""The README's five-minute tour as written: it activates the virtual environment first, every line is a command
kgemb's parser takes, and (slow) the whole tour runs in a shell on the medical example's graph."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from kgemb.cli import build_parser

REPO = Path(__file__).resolve().parents[1]


def tour() -> list[str]:
    """The lines of the tour's bash block."""
    text = (REPO / "README.md").read_text(encoding="utf-8")
    section = text[text.index("## A five-minute tour") :]
    block = re.search(r"```bash\n(.*?)```", section, re.S).group(1)
    return [line.split("  #")[0].strip() for line in block.splitlines() if line.strip()]


def test_the_tour_activates_the_venv_then_runs_commands_kgemb_parses() -> None:
    lines = tour()
    assert lines[0] == "source .venv/bin/activate", (
        "kgemb lives in .venv/bin: the tour must put it on the PATH"
    )
    assert "source .venv/bin/activate" in (REPO / "Makefile").read_text(encoding="utf-8").replace(
        "$(BIN)", ".venv/bin"
    )
    parser = build_parser()
    for line in lines[1:]:
        argv = shlex.split(line)
        assert argv[0] == "kgemb", line
        args = parser.parse_args(argv[1:])
        assert hasattr(args, "handler"), line


@pytest.mark.slow
@pytest.mark.neo4j
def test_the_tour_runs_as_written(tmp_path: Path, neo4j_server) -> None:
    """Every line in bash, in a folder holding the example's graph; training gets ``--epochs 2 --dim 32`` added so
    the test takes minutes, and the push goes to the test server's URI."""
    sys.path.insert(0, str(REPO / "examples" / "medical"))
    import build_kg

    (tmp_path / "runs" / "medical").mkdir(parents=True)
    build_kg.build(tmp_path / "runs" / "medical" / "kg.ttl", n_phenotypes=200, min_links=5, max_diseases=600)
    (tmp_path / ".venv").symlink_to(Path(sys.executable).parents[1])
    for line in tour():
        if line.startswith("kgemb train"):
            line += " --epochs 2 --dim 32"
        line = line.replace("bolt://127.0.0.1:7687", neo4j_server.uri)
        run = subprocess.run(
            ["bash", "-c", f"source .venv/bin/activate && {line}" if line.startswith("kgemb") else line],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=1800,
        )
        assert run.returncode == 0, f"{line}\n{run.stderr[-2000:]}"
