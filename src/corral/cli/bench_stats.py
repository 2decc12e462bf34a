"""Numbers for `corral bench`: percentiles, latency samples, /proc readings, formatting,
and the number types of its arguments.

Rules: pure functions and small records, no asyncio, no sockets. Percentiles use the
nearest-rank definition on integer per-mille ranks, so p99.9 of 1,000 samples is the
999th smallest, exactly, with no float rounding at the boundary. Latency samples are
nanoseconds (int) until they are summarised; summaries are milliseconds (float).
A process's CPU and RSS come from /proc/<pid>/stat and /proc/<pid>/status: on a
system without /proc, or for a pid that is gone, readings are None, never a guess.
"""

from __future__ import annotations

import argparse
import math
import os
import random
from array import array
from dataclasses import dataclass
from pathlib import Path

NS_PER_MS = 1_000_000
BYTES_PER_MB = 1_048_576

# Per-mille ranks reported for every workload: p50, p99, p99.9.
P50_PERMILLE = 500
P99_PERMILLE = 990
P999_PERMILLE = 999


def percentile(sorted_values: list[int], permille: int) -> int:
    """The nearest-rank percentile: the smallest value with at least permille/1000 of
    the samples at or below it. `sorted_values` must be sorted and non-empty."""
    assert sorted_values, "percentile of no samples"
    assert 0 < permille <= 1000, permille
    rank = -(-permille * len(sorted_values) // 1000)  # ceil without floats
    return sorted_values[rank - 1]


@dataclass(frozen=True, slots=True, kw_only=True)
class LatencySummary:
    count: int  # samples summarised (may be fewer than operations: see Reservoir)
    p50_ms: float
    p99_ms: float
    p999_ms: float
    mean_ms: float
    max_ms: float


def summarize(samples_ns: list[int] | array[int]) -> LatencySummary | None:
    if not samples_ns:
        return None
    ordered = sorted(samples_ns)
    return LatencySummary(
        count=len(ordered),
        p50_ms=percentile(ordered, P50_PERMILLE) / NS_PER_MS,
        p99_ms=percentile(ordered, P99_PERMILLE) / NS_PER_MS,
        p999_ms=percentile(ordered, P999_PERMILLE) / NS_PER_MS,
        mean_ms=sum(ordered) / len(ordered) / NS_PER_MS,
        max_ms=ordered[-1] / NS_PER_MS,
    )


class Reservoir:
    """Latency samples with a memory bound: the first `samples_max` are all kept, later
    ones replace a uniformly chosen slot (Vitter's algorithm R), so the kept set stays a
    uniform sample of everything offered. Seeded: two runs keep the same slots."""

    __slots__ = ("_offered", "_random", "samples_max", "samples_ns")

    def __init__(self, samples_max: int, seed: int) -> None:
        assert samples_max > 0, samples_max
        self.samples_max = samples_max
        self.samples_ns: array[int] = array("q")
        self._offered = 0
        self._random = random.Random(seed)

    @property
    def offered_count(self) -> int:
        return self._offered

    def add(self, sample_ns: int) -> None:
        self._offered += 1
        if len(self.samples_ns) < self.samples_max:
            self.samples_ns.append(sample_ns)
            return
        slot = self._random.randrange(self._offered)
        if slot < self.samples_max:
            self.samples_ns[slot] = sample_ns


# --------------------------------------------------------------------------- /proc


@dataclass(frozen=True, slots=True, kw_only=True)
class ProcessSample:
    cpu_s: float  # user + system CPU time of every thread, since the process started
    rss_bytes: int
    # Bytes the process caused to be written to storage (/proc/<pid>/io write_bytes),
    # None where unreadable. Shows whether a server persists at all; not fsync itself.
    disk_write_bytes: int | None


def read_process(pid: int, proc_root: Path = Path("/proc")) -> ProcessSample | None:
    """CPU time and resident memory of `pid`, or None if they cannot be read."""
    try:
        stat_text = (proc_root / str(pid) / "stat").read_text()
        status_text = (proc_root / str(pid) / "status").read_text()
    except OSError:
        return None
    try:
        io_text: str | None = (proc_root / str(pid) / "io").read_text()
    except OSError:  # another user's process: /proc/<pid>/io needs ptrace rights
        io_text = None
    cpu_s = parse_stat_cpu_s(stat_text)
    rss_bytes = parse_status_rss_bytes(status_text)
    if cpu_s is None or rss_bytes is None:
        return None
    disk_write_bytes = None if io_text is None else parse_io_write_bytes(io_text)
    return ProcessSample(cpu_s=cpu_s, rss_bytes=rss_bytes, disk_write_bytes=disk_write_bytes)


def parse_stat_cpu_s(stat_text: str, ticks_per_s: int | None = None) -> float | None:
    """utime + stime from /proc/<pid>/stat (fields 14 and 15, in clock ticks).

    The command name (field 2) is in parentheses and may itself hold spaces and
    parentheses, so fields are counted from the last ')'."""
    close = stat_text.rfind(")")
    if close < 0:
        return None
    fields = stat_text[close + 1 :].split()
    # After ')' the first field is field 3 (state): utime is field 14, stime field 15.
    if len(fields) < 13:
        return None
    try:
        ticks = int(fields[11]) + int(fields[12])
    except ValueError:
        return None
    if ticks_per_s is None:
        ticks_per_s = os.sysconf("SC_CLK_TCK")
    return ticks / ticks_per_s


def parse_status_rss_bytes(status_text: str) -> int | None:
    """VmRSS from /proc/<pid>/status ("VmRSS:   12345 kB")."""
    for line in status_text.splitlines():
        if line.startswith("VmRSS:"):
            parts = line.split()
            if len(parts) >= 3 and parts[2] == "kB" and parts[1].isdigit():
                return int(parts[1]) * 1024
            return None
    return None


def parse_io_write_bytes(io_text: str) -> int | None:
    """write_bytes from /proc/<pid>/io ("write_bytes: 4096")."""
    for line in io_text.splitlines():
        name, _, value = line.partition(":")
        if name == "write_bytes":
            value = value.strip()
            return int(value) if value.isdigit() else None
    return None


# --------------------------------------------------------------------------- formatting


def format_count(value: float | None) -> str:
    """A count, rate or size: thousands separators; one decimal only below 100 and
    only when the value is not a whole number."""
    if value is None or math.isnan(value):
        return "-"
    if value >= 100 or float(value).is_integer():
        return f"{value:,.0f}"
    return f"{value:.1f}"


def format_ms(value: float | None) -> str:
    """A latency in milliseconds with three significant digits."""
    if value is None or math.isnan(value):
        return "-"
    if value >= 100:
        return f"{value:,.0f}"
    if value >= 10:
        return f"{value:.1f}"
    if value >= 1:
        return f"{value:.2f}"
    return f"{value:.3f}"


def format_ratio(numerator: float | None, denominator: float | None) -> str:
    value = ratio(numerator, denominator)
    if value is None:
        return "-"
    return f"{value:.2f}x"


def ratio(numerator: float | None, denominator: float | None) -> float | None:
    """numerator / denominator, or None when either is unknown or the denominator is 0."""
    if numerator is None or denominator is None or denominator == 0:
        return None
    if math.isnan(numerator) or math.isnan(denominator):
        return None
    return numerator / denominator


def render_table(header: list[str], rows: list[list[str]], left_columns: int = 1) -> str:
    """A plain-text table: the first `left_columns` columns (names) left-aligned, the
    others (figures) right-aligned."""
    assert 1 <= left_columns <= len(header), left_columns
    widths = [len(cell) for cell in header]
    for row in rows:
        assert len(row) == len(header), (row, header)
        widths = [max(width, len(cell)) for width, cell in zip(widths, row, strict=True)]

    def line(cells: list[str]) -> str:
        parts = [
            cell.ljust(width) if index < left_columns else cell.rjust(width)
            for index, (cell, width) in enumerate(zip(cells, widths, strict=True))
        ]
        return "  ".join(parts).rstrip()

    separator = "  ".join("-" * width for width in widths)
    return "\n".join([line(header), separator, *(line(row) for row in rows)])


def positive_int(text: str) -> int:
    """An argparse type: an integer above zero."""
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text} is not a positive integer")
    return value


def positive_float(text: str) -> float:
    """An argparse type: a number above zero."""
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"{text} is not a positive number")
    return value
