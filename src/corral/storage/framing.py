"""Checksummed records, the unit of every file storage/ writes.

Record layout (big-endian), the same in WAL segments and (as one trailer) in snapshots:

    length  u32   bytes of payload
    hcheck  u32   CRC-32 (zlib) of length | kind: the length is trusted only if it matches
    kind    u8    RecordKind; 0 never occurs, so zeroed (preallocated) space is no record
    check   8 B   checksum over length | kind | payload
    payload

Rules:
* The checksum is BLAKE2b with an 8-byte digest (hashlib, no dependency): a random
  corruption goes unnoticed with probability 2**-64, against 2**-32 for CRC32C; CRCs
  also guarantee to catch short bursts, but at 2**-64 that guarantee adds nothing
  measurable. The header has its own check, so a flipped length bit is never mistaken
  for a record cut short.
* `scan` tells apart the three ways a record can end the readable part of a file:
  END (zeros: preallocated space never written), TORN (the record is cut short by the
  end of the file or part of it reads as whole zero sectors: a write that a crash
  interrupted, since preallocated space is zeros) and CORRUPT (anything else: a bad
  checksum over non-zero data, a kind we do not know). Whether TORN is acceptable is
  the caller's decision (only at the tail of the newest segment).
* Known limit (shared with etcd's WAL): a record whose payload genuinely holds an aligned
  zero sector and is also damaged elsewhere would be read as TORN; at the tail of the
  newest segment it is then truncated, and the caller checks that no committed entry is
  lost that way (it stops the server if one would be).
"""

from __future__ import annotations

import enum
import hashlib
import struct
import zlib
from dataclasses import dataclass

from corral.storage.fs import SECTOR_SIZE

HEADER = struct.Struct(">IIB8s")
HEADER_SIZE = HEADER.size  # 17
_LENGTH_KIND = struct.Struct(">IB")
RECORD_PAYLOAD_SIZE_MAX = 256 * 1024 * 1024  # bytes; far above one entry (jute.maxbuffer)


class RecordKind(enum.IntEnum):
    ENTRY = 1  # a consensus log entry
    HARD_STATE = 2  # term, vote, commit
    SNAPSHOT_CHUNK = 3  # a piece of a snapshot's content
    SNAPSHOT_TRAILER = 4  # ends a snapshot file: content length and chunk count


_KINDS = frozenset(int(kind) for kind in RecordKind)


def checksum(*parts: bytes) -> bytes:
    h = hashlib.blake2b(digest_size=8)
    for part in parts:
        h.update(part)
    return h.digest()


def _header_check(length: int, kind: int) -> int:
    return zlib.crc32(_LENGTH_KIND.pack(length, kind))


def encode_record(kind: RecordKind, payload: bytes, tail: bytes = b"") -> bytes:
    """A record whose payload is `payload + tail` (two parts: no copy to join them)."""
    length = len(payload) + len(tail)
    assert length <= RECORD_PAYLOAD_SIZE_MAX, length
    length_kind = _LENGTH_KIND.pack(length, kind)
    check = hashlib.blake2b(length_kind, digest_size=8)  # checksum(length_kind, payload, tail)
    check.update(payload)
    check.update(tail)
    return b"".join(
        (HEADER.pack(length, zlib.crc32(length_kind), kind, check.digest()), payload, tail)
    )


class ScanEnd(enum.Enum):
    END = "end"  # zeros or the end of the file: nothing more was ever written
    TORN = "torn"  # a write interrupted by a crash
    CORRUPT = "corrupt"  # damaged data that no crash explains


@dataclass(frozen=True, slots=True, kw_only=True)
class Scanned:
    offset: int  # of the record in the file
    kind: RecordKind
    payload: bytes


@dataclass(frozen=True, slots=True, kw_only=True)
class ScanResult:
    records: list[Scanned]
    end_offset: int  # where the valid records stop
    end: ScanEnd
    reason: str  # for TORN/CORRUPT, what was wrong


def _has_zero_sector(data: bytes, start: int, end: int) -> bool:
    """Whether [start, end) contains a stretch of zeros from a sector boundary (or from
    `start`) to the next boundary (or `end`): a sector the crash did not write."""
    position = start
    while position < end:
        boundary = min((position // SECTOR_SIZE + 1) * SECTOR_SIZE, end)
        if data[position:boundary].count(0) == boundary - position:
            return True
        position = boundary
    return False


def scan(data: bytes, start: int) -> ScanResult:
    """Read records from `start` until the first one that is not valid."""
    records: list[Scanned] = []
    offset = start
    size = len(data)
    while True:
        if offset + HEADER_SIZE > size:
            # Fewer bytes than a header: zeros mean END; data there was never written by
            # us (files have their final size before any record goes in).
            rest = data[offset:]
            if rest.count(0) == len(rest):
                return ScanResult(records=records, end_offset=offset, end=ScanEnd.END, reason="")
            return ScanResult(
                records=records,
                end_offset=offset,
                end=ScanEnd.CORRUPT,
                reason="record header cut short by the end of the file",
            )
        length, header_check, kind, check = HEADER.unpack_from(data, offset)
        if length == 0 and header_check == 0 and kind == 0 and check == bytes(8):
            return ScanResult(records=records, end_offset=offset, end=ScanEnd.END, reason="")
        if header_check != _header_check(length, kind):
            torn = _has_zero_sector(data, offset, offset + HEADER_SIZE)
            return ScanResult(
                records=records,
                end_offset=offset,
                end=ScanEnd.TORN if torn else ScanEnd.CORRUPT,
                reason="record header check mismatch",
            )
        end = offset + HEADER_SIZE + length
        if end > size or length > RECORD_PAYLOAD_SIZE_MAX:
            return ScanResult(
                records=records,
                end_offset=offset,
                end=ScanEnd.CORRUPT,
                reason=f"record of {length} bytes runs past the end of the file ({size})",
            )
        payload = data[offset + HEADER_SIZE : end]
        valid = checksum(_LENGTH_KIND.pack(length, kind), payload) == check
        if not valid or kind not in _KINDS:
            torn = _has_zero_sector(data, offset, end)
            return ScanResult(
                records=records,
                end_offset=offset,
                end=ScanEnd.TORN if torn else ScanEnd.CORRUPT,
                reason="checksum mismatch" if not valid else f"unknown record kind {kind}",
            )
        records.append(Scanned(offset=offset, kind=RecordKind(kind), payload=payload))
        offset = end
