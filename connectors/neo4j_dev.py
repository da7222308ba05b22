"""The Neo4j 5 dev/test server: build the Maven project under ``connectors/neo4j/`` (the launcher and kgemb's
procedures plugin, ``target/kgemb-neo4j-plugin.jar``) and run it; the dev server loads the procedures.

The launcher is Neo4j's own test harness in one JVM, Bolt on 127.0.0.1 only. The test suite starts it through
:class:`DevServer`; ``make neo4j`` (``python -m kgemb.connectors.neo4j_dev``) runs it in the foreground.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import TracebackType

from kgemb.errors import ConfigError, DependencyError

MAVEN_PROJECT = Path(__file__).resolve().parent / "neo4j"
JAR = MAVEN_PROJECT / "target" / "kgemb-neo4j.jar"
#: the plugin for a user's own Neo4j 5.26 server: copy it into the server's plugins/ folder
PLUGIN_JAR = MAVEN_PROJECT / "target" / "kgemb-neo4j-plugin.jar"
HOST = "127.0.0.1"
READY = "kgemb-neo4j ready"
MIN_JAVA = 17


def _java_major(java: str) -> int:
    out = subprocess.run([java, "-version"], capture_output=True, text=True, check=False)
    match = re.search(r'version "(\d+)(?:\.(\d+))?', out.stderr + out.stdout)
    if not match:
        return 0
    major = int(match.group(1))
    return int(match.group(2) or 0) if major == 1 else major


def java_executable() -> str:
    """The ``java`` to run the server with (``$JAVA_HOME/bin/java`` first); Java 17 or newer."""
    home = os.environ.get("JAVA_HOME")
    java = str(Path(home) / "bin" / "java") if home and (Path(home) / "bin" / "java").exists() else None
    java = java or shutil.which("java")
    if not java:
        raise DependencyError(
            "Java is not installed: the Neo4j dev server needs Java 17 or newer "
            "(Debian/Ubuntu: apt-get install openjdk-17-jdk-headless maven), or set KGEMB_NEO4J_URI to a running Neo4j 5"
        )
    major = _java_major(java)
    if major < MIN_JAVA:
        raise DependencyError(
            f"{java} is Java {major or 'of unknown version'}: the Neo4j dev server needs Java {MIN_JAVA} or newer; "
            "install it and point JAVA_HOME at it"
        )
    return java


def _stale(jar: Path, project: Path) -> bool:
    if not jar.exists() or not (jar.parent / "lib").is_dir() or not (jar.parent / PLUGIN_JAR.name).exists():
        return True
    built = jar.stat().st_mtime
    sources = [project / "pom.xml", *(project / "src").rglob("*")]
    return any(p.is_file() and p.stat().st_mtime > built for p in sources)


def ensure_built(project: Path = MAVEN_PROJECT) -> Path:
    """Build the launcher jar with Maven when it is missing or older than its sources; return its path."""
    jar = project / "target" / "kgemb-neo4j.jar"
    if not (project / "pom.xml").exists():
        raise DependencyError(
            f"the Neo4j launcher's Maven project is not at {project}: run the dev server from a clone of the "
            "kgemb repository, or set KGEMB_NEO4J_URI to a running Neo4j 5"
        )
    if not _stale(jar, project):
        return jar
    java_executable()
    mvn = shutil.which("mvn")
    if not mvn:
        raise DependencyError(
            "Maven is not installed: it builds the Neo4j dev server (Debian/Ubuntu: apt-get install maven), "
            "or set KGEMB_NEO4J_URI to a running Neo4j 5"
        )
    proc = subprocess.run(
        [mvn, "-q", "-B", "package", "-DskipTests"], cwd=project, capture_output=True, text=True, check=False
    )
    if proc.returncode != 0 or not jar.exists():
        tail = " | ".join((proc.stdout + proc.stderr).strip().splitlines()[-5:])
        raise DependencyError(
            f"Maven could not build the Neo4j dev server in {project} (exit {proc.returncode}): {tail}. "
            "Check that Maven Central is reachable and run `mvn package` there to see the whole log"
        )
    return jar


def port_is_free(port: int, host: str = HOST) -> bool:
    """True when nothing listens on ``host:port``."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def free_port() -> int:
    """A TCP port on loopback that nothing listens on now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


class DevServer:
    """One Neo4j dev server process; ``start()`` returns once Bolt accepts connections, ``stop()`` is SIGTERM.

    With ``data_dir`` the databases survive ``stop()``/``start()``, so a test can restart the server on the same data.
    """

    def __init__(
        self,
        port: int | None = None,
        *,
        data_dir: str | Path | None = None,
        password: str | None = None,
        heap: str = "2g",
    ) -> None:
        self.port = port or free_port()
        self.data_dir = Path(data_dir) if data_dir else None
        self.password = password
        self.heap = heap
        self.startup_seconds: float | None = None
        self._proc: subprocess.Popen[str] | None = None
        self._output: list[str] = []

    @property
    def uri(self) -> str:
        return f"bolt://{HOST}:{self.port}"

    @property
    def auth(self) -> tuple[str, str] | None:
        return ("neo4j", self.password) if self.password else None

    def command(self) -> list[str]:
        cmd = [java_executable(), f"-Xmx{self.heap}", "-jar", str(ensure_built()), "--port", str(self.port)]
        if self.data_dir:
            cmd += ["--data", str(self.data_dir)]
        if self.password:
            cmd += ["--password", self.password]
        return cmd

    def start(self, timeout: float = 180.0) -> DevServer:
        if self._proc and self._proc.poll() is None:
            return self
        if not port_is_free(self.port):
            raise ConfigError(
                f"port {self.port} on {HOST} is already in use: stop the program using it or choose another port "
                "(NEO4J_PORT for `make neo4j`)"
            )
        cmd = self.command()
        began = time.monotonic()
        self._output = []
        self._proc = subprocess.Popen(
            cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1
        )
        ready = threading.Event()
        threading.Thread(target=self._pump, args=(self._proc, ready), daemon=True).start()
        while not ready.wait(0.1):
            if self._proc.poll() is not None or time.monotonic() - began > timeout:
                self.stop()
                said = " | ".join(line.strip() for line in self._output[-5:]) or "no output"
                raise DependencyError(f"the Neo4j dev server did not start on {self.uri}: {said}")
        self.startup_seconds = time.monotonic() - began
        return self

    def _pump(self, proc: subprocess.Popen[str], ready: threading.Event) -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            self._output.append(line)
            del self._output[:-200]
            if line.startswith(READY):
                ready.set()

    def stop(self, timeout: float = 60.0) -> None:
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def kill(self) -> None:
        """Stop the server abruptly (SIGKILL), as a crash would."""
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait()

    def __enter__(self) -> DevServer:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def main(argv: list[str] | None = None) -> int:
    """Run the dev server in the foreground until Ctrl-C (``make neo4j``)."""
    parser = argparse.ArgumentParser(prog="python -m kgemb.connectors.neo4j_dev", description=main.__doc__)
    parser.add_argument("--port", type=int, default=int(os.environ.get("NEO4J_PORT", "7687")))
    parser.add_argument(
        "--data", default=os.environ.get("NEO4J_DATA"), help="keep the databases in this folder"
    )
    parser.add_argument("--password", default=os.environ.get("NEO4J_PASSWORD"), help="turn authentication on")
    args = parser.parse_args(argv)
    from kgemb.errors import KgembError

    try:
        server = DevServer(args.port, data_dir=args.data, password=args.password)
        cmd = server.command()
        if not port_is_free(server.port):
            raise ConfigError(
                f"port {server.port} on {HOST} is already in use: stop the program using it or set NEO4J_PORT"
            )
    except KgembError as exc:
        print(f"kgemb: {exc}", file=sys.stderr)
        return 2
    user = "neo4j / (your password)" if args.password else "no authentication"
    print(f"Starting Neo4j 5 on {server.uri} ({user}); Ctrl-C stops it.", flush=True)
    os.execv(cmd[0], cmd)
    return 0  # not reached


if __name__ == "__main__":
    sys.exit(main())
