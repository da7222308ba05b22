"""Batch enrichment of RDF (``kgemb enrich``): predicted links written back beside the asserted data, each marked
as a prediction with its calibrated score and the run that made it.

The job runs in three steps. (1) One pass over INPUT indexes what the predictions need: which entities the
model knows occur in it, the instances of ``subjects_of``, and the asserted links of the requested relations (so
predictions never repeat them). (2) Subjects, sorted by IRI, are ranked in fixed batches with
:class:`kgemb.reasoning.LinkPredictor`; the prediction text goes to a part file beside OUTPUT, with a checkpoint
every ``checkpoint_every`` subjects. (3) A second pass copies the asserted statements into a temporary file, the
run's provenance and the part file follow, and the file is renamed to OUTPUT. N-Triples and N-Quads are streamed
line by line in both passes; other formats are parsed into memory by rdflib (through the reader in
:mod:`kgemb.connectors.rdf`). Blank nodes are named ``_:b0``, ``_:b1``... in first-seen order, as the reader
names them, so the output has the same bytes on every run.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
import time
from array import array
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

import numpy as np

from kgemb._version import __version__
from kgemb.errors import InputError
from kgemb.files import check_output, locked, write_atomic

from ._rdf_lines import _BNODE, _END, _IRI, _LITERAL, _WS, describe_error, unescape
from ._rdf_mapping import RDF_TYPE
from .rdf_write import (
    KGEMB,
    QUAD_FORMATS,
    Run,
    Writer,
    iri,
    output_format,
    vector_literal,
)

if TYPE_CHECKING:
    from kgemb.model import TrainedModel

CHECKPOINT_FORMAT = "kgemb.enrich-checkpoint/1"
DEFAULT_BATCH = 2048  # subjects scored together: one large matrix product per block of entities
DEFAULT_CHECKPOINT_EVERY = 10_240

# one statement of N-Triples / N-Quads as raw term texts (the reader's own term patterns)
_STATEMENT = re.compile(
    rf"{_WS}(?P<s>{_IRI}|{_BNODE}){_WS}(?P<p>{_IRI}){_WS}(?P<o>{_IRI}|{_BNODE}|{_LITERAL}){_WS}"
    rf"(?:(?P<g>{_IRI}|{_BNODE}){_WS})?{_END}"
)
Quad = tuple[str, str, str, str | None]  # N-Triples terms; graph None = default graph


@dataclass
class EnrichResult:
    """What a run did. ``complete`` is False when it stopped early (``stop_after``) and OUTPUT is not written."""

    output: Path
    complete: bool
    subjects: int  # subjects to enrich in all
    subjects_done: int
    predictions: int  # written so far (all runs of a resumed job)
    resumed_from: int
    seconds: float  # time spent ranking in this call
    statements_copied: int = 0
    skipped: dict[str, int] = field(default_factory=dict)

    @property
    def subjects_per_second(self) -> float:
        done = self.subjects_done - self.resumed_from
        return done / self.seconds if self.seconds > 0 else 0.0


# ---------------------------------------------------------------------- INPUT as statements
class _Input:
    """INPUT (a file, several files or a folder, as the reader takes them) as statements in N-Triples text.

    Streamed formats are read line by line on every pass; the others are parsed once, into memory."""

    def __init__(self, source: Any) -> None:
        self.files = _reader()._expand(source)
        self._parsed: dict[Path, list[Quad]] = {}

    def digest(self) -> str:
        """SHA-256 over the bytes of every file (names left out), for the run IRI and the checkpoint."""
        h = hashlib.sha256()
        for path, _ in self.files:
            with open(path, "rb") as f:
                h.update(hashlib.file_digest(f, "sha256").digest())
        return h.hexdigest()

    def statements(self) -> Iterator[Quad]:
        """Every statement, files in order, blank nodes renamed ``_:b<n>`` in first-seen order per file (as the
        reader names them; blank graph names, which the reader ignores, ``_:g<n>``)."""
        count = 0
        for path, fmt in self.files:
            names: dict[str, str] = {}
            graphs: dict[str, str] = {}

            def bnode(label: str, names: dict[str, str] = names) -> str:
                nonlocal count
                name = names.get(label)
                if name is None:
                    name = names[label] = f"_:b{count}"
                    count += 1
                return name

            for s, p, o, g in self._file(path, fmt):
                if s[0] == "_":
                    s = bnode(s)
                if o[0] == "_":
                    o = bnode(o)
                if g is not None and g[0] == "_":
                    g = graphs.setdefault(g, f"_:g{len(graphs)}")
                yield s, p, o, g

    def _file(self, path: Path, fmt: str) -> Iterator[Quad]:
        if fmt not in ("nt", "nquads"):
            if path not in self._parsed:
                self._parsed[path] = _parsed_quads(path, fmt)
            yield from self._parsed[path]
            return
        quads = fmt == "nquads"
        number = 0
        try:
            with _reader()._open_text(path) as handle:
                for number, line in enumerate(handle, 1):
                    m = _STATEMENT.match(line)
                    if m is None or (m.group("g") is not None and not quads):
                        stripped = line.strip()
                        if not stripped or stripped.startswith("#"):
                            continue
                        column, expected = describe_error(line.rstrip("\r\n"), quads)
                        raise InputError(
                            f"{path}:{number}:{column}: malformed {'N-Quads' if quads else 'N-Triples'} "
                            f"statement, expected {expected}: {stripped[:100]!r}; fix or remove that line"
                        )
                    s, p, o, g = m.group("s", "p", "o", "g")
                    if o[0] == '"' and "\\" in o:
                        _check_escapes(o, path, number)
                    yield s, p, o, g
        except UnicodeDecodeError:
            _reader()._decode(_reader()._read_bytes(path), path)  # raises with line and column
            raise
        except (OSError, EOFError) as exc:
            raise InputError(f"{path}: cannot be read ({exc}); check the file (and its gzip data)") from None


def _reader() -> Any:
    """The reader module (imported on use: it imports this module to offer ``rdf.enrich``)."""
    from . import rdf

    return rdf


def _check_escapes(term: str, path: Path, number: int) -> None:
    try:
        unescape(term)
    except ValueError as exc:
        raise InputError(f"{path}:{number}: {exc}; fix the escape in that line") from None


def _parsed_quads(path: Path, fmt: str) -> list[Quad]:
    """The statements of a non-line format, parsed by the reader, in parse order, as N-Triples text."""
    from rdflib import BNode, Literal
    from rdflib.graph import DATASET_DEFAULT_GRAPH_ID

    from .rdf_write import literal

    def term(t: Any) -> str:
        if isinstance(t, Literal):
            return literal(str(t), str(t.datatype) if t.datatype else None, t.language)
        return f"_:{t}" if isinstance(t, BNode) else iri(str(t))

    out: list[Quad] = []
    for s, p, o, g in _reader()._parse_rdflib(_reader()._read_bytes(path), fmt, path, graphs=True):
        name = None if g is None or g == DATASET_DEFAULT_GRAPH_ID else term(g)
        out.append((term(s), term(p), term(o), name))
    return out


def _key(term: str) -> str | None:
    """The entity key of an IRI term (as the reader stores it), None for blank nodes and literals."""
    if term[0] != "<":
        return None
    return unescape(term[1:-1]) if "\\" in term else term[1:-1]


# ---------------------------------------------------------------------- step 1: index INPUT
@dataclass
class _Index:
    seen: np.ndarray  # (num_entities,) bool: the entity occurs in INPUT
    members: np.ndarray | None  # (num_entities,) bool: instance of subjects_of
    asserted: Any  # reasoning.links.LinkIndex of INPUT's links with the requested relations
    statements: int
    named_graphs: bool


def _scan(source: _Input, kg: Any, relations: dict[str, int], subjects_of: str | None) -> _Index:
    from kgemb.reasoning.links import LinkIndex

    ids = {e.key: i for i, e in enumerate(kg.entities)}
    seen = np.zeros(kg.num_entities, dtype=bool)
    members = np.zeros(kg.num_entities, dtype=bool) if subjects_of is not None else None
    pairs = array("q")  # (subject, relation, object) ids, flat: 24 bytes a link
    count = 0
    named = False
    for s, p, o, g in source.statements():
        count += 1
        named = named or g is not None
        sid = ids.get(_key(s) or "")
        if sid is None:
            continue
        seen[sid] = True
        if o[0] != "<":
            continue
        okey = _key(o)
        pkey = _key(p)
        if members is not None and pkey == RDF_TYPE and okey == subjects_of:
            members[sid] = True
        oid = ids.get(okey or "")
        if oid is None:
            continue
        seen[oid] = True
        r = relations.get(pkey or "")
        if r is not None:
            pairs.extend((sid, r, oid))
    triples = np.frombuffer(pairs, dtype=np.int64).reshape(-1, 3)
    return _Index(seen, members, LinkIndex(triples, kg.num_entities), count, named)


# ---------------------------------------------------------------------- the job
def enrich(
    source: str | os.PathLike | Sequence[str | os.PathLike],
    output: str | os.PathLike | None = None,
    *,
    model: TrainedModel | str | os.PathLike,
    relations: Sequence[str],
    subjects_of: str | None = None,
    k: int = 5,
    min_score: float = 0.0,
    fmt: str | None = None,
    mode: str = "reification",
    with_embeddings: bool = False,
    only_predictions: bool = False,
    in_place: bool = False,
    resume: bool = False,
    checkpoint_every: int = DEFAULT_CHECKPOINT_EVERY,
    stop_after: int | None = None,
    run_time: str | datetime | None = None,
    batch_size: int = DEFAULT_BATCH,
    progress: bool = False,
    constraints: str = "types",
    shard: tuple[int, int] | str | None = None,
    precision: str = "fp32",
) -> EnrichResult:
    """Add up to ``k`` predicted objects per subject and relation (calibrated score >= ``min_score``) to the RDF
    in ``source`` and write the result to ``output``, marked as predictions (``mode``: ``"reification"`` or
    ``"named-graph"``) with provenance. See the module docstring and the README section "RDF enrichment".

    ``model``: a :class:`kgemb.TrainedModel` or its directory. ``relations``: relation IRIs (or labels) the model
    knows. ``subjects_of``: only instances (``rdf:type``) of this class IRI. ``run_time``: the provenance time
    (ISO 8601); default ``SOURCE_DATE_EPOCH`` when set, else now. ``resume``: continue an interrupted run from
    its checkpoint. ``stop_after``: stop (keeping the checkpoint) once this many subjects are done.
    ``constraints``: a subject gets predictions for a relation only when its type fits the relation's domain
    (``"types"``: ``rdfs:domain`` or the head types seen in training; ``"observed"``: heads seen in training;
    ``"none"``: every subject), and objects must fit the range likewise. ``shard`` ``(I, N)`` or ``"I/N"``: rank
    only the I-th of N contiguous blocks of the subjects and write a shard file beside OUTPUT
    (:mod:`kgemb.connectors.rdf_shards`), which :func:`~kgemb.connectors.rdf_shards.merge` assembles.
    ``precision``: the arithmetic that picks candidates before they are scored exactly (``"fp32"``, ``"bf16"``,
    ``"int8"``); the output is the same.
    """
    started_clock = time.perf_counter()
    source_input, out, writer = _checked(
        source, output, k=k, min_score=min_score, fmt=fmt, mode=mode, in_place=in_place,
        checkpoint_every=checkpoint_every, batch_size=batch_size, stop_after=stop_after, run_time=run_time,
        precision=precision,
    )  # fmt: skip
    if shard is not None:
        from .rdf_shards import shard_output

        shard, out = shard_output(shard, out, in_place, _fixed_time(run_time))
    with locked(out, "OUTPUT"):  # a second run on the same OUTPUT is refused, never interleaved
        return _enrich_locked(
            source_input, out, writer, started_clock, model=model, relations=relations, subjects_of=subjects_of,
            k=k, min_score=min_score, mode=mode, with_embeddings=with_embeddings,
            only_predictions=only_predictions, resume=resume, checkpoint_every=checkpoint_every,
            stop_after=stop_after, run_time=run_time, batch_size=batch_size, progress=progress,
            constraints=constraints, shard=shard, precision=precision,
        )  # fmt: skip


def _enrich_locked(
    source_input: _Input, out: Path, writer: Writer, started_clock: float, *, model: Any, relations: Sequence[str],
    subjects_of: str | None, k: int, min_score: float, mode: str, with_embeddings: bool, only_predictions: bool,
    resume: bool, checkpoint_every: int, stop_after: int | None, run_time: str | datetime | None, batch_size: int,
    progress: bool, constraints: str, shard: tuple[int, int] | None = None, precision: str = "fp32",
) -> EnrichResult:  # fmt: skip
    """The job of :func:`enrich`, run while it holds the lock on OUTPUT."""
    fmt = writer.fmt
    trained, model_dir = _load_model(model)
    kg = trained.kg
    rel_ids = [_relation_id(kg, r) for r in relations]
    if not rel_ids:
        raise InputError("no relation given; pass --relation IRI (one or more)")
    rel_ids = list(dict.fromkeys(rel_ids))
    if subjects_of is not None:
        subjects_of = subjects_of.strip().removeprefix("<").removesuffix(">")
    index = _scan(source_input, kg, {kg.relations[r]: r for r in rel_ids}, subjects_of)
    if index.named_graphs and fmt not in QUAD_FORMATS and not only_predictions:
        raise InputError(
            f"{source_input.files[0][0]}: the input has statements in named graphs, which {fmt!r} cannot hold; "
            f"pass --format with one of {', '.join(QUAD_FORMATS)} (or --only-predictions)"
        )
    subjects, skipped = _subjects(kg, index, subjects_of, source_input)
    if shard is not None:  # whole batches, so each is the batch an unsharded run ranks
        from kgemb.distributed import shard_block

        start, stop = shard_block(len(subjects), shard, batch_size)
        subjects = subjects[start:stop]
    from kgemb.artifact import fingerprint as model_fingerprint

    fingerprint = model_fingerprint(trained)
    job = _job_id(
        source_input.digest(), fingerprint, [kg.relations[r] for r in rel_ids], subjects_of, k, min_score,
        fmt, mode, with_embeddings, only_predictions, constraints,
    )  # fmt: skip
    work = _work_dir(out)
    state = _start(work, job, resume, run_time, checkpoint_every, batch_size)
    run_hash = hashlib.sha256(f"{job} {state['started']}".encode()).hexdigest()[:24]
    run = Run(
        iri=f"<urn:kgemb:run:{run_hash}>",
        graph=f"<urn:kgemb:graph:{run_hash}>" if mode == "named-graph" else None,
        started=state["started"],
        ended=state["started"],
        model_fingerprint=fingerprint,
        kgemb_version=__version__,
        k=k,
        min_score=min_score,
    )
    resumed_from = state["subjects_done"]
    predictor = _predictor(trained, model_dir, constraints, precision)
    ranking_started = time.perf_counter()
    _rank(trained, predictor, subjects, rel_ids, index, writer, run, work, state, k, min_score, with_embeddings,
          stop_after, progress)  # fmt: skip
    seconds = time.perf_counter() - ranking_started
    result = EnrichResult(
        out, False, len(subjects), state["subjects_done"], state["predictions"], resumed_from, seconds,
        skipped=skipped,
    )  # fmt: skip
    if state["subjects_done"] < len(subjects):
        return result
    ended = state["fixed_time"] or _now()
    run = Run(**{**run.__dict__, "ended": ended})
    part = work / "predictions.part"
    if not part.is_file() or part.stat().st_size != state["part_bytes"]:
        raise InputError(
            f"the part file {part} changed under this run (another process wrote there); "
            "run the command again without --resume"
        )
    if shard is not None:
        from .rdf_shards import write_shard

        write_shard(out, part, shard, job=job, source_digest=source_input.digest(), run=run, writer=writer,
                    only_predictions=only_predictions, subjects=len(subjects), predictions=state["predictions"])  # fmt: skip
    else:
        result.statements_copied = _assemble(source_input, out, writer, run, [part], only_predictions)
    _remove_work(work)
    result.complete = True
    result.seconds = seconds if seconds > 0 else time.perf_counter() - started_clock
    return result


# ---------------------------------------------------------------------- checks
def check_arguments(
    source: str | os.PathLike | Sequence[str | os.PathLike], output: str | os.PathLike | None, **options: Any
) -> None:
    """Raise the error :func:`enrich` would raise for these arguments before any work (the command line calls
    it before training a model with ``--train``). Takes :func:`enrich`'s keyword arguments."""
    names = (
        "k",
        "min_score",
        "fmt",
        "mode",
        "in_place",
        "checkpoint_every",
        "batch_size",
        "stop_after",
        "run_time",
        "precision",
    )
    _checked(source, output, **{name: options[name] for name in names if name in options})


def _checked(
    source: Any,
    output: Any,
    *,
    k: int = 5,
    min_score: float = 0.0,
    fmt: str | None = None,
    mode: str = "reification",
    in_place: bool = False,
    checkpoint_every: int = DEFAULT_CHECKPOINT_EVERY,
    batch_size: int = DEFAULT_BATCH,
    stop_after: int | None = None,
    run_time: str | datetime | None = None,
    precision: str = "fp32",
) -> tuple[_Input, Path, Writer]:
    from kgemb.reasoning.scoring import check_precision

    check_precision(precision)
    source_input = _Input(source)
    out = _output_path(source_input, output, in_place)
    writer = Writer(output_format(out, fmt), mode)
    _check_numbers(k, min_score, checkpoint_every, batch_size, stop_after)
    _fixed_time(run_time)
    _check_writable(out)
    return source_input, out, writer


def _output_path(source: _Input, output: str | os.PathLike | None, in_place: bool) -> Path:
    inputs = [p.resolve() for p, _ in source.files]
    if output is None:
        if not in_place:
            raise InputError("no output file given; pass --out OUTPUT (or --in-place to replace INPUT)")
        if len(inputs) != 1:
            raise InputError("--in-place needs INPUT to be one file, not a folder or several files")
        return inputs[0]
    out = Path(output)
    if out.resolve() in inputs and not in_place:
        raise InputError(
            f"OUTPUT {out} is the INPUT file; kgemb never overwrites its input unless you pass --in-place"
        )
    if out.is_dir():
        raise InputError(f"OUTPUT {out} is a folder; give a file name such as {out / 'enriched.ttl'}")
    return check_output(out, "OUTPUT")


def _check_numbers(k: int, min_score: float, every: int, batch: int, stop_after: int | None) -> None:
    if not isinstance(k, int) or k <= 0:
        raise InputError(f"--k must be a positive number of predictions per subject and relation, not {k!r}")
    if not 0.0 <= float(min_score) <= 1.0:
        raise InputError(f"--min-score is a calibrated probability between 0 and 1, not {min_score!r}")
    if every <= 0 or batch <= 0:
        raise InputError(f"checkpoint interval ({every}) and batch size ({batch}) must be positive")
    if stop_after is not None and stop_after <= 0:
        raise InputError(f"--stop-after must be a positive number of subjects, not {stop_after!r}")


def _check_writable(out: Path) -> None:
    """Fail before any work when OUTPUT's folder is missing or not writable (probe with a temporary file)."""
    folder = out.parent
    if not folder.is_dir():
        raise InputError(f"cannot write OUTPUT {out}: the folder {folder} does not exist; create it first")
    try:
        fd, probe = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".probe", dir=folder)
    except OSError as exc:
        raise InputError(
            f"cannot write OUTPUT {out} ({exc.strerror or exc}); choose a writable location"
        ) from None
    os.close(fd)
    os.unlink(probe)
    if out.exists() and not os.access(out, os.W_OK):
        raise InputError(f"cannot write OUTPUT {out}: the file is read-only; choose another name")


def _load_model(model: Any) -> tuple[TrainedModel, Path | None]:
    """The model and its directory (where the predictor finds or saves its calibration)."""
    if isinstance(model, str | os.PathLike):
        path = Path(model)
        if not (path / "config.json").is_file():
            raise InputError(
                f"--model {model} is not a kgemb model directory (no config.json there); "
                "train one with `kgemb train INPUT --out DIR`, or pass --train"
            )
        from kgemb.artifact import load

        return load(path), path
    return model, None


def _relation_id(kg: Any, relation: str) -> int:
    """The model's id of a relation given by IRI (``<...>`` allowed) or label."""
    name = relation.strip()
    if name.startswith("<") and name.endswith(">"):
        name = name[1:-1]
    try:
        return kg.relation_id(name)
    except InputError:
        known = ", ".join(kg.relations[:20]) + (
            f" (and {kg.num_relations - 20} more)" if kg.num_relations > 20 else ""
        )
        raise InputError(f"the model does not know the relation {relation!r}; it knows: {known}") from None


def _subjects(kg: Any, index: _Index, subjects_of: str | None, source: _Input) -> tuple[np.ndarray, dict]:
    """Ids of the entities to enrich, sorted by key: IRIs the model knows that occur in INPUT (and are
    instances of ``subjects_of``); blank nodes are left out (their names do not outlive one file)."""
    keep = index.seen.copy()
    if index.members is not None:
        keep &= index.members
    ids = np.flatnonzero(keep)
    iri_ids = [i for i in ids.tolist() if not kg.entities[i].key.startswith("_:")]
    skipped = {"blank_nodes": len(ids) - len(iri_ids)}
    if subjects_of is not None and not iri_ids:
        raise InputError(
            f"no instance of {subjects_of!r} in {source.files[0][0]} is known to the model; "
            "check the class IRI (rdf:type objects), or train the model on this input"
        )
    if not iri_ids:
        raise InputError(
            f"no entity of {source.files[0][0]} is known to the model; give the model trained on this data, "
            "or train one with --train"
        )
    iri_ids.sort(key=lambda i: kg.entities[i].key)
    return np.asarray(iri_ids, dtype=np.int64), skipped


def _job_id(*parts: Any) -> str:
    """The identity of a job: input bytes, model and every option that changes the output."""
    return hashlib.sha256(json.dumps(parts, default=str).encode()).hexdigest()


# ---------------------------------------------------------------------- checkpoint
def _work_dir(out: Path) -> Path:
    """Where the part file and checkpoint of a run on ``out`` live (hidden, beside OUTPUT)."""
    return out.parent / f".{out.name}.kgemb-enrich"


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _fixed_time(run_time: str | datetime | None) -> str | None:
    """The provenance time the caller fixed (``run_time``, else ``SOURCE_DATE_EPOCH``), None for "now"."""
    if run_time is None:
        epoch = os.environ.get("SOURCE_DATE_EPOCH")
        if not epoch:
            return None
        try:
            run_time = datetime.fromtimestamp(int(epoch), UTC)
        except (ValueError, OverflowError, OSError):
            raise InputError(
                f"SOURCE_DATE_EPOCH={epoch!r} is not a number of seconds since 1970; fix or unset it"
            ) from None
    if isinstance(run_time, str):
        try:
            run_time = datetime.fromisoformat(run_time.strip())
        except ValueError:
            raise InputError(
                f"--run-time {run_time!r} is not an ISO 8601 time; write it like 2024-05-01T12:00:00Z"
            ) from None
    if run_time.tzinfo is None:
        run_time = run_time.replace(tzinfo=UTC)
    return run_time.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _write_json(path: Path, doc: dict) -> None:
    write_atomic(path, json.dumps(doc, indent=1).encode("utf-8"), fsync=True)


def _start(
    work: Path, job: str, resume: bool, run_time: str | datetime | None, every: int, batch: int
) -> dict[str, Any]:
    """The run's state: continued from the checkpoint (``resume``) or new, with an empty part file."""
    fixed = _fixed_time(run_time)
    checkpoint = work / "checkpoint.json"
    part = work / "predictions.part"
    if resume and checkpoint.is_file():
        try:
            state = json.loads(checkpoint.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise InputError(
                f"the checkpoint {checkpoint} cannot be read ({exc}); run without --resume"
            ) from None
        if state.get("format") != CHECKPOINT_FORMAT or state.get("job") != job:
            raise InputError(
                f"the checkpoint in {work} belongs to a run with other input, model or options; "
                "rerun without --resume to start over, or with the same arguments to continue"
            )
        if not part.is_file() or part.stat().st_size < state["part_bytes"]:
            raise InputError(
                f"the part file {part} is missing or short; rerun without --resume to start over"
            )
        with open(part, "r+b") as f:
            f.truncate(state["part_bytes"])
        state["checkpoint_every"] = every
        return state
    if work.exists():
        _remove_work(work)
    work.mkdir()
    part.write_bytes(b"")
    state = {
        "format": CHECKPOINT_FORMAT,
        "job": job,
        "started": fixed or _now(),
        "fixed_time": fixed,
        "batch_size": batch,
        "checkpoint_every": every,
        "subjects_done": 0,
        "predictions": 0,
        "part_bytes": 0,
    }
    _write_json(checkpoint, state)
    return state


def _remove_work(work: Path) -> None:
    for name in ("checkpoint.json", "predictions.part"):
        (work / name).unlink(missing_ok=True)
    for leftover in work.glob(".*.tmp"):
        leftover.unlink(missing_ok=True)
    work.rmdir()


# ---------------------------------------------------------------------- step 2: rank
def _rank(
    model: TrainedModel,
    predictor: Any,
    subjects: np.ndarray,
    rel_ids: list[int],
    index: _Index,
    writer: Writer,
    run: Run,
    work: Path,
    state: dict[str, Any],
    k: int,
    min_score: float,
    with_embeddings: bool,
    stop_after: int | None,
    progress: bool,
) -> None:
    """Predictions for every subject not yet done, batch by batch (batches fixed by position, so a resumed
    run computes exactly what an uninterrupted one would), appended to the part file with checkpoints."""
    from tqdm import tqdm

    n = len(subjects)
    done = state["subjects_done"]
    if done >= n:
        return
    kg = model.kg
    batch = state["batch_size"]
    every = state["checkpoint_every"]
    vectors = model.entity_vectors() if with_embeddings else None
    terms = _EntityTerms(kg)
    render = writer.predictions(run)
    relation_terms = {r: iri(kg.relations[r]) for r in rel_ids}
    # a subject whose type the relation's domain excludes gets no predictions for it (None: every subject)
    subject_ok = {r: predictor.constraints.mask(r, "head") for r in rel_ids}
    first = done
    last_checkpoint = done

    def write(
        ids: np.ndarray, asserted: dict[int, list[np.ndarray]], tops: dict, end: int, stopping: bool
    ) -> None:
        """Render one batch's predictions, append them to the part file, checkpoint (the writer thread)."""
        nonlocal last_checkpoint
        chunks: list[str] = []
        count = 0
        for row, s in enumerate(ids.tolist()):
            s_term = terms[s]
            for r in rel_ids:
                if subject_ok[r] is not None and not subject_ok[r][s]:
                    continue
                objects, scores = tops[r]
                known = asserted[r][row]
                rank = 0
                for o, p in zip(objects[row].tolist(), scores[row].tolist(), strict=True):
                    if o < 0 or not p >= min_score:
                        break
                    if o == s or terms.blank[o] or (len(known) and o in known):
                        continue
                    rank += 1
                    chunks.append(render(s_term, relation_terms[r], terms[o], p, rank))
                    if rank == k:
                        break
                count += rank
            if vectors is not None:
                triples = [(s_term, iri(KGEMB + "embedding"), vector_literal(vectors[s]))]
                chunks.append(writer.block(triples, run.graph))
        part.write("".join(chunks).encode("utf-8"))
        state["predictions"] += count
        bar.update(len(ids))
        if end == n or stopping or end - last_checkpoint >= every:
            part.flush()
            os.fsync(part.fileno())
            state["subjects_done"] = end
            state["part_bytes"] = part.tell()
            _write_json(work / "checkpoint.json", state)
            last_checkpoint = end

    bar = tqdm(total=n, initial=done, unit=" subjects", desc="enrich", disable=None if progress else True)
    # the next batch is scored while the writer thread renders and writes the last one (torch releases the GIL)
    with open(work / "predictions.part", "ab") as part, bar, ThreadPoolExecutor(max_workers=1) as pool:
        pending: Future | None = None
        for start in range(done, n, batch):
            ids = subjects[start : start + batch]
            asserted = {r: [index.asserted.tails_of(s, r) for s in ids.tolist()] for r in rel_ids}
            tops = {r: _top_tails(predictor, ids, r, k, asserted[r]) for r in rel_ids}
            end = start + len(ids)
            stopping = stop_after is not None and end - first >= stop_after
            if pending is not None:
                pending.result()
            pending = pool.submit(write, ids, asserted, tops, end, stopping)
            if stopping:
                break
        if pending is not None:
            pending.result()


def _predictor(
    model: TrainedModel, model_dir: Path | None, constraints: str = "types", precision: str = "fp32"
) -> Any:
    """The LinkPredictor, calibrated now (loaded from the model folder, or fitted on the validation split and
    saved there), so the ranking loop only ranks."""
    from kgemb.reasoning import LinkPredictor

    predictor = LinkPredictor(model, directory=model_dir, constraints=constraints, precision=precision)
    _ = predictor.calibration
    return predictor


class _EntityTerms:
    """N-Triples terms of entities, made on first use, and which entities are blank nodes."""

    def __init__(self, kg: Any) -> None:
        self._entities = kg.entities
        self._terms: dict[int, str] = {}
        self.blank = np.fromiter(
            (e.key.startswith("_:") for e in kg.entities), dtype=bool, count=kg.num_entities
        )

    def __getitem__(self, i: int) -> str:
        term = self._terms.get(i)
        if term is None:
            term = self._terms[i] = iri(self._entities[i].key)
        return term


def _top_tails(
    predictor: Any, heads: np.ndarray, relation: int, k: int, asserted: list[np.ndarray]
) -> tuple[np.ndarray, np.ndarray]:
    """Best tails of ``(head, relation)`` for every head, with calibrated scores and the model graph's known
    links left out; enough of them that ``k`` remain after dropping the head itself and the links ``asserted``
    in INPUT."""
    extra = max((len(a) for a in asserted), default=0)
    return predictor.top_tails(heads, relation, k + extra + 1)


# ---------------------------------------------------------------------- step 3: assemble OUTPUT
def _assemble(
    source: _Input, out: Path, writer: Writer, run: Run, parts: Sequence[Path], only_predictions: bool
) -> int:
    """Write OUTPUT: the run's provenance, the asserted statements, then the predictions (the ``parts`` files, in
    order); temporary file, then rename. Returns the number of asserted statements copied."""
    copied = 0

    def write(f: BinaryIO) -> None:
        nonlocal copied
        f.write((writer.begin() + writer.block(run.triples(), first=True)).encode("utf-8"))
        if not only_predictions:
            pending: list[str] = []
            for s, p, o, g in source.statements():
                pending.append(writer.statement(s, p, o, g))
                if len(pending) >= 4096:
                    f.write("".join(pending).encode("utf-8"))
                    pending.clear()
                copied += 1
            f.write("".join(pending).encode("utf-8"))
        for path in parts:
            with open(path, "rb") as part:
                while chunk := part.read(1 << 20):
                    f.write(chunk)
        f.write(writer.end().encode("utf-8"))

    write_atomic(out, write, fsync=True)
    return copied
