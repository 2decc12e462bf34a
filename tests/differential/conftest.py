"""Fixtures for differential tests: Apache ZooKeeper (A, the oracle) against corral (B).

Run:   .venv/bin/pytest -q tests/differential            ZooKeeper vs corral
       CORRAL_DIFF_SELF=1 .venv/bin/pytest -q tests/differential
                                                         ZooKeeper vs ZooKeeper: every
                                                         scenario must pass, which proves
                                                         the harness and its normalisation
       CORRAL_DIFF_DUMP=1 ... -s                         also print both transcripts
The session ends with one line: scenarios run, fields compared, mismatches.

A scenario is a test taking the `diff` fixture and calling `diff.run(steps)`:
- default: the shared pair (started once per session); the scenario works under its
  own namespace `diff.ns`, created first;
- `pristine=True`: a pair whose tree no scenario changes (fresh-tree reads, 4lw);
- `spec=ServerSpec(...)`: a fresh pair started for this scenario (special config,
  background reaping, restarts, anything that would disturb the shared pair).
Without ZooKeeper installed the tests skip (`apt-get install -y zookeeper`); with
CI=true they fail instead. The same holds for `python -m corral server`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import pytest

from corral.cli.launch import ApacheZooKeeper, CorralServer
from corral.protocol.constants import OpCode
from corral.protocol.records import OPEN_ACL_UNSAFE, CreateRequest
from tests.support.scenario import TOTALS, Op, Open, Step, report, run_differential
from tests.support.servers import (
    SHARED_SPEC,
    ServerSpec,
    require_corral_server,
    require_zookeeper,
    self_mode,
    start_corral,
    start_second,
    start_zookeeper,
)


@pytest.fixture(scope="session")
def zookeeper() -> Iterator[ApacheZooKeeper]:
    server = start_zookeeper(SHARED_SPEC)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def corral() -> Iterator[CorralServer]:
    server = start_corral(SHARED_SPEC)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def server_b(request: pytest.FixtureRequest) -> Iterator[ApacheZooKeeper | CorralServer]:
    """corral, or a second ZooKeeper in self mode."""
    if self_mode():
        server = start_zookeeper(SHARED_SPEC)
        try:
            yield server
        finally:
            server.stop()
    else:
        yield request.getfixturevalue("corral")


@pytest.fixture(scope="session")
def pristine_pair() -> Iterator[tuple[ApacheZooKeeper, ApacheZooKeeper | CorralServer]]:
    """A pair whose tree nobody changes: for scenarios about the fresh tree (reads only)."""
    a = start_zookeeper(SHARED_SPEC)
    try:
        b = start_second(SHARED_SPEC)
        try:
            yield a, b
        finally:
            b.stop()
    finally:
        a.stop()


@dataclass
class Differential:
    """What a scenario test uses: `run(steps)` on the shared, pristine or a fresh pair."""

    name: str
    request: pytest.FixtureRequest

    @property
    def ns(self) -> str:
        """This scenario's own subtree on the shared servers."""
        return "/" + re.sub(r"[^A-Za-z0-9_]", "_", self.name)

    def run(
        self,
        steps: Sequence[Step],
        *,
        spec: ServerSpec | None = None,
        pristine: bool = False,
        literal_zxids: bool = False,
    ) -> None:
        """Run on the shared servers (under `ns`, created first), on the pristine pair
        (the scenario must not change the tree), or on a fresh pair started with `spec`.
        literal_zxids: zxids must be equal, not just correspond (fresh servers only)."""
        if pristine:
            a, b = self.request.getfixturevalue("pristine_pair")
            self._compare(steps, a, b, literal_zxids)
            return
        if spec is None:
            a = self.request.getfixturevalue("zookeeper")
            b = self.request.getfixturevalue("server_b")
            setup: list[Step] = [
                Open(session="setup", label="setup"),
                Op(
                    session="setup",
                    opcode=OpCode.CREATE,
                    record=CreateRequest(path=self.ns, data=b"", acl=OPEN_ACL_UNSAFE, flags=0),
                    label="create the scenario's namespace",
                ),
            ]
            self._compare([*setup, *steps], a, b, literal_zxids)
            return
        require_zookeeper()
        if not self_mode():
            require_corral_server()
        a = start_zookeeper(spec)
        try:
            b = start_second(spec)
            try:
                self._compare(steps, a, b, literal_zxids, restarts=(a.restart, b.restart))
            finally:
                b.stop()
        finally:
            a.stop()

    def _compare(
        self,
        steps: Sequence[Step],
        a: ApacheZooKeeper,
        b: ApacheZooKeeper | CorralServer,
        literal_zxids: bool,
        restarts: tuple[Callable[[], object], Callable[[], object]] | None = None,
    ) -> None:
        comparison = run_differential(
            self.name,
            steps,
            (a.host, a.port),
            (b.host, b.port),
            known_differences=not self_mode(),
            literal_zxids=literal_zxids,
            restarts=restarts,  # type: ignore[arg-type]
        )
        if comparison.mismatches:
            pytest.fail(report(self.name, comparison), pytrace=False)


@pytest.fixture
def diff(request: pytest.FixtureRequest) -> Differential:
    return Differential(name=request.node.name, request=request)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if TOTALS.scenarios == 0:
        return
    mode = "ZooKeeper vs ZooKeeper (CORRAL_DIFF_SELF)" if self_mode() else "ZooKeeper vs corral"
    terminalreporter.write_line(
        f"differential ({mode}): {TOTALS.scenarios} scenarios run, "
        f"{TOTALS.fields_compared} fields compared, {TOTALS.mismatches} mismatches"
        + (f" in {', '.join(TOTALS.failed)}" if TOTALS.failed else "")
    )
