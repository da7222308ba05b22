"""Sharded enrichment: ``kgemb enrich --shard I/N`` ranks the I-th of N contiguous blocks of the subjects (sorted
by IRI, whole batches) and writes ``OUTPUT.shard-I-of-N`` (its prediction text) with ``OUTPUT.shard-I-of-N.json``
(what made it); ``kgemb enrich --merge`` assembles the N shards into exactly the bytes one unsharded run writes.

Any scheduler can run the shards (a Slurm array, a Kubernetes indexed Job, Spark, Ray): each shard is an ordinary
``kgemb enrich`` with the same arguments and its own ``--shard``; the merge needs the shard files side by side and
INPUT. All shards must name the same run, so a sharded run needs a fixed provenance time (``--run-time`` or
``SOURCE_DATE_EPOCH``).
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import asdict
from pathlib import Path
from typing import Any

from kgemb.distributed import parse_shard
from kgemb.errors import InputError
from kgemb.files import file_sha256, locked, write_atomic

from .rdf_enrich import EnrichResult, _assemble, _checked
from .rdf_write import Run, Writer

SHARD_FORMAT = "kgemb.enrich-shard/1"


def shard_path(out: Path, index: int, count: int) -> Path:
    """Where shard ``index`` of ``count`` of a run on OUTPUT ``out`` writes its predictions."""
    return out.parent / f"{out.name}.shard-{index}-of-{count}"


def shard_output(
    shard: tuple[int, int] | str, out: Path, in_place: bool, fixed_time: str | None
) -> tuple[tuple[int, int], Path]:
    """The checked ``(I, N)`` and the shard file a ``--shard`` run writes instead of OUTPUT."""
    parsed = parse_shard(shard) if isinstance(shard, str) else parse_shard(f"{shard[0]}/{shard[1]}")
    assert parsed is not None
    if in_place:
        raise InputError(
            "--shard writes a shard file beside OUTPUT, never INPUT; drop --in-place and pass --out"
        )
    if fixed_time is None:
        raise InputError(
            "--shard needs a fixed provenance time so every shard names the same run: pass the same "
            "--run-time (e.g. 2026-01-01T00:00:00Z) to every shard, or set SOURCE_DATE_EPOCH"
        )
    return parsed, shard_path(out, *parsed)


def write_shard(
    out: Path,
    part: Path,
    shard: tuple[int, int],
    *,
    job: str,
    source_digest: str,
    run: Run,
    writer: Writer,
    only_predictions: bool,
    subjects: int,
    predictions: int,
) -> None:
    """Move the finished ``part`` file to the shard file ``out``, then write its description (last: a shard
    counts as done only when its JSON is there and its bytes match it)."""
    digest = file_sha256(part)
    size = part.stat().st_size
    os.replace(part, out)
    doc = {
        "format": SHARD_FORMAT,
        "shard": shard[0],
        "shards": shard[1],
        "job": job,
        "input_sha256": source_digest,
        "run": asdict(run),
        "fmt": writer.fmt,
        "mode": writer.mode,
        "only_predictions": only_predictions,
        "subjects": subjects,
        "predictions": predictions,
        "bytes": size,
        "sha256": digest,
    }
    write_atomic(Path(f"{out}.json"), json.dumps(doc, indent=1).encode("utf-8"), fsync=True)


def merge(
    source: Any, output: str | os.PathLike, *, fmt: str | None = None, in_place: bool = False
) -> EnrichResult:
    """Assemble OUTPUT from the shard files beside it (``OUTPUT.shard-I-of-N``, all N of one run) and INPUT:
    the same bytes as one unsharded ``enrich`` with the shards' arguments. The shard files are kept."""
    source_input, out, asked = _checked(source, output, fmt=fmt, in_place=in_place)
    docs = _shard_docs(out)
    first = docs[0]
    if first["input_sha256"] != source_input.digest():
        raise InputError(
            f"the shards of {out} were made from other INPUT bytes; pass the INPUT the shards read"
        )
    if asked.fmt != first["fmt"]:
        raise InputError(f"the shards of {out} were written as {first['fmt']}, not {asked.fmt}; fix --format")
    writer = Writer(first["fmt"], first["mode"])
    run = Run(**first["run"])
    parts = [shard_path(out, d["shard"], d["shards"]) for d in docs]
    with locked(out, "OUTPUT"):
        copied = _assemble(source_input, out, writer, run, parts, first["only_predictions"])
    subjects = sum(d["subjects"] for d in docs)
    return EnrichResult(
        out, True, subjects, subjects, sum(d["predictions"] for d in docs), 0, 0.0, statements_copied=copied
    )


_NAME = re.compile(r"\.shard-(\d+)-of-(\d+)\.json$")


def _shard_docs(out: Path) -> list[dict[str, Any]]:
    """The shard descriptions of a run on ``out``, in shard order, checked complete and of one job."""
    found: dict[int, list[Path]] = {}
    for path in out.parent.glob(f"{out.name}.shard-*-of-*.json"):
        match = _NAME.search(path.name)
        if match and path.name == f"{out.name}.shard-{match[1]}-of-{match[2]}.json":
            found.setdefault(int(match[2]), []).append(path)
    if not found:
        raise InputError(
            f"no shard of {out} found (files {out.name}.shard-I-of-N beside it); run `kgemb enrich ... --out {out} "
            "--shard I/N` for every I first"
        )
    if len(found) > 1:
        raise InputError(
            f"shards of {out} from runs with different shard counts ({', '.join(map(str, sorted(found)))}) lie "
            f"side by side; delete the shard files of the runs you do not want"
        )
    count, paths = next(iter(found.items()))
    docs: dict[int, dict[str, Any]] = {}
    for path in paths:
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise InputError(
                f"the shard description {path} cannot be read ({exc}); run that shard again"
            ) from None
        if doc.get("format") != SHARD_FORMAT:
            raise InputError(f"{path} is not a kgemb enrichment shard; remove it")
        docs[int(doc["shard"])] = doc
    missing = [i for i in range(count) if i not in docs]
    if missing:
        raise InputError(
            f"shard(s) {', '.join(f'{i}/{count}' for i in missing)} of {out} are not done; run them, then merge"
        )
    ordered = [docs[i] for i in range(count)]
    for doc in ordered:
        if doc["job"] != ordered[0]["job"] or doc["run"] != ordered[0]["run"]:
            raise InputError(
                f"shard {doc['shard']}/{count} of {out} was made with other arguments, model or --run-time than "
                "shard 0; run every shard with the same arguments"
            )
        part = shard_path(out, doc["shard"], count)
        if not part.is_file() or part.stat().st_size != doc["bytes"] or file_sha256(part) != doc["sha256"]:
            raise InputError(
                f"the shard file {part} is missing or changed since it was written; run that shard again"
            )
    return ordered
