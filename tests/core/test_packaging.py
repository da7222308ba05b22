"""One distribution, one namespace: a built wheel carries kgemb, kgemb.connectors and kgemb.reasoning."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_wheel_imports_all_parts(tmp_path: Path) -> None:
    subprocess.run(
        [
            sys.executable,
            "-m",
            "build",
            "--wheel",
            "--no-isolation",
            "--outdir",
            str(tmp_path / "dist"),
            str(REPO),
        ],
        check=True,
        capture_output=True,
    )
    (wheel,) = (tmp_path / "dist").glob("kgemb-*.whl")
    site = tmp_path / "site"
    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
        zf.extractall(site)
    assert "kgemb/connectors/rdf.py" in names or "kgemb/connectors/__init__.py" in names
    assert not any(n.startswith(("connectors/", "reasoning/", "tests/")) for n in names)
    assert "kgemb/py.typed" in names, "type checkers need the py.typed marker (PEP 561)"
    # -S: no site-packages, so the editable install of the checkout cannot answer instead of the wheel.
    code = (
        "import sys; sys.path.insert(0, sys.argv[1]); import kgemb, kgemb.connectors, kgemb.reasoning; "
        "print(kgemb.connectors.__file__)"
    )
    out = subprocess.run(
        [sys.executable, "-S", "-c", code, str(site)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout.strip().startswith(str(site / "kgemb" / "connectors"))
