"""Linearizability checker for histories of compare-and-set registers (znodes).

A history is what clients saw: for each operation its client, its znode (`path`), when it
was called and when its reply came back on the simulator's clock, what it asked for and
what it was told. The checker decides whether some total order of the operations (a
linearization) both respects real time — an operation that returned before another was
called comes first — and is a legal run of the sequential specification of one znode.

The sequential specification (server-semantics.md §3, §6.2) of a znode's state
`RegisterState(value, version) | None` (None: the znode does not exist):

* read (getData): NO_NODE if absent, else the `(value, version)`;
* write (setData(value, expected_version)): NO_NODE if absent; BAD_VERSION unless
  expected_version is ANY_VERSION or equals the version; else value is stored and the
  version goes up by one (int32, wrapping from 2**31 - 1 to -2**31 as ZooKeeper 3.8 does);
  the reply is the new version;
* create(value): NODE_EXISTS if present, else `(value, 0)` (the parent is assumed to exist);
* delete(expected_version): NO_NODE if absent, BAD_VERSION on a version mismatch, else the
  znode is gone (it must have no children: the workload keeps registers as leaves).

Outcomes. An operation with a reply the model produces is *definite*: it must be placed
between its call and its return. An operation with no reply (`return_ms` None: a crashed
client, a lost reply) or with a reply that does not say whether it happened
(`INDEFINITE_ERRORS`: connection loss, timeouts, session expiry) has an *unknown* outcome:
it may take effect at any moment after its call, or never. The errors in `REJECTIONS`
(NOT_READ_ONLY, NO_AUTH, SESSION_MOVED, ...) are answered before the request enters the
write pipeline, so such an operation had no effect and is left out; an unknown read
constrains nothing and is left out too. Every other reply is definite, including errors
the specification never gives (a write answered NODE_EXISTS): no linearization explains
those, and the explanation shows the operation, which is what a simulation wants to see.

Algorithm: Wing & Gong's search with Lowe's just-in-time linearization and memoisation,
as porcupine's checker does, with reductions that keep it exact:

* Calls and returns of definite operations are in one list sorted by time (calls first at
  equal times, so an operation returning at the instant another is called counts as
  concurrent with it). The candidates to place next are the calls before the first
  return; that return's operation bounds them (it must be placed before anything called
  after it). A configuration (placed operations as a bitset, model state) is explored at
  most once.
* A candidate read or refused write whose reply fits the current state is placed at once
  and alone (any linearization from here can be rearranged to place it first: nothing
  unplaced must precede it and it changes nothing), so k concurrent reads cost k steps,
  not 2**k configurations.
* An unknown operation is only placed where it changes the state (placing a refused one
  is the same as never placing it); identical unknown operations are placed in call
  order. Unknown operations left unplaced when every definite one is placed never happened.
* A configuration is dominated by an explored one with the same placed definite
  operations and state but a subset of its unknown ones (unknown operations are optional,
  so the smaller set leaves every choice open): a lost create and a lost delete that
  cancel out lead nowhere new.

The search is depth-first with an explicit stack of frames (candidates, next to try).
Histories on different znodes are independent (linearizability is local, Herlihy & Wing),
so each path is checked alone.

Stale reads. ZooKeeper serves getData from the local tree of whichever replica the client
is connected to, so a plain read is not linearizable: it may return a state older than its
call. A read marked `may_be_stale` is checked against what ZooKeeper does promise: it is
placed after every earlier operation of its own session (its writes and what it read
before on that znode: FIFO order, never back in time) and before its return, with no
other lower bound. Sequential consistency is not local, so with stale reads the per-path
check is weaker than one over the whole history: it never reports a false violation but
misses those that need the session order across znodes. `check_history(session_order=True)`
applies the same session order to every definite operation (for clients that pipeline).

Cost: the search is exponential in the worst case (the problem is NP-complete, Gibbons &
Korach). In practice it is about linear in the history for definite operations, and the
exponent is the number of unknown operations that could still change the state at a point
(lost unconditional writes stay candidates for ever; lost compare-and-sets only while the
version matches). Budgets turn a blow-up into an UNKNOWN verdict.

Use, from a simulation:

    recorder = HistoryRecorder()
    op = recorder.call(client_id=c, path="/r", kind=OpKind.WRITE, now_ms=t,
                       value=data, expected_version=n)
    recorder.returned(op, Reply(version=stat.version), now_ms=t2)  # or Reply(error=...)
    result = check_history(recorder.history(), initial_states={"/r": RegisterState(...)})
    assert result.ok, f"reproduce: python -m corral.sim --seed {seed}; {result.explain()}"

UNKNOWN is not a pass: report it with the seed (and shorten the run or lose fewer replies).

Rules: pure (no clock, IO or randomness); no recursion (an explicit stack); the search is
bounded by `SEARCH_STEPS_MAX` and `SEARCH_CONFIGURATIONS_MAX` and answers UNKNOWN rather
than running on; the input is bounded by `HISTORY_OPERATIONS_MAX`. A bad history (an
operation returning before its call, a reply of the wrong shape) is the caller's bug:
`ValueError` on construction.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace

from corral.protocol.constants import ANY_VERSION, ErrorCode

HISTORY_OPERATIONS_MAX = 100_000  # operations in one history
# The search's work: one step is one candidate or memo entry looked at (well under a
# microsecond of CPython), so the step budget is about 2-10 s of CPU. The memo holds one
# entry per configuration, about 200 bytes plus two bits per operation of its path: a path
# needs at least one configuration per operation, so the memory bound makes paths of more
# than about 40 000 operations UNKNOWN (split long runs into several histories).
SEARCH_STEPS_MAX = 10_000_000  # candidates examined, over all paths
SEARCH_CONFIGURATIONS_MAX = 400_000  # memoised (bitset, state) pairs, over all paths
SEARCH_MEMO_SIZE_MAX = 512 * 1024 * 1024  # bytes, estimated, for one path's memo
MEMO_ENTRY_SIZE = 200  # bytes of a memo entry besides its bitsets (tuple, set slot, ints)
DOMINANCE_SCAN_MAX = 16  # earlier configurations compared with a new one for dominance
EXPLANATION_OPERATIONS_MAX = 20  # operations of the linearized prefix shown in explain()

VERSION_MAX = 2**31 - 1  # Stat.version is an int32
VERSION_MIN = -(2**31)

# Replies that do not tell whether the request took effect: the client lost the
# connection or the session with the request in flight.
INDEFINITE_ERRORS = frozenset(
    {
        ErrorCode.CONNECTION_LOSS,
        ErrorCode.OPERATION_TIMEOUT,
        ErrorCode.REQUEST_TIMEOUT,
        ErrorCode.SESSION_EXPIRED,
    }
)


# Replies given before a request enters the write pipeline (server-semantics.md §6.2, §8.9):
# the request had no effect.
REJECTIONS = frozenset(
    {
        ErrorCode.BAD_ARGUMENTS,
        ErrorCode.NO_AUTH,
        ErrorCode.NOT_READ_ONLY,
        ErrorCode.QUOTA_EXCEEDED,
        ErrorCode.SESSION_MOVED,
        ErrorCode.THROTTLED_OP,
        ErrorCode.UNKNOWN_SESSION,
    }
)
assert not REJECTIONS & INDEFINITE_ERRORS


class OpKind(enum.Enum):
    READ = "read"  # getData
    WRITE = "write"  # setData(value, expected_version)
    CREATE = "create"  # create(value), persistent
    DELETE = "delete"  # delete(expected_version)


@dataclass(frozen=True, slots=True, kw_only=True)
class RegisterState:
    """A present znode as the model sees it."""

    value: bytes
    version: int

    def __post_init__(self) -> None:
        if not VERSION_MIN <= self.version <= VERSION_MAX:
            raise ValueError(f"version {self.version} is not an int32")

    def __str__(self) -> str:
        return f"({self.value!r}, v{self.version})"


@dataclass(frozen=True, slots=True, kw_only=True)
class Reply:
    """What the client was told: an error code, and on OK what the reply carries.

    read OK carries `value` and `version`; write OK carries the new `version`;
    create and delete OK carry nothing.
    """

    error: ErrorCode = ErrorCode.OK
    value: bytes | None = None
    version: int | None = None

    def __str__(self) -> str:
        if self.error != ErrorCode.OK:
            return self.error.name
        if self.value is not None:
            return f"({self.value!r}, v{self.version})"
        if self.version is not None:
            return f"v{self.version}"
        return "OK"


@dataclass(frozen=True, slots=True, kw_only=True)
class Operation:
    """One client operation on one znode, as the client saw it."""

    client_id: int
    path: str
    kind: OpKind
    call_ms: int
    return_ms: int | None  # None: no reply ever came (unknown outcome)
    reply: Reply | None  # None exactly when return_ms is None
    value: bytes = b""  # what write and create store
    expected_version: int = ANY_VERSION  # for write and delete
    # A plain getData answered from a replica's local tree: it may miss writes that
    # completed before its call, but not the ones its own session made or saw before it
    # (ZooKeeper's guarantee: sequential consistency and per-session FIFO order). A read
    # answered only after a read-index round with the leader (corral's sync then getData,
    # recorded as one read from the sync's call) is linearizable: leave False.
    may_be_stale: bool = False

    def __post_init__(self) -> None:
        if (self.return_ms is None) != (self.reply is None):
            raise ValueError(f"{self}: return_ms and reply must both be set or both be None")
        if self.return_ms is not None and self.return_ms < self.call_ms:
            raise ValueError(f"{self}: returns at {self.return_ms} before its call")
        if self.kind in (OpKind.READ, OpKind.CREATE) and self.expected_version != ANY_VERSION:
            raise ValueError(f"{self}: a {self.kind.value} has no expected version")
        if self.may_be_stale and self.kind != OpKind.READ:
            raise ValueError(f"{self}: only a read may be stale")
        if self.kind in (OpKind.READ, OpKind.DELETE) and self.value:
            raise ValueError(f"{self}: a {self.kind.value} stores no value")
        reply = self.reply
        if reply is None or reply.error != ErrorCode.OK:
            if reply is not None and (reply.value is not None or reply.version is not None):
                raise ValueError(f"{self}: an error reply carries no value or version")
            return
        has_value = reply.value is not None
        has_version = reply.version is not None
        expected = {
            OpKind.READ: (True, True),
            OpKind.WRITE: (False, True),
            OpKind.CREATE: (False, False),
            OpKind.DELETE: (False, False),
        }[self.kind]
        if (has_value, has_version) != expected:
            raise ValueError(f"{self}: wrong reply shape for a {self.kind.value}")

    def __str__(self) -> str:
        if self.kind == OpKind.READ:
            call = "read(stale ok)" if self.may_be_stale else "read()"
        elif self.kind == OpKind.WRITE:
            call = f"write({self.value!r}, expected=v{self.expected_version})"
        elif self.kind == OpKind.CREATE:
            call = f"create({self.value!r})"
        else:
            call = f"delete(expected=v{self.expected_version})"
        end = "..." if self.return_ms is None else str(self.return_ms)
        told = "no reply" if self.reply is None else str(self.reply)
        return f"client {self.client_id} [{self.call_ms}, {end}] {self.path} {call} -> {told}"


class HistoryRecorder:
    """Builds a history while a simulation runs.

    `call` when a client sends a request (it returns the operation's id), `returned` when
    the reply arrives; an operation never answered keeps an unknown outcome. The recorder
    only collects: the simulation decides what counts as a reply (a connection loss is a
    Reply with CONNECTION_LOSS, or no reply at all).
    """

    def __init__(self) -> None:
        self._operations: list[Operation] = []

    def call(
        self,
        *,
        client_id: int,
        path: str,
        kind: OpKind,
        now_ms: int,
        value: bytes = b"",
        expected_version: int = ANY_VERSION,
        may_be_stale: bool = False,
    ) -> int:
        if len(self._operations) >= HISTORY_OPERATIONS_MAX:
            raise ValueError(f"history is full: {HISTORY_OPERATIONS_MAX} operations")
        self._operations.append(
            Operation(
                client_id=client_id,
                path=path,
                kind=kind,
                call_ms=now_ms,
                return_ms=None,
                reply=None,
                value=value,
                expected_version=expected_version,
                may_be_stale=may_be_stale,
            )
        )
        return len(self._operations) - 1

    def returned(self, operation_id: int, reply: Reply, *, now_ms: int) -> None:
        operation = self._operations[operation_id]
        if operation.reply is not None:
            raise ValueError(f"{operation}: a second reply {reply}")
        self._operations[operation_id] = replace(operation, return_ms=now_ms, reply=reply)

    def history(self) -> list[Operation]:
        """Every operation so far, in call order; unanswered ones have no reply."""
        return list(self._operations)


class Verdict(enum.Enum):
    LINEARIZABLE = "linearizable"
    NOT_LINEARIZABLE = "not linearizable"
    UNKNOWN = "unknown"  # the search budget ran out first


class Outcome(enum.Enum):
    """How the checker treats one operation (see the module docstring)."""

    DEFINITE = "definite"
    UNKNOWN = "unknown"
    IGNORED = "ignored"  # a rejection, or an unknown read: no effect, no constraint


def outcome_of(operation: Operation) -> Outcome:
    reply = operation.reply
    if reply is None or reply.error in INDEFINITE_ERRORS:
        return Outcome.IGNORED if operation.kind == OpKind.READ else Outcome.UNKNOWN
    if reply.error in REJECTIONS:
        return Outcome.IGNORED
    return Outcome.DEFINITE


def _next_version(version: int) -> int:
    return VERSION_MIN if version == VERSION_MAX else version + 1


def _version_matches(expected_version: int, state: RegisterState) -> bool:
    return expected_version == ANY_VERSION or expected_version == state.version


def apply(state: RegisterState | None, operation: Operation) -> tuple[Reply, RegisterState | None]:
    """The sequential specification: the reply the operation gets and the state after."""
    kind = operation.kind
    if kind == OpKind.READ:
        if state is None:
            return Reply(error=ErrorCode.NO_NODE), state
        return Reply(value=state.value, version=state.version), state
    if kind == OpKind.WRITE:
        if state is None:
            return Reply(error=ErrorCode.NO_NODE), state
        if not _version_matches(operation.expected_version, state):
            return Reply(error=ErrorCode.BAD_VERSION), state
        written = RegisterState(value=operation.value, version=_next_version(state.version))
        return Reply(version=written.version), written
    if kind == OpKind.CREATE:
        if state is not None:
            return Reply(error=ErrorCode.NODE_EXISTS), state
        return Reply(), RegisterState(value=operation.value, version=0)
    assert kind == OpKind.DELETE, kind
    if state is None:
        return Reply(error=ErrorCode.NO_NODE), state
    if not _version_matches(operation.expected_version, state):
        return Reply(error=ErrorCode.BAD_VERSION), state
    return Reply(), None


@dataclass(frozen=True, slots=True, kw_only=True)
class PathResult:
    """The verdict for one znode, with the longest linearizable prefix the search found.

    `operations` are this path's operations the search considered (definite and unknown),
    in history order, and `positions` their positions in the history given to
    `check_history` (explain() prints those as #n); `prefix` and `stuck` index into
    `operations`. On NOT_LINEARIZABLE, `prefix` is a
    longest legal sequence found, `state_after_prefix` the state it leaves, and `stuck`
    the operation that had to come next (its return was reached) but could not be placed
    after that prefix. On LINEARIZABLE, `prefix` is a whole linearization (unknown
    operations not in it never took effect).
    """

    path: str
    verdict: Verdict
    operations: tuple[Operation, ...]
    positions: tuple[int, ...]
    prefix: tuple[int, ...]
    state_after_prefix: RegisterState | None
    stuck: int | None
    steps: int
    configurations: int

    def explain(self) -> str:
        lines = [f"{self.path}: {self.verdict.value} ({len(self.operations)} operations)"]
        if self.verdict == Verdict.LINEARIZABLE:
            return lines[0]
        if self.verdict == Verdict.UNKNOWN:
            lines.append(
                f"  search budget exhausted after {self.steps} steps and "
                f"{self.configurations} configurations; longest prefix so far below"
            )
        shown = self.prefix[-EXPLANATION_OPERATIONS_MAX:]
        lines.append(
            f"  longest linearizable prefix: {len(self.prefix)} operations"
            + (f" (last {len(shown)} shown)" if len(shown) < len(self.prefix) else "")
        )
        for index in shown:
            lines.append(f"    #{self.positions[index]} {self.operations[index]}")
        state = "absent" if self.state_after_prefix is None else str(self.state_after_prefix)
        lines.append(f"  state after the prefix: {state}")
        if self.stuck is not None:
            operation = self.operations[self.stuck]
            would_get, _ = apply(self.state_after_prefix, operation)
            lines.append(f"  cannot place #{self.positions[self.stuck]} {operation}")
            lines.append(f"    (placed next it would get {would_get})")
        return "\n".join(lines)


@dataclass(frozen=True, slots=True, kw_only=True)
class CheckResult:
    """The verdict for a whole history: the worst over its paths."""

    verdict: Verdict
    paths: tuple[PathResult, ...]
    operations_ignored: int  # rejections and unknown reads, left out

    @property
    def ok(self) -> bool:
        return self.verdict == Verdict.LINEARIZABLE

    def explain(self) -> str:
        """Every path that is not linearizable (or undecided), printable in a test failure."""
        bad = [p.explain() for p in self.paths if p.verdict != Verdict.LINEARIZABLE]
        if not bad:
            return f"linearizable ({len(self.paths)} paths)"
        return "\n".join(bad)


def check_history(
    history: Iterable[Operation],
    *,
    initial_states: Mapping[str, RegisterState | None] | None = None,
    steps_max: int = SEARCH_STEPS_MAX,
    configurations_max: int = SEARCH_CONFIGURATIONS_MAX,
    memo_size_max: int = SEARCH_MEMO_SIZE_MAX,
    session_order: bool = False,
) -> CheckResult:
    """Check a history of operations on any number of znodes for linearizability.

    `initial_states` gives each path's state before the history; a path not in it starts
    absent. `session_order` adds ZooKeeper's per-session FIFO order to real time: the
    definite operations of one client take effect in the order it called them, even when
    it pipelines them (unknown ones stay free: after a lost connection nothing orders
    them). The budgets are shared by all paths, checked smallest first; when they run out
    the remaining paths are UNKNOWN (a NOT_LINEARIZABLE path still makes the verdict).
    """
    operations = list(history)
    if len(operations) > HISTORY_OPERATIONS_MAX:
        raise ValueError(f"history has {len(operations)} operations, max {HISTORY_OPERATIONS_MAX}")
    initial_states = initial_states or {}
    by_path: dict[str, list[tuple[int, Operation]]] = {}
    ignored = 0
    for position, operation in enumerate(operations):
        if outcome_of(operation) == Outcome.IGNORED:
            ignored += 1
            continue
        by_path.setdefault(operation.path, []).append((position, operation))
    results: list[PathResult] = []
    steps_left = steps_max
    configurations_left = configurations_max
    # Smaller paths first, so that one hard path spends the shared budget last.
    for path in sorted(by_path, key=lambda p: (len(by_path[p]), p)):
        positions, path_operations = zip(*by_path[path], strict=True)
        result = _check_path(
            path,
            path_operations,
            positions,
            initial_states.get(path),
            steps_max=steps_left,
            configurations_max=configurations_left,
            memo_size_max=memo_size_max,
            session_order=session_order,
        )
        results.append(result)
        steps_left = max(0, steps_left - result.steps)
        configurations_left = max(0, configurations_left - result.configurations)
    verdicts = {r.verdict for r in results}
    if Verdict.NOT_LINEARIZABLE in verdicts:
        verdict = Verdict.NOT_LINEARIZABLE
    elif Verdict.UNKNOWN in verdicts:
        verdict = Verdict.UNKNOWN
    else:
        verdict = Verdict.LINEARIZABLE
    return CheckResult(verdict=verdict, paths=tuple(results), operations_ignored=ignored)


def _applicable_keys(state: RegisterState | None) -> tuple[tuple[OpKind, int], ...]:
    """The (kind, expected_version) of the operations that change `state` when applied."""
    if state is None:
        return ((OpKind.CREATE, ANY_VERSION),)
    if state.version == ANY_VERSION:  # reachable only by wrapping
        return ((OpKind.WRITE, ANY_VERSION), (OpKind.DELETE, ANY_VERSION))
    return (
        (OpKind.WRITE, ANY_VERSION),
        (OpKind.WRITE, state.version),
        (OpKind.DELETE, ANY_VERSION),
        (OpKind.DELETE, state.version),
    )


def _check_path(
    path: str,
    operations: Sequence[Operation],
    positions: Sequence[int],
    initial: RegisterState | None,
    *,
    steps_max: int,
    configurations_max: int,
    memo_size_max: int,
    session_order: bool,
) -> PathResult:
    """Just-in-time linearization of one path's definite and unknown operations."""
    count = len(operations)
    # Two bitsets of `count` bits per memo entry: the placed set and its unknown part.
    entry_size = MEMO_ENTRY_SIZE + 2 * (count // 8)
    configurations_max = min(configurations_max, memo_size_max // entry_size)
    definite = [outcome_of(op) == Outcome.DEFINITE for op in operations]
    stale = [definite[i] and op.may_be_stale for i, op in enumerate(operations)]
    # The definite operations' calls and returns in time order, as a doubly linked list
    # over arrays, so that taking out an operation's call and return and putting them
    # back (in LIFO order) is O(1) ("dancing links"). Entry 0 is the head sentinel. A
    # stale read has no lower bound in time, so only its return is in the list.
    events: list[tuple[int, int, int]] = []  # (time, 0 call / 1 return, operation)
    for index, operation in enumerate(operations):
        if definite[index]:
            assert operation.return_ms is not None
            if not stale[index]:
                events.append((operation.call_ms, 0, index))
            events.append((operation.return_ms, 1, index))
    events.sort()
    size = len(events) + 1
    op_of = [-1] * size
    is_call = [False] * size
    return_time = [0] * size
    call_entry = [0] * count
    return_entry = [0] * count
    for entry, (time_ms, kind, index) in enumerate(events, start=1):
        op_of[entry] = index
        if kind == 0:
            is_call[entry] = True
            call_entry[index] = entry
        else:
            return_entry[index] = entry
            return_time[entry] = time_ms
    next_entry = [*range(1, size), 0]  # 0 terminates the list
    prev_entry = [size - 1, *range(0, size - 1)]

    def unlink(entry: int) -> None:
        next_entry[prev_entry[entry]] = next_entry[entry]
        prev_entry[next_entry[entry]] = prev_entry[entry]

    def relink(entry: int) -> None:
        next_entry[prev_entry[entry]] = entry
        prev_entry[next_entry[entry]] = entry

    # Unknown operations, bucketed by the (kind, expected_version) that decides in which
    # states they do anything, each bucket in call order. Placing an unknown operation that
    # changes nothing (a refused compare-and-set) is the same as never placing it, and
    # nothing waits for its return, so only the buckets applicable to the state are tried.
    # Unknown operations that do the same thing (a family: same kind and arguments) are
    # placed in call order: swapping two in a linearization changes nothing, and the
    # earlier-called one can stand wherever the later one could. Without that, k equal lost
    # writes would multiply the configurations by 2**k instead of k + 1.
    buckets: dict[tuple[OpKind, int], list[int]] = {}
    family_of = [0] * count
    rank_in_family = [0] * count
    family_sizes: list[int] = []
    families: dict[tuple[OpKind, bytes, int], int] = {}
    for index in sorted(range(count), key=lambda i: operations[i].call_ms):
        if definite[index]:
            continue
        operation = operations[index]
        if operation.kind == OpKind.READ:
            continue  # outcome_of ignores unknown reads; a read changes nothing anyway
        bucket_key = (operation.kind, operation.expected_version)
        buckets.setdefault(bucket_key, []).append(index)
        family = families.setdefault(
            (operation.kind, operation.value, operation.expected_version), len(families)
        )
        if family == len(family_sizes):
            family_sizes.append(0)
        family_of[index] = family
        rank_in_family[index] = family_sizes[family]
        family_sizes[family] += 1
    placed_in_family = [0] * len(family_sizes)

    # Stale reads, per session in call order, each with the bitset of the session's earlier
    # definite operations that must be placed before it (the session's FIFO order). The
    # earlier stale reads are among them, so a session's stale reads are placed in order
    # and only the next one of each session can be a candidate. With `session_order`
    # every definite operation has such a gate.
    session_reads: dict[int, list[int]] = {}
    gate = [0] * count
    by_session: dict[int, int] = {}  # session -> bitset of its definite operations so far
    for index in sorted(range(count), key=lambda i: (operations[i].call_ms, i)):
        if not definite[index]:
            continue
        client_id = operations[index].client_id
        earlier = by_session.get(client_id, 0)
        if stale[index] or session_order:
            gate[index] = earlier
        if stale[index]:
            session_reads.setdefault(client_id, []).append(index)
        by_session[client_id] = earlier | (1 << index)
    sessions = list(session_reads.values())
    session_of = [0] * count
    for slot, reads in enumerate(sessions):
        for index in reads:
            session_of[index] = slot
    stale_placed = [0] * len(sessions)

    replies = [op.reply for op in operations]
    steps = 0

    def candidates(state: RegisterState | None, linearized: int) -> tuple[list[int], int]:
        """The operations that may come next, definite ones first, and the operation whose
        return bounds them (the first return still in the list)."""
        nonlocal steps
        found: list[int] = []
        entry = next_entry[0]
        while is_call[entry]:
            steps += 1
            index = op_of[entry]
            if linearized & gate[index] != gate[index]:
                entry = next_entry[entry]  # its session's earlier operations come first
                continue
            reply, after = apply(state, operations[index])
            if after == state and reply == replies[index]:
                # A read or a refused write that fits now goes now, and alone: in any
                # linearization from here it could be moved to this point (it is callable
                # and its session's earlier operations are placed, so nothing unplaced must
                # precede it, and it changes no state). This turns
                # the 2**k subsets of k concurrent reads into one path.
                while is_call[entry]:
                    steps += 1
                    entry = next_entry[entry]
                return [index], op_of[entry]
            found.append(index)
            entry = next_entry[entry]
        assert entry != 0, "a definite operation is left, so a return is in the list"
        # The next stale read of each session, once its session's earlier operations are
        # placed, goes now if it fits (as above); if it does not fit, it cannot go now.
        for slot, reads in enumerate(sessions):
            steps += 1
            if stale_placed[slot] == len(reads):
                continue
            index = reads[stale_placed[slot]]
            gate_open = linearized & gate[index] == gate[index]
            if gate_open and apply(state, operations[index])[0] == replies[index]:
                return [index], op_of[entry]
        bound_ms = return_time[entry]
        for key in _applicable_keys(state):
            for index in buckets.get(key, ()):
                steps += 1
                if operations[index].call_ms > bound_ms:
                    break  # called after the first return: not yet
                if rank_in_family[index] == placed_in_family[family_of[index]]:
                    found.append(index)
        return found, op_of[entry]

    definite_left = sum(definite)
    state = initial
    linearized = 0  # bitset of placed operations
    placed: list[tuple[int, RegisterState | None]] = []  # (operation, state before it)
    # Memo: (placed definite operations, state) -> the sets of placed unknown operations
    # explored with it. A configuration is dominated by one with the same definite set and
    # state and fewer unknown operations placed (a subset): the latter has every choice the
    # former has and more, since unknown operations are optional. So a lost create and a
    # lost delete that cancel out are not explored again as a new configuration.
    # Exact repeats are caught by `seen`; dominance is looked for among the latest
    # DOMINANCE_SCAN_MAX entries of a key only, so the memo costs O(1) per configuration.
    seen: set[tuple[int, RegisterState | None]] = set()
    explored_unknown: dict[tuple[int, RegisterState | None], list[int]] = {(0, initial): [0]}
    seen.add((0, initial))
    configurations = 0
    unknown_mask = sum(1 << i for i in range(count) if not definite[i])
    # One frame per configuration on the current path: its candidates, the next to try,
    # and the operation that had to be placed before the first return.
    frames: list[tuple[list[int], int, int]] = []
    # The explanation: the dead end with the most definite operations placed and, among
    # those, the fewest unknown ones (the lost writes it had to assume).
    best_prefix: tuple[int, ...] = ()
    best_score = (-1, 0)
    best_state = initial
    best_stuck: int | None = None
    definite_total = definite_left
    if definite_left:
        frames.append((*candidates(state, linearized), 0))
    verdict = Verdict.LINEARIZABLE
    while definite_left:
        if steps >= steps_max or configurations >= configurations_max:
            verdict = Verdict.UNKNOWN
            break
        found, bound, tried = frames[-1]
        if tried == len(found):
            # Every candidate failed here: the bounding operation cannot be placed.
            placed_definite = definite_total - definite_left
            score = (placed_definite, placed_definite - len(placed))
            if score > best_score:
                best_score = score
                best_prefix = tuple(index for index, _ in placed)
                best_state = state
                best_stuck = bound
            frames.pop()
            if not placed:
                verdict = Verdict.NOT_LINEARIZABLE
                break
            index, state = placed.pop()
            linearized &= ~(1 << index)
            if stale[index]:
                stale_placed[session_of[index]] -= 1
                relink(return_entry[index])
                definite_left += 1
            elif definite[index]:
                relink(return_entry[index])
                relink(call_entry[index])
                definite_left += 1
            else:
                placed_in_family[family_of[index]] -= 1
            continue
        frames[-1] = (found, bound, tried + 1)
        steps += 1
        index = found[tried]
        reply, after = apply(state, operations[index])
        if definite[index] and reply != replies[index]:
            continue
        after_placed = linearized | (1 << index)
        if (after_placed, after) in seen:
            continue
        unknown_placed = after_placed & unknown_mask
        explored = explored_unknown.setdefault((after_placed & ~unknown_mask, after), [])
        recent = explored[max(0, len(explored) - DOMINANCE_SCAN_MAX) :]
        steps += len(recent)
        if any(other & ~unknown_placed == 0 for other in recent):
            continue
        seen.add((after_placed, after))
        explored.append(unknown_placed)
        configurations += 1
        placed.append((index, state))
        state = after
        linearized |= 1 << index
        if stale[index]:
            assert sessions[session_of[index]][stale_placed[session_of[index]]] == index
            stale_placed[session_of[index]] += 1
            unlink(return_entry[index])
            definite_left -= 1
        elif definite[index]:
            unlink(call_entry[index])
            unlink(return_entry[index])
            definite_left -= 1
        else:
            placed_in_family[family_of[index]] += 1
        if definite_left:
            frames.append((*candidates(state, linearized), 0))
    if verdict == Verdict.LINEARIZABLE:
        best_prefix = tuple(index for index, _ in placed)
        best_state = state
        best_stuck = None
    return PathResult(
        path=path,
        verdict=verdict,
        operations=tuple(operations),
        positions=tuple(positions),
        prefix=best_prefix,
        state_after_prefix=best_state,
        stuck=best_stuck,
        steps=steps,
        configurations=configurations,
    )
