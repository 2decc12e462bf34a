"""Frame splitting: a 4-byte big-endian length, then that many bytes.

Rules: sans-IO. Bytes go in with `feed`, whole frames come out of `next_frame`. A length
prefix that is negative or larger than `frame_size_max` raises FrameError: the
connection must be closed (ZooKeeper sends nothing in that case).
"""

from __future__ import annotations

import struct

from corral.limits import FRAME_SIZE_MAX
from corral.protocol.errors import FrameError, LocalProtocolError

_LENGTH = struct.Struct(">i")


class FrameBuffer:
    __slots__ = ("_buf", "_frame_size_max")

    def __init__(self, frame_size_max: int = FRAME_SIZE_MAX) -> None:
        self._buf = bytearray()
        self._frame_size_max = frame_size_max

    def feed(self, data: bytes) -> None:
        self._buf += data

    def __len__(self) -> int:
        return len(self._buf)

    def peek(self, size: int) -> bytes | None:
        """The first `size` buffered bytes without consuming them, or None if fewer."""
        if len(self._buf) < size:
            return None
        return bytes(self._buf[:size])

    def take(self, size: int) -> bytes | None:
        if len(self._buf) < size:
            return None
        data = bytes(self._buf[:size])
        del self._buf[:size]
        return data

    def next_frame(self) -> bytes | None:
        """The next whole frame's payload, or None until more data arrives."""
        if len(self._buf) < 4:
            return None
        (size,) = _LENGTH.unpack_from(self._buf, 0)
        if not 0 <= size <= self._frame_size_max:
            raise FrameError(f"frame length {size} outside [0, {self._frame_size_max}]")
        if len(self._buf) < 4 + size:
            return None
        payload = bytes(self._buf[4 : 4 + size])
        del self._buf[: 4 + size]
        return payload


def frame(payload: bytes, frame_size_max: int = FRAME_SIZE_MAX) -> bytes:
    """Prefix `payload` with its length; refuse what the peer could not accept."""
    if len(payload) > frame_size_max:
        raise LocalProtocolError(f"frame payload {len(payload)} exceeds {frame_size_max}")
    return _LENGTH.pack(len(payload)) + payload
