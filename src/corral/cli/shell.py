"""`corral shell` (alias `corral cli`): a zkCli.sh-compatible shell on corral's client.

    corral shell -server 127.0.0.1:2181/app            interactive REPL (a terminal)
    corral shell -server 127.0.0.1:2181 get /a         run one command, exit with its code
    corral shell -server 127.0.0.1:2181 < script.txt   run commands from stdin

Rules:
- Same commands, flags and output as Apache ZooKeeper 3.8's zkCli.sh (the reference:
  tests/cli/test_shell.py runs both and compares). Like zkCli.sh, results go to
  stdout and errors and "Created ..." to stderr; watch events go to stdout as they
  arrive, as `WATCHER::` + `WatchedEvent state:... type:... path:...`.
- Exit codes: 0 when every command succeeded, 1 for a failed command, 127 for an unknown
  one. One command: its own code. From stdin: the code of the last failed command (a
  script sees any failure; zkCli.sh only reports the last command's code).
- One asyncio loop runs everything: the client, the commands (one at a time, in order)
  and the prompt (prompt_toolkit, with history, editing and completion of commands and
  znode paths). Watch callbacks print from the same loop, above the prompt.
- Formats and parsing live in cli/shell_format.py (pure); this module does the IO.
- Only the client's public API, with one exception: `get` reads through
  Client._request, because Client.get turns "no data" (null) into b"" and zkCli.sh
  prints `null` for it (`create /a` stores null, which `_NullableBytes` sends).
- Differences from zkCli.sh that are on purpose: the exit codes above; a bad number is
  a one-line error (zkCli.sh dies with a Java stack trace); `connect` waits for the
  session; after expiry the client starts a new session by itself; a failed `deleteall`
  batch or `addauth` is reported; `deleteall /` is refused; getEphemerals lists paths
  under the chroot, sorted; negative numbers are arguments, not options.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import enum
import os
import signal
import sys
import threading
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

from corral import __version__
from corral.cli.shell_format import (
    ParsedArgs,
    UsageError,
    client_config_string,
    decode_data,
    error_text,
    format_acl,
    format_children,
    format_event,
    format_stat,
    java_path_error,
    keeper_exception_text,
    parse_acl,
    parse_int,
    parse_options,
    split_words,
)
from corral.client.aio import Client
from corral.client.exceptions import (
    ClientClosed,
    InvalidACLError,
    NoNodeError,
    OperationTimeout,
    ZooKeeperError,
)
from corral.client.session import ClientState, SessionEvent, WatchEvent, WatchKind
from corral.limits import MULTI_OPS_MAX, TTL_MAX_MS
from corral.protocol.constants import ErrorCode, EventType, KeeperState, OpCode, WatcherType
from corral.protocol.paths import join_path
from corral.protocol.records import ACL, OPEN_ACL_UNSAFE, GetDataRequest, GetDataResponse, Stat

DEFAULT_SERVER = "localhost:2181"
DEFAULT_TIMEOUT_MS = 30_000  # zkCli.sh's session timeout
HISTORY_SHOWN_MAX = 10  # `history` lists the last ten commands and itself, as zkCli.sh
HISTORY_KEPT_MAX = 10_000  # commands remembered for `history` / `redo`
TREE_VISITS_MAX = 1_000_000
DELETE_BATCH_SIZE_DEFAULT = (
    1_000  # znodes per multi in `deleteall`, as zkCli.sh  # znodes one `ls -R` / `setAcl -R` walks
)
COMPLETION_TIMEOUT_S = 2.0  # a completion that needs the server gives up after this
COMPLETIONS_MAX = 1_000
HISTORY_FILE_ENV = "CORRAL_SHELL_HISTORY"
LINES_QUEUED_MAX = 1_000  # stdin lines read ahead of the command that runs

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_NOT_FOUND = 127
EXIT_INTERRUPTED = 130

USAGE_HEADER = "corral shell -server host:port[/chroot] [-timeout ms] [-r] cmd args"

# Command -> its option text, as zkCli.sh's usage prints it.
USAGES: dict[str, str] = {
    "addWatch": (
        "[-m mode] path # optional mode is one of [PERSISTENT, PERSISTENT_RECURSIVE] "
        "- default is PERSISTENT_RECURSIVE"
    ),
    "addauth": "scheme auth",
    "close": "",
    "config": "[-c] [-w] [-s]",
    "connect": "host:port",
    "create": "[-s] [-e] [-c] [-t ttl] path [data] [acl]",
    "delete": "[-v version] path",
    "deleteall": "path [-b batch size]",
    "get": "[-s] [-w] path",
    "getAcl": "[-s] path",
    "getAllChildrenNumber": "path",
    "getEphemerals": "path",
    "help": "",
    "history": "",
    "ls": "[-s] [-w] [-R] path",
    "printwatches": "on|off",
    "quit": "",
    "redo": "cmdno",
    "removewatches": "path [-c|-d|-a] [-l]",
    "set": "[-s] [-v version] path data",
    "setAcl": "[-s] [-v version] [-R] path acl",
    "stat": "[-w] path",
    "sync": "path",
    "version": "",
    "whoami": "",
}
# `ls -?` (commons-cli's help text, as zkCli.sh prints it before listing).
LS_HELP = ("usage: ls [options] path", " -?   help", " -R   recurse", " -s   stat", " -w   watch")
# Commands that work without a session.
LOCAL_COMMANDS = frozenset(
    ("connect", "help", "history", "printwatches", "quit", "redo", "version")
)

# ClientState -> the state name zkCli.sh's prompt shows (ZooKeeper.States).
PROMPT_STATES: dict[ClientState, str] = {
    ClientState.CONNECTING: "CONNECTING",
    ClientState.CONNECTED: "CONNECTED",
    ClientState.CONNECTED_READ_ONLY: "CONNECTEDREADONLY",
    ClientState.SUSPENDED: "CONNECTING",
    ClientState.LOST: "CONNECTING",
    ClientState.CLOSED: "CLOSED",
}
# What a state listener hears -> the session event zkCli.sh's watcher prints.
SESSION_STATES: dict[SessionEvent, KeeperState] = {
    SessionEvent.CONNECTED: KeeperState.SYNC_CONNECTED,
    SessionEvent.RECONNECTED: KeeperState.SYNC_CONNECTED,
    SessionEvent.READ_ONLY: KeeperState.CONNECTED_READ_ONLY,
    SessionEvent.SUSPENDED: KeeperState.DISCONNECTED,
    SessionEvent.EXPIRED: KeeperState.EXPIRED,
    SessionEvent.AUTH_FAILED: KeeperState.AUTH_FAILED,
    SessionEvent.CLOSED: KeeperState.CLOSED,
}
REMOVAL_ORDER: dict[EventType, int] = {
    EventType.CHILD_WATCH_REMOVED: 0,
    EventType.DATA_WATCH_REMOVED: 1,
    EventType.PERSISTENT_WATCH_REMOVED: 2,
}
REMOVE_TYPES: dict[str, WatcherType] = {
    "c": WatcherType.CHILDREN,
    "d": WatcherType.DATA,
    "p": WatcherType.PERSISTENT,
    "r": WatcherType.PERSISTENT_RECURSIVE,
    "a": WatcherType.ANY,
}


class CommandFailed(Exception):
    """A command failed; `lines` go to stderr and the command exits with `exit_code`."""

    def __init__(self, *lines: str, exit_code: int = EXIT_ERROR) -> None:
        super().__init__("\n".join(lines))
        self.lines = lines
        self.exit_code = exit_code


class Echo(enum.Enum):
    """Which session events the shell prints (zkCli.sh's watcher prints them all)."""

    NOT_YET = "not yet"  # until the first connection: a failed connect is reported once
    ALL = "all"
    CLOSED_ONLY = "closed only"  # our own close: the Disconnected on the way is not news
    NOTHING = "nothing"  # leaving at the end of the input, quietly


CONNECTED_EVENTS = (SessionEvent.CONNECTED, SessionEvent.RECONNECTED, SessionEvent.READ_ONLY)


class QuitShell(Exception):
    """`quit`: leave after closing the session."""


class _NullableBytes:
    """A codec that keeps "no data" (None) apart from empty data, as zkCli.sh does:
    `create /a` stores null data, which `get` prints as `null`."""

    def encode(self, value: Any) -> bytes:
        assert value is None or isinstance(value, bytes), type(value)
        return cast(bytes, value)

    def decode(self, data: bytes) -> Any:
        return data


NULLABLE_BYTES = _NullableBytes()


@dataclass(frozen=True, slots=True, kw_only=True)
class _Command:
    spec: dict[str, bool]  # option letter -> takes a value
    words_min: int  # positional words needed, the command included
    run: Callable[[ParsedArgs], Awaitable[None]]


# --------------------------------------------------------------------------- the shell


class Shell:
    """One shell: its client (if any), history and settings. Runs commands one at a time."""

    def __init__(self, *, server: str, timeout_ms: int, read_only: bool) -> None:
        self.host = server
        self.timeout_ms = timeout_ms
        self.read_only = read_only
        self.client: Client | None = None
        self.history: dict[int, str] = {}
        self.command_count = 0
        self.print_watches = True
        self.failure_code = EXIT_OK  # the code of the last failed command
        self._echo = Echo.NOT_YET
        # Removal events of the running `removewatches`, printed when it is done.
        self._removals: dict[tuple[EventType, str], WatchEvent] | None = None
        self._commands: dict[str, _Command] = {
            "addWatch": _Command(spec={"m": True}, words_min=2, run=self._add_watch),
            "addauth": _Command(spec={}, words_min=2, run=self._addauth),
            "close": _Command(spec={}, words_min=1, run=self._close),
            "config": _Command(
                spec={"c": False, "w": False, "s": False}, words_min=1, run=self._config
            ),
            "connect": _Command(spec={}, words_min=1, run=self._connect),
            "create": _Command(
                spec={"s": False, "e": False, "c": False, "t": True}, words_min=2, run=self._create
            ),
            "delete": _Command(spec={"v": True}, words_min=2, run=self._delete),
            "deleteall": _Command(spec={"b": True}, words_min=2, run=self._deleteall),
            "get": _Command(spec={"s": False, "w": False}, words_min=2, run=self._get),
            "getAcl": _Command(spec={"s": False}, words_min=2, run=self._get_acl),
            "getAllChildrenNumber": _Command(spec={}, words_min=2, run=self._children_number),
            "getEphemerals": _Command(spec={}, words_min=1, run=self._get_ephemerals),
            "help": _Command(spec={}, words_min=1, run=self._help),
            "history": _Command(spec={}, words_min=1, run=self._history),
            "ls": _Command(
                spec={"s": False, "w": False, "R": False, "?": False}, words_min=2, run=self._ls
            ),
            "printwatches": _Command(spec={}, words_min=1, run=self._printwatches),
            "quit": _Command(spec={}, words_min=1, run=self._quit),
            "redo": _Command(spec={}, words_min=1, run=self._redo),
            "removewatches": _Command(
                spec={"c": False, "d": False, "a": False, "l": False, "p": False, "r": False},
                words_min=2,
                run=self._removewatches,
            ),
            "set": _Command(spec={"s": False, "v": True}, words_min=3, run=self._set),
            "setAcl": _Command(
                spec={"s": False, "v": True, "R": False}, words_min=3, run=self._set_acl
            ),
            "stat": _Command(spec={"w": False}, words_min=2, run=self._stat),
            "sync": _Command(spec={}, words_min=2, run=self._sync),
            "version": _Command(spec={}, words_min=1, run=self._version),
            "whoami": _Command(spec={}, words_min=1, run=self._whoami),
        }
        assert set(self._commands) == set(USAGES), set(self._commands) ^ set(USAGES)

    # ------------------------------------------------------------------ output

    output_closed = False  # the reader of stdout went away (`corral shell ... | head`)

    @staticmethod
    def out(*lines: str) -> None:
        # sys.stdout is looked up each time: the REPL swaps it to print above the prompt.
        try:
            for line in lines:
                sys.stdout.write(line + "\n")
            sys.stdout.flush()
        except BrokenPipeError:
            Shell._close_output()

    @staticmethod
    def err(*lines: str) -> None:
        try:
            sys.stdout.flush()  # keep the order of stdout and stderr when both go to one place
            for line in lines:
                sys.stderr.write(line + "\n")
            sys.stderr.flush()
        except BrokenPipeError:
            Shell._close_output()

    @staticmethod
    def _close_output() -> None:
        """Nobody reads us any more: further output goes to /dev/null (no traceback at
        exit); the runners stop after the command that noticed."""
        Shell.output_closed = True
        devnull = os.open(os.devnull, os.O_WRONLY)
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(OSError, ValueError):
                os.dup2(devnull, stream.fileno())
        os.close(devnull)

    def usage(self) -> None:
        self.err(USAGE_HEADER, *(f"\t{name} {USAGES[name]}" for name in sorted(USAGES)))

    def _on_watch_event(self, event: WatchEvent) -> None:
        if event.type is EventType.NONE:
            return  # session events reach us through the state listener, once
        if self._removals is not None and event.type in REMOVAL_ORDER:
            # One watcher removed from several kinds is told once (a Java watcher set).
            self._removals.setdefault((event.type, event.path), event)
            return
        if self.print_watches:
            self.out(*format_event(event.state, event.type, event.path))

    def _on_session_event(self, event: SessionEvent) -> None:
        if self._echo is Echo.NOT_YET and event in CONNECTED_EVENTS:
            self._echo = Echo.ALL
        if not self.print_watches:
            return
        if self._echo is Echo.ALL or (
            self._echo is Echo.CLOSED_ONLY and event is SessionEvent.CLOSED
        ):
            self.out(*format_event(SESSION_STATES[event], EventType.NONE, None))

    @property
    def prompt(self) -> str:
        state = "CLOSED" if self.client is None else PROMPT_STATES[self.client.state]
        return f"[zk: {self.host}({state}) {self.command_count}] "

    # ------------------------------------------------------------------ connection

    async def connect(self, host: str) -> bool:
        """Close any session, then open one to `host`; False (and a message) on failure."""
        await self.disconnect()
        self.host = host
        self._echo = Echo.NOT_YET
        timeout_s = self.timeout_ms / 1000
        try:
            client = Client(host, timeout_s=timeout_s, read_only=self.read_only)
        except ValueError as e:
            self.err(f"Invalid connection string {host!r}: {e}")
            return False
        client.add_listener(self._on_session_event)
        try:
            await client.start(timeout_s)
        except (OperationTimeout, ClientClosed, OSError):
            self.err(f"Unable to connect to {host} within {self.timeout_ms} ms")
            return False
        self.client = client
        return True

    async def disconnect(self, *, quiet: bool = False) -> None:
        client, self.client = self.client, None
        if client is None:
            return
        self._echo = Echo.NOTHING if quiet else Echo.CLOSED_ONLY
        await client.close()

    def _live_client(self) -> Client:
        client = self.client
        if client is None or client.state is ClientState.CLOSED:
            # zkCli.sh prints this on stdout; it is a failure all the same.
            self.out("Not connected")
            raise CommandFailed(exit_code=EXIT_ERROR)
        return client

    # ------------------------------------------------------------------ running commands

    async def execute_line(self, line: str) -> int:
        """Run one command line (recorded in the history); returns its exit code."""
        if not line.strip():
            return EXIT_OK
        self._remember(self.command_count, line)
        try:
            return await self.run_words(split_words(line))
        finally:
            self.command_count += 1

    def _remember(self, number: int, line: str) -> None:
        self.history[number] = line
        self.history.pop(number - HISTORY_KEPT_MAX, None)

    async def run_words(self, words: list[str]) -> int:
        code = await self._run_words(words)
        if code != EXIT_OK:
            self.failure_code = code
        return code

    async def _run_words(self, words: list[str]) -> int:
        if not words:
            return EXIT_OK
        name = words[0]
        command = self._commands.get(name)
        if command is None:
            self.usage()
            self.err(f"Command not found: Command not found {name}")
            return EXIT_NOT_FOUND
        try:
            parsed = parse_options(words, command.spec)
            if len(parsed.words) < command.words_min:
                raise UsageError(f"{name} {USAGES[name]}")
            await command.run(parsed)
        except UsageError as e:
            self.err(str(e))
            return EXIT_ERROR
        except CommandFailed as e:
            if e.lines:
                self.err(*e.lines)
            return e.exit_code
        except ZooKeeperError as e:
            path = parsed.words[1] if len(parsed.words) > 1 else None
            self.err(error_text(e, path))
            return EXIT_ERROR
        except ValueError as e:
            # The client refused an argument before sending anything (e.g. a TTL).
            self.err(str(e))
            return EXIT_ERROR
        return EXIT_OK

    # ------------------------------------------------------------------ helpers

    @staticmethod
    def _path(path: str, *, sequential: bool = False) -> str:
        error = java_path_error(path, sequential=sequential)
        if error is not None:
            raise CommandFailed(error)
        return path

    def _deprecated_watch(self, parsed: ParsedArgs, form: str, new_form: str) -> ParsedArgs:
        """`get path watch` (the 3.4 form) still works, with zkCli.sh's warning."""
        if len(parsed.words) <= 2:
            return parsed
        self.err(f"'{form}' has been deprecated. Please use '{new_form}' instead.")
        return ParsedArgs(words=parsed.words[:2], flags={**parsed.flags, "w": None})

    async def _get_data(self, client: Client, path: str, watch: bool) -> tuple[bytes | None, Stat]:
        # Client.get turns "no data" into b""; zkCli.sh prints `null` for it, so this one
        # read goes through the client's request method to see the null.
        body = await client._request(
            OpCode.GET_DATA,
            GetDataRequest(path=client._server_path(path), watch=watch),
            path,
            timeout_s=None,
            idempotent=True,
            server_path=client._server_path(path),
            watch=None if not watch else (WatchKind.DATA, self._on_watch_event),
        )
        assert isinstance(body, GetDataResponse)
        return body.data, body.stat

    async def _walk(self, client: Client, root: str, watch: bool) -> AsyncIterator[str]:
        """`root`, then each znode's children (in name order) before descending into
        them one by one, as zkCli.sh's `ls -R` does. With `watch`, the root gets a data
        watch and every visited znode a child watch (zkCli.sh's watches, too)."""
        watcher = self._on_watch_event if watch else None
        await self._get_data(client, root, watch)  # NoNode for a missing root
        yield root
        stack = [root]
        visits = 0
        while stack and visits < TREE_VISITS_MAX:
            path = stack.pop()
            visits += 1
            try:
                children = sorted(await client.get_children(path, watch=watcher))
            except NoNodeError:
                if path == root:
                    raise
                continue  # deleted while we walked
            paths = [join_path(path, child) for child in children]
            for child_path in paths:
                yield child_path
            stack.extend(reversed(paths))

    # ------------------------------------------------------------------ commands

    async def _ls(self, parsed: ParsedArgs) -> None:
        if parsed.has("?"):
            self.out(*LS_HELP)
        parsed = self._deprecated_watch(parsed, "ls path [watch]", "ls [-w] path")
        client = self._live_client()
        path = self._path(parsed.words[1])
        watch = parsed.has("w")
        if parsed.has("R"):
            async for visited in self._walk(client, path, watch):
                self.out(visited)
            return
        watcher = self._on_watch_event if watch else None
        if parsed.has("s"):
            children, stat = await client.get_children_stat(path, watch=watcher)
            self.out(format_children(children), *format_stat(stat))
        else:
            self.out(format_children(await client.get_children(path, watch=watcher)))

    async def _get(self, parsed: ParsedArgs) -> None:
        parsed = self._deprecated_watch(parsed, "get path [watch]", "get [-s] [-w] path")
        client = self._live_client()
        path = self._path(parsed.words[1])
        data, stat = await self._get_data(client, path, parsed.has("w"))
        self.out(decode_data(data))
        if parsed.has("s"):
            self.out(*format_stat(stat))

    async def _stat(self, parsed: ParsedArgs) -> None:
        parsed = self._deprecated_watch(parsed, "stat path [watch]", "stat [-w] path")
        client = self._live_client()
        path = self._path(parsed.words[1])
        stat = await client.exists(path, watch=self._on_watch_event if parsed.has("w") else None)
        if stat is None:
            raise NoNodeError(path=path)
        self.out(*format_stat(stat))

    async def _create(self, parsed: ParsedArgs) -> None:
        client = self._live_client()
        ephemeral, sequential = parsed.has("e"), parsed.has("s")
        container = parsed.has("c")
        if container and (ephemeral or sequential):
            raise CommandFailed(
                "-c cannot be combined with -s or -e. Containers cannot be ephemeral or sequential."
            )
        ttl_ms: int | None = None
        ttl_text = parsed.value("t")
        if ttl_text is not None:
            try:
                ttl_ms = int(ttl_text)
            except ValueError:
                raise CommandFailed("-t argument must be a long value") from None
            if ephemeral:
                raise CommandFailed("TTLs cannot be used with Ephemeral znodes")
            if container:
                raise CommandFailed("TTLs cannot be used with Container znodes")
            if not 0 < ttl_ms <= TTL_MAX_MS:
                raise CommandFailed(f"ttl must be positive and cannot be larger than: {TTL_MAX_MS}")
        path = self._path(parsed.words[1], sequential=sequential)
        data = parsed.words[2].encode() if len(parsed.words) > 2 else None
        acl: list[ACL] = list(OPEN_ACL_UNSAFE)
        if len(parsed.words) > 3:
            acl, warnings = parse_acl(parsed.words[3])
            if warnings:
                self.err(*warnings)
            if not acl:
                raise CommandFailed(
                    keeper_exception_text(ErrorCode.INVALID_ACL, None), "Acl is not valid : null"
                )
        try:
            created = await client.create(
                path,
                data,
                acl=acl,
                ephemeral=ephemeral,
                sequential=sequential,
                container=container,
                ttl_ms=ttl_ms,
                codec=NULLABLE_BYTES,
            )
        except InvalidACLError as e:
            raise CommandFailed(keeper_exception_text(e.code, path), error_text(e, path)) from None
        self.err(f"Created {created}")

    async def _set(self, parsed: ParsedArgs) -> None:
        client = self._live_client()
        path = self._path(parsed.words[1])
        version_text = parsed.value("v")
        version = -1 if version_text is None else parse_int(version_text, "version")
        stat = await client.set(path, parsed.words[2].encode(), version, codec=NULLABLE_BYTES)
        if parsed.has("s"):
            self.out(*format_stat(stat))

    async def _delete(self, parsed: ParsedArgs) -> None:
        words = parsed.words
        flags = dict(parsed.flags)
        if len(words) > 2:
            self.err(
                "'delete path [version]' has been deprecated. "
                "Please use 'delete [-v version] path' instead."
            )
            flags["v"] = words[2]
        client = self._live_client()
        path = self._path(words[1])
        version_text = flags.get("v")
        version = -1 if version_text is None else parse_int(version_text, "version")
        await client.delete(path, version)

    async def _deleteall(self, parsed: ParsedArgs) -> None:
        """The subtree, deepest first, in multi batches of -b znodes (zkCli.sh's way):
        each batch goes at once or not at all."""
        client = self._live_client()
        path = self._path(parsed.words[1])
        batch_text = parsed.value("b")
        batch_size = DELETE_BATCH_SIZE_DEFAULT
        if batch_text is not None:
            try:
                batch_size = int(batch_text)
            except ValueError:
                raise CommandFailed("-b argument must be an int value") from None
            if not 1 <= batch_size <= MULTI_OPS_MAX:
                raise CommandFailed(f"-b argument must be in [1, {MULTI_OPS_MAX}]")
        if path == "/":
            raise CommandFailed("Arguments are not valid : /")
        subtree = [visited async for visited in self._walk(client, path, False)]
        for end in range(len(subtree), 0, -batch_size):
            transaction = client.transaction()
            for victim in reversed(subtree[max(0, end - batch_size) : end]):
                transaction.delete(victim)
            try:
                await transaction.commit()
            except ZooKeeperError:
                # zkCli.sh 3.8 fails silently here; a script deserves to know.
                raise CommandFailed("Failed to delete some node(s) in the subtree!") from None

    async def _get_acl(self, parsed: ParsedArgs) -> None:
        client = self._live_client()
        path = self._path(parsed.words[1])
        acl, stat = await client.get_acl(path)
        self.out(*format_acl(acl))
        if parsed.has("s"):
            self.out(*format_stat(stat))

    async def _set_acl(self, parsed: ParsedArgs) -> None:
        client = self._live_client()
        path = self._path(parsed.words[1])
        version_text = parsed.value("v")
        version = -1 if version_text is None else parse_int(version_text, "version")
        acl, warnings = parse_acl(parsed.words[2])
        if warnings:
            self.err(*warnings)
        if not acl:
            raise CommandFailed("Acl is not valid : null")
        if parsed.has("R"):
            async for visited in self._walk(client, path, False):
                try:
                    await client.set_acl(visited, acl, version)
                except ZooKeeperError as e:
                    self.err(keeper_exception_text(e.code, visited))
            return
        stat = await client.set_acl(path, acl, version)
        if parsed.has("s"):
            self.out(*format_stat(stat))

    async def _addauth(self, parsed: ParsedArgs) -> None:
        client = self._live_client()
        credential = parsed.words[2].encode() if len(parsed.words) > 2 else b""
        try:
            await client.add_auth(parsed.words[1], credential)
        except ZooKeeperError as e:
            # Not about a path. zkCli.sh says nothing here (its session is then dead);
            # corral's client resumes the session without the refused credential.
            raise CommandFailed(keeper_exception_text(e.code, None)) from None

    async def _sync(self, parsed: ParsedArgs) -> None:
        client = self._live_client()
        path = self._path(parsed.words[1])
        try:
            await client.sync(path)
        except ZooKeeperError as e:
            self.out(f"Sync has failed. rc={e.code}")
            raise CommandFailed() from None
        self.out("Sync is OK")

    async def _whoami(self, parsed: ParsedArgs) -> None:
        client = self._live_client()
        identities = await client.whoami()
        self.out("Auth scheme: User", *(f"{i.auth_scheme}: {i.user}" for i in identities))

    async def _get_ephemerals(self, parsed: ParsedArgs) -> None:
        client = self._live_client()
        prefix = parsed.words[1] if len(parsed.words) > 1 else "/"
        paths = await client.get_ephemerals(prefix)
        self.out("[" + ", ".join(sorted(paths)) + "]")

    async def _children_number(self, parsed: ParsedArgs) -> None:
        client = self._live_client()
        path = self._path(parsed.words[1])
        self.out(str(await client.get_all_children_number(path)))

    async def _add_watch(self, parsed: ParsedArgs) -> None:
        client = self._live_client()
        mode = (parsed.value("m") or "PERSISTENT_RECURSIVE").upper()
        if mode not in ("PERSISTENT", "PERSISTENT_RECURSIVE"):
            raise UsageError(f"addWatch {USAGES['addWatch']}")
        path = self._path(parsed.words[1])
        recursive = mode == "PERSISTENT_RECURSIVE"
        await client.add_watch(path, self._on_watch_event, recursive=recursive)

    async def _removewatches(self, parsed: ParsedArgs) -> None:
        client = self._live_client()
        path = self._path(parsed.words[1])
        watcher_type = WatcherType.ANY
        for letter in ("c", "d", "p", "r", "a"):  # zkCli.sh's precedence
            if parsed.has(letter):
                watcher_type = REMOVE_TYPES[letter]
                break
        self._removals = {}
        try:
            await client.remove_watches(path, watcher_type, local=parsed.has("l"))
        finally:
            removals, self._removals = self._removals, None
            # In a fixed order: child watches, data, persistent (the Java client's order
            # comes from a HashMap and changes from run to run).
            for event in sorted(removals.values(), key=lambda e: REMOVAL_ORDER[e.type]):
                self._on_watch_event(event)

    async def _config(self, parsed: ParsedArgs) -> None:
        client = self._live_client()
        watcher = self._on_watch_event if parsed.has("w") else None
        data, stat = await client.get_config(watch=watcher)
        text = decode_data(data)
        self.out(client_config_string(text) if parsed.has("c") else text)
        if parsed.has("s"):
            self.out(*format_stat(stat))

    async def _close(self, parsed: ParsedArgs) -> None:
        await self.disconnect()

    async def _connect(self, parsed: ParsedArgs) -> None:
        host = parsed.words[1] if len(parsed.words) > 1 else self.host
        if not await self.connect(host):
            raise CommandFailed()

    async def _quit(self, parsed: ParsedArgs) -> None:
        raise QuitShell()

    async def _history(self, parsed: ParsedArgs) -> None:
        first = max(0, self.command_count - HISTORY_SHOWN_MAX)
        for number in range(first, self.command_count + 1):
            self.out(f"{number} - {self.history.get(number, 'null')}")

    async def _redo(self, parsed: ParsedArgs) -> None:
        if len(parsed.words) < 2:
            return  # zkCli.sh does nothing either
        try:
            number = int(parsed.words[1], 0)
        except ValueError:
            raise CommandFailed(f"Command number must be an integer: {parsed.words[1]}") from None
        if not 0 <= number < self.command_count or number not in self.history:
            raise CommandFailed("Command index out of range")
        line = self.history[number]
        words = split_words(line)
        if words and words[0] == "redo":
            raise CommandFailed("No redoing redos")
        self._remember(self.command_count, line)
        code = await self._run_words(words)
        if code != EXIT_OK:
            raise CommandFailed(exit_code=code)

    async def _printwatches(self, parsed: ParsedArgs) -> None:
        if len(parsed.words) < 2:
            self.out(f"printwatches is {'on' if self.print_watches else 'off'}")
        else:
            self.print_watches = parsed.words[1] == "on"

    async def _help(self, parsed: ParsedArgs) -> None:
        self.usage()

    async def _version(self, parsed: ParsedArgs) -> None:
        self.out(f"corral shell version: {__version__}")

    def command_names(self) -> list[str]:
        return sorted(self._commands)


# --------------------------------------------------------------------------- completion


def _completer(shell: Shell) -> Any:
    from prompt_toolkit.completion import Completer, Completion
    from prompt_toolkit.document import Document

    class ShellCompleter(Completer):
        """Command names for the first word; znode paths for a word starting with /."""

        def get_completions(self, document: Document, complete_event: Any) -> Iterable[Any]:
            return []  # everything needs the loop: see get_completions_async

        async def get_completions_async(
            self, document: Document, complete_event: Any
        ) -> AsyncGenerator[Completion, None]:
            before = document.text_before_cursor
            word = document.get_word_before_cursor(WORD=True)
            if not before[: len(before) - len(word)].strip():
                for name in shell.command_names():
                    if name.startswith(word):
                        yield Completion(name, start_position=-len(word))
                return
            client = shell.client
            if not word.startswith("/") or client is None or not client.connected:
                return
            parent, _, prefix = word.rpartition("/")
            parent = parent or "/"
            try:
                children = await client.get_children(parent, timeout_s=COMPLETION_TIMEOUT_S)
            except (ZooKeeperError, ValueError):
                return
            for child in sorted(children)[:COMPLETIONS_MAX]:
                if child.startswith(prefix):
                    yield Completion(join_path(parent, child), start_position=-len(word))

    return ShellCompleter()


# --------------------------------------------------------------------------- runners


async def _run_interactive(shell: Shell) -> int:
    from prompt_toolkit import PromptSession
    from prompt_toolkit.history import FileHistory, History, InMemoryHistory
    from prompt_toolkit.patch_stdout import patch_stdout

    history_path = Path(os.environ.get(HISTORY_FILE_ENV) or Path.home() / ".corral_shell_history")
    history: History
    try:
        history_path.touch(exist_ok=True)
        history = FileHistory(str(history_path))
    except OSError:
        history = InMemoryHistory()
    session: PromptSession[str] = PromptSession(
        history=history, completer=_completer(shell), complete_while_typing=False
    )
    loop = asyncio.get_running_loop()
    with patch_stdout(raw=True):
        shell.out("Welcome to corral shell!")
        await shell.connect(shell.host)
        while True:
            try:
                line = await session.prompt_async(lambda: shell.prompt)
            except KeyboardInterrupt:
                continue  # Ctrl-C clears the line, as in a shell
            except EOFError:
                break
            task = asyncio.ensure_future(shell.execute_line(line))
            loop.add_signal_handler(signal.SIGINT, task.cancel)
            try:
                await task
            except asyncio.CancelledError:
                shell.err("Interrupted")
                shell.failure_code = EXIT_INTERRUPTED
            except QuitShell:
                await shell.disconnect()
                return shell.failure_code
            finally:
                loop.remove_signal_handler(signal.SIGINT)
        await shell.disconnect(quiet=True)
    return shell.failure_code


def _start_line_reader(loop: asyncio.AbstractEventLoop) -> asyncio.Queue[str | None]:
    """stdin lines, read on a daemon thread (a blocking read must not stall the client's
    pings); None marks the end of input."""
    queue: asyncio.Queue[str | None] = asyncio.Queue(LINES_QUEUED_MAX)
    ready = threading.Semaphore(LINES_QUEUED_MAX)

    def put(item: str | None) -> None:
        queue.put_nowait(item)

    def read() -> None:
        # RuntimeError: the loop is closed, the shell has left without reading it all.
        try:
            with contextlib.suppress(OSError, ValueError, RuntimeError):
                for line in sys.stdin:
                    ready.acquire()  # bounded read-ahead
                    loop.call_soon_threadsafe(put, line.rstrip("\r\n"))
        finally:
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(put, None)

    threading.Thread(target=read, name="corral-shell-stdin", daemon=True).start()
    queue.ready = ready  # type: ignore[attr-defined]
    return queue


async def _run_script(shell: Shell) -> int:
    shell.out("Welcome to corral shell!")
    await shell.connect(shell.host)
    lines = _start_line_reader(asyncio.get_running_loop())
    while True:
        line = await lines.get()
        lines.ready.release()  # type: ignore[attr-defined]
        if line is None or Shell.output_closed:
            break
        try:
            await shell.execute_line(line)
        except QuitShell:
            await shell.disconnect()
            return shell.failure_code
    await shell.disconnect(quiet=True)
    return shell.failure_code


async def _run_one(shell: Shell, words: list[str]) -> int:
    connected = await shell.connect(shell.host)
    if not connected and words[0] not in LOCAL_COMMANDS:
        return EXIT_ERROR
    try:
        code = await shell.run_words(words)
    except QuitShell:
        code = shell.failure_code
        await shell.disconnect()
        return code
    await shell.disconnect(quiet=True)
    return code


# --------------------------------------------------------------------------- entry


def add_shell_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """`corral shell` and its alias `corral cli` (zkCli.sh's single-dash options)."""
    parser = subparsers.add_parser(
        "shell",
        aliases=["cli"],
        help="a zkCli.sh-compatible shell (interactive, one command, or commands from stdin)",
        description=__doc__.split("\n\n")[0] if __doc__ else None,
        prefix_chars="-",
    )
    parser.add_argument("-server", default=DEFAULT_SERVER, help="host:port[,host:port][/chroot]")
    parser.add_argument(
        "-timeout", type=int, default=DEFAULT_TIMEOUT_MS, help="session timeout in ms"
    )
    parser.add_argument("-r", action="store_true", help="allow a read-only server")
    # zkCli.sh's other options, accepted so its command lines work unchanged: the shell
    # always waits for the connection, and has no client configuration file.
    parser.add_argument("-waitforconnection", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("-client-configuration", help=argparse.SUPPRESS)
    parser.add_argument("words", nargs=argparse.REMAINDER, help="a command to run, then exit")
    parser.set_defaults(func=run_shell)


def run_shell(args: argparse.Namespace) -> int:
    words: list[str] = list(args.words)
    if words and words[0] == "--":
        words = words[1:]
    if args.client_configuration is not None:
        Shell.err(f"-client-configuration {args.client_configuration}: ignored (no TLS/SASL)")
    shell = Shell(server=args.server, timeout_ms=args.timeout, read_only=args.r)
    if words:
        mode: Callable[[], Awaitable[int]] = lambda: _run_one(shell, words)  # noqa: E731
    elif sys.stdin.isatty() and sys.stdout.isatty():
        mode = lambda: _run_interactive(shell)  # noqa: E731
    else:
        mode = lambda: _run_script(shell)  # noqa: E731
    Shell.out(f"Connecting to {args.server}")

    async def main() -> int:
        return await mode()

    try:
        code = asyncio.run(main())
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    return EXIT_ERROR if Shell.output_closed else code
