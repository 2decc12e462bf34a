"""server-semantics §27 edge cases 116-133: containers, TTL nodes, quotas, jute.maxbuffer,
frame limits, four-letter words; plus multi failing at each position."""

from __future__ import annotations

import struct

import pytest

from corral.protocol.constants import OpCode
from corral.protocol.jute import Writer
from corral.protocol.records import RequestHeader, SetDataRequest
from tests.differential.ops import (
    children,
    create,
    create2,
    create_container,
    create_ttl,
    delete,
    exists,
    get_data,
    m_check,
    m_create,
    m_delete,
    multi,
    set_data,
)
from tests.support.scenario import (
    Drain,
    FourLetter,
    Open,
    Raw,
    Sleep,
    Step,
    WaitEvents,
)
from tests.support.servers import SHARED_SPEC, ServerSpec

FRAME_SIZE_MAX = 0xFFFFF  # jute.maxbuffer default, what both servers run with

pytestmark = pytest.mark.zookeeper


# --------------------------------------------------------------------------- containers, TTL


def test_edge_116_container_reaped_after_last_child(diff) -> None:
    diff.run(
        [
            Open(session="a"),
            Open(session="w"),
            create_container("a", "/used"),
            create_container("a", "/never-used"),
            create("a", "/used/x"),
            exists("w", "/used", watch=True),
            delete("a", "/used/x"),
            WaitEvents(session="w", count=1, wait_ms=10_000),
            Sleep(ms=2_500),
            exists("w", "/used"),
            exists("w", "/never-used"),
        ],
        spec=SHARED_SPEC,
    )


def test_edge_117_container_only_from_create_container(diff) -> None:
    diff.run(
        [
            Open(session="a"),
            Open(session="w"),
            create2("a", "/plain", flags=4),
            create_container("a", "/box", flags=0),
            create("a", "/plain/x"),
            create("a", "/box/x"),
            exists("w", "/box", watch=True),
            delete("a", "/plain/x"),
            delete("a", "/box/x"),
            WaitEvents(session="w", count=1, wait_ms=10_000),
            Sleep(ms=2_500),
            exists("w", "/plain"),
            exists("w", "/box"),
        ],
        spec=SHARED_SPEC,
    )


def test_edge_118_ttl_nodes(diff) -> None:
    steps: list[Step] = [
        Open(session="a"),
        Open(session="w"),
        create_ttl("a", "/idle", 1_500),
        create_ttl("a", "/parent", 1_500),
        create("a", "/parent/child"),
        create_ttl("a", "/busy", 1_500),
        exists("w", "/idle", watch=True),
    ]
    for i in range(6):
        steps += [Sleep(ms=500), set_data("a", "/busy", f"{i}".encode())]
    steps += [
        WaitEvents(session="w", count=1, wait_ms=10_000),
        exists("w", "/parent"),
        exists("w", "/busy"),
    ]
    diff.run(steps, spec=SHARED_SPEC)


def test_edge_119_container_and_ttl_stats(diff) -> None:
    diff.run(
        [
            Open(session="a"),
            create("a", "/c", opcode=OpCode.CREATE_CONTAINER, flags=4),
            create_ttl("a", "/t", 60_000),
            create("a", "/c/e", flags=1),
            create("a", "/t/e", flags=3),
            exists("a", "/c"),
            exists("a", "/t"),
            children("a", "/t"),
            multi("a", m_delete("/c/e"), m_delete("/c")),
        ],
        spec=SHARED_SPEC,
    )


# --------------------------------------------------------------------------- quotas


def quota_steps(ns: str, limits: bytes) -> list[Step]:
    base = f"/zookeeper/quota{ns}"
    return [
        create("a", base),
        create("a", f"{base}/zookeeper_limits", limits),
        create("a", f"{base}/zookeeper_stats", b"count=0,bytes=0"),
        get_data("a", f"{base}/zookeeper_stats"),
    ]


def test_edge_120_quota_hard_count_limit(diff) -> None:
    ns = diff.ns
    stats = f"/zookeeper/quota{ns}/zookeeper_stats"
    diff.run(
        [
            Open(session="a"),
            create("a", f"{ns}/a"),
            *quota_steps(ns, b"count=-1,bytes=-1=;byteHardLimit=20;countHardLimit=4"),
            create("a", f"{ns}/b"),
            create("a", f"{ns}/c"),
            create("a", f"{ns}/d"),
            get_data("a", stats),
            set_data("a", f"{ns}/a", b"x" * 19),
            set_data("a", f"{ns}/b", b"yy"),
            set_data("a", f"{ns}/a", b"z" * 19),
            delete("a", f"{ns}/c"),
            get_data("a", stats),
            children("a", ns),
        ]
    )


def test_edge_121_quota_stats_recomputed_then_updated_in_place(diff) -> None:
    ns = diff.ns
    stats = f"/zookeeper/quota{ns}/zookeeper_stats"
    diff.run(
        [
            Open(session="a"),
            set_data("a", ns, b"12345"),
            create("a", f"{ns}/k", b"1"),
            *quota_steps(ns, b"count=10,bytes=100"),
            create("a", f"{ns}/k2", b"abc"),
            get_data("a", stats),
            delete("a", f"{ns}/k"),
            get_data("a", stats),
        ]
    )


def test_edge_122_quota_soft_limit_only_warns(diff) -> None:
    ns = diff.ns
    diff.run(
        [
            Open(session="a"),
            *quota_steps(ns, b"count=2,bytes=-1"),
            create("a", f"{ns}/a"),
            create("a", f"{ns}/b"),
            create("a", f"{ns}/c"),
            children("a", ns),
        ]
    )


# --------------------------------------------------------------------------- size limits


def set_data_frame(xid: int, path: str, size: int) -> bytes:
    """A setData request frame built by hand (our codec refuses to build oversized ones)."""
    w = Writer()
    RequestHeader(xid=xid, opcode=OpCode.SET_DATA).encode(w)
    SetDataRequest(path=path, data=b"d" * size, version=-1).encode(w)
    payload = w.getvalue()
    return struct.pack(">i", len(payload)) + payload


def largest_set_data(path: str) -> int:
    # header 8 + path (4 + len) + data (4 + n) + version 4 <= FRAME_SIZE_MAX
    return FRAME_SIZE_MAX - 20 - len(path.encode())


def test_edge_123_jute_maxbuffer(diff) -> None:
    ns = diff.ns
    path = f"{ns}/big"
    size = largest_set_data(path)
    diff.run(
        [
            Open(session="a"),
            create("a", path),
            set_data("a", path, b"d" * size),
            Raw(
                session="a",
                data=set_data_frame(50, path, size + 1),
                reply_to=(50, OpCode.SET_DATA),
                wait_ms=5_000,
            ),
            Open(session="b"),
            get_data("b", path),
        ]
    )


def test_edge_124_bad_frame_lengths_close(diff) -> None:
    diff.run(
        [
            Open(session="a"),
            Raw(session="a", data=b"\x7f\xff\xff\xff", wait_ms=5_000),
            Open(session="b"),
            Raw(session="b", data=b"\xff\xff\xff\xfe" + b"\x00" * 8, wait_ms=5_000),
            Open(session="c"),
            Raw(session="c", data=struct.pack(">i", FRAME_SIZE_MAX + 1), wait_ms=5_000),
        ],
        pristine=True,
    )


# --------------------------------------------------------------------------- four-letter words


def test_edge_125_whitelist(diff) -> None:
    spec = ServerSpec(zoo_cfg={"4lw.commands.whitelist": "srvr, isro"})
    diff.run(
        [
            FourLetter(word="ruok"),
            FourLetter(word="mntr"),
            FourLetter(word="srvr"),
            FourLetter(word="isro"),
            FourLetter(word="wchs"),
        ],
        spec=spec,
    )


def test_edge_126_four_letter_word_after_handshake_closes(diff) -> None:
    diff.run(
        [Open(session="a"), Raw(session="a", data=b"ruok", wait_ms=5_000)],
        pristine=True,
    )


def test_edge_127_unknown_word_closes_silently(diff) -> None:
    diff.run(
        [
            Open(session="x", handshake=False),
            Raw(session="x", data=b"xxxx", wait_ms=5_000),
            FourLetter(word="xxxx", data=b"xxxx"),
        ],
        pristine=True,
    )


def test_edge_128_srvr_shape(diff) -> None:
    diff.run([FourLetter(word="srvr"), FourLetter(word="stat")], pristine=True)


def test_edge_129_mntr_shape(diff) -> None:
    diff.run([Open(session="a"), FourLetter(word="mntr")], pristine=True)


def test_edge_130_isro(diff) -> None:
    diff.run([FourLetter(word="isro"), FourLetter(word="ruok")], pristine=True)


@pytest.mark.skip(reason="edges 131-132: the admin server is off on both (not differential)")
def test_edge_131_admin_server(diff) -> None:
    pass


def test_four_letter_words_shapes(diff) -> None:
    diff.run(
        [
            Open(session="a"),
            get_data("a", "/zookeeper", watch=True),
            FourLetter(word="conf"),
            FourLetter(word="cons"),
            FourLetter(word="envi"),
            FourLetter(word="dirs"),
            FourLetter(word="dump"),
            FourLetter(word="gtmk"),
            FourLetter(word="wchs"),
            FourLetter(word="crst"),
            FourLetter(word="srst"),
            Drain(session="a"),
        ],
        pristine=True,
    )


# --------------------------------------------------------------------------- multi positions


@pytest.mark.parametrize("position", range(5))
def test_multi_fails_at_each_position(diff, position: int) -> None:
    ns = diff.ns
    ops = [m_create(f"{ns}/n{i}") for i in range(5)]
    ops[position] = m_check(ns, 99)
    diff.run(
        [
            Open(session="a"),
            Open(session="w"),
            children("w", ns, watch=True),
            multi("a", *ops),
            children("a", ns),
            create("a", f"{ns}/after", flags=2),
            Drain(session="w"),
        ]
    )
