"""`corral ensemble up --size N`: a local ensemble on loopback, to try one on one machine.

It writes a zoo.cfg and a myid per member under one directory, starts every member as
its own `python -m corral server` process (the command a user runs), prints the connect
string, and stops them all — by PID — on Ctrl-C or SIGTERM. Nothing here is needed to
run a real ensemble: docs/deploy.md says how to do that across machines.
"""

from __future__ import annotations

import argparse
import os
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path

from corral.cli.launch import free_ports

ENSEMBLE_SIZE_MAX = 9
STOP_TIMEOUT_S = 10


def add_ensemble_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "ensemble",
        help="run a local ensemble on 127.0.0.1 (for trying replication on one machine)",
    )
    actions = parser.add_subparsers(dest="ensemble_command", metavar="ACTION", required=True)
    up = actions.add_parser("up", help="start N members in the foreground; Ctrl-C stops them")
    up.add_argument("--size", type=int, default=3, help="number of voting members (default 3)")
    up.add_argument("--dir", default="./ensemble", help="where the members keep their data")
    up.add_argument(
        "--base-port", type=int, default=2181, help="client port of member 1 (then +1, +2, ...)"
    )
    up.set_defaults(func=_up)


def write_member_configs(directory: Path, size: int, base_port: int) -> list[Path]:
    """One zoo.cfg per member (server.N lines on loopback) and its myid; their paths."""
    # Quorum and election ports: free now, and none of them a member's client port.
    client_ports = frozenset(range(base_port, base_port + size))
    ports = iter(free_ports(2 * size, avoid=client_ports))
    peer_ports = [(next(ports), next(ports)) for _ in range(size)]
    secret_path = directory / "ensemble.secret"
    if not secret_path.exists():
        secret_path.write_text(secrets.token_hex(16))
    secret = secret_path.read_text().strip()
    servers = "".join(
        f"server.{n}=127.0.0.1:{quorum}:{election};127.0.0.1:{base_port + n - 1}\n"
        for n, (quorum, election) in enumerate(peer_ports, start=1)
    )
    paths = []
    for n in range(1, size + 1):
        data_dir = directory / f"member{n}"
        data_dir.mkdir(parents=True, exist_ok=True)
        (data_dir / "myid").write_text(f"{n}\n")
        path = directory / f"zoo{n}.cfg"
        path.write_text(
            "tickTime=2000\n"
            f"dataDir={data_dir}\n"
            f"clientPort={base_port + n - 1}\n"
            "clientPortAddress=127.0.0.1\n"
            "admin.enableServer=false\n"
            f"ensemble.secret={secret}\n" + servers
        )
        paths.append(path)
    return paths


def _up(args: argparse.Namespace) -> int:
    if not 1 <= args.size <= ENSEMBLE_SIZE_MAX:
        print(f"corral ensemble: --size must be 1..{ENSEMBLE_SIZE_MAX}", file=sys.stderr)
        return 2
    directory = Path(args.dir).resolve()
    directory.mkdir(parents=True, exist_ok=True)
    configs = write_member_configs(directory, args.size, args.base_port)
    processes: list[subprocess.Popen[bytes]] = []
    stopping = False

    def stop(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        for n, config in enumerate(configs, start=1):
            log = (directory / f"member{n}.log").open("ab")
            processes.append(
                subprocess.Popen(
                    [sys.executable, "-m", "corral", "server", str(config)],
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    env={**os.environ, "PYTHONUNBUFFERED": "1"},
                )
            )
        hosts = ",".join(f"127.0.0.1:{args.base_port + n}" for n in range(args.size))
        print(f"ensemble of {args.size} up; logs in {directory}; connect with: {hosts}")
        print("Ctrl-C stops every member.", flush=True)
        while not stopping:
            for n, process in enumerate(processes, start=1):
                if process.poll() is not None:
                    print(f"member {n} exited with {process.returncode}; see its log")
                    stopping = True
            time.sleep(0.2)
    finally:
        for process in processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT_S
        for process in processes:
            try:
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
    return 0
