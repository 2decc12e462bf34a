"""Snapshot files: the state machine's bytes at a log position, checksummed, atomic.

File: `<data dir>/snapshots/snapshot.<index:016x>`

    header   magic "CORRALS1" | format u32 | index u64 | term u64 | voters (256-bit set
             of replica ids, 32 B) | learners (same) | checksum (8 B)
    chunks   framing.py SNAPSHOT_CHUNK records of at most SNAPSHOT_CHUNK_SIZE bytes: the
             content (tree/snapshot.py's encoding; opaque here: storage/ may not import
             tree/), each chunk with its own checksum so damage is located to a chunk
    trailer  one SNAPSHOT_TRAILER record: content length u64 | chunk count u32

Rules:
* Written to `<name>.tmp`, fsynced, renamed, directory fsynced: a snapshot file under its
  final name is complete; a crash leaves at most a `.tmp`, removed at start-up.
* `read_snapshot` checks everything (header, every chunk, the trailer, nothing after it)
  and raises SnapshotCorrupt naming the file and offset; the caller may fall back to an
  older snapshot.
* `index` is the last log index the content reflects, `term` that entry's term (for an
  imported ZooKeeper tree: ZooKeeper's epoch), with the membership in force there:
  together a consensus SnapshotMeta.
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass

from corral.consensus.types import SnapshotMeta
from corral.storage.framing import RecordKind, ScanEnd, checksum, encode_record, scan
from corral.storage.fs import FileSystem

SNAP_DIR = "snapshots"
SNAPSHOT_MAGIC = b"CORRALS1"
SNAPSHOT_FORMAT = 1
SNAPSHOT_CHUNK_SIZE = 1024 * 1024  # bytes of content per chunk record
_HEAD = struct.Struct(">8sIQQ32s32s")
SNAPSHOT_HEADER_SIZE = _HEAD.size + 8
_TRAILER = struct.Struct(">QI")
_NAME = re.compile(r"^snapshot\.([0-9a-f]{16})$")


class SnapshotCorrupt(Exception):
    """A snapshot file failed its checks; the message names the file and offset."""


@dataclass(frozen=True, slots=True, kw_only=True)
class SnapshotFile:
    path: str
    meta: SnapshotMeta
    content: bytes


def _id_set(ids: tuple[int, ...]) -> bytes:
    bits = 0
    for replica_id in ids:
        bits |= 1 << replica_id
    return bits.to_bytes(32, "big")


def _ids(data: bytes) -> tuple[int, ...]:
    bits = int.from_bytes(data, "big")
    return tuple(i for i in range(256) if bits >> i & 1)


def snapshot_dir(data_dir: str) -> str:
    return f"{data_dir}/{SNAP_DIR}"


def snapshot_name(index: int) -> str:
    return f"snapshot.{index:016x}"


def list_snapshots(fs: FileSystem, data_dir: str) -> list[tuple[int, str]]:
    """(index, path) of every snapshot file, newest first (by name; not verified)."""
    directory = snapshot_dir(data_dir)
    found = []
    for name in fs.listdir(directory):
        match = _NAME.match(name)
        if match is not None:
            found.append((int(match.group(1), 16), f"{directory}/{name}"))
    return sorted(found, reverse=True)


def remove_temporaries(fs: FileSystem, data_dir: str) -> list[str]:
    directory = snapshot_dir(data_dir)
    removed = []
    for name in fs.listdir(directory):
        if name.endswith(".tmp"):
            fs.remove(f"{directory}/{name}")
            removed.append(f"{directory}/{name}")
    return removed


def write_snapshot(fs: FileSystem, data_dir: str, *, meta: SnapshotMeta, content: bytes) -> str:
    """Write a snapshot durably; returns its path. Blocks (fsyncs): not on an event loop."""
    directory = snapshot_dir(data_dir)
    fs.makedirs(directory)
    path = f"{directory}/{snapshot_name(meta.index)}"
    tmp = path + ".tmp"
    if fs.exists(tmp):
        fs.remove(tmp)
    file = fs.open(tmp, create=True)
    try:
        head = _HEAD.pack(
            SNAPSHOT_MAGIC,
            SNAPSHOT_FORMAT,
            meta.index,
            meta.term,
            _id_set(meta.voters),
            _id_set(meta.learners),
        )
        offset = 0
        file.pwrite(offset, head + checksum(head))
        offset += SNAPSHOT_HEADER_SIZE
        view = memoryview(content)
        chunks = 0
        for start in range(0, len(content), SNAPSHOT_CHUNK_SIZE):
            record = encode_record(
                RecordKind.SNAPSHOT_CHUNK, bytes(view[start : start + SNAPSHOT_CHUNK_SIZE])
            )
            file.pwrite(offset, record)
            offset += len(record)
            chunks += 1
        trailer = encode_record(RecordKind.SNAPSHOT_TRAILER, _TRAILER.pack(len(content), chunks))
        file.pwrite(offset, trailer)
        file.fsync()
    finally:
        file.close()
    fs.rename(tmp, path)
    fs.fsync_dir(directory)
    return path


def read_snapshot_header(fs: FileSystem, path: str) -> SnapshotMeta:
    """The meta from the header alone (for tools)."""
    data = fs.read(path)[:SNAPSHOT_HEADER_SIZE]
    return _check_header(path, data)


def _check_header(path: str, data: bytes) -> SnapshotMeta:
    if len(data) < SNAPSHOT_HEADER_SIZE:
        raise SnapshotCorrupt(f"{path} offset 0: {len(data)} bytes, shorter than a header")
    magic, snapshot_format, index, term, voters, learners = _HEAD.unpack_from(data)
    if magic != SNAPSHOT_MAGIC:
        raise SnapshotCorrupt(f"{path} offset 0: not a corral snapshot (magic {magic!r})")
    if checksum(data[: _HEAD.size]) != data[_HEAD.size : SNAPSHOT_HEADER_SIZE]:
        raise SnapshotCorrupt(f"{path} offset 0: header checksum mismatch")
    if snapshot_format != SNAPSHOT_FORMAT:
        raise SnapshotCorrupt(f"{path} offset 8: unknown snapshot format {snapshot_format}")
    try:
        return SnapshotMeta(index=index, term=term, voters=_ids(voters), learners=_ids(learners))
    except AssertionError as e:
        raise SnapshotCorrupt(f"{path} offset 0: impossible snapshot meta: {e}") from e


def read_snapshot(fs: FileSystem, path: str) -> SnapshotFile:
    data = fs.read(path)
    meta = _check_header(path, data)
    result = scan(data, SNAPSHOT_HEADER_SIZE)
    if result.end is not ScanEnd.END or result.end_offset != len(data):
        what = result.reason or "unexpected zeros"
        raise SnapshotCorrupt(f"{path} offset {result.end_offset}: {what}")
    if not result.records or result.records[-1].kind != RecordKind.SNAPSHOT_TRAILER:
        raise SnapshotCorrupt(f"{path} offset {result.end_offset}: no trailer (file cut short)")
    trailer = result.records[-1]
    chunks = result.records[:-1]
    try:
        content_length, chunk_count = _TRAILER.unpack(trailer.payload)
    except struct.error as e:
        raise SnapshotCorrupt(f"{path} offset {trailer.offset}: bad trailer") from e
    for chunk in chunks:
        if chunk.kind != RecordKind.SNAPSHOT_CHUNK:
            raise SnapshotCorrupt(f"{path} offset {chunk.offset}: {chunk.kind.name} record")
    content = b"".join(chunk.payload for chunk in chunks)
    if chunk_count != len(chunks) or content_length != len(content):
        raise SnapshotCorrupt(
            f"{path} offset {trailer.offset}: trailer says {chunk_count} chunks and "
            f"{content_length} bytes, the file has {len(chunks)} and {len(content)}"
        )
    return SnapshotFile(path=path, meta=meta, content=content)
