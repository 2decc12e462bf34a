"""Start and stop real servers as child processes: Apache ZooKeeper and corral.

Used by the differential and cluster tests, `corral bench --compare` and `corral bench
failover` (an `Ensemble`: three members of either product on loopback).

Rules:
- Every server listens on 127.0.0.1 only, on a free port chosen here, with a fresh
  temporary data directory that is removed on stop.
- We start the process ourselves (java directly, never zkServer.sh, which forks and
  writes a pid file) so we own its PID; `stop()` sends SIGTERM, waits a bounded time,
  then SIGKILL, and always reaps the child.
- Readiness is "answers the `ruok` four-letter word with `imok`" (for ZooKeeper also
  "`srvr` says it is serving"), polled until a deadline: a server that does not come
  up fails loudly with the tail of its log instead of hanging the caller.
- Nothing here imports the server: corral is started as `python -m corral server`, the
  same command a user runs, so what is tested is what ships.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import IO, Self

from corral.limits import TICK_TIME_DEFAULT_MS

ZOOKEEPER_JAR = Path("/usr/share/java/zookeeper.jar")
# zookeeper.jar's manifest names its dependencies (netty, jute, slf4j-api, ...); only a
# logging binding is missing, so add slf4j-simple (logs to stderr, captured in a file).
ZOOKEEPER_LOG_BINDING_JAR = Path("/usr/share/java/slf4j-simple.jar")
ZOOKEEPER_MAIN_CLASS = "org.apache.zookeeper.server.ZooKeeperServerMain"
ZOOKEEPER_QUORUM_MAIN_CLASS = "org.apache.zookeeper.server.quorum.QuorumPeerMain"
# JVM flags that shorten a test's start-up (one GC thread: the cores are shared; C1 only).
ZOOKEEPER_START_UP_JVM_FLAGS = ("-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1")
ZOOKEEPER_INSTALL_HINT = (
    "Apache ZooKeeper 3.8 is not installed (needed as the oracle for differential tests "
    "and `corral bench --compare`): install it with "
    "`sudo apt-get update && sudo apt-get install -y zookeeper` "
    "(Debian/Ubuntu; Java comes with it)"
)

START_TIMEOUT_MS = 60_000  # a JVM on a loaded 2-core machine can take ~10 s to serve
STOP_TIMEOUT_MS = 10_000  # after SIGTERM, before SIGKILL
PROBE_TIMEOUT_MS = 2_000  # one four-letter-word probe
PROBE_INTERVAL_MS = 100
FOUR_LETTER_REPLY_SIZE_MAX = 1 << 20  # bytes; `mntr`/`dump` are far smaller
LOG_TAIL_SIZE = 4_000  # bytes of a server's log quoted when it fails to start


class ServerStartError(RuntimeError):
    """A server process exited or did not become ready before its deadline."""


def java_path() -> str | None:
    return shutil.which("java")


def zookeeper_available() -> bool:
    """True if Apache ZooKeeper (Debian's package) and java are installed."""
    return ZOOKEEPER_JAR.is_file() and java_path() is not None


def free_ports(count: int, *, avoid: frozenset[int] = frozenset()) -> list[int]:
    """`count` distinct TCP ports on 127.0.0.1 that were free a moment ago, none in
    `avoid`. All are held until all are chosen: separate `free_port()` calls may return
    the same port twice."""
    with contextlib.ExitStack() as stack:
        ports: list[int] = []
        for _ in range(count + len(avoid)):
            sock = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
            sock.bind(("127.0.0.1", 0))
            port = int(sock.getsockname()[1])
            if port not in avoid:
                ports.append(port)
            if len(ports) == count:
                return ports
    raise OSError(f"no {count} free ports outside {sorted(avoid)}")


def free_port_run(count: int, *, attempts: int = 100) -> int:
    """The first of `count` consecutive TCP ports on 127.0.0.1 that were all free a
    moment ago (for `corral ensemble up --base-port`)."""
    for _ in range(attempts):
        base = free_port()
        with contextlib.ExitStack() as stack:
            try:
                for port in range(base, base + count):
                    sock = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
                    sock.bind(("127.0.0.1", port))
            except OSError:
                continue  # one of them is taken: try another base
            return base
    raise OSError(f"no run of {count} free ports found in {attempts} attempts")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def four_letter_word(host: str, port: int, word: str, *, timeout_ms: int = PROBE_TIMEOUT_MS) -> str:
    """Send a four-letter word and return the whole answer (the server closes after it).

    Raises OSError (including TimeoutError) if the server does not answer in time.
    """
    assert len(word) == 4, word
    deadline = time.monotonic() + timeout_ms / 1000
    chunks: list[bytes] = []
    size = 0
    with socket.create_connection((host, port), timeout=timeout_ms / 1000) as sock:
        sock.sendall(word.encode("ascii"))
        while size <= FOUR_LETTER_REPLY_SIZE_MAX:
            remaining_s = deadline - time.monotonic()
            if remaining_s <= 0:
                raise TimeoutError(f"{word} on {host}:{port}: no end of answer in time")
            sock.settimeout(remaining_s)
            chunk = sock.recv(65536)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
    return b"".join(chunks).decode("utf-8", errors="replace")


class _ServerProcess:
    """What both servers share: a child process, a data dir, a port, a log file."""

    name = "server"

    def __init__(self, *, tick_time_ms: int, start_timeout_ms: int) -> None:
        self.host = "127.0.0.1"
        self.port = 0  # chosen at the first launch unless set before it
        self.tick_time_ms = tick_time_ms
        self.start_timeout_ms = start_timeout_ms
        self._process: subprocess.Popen[bytes] | None = None
        self._workdir: Path | None = None
        self._log: IO[bytes] | None = None

    # ------------------------------------------------------------------ to override

    def _command(self, workdir: Path) -> tuple[list[str], dict[str, str]]:
        raise NotImplementedError

    def _is_ready(self) -> bool:
        # A server whose whitelist excludes ruok still answers, with a refusal: it is up.
        try:
            answer = four_letter_word(self.host, self.port, "ruok")
        except OSError:
            return False
        return answer.startswith("imok") or "not in the whitelist" in answer

    # ------------------------------------------------------------------ public

    @property
    def pid(self) -> int:
        assert self._process is not None, "server not started"
        return self._process.pid

    @property
    def workdir(self) -> Path:
        assert self._workdir is not None, "server not started"
        return self._workdir

    @property
    def data_dir(self) -> Path:
        return self.workdir / "data"

    @property
    def log_path(self) -> Path:
        return self.workdir / "server.log"

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def log_tail(self, size: int = LOG_TAIL_SIZE) -> str:
        try:
            data = self.log_path.read_bytes()
        except OSError:
            return ""
        return data[-size:].decode("utf-8", errors="replace")

    def start(self) -> Self:
        """Start and wait until ready; after `stop(keep_workdir=True)` this restarts on
        the same port and data."""
        self.launch()
        try:
            self.wait_ready()
        except BaseException:
            self.stop()  # nothing is left behind: no process, no temp directory
            raise
        return self

    def launch(self) -> None:
        """Start the process without waiting for it to serve (an ensemble member serves
        only once a quorum of its peers runs); the caller calls `wait_ready` or `stop`."""
        assert self._process is None, "already started"
        if self._workdir is None:
            self._workdir = Path(tempfile.mkdtemp(prefix=f"corral-{self.name}-"))
            self.data_dir.mkdir()
            self.port = self.port or free_port()  # an ensemble chose it with its peer ports
        try:
            argv, env = self._command(self._workdir)
            self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
            self._process = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=self._log,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=self._workdir,
                # Its own process group: a Ctrl-C in the terminal reaches the test
                # runner, which then stops the server cleanly by PID.
                start_new_session=True,
            )
        except BaseException:
            self.stop()
            raise

    def wait_ready(self) -> None:
        """Poll until the server is ready; ServerStartError if it exits or its
        start_timeout_ms passes (the process is left running: the caller stops it)."""
        assert self._process is not None
        deadline = time.monotonic() + self.start_timeout_ms / 1000
        while True:
            code = self._process.poll()
            if code is not None:
                raise ServerStartError(
                    f"{self.name} exited with code {code} before serving; "
                    f"log tail:\n{self.log_tail()}"
                )
            if self._is_ready():
                return
            if time.monotonic() >= deadline:
                raise ServerStartError(
                    f"{self.name} (pid {self._process.pid}) not ready on "
                    f"{self.host}:{self.port} after {self.start_timeout_ms} ms; "
                    f"log tail:\n{self.log_tail()}"
                )
            time.sleep(PROBE_INTERVAL_MS / 1000)

    def stop(self, *, keep_workdir: bool = False) -> int | None:
        """SIGTERM, wait, SIGKILL after STOP_TIMEOUT_MS; returns the exit code."""
        code: int | None = None
        process = self._process
        if process is not None:
            if process.poll() is None:
                # Not reaped yet (poll() said running), so the PID is still ours.
                os.kill(process.pid, signal.SIGTERM)
                try:
                    process.wait(timeout=STOP_TIMEOUT_MS / 1000)
                except subprocess.TimeoutExpired:
                    os.kill(process.pid, signal.SIGKILL)
                    process.wait(timeout=STOP_TIMEOUT_MS / 1000)
            code = process.returncode
            self._process = None
        if self._log is not None:
            self._log.close()
            self._log = None
        if self._workdir is not None and not keep_workdir:
            shutil.rmtree(self._workdir, ignore_errors=True)
            self._workdir = None
        return code

    def restart(self) -> Self:
        """A clean restart (SIGTERM, then start again) keeping the port and the data."""
        self.stop(keep_workdir=True)
        return self.start()

    def kill(self) -> None:
        """SIGKILL and reap (a crash, as `kill -9` would do); the workdir stays."""
        process = self._process
        assert process is not None, "server not started"
        if process.poll() is None:
            os.kill(process.pid, signal.SIGKILL)
        process.wait(timeout=STOP_TIMEOUT_MS / 1000)

    def four_letter_word(self, word: str, *, timeout_ms: int = PROBE_TIMEOUT_MS) -> str:
        return four_letter_word(self.host, self.port, word, timeout_ms=timeout_ms)

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        pid = self._process.pid if self._process is not None else None
        return f"{type(self).__name__}(address={self.address!r}, pid={pid})"


class ApacheZooKeeper(_ServerProcess):
    """A standalone Apache ZooKeeper 3.8 from Debian's `zookeeper` package.

    `config` adds or overrides zoo.cfg keys (e.g. {"maxSessionTimeout": "60000"});
    `system_properties` adds -D flags (e.g. {"zookeeper.enforceQuota": "true",
    "zookeeper.DigestAuthenticationProvider.superDigest": "super:..."}).
    With `myid`, it runs as an ensemble member (QuorumPeerMain, `myid` in its dataDir;
    `config` carries the server.N lines). `start_up_jvm_flags=False` runs the JVM as
    shipped (stock JIT and GC), as benchmarks want.
    """

    name = "zookeeper"

    def __init__(
        self,
        *,
        tick_time_ms: int = TICK_TIME_DEFAULT_MS,
        config: Mapping[str, str] | None = None,
        system_properties: Mapping[str, str] | None = None,
        heap_size_max_mb: int = 256,
        start_timeout_ms: int = START_TIMEOUT_MS,
        myid: int | None = None,
        start_up_jvm_flags: bool = True,
    ) -> None:
        super().__init__(tick_time_ms=tick_time_ms, start_timeout_ms=start_timeout_ms)
        self.config = dict(config or {})
        self.system_properties = dict(system_properties or {})
        self.heap_size_max_mb = heap_size_max_mb
        self.myid = myid
        self.start_up_jvm_flags = start_up_jvm_flags

    def zoo_cfg(self) -> dict[str, str]:
        cfg = {
            "tickTime": str(self.tick_time_ms),
            "dataDir": str(self.data_dir),
            "clientPort": str(self.port),
            "clientPortAddress": self.host,
            "maxClientCnxns": "0",
            "4lw.commands.whitelist": "*",
            "admin.enableServer": "false",
        }
        cfg.update(self.config)
        return cfg

    def _command(self, workdir: Path) -> tuple[list[str], dict[str, str]]:
        java = java_path()
        if java is None or not ZOOKEEPER_JAR.is_file():
            raise ServerStartError(ZOOKEEPER_INSTALL_HINT)
        cfg_path = workdir / "zoo.cfg"
        cfg_path.write_text("".join(f"{k}={v}\n" for k, v in self.zoo_cfg().items()))
        if self.myid is not None:
            (self.data_dir / "myid").write_text(f"{self.myid}\n")
        properties = {
            "zookeeper.extendedTypesEnabled": "true",
            "zookeeper.admin.enableServer": "false",
            "zookeeper.jmx.log4j.disable": "true",
            "org.slf4j.simpleLogger.defaultLogLevel": "info",
            "org.slf4j.simpleLogger.showDateTime": "true",
        }
        properties.update(self.system_properties)
        classpath = [str(ZOOKEEPER_JAR)]
        if ZOOKEEPER_LOG_BINDING_JAR.is_file():
            classpath.append(str(ZOOKEEPER_LOG_BINDING_JAR))
        argv = [
            java,
            f"-Xmx{self.heap_size_max_mb}m",
            *(ZOOKEEPER_START_UP_JVM_FLAGS if self.start_up_jvm_flags else ()),
            *(f"-D{k}={v}" for k, v in properties.items()),
            "-cp",
            os.pathsep.join(classpath),
            ZOOKEEPER_MAIN_CLASS if self.myid is None else ZOOKEEPER_QUORUM_MAIN_CLASS,
            str(cfg_path),
        ]
        env = {k: v for k, v in os.environ.items() if not k.startswith(("JVMFLAGS", "JAVA_"))}
        return argv, env

    def _is_ready(self) -> bool:
        # ZooKeeper answers `ruok` as soon as its listener is up; `srvr` tells whether
        # the database is loaded and requests are served.
        if not super()._is_ready():
            return False
        try:
            return "Zxid:" in self.four_letter_word("srvr")
        except OSError:
            return False


class CorralServer(_ServerProcess):
    """corral's standalone server, run as `python -m corral server ...`.

    `config` becomes `--set KEY=VALUE` options (zoo.cfg keys, as ZooKeeper's).
    """

    name = "corral"

    def __init__(
        self,
        *,
        tick_time_ms: int = TICK_TIME_DEFAULT_MS,
        config: Mapping[str, str] | None = None,
        zoo_cfg_path: Path | None = None,
        python: str | None = None,
        extra_args: Sequence[str] = (),
        start_timeout_ms: int = START_TIMEOUT_MS,
    ) -> None:
        super().__init__(tick_time_ms=tick_time_ms, start_timeout_ms=start_timeout_ms)
        # The AdminServer is on by default on 0.0.0.0:8080: off here, as for ZooKeeper.
        self.config = {
            "extendedTypesEnabled": "true",
            "4lw.commands.whitelist": "*",
            "admin.enableServer": "false",
        }
        self.config.update(config or {})
        self.zoo_cfg_path = zoo_cfg_path
        self.python = python or sys.executable
        self.extra_args = list(extra_args)

    def _command(self, workdir: Path) -> tuple[list[str], dict[str, str]]:
        argv = [
            self.python,
            "-m",
            "corral",
            "server",
            "--address",
            self.host,
            "--port",
            str(self.port),
            "--data-dir",
            str(self.data_dir),
            "--tick-time-ms",
            str(self.tick_time_ms),
        ]
        for key, value in self.config.items():
            argv += ["--set", f"{key}={value}"]
        argv += self.extra_args
        if self.zoo_cfg_path is not None:
            argv.append(str(self.zoo_cfg_path))
        env = dict(os.environ)
        env["PYTHONUNBUFFERED"] = "1"
        return argv, env


# --------------------------------------------------------------------------- ensembles

PRODUCTS = ("corral", "zookeeper")
ENSEMBLE_SIZE_MAX = 9
HEALTHY_TIMEOUT_MS = 120_000  # every member started, one leader elected, all serving
# ZooKeeper refuses quorum mode without initLimit and syncLimit; these are the values of
# its sample zoo.cfg, given to both products so their settings stay the same.
ENSEMBLE_CONFIG_DEFAULTS = {"initLimit": "10", "syncLimit": "5", "forceSync": "yes"}
SERVING_MODES = ("leader", "follower")


def server_mode(host: str, port: int, *, timeout_ms: int = PROBE_TIMEOUT_MS) -> str:
    """The `Mode:` of `srvr` ("leader", "follower", "standalone", ...); "down" when the
    server does not answer, "not serving" when it answers without a mode (a ZooKeeper
    member during an election)."""
    try:
        text = four_letter_word(host, port, "srvr", timeout_ms=timeout_ms)
    except OSError:
        return "down"
    for line in text.splitlines():
        if line.startswith("Mode: "):
            return line.removeprefix("Mode: ").strip()
    return "not serving"


class Ensemble:
    """`size` voting members of one product ("corral" or "zookeeper") on 127.0.0.1.

    Each member is its own process with its own client, quorum and election ports and
    data directory (a `myid` in it for ZooKeeper, the `myid` key for corral); the
    AdminServer is off for both. `config` adds zoo.cfg keys to every member, over
    ENSEMBLE_CONFIG_DEFAULTS. Members are numbered 1..size; every process is stopped by
    its PID in `stop()`, also when `start()` fails.
    """

    def __init__(
        self,
        product: str,
        *,
        size: int = 3,
        tick_time_ms: int = TICK_TIME_DEFAULT_MS,
        config: Mapping[str, str] | None = None,
        start_timeout_ms: int = START_TIMEOUT_MS,
        zookeeper_start_up_jvm_flags: bool = True,
        zookeeper_heap_size_max_mb: int = 256,
    ) -> None:
        assert product in PRODUCTS, product
        assert 1 <= size <= ENSEMBLE_SIZE_MAX, size
        self.product = product
        self.tick_time_ms = tick_time_ms
        self.config = {**ENSEMBLE_CONFIG_DEFAULTS, **(config or {})}
        # Client, quorum and election ports chosen together, so no two of them clash.
        ports = iter(free_ports(3 * size))
        peer_ports = {n: (next(ports), next(ports)) for n in range(1, size + 1)}
        servers = {f"server.{n}": f"127.0.0.1:{q}:{e}" for n, (q, e) in peer_ports.items()}
        self.members: dict[int, ApacheZooKeeper | CorralServer] = {}
        self._paused: set[int] = set()  # members stopped with SIGSTOP
        for n in peer_ports:
            member_config = {**servers, **self.config}
            if product == "corral":
                member_config |= {"myid": str(n), "ensemble.secret": "corral-launch-ensemble"}
                self.members[n] = CorralServer(
                    tick_time_ms=tick_time_ms,
                    config=member_config,
                    start_timeout_ms=start_timeout_ms,
                )
            else:
                self.members[n] = ApacheZooKeeper(
                    tick_time_ms=tick_time_ms,
                    config=member_config,
                    myid=n,
                    start_up_jvm_flags=zookeeper_start_up_jvm_flags,
                    heap_size_max_mb=zookeeper_heap_size_max_mb,
                    start_timeout_ms=start_timeout_ms,
                )
            self.members[n].port = next(ports)

    def start(self, *, healthy_timeout_ms: int = HEALTHY_TIMEOUT_MS) -> Self:
        """Start every member, then wait until one leads and all serve."""
        try:
            # All at once: a member serves only once a quorum of its peers runs.
            for member in self.members.values():
                member.launch()
            for member in self.members.values():
                member.wait_ready()
            self.wait_healthy(timeout_ms=healthy_timeout_ms)
        except BaseException:
            self.stop()
            raise
        return self

    def modes(self) -> dict[int, str]:
        """`srvr`'s Mode of every running member (a killed member is left out)."""
        return {
            n: server_mode(member.host, member.port)
            for n, member in self.members.items()
            if member.running
        }

    def wait_healthy(self, *, timeout_ms: int = HEALTHY_TIMEOUT_MS) -> int:
        """Poll until exactly one running member leads and every running one serves;
        the leader's id. ServerStartError with the modes and log tails on timeout."""
        deadline = time.monotonic() + timeout_ms / 1000
        while True:
            modes = self.modes()
            leaders = [n for n, mode in modes.items() if mode == "leader"]
            if len(leaders) == 1 and all(mode in SERVING_MODES for mode in modes.values()):
                return leaders[0]
            if time.monotonic() >= deadline:
                tails = "\n".join(
                    f"--- member {n} ({member.log_path}):\n{member.log_tail(1_500)}"
                    for n, member in self.members.items()
                )
                raise ServerStartError(
                    f"{self.product} ensemble not healthy after {timeout_ms} ms: "
                    f"modes {modes}\n{tails}"
                )
            time.sleep(PROBE_INTERVAL_MS / 1000)

    def kill(self, member_id: int) -> int:
        """SIGKILL a member (as `kill -9`) and reap it; returns time.monotonic_ns() read
        just before the signal, the instant a fail-over is measured from."""
        member = self.members[member_id]
        assert member.running, member_id
        killed_at_ns = time.monotonic_ns()
        member.kill()
        return killed_at_ns

    def pause(self, member_id: int) -> int:
        """SIGSTOP a member (a hung process: its sockets stay open, nothing answers);
        returns time.monotonic_ns() read just before the signal."""
        member = self.members[member_id]
        assert member.running, member_id
        paused_at_ns = time.monotonic_ns()
        os.kill(member.pid, signal.SIGSTOP)
        self._paused.add(member_id)
        return paused_at_ns

    def resume(self, member_id: int) -> None:
        """SIGCONT a member paused with `pause`."""
        member = self.members[member_id]
        if member_id in self._paused and member.running:
            os.kill(member.pid, signal.SIGCONT)
        self._paused.discard(member_id)

    def restart(self, member_id: int) -> None:
        """Start a killed or stopped member again on its ports and data; waits until it
        is ready (for ZooKeeper: serving, so it has joined the quorum)."""
        member = self.members[member_id]
        member.stop(keep_workdir=True)  # reaps and forgets the dead process, keeps data
        member.start()

    def stop(self) -> None:
        """Stop every member by PID (SIGTERM, then SIGKILL) and remove its data."""
        for member_id in list(self._paused):
            self.resume(member_id)  # a stopped process would sit on SIGTERM until SIGKILL
        for member in self.members.values():
            member.stop()

    @property
    def connect_string(self) -> str:
        return ",".join(member.address for member in self.members.values())

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
