"""Jute, ZooKeeper's serialization: big-endian primitives, length-prefixed buffers.

Rules: sans-IO; a Reader works over one complete frame and never trusts a length it
reads (every length is checked against what remains); a Writer only appends. Reading
past the end or a bad length raises DecodeError; nothing else escapes. Decoded text
never holds a surrogate (invalid UTF-8 becomes U+FFFD, Java's CESU-8 pairs are joined),
so any str from a Reader can be encoded strictly again.
"""

from __future__ import annotations

import struct

from corral.protocol.errors import DecodeError, LocalProtocolError

_INT = struct.Struct(">i")
_LONG = struct.Struct(">q")
_INT_MIN = -(2**31)
_INT_MAX = 2**31 - 1
_LONG_MIN = -(2**63)
_LONG_MAX = 2**63 - 1


class Reader:
    """Reads jute values from one frame's payload."""

    __slots__ = ("_data", "_offset")

    def __init__(self, data: bytes | memoryview, offset: int = 0) -> None:
        self._data = bytes(data)
        self._offset = offset

    @property
    def remaining(self) -> int:
        return len(self._data) - self._offset

    @property
    def offset(self) -> int:
        return self._offset

    def _need(self, size: int) -> None:
        if size > len(self._data) - self._offset:
            raise DecodeError(f"need {size} bytes at offset {self._offset}, have {self.remaining}")

    # The fixed-size reads let struct check the length (the hottest code of decoding).
    def int32(self) -> int:
        try:
            (value,) = _INT.unpack_from(self._data, self._offset)
        except struct.error:
            raise DecodeError(
                f"need 4 bytes at offset {self._offset}, have {self.remaining}"
            ) from None
        self._offset += 4
        return int(value)

    def int64(self) -> int:
        try:
            (value,) = _LONG.unpack_from(self._data, self._offset)
        except struct.error:
            raise DecodeError(
                f"need 8 bytes at offset {self._offset}, have {self.remaining}"
            ) from None
        self._offset += 8
        return int(value)

    def boolean(self) -> bool:
        self._need(1)
        value = self._data[self._offset]
        self._offset += 1
        return value != 0

    def buffer(self) -> bytes | None:
        # Every path, ACL id and data of a request comes through here: one struct call
        # and local variables instead of int32() and the `remaining` property.
        data, start = self._data, self._offset + 4
        try:
            (size,) = _INT.unpack_from(data, self._offset)
        except struct.error:
            raise DecodeError(
                f"need 4 bytes at offset {self._offset}, have {self.remaining}"
            ) from None
        if size == -1:
            self._offset = start
            return None
        end = start + size
        if size < 0 or end > len(data):
            self._offset = start
            raise DecodeError(f"buffer length {size} exceeds remaining {self.remaining}")
        self._offset = end
        return data[start:end]

    def ustring(self) -> str | None:
        raw = self.buffer()
        if raw is None:
            return None
        if raw.isascii():
            return raw.decode("ascii")
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            return _decode_lenient(raw)

    def raw(self, size: int) -> bytes:
        self._need(size)
        start = self._offset
        self._offset += size
        return self._data[start : self._offset]

    def string(self) -> str:
        """A ustring where null means empty (kazoo sends "" as null)."""
        value = self.ustring()
        return "" if value is None else value

    def count(self) -> int:
        """A vector count; -1 (null) and other negatives read as empty, as Java does."""
        count = self.int32()
        if count < 0:
            return 0
        # Every element takes at least one byte, so a count above `remaining` is a lie.
        if count > self.remaining:
            raise DecodeError(f"vector count {count} exceeds remaining {self.remaining}")
        return count

    def string_vector(self) -> tuple[str, ...]:
        return tuple(self.string() for _ in range(self.count()))

    def expect_end(self) -> None:
        # ZooKeeper ignores trailing bytes in a request; so do we. Kept as a named hook.
        return None


def _decode_lenient(raw: bytes) -> str:
    """Text from bytes that are not strict UTF-8; the result never holds a surrogate.

    Java's writer encodes a supplementary character as two 3-byte surrogate halves
    (CESU-8): those are paired back into the one character, which path validation then
    rejects as ZooKeeper does. Any other invalid byte, and a lone surrogate half, become
    U+FFFD, as in Java's decoder. A str with surrogates would be a trap for every later
    `.encode()` (storage, logs), so none escapes this module.
    """
    try:
        text = raw.decode("utf-8", errors="surrogatepass")
    except UnicodeDecodeError:
        return raw.decode("utf-8", errors="replace")
    return text.encode("utf-16-le", errors="surrogatepass").decode("utf-16-le", errors="replace")


class Writer:
    """Appends jute values to a bytearray."""

    __slots__ = ("_buf",)

    def __init__(self) -> None:
        self._buf = bytearray()

    def getvalue(self) -> bytes:
        return bytes(self._buf)

    def __len__(self) -> int:
        return len(self._buf)

    # struct refuses a value out of range (the check costs nothing when it passes).
    def int32(self, value: int) -> None:
        try:
            self._buf += _INT.pack(value)
        except struct.error:
            raise LocalProtocolError(f"int out of range: {value}") from None

    def int64(self, value: int) -> None:
        try:
            self._buf += _LONG.pack(value)
        except struct.error:
            raise LocalProtocolError(f"long out of range: {value}") from None

    def boolean(self, value: bool) -> None:
        self._buf.append(1 if value else 0)

    def buffer(self, value: bytes | None) -> None:
        if value is None:
            self._buf += _INT.pack(-1)
            return
        self._buf += _INT.pack(len(value))
        self._buf += value

    def ustring(self, value: str | None) -> None:
        if value is None:
            self._buf += _INT.pack(-1)
            return
        self.buffer(value.encode("utf-8", errors="surrogatepass"))

    def string_vector(self, values: tuple[str, ...] | list[str]) -> None:
        self._buf += _INT.pack(len(values))
        for value in values:
            self.ustring(value)

    def raw(self, data: bytes) -> None:
        self._buf += data
