"""ExpiryTracker: tick-bucketed deadlines (server-semantics §8.5), explicit now_ms values."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from corral.replica.expiry import ExpiryTracker


def test_deadline_is_rounded_up_to_the_next_tick_boundary() -> None:
    tracker = ExpiryTracker(tick_ms=2_000)
    tracker.touch(1, timeout_ms=4_000, now_ms=10_500)
    # floor(14_500 / 2_000) = 7 -> (7 + 1) * 2_000
    assert tracker.deadline_ms(1) == 16_000
    tracker.touch(2, timeout_ms=4_000, now_ms=10_000)
    # An exact boundary still moves one tick further: floor(14_000 / 2_000) + 1 = 8.
    assert tracker.deadline_ms(2) == 16_000
    assert tracker.next_deadline_ms() == 16_000
    assert len(tracker) == 2


def test_session_expires_between_timeout_and_timeout_plus_tick_after_last_touch() -> None:
    # §8.5's observation: a 4000 ms session, tick 2000, last packet at t=500.
    tracker = ExpiryTracker(tick_ms=2_000)
    tracker.touch(7, timeout_ms=4_000, now_ms=500)
    assert tracker.deadline_ms(7) == 6_000
    assert tracker.expired(now_ms=4_500) == []
    assert tracker.expired(now_ms=5_999) == []
    assert tracker.expired(now_ms=6_000) == [7]
    assert tracker.deadline_ms(7) is None
    assert len(tracker) == 0
    assert tracker.next_deadline_ms() is None
    assert tracker.expired(now_ms=100_000) == []


def test_touch_moves_the_session_to_a_later_bucket() -> None:
    tracker = ExpiryTracker(tick_ms=1_000)
    tracker.touch(1, timeout_ms=3_000, now_ms=0)
    assert tracker.deadline_ms(1) == 4_000
    for now_ms in range(1_000, 9_000, 1_000):  # a ping every second keeps it alive
        assert tracker.expired(now_ms) == []
        tracker.touch(1, timeout_ms=3_000, now_ms=now_ms)
    assert tracker.deadline_ms(1) == 12_000
    assert tracker.next_deadline_ms() == 12_000
    assert tracker.expired(now_ms=11_999) == []
    assert tracker.expired(now_ms=12_000) == [1]


def test_expired_orders_by_deadline_then_session_id() -> None:
    tracker = ExpiryTracker(tick_ms=100)
    tracker.touch(30, timeout_ms=250, now_ms=0)  # deadline 300
    tracker.touch(20, timeout_ms=150, now_ms=0)  # deadline 200
    tracker.touch(10, timeout_ms=250, now_ms=0)  # deadline 300
    tracker.touch(5, timeout_ms=450, now_ms=0)  # deadline 500
    assert tracker.expired(now_ms=450) == [20, 10, 30]
    assert tracker.next_deadline_ms() == 500
    assert len(tracker) == 1


def test_remove_forgets_the_session_and_empties_its_bucket() -> None:
    tracker = ExpiryTracker(tick_ms=100)
    tracker.touch(1, timeout_ms=100, now_ms=0)  # 200
    tracker.touch(2, timeout_ms=300, now_ms=0)  # 400
    tracker.remove(1)
    tracker.remove(99)  # unknown ids are ignored
    assert tracker.deadline_ms(1) is None
    assert tracker.next_deadline_ms() == 400
    assert tracker.expired(now_ms=1_000) == [2]


def test_bucket_recreated_after_emptying_is_not_reported_twice() -> None:
    tracker = ExpiryTracker(tick_ms=100)
    tracker.touch(1, timeout_ms=100, now_ms=0)  # 200
    tracker.remove(1)
    tracker.touch(2, timeout_ms=100, now_ms=50)  # 200 again
    tracker.touch(3, timeout_ms=100, now_ms=0)  # 200
    assert tracker.next_deadline_ms() == 200
    assert tracker.expired(now_ms=200) == [2, 3]
    assert tracker.expired(now_ms=200) == []
    assert tracker.next_deadline_ms() is None


def test_touch_may_move_a_session_to_an_earlier_bucket() -> None:
    # A renegotiated (smaller) timeout takes effect at the next touch.
    tracker = ExpiryTracker(tick_ms=100)
    tracker.touch(1, timeout_ms=1_000, now_ms=0)
    tracker.touch(1, timeout_ms=100, now_ms=10)
    assert tracker.deadline_ms(1) == 200
    assert tracker.expired(now_ms=200) == [1]


_operations = st.lists(
    st.tuples(
        st.sampled_from(["touch", "remove", "expire"]),
        st.integers(min_value=1, max_value=6),  # session id
        st.integers(min_value=1, max_value=5_000),  # timeout_ms
        st.integers(min_value=0, max_value=3_000),  # time step ms
    ),
    max_size=60,
)


@settings(max_examples=200, deadline=None, print_blob=True)
@given(tick_ms=st.integers(min_value=1, max_value=2_000), operations=_operations)
def test_tracker_matches_a_dictionary_model(
    tick_ms: int, operations: list[tuple[str, int, int, int]]
) -> None:
    tracker = ExpiryTracker(tick_ms=tick_ms)
    model: dict[int, int] = {}
    now_ms = 0
    for action, session_id, timeout_ms, step_ms in operations:
        now_ms += step_ms
        if action == "touch":
            tracker.touch(session_id, timeout_ms=timeout_ms, now_ms=now_ms)
            model[session_id] = ((now_ms + timeout_ms) // tick_ms + 1) * tick_ms
        elif action == "remove":
            tracker.remove(session_id)
            model.pop(session_id, None)
        else:
            due = sorted((deadline, sid) for sid, deadline in model.items() if deadline <= now_ms)
            assert tracker.expired(now_ms) == [sid for _, sid in due]
            for _, sid in due:
                del model[sid]
        assert len(tracker) == len(model)
        assert tracker.next_deadline_ms() == min(model.values(), default=None)
        for sid in range(1, 7):
            assert tracker.deadline_ms(sid) == model.get(sid)
