"""Quotas (§14): stats maintenance in place and hard-limit enforcement.

Tests named test_NN_* are server-semantics §27 edge case NN.
"""

from __future__ import annotations

import pytest

from corral.protocol.constants import ErrorCode
from corral.tree.quota import StatsTrack, format_stats, parse_stats
from tests.tree.harness import Harness, check_op, create_op

OK = ErrorCode.OK
LIMITS = b"count=-1,bytes=-1=;byteHardLimit=20;countHardLimit=4"


def set_quota(h: Harness, path: str, limits: bytes) -> None:
    """What the CLI's setquota does: the quota node path, limits, then stats."""
    parts = path.strip("/").split("/")
    current = "/zookeeper/quota"
    for part in parts:
        current += "/" + part
        if h.tree.get(current) is None:
            assert h.create(current).err == OK
    assert h.create(current + "/zookeeper_limits", limits).err == OK
    assert h.create(current + "/zookeeper_stats", b"count=0,bytes=0").err == OK


def usage(h: Harness, path: str) -> bytes | None:
    znode = h.tree.get(f"/zookeeper/quota{path}/zookeeper_stats")
    assert znode is not None
    return znode.data


def test_parse_and_format() -> None:
    track = parse_stats(LIMITS)
    assert (track.count, track.bytes, track.byte_hard_limit, track.count_hard_limit) == (
        -1,
        -1,
        20,
        4,
    )
    assert format_stats(track) == LIMITS
    assert format_stats(StatsTrack().with_usage(count=2, bytes_=6)) == b"count=2,bytes=6"
    assert parse_stats(b"count=,bytes=5").count == -1
    assert parse_stats(b"").count == -1
    assert parse_stats(None).bytes == -1
    assert parse_stats(b"count=abc").count == -1


def test_121_stats_recomputed_on_creation_then_updated_in_place() -> None:
    h = Harness()
    h.create("/a", b"12345")
    h.create("/a/b", b"x")
    set_quota(h, "/a", b"count=10,bytes=-1")
    assert usage(h, "/a") == b"count=2,bytes=6"
    stats_before = h.stat("/zookeeper/quota/a/zookeeper_stats")
    h.create("/a/b/c", b"abc")
    assert usage(h, "/a") == b"count=3,bytes=9"
    h.set_data("/a/b", b"")
    assert usage(h, "/a") == b"count=3,bytes=8"
    h.delete("/a/b/c")
    assert usage(h, "/a") == b"count=2,bytes=5"
    stats_after = h.stat("/zookeeper/quota/a/zookeeper_stats")
    assert (stats_after.version, stats_after.mzxid, stats_after.mtime_ms) == (
        stats_before.version,
        stats_before.mzxid,
        stats_before.mtime_ms,
    )
    assert stats_after.data_length == len(b"count=2,bytes=5")
    h.tree.check_invariants()


def test_paths_outside_the_quota_are_not_counted() -> None:
    h = Harness()
    h.create("/a")
    h.create("/ab")
    set_quota(h, "/a", b"count=10,bytes=-1")
    h.create("/ab/x", b"zzz")
    h.create("/b")
    assert usage(h, "/a") == b"count=1,bytes=0"


def test_deepest_quota_wins() -> None:
    h = Harness()
    h.create("/a")
    h.create("/a/b")
    set_quota(h, "/a", b"count=100")
    set_quota(h, "/a/b", b"count=100")
    h.create("/a/b/c", b"1")
    h.create("/a/d", b"22")
    assert usage(h, "/a/b") == b"count=2,bytes=1"
    assert usage(h, "/a") == b"count=3,bytes=2"


def test_deleting_limits_unregisters_the_quota() -> None:
    h = Harness()
    h.create("/a")
    set_quota(h, "/a", b"count=100")
    h.delete("/zookeeper/quota/a/zookeeper_limits")
    h.create("/a/x")
    assert usage(h, "/a") == b"count=1,bytes=0"
    h.tree.check_invariants()


def test_120_count_hard_limit_enforced() -> None:
    h = Harness(enforce_quota=True)
    h.create("/a")
    h.create("/a/b")
    set_quota(h, "/a", LIMITS)
    assert h.create("/a/c3").err == OK
    assert h.create("/a/c4").err == OK
    result = h.create("/a/c5")
    assert (result.err, result.events) == (ErrorCode.QUOTA_EXCEEDED, ())
    assert h.tree.get("/a/c5") is None
    assert usage(h, "/a") == b"count=4,bytes=0"
    assert h.delete("/a/c4").err == OK  # deletes are never blocked
    assert h.create("/a/c5").err == OK


def test_byte_hard_limit_enforced_on_create_and_set_data() -> None:
    h = Harness(enforce_quota=True)
    h.create("/a")
    set_quota(h, "/a", LIMITS)
    assert h.create("/a/x", b"x" * 19).err == OK
    assert h.set_data("/a/x", b"y" * 19).err == OK  # same size at 19
    assert h.set_data("/a/x", b"y" * 21).err == ErrorCode.QUOTA_EXCEEDED
    assert h.set_data("/a/x", b"y" * 20).err == OK  # equal to the limit is allowed
    assert h.create("/a/z", b"!").err == ErrorCode.QUOTA_EXCEEDED
    assert h.create("/a/z").err == OK  # zero bytes, count 3 <= 4


def test_quota_precedence_on_set_data_is_before_badversion() -> None:
    h = Harness(enforce_quota=True)
    h.create("/a")
    set_quota(h, "/a", LIMITS)
    assert h.set_data("/a", b"x" * 50, version=99).err == ErrorCode.QUOTA_EXCEEDED
    assert h.set_data("/a", b"x", version=99).err == ErrorCode.BAD_VERSION


def test_122_soft_limit_only_warns() -> None:
    h = Harness(enforce_quota=True)
    h.create("/a")
    set_quota(h, "/a", b"count=2,bytes=1")
    for name in "xyz":
        assert h.create(f"/a/{name}", b"data").err == OK
    assert usage(h, "/a") == b"count=4,bytes=12"


def test_hard_limits_not_enforced_without_enforce_quota() -> None:
    h = Harness()
    h.create("/a")
    set_quota(h, "/a", LIMITS)
    for index in range(6):
        assert h.create(f"/a/n{index}").err == OK
    assert usage(h, "/a") == b"count=7,bytes=0"


@pytest.mark.parametrize("ops_before_failure", [1, 2])
def test_quota_inside_multi_counts_pending_ops_and_rolls_back(ops_before_failure: int) -> None:
    # corral checks hard limits against the state the earlier ops of the multi left
    # (stricter than ZooKeeper, which looks at committed state only; §24 allows it).
    h = Harness(enforce_quota=True)
    h.create("/a")
    set_quota(h, "/a", b"count=-1,bytes=-1=;countHardLimit=3")
    ops = [(1, create_op(f"/a/m{i}")) for i in range(ops_before_failure)]
    result = h.multi(*ops, (1, create_op("/a/over1")), (1, create_op("/a/over2")))
    assert h.tree.get("/a/m0") is None
    assert result.body.results[-1].err != 0  # type: ignore[union-attr]
    assert usage(h, "/a") == b"count=1,bytes=0"
    assert h.multi((1, create_op("/a/ok")), check_op("/a", 0)).events != ()
    assert usage(h, "/a") == b"count=2,bytes=0"
    h.tree.check_invariants()
