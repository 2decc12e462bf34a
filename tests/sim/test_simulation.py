"""The deterministic simulation: invariants hold over many seeds, and runs reproduce.

Every failure names its seed: `python -m corral.sim --seed N` replays it with a trace.
"""

from __future__ import annotations

import pytest

from corral.consensus.types import Entry, EntryKind
from corral.sim.__main__ import main
from corral.sim.simulation import (
    SimConfig,
    Simulation,
    decode_state,
    encode_state,
    run_simulation,
)

DEFAULT_SEEDS = range(300)
SLOW_SEEDS = range(300, 5_300)


@pytest.mark.parametrize("seed", DEFAULT_SEEDS)
def test_simulation_is_safe(seed: int) -> None:
    result = run_simulation(seed)
    assert result.violations == [], f"{result.violations} {result.reproduce}"


@pytest.mark.slow
@pytest.mark.parametrize("seed", SLOW_SEEDS)
def test_simulation_is_safe_many_seeds(seed: int) -> None:
    result = run_simulation(seed, steps=8_000)
    assert result.violations == [], f"{result.violations} {result.reproduce}"


def test_a_seed_reproduces_the_run_exactly() -> None:
    first = run_simulation(7)
    second = run_simulation(7)
    assert first.trace == second.trace
    assert (first.proposals, first.acknowledged, first.messages_sent) == (
        second.proposals,
        second.acknowledged,
        second.messages_sent,
    )
    assert run_simulation(8).trace != first.trace


def test_the_seeds_exercise_the_mechanisms() -> None:
    """Across the default seeds the faults and features really happen (not a no-op sim)."""
    results = [run_simulation(seed) for seed in range(0, 60, 3)]
    assert sum(r.acknowledged for r in results) > 1_000
    assert sum(r.crashes for r in results) > 10
    assert sum(r.snapshots_installed for r in results) > 3
    assert sum(r.elections for r in results) > 2 * len(results)
    assert sum(r.reads_answered for r in results) > 50
    assert any(r.config.learners for r in results)
    assert any(r.config.membership_changes for r in results)
    assert any(r.config.voters == 5 for r in results)


def test_a_quiet_cluster_acknowledges_every_proposal() -> None:
    config = SimConfig(
        seed=3,
        voters=3,
        fault_probability=0.0,
        loss_probability=0.0,
        duplicate_probability=0.0,
        # Slow disks do not cost an election: heartbeats leave through take_messages()
        # while the leader's fsync is under way (without it, seeds 0-9 hold 3 extra).
        slow_disk_probability=0.2,
        take_messages_early=True,
    )
    result = Simulation(config).run()
    assert result.violations == []
    assert result.elections == 1
    assert result.proposals > 50
    assert result.acknowledged == result.proposals


def test_state_codec_round_trips() -> None:
    entries = [
        Entry(term=1, index=1, kind=EntryKind.NORMAL, data=b"a"),
        Entry(term=2, index=2, kind=EntryKind.NOOP, data=b""),
        Entry(term=2, index=3, kind=EntryKind.NORMAL, data=b"\x00" * 300),
    ]
    assert decode_state(encode_state(entries)) == entries
    assert decode_state(b"") == []


def test_the_entry_point_replays_a_seed(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--seed", "5", "--steps", "500"]) == 0
    output = capsys.readouterr().out
    assert output.startswith("seed 5: ")
    assert "VIOLATION" not in output
