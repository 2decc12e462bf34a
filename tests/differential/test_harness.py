"""The comparison itself: it must catch differences, not only pass on equal runs.

These run without any server: transcripts are built by hand.
"""

from __future__ import annotations

from corral.protocol.records import Stat
from tests.support.scenario import (
    Entry,
    Field,
    Kind,
    Known,
    Op,
    SideContext,
    compare,
    flatten,
    normalise_four_letter,
)

STEPS = [Op(session="a", opcode=3), Op(session="a", opcode=3), Op(session="a", opcode=3)]
NOW_MS = 1_800_000_000_000


def side(*entries: Entry) -> SideContext:
    ctx = SideContext(host="127.0.0.1", port=0, start_ms=NOW_MS - 1000, end_ms=NOW_MS + 1000)
    ctx.entries = list(entries)
    return ctx


def reply(step: int, *fields: Field, err: str = "OK") -> Entry:
    return Entry(step, "a", "reply", [Field("err", Kind.LITERAL, err), *fields])


def zxid(value: int) -> Field:
    return Field("zxid", Kind.ZXID, value)


def problems(a: SideContext, b: SideContext, known: bool = False) -> list[str]:
    return [m.field for m in compare(STEPS, a, b, known_differences=known).mismatches]


def test_equal_transcripts_pass() -> None:
    a = side(reply(0, zxid(5)), reply(1, zxid(7)))
    b = side(reply(0, zxid(5)), reply(1, zxid(7)))
    assert problems(a, b) == []


def test_zxids_correspond_by_position_not_value() -> None:
    a = side(reply(0, zxid(5)), reply(1, zxid(7)), reply(2, zxid(7)))
    b = side(reply(0, zxid(105)), reply(1, zxid(230)), reply(2, zxid(230)))
    assert problems(a, b) == []


def test_equal_zxids_must_stay_equal() -> None:
    a = side(reply(0, zxid(5)), reply(1, zxid(5)))
    b = side(reply(0, zxid(5)), reply(1, zxid(6)))
    assert problems(a, b) == ["reply.zxid"]


def test_distinct_zxids_must_stay_distinct() -> None:
    a = side(reply(0, zxid(5)), reply(1, zxid(6)))
    b = side(reply(0, zxid(5)), reply(1, zxid(5)))
    assert problems(a, b) == ["reply.zxid"]


def test_zxid_order_must_be_kept() -> None:
    a = side(reply(0, zxid(5)), reply(1, zxid(7)), reply(2, zxid(6)))
    b = side(reply(0, zxid(5)), reply(1, zxid(7)), reply(2, zxid(8)))
    assert problems(a, b) == ["reply.zxid"]


def test_zero_zxid_is_literal() -> None:
    assert problems(side(reply(0, zxid(0))), side(reply(0, zxid(3)))) == ["reply.zxid"]


def test_literal_and_error_differences_are_reported() -> None:
    a = side(reply(0, Field("body.version", Kind.LITERAL, 1)))
    b = side(reply(0, Field("body.version", Kind.LITERAL, 2)))
    assert problems(a, b) == ["reply.body.version"]
    assert problems(side(reply(0, err="OK")), side(reply(0, err="NO_NODE"))) == ["reply.err"]


def test_missing_or_extra_entries_are_reported() -> None:
    a = side(reply(0), Entry(0, "a", "notification"))
    b = side(reply(0))
    assert problems(a, b) == ["entries"]


def test_sessions_map_one_to_one() -> None:
    def owner(value: int) -> Field:
        return Field("owner", Kind.SESSION, value)

    ok = problems(
        side(reply(0, owner(11)), reply(1, owner(11))), side(reply(0, owner(9)), reply(1, owner(9)))
    )
    bad = problems(
        side(reply(0, owner(11)), reply(1, owner(12))), side(reply(0, owner(9)), reply(1, owner(9)))
    )
    assert (ok, bad) == ([], ["reply.owner"])


def test_sets_ignore_order_but_not_content() -> None:
    def names(*values: str) -> Field:
        return Field("children", Kind.SET, frozenset(values))

    assert problems(side(reply(0, names("x", "y"))), side(reply(0, names("y", "x")))) == []
    assert problems(side(reply(0, names("x", "y"))), side(reply(0, names("x")))) == [
        "reply.children"
    ]


def stat(czxid: int, ctime_ms: int, mzxid: int, mtime_ms: int) -> list[Field]:
    return flatten(
        "",
        Stat(
            czxid=czxid,
            mzxid=mzxid,
            ctime_ms=ctime_ms,
            mtime_ms=mtime_ms,
            version=0,
            cversion=0,
            aversion=0,
            ephemeral_owner=0,
            data_length=0,
            num_children=0,
            pzxid=czxid,
        ),
    )


def test_times_follow_their_zxid() -> None:
    a = side(reply(0, *stat(5, NOW_MS, 6, NOW_MS + 3)))
    b = side(reply(0, *stat(5, NOW_MS + 1, 6, NOW_MS + 1)))
    assert problems(a, b) == []
    # The same zxid with two different times on one side is a bug there.
    a = side(reply(0, *stat(5, NOW_MS, 5, NOW_MS + 3)))
    assert "reply.mtime_ms" in problems(a, side(reply(0, *stat(5, NOW_MS, 5, NOW_MS))))


def test_times_must_not_go_back_or_leave_the_run() -> None:
    a = side(reply(0, *stat(5, NOW_MS, 6, NOW_MS)))
    assert problems(a, side(reply(0, *stat(5, NOW_MS, 6, NOW_MS - 5)))) == ["times on B"]
    seconds = NOW_MS // 1000
    assert problems(a, side(reply(0, *stat(5, seconds, 6, seconds)))) == ["times on B"]


def test_known_difference_only_where_named_and_only_against_corral() -> None:
    steps = [Op(session="a", opcode=3, known=Known.EXISTS_WITHOUT_READ)]
    a = side(reply(0, err="OK"))
    b = side(reply(0, err="NO_AUTH"))
    assert compare(steps, a, b, known_differences=True).mismatches == []
    assert len(compare(steps, a, b, known_differences=False).mismatches) == 1
    assert len(compare(STEPS, a, b, known_differences=True).mismatches) == 1


def test_notification_zxid_minus_one_accepted_only_against_corral() -> None:
    def note(value: int) -> Entry:
        return Entry(0, "a", "notification", [Field("zxid", Kind.NOTIFICATION_ZXID, value)])

    assert problems(side(note(-1)), side(note(42)), known=True) == []
    assert problems(side(note(-1)), side(note(42)), known=False) == ["notification.zxid"]


def test_four_letter_srvr_keeps_keys_and_stable_values() -> None:
    text = (
        "Zookeeper version: 3.8.0-abc, built on 2024-12-29 17:54 UTC\n"
        "Latency min/avg/max: 0/0.5/3\nReceived: 10\nSent: 9\nConnections: 1\n"
        "Outstanding: 0\nZxid: 0x1f\nMode: standalone\nNode count: 5\n"
    )
    fields = {f.name: f.value for f in normalise_four_letter("srvr", text)}
    assert fields["Zxid"] == 0x1F
    assert fields["Mode"] == "standalone"
    assert fields["Latency min/avg/max"] == "9/9.9/9"
    assert fields["keys"][0] == "Zookeeper version"


def test_unordered_events_only_where_the_step_says() -> None:
    def note(path: str) -> Entry:
        return Entry(
            0,
            "w",
            "notification",
            [Field("type", Kind.LITERAL, "NODE_DELETED"), Field("path", Kind.LITERAL, path)],
        )

    a = side(note("/x"), note("/y"), reply(0))
    b = side(note("/y"), note("/x"), reply(0))
    ordered = [Op(session="w", opcode=11)]
    unordered = [Op(session="w", opcode=11, unordered_events=True)]
    assert len(compare(ordered, a, b, known_differences=False).mismatches) == 2
    assert compare(unordered, a, b, known_differences=False).mismatches == []


def test_create2_in_multi_accepted_only_for_create2_ops() -> None:
    from corral.protocol.constants import OpCode
    from corral.protocol.records import (
        OPEN_ACL_UNSAFE,
        Create2Response,
        CreateRequest,
        CreateResponse,
        MultiRequest,
        MultiResponse,
        OpResult,
    )

    def multi_reply(result: OpResult) -> Entry:
        fields = [Field("opcode", Kind.LITERAL, OpCode.MULTI)]
        return Entry(0, "a", "reply", fields + flatten("body.", MultiResponse(results=(result,))))

    a = side(multi_reply(OpResult(type=OpCode.CREATE, body=CreateResponse(path="/x"))))

    def b_side() -> SideContext:
        body = Create2Response(
            path="/x",
            stat=Stat(
                czxid=5,
                mzxid=5,
                ctime_ms=NOW_MS,
                mtime_ms=NOW_MS,
                version=0,
                cversion=0,
                aversion=0,
                ephemeral_owner=0,
                data_length=0,
                num_children=0,
                pzxid=5,
            ),
        )
        return side(multi_reply(OpResult(type=OpCode.CREATE2, body=body)))

    def step(opcode: int) -> list[Op]:
        request = CreateRequest(path="/x", data=b"", acl=OPEN_ACL_UNSAFE, flags=0)
        return [Op(session="a", opcode=OpCode.MULTI, record=MultiRequest(ops=((opcode, request),)))]

    assert compare(step(OpCode.CREATE2), a, b_side(), known_differences=True).mismatches == []
    assert compare(step(OpCode.CREATE), a, b_side(), known_differences=True).mismatches != []
    assert compare(step(OpCode.CREATE2), a, b_side(), known_differences=False).mismatches != []
