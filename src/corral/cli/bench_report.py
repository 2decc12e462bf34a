"""What `corral bench` reports: result records, the text table, JSON and the HTML chart.

Rules: pure functions of the results (no IO but what the caller passes in); every
figure is kept as measured, ratios are always `second target / first target` (with
--compare: corral / ZooKeeper), and an unknown figure is None, shown as "-", never 0.
The HTML page is self-contained (inline CSS and SVG, no script, no external asset):
one bar group per workload, each group scaled to its own largest value, because the
workloads' figures span orders of magnitude.
"""

from __future__ import annotations

import html
from dataclasses import asdict, dataclass, field
from typing import Any

from corral.cli.bench_load import WORKLOADS
from corral.cli.bench_stats import (
    BYTES_PER_MB,
    LatencySummary,
    format_count,
    format_ms,
    format_ratio,
    ratio,
    render_table,
)

REPORT_FORMAT = "corral-bench/1"
# A server that logs its writes puts at least a record header on disk per write; below
# this, a write workload's figures are not those of a durable server. (Log lines of
# the server's own logger also count as disk writes, hence a threshold, not zero.)
DURABLE_BYTES_PER_OP_MIN = 16


@dataclass(frozen=True, slots=True, kw_only=True)
class TargetInfo:
    name: str  # "zookeeper", "corral", or "server" for --server
    address: str  # host:port
    pid: int | None  # known when we started it or were told (--pid)
    owned: bool  # started by this run, stopped at its end
    version: str | None  # first line of `srvr`, when the server answers it
    settings: dict[str, str] = field(default_factory=dict)  # durability etc., for the record


@dataclass(frozen=True, slots=True, kw_only=True)
class WorkloadResult:
    workload: str
    target: str
    ops_requested: int  # the count bound
    ops_completed: int  # replies received, successful or not
    errors: dict[int, int]  # error code -> count
    duration_s: float  # first request sent -> last reply received
    ops_per_s: float
    latency: LatencySummary | None
    server_cpu_s: float | None  # CPU time the server spent during the run
    server_cpu_pct: float | None  # of one core; above 100 for a multi-threaded server
    server_rss_mb: float | None  # resident memory at the end of the run
    server_disk_write_mb: float | None  # written to storage during the run (durability check)
    client_cpu_pct: float  # summed over client processes; near 100 x processes = saturated
    client_processes: int
    failure: str | None  # why the run stopped early, if it did
    extra: dict[str, float] = field(default_factory=dict)  # workload-specific figures

    @property
    def error_count(self) -> int:
        return sum(self.errors.values())


# Workload-specific figures shown in the table's notes column, with their units.
EXTRA_LABELS: dict[str, str] = {
    "bytes_per_znode": "B/znode",
    "heap_bytes_per_znode": "heap B/znode",
    "throughput_mb_per_s": "MB/s",
    "watchers": "watchers",
    "runs": "median of runs",
    "ops_per_s_min": "ops/s min",
    "ops_per_s_max": "max",
}
# Figures of a run, not of the server: never divided in the ratio row.
_NOT_RATIOS = frozenset({"watchers", "runs", "ops_per_s_min", "ops_per_s_max"})

TABLE_HEADER = [
    "workload",
    "target",
    "ops",
    "ops/s",
    "p50 ms",
    "p99 ms",
    "p99.9 ms",
    "srv CPU%",
    "srv RSS MB",
    "srv disk MB",
    "cli CPU%",
    "errors",
    "notes",
]


def _latency(result: WorkloadResult, name: str) -> float | None:
    if result.latency is None:
        return None
    value: float = getattr(result.latency, name)
    return value


def _notes(result: WorkloadResult) -> str:
    parts = [
        f"{label} {format_count(result.extra[key])}"
        for key, label in EXTRA_LABELS.items()
        if key in result.extra
    ]
    workload = WORKLOADS.get(result.workload)
    if (
        workload is not None
        and workload.writes
        and result.server_disk_write_mb is not None
        and result.ops_completed > 0
    ):
        disk_bytes_per_op = result.server_disk_write_mb * BYTES_PER_MB / result.ops_completed
        if disk_bytes_per_op < DURABLE_BYTES_PER_OP_MIN:
            parts.append(f"NOT LOGGED TO DISK ({disk_bytes_per_op:.1f} B/op)")
    if result.failure is not None:
        parts.append("FAILED")
    return ", ".join(parts)


def _row(result: WorkloadResult) -> list[str]:
    return [
        result.workload,
        result.target,
        f"{result.ops_completed:,}",
        format_count(result.ops_per_s),
        format_ms(_latency(result, "p50_ms")),
        format_ms(_latency(result, "p99_ms")),
        format_ms(_latency(result, "p999_ms")),
        format_count(result.server_cpu_pct),
        format_count(result.server_rss_mb),
        format_count(result.server_disk_write_mb),
        format_count(result.client_cpu_pct),
        f"{result.error_count:,}",
        _notes(result),
    ]


def _ratio_row(second: WorkloadResult, first: WorkloadResult) -> list[str]:
    notes = [
        f"{label} {format_ratio(second.extra[key], first.extra[key])}"
        for key, label in EXTRA_LABELS.items()
        if key in second.extra and key in first.extra and key not in _NOT_RATIOS
    ]
    return [
        "",
        f"{second.target}/{first.target}",
        "",
        format_ratio(second.ops_per_s, first.ops_per_s),
        format_ratio(_latency(second, "p50_ms"), _latency(first, "p50_ms")),
        format_ratio(_latency(second, "p99_ms"), _latency(first, "p99_ms")),
        format_ratio(_latency(second, "p999_ms"), _latency(first, "p999_ms")),
        format_ratio(second.server_cpu_pct, first.server_cpu_pct),
        format_ratio(second.server_rss_mb, first.server_rss_mb),
        format_ratio(second.server_disk_write_mb, first.server_disk_write_mb),
        "",
        "",
        ", ".join(notes),
    ]


def by_workload(
    results: list[WorkloadResult], targets: list[str]
) -> list[tuple[str, list[WorkloadResult]]]:
    """Results grouped per workload in run order, each group in `targets` order."""
    order: list[str] = []
    groups: dict[str, dict[str, WorkloadResult]] = {}
    for result in results:
        if result.workload not in groups:
            order.append(result.workload)
            groups[result.workload] = {}
        groups[result.workload][result.target] = result
    return [(name, [groups[name][t] for t in targets if t in groups[name]]) for name in order]


def render_text(results: list[WorkloadResult], targets: list[str]) -> str:
    """The table: one row per (workload, target); with two targets, a ratio row."""
    rows: list[list[str]] = []
    for _, group in by_workload(results, targets):
        rows.extend(_row(r) for r in group)
        if len(targets) == 2 and len(group) == 2:
            rows.append(_ratio_row(group[1], group[0]))
    text = render_table(TABLE_HEADER, rows, left_columns=2)
    failures = [r for r in results if r.failure is not None]
    if failures:
        text += "\n\nfailures:\n" + "\n".join(
            f"  {r.workload} on {r.target}: {r.failure}" for r in failures
        )
    return text


def ratios(results: list[WorkloadResult], targets: list[str]) -> list[dict[str, Any]]:
    """second / first for every comparable figure, per workload (JSON form)."""
    if len(targets) != 2:
        return []
    rows: list[dict[str, Any]] = []
    for name, group in by_workload(results, targets):
        if len(group) != 2:
            continue
        first, second = group
        row: dict[str, Any] = {
            "workload": name,
            "numerator": second.target,
            "denominator": first.target,
            "ops_per_s": ratio(second.ops_per_s, first.ops_per_s),
            "server_cpu_pct": ratio(second.server_cpu_pct, first.server_cpu_pct),
            "server_rss_mb": ratio(second.server_rss_mb, first.server_rss_mb),
            "server_disk_write_mb": ratio(second.server_disk_write_mb, first.server_disk_write_mb),
        }
        for key in ("p50_ms", "p99_ms", "p999_ms", "mean_ms", "max_ms"):
            row[key] = ratio(_latency(second, key), _latency(first, key))
        for key in (first.extra.keys() & second.extra.keys()) - _NOT_RATIOS:
            row[key] = ratio(second.extra[key], first.extra[key])
        rows.append(row)
    return rows


def to_json(
    *,
    results: list[WorkloadResult],
    targets: list[TargetInfo],
    settings: dict[str, Any],
    machine: dict[str, Any],
    command: list[str],
    started_at: str,
) -> dict[str, Any]:
    names = [t.name for t in targets]
    return {
        "format": REPORT_FORMAT,
        "started_at": started_at,
        "command": command,
        "machine": machine,
        "settings": settings,
        "targets": [asdict(t) for t in targets],
        "results": [
            {**asdict(r), "errors": {str(k): v for k, v in r.errors.items()}} for r in results
        ],
        "ratios": ratios(results, names),
    }


# --------------------------------------------------------------------------- HTML

_COLOURS = ("#4e79a7", "#f28e2b", "#59a14f", "#e15759")
_BAR_HEIGHT_PX = 16
_BAR_GAP_PX = 4
_GROUP_GAP_PX = 14
_LABEL_WIDTH_PX = 150
_BAR_AREA_WIDTH_PX = 420
_VALUE_WIDTH_PX = 140


def _svg_chart(
    title: str,
    groups: list[tuple[str, list[tuple[str, float | None, str]]]],
    targets: list[str],
) -> str:
    """Horizontal grouped bars; each group scaled to its own maximum.
    groups: [(workload, [(target, value, label)])]."""
    y = 30
    parts: list[str] = []
    for workload, bars in groups:
        known = [value for _, value, _ in bars if value is not None and value > 0]
        scale = max(known) if known else 1.0
        parts.append(
            f'<text x="0" y="{y + _BAR_HEIGHT_PX - 3}" class="w">{html.escape(workload)}</text>'
        )
        for target, value, label in bars:
            colour = _COLOURS[targets.index(target) % len(_COLOURS)]
            width = 0.0 if value is None or value <= 0 else _BAR_AREA_WIDTH_PX * value / scale
            parts.append(
                f'<rect x="{_LABEL_WIDTH_PX}" y="{y}" width="{width:.1f}" '
                f'height="{_BAR_HEIGHT_PX}" fill="{colour}"><title>'
                f"{html.escape(target)}: {html.escape(label)}</title></rect>"
            )
            parts.append(
                f'<text x="{_LABEL_WIDTH_PX + width + 4:.1f}" y="{y + _BAR_HEIGHT_PX - 3}" '
                f'class="v">{html.escape(label)}</text>'
            )
            y += _BAR_HEIGHT_PX + _BAR_GAP_PX
        y += _GROUP_GAP_PX
    legend_x = 0
    legend: list[str] = []
    for index, target in enumerate(targets):
        colour = _COLOURS[index % len(_COLOURS)]
        legend.append(
            f'<rect x="{legend_x}" y="{y}" width="12" height="12" fill="{colour}"/>'
            f'<text x="{legend_x + 16}" y="{y + 11}" class="v">{html.escape(target)}</text>'
        )
        legend_x += 24 + 8 * len(target)
    height = y + 24
    width = _LABEL_WIDTH_PX + _BAR_AREA_WIDTH_PX + _VALUE_WIDTH_PX
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" aria-label="{html.escape(title)}">'
        f'<text x="0" y="16" class="t">{html.escape(title)}</text>'
        + "".join(parts)
        + "".join(legend)
        + "</svg>"
    )


def to_html(
    *,
    results: list[WorkloadResult],
    targets: list[TargetInfo],
    machine: dict[str, Any],
    command: list[str],
    started_at: str,
) -> str:
    names = [t.name for t in targets]
    grouped = by_workload(results, names)
    throughput: list[tuple[str, list[tuple[str, float | None, str]]]] = [
        (w, [(r.target, r.ops_per_s, f"{format_count(r.ops_per_s)} ops/s") for r in group])
        for w, group in grouped
    ]
    latency: list[tuple[str, list[tuple[str, float | None, str]]]] = [
        (
            w,
            [
                (r.target, _latency(r, "p99_ms"), f"{format_ms(_latency(r, 'p99_ms'))} ms")
                for r in group
            ],
        )
        for w, group in grouped
        if any(r.latency is not None for r in group)
    ]
    memory: list[tuple[str, list[tuple[str, float | None, str]]]] = [
        (
            w,
            [
                (
                    r.target,
                    r.extra.get("bytes_per_znode"),
                    f"{format_count(r.extra.get('bytes_per_znode'))} B/znode",
                )
                for r in group
            ],
        )
        for w, group in grouped
        if any("bytes_per_znode" in r.extra for r in group)
    ]
    memory_chart = (
        _svg_chart("Memory per znode (RSS growth / znodes, lower is better)", memory, names)
        if memory
        else ""
    )
    machine_text = ", ".join(f"{k}: {v}" for k, v in machine.items())
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>corral bench</title>
<style>
body {{ font-family: sans-serif; margin: 2em; color: #222; }}
pre {{ font-size: 12px; background: #f6f6f6; padding: 1em; overflow-x: auto; }}
svg .t {{ font-size: 14px; font-weight: bold; }}
svg .w {{ font-size: 12px; }}
svg .v {{ font-size: 11px; fill: #333; }}
</style></head><body>
<h1>corral bench</h1>
<p>{html.escape(started_at)} &middot; <code>{html.escape(" ".join(command))}</code></p>
<p>{html.escape(machine_text)}</p>
<p>Each workload's bars are scaled to that workload's largest value.</p>
{_svg_chart("Throughput (ops/s, higher is better)", throughput, names)}
{_svg_chart("p99 latency (ms, lower is better)", latency, names)}
{memory_chart}
<pre>{html.escape(render_text(results, names))}</pre>
</body></html>
"""
