"""What the shell prints and how it reads a command line, in zkCli.sh 3.8's formats.

Rules:
- Pure functions, no IO and no client: text in, text (or values) out. The shell
  (cli/shell.py) decides where each line goes (stdout or stderr, as zkCli.sh does).
- The formats are ZooKeeper 3.8's, observed by running its zkCli.sh (the reference,
  see tests/cli/test_shell.py); nothing here is copied from its code.
- Command lines are split like zkCli.sh: whitespace-separated words, a word may be
  wrapped in '...' or "..." to hold spaces (the quotes are removed). Options are parsed
  like Apache commons-cli: `-s -w`, `-sw`, `-v 3`, `-v3`, options after the path too;
  `--` ends the options; a negative number is an argument, not an option.
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from corral.client.exceptions import (
    BadArgumentsError,
    BadVersionError,
    InvalidACLError,
    NewConfigNoQuorumError,
    NoAuthError,
    NoChildrenForEphemeralsError,
    NodeExistsError,
    NoNodeError,
    NotEmptyError,
    NotReadOnlyError,
    QuotaExceededError,
    ReconfigInProgressError,
    ZooKeeperError,
)
from corral.protocol.constants import ErrorCode, EventType, KeeperState, Perm
from corral.protocol.records import ACL, Id, Stat

# --------------------------------------------------------------------------- words


_WORD = re.compile(r"\s*([^\"'\s]\S*|\"[^\"]*\"|'[^']*')\s*")
_QUOTED = re.compile(r"^(['\"])(.*)\1$", re.DOTALL)


def split_words(line: str) -> list[str]:
    """A command line as zkCli.sh splits it. Like its regex search, a quote that opens
    no quoted word is skipped: `create /a "x` gives ["create", "/a", "x"]."""
    words: list[str] = []
    for match in _WORD.finditer(line):
        word = match.group(1)
        quoted = _QUOTED.match(word)
        words.append(quoted.group(2) if quoted is not None else word)
    return words


class UsageError(Exception):
    """A command line that cannot be run; the message is what zkCli.sh prints."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ParsedArgs:
    """`words` are the command and its positional arguments (options removed)."""

    words: list[str]
    flags: dict[str, str | None] = field(default_factory=dict)  # letter -> value or None

    def has(self, letter: str) -> bool:
        return letter in self.flags

    def value(self, letter: str) -> str | None:
        return self.flags.get(letter)


_NEGATIVE_NUMBER = re.compile(r"^-\d+(\.\d+)?$")


def parse_options(words: Sequence[str], spec: Mapping[str, bool]) -> ParsedArgs:
    """Split options (letters in `spec`; True = takes a value) from arguments.

    Raises UsageError with commons-cli's message for an unknown option or a missing value.
    """
    positional: list[str] = []
    flags: dict[str, str | None] = {}
    index = 0
    options_over = False
    while index < len(words):
        word = words[index]
        index += 1
        if options_over or index == 1 or not word.startswith("-") or word == "-":
            positional.append(word)
            continue
        if word == "--":
            options_over = True
            continue
        if _NEGATIVE_NUMBER.match(word):
            positional.append(word)
            continue
        name = word[1:]
        if name in spec:
            if spec[name]:
                if index >= len(words):
                    raise UsageError(
                        "org.apache.commons.cli.MissingArgumentException: "
                        f"Missing argument for option: {name}"
                    )
                flags[name] = words[index]
                index += 1
            else:
                flags[name] = None
            continue
        # Concatenated: -sw (flags) or -v3 (an option and its value).
        if name[0] not in spec:
            raise UsageError(
                f"org.apache.commons.cli.UnrecognizedOptionException: Unrecognized option: {word}"
            )
        for position, letter in enumerate(name):
            if letter not in spec:
                raise UsageError(
                    "org.apache.commons.cli.UnrecognizedOptionException: "
                    f"Unrecognized option: {word}"
                )
            if spec[letter]:
                flags[letter] = name[position + 1 :] or None
                if flags[letter] is None:
                    if index >= len(words):
                        raise UsageError(
                            "org.apache.commons.cli.MissingArgumentException: "
                            f"Missing argument for option: {letter}"
                        )
                    flags[letter] = words[index]
                    index += 1
                break
            flags[letter] = None
    return ParsedArgs(words=positional, flags=flags)


def parse_int(text: str, what: str) -> int:
    """A Java int as Integer.parseInt reads it; UsageError (one line) otherwise."""
    try:
        value = int(text, 10)
    except ValueError:
        raise UsageError(f"{what} must be an integer, not {text!r}") from None
    if not -(2**31) <= value < 2**31:
        raise UsageError(f"{what} is out of range: {text}")
    return value


# --------------------------------------------------------------------------- paths


def java_path_error(path: str, *, sequential: bool = False) -> str | None:
    """Why the Java client refuses `path` (PathUtils' messages), or None."""
    if sequential:
        path = path + "1"
    if not path:
        return "Path length must be > 0"
    if path[0] != "/":
        return "Path must start with / character"
    if len(path) == 1:
        return None
    if path[-1] == "/":
        return "Path must not end with / character"
    previous = "/"
    reason = None
    for index in range(1, len(path)):
        char = path[index]
        if char == "\0":
            reason = f"null character not allowed @{index}"
        elif char == "/" and previous == "/":
            reason = f"empty node name specified @{index}"
        elif char == "." and (previous == "/" or (previous == "." and path[index - 2] == "/")):
            # "." or ".." as a whole segment
            if index + 1 == len(path) or path[index + 1] == "/":
                reason = f"relative paths not allowed @{index}"
        elif (
            "\u0000" < char <= "\u001f"
            or "\u007f" <= char <= "\u009f"
            or "\ud800" <= char <= "\uf8ff"
            or "\ufff0" <= char <= "\uffff"
            or ord(char) > 0xFFFF
        ):
            reason = f"invalid character @{index}"
        if reason is not None:
            return f'Invalid path string "{path}" caused by {reason}'
        previous = char
    return None


# --------------------------------------------------------------------------- values

_DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def java_date(epoch_ms: int) -> str:
    """Java's Date.toString() in the local time zone: `Thu Nov 26 10:19:12 UTC 2026`."""
    local = time.localtime(epoch_ms // 1000)
    zone = local.tm_zone or "UTC"
    return (
        f"{_DAYS[local.tm_wday]} {_MONTHS[local.tm_mon - 1]} {local.tm_mday:02d} "
        f"{local.tm_hour:02d}:{local.tm_min:02d}:{local.tm_sec:02d} {zone} {local.tm_year}"
    )


def java_hex(value: int) -> str:
    """Long.toHexString with the 0x prefix zkCli.sh adds (negative as two's complement)."""
    return f"0x{value & 0xFFFF_FFFF_FFFF_FFFF:x}"


def format_stat(stat: Stat) -> list[str]:
    return [
        f"cZxid = {java_hex(stat.czxid)}",
        f"ctime = {java_date(stat.ctime_ms)}",
        f"mZxid = {java_hex(stat.mzxid)}",
        f"mtime = {java_date(stat.mtime_ms)}",
        f"pZxid = {java_hex(stat.pzxid)}",
        f"cversion = {stat.cversion}",
        f"dataVersion = {stat.version}",
        f"aclVersion = {stat.aversion}",
        f"ephemeralOwner = {java_hex(stat.ephemeral_owner)}",
        f"dataLength = {stat.data_length}",
        f"numChildren = {stat.num_children}",
    ]


_PERM_LETTERS = (("c", Perm.CREATE), ("d", Perm.DELETE), ("r", Perm.READ), ("w", Perm.WRITE))


def perm_string(perms: int) -> str:
    letters = [letter for letter, bit in _PERM_LETTERS if perms & bit]
    if perms & Perm.ADMIN:
        letters.append("a")
    return "".join(letters)


def format_acl(acl: Sequence[ACL]) -> list[str]:
    lines: list[str] = []
    for entry in acl:
        lines.append(f"'{entry.id.scheme},'{entry.id.id}")
        lines.append(f": {perm_string(entry.perms)}")
    return lines


def parse_acl(text: str) -> tuple[list[ACL], list[str]]:
    """`scheme:id:perms[,...]` -> (ACL entries, warnings zkCli.sh prints on stderr).

    The id is everything between the first and the last colon (digest ids hold one).
    Malformed entries and unknown permission letters are skipped with a warning.
    """
    acl: list[ACL] = []
    warnings: list[str] = []
    letters = {"r": Perm.READ, "w": Perm.WRITE, "c": Perm.CREATE, "d": Perm.DELETE}
    letters["a"] = Perm.ADMIN
    for item in text.split(","):
        first, last = item.find(":"), item.rfind(":")
        if first == -1 or first == last:
            warnings.append(f"{item} does not have the form scheme:id:perm")
            continue
        perms = 0
        for letter in item[last + 1 :]:
            if letter in letters:
                perms |= letters[letter]
            else:
                warnings.append(f"Unknown perm type: {letter}")
        acl.append(ACL(perms=perms, id=Id(scheme=item[:first], id=item[first + 1 : last])))
    return acl, warnings


def format_children(children: Sequence[str]) -> str:
    """Java's List.toString of the sorted names: `[a, b]`."""
    return "[" + ", ".join(sorted(children)) + "]"


def decode_data(data: bytes | None) -> str:
    """Data as zkCli.sh prints it: UTF-8 (bad bytes replaced), `null` for no data."""
    if data is None:
        return "null"
    return data.decode("utf-8", errors="replace")


# --------------------------------------------------------------------------- events

STATE_NAMES: dict[KeeperState, str] = {
    KeeperState.UNKNOWN: "Unknown",
    KeeperState.DISCONNECTED: "Disconnected",
    KeeperState.NO_SYNC_CONNECTED: "NoSyncConnected",
    KeeperState.SYNC_CONNECTED: "SyncConnected",
    KeeperState.AUTH_FAILED: "AuthFailed",
    KeeperState.CONNECTED_READ_ONLY: "ConnectedReadOnly",
    KeeperState.SASL_AUTHENTICATED: "SaslAuthenticated",
    KeeperState.CLOSED: "Closed",
    KeeperState.EXPIRED: "Expired",
}
TYPE_NAMES: dict[EventType, str] = {
    EventType.NONE: "None",
    EventType.NODE_CREATED: "NodeCreated",
    EventType.NODE_DELETED: "NodeDeleted",
    EventType.NODE_DATA_CHANGED: "NodeDataChanged",
    EventType.NODE_CHILDREN_CHANGED: "NodeChildrenChanged",
    EventType.DATA_WATCH_REMOVED: "DataWatchRemoved",
    EventType.CHILD_WATCH_REMOVED: "ChildWatchRemoved",
    EventType.PERSISTENT_WATCH_REMOVED: "PersistentWatchRemoved",
}


def format_event(state: KeeperState, event_type: EventType, path: str | None) -> list[str]:
    """The lines zkCli.sh prints for a watch event (its leading blank lines included)."""
    text = (
        f"WatchedEvent state:{STATE_NAMES.get(state, state.name)} "
        f"type:{TYPE_NAMES.get(event_type, event_type.name)} path:{path or 'null'}"
    )
    return ["", "WATCHER::", "", text]


# --------------------------------------------------------------------------- errors

# KeeperException's text for each code ("KeeperErrorCode = <this> for <path>").
_CODE_TEXT: dict[int, str] = {
    ErrorCode.SYSTEM_ERROR: "SystemError",
    ErrorCode.RUNTIME_INCONSISTENCY: "RuntimeInconsistency",
    ErrorCode.DATA_INCONSISTENCY: "DataInconsistency",
    ErrorCode.CONNECTION_LOSS: "ConnectionLoss",
    ErrorCode.MARSHALLING_ERROR: "MarshallingError",
    ErrorCode.UNIMPLEMENTED: "Unimplemented",
    ErrorCode.OPERATION_TIMEOUT: "OperationTimeout",
    ErrorCode.BAD_ARGUMENTS: "BadArguments",
    ErrorCode.UNKNOWN_SESSION: "Unknown session",
    ErrorCode.NEW_CONFIG_NO_QUORUM: "NewConfigNoQuorum",
    ErrorCode.RECONFIG_IN_PROGRESS: "ReconfigInProgress",
    ErrorCode.API_ERROR: "APIError",
    ErrorCode.NO_NODE: "NoNode",
    ErrorCode.NO_AUTH: "NoAuth",
    ErrorCode.BAD_VERSION: "BadVersion",
    ErrorCode.NO_CHILDREN_FOR_EPHEMERALS: "NoChildrenForEphemerals",
    ErrorCode.NODE_EXISTS: "NodeExists",
    ErrorCode.NOT_EMPTY: "Directory not empty",
    ErrorCode.SESSION_EXPIRED: "Session expired",
    ErrorCode.INVALID_CALLBACK: "Invalid callback",
    ErrorCode.INVALID_ACL: "InvalidACL",
    ErrorCode.AUTH_FAILED: "AuthFailed",
    ErrorCode.SESSION_MOVED: "Session moved",
    ErrorCode.NOT_READ_ONLY: "Not a read-only call",
    ErrorCode.EPHEMERAL_ON_LOCAL_SESSION: "Ephemeral node on local session",
    ErrorCode.NO_WATCHER: "No such watcher",
    ErrorCode.REQUEST_TIMEOUT: "Request timeout",
    ErrorCode.RECONFIG_DISABLED: "Reconfig is disabled",
    ErrorCode.SESSION_CLOSED_REQUIRE_SASL_AUTH: (
        "Session closed because client failed to authenticate"
    ),
    ErrorCode.QUOTA_EXCEEDED: "Quota has exceeded",
    ErrorCode.THROTTLED_OP: "Op throttled due to high load",
}


def keeper_exception_text(code: int, path: str | None) -> str:
    """KeeperException.getMessage(): `KeeperErrorCode = NoNode for /a`."""
    text = _CODE_TEXT.get(code, f"Unknown error {code}")
    if path is None:
        return f"KeeperErrorCode = {text}"
    return f"KeeperErrorCode = {text} for {path}"


def error_text(error: ZooKeeperError, path: str | None) -> str:
    """The one line zkCli.sh prints for a failed call (`Node does not exist: /a`)."""
    where = error.path if error.path is not None else path
    shown = "null" if where is None else where
    if isinstance(error, NoNodeError):
        return f"Node does not exist: {shown}"
    if isinstance(error, NoChildrenForEphemeralsError):
        return f"Ephemerals cannot have children: {shown}"
    if isinstance(error, NodeExistsError):
        return f"Node already exists: {shown}"
    if isinstance(error, NotEmptyError):
        return f"Node not empty: {shown}"
    if isinstance(error, NotReadOnlyError):
        return f"Not a read-only call: {shown}"
    if isinstance(error, InvalidACLError):
        return f"Acl is not valid : {shown}"
    if isinstance(error, NoAuthError):
        return f"Insufficient permission : {shown}"
    if isinstance(error, BadArgumentsError):
        return f"Arguments are not valid : {shown}"
    if isinstance(error, BadVersionError):
        return f"version No is not valid : {shown}"
    if isinstance(error, QuotaExceededError):
        return f"Quota has exceeded : {shown}"
    if isinstance(error, ReconfigInProgressError):
        return "Another reconfiguration is in progress -- concurrent reconfigs not supported (yet)"
    if isinstance(error, NewConfigNoQuorumError):
        return (
            "No quorum of new config is connected and up-to-date with the leader of last "
            "commmitted config - try invoking reconfiguration after new servers are "
            "connected and synced"
        )
    return keeper_exception_text(error.code, where)


def client_config_string(config: str) -> str:
    """`config -c`: `<version> <host:clientPort,...>` from a dynamic config text."""
    version = ""
    addresses: list[str] = []
    for line in config.splitlines():
        key, _, value = line.partition("=")
        key = key.strip()
        if key == "version":
            version = value.strip()
        elif key.startswith("server.") and ";" in value:
            server, _, client = value.partition(";")
            host = server.split(":", 1)[0]
            client = client.strip()
            if ":" in client:
                client_host, _, port = client.rpartition(":")
                if client_host in ("", "0.0.0.0", "[0:0:0:0:0:0:0:0]"):
                    client_host = host
                addresses.append(f"{client_host}:{port}")
            elif client:
                addresses.append(f"{host}:{client}")
    return f"{version} {','.join(addresses)}"
