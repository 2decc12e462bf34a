"""The ensemble simulation (sim/replicas.py): real Replicas and wire-protocol clients.

Every seed must pass the replica-level invariants and the linearizability check of the
client history; planted bugs must make those checks fail (so the checks can fail).
A failure names its seed: `python -m corral.sim --replicas --seed N` replays it.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import pytest

from corral.sim import linearizability as lin
from corral.sim import replicas
from corral.sim.__main__ import main
from corral.sim.replicas import PlantedBug, ReplicaSimResult, run_replica_simulation

DEFAULT_SEEDS = range(200)
SLOW_SEEDS = range(200, 3_200)


@pytest.fixture(autouse=True)
def _quiet_replicas() -> Iterator[None]:
    # Replicas log every election and lost quorum; thousands of lines say nothing here.
    logging.disable(logging.WARNING)
    yield
    logging.disable(logging.NOTSET)


def _failure(result: ReplicaSimResult) -> str:
    trace = "\n".join(result.trace[-40:])
    return f"{result.reproduce}\n{trace}\n" + "\n".join(result.violations)


@pytest.mark.parametrize("seed", DEFAULT_SEEDS)
def test_replica_simulation_is_safe(seed: int) -> None:
    result = run_replica_simulation(seed)
    assert result.violations == [], _failure(result)
    assert result.linearizability == "linearizable"


@pytest.mark.slow
@pytest.mark.parametrize("seed", SLOW_SEEDS)
def test_replica_simulation_is_safe_many_seeds(seed: int) -> None:
    # 4 s of faults: at 6 s, a few histories on one register with many lost operations
    # are too costly to check (UNKNOWN after the checker's 10M steps).
    result = run_replica_simulation(seed, steps_ms=4_000)
    assert result.violations == [], _failure(result)


def test_a_seed_reproduces_the_run_exactly() -> None:
    first = run_replica_simulation(11)
    second = run_replica_simulation(11)
    assert first.trace == second.trace
    assert (first.operations, first.operations_answered, first.applied_max) == (
        second.operations,
        second.operations_answered,
        second.applied_max,
    )
    assert run_replica_simulation(12).trace != first.trace


def test_the_seeds_exercise_the_mechanisms() -> None:
    """Faults, failovers, sessions and operations really happen (not a no-op sim)."""
    results = [run_replica_simulation(seed) for seed in range(0, 40, 4)]
    assert sum(r.crashes for r in results) > 5
    assert sum(r.partitions for r in results) > 2
    assert sum(r.pauses for r in results) > 2
    assert sum(r.leaders for r in results) > 2 * len(results)  # failovers
    assert sum(r.sessions for r in results) > sum(r.config.clients for r in results)
    assert sum(r.operations_answered for r in results) > 1_000
    assert sum(r.ephemerals for r in results) > 20
    assert any(r.config.replicas == 5 for r in results)


def test_a_replica_that_forgets_a_write_is_caught() -> None:
    # Replica 1 skips its third successful setData: its outcome differs from the others'
    # at that zxid (and its tree from theirs), whatever the client history shows.
    for seed in range(5):
        result = run_replica_simulation(seed, planted_bug=PlantedBug.FORGETFUL_REPLICA)
        assert any(v.startswith("zxid") and "replica 1 got" in v for v in result.violations), (
            _failure(result)
        )


def test_reads_without_sync_are_not_linearizable() -> None:
    # "sync then read" without the sync: a follower answers from its own, lagging tree.
    results = [
        run_replica_simulation(seed, planted_bug=PlantedBug.UNSYNCED_READS) for seed in range(10)
    ]
    caught = [r for r in results if any("client history" in v for v in r.violations)]
    assert caught, "no stale read was caught in 10 seeds"
    for result in results:  # the replicas themselves did nothing wrong
        assert all(v.startswith("client history") for v in result.violations), _failure(result)


def test_main_replays_a_seed(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--replicas", "--seed", "3"]) == 0
    assert "seed 3:" in capsys.readouterr().out
    assert main(["--replicas", "--seed", "3", "--planted", "forgetful-replica"]) == 1
    assert "VIOLATION" in capsys.readouterr().out


def test_an_undecided_history_is_checked_again_with_a_larger_budget(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The first check gets a budget too small to decide anything (UNKNOWN); the run
    # must check again with UNKNOWN_RETRY_BUDGET_FACTOR times the default budgets and
    # take that verdict.
    real_check = lin.check_history
    budgets: list[tuple[int | None, int | None]] = []

    def check(history: Any, **options: Any) -> lin.CheckResult:
        budgets.append((options.get("steps_max"), options.get("configurations_max")))
        if len(budgets) == 1:
            return real_check(history, **{**options, "steps_max": 1})
        return real_check(history, **options)

    monkeypatch.setattr(replicas.lin, "check_history", check)
    result = run_replica_simulation(3)
    factor = replicas.UNKNOWN_RETRY_BUDGET_FACTOR
    assert budgets == [
        (None, None),
        (lin.SEARCH_STEPS_MAX * factor, lin.SEARCH_CONFIGURATIONS_MAX * factor),
    ]
    assert result.linearizability == lin.Verdict.LINEARIZABLE.value
    assert result.violations == []
