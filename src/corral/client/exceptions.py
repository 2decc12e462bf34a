"""The client's exceptions: one class per ZooKeeper error code, plus the client's own.

Rules: a server reply with err != 0 becomes `error_for(code)`; the class tree below is
the whole hierarchy (httpx style), so callers can catch as broadly or narrowly as they
like. Unknown codes map to ZooKeeperError itself (with `.code` set), never to a new
class: the Java client cannot name codes missing from ZooKeeper's table either.

    ZooKeeperError                      .code (an int, usually an ErrorCode)
    ├── SystemZooKeeperError            codes -1 .. -99: the system or the connection
    │   ├── RuntimeInconsistencyError   -2  (multi: an op after the failing one)
    │   ├── DataInconsistencyError      -3
    │   ├── ConnectionLoss              -4  client-side: the connection broke mid-request
    │   ├── MarshallingError            -5
    │   ├── UnimplementedError          -6
    │   ├── OperationTimeout            -7  client-side: no reply before the deadline
    │   ├── BadArgumentsError           -8
    │   ├── UnknownSessionError         -12
    │   ├── NewConfigNoQuorumError      -13
    │   └── ReconfigInProgressError     -14
    └── ApiError                        codes <= -100: the request was answered with a refusal
        ├── NoNodeError                 -101
        ├── NoAuthError                 -102
        ├── BadVersionError             -103
        ├── NoChildrenForEphemeralsError -108
        ├── NodeExistsError             -110
        ├── NotEmptyError               -111
        ├── SessionExpired              -112  (also raised locally once the session is gone)
        ├── InvalidCallbackError        -113
        ├── InvalidACLError             -114
        ├── AuthFailed                  -115
        ├── SessionMovedError           -118
        ├── NotReadOnlyError            -119
        ├── EphemeralOnLocalSessionError -120
        ├── NoWatcherError              -121
        ├── RequestTimeoutError         -122
        ├── ReconfigDisabledError       -123
        ├── SessionClosedRequireSaslError -124
        ├── QuotaExceededError          -125
        └── ThrottledOpError            -127
    ClientClosed(ZooKeeperError)        the Client was closed while the call waited (code -4)

`TransactionFailed` is not a separate class: a failed multi raises the class of its
first real error code, with `.results` holding every op's outcome.
"""

from __future__ import annotations

from typing import Any

from corral.protocol.constants import ErrorCode


class ZooKeeperError(Exception):
    code: int = ErrorCode.SYSTEM_ERROR

    def __init__(self, message: str = "", *, code: int | None = None, path: str | None = None):
        if code is not None:
            self.code = code
        self.path = path
        self.results: list[Any] | None = None  # set on a failed multi
        if not message:
            try:
                message = ErrorCode(self.code).name
            except ValueError:
                message = f"error code {self.code}"
            if path is not None:
                message = f"{message}: {path}"
        super().__init__(message)


class SystemZooKeeperError(ZooKeeperError):
    pass


class ApiError(ZooKeeperError):
    pass


class RuntimeInconsistencyError(SystemZooKeeperError):
    code = ErrorCode.RUNTIME_INCONSISTENCY


class DataInconsistencyError(SystemZooKeeperError):
    code = ErrorCode.DATA_INCONSISTENCY


class ConnectionLoss(SystemZooKeeperError):
    code = ErrorCode.CONNECTION_LOSS


class MarshallingError(SystemZooKeeperError):
    code = ErrorCode.MARSHALLING_ERROR


class UnimplementedError(SystemZooKeeperError):
    code = ErrorCode.UNIMPLEMENTED


class OperationTimeout(SystemZooKeeperError):
    code = ErrorCode.OPERATION_TIMEOUT


class BadArgumentsError(SystemZooKeeperError):
    code = ErrorCode.BAD_ARGUMENTS


class UnknownSessionError(SystemZooKeeperError):
    code = ErrorCode.UNKNOWN_SESSION


class NewConfigNoQuorumError(SystemZooKeeperError):
    code = ErrorCode.NEW_CONFIG_NO_QUORUM


class ReconfigInProgressError(SystemZooKeeperError):
    code = ErrorCode.RECONFIG_IN_PROGRESS


class NoNodeError(ApiError):
    code = ErrorCode.NO_NODE


class NoAuthError(ApiError):
    code = ErrorCode.NO_AUTH


class BadVersionError(ApiError):
    code = ErrorCode.BAD_VERSION


class NoChildrenForEphemeralsError(ApiError):
    code = ErrorCode.NO_CHILDREN_FOR_EPHEMERALS


class NodeExistsError(ApiError):
    code = ErrorCode.NODE_EXISTS


class NotEmptyError(ApiError):
    code = ErrorCode.NOT_EMPTY


class SessionExpired(ApiError):
    code = ErrorCode.SESSION_EXPIRED


class InvalidCallbackError(ApiError):
    code = ErrorCode.INVALID_CALLBACK


class InvalidACLError(ApiError):
    code = ErrorCode.INVALID_ACL


class AuthFailed(ApiError):
    code = ErrorCode.AUTH_FAILED


class SessionMovedError(ApiError):
    code = ErrorCode.SESSION_MOVED


class NotReadOnlyError(ApiError):
    code = ErrorCode.NOT_READ_ONLY


class EphemeralOnLocalSessionError(ApiError):
    code = ErrorCode.EPHEMERAL_ON_LOCAL_SESSION


class NoWatcherError(ApiError):
    code = ErrorCode.NO_WATCHER


class RequestTimeoutError(ApiError):
    code = ErrorCode.REQUEST_TIMEOUT


class ReconfigDisabledError(ApiError):
    code = ErrorCode.RECONFIG_DISABLED


class SessionClosedRequireSaslError(ApiError):
    code = ErrorCode.SESSION_CLOSED_REQUIRE_SASL_AUTH


class QuotaExceededError(ApiError):
    code = ErrorCode.QUOTA_EXCEEDED


class ThrottledOpError(ApiError):
    code = ErrorCode.THROTTLED_OP


class ClientClosed(ConnectionLoss):
    """The Client was closed (or never started) while the call needed it."""


_BY_CODE: dict[int, type[ZooKeeperError]] = {
    int(cls.code): cls
    for cls in (
        RuntimeInconsistencyError,
        DataInconsistencyError,
        ConnectionLoss,
        MarshallingError,
        UnimplementedError,
        OperationTimeout,
        BadArgumentsError,
        UnknownSessionError,
        NewConfigNoQuorumError,
        ReconfigInProgressError,
        NoNodeError,
        NoAuthError,
        BadVersionError,
        NoChildrenForEphemeralsError,
        NodeExistsError,
        NotEmptyError,
        SessionExpired,
        InvalidCallbackError,
        InvalidACLError,
        AuthFailed,
        SessionMovedError,
        NotReadOnlyError,
        EphemeralOnLocalSessionError,
        NoWatcherError,
        RequestTimeoutError,
        ReconfigDisabledError,
        SessionClosedRequireSaslError,
        QuotaExceededError,
        ThrottledOpError,
    )
}
# Every ErrorCode but OK and the two range markers has its class.
assert set(_BY_CODE) == {
    int(c)
    for c in ErrorCode
    if c not in (ErrorCode.OK, ErrorCode.SYSTEM_ERROR, ErrorCode.API_ERROR)
}


def exception_class(code: int) -> type[ZooKeeperError]:
    cls = _BY_CODE.get(code)
    if cls is not None:
        return cls
    return ApiError if code <= ErrorCode.API_ERROR else SystemZooKeeperError


def error_for(code: int, path: str | None = None) -> ZooKeeperError:
    """The exception for a non-zero error code (`path`, if given, goes into the message)."""
    assert code != 0, "error_for(0): OK is not an error"
    cls = exception_class(code)
    if cls in (ApiError, SystemZooKeeperError):
        return cls(code=code, path=path)
    return cls(path=path)
