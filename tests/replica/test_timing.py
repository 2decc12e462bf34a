"""zoo.cfg's tickTime and syncLimit reach the consensus core as ZooKeeper means them.

A follower that hears nothing from a leader seeks an election (its first pre-vote)
after syncLimit x tickTime of silence, randomised below twice that; logical time only.
"""

from __future__ import annotations

import pytest

from corral.consensus.log_storage import MemoryLogStorage
from corral.replica.replica import Replica, ReplicaConfig
from corral.server.config import build_config
from corral.tree.tree import DataTree

STEPS_MAX = 100_000


def first_campaign_ms(config: ReplicaConfig, seed: int) -> int:
    """Logical ms until a lone follower of a 3-voter ensemble sends its first message."""
    replica = Replica(
        config=config,
        storage=MemoryLogStorage(),
        tree=DataTree(),
        random_bytes=lambda size: bytes(size),
        rng_seed=seed,
        now_ms=0,
        wall_ms=0,
    )
    assert replica.take_startup_outbox().send == []
    now_ms = 0
    for _ in range(STEPS_MAX):
        now_ms += config.raft_tick_ms
        if replica.on_tick(now_ms, now_ms).send:
            return now_ms
    raise AssertionError(f"no campaign within {STEPS_MAX} ticks (seed {seed})")


@pytest.mark.parametrize(
    ("tick_time_ms", "sync_limit", "init_limit"), [(2000, 5, 10), (100, 3, 4), (50, 1, 1)]
)
def test_sync_limit_ticks_is_the_election_timeout(
    tick_time_ms: int, sync_limit: int, init_limit: int
) -> None:
    server = build_config(
        {
            "tickTime": str(tick_time_ms),
            "syncLimit": str(sync_limit),
            "initLimit": str(init_limit),
            "ensemble.secret": "k",
            "myid": "2",
            **{f"server.{n}": f"127.0.0.1:{2000 + n}:{3000 + n}" for n in (1, 2, 3)},
        }
    )
    config = server.replica_config()
    assert (config.sync_limit_ticks, config.init_limit_ticks) == (sync_limit, init_limit)
    assert config.sync_timeout_ms == sync_limit * tick_time_ms
    assert config.init_timeout_ms == init_limit * tick_time_ms
    timeout_ms = sync_limit * tick_time_ms
    for seed in range(20):
        elapsed_ms = first_campaign_ms(config, seed)
        # One consensus tick of slack: the timeout is counted in whole ticks.
        assert timeout_ms <= elapsed_ms < 2 * timeout_ms + config.raft_tick_ms, seed


def test_without_sync_limit_an_election_follows_one_to_two_tick_times() -> None:
    config = ReplicaConfig(replica_id=1, voters=(1, 2, 3), tick_time_ms=500)
    assert config.sync_timeout_ms == 500
    assert all(500 <= first_campaign_ms(config, seed) < 1000 + 50 for seed in range(10))
