"""Value codecs: how objects become znode bytes and back.

Rules: a codec is any object with `encode(value) -> bytes` and `decode(bytes) -> value`
(the Codec protocol). bytes is the default; str and JSON are built in. Codecs never
see None: an empty or null znode reaches `decode` as b"".
"""

from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import dataclass
from typing import Any, Protocol

from corral.protocol.constants import Perm
from corral.protocol.records import ACL, Id


class Codec(Protocol):
    def encode(self, value: Any) -> bytes: ...
    def decode(self, data: bytes) -> Any: ...


class BytesCodec:
    def encode(self, value: Any) -> bytes:
        if value is None:
            return b""
        if not isinstance(value, bytes | bytearray | memoryview):
            raise TypeError(f"bytes codec: value must be bytes, not {type(value).__name__}")
        return bytes(value)

    def decode(self, data: bytes) -> Any:
        return data


@dataclass(frozen=True, slots=True)
class StrCodec:
    encoding: str = "utf-8"

    def encode(self, value: Any) -> bytes:
        if not isinstance(value, str):
            raise TypeError(f"str codec: value must be str, not {type(value).__name__}")
        return value.encode(self.encoding)

    def decode(self, data: bytes) -> Any:
        return data.decode(self.encoding)


class JsonCodec:
    """JSON values; an empty znode decodes to None."""

    def encode(self, value: Any) -> bytes:
        return json.dumps(value, separators=(",", ":"), sort_keys=True).encode("utf-8")

    def decode(self, data: bytes) -> Any:
        return json.loads(data) if data else None


BYTES: Codec = BytesCodec()
STR: Codec = StrCodec()
JSON: Codec = JsonCodec()


def digest_acl(user: str, password: str, perms: int = Perm.ALL) -> ACL:
    """An ACL entry for `digest` auth as `user:password` (ZooKeeper's digest scheme)."""
    digest = base64.b64encode(hashlib.sha1(f"{user}:{password}".encode()).digest()).decode()
    return ACL(perms=perms, id=Id(scheme="digest", id=f"{user}:{digest}"))
