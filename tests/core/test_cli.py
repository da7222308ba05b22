"""The ``kgemb`` console script: version, help, and errors as one line with exit code 2."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import kgemb

KGEMB = str(Path(sys.executable).with_name("kgemb"))


def test_version_and_help() -> None:
    out = subprocess.run([KGEMB, "--version"], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == f"kgemb {kgemb.__version__}"
    out = subprocess.run([KGEMB, "--help"], capture_output=True, text=True, check=True)
    assert "usage: kgemb" in out.stdout and "doctor" in out.stdout


def test_doctor_reports_versions() -> None:
    import json

    out = subprocess.run([KGEMB, "doctor", "--json"], capture_output=True, text=True, check=True)
    report = json.loads(out.stdout)
    assert report["kgemb"] == kgemb.__version__
    assert report["pykeen"].startswith("1.11")
