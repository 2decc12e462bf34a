"""Tick-bucketed session expiry (server-semantics §8.5), sans-IO.

Rules:
* A touch sets a session's deadline to `(floor((now + timeout) / tick) + 1) * tick`, so
  every deadline is a multiple of `tick_ms` and sessions expire in buckets: one wake-up per
  tick boundary handles all of them, and a session lives between `timeout` and
  `timeout + tick` after its last touch, as in ZooKeeper.
* `expired(now_ms)` removes and returns every session whose deadline is <= now, ordered by
  deadline, then by session id (a pure function of the tracked state, not of touch history).
* Time is an argument (`now_ms`, monotonic milliseconds); this module never reads a clock.
* The tracker only knows ids and deadlines; closing a session (a txn through the log) is
  the caller's job. The replica bounds how many sessions exist, so nothing is bounded here.
"""

from __future__ import annotations

import heapq


class ExpiryTracker:
    """Session deadlines grouped in buckets of `tick_ms`."""

    def __init__(self, tick_ms: int) -> None:
        assert tick_ms > 0, tick_ms
        self._tick_ms = tick_ms
        self._deadline_by_session: dict[int, int] = {}
        self._sessions_by_deadline: dict[int, set[int]] = {}
        # Bucket deadlines, lazily cleaned: an entry whose bucket is gone is skipped.
        self._deadlines_heap: list[int] = []

    @property
    def tick_ms(self) -> int:
        return self._tick_ms

    def __len__(self) -> int:
        return len(self._deadline_by_session)

    def __contains__(self, session_id: object) -> bool:
        return session_id in self._deadline_by_session

    def touch(self, session_id: int, timeout_ms: int, now_ms: int) -> None:
        """Start tracking `session_id`, or push its deadline to `now + timeout` (bucketed)."""
        assert timeout_ms > 0, timeout_ms
        assert now_ms >= 0, now_ms
        deadline_ms = ((now_ms + timeout_ms) // self._tick_ms + 1) * self._tick_ms
        previous_ms = self._deadline_by_session.get(session_id)
        if previous_ms == deadline_ms:
            return
        if previous_ms is not None:
            self._leave_bucket(session_id, previous_ms)
        self._deadline_by_session[session_id] = deadline_ms
        bucket = self._sessions_by_deadline.get(deadline_ms)
        if bucket is None:
            bucket = self._sessions_by_deadline[deadline_ms] = set()
            heapq.heappush(self._deadlines_heap, deadline_ms)
        bucket.add(session_id)

    def remove(self, session_id: int) -> None:
        """Stop tracking `session_id` (closed or expired); unknown ids are ignored."""
        deadline_ms = self._deadline_by_session.pop(session_id, None)
        if deadline_ms is not None:
            self._leave_bucket(session_id, deadline_ms)

    def expired(self, now_ms: int) -> list[int]:
        """Remove and return the sessions whose deadline is <= `now_ms`."""
        result: list[int] = []
        while True:
            deadline_ms = self._first_deadline_ms()
            if deadline_ms is None or deadline_ms > now_ms:
                break
            heapq.heappop(self._deadlines_heap)
            bucket = self._sessions_by_deadline.pop(deadline_ms)
            for session_id in sorted(bucket):
                del self._deadline_by_session[session_id]
                result.append(session_id)
        return result

    def next_deadline_ms(self) -> int | None:
        """The earliest deadline of any tracked session (when to call `expired` next)."""
        return self._first_deadline_ms()

    def deadline_ms(self, session_id: int) -> int | None:
        return self._deadline_by_session.get(session_id)

    def _leave_bucket(self, session_id: int, deadline_ms: int) -> None:
        bucket = self._sessions_by_deadline[deadline_ms]
        bucket.remove(session_id)
        if not bucket:
            # The heap entry stays; _first_deadline_ms skips it.
            del self._sessions_by_deadline[deadline_ms]

    def _first_deadline_ms(self) -> int | None:
        heap = self._deadlines_heap
        while heap and heap[0] not in self._sessions_by_deadline:
            heapq.heappop(heap)
        if not heap:
            return None
        assert self._sessions_by_deadline[heap[0]], heap[0]
        return heap[0]
