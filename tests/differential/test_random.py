"""Random differential testing: hypothesis draws operation sequences, both servers run them.

Each rule runs one step on A (ZooKeeper) and B (corral, or ZooKeeper again in self
mode) and compares the transcripts so far, so hypothesis shrinks a failure to a short
sequence. Paths come from a small alphabet under a fresh namespace per example, so
creates, deletes and version checks collide often. A failure writes the shrunk steps as
a regular scenario test, tests/differential/found/test_found_<digest>.py (hypothesis
replays the minimal example last, so the last file written is the shrunk one), and
prints the same steps: review it, give it a name, keep it.

Left out on purpose: containers (reaped by a background task at different moments on
the two servers) and create2 inside multi (a deliberate difference, see
docs/compatibility.md). TTL nodes get an hour of TTL so they are never reaped here.

Reproduce a failure: pytest tests/differential/test_random.py --hypothesis-seed=<seed>
(hypothesis prints the seed and a @reproduce_failure line).
"""

from __future__ import annotations

import dataclasses
import enum
import hashlib
import itertools
import sys
import textwrap
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, rule, run_state_machine_as_test

from corral.protocol.constants import OpCode
from corral.protocol.records import Record
from tests.differential.ops import (
    children,
    children2,
    create,
    create_ttl,
    delete,
    exists,
    get_data,
    m_check,
    m_create,
    m_delete,
    m_set,
    multi,
    set_data,
    sync,
)
from tests.support.scenario import (
    TOTALS,
    CloseSession,
    Drain,
    Open,
    SideContext,
    Step,
    _cleanup,
    _run_step,
    _totals_lock,
    compare,
    report,
)
from tests.support.servers import self_mode

SESSIONS = ("s0", "s1", "s2")
NAMES = ("a", "b", "a/x", "a/y", "b/x", "a/x/z")
DATA = st.sampled_from([None, b"", b"v", b"longer value"])
VERSIONS = st.sampled_from([-1, -1, 0, 1, 2, 7])
TTL_MS = 3_600_000
_namespaces = itertools.count()

pytestmark = pytest.mark.zookeeper


FOUND_DIR = Path(__file__).parent / "found"


def _code(value: Any) -> str:
    """Python source that rebuilds `value`: records and steps by keyword, enums as ints."""
    if isinstance(value, enum.IntEnum):
        return str(int(value))
    if isinstance(value, tuple):
        inner = ", ".join(_code(item) for item in value)
        return f"({inner},)" if len(value) == 1 else f"({inner})"
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        fields = ", ".join(
            f"{f.name}={_code(getattr(value, f.name))}" for f in dataclasses.fields(value)
        )
        return f"{type(value).__name__}({fields})"
    assert value is None or isinstance(value, str | bytes | int | bool), value
    return repr(value)


def steps_as_code(steps: Sequence[Step]) -> str:
    """The steps as Python, to paste into a regular scenario."""
    return "[\n" + "".join(f"    {_code(step)},\n" for step in steps) + "]"


def save_as_scenario(steps: Sequence[Step], ns: str) -> Path:
    """Write `steps` as a regular scenario test file; returns its path."""
    code = steps_as_code(steps)
    digest = hashlib.sha256(code.encode()).hexdigest()[:12]
    path = FOUND_DIR / f"test_found_{digest}.py"
    body = textwrap.indent(code, "    ").strip()
    path.parent.mkdir(exist_ok=True)
    (path.parent / "__init__.py").touch()
    path.write_text(
        f'''"""A mismatch found by test_random.py, shrunk by hypothesis: review, name, keep."""

# ruff: noqa: F403, F405, E501
from corral.protocol.records import *
from tests.differential.test_random import replay
from tests.support.scenario import *

ORIGINAL_NS = {ns!r}
STEPS = {body}


def test_found_{digest}(zookeeper, server_b) -> None:
    replay(zookeeper, server_b, STEPS, ORIGINAL_NS)
'''
    )
    return path


def _rebase(value: Any, old: str, new: str) -> Any:
    """`value` with every path under `old` moved under `new` (records, tuples, strings)."""
    if isinstance(value, str):
        return new + value[len(old) :] if value == old or value.startswith(old + "/") else value
    if isinstance(value, tuple):
        return tuple(_rebase(item, old, new) for item in value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        changes = {
            f.name: _rebase(getattr(value, f.name), old, new) for f in dataclasses.fields(value)
        }
        return dataclasses.replace(value, **changes)
    return value


def replay(zookeeper: Any, server_b: Any, steps: Sequence[Step], original_ns: str) -> None:
    """Run saved steps on both servers under a fresh namespace; fail on any mismatch."""
    ns = f"{original_ns}_replay_{next(_namespaces)}"
    sides = (
        SideContext(host=zookeeper.host, port=zookeeper.port),
        SideContext(host=server_b.host, port=server_b.port),
    )
    rebased = [_rebase(step, original_ns, ns) for step in steps]
    for side in sides:
        side.start_ms = _now_ms()
    try:
        for index, step in enumerate(rebased):
            for side in sides:
                _run_step(side, index, step)
                side.end_ms = _now_ms()
    finally:
        for side in sides:
            side.end_ms = _now_ms()
            _cleanup(side)
    comparison = compare(rebased, sides[0], sides[1], known_differences=not self_mode())
    assert not comparison.mismatches, report(ns, comparison)


class DifferentialMachine(RuleBasedStateMachine):
    a_address: tuple[str, int] = ("127.0.0.1", 0)
    b_address: tuple[str, int] = ("127.0.0.1", 0)

    def __init__(self) -> None:
        super().__init__()
        self.ns = f"/random_{next(_namespaces)}"
        self.steps: list[Step] = []
        self.sides = (
            SideContext(host=self.a_address[0], port=self.a_address[1]),
            SideContext(host=self.b_address[0], port=self.b_address[1]),
        )
        self.open_sessions: set[str] = set()

    def path(self, name: str) -> str:
        return f"{self.ns}/{name}"

    def run(self, step: Step) -> None:
        index = len(self.steps)
        self.steps.append(step)
        for side in self.sides:
            _run_step(side, index, step)
            side.end_ms = _now_ms()
        comparison = compare(
            self.steps, self.sides[0], self.sides[1], known_differences=not self_mode()
        )
        if comparison.mismatches:
            saved = save_as_scenario(self.steps, self.ns)
            raise AssertionError(
                report(self.ns, comparison)
                + f"\nsaved as {saved}\nsteps:\n"
                + steps_as_code(self.steps)
            )

    @initialize()
    def start(self) -> None:
        for side in self.sides:
            side.start_ms = _now_ms()
        self.run(Open(session="setup"))
        self.run(create("setup", self.ns))
        for s in SESSIONS:
            self.run(Open(session=s))
            self.open_sessions.add(s)

    def teardown(self) -> None:
        for side in self.sides:
            side.end_ms = _now_ms()
            _cleanup(side)
        # Each example counts as one scenario in the session summary.
        final = compare(self.steps, self.sides[0], self.sides[1], known_differences=not self_mode())
        with _totals_lock:
            TOTALS.scenarios += 1
            TOTALS.fields_compared += final.fields_compared
            TOTALS.mismatches += len(final.mismatches)

    # ------------------------------------------------------------------ writes

    @rule(
        s=st.sampled_from(SESSIONS),
        name=st.sampled_from(NAMES),
        data=DATA,
        mode=st.sampled_from([0, 0, 1, 2, 3, 5]),
    )
    def create_node(self, s: str, name: str, data: bytes | None, mode: int) -> None:
        self.ensure(s)
        if mode == 5:
            self.run(create_ttl(s, self.path(name), TTL_MS, data=data))
        else:
            self.run(create(s, self.path(name), data, flags=mode, opcode=OpCode.CREATE2))

    @rule(s=st.sampled_from(SESSIONS), name=st.sampled_from(NAMES), version=VERSIONS)
    def delete_node(self, s: str, name: str, version: int) -> None:
        self.ensure(s)
        self.run(delete(s, self.path(name), version))

    @rule(s=st.sampled_from(SESSIONS), name=st.sampled_from(NAMES), data=DATA, version=VERSIONS)
    def set_node(self, s: str, name: str, data: bytes | None, version: int) -> None:
        self.ensure(s)
        self.run(set_data(s, self.path(name), data, version))

    @rule(
        s=st.sampled_from(SESSIONS),
        ops=st.lists(
            st.tuples(
                st.sampled_from(["create", "delete", "set", "check"]),
                st.sampled_from(NAMES),
                VERSIONS,
                st.sampled_from([0, 1, 2]),
            ),
            max_size=4,
        ),
    )
    def multi_ops(self, s: str, ops: list[tuple[str, str, int, int]]) -> None:
        self.ensure(s)
        built: list[tuple[int, Record]] = []
        for kind, name, version, mode in ops:
            path = self.path(name)
            if kind == "create":
                built.append(m_create(path, b"m", flags=mode))
            elif kind == "delete":
                built.append(m_delete(path, version))
            elif kind == "set":
                built.append(m_set(path, b"m", version))
            else:
                built.append(m_check(path, version))
        self.run(multi(s, *built))

    # ------------------------------------------------------------------ reads and watches

    @rule(s=st.sampled_from(SESSIONS), name=st.sampled_from(NAMES), watch=st.booleans())
    def exists_node(self, s: str, name: str, watch: bool) -> None:
        self.ensure(s)
        self.run(exists(s, self.path(name), watch))

    @rule(s=st.sampled_from(SESSIONS), name=st.sampled_from(NAMES), watch=st.booleans())
    def get_node(self, s: str, name: str, watch: bool) -> None:
        self.ensure(s)
        self.run(get_data(s, self.path(name), watch))

    @rule(
        s=st.sampled_from(SESSIONS),
        name=st.sampled_from(("", *NAMES)),
        watch=st.booleans(),
        with_stat=st.booleans(),
    )
    def list_children(self, s: str, name: str, watch: bool, with_stat: bool) -> None:
        self.ensure(s)
        path = self.path(name) if name else self.ns
        self.run((children2 if with_stat else children)(s, path, watch))

    @rule(s=st.sampled_from(SESSIONS))
    def drain(self, s: str) -> None:
        self.ensure(s)
        self.run(Drain(session=s))

    @rule(s=st.sampled_from(SESSIONS))
    def sync_session(self, s: str) -> None:
        self.ensure(s)
        self.run(sync(s, self.ns))

    # ------------------------------------------------------------------ sessions

    @rule(s=st.sampled_from(SESSIONS))
    def close_session(self, s: str) -> None:
        if s not in self.open_sessions:
            return
        self.run(CloseSession(session=s))
        self.open_sessions.discard(s)
        # The closed session's ephemerals go in one txn, in unspecified order: collect
        # the other sessions' notifications now and compare them unordered.
        for other in sorted(self.open_sessions):
            self.run(Drain(session=other, unordered_events=True))

    def ensure(self, s: str) -> None:
        if s not in self.open_sessions:
            self.run(Open(session=s))
            self.open_sessions.add(s)


def _now_ms() -> int:
    import time

    return int(time.time() * 1000)


@pytest.mark.timeout(240)
def test_random_operation_sequences(zookeeper, server_b) -> None:
    DifferentialMachine.a_address = (zookeeper.host, zookeeper.port)
    DifferentialMachine.b_address = (server_b.host, server_b.port)
    run_state_machine_as_test(
        DifferentialMachine,
        settings=settings(
            max_examples=60,
            stateful_step_count=50,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow],
            database=None,
        ),
    )


def test_a_saved_scenario_reproduces_its_steps(zookeeper, server_b, tmp_path, monkeypatch) -> None:
    """What a mismatch writes is a runnable scenario with exactly the steps that failed."""
    import importlib.util

    monkeypatch.setattr(sys.modules[__name__], "FOUND_DIR", tmp_path / "found")
    ns = f"/saved_{next(_namespaces)}"
    steps = [
        Open(session="setup"),
        create("setup", ns),
        Open(session="s0"),
        create("s0", f"{ns}/a", b"v"),
        set_data("s0", f"{ns}/a", b"w", 0),
        multi("s0", m_create(f"{ns}/b", b"", 0), m_check(f"{ns}/a", 1)),
        get_data("s0", f"{ns}/a", True),
        delete("s0", f"{ns}/a", -1),
        Drain(session="s0"),
    ]
    path = save_as_scenario(steps, ns)
    spec = importlib.util.spec_from_file_location("saved_scenario", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert steps == module.STEPS
    assert ns == module.ORIGINAL_NS
    # Replayed under a fresh namespace, it runs on both servers and they agree.
    replay(zookeeper, server_b, module.STEPS, module.ORIGINAL_NS)
