"""The retry policy for calls that fail with ConnectionLoss.

Rules: only idempotent calls are retried (the client decides which); a write that was
in flight when the connection broke may have been applied, so it is never repeated.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True, kw_only=True)
class RetryPolicy:
    """How idempotent calls are retried after ConnectionLoss (writes never are)."""

    tries_max: int = 5
    backoff_initial_s: float = 0.05
    backoff_max_s: float = 1.0

    def __post_init__(self) -> None:
        if self.tries_max < 1:
            raise ValueError("tries_max must be >= 1")

    def backoff_s(self, attempt: int) -> float:
        return float(min(self.backoff_max_s, self.backoff_initial_s * (2**attempt)))


NO_RETRY = RetryPolicy(tries_max=1)
