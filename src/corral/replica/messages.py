"""What replicas say to each other, as bytes: consensus messages and replica requests.

Rules:
* Sans-IO codec: `encode_payload(message) -> bytes`, `decode_payload(bytes) -> message`.
  The transport (server/peers.py) frames and authenticates; this module only lays out
  one payload. Every payload starts with a kind byte and a version byte.
* Peer bytes are input: every length and count is checked against what remains and
  against limits.py before anything is built; a bad payload raises DecodeError (the
  link is dropped), never an assertion in the consensus records it would construct.
* Besides Raft's own messages (`RaftPayload`), a follower forwards client writes to the
  leader (`Forward`: the encoded txn, tagged with the origin replica and a token so the
  origin recognises the entry when it applies it) and reports the sessions it heard from
  (`Touch`: the leader owns expiry). A leader that cannot take a forwarded write answers
  `ForwardRejected` so the origin can fail it at once. (A follower's `sync` uses Raft's
  own read-index messages.)
"""

from __future__ import annotations

import enum
from collections.abc import Iterator
from dataclasses import dataclass

from corral import limits
from corral.consensus.types import (
    REPLICA_ID_MAX,
    REPLICA_ID_MIN,
    Entry,
    EntryKind,
    Message,
    MessageKind,
    SnapshotMeta,
    SnapshotSend,
)
from corral.protocol.errors import DecodeError
from corral.protocol.jute import Reader, Writer

VERSION = 1
# Every field of consensus.types.Message this codec carries (a test checks it is all).
MESSAGE_FIELDS = frozenset(
    "kind from_id to_id term log_term index entries commit reject reject_hint "
    "leader_transfer snapshot offset data done context".split()
)
_MESSAGE_KINDS = list(MessageKind)
_MESSAGE_KIND_CODES = {kind: code for code, kind in enumerate(_MESSAGE_KINDS)}
_FLAG_REJECT = 1
_FLAG_LEADER_TRANSFER = 2
_FLAG_DONE = 4
_FLAG_SNAPSHOT = 8
TOUCHES_MAX = 100_000  # sessions in one Touch payload
MEMBERS_MAX = REPLICA_ID_MAX  # voters or learners in one SnapshotMeta


class PayloadKind(enum.IntEnum):
    RAFT = 1
    FORWARD = 2
    FORWARD_REJECTED = 3
    TOUCH = 4


@dataclass(frozen=True, slots=True, kw_only=True)
class RaftPayload:
    message: Message


@dataclass(frozen=True, slots=True, kw_only=True)
class Forward:
    origin_id: int
    token: int  # unique per origin replica while it runs
    txn: bytes  # the entry data: tree.txn.encode_entry_data(txn, origin)


@dataclass(frozen=True, slots=True, kw_only=True)
class ForwardRejected:
    token: int


@dataclass(frozen=True, slots=True, kw_only=True)
class Touch:
    sessions: tuple[tuple[int, int], ...]  # (session id, timeout ms)


Payload = RaftPayload | Forward | ForwardRejected | Touch


# --------------------------------------------------------------------------- encode


def encode_payload(payload: Payload) -> bytes:
    w = Writer()
    match payload:
        case RaftPayload(message=message):
            _header(w, PayloadKind.RAFT)
            _write_message(w, message)
        case Forward(origin_id=origin_id, token=token, txn=txn):
            _header(w, PayloadKind.FORWARD)
            w.int32(origin_id)
            w.int64(token)
            w.buffer(txn)
        case ForwardRejected(token=token):
            _header(w, PayloadKind.FORWARD_REJECTED)
            w.int64(token)
        case Touch(sessions=sessions):
            _header(w, PayloadKind.TOUCH)
            w.int32(len(sessions))
            for session_id, timeout_ms in sessions:
                w.int64(session_id)
                w.int32(timeout_ms)
    return w.getvalue()


def encode_snapshot_chunks(send: SnapshotSend, content: bytes) -> list[tuple[int, bytes]]:
    """(peer id, payload) for each SNAPSHOT_CHUNK that streams `content` — the content of
    the durable snapshot file for `send.meta` — to `send.to_id`. Each payload fits one
    peer frame (limits.py: SNAPSHOT_CHUNK_MESSAGE_SIZE_MAX)."""
    return list(snapshot_chunk_payloads(send, content))


def snapshot_chunk_payloads(send: SnapshotSend, content: bytes) -> Iterator[tuple[int, bytes]]:
    """`encode_snapshot_chunks` one payload at a time, each encoded when it is taken."""
    return (
        (chunk.to_id, encode_payload(RaftPayload(message=chunk)))
        for chunk in send.iter_chunks(content)
    )


def _header(w: Writer, kind: PayloadKind) -> None:
    w.raw(bytes((kind, VERSION)))


def _write_message(w: Writer, message: Message) -> None:
    flags = (
        (_FLAG_REJECT if message.reject else 0)
        | (_FLAG_LEADER_TRANSFER if message.leader_transfer else 0)
        | (_FLAG_DONE if message.done else 0)
        | (_FLAG_SNAPSHOT if message.snapshot is not None else 0)
    )
    w.raw(bytes((_MESSAGE_KIND_CODES[message.kind], message.from_id, message.to_id, flags)))
    w.int64(message.term)
    w.int64(message.log_term)
    w.int64(message.index)
    w.int64(message.commit)
    w.int64(message.reject_hint)
    w.int64(message.offset)
    w.int64(message.context)
    w.int32(len(message.entries))
    for entry in message.entries:
        w.int64(entry.term)
        w.int64(entry.index)
        w.raw(bytes((entry.kind,)))
        w.buffer(entry.data)
    if message.snapshot is not None:
        meta = message.snapshot
        w.int64(meta.index)
        w.int64(meta.term)
        w.buffer(bytes(meta.voters))
        w.buffer(bytes(meta.learners))
    w.buffer(message.data)


# --------------------------------------------------------------------------- decode


def decode_payload(data: bytes) -> Payload:
    """Decode one payload from a peer; DecodeError for anything malformed."""
    r = Reader(data)
    raw = r.raw(2)
    kind_code, version = raw[0], raw[1]
    if version != VERSION:
        raise DecodeError(f"peer payload version {version}, expected {VERSION}")
    try:
        kind = PayloadKind(kind_code)
    except ValueError:
        raise DecodeError(f"unknown peer payload kind {kind_code}") from None
    payload: Payload
    if kind is PayloadKind.RAFT:
        payload = RaftPayload(message=_read_message(r))
    elif kind is PayloadKind.FORWARD:
        origin_id = _replica_id(r.int32())
        token = r.int64()
        payload = Forward(origin_id=origin_id, token=token, txn=_bytes(r))
    elif kind is PayloadKind.FORWARD_REJECTED:
        payload = ForwardRejected(token=r.int64())
    elif kind is PayloadKind.TOUCH:
        count = r.int32()
        if not 0 <= count <= min(TOUCHES_MAX, r.remaining // 12):
            raise DecodeError(f"touch of {count} sessions")
        payload = Touch(sessions=tuple((r.int64(), _positive(r.int32())) for _ in range(count)))
    else:
        raise DecodeError(f"unhandled peer payload kind {kind.name}")
    if r.remaining:
        raise DecodeError(f"{r.remaining} stray bytes after a {kind.name} payload")
    return payload


def _read_message(r: Reader) -> Message:
    head = r.raw(4)
    if head[0] >= len(_MESSAGE_KINDS):
        raise DecodeError(f"unknown consensus message kind {head[0]}")
    kind = _MESSAGE_KINDS[head[0]]
    from_id, to_id, flags = _replica_id(head[1]), _replica_id(head[2]), head[3]
    term, log_term, index, commit, reject_hint, offset, context = (
        _non_negative(r.int64()) for _ in range(7)
    )
    count = r.int32()
    if not 0 <= count <= min(limits.APPEND_ENTRIES_MAX, r.remaining // 21):
        raise DecodeError(f"message with {count} entries")
    entries = []
    previous: Entry | None = None
    for _ in range(count):
        entry_term, entry_index = r.int64(), r.int64()
        entry_kind = r.raw(1)[0]
        entry_data = _bytes(r)
        if entry_term < 1 or entry_index < 1 or entry_kind not in EntryKind._value2member_map_:
            raise DecodeError(f"bad entry term={entry_term} index={entry_index} kind={entry_kind}")
        if entry_kind == EntryKind.NOOP and entry_data:
            raise DecodeError("NOOP entry with data")
        if previous is not None and (
            entry_index != previous.index + 1 or entry_term < previous.term
        ):
            raise DecodeError("entries out of order")
        previous = Entry(
            term=entry_term, index=entry_index, kind=EntryKind(entry_kind), data=entry_data
        )
        entries.append(previous)
    snapshot = None
    if flags & _FLAG_SNAPSHOT:
        meta_index, meta_term = r.int64(), r.int64()
        voters, learners = tuple(_bytes(r)), tuple(_bytes(r))
        if meta_index < 1 or meta_term < 1 or not voters:
            raise DecodeError("bad snapshot meta")
        members = (*voters, *learners)
        if len(members) > MEMBERS_MAX or len(set(members)) != len(members):
            raise DecodeError("bad snapshot membership")
        for member in members:
            _replica_id(member)
        snapshot = SnapshotMeta(index=meta_index, term=meta_term, voters=voters, learners=learners)
    if kind is MessageKind.SNAPSHOT_CHUNK and snapshot is None:
        raise DecodeError("snapshot chunk without its snapshot")
    data = _bytes(r)
    if len(data) > limits.SNAPSHOT_CHUNK_SIZE_MAX:
        raise DecodeError(f"snapshot chunk of {len(data)} bytes")
    return Message(
        kind=kind,
        from_id=from_id,
        to_id=to_id,
        term=term,
        log_term=log_term,
        index=index,
        entries=tuple(entries),
        commit=commit,
        reject=bool(flags & _FLAG_REJECT),
        reject_hint=reject_hint,
        leader_transfer=bool(flags & _FLAG_LEADER_TRANSFER),
        snapshot=snapshot,
        offset=offset,
        data=data,
        done=bool(flags & _FLAG_DONE),
        context=context,
    )


def _bytes(r: Reader) -> bytes:
    value = r.buffer()
    return b"" if value is None else value


def _replica_id(value: int) -> int:
    if not REPLICA_ID_MIN <= value <= REPLICA_ID_MAX:
        raise DecodeError(f"replica id {value} outside {REPLICA_ID_MIN}..{REPLICA_ID_MAX}")
    return value


def _non_negative(value: int) -> int:
    if value < 0:
        raise DecodeError(f"negative value {value}")
    return value


def _positive(value: int) -> int:
    if value <= 0:
        raise DecodeError(f"non-positive value {value}")
    return value
