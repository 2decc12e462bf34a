"""Protocol errors, split by blame.

    ProtocolError
    ├── LocalProtocolError     we were asked to encode something the protocol cannot carry
    └── RemoteProtocolError    the peer sent something invalid
        ├── FrameError         bad frame length: the connection must be closed
        └── DecodeError        a frame whose body cannot be decoded: the request gets
                               MARSHALLINGERROR (on the server) and the connection lives

Expected outcomes (a missing znode, a bad version) are never exceptions: they are
ErrorCode values. Our own bugs are assertions.
"""


class ProtocolError(Exception):
    pass


class LocalProtocolError(ProtocolError):
    pass


class RemoteProtocolError(ProtocolError):
    pass


class FrameError(RemoteProtocolError):
    pass


class DecodeError(RemoteProtocolError):
    pass
