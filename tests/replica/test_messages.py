"""Replica-to-replica payloads: exact round trips, and nothing but DecodeError from bad bytes."""

from __future__ import annotations

import contextlib

from hypothesis import given, settings
from hypothesis import strategies as st

from corral.consensus.types import Entry, EntryKind, Message, MessageKind, SnapshotMeta
from corral.protocol.errors import DecodeError, ProtocolError
from corral.replica.messages import (
    MESSAGE_FIELDS,
    Forward,
    ForwardRejected,
    RaftPayload,
    Touch,
    decode_payload,
    encode_payload,
)

replica_ids = st.integers(1, 255)
non_negative = st.integers(0, 2**62)


@st.composite
def entries(draw: st.DrawFn) -> tuple[Entry, ...]:
    count = draw(st.integers(0, 5))
    first = draw(st.integers(1, 1000))
    term = draw(st.integers(1, 50))
    result = []
    for offset in range(count):
        term += draw(st.integers(0, 2))
        kind = draw(st.sampled_from(list(EntryKind)))
        data = b"" if kind == EntryKind.NOOP else draw(st.binary(max_size=30))
        result.append(Entry(term=term, index=first + offset, kind=kind, data=data))
    return tuple(result)


@st.composite
def metas(draw: st.DrawFn) -> SnapshotMeta:
    members = draw(st.lists(replica_ids, min_size=1, max_size=7, unique=True))
    split = draw(st.integers(1, len(members)))
    return SnapshotMeta(
        index=draw(st.integers(1, 10**9)),
        term=draw(st.integers(1, 10**6)),
        voters=tuple(members[:split]),
        learners=tuple(members[split:]),
    )


@st.composite
def messages(draw: st.DrawFn) -> Message:
    kind = draw(st.sampled_from(list(MessageKind)))
    snapshot = draw(metas()) if kind == MessageKind.SNAPSHOT_CHUNK else draw(st.none() | metas())
    return Message(
        kind=kind,
        from_id=draw(replica_ids),
        to_id=draw(replica_ids),
        term=draw(non_negative),
        log_term=draw(non_negative),
        index=draw(non_negative),
        entries=draw(entries()),
        commit=draw(non_negative),
        reject=draw(st.booleans()),
        reject_hint=draw(non_negative),
        leader_transfer=draw(st.booleans()),
        snapshot=snapshot,
        offset=draw(non_negative),
        data=draw(st.binary(max_size=40)),
        done=draw(st.booleans()),
        context=draw(non_negative),
    )


def test_the_codec_carries_every_field_of_a_message() -> None:
    import dataclasses

    assert {f.name for f in dataclasses.fields(Message)} == MESSAGE_FIELDS


payloads = st.one_of(
    messages().map(lambda m: RaftPayload(message=m)),
    st.builds(Forward, origin_id=replica_ids, token=non_negative, txn=st.binary(max_size=40)),
    st.builds(ForwardRejected, token=non_negative),
    st.builds(
        Touch,
        sessions=st.lists(st.tuples(non_negative, st.integers(1, 10**6)), max_size=5).map(tuple),
    ),
)


@settings(max_examples=300)
@given(payload=payloads)
def test_payloads_round_trip(payload: object) -> None:
    assert decode_payload(encode_payload(payload)) == payload  # type: ignore[arg-type]


@settings(max_examples=300)
@given(data=st.binary(max_size=200))
def test_arbitrary_bytes_raise_only_decode_errors(data: bytes) -> None:
    with contextlib.suppress(ProtocolError):
        decode_payload(data)


@settings(max_examples=200)
@given(payload=payloads, position=st.integers(0, 10_000), flip=st.integers(1, 255))
def test_corrupted_payloads_raise_only_decode_errors(
    payload: object, position: int, flip: int
) -> None:
    data = bytearray(encode_payload(payload))  # type: ignore[arg-type]
    data[position % len(data)] ^= flip
    with contextlib.suppress(DecodeError):
        decode_payload(bytes(data))


def test_truncation_and_stray_bytes_are_errors() -> None:
    data = encode_payload(Touch(sessions=((7, 4000), (9, 6000))))
    for cut in range(len(data)):
        try:
            decode_payload(data[:cut])
        except DecodeError:
            continue
        raise AssertionError(f"a payload cut at {cut} bytes decoded")
    try:
        decode_payload(data + b"\x00")
    except DecodeError:
        return
    raise AssertionError("stray bytes were accepted")
