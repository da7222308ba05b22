"""Kill -9 at random moments during `kgemb train --out`, `kgemb enrich` and `kgemb neo4j push`, then rerun.

For each operation: one uninterrupted run gives the reference; then, at least ``--kills`` times, the same command is
started, killed with SIGKILL after a random delay (uniform over the reference run's duration), the state it left is
inspected, and the command is run again as a user would (`--resume` for train and enrich; push as it was). Outcomes:

- after the kill: ``nothing`` (no output yet, or only the work/checkpoint files), ``complete`` (the output is there
  and identical to the reference), ``HALF`` (an output a reader can see that is incomplete or different: a failure);
- after the rerun: ``identical`` (same model content / same bytes / same database state as the reference),
  ``refused`` (exit 2 with a one-line message), ``DIFFERENT`` or ``CRASHED`` (failures).

Runs are tiny (a 300-entity typed graph, structure mode, a few epochs) so 60+ kills fit in minutes; run it with
``nice``. Each command is `kgemb.cli.main` in a process forked from this warm interpreter (torch, PyKEEN and rdflib
already imported, one thread, no torch work done before the fork), so a trial costs the command's work, not the
7 CPU-seconds of imports a fresh `kgemb` spends; the kill is the same SIGKILL to that process. The Neo4j part
starts the dev server (connectors/neo4j) unless ``KGEMB_NEO4J_URI`` is set.

    nice -n 10 .venv/bin/python benchmarks/faults.py --kills 20 --out benchmarks/results/faults.md
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import resource
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

KGEMB = str(Path(sys.executable).with_name("kgemb"))
EX = "http://example.org/faults/"
RUN_TIME = "2024-05-01T12:00:00Z"
TRAIN_OPTIONS = ["--mode", "structure", "--interaction", "transe", "--dim", "32", "--epochs", "8",
                 "--checkpoint-every", "1", "--no-early-stopping", "--seed", "0", "--quiet"]  # fmt: skip


def build_graph(path: Path, diseases: int = 200, symptoms: int = 100, seed: int = 0) -> None:
    """A typed symptom graph: diseases with 3-6 symptoms each, labels, rdf:type; written as N-Triples."""
    rnd = random.Random(seed)
    lines = []
    for s in range(symptoms):
        lines.append(f"<{EX}s{s}> <http://www.w3.org/1999/02/22-rdf-syntax-ns#type> <{EX}Symptom> .")
        lines.append(f'<{EX}s{s}> <http://www.w3.org/2000/01/rdf-schema#label> "symptom {s}"@en .')
    for d in range(diseases):
        lines.append(f"<{EX}d{d}> <http://www.w3.org/1999/02/22-rdf-syntax-ns#type> <{EX}Disease> .")
        lines.append(f'<{EX}d{d}> <http://www.w3.org/2000/01/rdf-schema#label> "disease {d}"@en .')
        for s in rnd.sample(range(symptoms), rnd.randint(3, 6)):
            lines.append(f"<{EX}d{d}> <{EX}hasSymptom> <{EX}s{s}> .")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def _fork(argv: list[str], log: Path) -> int:
    """``kgemb ARGS`` (``argv[0]`` is the kgemb script) in a forked child, stdout and stderr to ``log``; its pid."""
    pid = os.fork()
    if (
        pid == 0
    ):  # the child: the command line's own entry point, then exit without running the parent's cleanup
        code = 70
        try:
            fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            os.dup2(fd, 1)
            os.dup2(fd, 2)
            sys.stdout = open(1, "w", closefd=False)  # noqa: SIM115
            sys.stderr = open(2, "w", closefd=False)  # noqa: SIM115
            sys.argv = ["kgemb", *argv[1:]]
            from kgemb.cli import main as cli_main

            code = cli_main(argv[1:])
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
        except BaseException:
            import traceback

            traceback.print_exc()
            code = 1
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)
    return pid


def _wait(pid: int, timeout: float) -> int | None:
    """The child's exit code, or None when it still runs after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        if time.monotonic() >= deadline:
            return None
        time.sleep(0.02)


def run(argv: list[str], timeout: float = 900) -> subprocess.CompletedProcess:
    """Run ``kgemb ARGS`` to the end (forked); stdout and stderr together in ``stderr``."""
    with tempfile.NamedTemporaryFile(suffix=".log") as log:
        pid = _fork(argv, Path(log.name))
        code = _wait(pid, timeout)
        if code is None:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            code = -9
        text = Path(log.name).read_text(encoding="utf-8", errors="replace")
    return subprocess.CompletedProcess(argv, code, "", text)


def killed_run(argv: list[str], delay: float) -> bool:
    """Start ``argv``, SIGKILL it after ``delay`` seconds; True when it was killed (False: it ended first)."""
    with tempfile.NamedTemporaryFile(suffix=".log") as log:
        pid = _fork(argv, Path(log.name))
        if _wait(pid, delay) is not None:
            return False
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        return True


def warm_up() -> None:
    """Import what the commands import, without doing any torch work (a fork after OpenMP started can hang)."""
    import torch

    torch.set_num_threads(1)
    import importlib

    for module in ("kgemb.artifact", "kgemb.cli", "kgemb.training", "kgemb.connectors.rdf", "kgemb.connectors.neo4j",
                   "kgemb.reasoning.predictor", "kgemb.reasoning.calibration", "pykeen.models", "rdflib", "neo4j"):  # fmt: skip
        importlib.import_module(module)


def rerun_outcome(proc: subprocess.CompletedProcess, same: Callable[[], bool]) -> str:
    if (
        proc.returncode == 2
        and proc.stderr.strip().startswith("kgemb: error:")
        and "Traceback" not in proc.stderr
    ):
        return "refused"
    if proc.returncode != 0:
        return "CRASHED"
    return "identical" if same() else "DIFFERENT"


# ---------------------------------------------------------------------------------------------------- operations
class Train:
    name = "train --out"

    def __init__(self, work: Path, graph: Path) -> None:
        self.work, self.graph = work, graph
        reference = work / "train-ref"
        began = (
            time.perf_counter()
        )  # (the model the other operations use was trained just before: warm caches)
        proc = run([KGEMB, "train", str(graph), "--out", str(reference), *TRAIN_OPTIONS])
        self.seconds = time.perf_counter() - began
        assert proc.returncode == 0, proc.stderr
        self.reference = self.fingerprint(reference)
        self.trial = 0

    @staticmethod
    def fingerprint(folder: Path) -> str:
        """The model's content fingerprint, computed in a forked child (the parent does no torch work)."""
        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(read)
            try:
                import kgemb
                from kgemb.artifact import fingerprint

                os.write(write, fingerprint(kgemb.load(folder)).encode())
            except BaseException as exc:
                os.write(write, f"ERROR {type(exc).__name__}".encode())
            finally:
                os._exit(0)
        os.close(write)
        with os.fdopen(read, "rb") as pipe:
            answer = pipe.read().decode()
        os.waitpid(pid, 0)
        return answer

    def argv(self) -> list[str]:
        return [KGEMB, "train", str(self.graph), "--out", str(self.out), *TRAIN_OPTIONS, "--resume"]

    def start(self) -> list[str]:
        self.trial += 1
        self.out = self.work / f"train-{self.trial}"
        return self.argv()

    def after_kill(self) -> str:
        if not (self.out / "config.json").exists():
            return "nothing"
        # a visible model that does not load (fingerprint "ERROR ...") is exactly the failure this counts
        return "complete" if self.fingerprint(self.out) == self.reference else "HALF"

    def rerun(self) -> str:
        return rerun_outcome(run(self.argv()), lambda: self.fingerprint(self.out) == self.reference)


class Enrich:
    name = "enrich"

    def __init__(self, work: Path, graph: Path, model: Path) -> None:
        self.work, self.graph, self.model = work, graph, model
        self.out = work / "enriched.nt"
        reference = work / "enrich-ref.nt"
        assert run(self.argv(reference)).returncode == 0  # the first run also fits and saves the calibration
        reference.unlink()
        began = time.perf_counter()
        proc = run(self.argv(reference))
        self.seconds = time.perf_counter() - began
        assert proc.returncode == 0, proc.stderr
        self.reference = reference.read_bytes()

    def argv(self, out: Path) -> list[str]:
        return [KGEMB, "enrich", str(self.graph), "--model", str(self.model), "--relation", EX + "hasSymptom",
                "--k", "3", "--out", str(out), "--run-time", RUN_TIME, "--checkpoint-every", "64", "--quiet",
                "--resume"]  # fmt: skip

    def start(self) -> list[str]:
        self.out.unlink(missing_ok=True)
        return self.argv(self.out)

    def after_kill(self) -> str:
        if not self.out.exists():
            return "nothing"
        return "complete" if self.out.read_bytes() == self.reference else "HALF"

    def rerun(self) -> str:
        return rerun_outcome(run(self.argv(self.out)), lambda: self.out.read_bytes() == self.reference)


class Push:
    name = "neo4j push"

    def __init__(self, work: Path, model: Path, uri: str, auth: tuple[str, str] | None) -> None:
        from neo4j import GraphDatabase

        self.model, self.uri = model, uri
        self.driver = GraphDatabase.driver(uri, auth=auth)
        self.clear()
        began = time.perf_counter()
        proc = run(self.argv())
        self.seconds = time.perf_counter() - began
        assert proc.returncode == 0, proc.stderr
        self.reference = self.state()

    def argv(self) -> list[str]:
        return [KGEMB, "neo4j", "push", str(self.model), "--uri", self.uri, "--quiet", "--batch-size", "50"]

    def clear(self) -> None:
        with self.driver.session() as session:
            session.run("MATCH (n) DETACH DELETE n").consume()
            for kind, show in (("CONSTRAINT", "SHOW CONSTRAINTS YIELD name RETURN name"),
                               ("INDEX", "SHOW INDEXES YIELD name, type WHERE type <> 'LOOKUP' RETURN name")):  # fmt: skip
                for name in session.run(show).value("name"):
                    session.run(f"DROP {kind} `{name}` IF EXISTS").consume()

    def state(self) -> tuple[str, bool]:
        """A digest of what a reader sees (every node's key, labels and vector; indexes; the model node without its
        timestamp) and whether the model node says the push completed."""
        with self.driver.session() as session:
            nodes = sorted(
                json.dumps(r, sort_keys=True, default=str)
                for r in session.run(
                    "MATCH (n) WHERE NOT n:KgembModel RETURN labels(n) AS labels, properties(n) AS p"
                ).data()
            )
            models = session.run("MATCH (m:KgembModel) RETURN properties(m) AS p").data()
            indexes = session.run(
                "SHOW INDEXES YIELD name, state WHERE name <> '' RETURN name, state ORDER BY name"
            ).data()
        props = [{k: v for k, v in m["p"].items() if k not in ("updated_at", "pushed_at")} for m in models]
        complete = len(props) == 1 and props[0].get("complete") is True
        doc = json.dumps([nodes, props, indexes], sort_keys=True, default=str)
        return hashlib.sha256(doc.encode()).hexdigest(), complete

    def start(self) -> list[str]:
        self.clear()
        return self.argv()

    def after_kill(self) -> str:
        digest, complete = self.state()
        if not complete:
            return (
                "nothing"  # the model node says incomplete (or is absent): readers know not to trust it yet
            )
        return "complete" if digest == self.reference[0] else "HALF"

    def rerun(self) -> str:
        return rerun_outcome(run(self.argv()), lambda: self.state() == self.reference)


# ---------------------------------------------------------------------------------------------------- the loop
def trials(op: object, kills: int, rnd: random.Random, limit_s: float) -> dict[str, Counter]:
    after, rerun = Counter(), Counter()
    began = time.perf_counter()
    attempts = 0
    while after.total() < kills and attempts < kills * 10 and time.perf_counter() - began < limit_s:
        attempts += 1
        argv = op.start()
        delay = rnd.uniform(0.0, op.seconds)
        if not killed_run(argv, delay):
            rerun["ended before the kill"] += 1
            continue
        after[op.after_kill()] += 1
        rerun[op.rerun()] += 1
        print(f"  {op.name}: kill at {delay:5.2f} s -> {dict(after)} / {dict(rerun)}", flush=True)
    return {"after kill": after, "after rerun": rerun}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kills", type=int, default=20, help="SIGKILLs per operation (default 20)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--only", choices=("train", "enrich", "push"), action="append")
    parser.add_argument("--limit-minutes", type=float, default=6.0, help="per operation")
    parser.add_argument("--out", type=Path, help="write the report (Markdown) here")
    args = parser.parse_args(argv)
    only = set(args.only or ("train", "enrich", "push"))
    rnd = random.Random(args.seed)
    warm_up()
    wall0, cpu0 = time.perf_counter(), resource.getrusage(resource.RUSAGE_CHILDREN)
    results: dict[str, dict[str, Counter]] = {}
    seconds: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="kgemb-faults-") as tmp:
        work = Path(tmp)
        os.environ.setdefault("KGEMB_CACHE_DIR", str(work / "cache"))
        graph = work / "graph.nt"
        build_graph(graph)
        model = work / "model"
        proc = run([KGEMB, "train", str(graph), "--out", str(model), *TRAIN_OPTIONS])
        assert proc.returncode == 0, proc.stderr
        ops: list[object] = []
        if "train" in only:
            ops.append(Train(work, graph))
        if "enrich" in only:
            ops.append(Enrich(work, graph, model))
        server = None
        if "push" in only:
            uri = os.environ.get("KGEMB_NEO4J_URI")
            auth = None
            if uri:
                password = os.environ.get("NEO4J_PASSWORD")
                auth = (os.environ.get("NEO4J_USERNAME", "neo4j"), password) if password else None
            else:
                from kgemb.connectors.neo4j_dev import DevServer

                server = DevServer(data_dir=work / "neo4j")
                server.start(timeout=900)  # a loaded machine starts Java slowly
                uri = server.uri
            ops.append(Push(work, model, uri, auth))
        try:
            for op in ops:
                seconds[op.name] = op.seconds
                print(f"{op.name}: uninterrupted run {op.seconds:.1f} s", flush=True)
                results[op.name] = trials(op, args.kills, rnd, args.limit_minutes * 60)
        finally:
            if server is not None:
                server.stop()
    cpu1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    wall = time.perf_counter() - wall0
    cpu = (cpu1.ru_utime - cpu0.ru_utime) + (cpu1.ru_stime - cpu0.ru_stime)
    lines = [
        "| operation | uninterrupted run | kills | after the kill | after the rerun | failures |",
        "|---|---|---|---|---|---|",
    ]
    for name, counts in results.items():
        after, rerun = counts["after kill"], counts["after rerun"]
        failures = after["HALF"] + rerun["DIFFERENT"] + rerun["CRASHED"]
        fmt = lambda c: ", ".join(f"{k} {v}" for k, v in sorted(c.items())) or "-"  # noqa: E731
        lines.append(
            f"| `kgemb {name}` | {seconds[name]:.1f} s | {after.total()} | {fmt(after)} | {fmt(rerun)} | {failures} |"
        )
    lines.append("")
    lines.append(f"wall {wall / 60:.1f} min, CPU {cpu / 60:.1f} min (children), seed {args.seed}")
    report = "\n".join(lines)
    print(report)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(
            "# kill -9 during train, enrich and push, then rerun\n\n"
            f"`nice -n 10 .venv/bin/python benchmarks/faults.py {' '.join(sys.argv[1:] if argv is None else argv)}`\n\n"
            + report
            + "\n",
            encoding="utf-8",
        )
    bad = sum(
        c["after kill"]["HALF"] + c["after rerun"]["DIFFERENT"] + c["after rerun"]["CRASHED"]
        for c in results.values()
    )
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
