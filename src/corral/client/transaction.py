"""multi and multiRead: the transaction builder and the read ops.

Rules: a Transaction collects ops (client paths, chroot applied when added) and sends
them as one atomic multi; the result is a value per op, or the exception of the first
failing op with `.results` holding every op's outcome. multiRead is not atomic: each
op has its own result or error. No asyncio here: the client does the waiting.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self

from corral.client.codecs import Codec
from corral.client.exceptions import ZooKeeperError, error_for
from corral.protocol.constants import ErrorCode, OpCode
from corral.protocol.records import (
    ACL,
    CheckVersionRequest,
    Create2Response,
    CreateResponse,
    DeleteRequest,
    MultiRequest,
    MultiResponse,
    Record,
    SetDataRequest,
    StatResponse,
)

if TYPE_CHECKING:
    from corral.client.aio import Client


@dataclass(frozen=True, slots=True)
class DataOp:
    """multi_read: getData of `path`."""

    path: str


@dataclass(frozen=True, slots=True)
class ChildrenOp:
    """multi_read: getChildren of `path`."""

    path: str


class Transaction:
    """Ops collected, then committed atomically with one multi request."""

    def __init__(self, client: Client) -> None:
        self.client = client
        self._ops: list[tuple[int, Record, str]] = []
        self.results: list[Any] | None = None

    def create(
        self,
        path: str,
        value: Any = b"",
        *,
        acl: Sequence[ACL] | None = None,
        ephemeral: bool = False,
        sequential: bool = False,
        container: bool = False,
        ttl_ms: int | None = None,
        codec: Codec | None = None,
    ) -> Self:
        opcode, request = self.client._create_request(
            path, value, acl, ephemeral, sequential, container, ttl_ms, codec
        )
        self._ops.append((opcode, request, path))
        return self

    def delete(self, path: str, version: int = -1) -> Self:
        server_path = self.client._server_path(path)
        self._ops.append((OpCode.DELETE, DeleteRequest(path=server_path, version=version), path))
        return self

    def set(self, path: str, value: Any, version: int = -1, *, codec: Codec | None = None) -> Self:
        data = (codec or self.client.codec).encode(value)
        request = SetDataRequest(path=self.client._server_path(path), data=data, version=version)
        self._ops.append((OpCode.SET_DATA, request, path))
        return self

    def check(self, path: str, version: int) -> Self:
        request = CheckVersionRequest(path=self.client._server_path(path), version=version)
        self._ops.append((OpCode.CHECK, request, path))
        return self

    async def commit(self, *, timeout_s: float | None = None) -> list[Any]:
        """Per-op results: created path, None (delete/check) or Stat (set).

        On failure raises the exception of the first failing op, with `.results`
        holding an exception per op (RuntimeInconsistencyError for the ones after it).
        """
        request = MultiRequest(ops=tuple((opcode, record) for opcode, record, _ in self._ops))
        completed = await self.client._call(
            OpCode.MULTI, request, timeout_s=timeout_s, idempotent=False
        )
        self.client._raise_for(completed, None)
        body = completed.body
        assert isinstance(body, MultiResponse)
        results: list[Any] = []
        first_error: ZooKeeperError | None = None
        for (_, _, path), result in zip(self._ops, body.results, strict=False):
            if result.type == -1:
                if result.err == 0:
                    results.append(None)  # rolled back, no error of its own
                    continue
                error = error_for(result.err, path)
                results.append(error)
                if first_error is None and result.err != ErrorCode.RUNTIME_INCONSISTENCY:
                    first_error = error
            elif isinstance(result.body, CreateResponse | Create2Response):
                results.append(result.body.path)
            elif isinstance(result.body, StatResponse):
                results.append(result.body.stat)
            else:
                results.append(None)
        self.results = results
        if first_error is not None:
            first_error.results = results
            raise first_error
        return results

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is None:
            await self.commit()
