"""The linearizability checker for znode registers, against hand-built histories and a
brute-force reference.

The reference checker below tries every subset of the unknown-outcome operations and every
permutation that respects real time (session order for stale reads), on its own
sequential znode; it is hopeless beyond a
handful of operations, which is what makes it obviously right. Property tests build
histories by running a random concurrent schedule against that sequential znode (so they
are linearizable by construction), then corrupt one reply and compare verdicts with the
reference. Hypothesis prints the failing example (and a reproduce blob) on failure.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Sequence
from dataclasses import dataclass, replace

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from corral.protocol.constants import ANY_VERSION, ErrorCode
from corral.sim.linearizability import (
    DOMINANCE_SCAN_MAX,
    HISTORY_OPERATIONS_MAX,
    MEMO_ENTRY_SIZE,
    VERSION_MAX,
    VERSION_MIN,
    HistoryRecorder,
    Operation,
    OpKind,
    RegisterState,
    Reply,
    Verdict,
    check_history,
)

PATH = "/r"
OK = ErrorCode.OK


# -- builders -----------------------------------------------------------------------------


def read(
    client_id: int,
    call_ms: int,
    return_ms: int | None,
    value: bytes | None = None,
    version: int | None = None,
    *,
    error: ErrorCode = OK,
    path: str = PATH,
    stale: bool = False,
) -> Operation:
    reply = None if return_ms is None else Reply(error=error, value=value, version=version)
    return Operation(
        client_id=client_id,
        path=path,
        kind=OpKind.READ,
        call_ms=call_ms,
        return_ms=return_ms,
        reply=reply,
        may_be_stale=stale,
    )


def write(
    client_id: int,
    call_ms: int,
    return_ms: int | None,
    value: bytes,
    expected_version: int,
    new_version: int | None = None,
    *,
    error: ErrorCode = OK,
    path: str = PATH,
) -> Operation:
    reply = None if return_ms is None else Reply(error=error, version=new_version)
    return Operation(
        client_id=client_id,
        path=path,
        kind=OpKind.WRITE,
        call_ms=call_ms,
        return_ms=return_ms,
        reply=reply,
        value=value,
        expected_version=expected_version,
    )


def create(
    client_id: int,
    call_ms: int,
    return_ms: int | None,
    value: bytes,
    *,
    error: ErrorCode = OK,
    path: str = PATH,
) -> Operation:
    reply = None if return_ms is None else Reply(error=error)
    return Operation(
        client_id=client_id,
        path=path,
        kind=OpKind.CREATE,
        call_ms=call_ms,
        return_ms=return_ms,
        reply=reply,
        value=value,
    )


def delete(
    client_id: int,
    call_ms: int,
    return_ms: int | None,
    expected_version: int,
    *,
    error: ErrorCode = OK,
    path: str = PATH,
) -> Operation:
    reply = None if return_ms is None else Reply(error=error)
    return Operation(
        client_id=client_id,
        path=path,
        kind=OpKind.DELETE,
        call_ms=call_ms,
        return_ms=return_ms,
        reply=reply,
        expected_version=expected_version,
    )


V0 = RegisterState(value=b"", version=0)
START = {PATH: V0}


def verdict(history: Sequence[Operation], start: RegisterState | None = V0) -> Verdict:
    return check_history(history, initial_states={PATH: start}).verdict


# -- the reference: a sequential znode and a brute-force checker --------------------------


@dataclass
class Znode:
    """The sequential specification, written independently of the checker's `apply`."""

    present: bool
    value: bytes = b""
    version: int = 0

    def run(self, operation: Operation) -> Reply:
        if operation.kind == OpKind.CREATE:
            if self.present:
                return Reply(error=ErrorCode.NODE_EXISTS)
            self.present, self.value, self.version = True, operation.value, 0
            return Reply()
        if not self.present:
            return Reply(error=ErrorCode.NO_NODE)
        if operation.kind == OpKind.READ:
            return Reply(value=self.value, version=self.version)
        if operation.expected_version not in (ANY_VERSION, self.version):
            return Reply(error=ErrorCode.BAD_VERSION)
        if operation.kind == OpKind.DELETE:
            self.present = False
            return Reply()
        self.value = operation.value
        self.version = VERSION_MIN if self.version == VERSION_MAX else self.version + 1
        return Reply(version=self.version)


def znode_from(state: RegisterState | None) -> Znode:
    if state is None:
        return Znode(present=False)
    return Znode(present=True, value=state.value, version=state.version)


UNKNOWN_ERRORS = (ErrorCode.CONNECTION_LOSS, ErrorCode.SESSION_EXPIRED)
REJECTED = (ErrorCode.NO_AUTH, ErrorCode.NOT_READ_ONLY)


def brute_force_linearizable(
    history: Sequence[Operation], start: RegisterState | None, *, session_order: bool = False
) -> bool:
    """Some subset of the unknown operations, in some order that respects real time,
    explains every definite reply. Rejections are left out. A stale read need not follow
    what returned before its call, only its own session's earlier definite operations."""
    definite: list[Operation] = []
    unknown: list[Operation] = []
    for operation in history:
        reply = operation.reply
        if reply is None or reply.error in UNKNOWN_ERRORS:
            unknown.append(operation)
        elif reply.error not in REJECTED:
            definite.append(operation)

    position = {id(op): i for i, op in enumerate(history)}

    def precedes(a: Operation, b: Operation) -> bool:
        definite_a = a.reply is not None and a.reply.error not in UNKNOWN_ERRORS
        if not definite_a:
            return False
        definite_b = b.reply is not None and b.reply.error not in UNKNOWN_ERRORS
        same_session = session_order and definite_b and a.client_id == b.client_id
        if same_session and (a.call_ms, position[id(a)]) < (b.call_ms, position[id(b)]):
            return True
        if b.may_be_stale:
            return a.client_id == b.client_id and (a.call_ms, position[id(a)]) < (
                b.call_ms,
                position[id(b)],
            )
        return a.return_ms is not None and a.return_ms < b.call_ms

    for size in range(len(unknown) + 1):
        for chosen in itertools.combinations(unknown, size):
            for order in itertools.permutations([*definite, *chosen]):
                if any(
                    precedes(order[j], order[i])
                    for i, j in itertools.combinations(range(len(order)), 2)
                ):
                    continue
                znode = znode_from(start)
                if all(znode.run(op) == op.reply or op in chosen for op in order):
                    return True
    return False


def assert_agrees_with_brute_force(
    history: Sequence[Operation],
    start: RegisterState | None,
    reproduce: str = "",
    *,
    session_order: bool = False,
) -> None:
    expected = brute_force_linearizable(history, start, session_order=session_order)
    result = check_history(history, initial_states={PATH: start}, session_order=session_order)
    assert result.verdict == (Verdict.LINEARIZABLE if expected else Verdict.NOT_LINEARIZABLE), (
        f"{reproduce}{result.explain()}"
    )


# -- hand-built histories -----------------------------------------------------------------


def test_an_empty_history_is_linearizable() -> None:
    result = check_history([])
    assert result.ok
    assert result.paths == ()


def test_sequential_writes_and_reads() -> None:
    history = [
        write(1, 0, 1, b"a", 0, 1),
        read(2, 2, 3, b"a", 1),
        write(2, 4, 5, b"b", ANY_VERSION, 2),
        read(1, 6, 7, b"b", 2),
    ]
    assert verdict(history) == Verdict.LINEARIZABLE


def test_a_stale_read_after_a_completed_write_is_caught_and_explained() -> None:
    history = [
        write(1, 0, 10, b"a", 0, 1),
        read(2, 11, 12, b"", 0),
    ]
    result = check_history(history, initial_states=START)
    assert result.verdict == Verdict.NOT_LINEARIZABLE
    (path,) = result.paths
    assert path.prefix == (0,)
    assert path.stuck == 1
    assert path.state_after_prefix == RegisterState(value=b"a", version=1)
    text = result.explain()
    assert "/r: not linearizable" in text
    assert "#0 client 1 [0, 10] /r write(b'a', expected=v0) -> v1" in text
    assert "cannot place #1 client 2 [11, 12] /r read() -> (b'', v0)" in text
    assert "placed next it would get (b'a', v1)" in text


def test_a_read_concurrent_with_a_write_may_see_either_state() -> None:
    for seen in (read(2, 5, 15, b"", 0), read(2, 5, 15, b"a", 1)):
        assert verdict([write(1, 0, 10, b"a", 0, 1), seen]) == Verdict.LINEARIZABLE
    # But not a value nobody wrote, nor a version that does not go with the value.
    for seen in (read(2, 5, 15, b"b", 1), read(2, 5, 15, b"a", 0)):
        assert verdict([write(1, 0, 10, b"a", 0, 1), seen]) == Verdict.NOT_LINEARIZABLE


def test_two_successful_compare_and_sets_from_the_same_version_are_a_lost_update() -> None:
    history = [
        write(1, 0, 10, b"a", 0, 1),
        write(2, 1, 11, b"b", 0, 1),
    ]
    assert verdict(history) == Verdict.NOT_LINEARIZABLE
    # The same pair is fine when one of them was refused, whichever won.
    first_won = [
        write(1, 0, 10, b"a", 0, 1),
        write(2, 1, 11, b"b", 0, error=ErrorCode.BAD_VERSION),
    ]
    second_won = [
        write(1, 0, 10, b"a", 0, error=ErrorCode.BAD_VERSION),
        write(2, 1, 11, b"b", 0, 1),
    ]
    assert verdict(first_won) == Verdict.LINEARIZABLE
    assert verdict(second_won) == Verdict.LINEARIZABLE
    # And the winner's value is what a later read sees.
    assert verdict([*first_won, read(3, 12, 13, b"b", 1)]) == Verdict.NOT_LINEARIZABLE
    assert verdict([*second_won, read(3, 12, 13, b"b", 1)]) == Verdict.LINEARIZABLE


def test_a_refused_compare_and_set_needs_a_version_that_had_moved() -> None:
    assert verdict([write(1, 0, 1, b"a", 0, error=ErrorCode.BAD_VERSION)]) == (
        Verdict.NOT_LINEARIZABLE
    )
    assert verdict([write(1, 0, 1, b"a", 7, error=ErrorCode.BAD_VERSION)]) == Verdict.LINEARIZABLE


@pytest.mark.parametrize("second_first", [False, True])
def test_overlapping_writes_linearize_in_either_order(second_first: bool) -> None:
    # Write 1 spans write 2; a later read decides which went last.
    final = read(3, 20, 21, b"a" if second_first else b"b", 2)
    history = [
        write(1, 0, 10, b"a", ANY_VERSION, 2 if second_first else 1),
        write(2, 2, 8, b"b", ANY_VERSION, 1 if second_first else 2),
        final,
    ]
    assert verdict(history) == Verdict.LINEARIZABLE
    # A version that contradicts the replies is caught.
    assert verdict([*history[:2], replace(final, reply=Reply(value=b"a", version=1))]) == (
        Verdict.NOT_LINEARIZABLE
    )


def test_real_time_order_is_strict_between_non_overlapping_operations() -> None:
    # The write returned at 10, the read was called at 10: they count as concurrent.
    assert verdict([write(1, 0, 10, b"a", 0, 1), read(2, 10, 12, b"", 0)]) == (Verdict.LINEARIZABLE)
    assert verdict([write(1, 0, 10, b"a", 0, 1), read(2, 11, 12, b"", 0)]) == (
        Verdict.NOT_LINEARIZABLE
    )


def test_an_unknown_write_may_take_effect_later() -> None:
    # The writer crashed; a read long after sees its value.
    history = [write(1, 0, None, b"a", 0), read(2, 50, 51, b"a", 1)]
    assert verdict(history) == Verdict.LINEARIZABLE


def test_an_unknown_write_may_never_take_effect() -> None:
    history = [write(1, 0, None, b"a", 0), read(2, 50, 51, b"", 0)]
    assert verdict(history) == Verdict.LINEARIZABLE


def test_an_unknown_write_cannot_take_effect_before_its_call() -> None:
    history = [read(2, 0, 5, b"a", 1), write(1, 6, None, b"a", 0)]
    assert verdict(history) == Verdict.NOT_LINEARIZABLE


def test_an_unknown_write_that_took_effect_cannot_be_undone() -> None:
    history = [
        write(1, 0, None, b"a", 0),
        read(2, 10, 11, b"a", 1),
        read(2, 12, 13, b"", 0),
    ]
    assert verdict(history) == Verdict.NOT_LINEARIZABLE


def test_an_unknown_write_takes_effect_at_most_once() -> None:
    # One unconditional write without a reply cannot account for two version bumps.
    history = [write(1, 0, None, b"a", ANY_VERSION), read(2, 10, 11, b"a", 2)]
    assert verdict(history) == Verdict.NOT_LINEARIZABLE


def test_indefinite_errors_count_as_unknown_and_rejections_as_no_effect() -> None:
    for error in (ErrorCode.CONNECTION_LOSS, ErrorCode.SESSION_EXPIRED):
        history = [write(1, 0, 5, b"a", 0, error=error), read(2, 10, 11, b"a", 1)]
        assert verdict(history) == Verdict.LINEARIZABLE, error
    # NOT_READ_ONLY and NO_AUTH are answered before the write pipeline: no effect.
    for error in (ErrorCode.NOT_READ_ONLY, ErrorCode.NO_AUTH):
        history = [write(1, 0, 5, b"a", 0, error=error), read(2, 10, 11, b"a", 1)]
        result = check_history(history, initial_states=START)
        assert result.verdict == Verdict.NOT_LINEARIZABLE, error
        assert result.operations_ignored == 1
    # An error the specification never gives is definite, and nothing explains it.
    nonsense = write(1, 0, 5, b"a", 0, error=ErrorCode.NODE_EXISTS)
    result = check_history([nonsense], initial_states=START)
    assert result.verdict == Verdict.NOT_LINEARIZABLE
    assert "cannot place #0" in result.explain()
    # A read without an answer tells nothing, whatever else happened.
    assert check_history([read(1, 0, None)], initial_states=START).operations_ignored == 1


def test_create_delete_and_the_version_restarting() -> None:
    history = [
        create(1, 0, 1, b"a"),
        read(2, 2, 3, b"a", 0),
        write(1, 4, 5, b"b", 0, 1),
        delete(2, 6, 7, 0, error=ErrorCode.BAD_VERSION),
        delete(2, 8, 9, 1),
        read(1, 10, 11, error=ErrorCode.NO_NODE),
        write(1, 12, 13, b"c", ANY_VERSION, error=ErrorCode.NO_NODE),
        create(2, 14, 15, b"d"),
        read(1, 16, 17, b"d", 0),
    ]
    assert verdict(history, start=None) == Verdict.LINEARIZABLE
    # Two concurrent creates: exactly one wins.
    both = [create(1, 0, 10, b"a"), create(2, 0, 10, b"b")]
    assert verdict(both, start=None) == Verdict.NOT_LINEARIZABLE
    one = [create(1, 0, 10, b"a"), create(2, 0, 10, b"b", error=ErrorCode.NODE_EXISTS)]
    assert verdict(one, start=None) == Verdict.LINEARIZABLE
    # A read of a deleted znode after the delete returned is stale.
    stale = [delete(1, 0, 1, ANY_VERSION), read(2, 2, 3, b"", 0)]
    assert verdict(stale) == Verdict.NOT_LINEARIZABLE


def test_versions_wrap_like_an_int32() -> None:
    top = RegisterState(value=b"", version=VERSION_MAX)
    history = [write(1, 0, 1, b"a", VERSION_MAX, VERSION_MIN), read(1, 2, 3, b"a", VERSION_MIN)]
    assert verdict(history, start=top) == Verdict.LINEARIZABLE


def test_paths_are_checked_independently_and_reported_by_path() -> None:
    history = [
        write(1, 0, 10, b"a", 0, 1, path="/x"),
        read(2, 11, 12, b"a", 1, path="/x"),
        write(1, 0, 10, b"a", 0, 1, path="/y"),
        read(2, 11, 12, b"", 0, path="/y"),  # stale
    ]
    result = check_history(history, initial_states={"/x": V0, "/y": V0})
    assert result.verdict == Verdict.NOT_LINEARIZABLE
    verdicts = {p.path: p.verdict for p in result.paths}
    assert verdicts == {"/x": Verdict.LINEARIZABLE, "/y": Verdict.NOT_LINEARIZABLE}
    assert "/y: not linearizable" in result.explain()
    # Operations are named by their position in the history given to check_history.
    assert "cannot place #3 client 2 [11, 12] /y read() -> (b'', v0)" in result.explain()
    assert "/x" not in result.explain()
    # A path not in initial_states starts absent.
    assert check_history([read(1, 0, 1, b"", 0, path="/z")]).verdict == Verdict.NOT_LINEARIZABLE
    assert check_history([read(1, 0, 1, error=ErrorCode.NO_NODE)]).ok


def _lost_writes_then_a_bad_read(writes: int) -> list[Operation]:
    # Each lost write may or may not have happened, in any order: every subset of them,
    # with each member last, is a configuration the search has to rule out.
    history = [write(c, 0, None, bytes([65 + c]), ANY_VERSION) for c in range(writes)]
    return [*history, read(writes, 200, 201, b"never", 99)]


def test_memoisation_keeps_the_search_to_one_visit_per_configuration() -> None:
    # 10 lost writes: about 10! * e orders, but 10 * 2**9 (set placed, last value) pairs.
    result = check_history(_lost_writes_then_a_bad_read(10), initial_states=START)
    assert result.verdict == Verdict.NOT_LINEARIZABLE
    (path,) = result.paths
    assert path.configurations == 10 * 2**9
    assert path.stuck == 10
    assert path.prefix == ()  # unknown writes are placed only when something needs them


def test_lost_operations_that_cancel_out_are_not_explored_again() -> None:
    # Lost creates and deletes: create-delete pairs lead back to the absent znode with
    # fewer lost operations left to use, a configuration dominated by the initial one.
    creates = [create(c, 0, None, bytes([65 + c])) for c in range(6)]
    deletes = [delete(10 + c, 0, None, ANY_VERSION) for c in range(6)]
    history = [*creates, *deletes, read(20, 50, 51, b"never", 9)]
    result = check_history(history, initial_states={PATH: None})
    assert result.verdict == Verdict.NOT_LINEARIZABLE
    # One configuration per lost create (the znode holding its value); everything else
    # is dominated. Without dominance there are hundreds.
    assert result.paths[0].configurations == 6


def test_the_search_stops_at_its_budget_with_an_unknown_verdict() -> None:
    history = _lost_writes_then_a_bad_read(10)
    result = check_history(history, initial_states=START, steps_max=500)
    assert result.verdict == Verdict.UNKNOWN
    # It may overshoot by one scan for candidates and one for dominance.
    assert 500 <= result.paths[0].steps <= 500 + len(history) + DOMINANCE_SCAN_MAX
    assert "search budget exhausted" in result.explain()
    result = check_history(history, initial_states=START, configurations_max=100)
    assert result.verdict == Verdict.UNKNOWN
    assert result.paths[0].configurations == 100
    # The memo's memory: each entry costs more on a longer path.
    sequential = [write(1, 2 * i, 2 * i + 1, b"a", i, i + 1) for i in range(2_000)]
    assert check_history(sequential, initial_states=START).ok
    result = check_history(sequential, initial_states=START, memo_size_max=200_000)
    assert result.verdict == Verdict.UNKNOWN
    assert result.paths[0].configurations == 200_000 // (MEMO_ENTRY_SIZE + 2 * 2_000 // 8)


def test_a_not_linearizable_path_beats_an_undecided_one() -> None:
    history = [
        write(1, 0, 10, b"a", 0, 1, path="/a"),
        read(2, 11, 12, b"", 0, path="/a"),
        *[replace(op, path="/b") for op in _lost_writes_then_a_bad_read(10)],
    ]
    result = check_history(history, initial_states={"/a": V0, "/b": V0}, steps_max=300)
    assert [p.verdict for p in result.paths] == [Verdict.NOT_LINEARIZABLE, Verdict.UNKNOWN]
    assert result.verdict == Verdict.NOT_LINEARIZABLE


def test_a_stale_read_may_miss_other_sessions_writes_but_not_its_own() -> None:
    other = write(1, 0, 10, b"a", 0, 1)
    assert verdict([other, read(2, 11, 12, b"", 0, stale=True)]) == Verdict.LINEARIZABLE
    assert verdict([other, read(2, 11, 12, b"", 0)]) == Verdict.NOT_LINEARIZABLE
    own = write(2, 0, 10, b"a", 0, 1)
    assert verdict([own, read(2, 11, 12, b"", 0, stale=True)]) == Verdict.NOT_LINEARIZABLE
    # Nor go back behind what the session read before (a lagging replica after a fresh one).
    history = [other, read(2, 11, 12, b"a", 1, stale=True), read(2, 13, 14, b"", 0, stale=True)]
    assert verdict(history) == Verdict.NOT_LINEARIZABLE
    # Nor see a write called after it returned, nor a state that never was.
    late = [read(2, 0, 1, b"a", 1, stale=True), write(1, 2, 3, b"a", 0, 1)]
    assert verdict(late) == Verdict.NOT_LINEARIZABLE
    assert verdict([other, read(2, 11, 12, b"a", 0, stale=True)]) == Verdict.NOT_LINEARIZABLE


def test_a_stale_read_is_ordered_after_its_sessions_earlier_reads_and_writes() -> None:
    # Client 2 saw v2; a stale read may show v2 or later, not v1, though v1 was current
    # during the read's whole interval for a client that had not seen v2.
    history = [
        write(1, 0, 1, b"a", 0, 1),
        write(1, 2, 3, b"b", 1, 2),
        read(2, 4, 5, b"b", 2),
        write(1, 6, 7, b"c", 2, 3),
        read(2, 8, 9, b"b", 2, stale=True),
        read(2, 10, 11, b"c", 3, stale=True),
        read(3, 12, 13, b"a", 1, stale=True),  # a session that saw nothing yet
    ]
    assert verdict(history) == Verdict.LINEARIZABLE
    back = [*history[:4], read(2, 8, 9, b"a", 1, stale=True)]
    result = check_history(back, initial_states=START)
    assert result.verdict == Verdict.NOT_LINEARIZABLE
    assert "read(stale ok) -> (b'a', v1)" in result.explain()


def test_the_recorder_builds_the_history_a_simulation_saw() -> None:
    recorder = HistoryRecorder()
    first = recorder.call(
        client_id=1, path=PATH, kind=OpKind.WRITE, now_ms=0, value=b"a", expected_version=0
    )
    second = recorder.call(client_id=2, path=PATH, kind=OpKind.READ, now_ms=1)
    lost = recorder.call(client_id=3, path=PATH, kind=OpKind.WRITE, now_ms=2, value=b"z")
    recorder.returned(second, Reply(value=b"a", version=1), now_ms=3)
    recorder.returned(first, Reply(version=1), now_ms=4)
    history = recorder.history()
    assert [op.return_ms for op in history] == [4, 3, None]
    assert history[lost].reply is None
    assert check_history(history, initial_states=START).ok
    with pytest.raises(ValueError, match="second reply"):
        recorder.returned(first, Reply(version=1), now_ms=5)
    with pytest.raises(ValueError, match="wrong reply shape"):
        recorder.returned(lost, Reply(), now_ms=5)


def test_session_order_keeps_a_pipelined_read_from_seeing_a_later_write() -> None:
    # Client 1 pipelines a read and then a write; they overlap, so linearizability lets
    # the read see the write, but ZooKeeper answers a session's requests in order.
    history = [read(1, 0, 10, b"a", 1), write(1, 1, 9, b"a", 0, 1)]
    assert check_history(history, initial_states=START).ok
    result = check_history(history, initial_states=START, session_order=True)
    assert result.verdict == Verdict.NOT_LINEARIZABLE
    # Other sessions are not ordered with it.
    other = [read(2, 0, 10, b"a", 1), write(1, 1, 9, b"a", 0, 1)]
    assert check_history(other, initial_states=START, session_order=True).ok


def test_bad_histories_are_refused() -> None:
    with pytest.raises(ValueError, match="before its call"):
        read(1, 5, 4, b"", 0)
    with pytest.raises(ValueError, match="both be set"):
        Operation(client_id=1, path=PATH, kind=OpKind.READ, call_ms=0, return_ms=1, reply=None)
    with pytest.raises(ValueError, match="wrong reply shape"):
        read(1, 0, 1, b"a")  # a read reply without a version
    with pytest.raises(ValueError, match="wrong reply shape"):
        write(1, 0, 1, b"a", 0)  # a successful write without its new version
    with pytest.raises(ValueError, match="carries no value"):
        Operation(
            client_id=1,
            path=PATH,
            kind=OpKind.READ,
            call_ms=0,
            return_ms=1,
            reply=Reply(error=ErrorCode.NO_NODE, version=1),
        )
    with pytest.raises(ValueError, match="no expected version"):
        Operation(
            client_id=1,
            path=PATH,
            kind=OpKind.READ,
            call_ms=0,
            return_ms=1,
            reply=Reply(value=b"", version=0),
            expected_version=3,
        )
    with pytest.raises(ValueError, match="only a read may be stale"):
        Operation(
            client_id=1,
            path=PATH,
            kind=OpKind.DELETE,
            call_ms=0,
            return_ms=None,
            reply=None,
            may_be_stale=True,
        )
    with pytest.raises(ValueError, match="int32"):
        RegisterState(value=b"", version=VERSION_MAX + 1)
    too_many = [read(1, 0, None)] * (HISTORY_OPERATIONS_MAX + 1)
    with pytest.raises(ValueError, match="max"):
        check_history(too_many)


# -- generated histories ------------------------------------------------------------------

VALUES = (b"a", b"b", b"c")


class _Draw:
    """The choices of one schedule, from hypothesis or from a random.Random(seed)."""

    def __init__(self, data: st.DataObject | None = None, rng: random.Random | None = None):
        self._data = data
        self._rng = rng

    def integer(self, low: int, high: int) -> int:
        if self._data is not None:
            return self._data.draw(st.integers(low, high))
        assert self._rng is not None
        return self._rng.randint(low, high)

    def pick(self, options: Sequence[object]) -> int:
        return self.integer(0, len(options) - 1)


def run_schedule(
    draw: _Draw,
    *,
    clients: int,
    operations_max: int,
    start: RegisterState | None,
    kinds: Sequence[OpKind] = (OpKind.READ, OpKind.WRITE),
    loss_odds: int = 1,
    stale_reads: bool = False,
) -> list[Operation]:
    """Clients call operations, the znode applies them one at a time at some moment
    between call and return, replies come back later or never: linearizable by
    construction. A reply is lost about once in `loss_odds + 1` actions while one is
    pending. With `stale_reads`, a read may be answered from any state since the last one
    its session saw or made (a lagging replica), and is marked so."""
    znode = znode_from(start)
    states = [replace(znode)]
    seen = [0] * clients  # per client: the latest state (index in states) it saw or made
    # per client: the pending operation, and its reply once applied (None: not yet)
    pending: dict[int, tuple[Operation, Reply | None]] = {}
    done: list[Operation] = []
    now_ms = 0
    called = 0
    for _ in range(20 * operations_max + 20):  # a bound; every action makes progress
        idle = [c for c in range(clients) if c not in pending]
        actions: list[str] = []
        if idle and called < operations_max:
            actions.append("call")
        if any(reply is None for _, reply in pending.values()):
            actions.append("apply")
        if any(reply is not None for _, reply in pending.values()):
            actions.append("return")
        if not actions and not pending:
            break
        if pending and (not actions or draw.integer(0, loss_odds) == 0):
            action = "lose"
        else:
            action = actions[draw.pick(actions)]
        now_ms += draw.integer(0, 1)  # equal times happen: calls and returns at one instant
        if action == "call":
            client = idle[draw.pick(idle)]
            kind = kinds[draw.pick(kinds)]
            value = VALUES[draw.pick(VALUES)] if kind in (OpKind.WRITE, OpKind.CREATE) else b""
            expected = draw.integer(-1, 3) if kind in (OpKind.WRITE, OpKind.DELETE) else ANY_VERSION
            operation = Operation(
                client_id=client,
                path=PATH,
                kind=kind,
                call_ms=now_ms,
                return_ms=None,
                reply=None,
                value=value,
                expected_version=expected,
                may_be_stale=stale_reads and kind == OpKind.READ and draw.integer(0, 1) == 1,
            )
            pending[client] = (operation, None)
            called += 1
        elif action == "apply":
            waiting = [c for c, (_, reply) in pending.items() if reply is None]
            client = waiting[draw.pick(waiting)]
            operation, _ = pending[client]
            if operation.may_be_stale:
                seen[client] = draw.integer(seen[client], len(states) - 1)
                pending[client] = (operation, replace(states[seen[client]]).run(operation))
            else:
                pending[client] = (operation, znode.run(operation))
                states.append(replace(znode))
                seen[client] = len(states) - 1
        elif action == "return":
            ready = [c for c, (_, reply) in pending.items() if reply is not None]
            client = ready[draw.pick(ready)]
            operation, reply = pending.pop(client)
            done.append(replace(operation, return_ms=now_ms, reply=reply))
        else:
            # The reply is lost (applied or not): no reply, or a connection-loss error.
            clients_pending = sorted(pending)
            client = clients_pending[draw.pick(clients_pending)]
            operation, _ = pending.pop(client)
            if draw.integer(0, 1):
                lost = Reply(error=ErrorCode.CONNECTION_LOSS)
                done.append(replace(operation, return_ms=now_ms, reply=lost))
            else:
                done.append(operation)
    assert not pending
    done.sort(key=lambda op: op.call_ms)
    return done


def corrupt(
    draw: _Draw, history: list[Operation], *, reads_only: bool = False
) -> list[Operation] | None:
    """The history with one definite reply changed, or None if there is none to change."""
    candidates = [
        i
        for i, op in enumerate(history)
        if op.reply is not None
        and op.return_ms is not None
        and op.reply.error in (OK, ErrorCode.NO_NODE, ErrorCode.BAD_VERSION, ErrorCode.NODE_EXISTS)
        and (op.kind == OpKind.READ or not reads_only)
    ]
    if not candidates:
        return None
    index = candidates[draw.pick(candidates)]
    operation = history[index]
    assert operation.reply is not None
    if operation.kind == OpKind.READ:
        options = [
            Reply(value=value, version=version) for value in (b"", *VALUES) for version in range(4)
        ] + [Reply(error=ErrorCode.NO_NODE)]
    elif operation.kind == OpKind.WRITE:
        options = [Reply(version=v) for v in range(1, 5)] + [
            Reply(error=ErrorCode.BAD_VERSION),
            Reply(error=ErrorCode.NO_NODE),
        ]
    elif operation.kind == OpKind.CREATE:
        options = [Reply(), Reply(error=ErrorCode.NODE_EXISTS)]
    else:
        options = [Reply(), Reply(error=ErrorCode.NO_NODE), Reply(error=ErrorCode.BAD_VERSION)]
    options = [o for o in options if o != operation.reply]
    bad = options[draw.pick(options)]
    return [*history[:index], replace(operation, reply=bad), *history[index + 1 :]]


ALL_KINDS = (OpKind.READ, OpKind.WRITE, OpKind.CREATE, OpKind.DELETE)
STARTS: tuple[RegisterState | None, ...] = (V0, RegisterState(value=b"a", version=2), None)
QUICK = settings(
    max_examples=300, deadline=None, print_blob=True, suppress_health_check=[HealthCheck.too_slow]
)


@settings(max_examples=300, deadline=None)
@given(seed=st.integers(0, 2**32 - 1))
def test_histories_of_a_sequential_znode_are_linearizable(seed: int) -> None:
    # Drawn from a seed rather than by hypothesis, which is 30 times slower at 40 ops.
    rng = random.Random(seed)
    draw = _Draw(rng=rng)
    start = STARTS[draw.pick(STARTS)]
    kinds = (OpKind.READ, OpKind.WRITE) if draw.integer(0, 1) else ALL_KINDS
    history = run_schedule(
        draw,
        clients=draw.integer(1, 6),
        operations_max=draw.integer(0, 60),
        start=start,
        kinds=kinds,
        loss_odds=draw.integer(1, 10),
        stale_reads=draw.integer(0, 1) == 1,
    )
    # One operation per client at a time: the session order holds by construction too.
    session_order = draw.integer(0, 1) == 1
    result = check_history(history, initial_states={PATH: start}, session_order=session_order)
    assert result.verdict == Verdict.LINEARIZABLE, f"seed {seed}: {result.explain()}"


@QUICK
@given(data=st.data())
def test_one_corrupted_reply_is_caught_unless_another_order_explains_it(
    data: st.DataObject,
) -> None:
    draw = _Draw(data=data)
    start = STARTS[draw.pick(STARTS)]
    kinds = (OpKind.READ, OpKind.WRITE) if draw.integer(0, 1) else ALL_KINDS
    history = run_schedule(
        draw,
        clients=draw.integer(1, 3),
        operations_max=draw.integer(1, 6),
        start=start,
        kinds=kinds,
        stale_reads=draw.integer(0, 1) == 1,
    )
    assert brute_force_linearizable(history, start)  # the reference agrees with construction
    corrupted = corrupt(draw, history, reads_only=draw.integer(0, 1) == 1)
    if corrupted is not None:
        assert_agrees_with_brute_force(corrupted, start, session_order=draw.integer(0, 1) == 1)


@st.composite
def arbitrary_operations(draw: st.DrawFn) -> Operation:
    """Any well-formed operation with any plausible reply: mostly not linearizable."""
    kind = draw(st.sampled_from(ALL_KINDS))
    call_ms = draw(st.integers(0, 8))
    answered = draw(st.integers(0, 4)) > 0
    return_ms = call_ms + draw(st.integers(0, 8)) if answered else None
    error = draw(
        st.sampled_from(
            [
                OK,
                OK,
                OK,
                ErrorCode.NO_NODE,
                ErrorCode.BAD_VERSION,
                ErrorCode.NODE_EXISTS,
                ErrorCode.CONNECTION_LOSS,
                ErrorCode.NO_AUTH,
            ]
        )
    )
    value = draw(st.sampled_from((b"", b"a", b"b")))
    version = draw(st.integers(0, 3))
    if return_ms is None:
        reply = None
    elif error != OK:
        reply = Reply(error=error)
    elif kind == OpKind.READ:
        reply = Reply(value=value, version=version)
    elif kind == OpKind.WRITE:
        reply = Reply(version=version)
    else:
        reply = Reply()
    return Operation(
        client_id=draw(st.integers(0, 3)),
        path=PATH,
        kind=kind,
        call_ms=call_ms,
        return_ms=return_ms,
        reply=reply,
        value=value if kind in (OpKind.WRITE, OpKind.CREATE) else b"",
        expected_version=(
            draw(st.integers(-1, 2)) if kind in (OpKind.WRITE, OpKind.DELETE) else ANY_VERSION
        ),
        may_be_stale=kind == OpKind.READ and draw(st.booleans()),
    )


@QUICK
@given(
    history=st.lists(arbitrary_operations(), max_size=6),
    start=st.sampled_from(STARTS),
    session_order=st.booleans(),
)
def test_arbitrary_small_histories_agree_with_the_brute_force_checker(
    history: list[Operation], start: RegisterState | None, session_order: bool
) -> None:
    assert_agrees_with_brute_force(history, start, session_order=session_order)


@pytest.mark.parametrize(
    ("kinds", "loss_odds"),
    [((OpKind.READ, OpKind.WRITE), 10), (ALL_KINDS, 100)],
    ids=["read-write-25%-lost", "all-kinds-3%-lost"],
)
@pytest.mark.parametrize("seed", range(3))
def test_long_histories_of_many_clients_are_decided(
    seed: int, kinds: Sequence[OpKind], loss_odds: int
) -> None:
    draw = _Draw(rng=random.Random(seed))
    history = run_schedule(
        draw, clients=8, operations_max=600, start=V0, kinds=kinds, loss_odds=loss_odds
    )
    reproduce = f"seed {seed}, kinds {kinds}, loss_odds {loss_odds}"
    result = check_history(history, initial_states=START)
    assert result.verdict == Verdict.LINEARIZABLE, f"{reproduce}: {result.explain()}"
    bad = corrupt(draw, history)
    assert bad is not None
    # Too long for the brute force; a corrupted reply may even be explained by lost
    # writes, but the search must come to a verdict within its budget.
    assert check_history(bad, initial_states=START).verdict != Verdict.UNKNOWN, reproduce


MANY = settings(max_examples=5_000, deadline=None, print_blob=True)


@pytest.mark.slow
@MANY
@given(
    history=st.lists(arbitrary_operations(), max_size=7),
    start=st.sampled_from(STARTS),
    session_order=st.booleans(),
)
def test_many_arbitrary_small_histories_agree_with_the_brute_force_checker(
    history: list[Operation], start: RegisterState | None, session_order: bool
) -> None:
    assert_agrees_with_brute_force(history, start, session_order=session_order)


@pytest.mark.slow
@MANY
@given(seed=st.integers(0, 2**32 - 1))
def test_many_corrupted_schedules_agree_with_the_brute_force_checker(seed: int) -> None:
    draw = _Draw(rng=random.Random(seed))
    start = STARTS[draw.pick(STARTS)]
    history = run_schedule(
        draw,
        clients=draw.integer(1, 4),
        operations_max=draw.integer(1, 7),
        start=start,
        kinds=ALL_KINDS if draw.integer(0, 1) else (OpKind.READ, OpKind.WRITE),
        loss_odds=draw.integer(1, 4),
        stale_reads=draw.integer(0, 1) == 1,
    )
    corrupted = corrupt(draw, history, reads_only=draw.integer(0, 1) == 1)
    if corrupted is not None:
        assert_agrees_with_brute_force(
            corrupted, start, f"seed {seed}: ", session_order=draw.integer(0, 1) == 1
        )
