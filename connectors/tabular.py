"""Read triple tables into a :class:`kgemb.KnowledgeGraph`: a folder of ``train.txt`` / ``valid.txt`` / ``test.txt``
(the layout of WN18RR and most link-prediction benchmarks), or a dataset bundled with PyKEEN (``pykeen:UMLS``).

The given splits are kept. Entities and relations are numbered in first-seen order (train, then valid, then test,
then entities that only appear in the text files); PyKEEN datasets keep PyKEEN's own ids.
"""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Iterator
from pathlib import Path

from kgemb.errors import InputError
from kgemb.graph import SPLITS, GraphBuilder, KnowledgeGraph

#: PyKEEN datasets that ship inside the pykeen wheel (no download), by lower-case name.
PYKEEN_DATASETS: dict[str, str] = {"umls": "UMLS", "nations": "Nations", "kinships": "Kinships"}
_SUFFIXES = (".txt", ".tsv", ".csv")


def load(path_or_name: str | os.PathLike, *, label_separator: str | None = None) -> KnowledgeGraph:
    """Load a triple-table folder (or a single triple file, all train) or ``pykeen:<Name>``.

    A folder holds ``train.txt`` and optionally ``valid.txt`` / ``test.txt`` (head, relation, tail; tab- or
    comma-separated) and the text files ``entity2text.tsv`` (key, label[, description]), ``entity2textlong.tsv``
    (key, description) and ``relation2text.tsv`` (key, label). ``label_separator`` (e.g. ``", "`` for WN18RR's
    ``"lemma, gloss"`` texts) splits a two-column ``entity2text.tsv`` text into label and description at its
    first occurrence.
    """
    text = os.fspath(path_or_name)
    if text.lower().startswith("pykeen:"):
        return _load_pykeen(text.split(":", 1)[1])
    path = Path(text)
    if path.is_dir():
        return _load_folder(path, label_separator)
    if path.is_file():
        builder = GraphBuilder()
        _read_triples(path, builder, "train")
        return builder.build({"source": str(path), "format": "triple table"})
    raise InputError(
        f"{text} is neither a triple-table folder, a triple file, nor pykeen:<name> "
        f"(bundled: {', '.join('pykeen:' + v for v in PYKEEN_DATASETS.values())}); check the path"
    )


def _split_file(folder: Path, split: str) -> Path | None:
    for suffix in _SUFFIXES:
        candidate = folder / f"{split}{suffix}"
        if candidate.is_file():
            return candidate
    return None


def _load_folder(folder: Path, label_separator: str | None) -> KnowledgeGraph:
    train = _split_file(folder, "train")
    if train is None:
        raise InputError(
            f"{folder} has no train.txt; a triple-table folder needs train.txt (head, relation, tail per line) "
            "and optionally valid.txt and test.txt"
        )
    builder = GraphBuilder()
    for split in SPLITS:
        file = train if split == "train" else _split_file(folder, split)
        if file is not None:
            _read_triples(file, builder, split)
    texts = {}
    for name, kind in (("entity2text", "label"), ("entity2textlong", "description")):
        file = folder / f"{name}.tsv"
        if file.is_file():
            texts[name] = _read_entity_texts(file, builder, kind, label_separator)
    relation_file = folder / "relation2text.tsv"
    if relation_file.is_file():
        for _, row in _rows(relation_file, min_columns=2, max_columns=2, what="relation, label"):
            if builder.has_relation(row[0]):
                builder.add_relation(row[0], {"": [row[1]]})
    meta = {"source": str(folder), "format": "triple table", "texts": texts}
    if label_separator is not None:
        meta["label_separator"] = label_separator
    return builder.build(meta)


def _read_triples(file: Path, builder: GraphBuilder, split: str) -> None:
    add = builder.add_triple
    for _, row in _rows(file, min_columns=3, max_columns=3, what="head, relation, tail"):
        add(row[0], row[1], row[2], split)


def _read_entity_texts(file: Path, builder: GraphBuilder, kind: str, label_separator: str | None) -> int:
    count = 0
    for _, row in _rows(file, min_columns=2, max_columns=3, what="entity, text[, description]"):
        key, text = row[0], row[1]
        if len(row) == 3:
            builder.add_label(key, text, "", kind)
            builder.add_label(key, row[2], "", "description")
        elif kind == "label" and label_separator and label_separator in text:
            label, description = text.split(label_separator, 1)
            builder.add_label(key, label, "", "label")
            builder.add_label(key, description, "", "description")
        else:
            builder.add_label(key, text, "", kind)
        count += 1
    return count


def _decoded_lines(file: Path) -> Iterator[tuple[int, str]]:
    """(line number, text) of a UTF-8 file, with an InputError naming the line when a line is not UTF-8."""
    with open(file, "rb") as f:
        for number, raw in enumerate(f, 1):
            try:
                yield number, raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise InputError(
                    f"{file}:{number}: not UTF-8 (byte {raw[exc.start]:#04x} at column {exc.start + 1}); "
                    "re-save the file as UTF-8"
                ) from None


def _rows(file: Path, *, min_columns: int, max_columns: int, what: str) -> Iterator[tuple[int, list[str]]]:
    """Non-empty rows of a tab- or comma-separated file (the first line decides; commas follow CSV quoting)."""
    lines = _decoded_lines(file)
    first = next(((n, line) for n, line in lines if line.strip()), None)
    if first is None:
        raise InputError(f"{file} is empty; it should hold one ({what}) row per line")
    delimiter = "\t" if "\t" in first[1] else ","
    seen = False
    for number, line in _chain_first(first, lines):
        line = line.rstrip("\r\n")
        if not line.strip():
            continue
        if delimiter == "\t":
            row = [field.strip() for field in line.split("\t")]
        else:
            row = [field.strip() for field in next(csv.reader(io.StringIO(line)))]
        if not (min_columns <= len(row) <= max_columns) or not all(row[:min_columns]):
            expected = str(min_columns) if min_columns == max_columns else f"{min_columns} to {max_columns}"
            sep = "tab" if delimiter == "\t" else "comma"
            raise InputError(
                f"{file}:{number}: expected {expected} {sep}-separated columns ({what}), found {len(row)} "
                f"non-empty: {line[:80]!r}; fix that line"
            )
        seen = True
        yield number, row
    if not seen:
        raise InputError(f"{file} is empty; it should hold one ({what}) row per line")


def _chain_first(first: tuple[int, str], rest: Iterator[tuple[int, str]]) -> Iterator[tuple[int, str]]:
    yield first
    yield from rest


def shared_data_dir() -> Path | None:
    """The shared benchmark data folder: ``$KGEMB_SHARED_DATA``, else ``<repo>/../shared/data``; None if absent."""
    env = os.environ.get("KGEMB_SHARED_DATA")
    candidates = [Path(env)] if env else []
    candidates.append(Path(__file__).resolve().parents[1].parent / "shared" / "data")
    return next((c for c in candidates if c.is_dir()), None)


def _load_pykeen(name: str) -> KnowledgeGraph:
    """A dataset bundled in the pykeen wheel, with PyKEEN's splits and ids, plus UMLS texts from the shared data."""
    cls_name = PYKEEN_DATASETS.get(name.strip().lower())
    if cls_name is None:
        raise InputError(
            f"pykeen:{name} is not a bundled dataset; use one of "
            f"{', '.join('pykeen:' + v for v in PYKEEN_DATASETS.values())} (others need a download)"
        )
    import pykeen.datasets

    dataset = getattr(pykeen.datasets, cls_name)()
    factory = dataset.training
    builder = GraphBuilder()
    for key, _ in sorted(factory.entity_to_id.items(), key=lambda kv: kv[1]):
        builder.add_entity(key)
    for key, _ in sorted(factory.relation_to_id.items(), key=lambda kv: kv[1]):
        builder.add_relation(key)
    for split, tf in (("train", dataset.training), ("valid", dataset.validation), ("test", dataset.testing)):
        for h, r, t in tf.mapped_triples.tolist():
            builder.add_triple_ids(h, r, t, split)
    meta: dict = {"source": f"pykeen:{cls_name}", "format": "pykeen"}
    shared = shared_data_dir()
    text_dir = shared / cls_name.lower() if shared else None
    if text_dir is not None and (text_dir / "entity2text.tsv").is_file():
        for name_, kind in (("entity2text", "label"), ("entity2textlong", "description")):
            file = text_dir / f"{name_}.tsv"
            if file.is_file():
                for _, row in _rows(file, min_columns=2, max_columns=2, what="entity, text"):
                    if builder.has_entity(row[0]):
                        builder.add_label(row[0], row[1], "", kind)
        relation_file = text_dir / "relation2text.tsv"
        if relation_file.is_file():
            for _, row in _rows(relation_file, min_columns=2, max_columns=2, what="relation, label"):
                if builder.has_relation(row[0]):
                    builder.add_relation(row[0], {"": [row[1]]})
        meta["texts"] = str(text_dir)
    return builder.build(meta)
