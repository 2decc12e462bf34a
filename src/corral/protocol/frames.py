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
    """Buffered bytes as `_data[_start:]`, or in `_partial` while a long frame arrives.

    Whole frames are sliced out of the received bytes (one copy each) and the start
    moves on; nothing is deleted from the front. What is left of a read (part of a
    frame) is joined with the next read. A frame that needs many reads (a large value)
    grows in the bytearray `_partial` until it is whole: joining bytes at every read
    would copy it again and again.
    """

    __slots__ = ("_data", "_frame_size_max", "_partial", "_partial_needed", "_start")

    def __init__(self, frame_size_max: int = FRAME_SIZE_MAX) -> None:
        self._data = b""
        self._start = 0
        self._partial = bytearray()
        self._partial_needed = 0  # bytes `_partial` must hold for its frame to be whole
        self._frame_size_max = frame_size_max

    def feed(self, data: bytes) -> None:
        if self._partial:
            self._partial += data
            if len(self._partial) >= self._partial_needed:
                self._flatten()
            return
        left = len(self._data) - self._start
        if left == 0:
            self._data, self._start = bytes(data), 0
            return
        if left >= 4:
            (size,) = _LENGTH.unpack_from(self._data, self._start)
            if 0 <= size <= self._frame_size_max and left + len(data) < 4 + size:
                # The frame is not whole yet: gather it until it is.
                self._partial += memoryview(self._data)[self._start :]
                self._partial += data
                self._partial_needed = 4 + size
                self._data, self._start = b"", 0
                return
        self._data, self._start = self._data[self._start :] + data, 0

    def _flatten(self) -> None:
        if self._partial:
            self._data, self._start = bytes(self._partial), 0
            self._partial = bytearray()

    def __len__(self) -> int:
        return len(self._data) - self._start + len(self._partial)

    def peek(self, size: int) -> bytes | None:
        """The first `size` buffered bytes without consuming them, or None if fewer."""
        self._flatten()
        if len(self._data) - self._start < size:
            return None
        return self._data[self._start : self._start + size]

    def take(self, size: int) -> bytes | None:
        data = self.peek(size)
        if data is not None:
            self._start += size
        return data

    def next_frame(self) -> bytes | None:
        """The next whole frame's payload, or None until more data arrives."""
        if self._partial:
            return None  # feed() makes it `_data` as soon as the frame is whole
        data, start = self._data, self._start
        if len(data) - start < 4:
            return None
        (size,) = _LENGTH.unpack_from(data, start)
        if not 0 <= size <= self._frame_size_max:
            raise FrameError(f"frame length {size} outside [0, {self._frame_size_max}]")
        end = start + 4 + size
        if len(data) < end:
            return None
        if end == len(data):
            # All taken: let the read go now, not at the next one (an idle connection
            # would hold its last read, up to a large value's frame, for as long).
            self._data, self._start = b"", 0
        else:
            self._start = end
        return data[start + 4 : end]


def frame(payload: bytes, frame_size_max: int = FRAME_SIZE_MAX) -> bytes:
    """Prefix `payload` with its length; refuse what the peer could not accept."""
    if len(payload) > frame_size_max:
        raise LocalProtocolError(f"frame payload {len(payload)} exceeds {frame_size_max}")
    return _LENGTH.pack(len(payload)) + payload
