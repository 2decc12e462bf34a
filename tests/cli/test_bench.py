"""`corral bench`: its numbers (percentiles, /proc parsing, formatting, reports) as unit
tests, and short real runs against Apache ZooKeeper that check the report's structure
and that exactly the requested number of operations completed. No timing assertions:
figures are checked for presence and consistency, never for speed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
from array import array
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from corral.cli import bench_failover, bench_load
from corral.cli.bench import (
    _split,
    add_bench_parser,
    median_run,
    new_runner,
    settings_from_args,
)
from corral.cli.bench_load import ROOT_PATH, Budget
from corral.cli.bench_report import (
    TargetInfo,
    WorkloadResult,
    ratios,
    render_text,
    to_html,
    to_json,
)
from corral.cli.bench_stats import (
    LatencySummary,
    Reservoir,
    format_count,
    format_ms,
    format_ratio,
    parse_io_write_bytes,
    parse_stat_cpu_s,
    parse_status_rss_bytes,
    percentile,
    read_process,
    render_table,
    summarize,
)
from corral.cli.launch import ZOOKEEPER_INSTALL_HINT, ApacheZooKeeper, zookeeper_available
from tests.support.servers import require_zookeeper

# --------------------------------------------------------------------------- percentiles


def test_percentile_is_nearest_rank() -> None:
    values = list(range(1, 1001))
    assert percentile(values, 500) == 500
    assert percentile(values, 990) == 990
    assert percentile(values, 999) == 999
    assert percentile(values, 1000) == 1000
    assert percentile(values, 1) == 1


def test_percentile_rounds_the_rank_up() -> None:
    values = list(range(10, 110, 10))  # 10 samples: 10, 20, ..., 100
    assert percentile(values, 500) == 50  # rank 5
    assert percentile(values, 990) == 100  # rank ceil(9.9) = 10
    assert percentile(values, 999) == 100
    assert percentile(values, 101) == 20  # rank ceil(1.01) = 2
    assert percentile([7], 999) == 7


def test_percentile_refuses_nothing() -> None:
    with pytest.raises(AssertionError):
        percentile([], 500)


def test_summarize_sorts_and_converts_to_ms() -> None:
    samples = array("q", [3_000_000, 1_000_000, 2_000_000, 4_000_000])
    summary = summarize(samples)
    assert summary == LatencySummary(
        count=4, p50_ms=2.0, p99_ms=4.0, p999_ms=4.0, mean_ms=2.5, max_ms=4.0
    )
    assert summarize([]) is None


def test_reservoir_keeps_everything_up_to_its_bound() -> None:
    reservoir = Reservoir(samples_max=10, seed=1)
    for value in range(10):
        reservoir.add(value)
    assert list(reservoir.samples_ns) == list(range(10))
    assert reservoir.offered_count == 10


def test_reservoir_beyond_its_bound_keeps_a_seeded_sample() -> None:
    def fill(seed: int) -> list[int]:
        reservoir = Reservoir(samples_max=50, seed=seed)
        for value in range(10_000):
            reservoir.add(value)
        assert reservoir.offered_count == 10_000
        return list(reservoir.samples_ns)

    kept = fill(seed=7)
    assert len(kept) == 50
    assert len(set(kept)) == 50
    assert all(0 <= value < 10_000 for value in kept)
    # Later samples do get in (uniform over all offered, not the first 50).
    assert max(kept) >= 50
    assert fill(seed=7) == kept, "reproduce: Reservoir(samples_max=50, seed=7)"


# --------------------------------------------------------------------------- /proc


def test_parse_stat_counts_fields_after_the_last_parenthesis() -> None:
    # comm "(my (odd) name)" holds spaces and parentheses; utime 250, stime 150 ticks.
    fields_after = "S 1 2 3 4 5 6 7 8 9 10 250 150 0 0 20 0 1 0 100 200 300"
    text = f"4242 (my (odd) name) {fields_after}\n"
    assert parse_stat_cpu_s(text, ticks_per_s=100) == 4.0
    assert parse_stat_cpu_s("garbage", ticks_per_s=100) is None
    assert parse_stat_cpu_s("1 (x) S 1 2", ticks_per_s=100) is None


def test_parse_status_reads_vmrss_in_kilobytes() -> None:
    text = "Name:\tjava\nVmPeak:\t  999 kB\nVmRSS:\t  2048 kB\nThreads:\t40\n"
    assert parse_status_rss_bytes(text) == 2048 * 1024
    assert parse_status_rss_bytes("Name:\tkthreadd\n") is None


def test_parse_io_reads_write_bytes() -> None:
    text = "rchar: 10\nwchar: 20\nread_bytes: 0\nwrite_bytes: 8192\ncancelled_write_bytes: 0\n"
    assert parse_io_write_bytes(text) == 8192
    assert parse_io_write_bytes("rchar: 10\n") is None


def test_read_process_of_ourselves_and_of_nobody(tmp_path: Path) -> None:
    sample = read_process(os.getpid())
    assert sample is not None
    assert sample.rss_bytes > 0
    assert sample.cpu_s >= 0
    assert sample.disk_write_bytes is not None  # our own /proc/<pid>/io is readable
    assert read_process(12345, proc_root=tmp_path) is None  # no such /proc entry


# --------------------------------------------------------------------------- formatting


def test_formatting_of_counts_latencies_and_ratios() -> None:
    assert format_count(None) == "-"
    assert format_count(1234567.8) == "1,234,568"
    assert format_count(12.34) == "12.3"
    assert format_count(50.0) == "50"
    assert format_count(0.0) == "0"
    assert format_ms(None) == "-"
    assert format_ms(0.1234) == "0.123"
    assert format_ms(1.234) == "1.23"
    assert format_ms(12.34) == "12.3"
    assert format_ms(1234.5) == "1,234"
    assert format_ratio(3.0, 2.0) == "1.50x"
    assert format_ratio(1.0, 0.0) == "-"
    assert format_ratio(None, 2.0) == "-"


def test_render_table_aligns_columns() -> None:
    text = render_table(["name", "value"], [["a", "1"], ["long name", "1,000"]])
    lines = text.splitlines()
    assert lines[0] == "name       value"
    assert lines[1] == "---------  -----"
    assert lines[2] == "a              1"
    assert lines[3] == "long name  1,000"
    two_left = render_table(["a", "b", "n"], [["x", "yy", "1"], ["xx", "y", "22"]], 2)
    assert two_left.splitlines()[2:] == ["x   yy   1", "xx  y   22"]


def _result(target: str, ops_per_s: float, p99_ms: float, **extra: float) -> WorkloadResult:
    return WorkloadResult(
        workload="get",
        target=target,
        ops_requested=100,
        ops_completed=100,
        errors={},
        duration_s=100 / ops_per_s,
        ops_per_s=ops_per_s,
        latency=LatencySummary(
            count=100, p50_ms=p99_ms / 2, p99_ms=p99_ms, p999_ms=p99_ms, mean_ms=1, max_ms=p99_ms
        ),
        server_cpu_s=1.0,
        server_cpu_pct=50.0,
        server_rss_mb=100.0,
        server_disk_write_mb=10.0,
        client_cpu_pct=20.0,
        client_processes=1,
        failure=None,
        extra=dict(extra),
    )


def test_text_report_has_a_ratio_row_second_over_first() -> None:
    results = [
        _result("zookeeper", 1_000.0, 4.0, bytes_per_znode=200.0),
        _result("corral", 2_000.0, 2.0, bytes_per_znode=100.0),
    ]
    text = render_text(results, ["zookeeper", "corral"])
    ratio_line = next(line for line in text.splitlines() if "corral/zookeeper" in line)
    assert "2.00x" in ratio_line  # ops/s
    assert "0.50x" in ratio_line  # p99 and B/znode
    assert "B/znode 0.50x" in ratio_line
    (row,) = ratios(results, ["zookeeper", "corral"])
    assert row["ops_per_s"] == 2.0
    assert row["p99_ms"] == 0.5
    assert row["bytes_per_znode"] == 0.5


def test_text_report_flags_writes_that_never_reached_the_disk() -> None:
    volatile = WorkloadResult(
        **{
            **_as_kwargs(_result("server", 10.0, 1.0)),
            "workload": "set",
            "server_disk_write_mb": 0.0,
        }
    )
    assert "NOT LOGGED TO DISK (0.0 B/op)" in render_text([volatile], ["server"])
    read_only = WorkloadResult(**{**_as_kwargs(volatile), "workload": "get"})
    assert "NOT LOGGED TO DISK" not in render_text([read_only], ["server"])
    logged = WorkloadResult(**{**_as_kwargs(volatile), "server_disk_write_mb": 1.0})
    assert "NOT LOGGED TO DISK" not in render_text([logged], ["server"])


def test_text_report_lists_failures() -> None:
    failed = WorkloadResult(
        **{**_as_kwargs(_result("server", 10.0, 1.0)), "failure": "server closed the connection"}
    )
    text = render_text([failed], ["server"])
    assert "FAILED" in text
    assert "get on server: server closed the connection" in text


def _as_kwargs(result: WorkloadResult) -> dict[str, Any]:
    return {name: getattr(result, name) for name in WorkloadResult.__dataclass_fields__}


def test_json_and_html_reports() -> None:
    results = [_result("zookeeper", 1_000.0, 4.0), _result("<corral>", 2_000.0, 2.0)]
    targets = [
        TargetInfo(name="zookeeper", address="127.0.0.1:1", pid=1, owned=True, version=None),
        TargetInfo(name="<corral>", address="127.0.0.1:2", pid=2, owned=True, version=None),
    ]
    report = to_json(
        results=results,
        targets=targets,
        settings={"ops": 100},
        machine={"nproc": 2},
        command=["corral", "bench"],
        started_at="2026-01-01T00:00:00+00:00",
    )
    decoded = json.loads(json.dumps(report))
    assert decoded["format"] == "corral-bench/1"
    assert [r["target"] for r in decoded["results"]] == ["zookeeper", "<corral>"]
    assert decoded["results"][0]["latency"]["p99_ms"] == 4.0
    assert decoded["ratios"][0]["ops_per_s"] == 2.0
    page = to_html(
        results=results,
        targets=targets,
        machine={"nproc": 2},
        command=["corral", "bench"],
        started_at="now",
    )
    assert page.count("<svg") == 2  # no memory workload: no memory chart
    assert "&lt;corral&gt;" in page
    assert "<corral>" not in page
    assert "<script" not in page


# --------------------------------------------------------------------------- arguments


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="corral")
    add_bench_parser(parser.add_subparsers(dest="command"))
    return parser.parse_args(argv)


def test_median_run_reports_the_middle_run_by_throughput_and_the_range() -> None:
    runs = [_result("corral", ops, 1.0) for ops in (3_000.0, 1_000.0, 2_000.0, 4_000.0)]
    median = median_run(runs)
    assert median.ops_per_s == 2_000.0  # the lower middle of four
    assert median.extra == {"runs": 4.0, "ops_per_s_min": 1_000.0, "ops_per_s_max": 4_000.0}
    assert median_run(runs[:3]).ops_per_s == 2_000.0
    assert median_run(runs[:1]) is runs[0]  # one run: reported as it is
    failed = replace(runs[3], failure="server died")
    assert median_run([*runs[:3], failed]) is failed  # a failure always shows
    text = render_text([median_run(runs[:3]), _result("zookeeper", 1_000.0, 1.0)], ["corral"])
    assert "median of runs 3, ops/s min 1,000, max 3,000" in text


def test_run_figures_are_not_divided_in_the_ratio_row() -> None:
    zookeeper = median_run([_result("zookeeper", ops, 4.0) for ops in (1_000.0, 1_500.0)])
    corral = median_run([_result("corral", ops, 2.0) for ops in (2_000.0, 2_500.0)])
    text = render_text([zookeeper, corral], ["zookeeper", "corral"])
    ratio_line = next(line for line in text.splitlines() if "corral/zookeeper" in line)
    assert "2.00x" in ratio_line and "runs" not in ratio_line and "min" not in ratio_line
    (row,) = ratios([zookeeper, corral], ["zookeeper", "corral"])
    assert row["ops_per_s"] == 2.0
    assert not {"runs", "ops_per_s_min", "ops_per_s_max"} & row.keys()


def test_arguments_and_settings() -> None:
    args = _parse(["bench", "--server", "127.0.0.1:2181", "--quick", "--workloads", "get,set"])
    settings = settings_from_args(args)
    assert settings.workloads == ("get", "set")
    assert settings.quick
    assert args.server == ("127.0.0.1", 2181)
    assert settings.repeat == 1
    full = settings_from_args(_parse(["bench", "--compare", "--repeat", "3"]))
    assert full.znodes == 1_000_000
    assert full.workloads == tuple(bench_load.WORKLOADS)
    assert full.repeat == 3


@pytest.mark.parametrize(
    "argv",
    [
        ["bench", "--server", "127.0.0.1:2181", "--compare"],
        ["bench", "--server", "nowhere"],
        ["bench", "--compare", "--workloads", "get,teleport"],
        ["bench", "--compare", "--connections", "0"],
        ["bench", "--compare", "--repeat", "0"],
    ],
)
def test_bad_arguments_are_refused(argv: list[str]) -> None:
    with pytest.raises(SystemExit):
        _parse(argv)


def test_bench_without_a_target_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    # Neither --server nor --compare: not refused by argparse (`corral bench failover`
    # takes neither), but by the command, with exit status 2 and before starting anything.
    assert _run(["bench"]) == 2
    assert "give --server HOST:PORT or --compare" in capsys.readouterr().err


def test_worker_specs_split_connections_and_ops_over_processes() -> None:
    from corral.cli.bench import FULL, Target, _worker_specs

    target = Target(
        info=TargetInfo(name="t", address="127.0.0.1:1", pid=None, owned=False, version=None),
        host="127.0.0.1",
        port=1,
        stop=None,
    )
    settings = replace(FULL, connections=5, in_flight=8, processes=2)
    specs = _worker_specs("get", target, settings, ops=101, bound_s=1.0)
    assert [(s.connections, s.ops, s.first_index) for s in specs] == [(3, 51, 0), (2, 50, 51)]
    assert all(s.in_flight == 8 for s in specs)
    assert len({s.seed for s in specs}) == 2
    (single,) = _worker_specs("latency-read", target, settings, ops=10, bound_s=1.0)
    assert (single.connections, single.in_flight, single.ops) == (1, 1, 10)
    large = _worker_specs("large", target, replace(settings, processes=1), ops=10, bound_s=1.0)
    assert [(s.connections, s.in_flight) for s in large] == [(4, 2)]
    many = _worker_specs("get", target, replace(settings, processes=64), ops=3, bound_s=1.0)
    assert len(many) == 3  # never more processes than connections or operations


def test_split_and_budget() -> None:
    assert _split(10, 3) == [4, 3, 3]
    assert sum(_split(1_000_001, 7)) == 1_000_001
    budget = Budget(first_index=100, ops=3, deadline_ns=1_000)
    assert [budget.take(0), budget.take(0), budget.take(0), budget.take(0)] == [
        100,
        101,
        102,
        None,
    ]
    late = Budget(first_index=0, ops=3, deadline_ns=1_000)
    assert late.take(1_000) is None
    assert late.taken_count == 0


# --------------------------------------------------------------------------- real runs

needs_zookeeper = pytest.mark.skipif(not zookeeper_available(), reason=ZOOKEEPER_INSTALL_HINT)


@pytest.fixture(scope="module")
def zookeeper() -> Iterator[ApacheZooKeeper]:
    if not zookeeper_available():
        pytest.skip(ZOOKEEPER_INSTALL_HINT)
    with ApacheZooKeeper() as server:  # stopped by PID on exit
        yield server


def _run(argv: list[str]) -> int:
    args = _parse(argv)
    code: int = args.func(args)
    return code


def _results(report_path: Path) -> dict[str, dict[str, Any]]:
    report = json.loads(report_path.read_text())
    return {r["workload"]: r for r in report["results"]}


def _root_exists(server: ApacheZooKeeper) -> bool:
    with new_runner() as runner:
        names: int = runner.run(
            asyncio.wait_for(
                bench_load.count_children(server.host, server.port, ROOT_PATH), timeout=30
            )
        )
    return names > 0


@pytest.mark.zookeeper
@needs_zookeeper
def test_pipelined_workloads_complete_the_requested_count(
    zookeeper: ApacheZooKeeper, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    report_path = tmp_path / "report.json"
    workloads = ["get", "create-delete", "multi", "mix", "latency-write"]
    code = _run(
        [
            "bench",
            "--server",
            zookeeper.address,
            "--pid",
            str(zookeeper.pid),
            "--workloads",
            ",".join(workloads),
            "--ops",
            "300",
            "--duration-s",
            "120",  # the count is the bound that must stop these runs
            "--connections",
            "3",
            "--in-flight",
            "4",
            "--json",
            str(report_path),
            "--warmup-s",
            "0.2",
        ]
    )
    captured = capsys.readouterr()
    assert code == 0, captured.err
    results = _results(report_path)
    assert list(results) == workloads
    for name, result in results.items():
        assert result["failure"] is None, name
        assert result["ops_requested"] == 300, name
        assert result["ops_completed"] == 300, name
        assert result["errors"] == {}, name
        assert result["latency"]["count"] == 300, name
        assert result["server_rss_mb"] > 0, name
        assert result["target"] == "server"
    assert results["latency-write"]["client_processes"] == 1
    for name in workloads:
        assert any(line.startswith(name) for line in captured.out.splitlines()), name
    assert "bench: get on server:" in captured.err  # progress and summary on stderr
    assert "bench: warm-up of server:" in captured.err
    assert not _root_exists(zookeeper), "bench left its znodes behind"


@pytest.mark.zookeeper
@needs_zookeeper
def test_fanout_storm_memory_and_client_processes(
    zookeeper: ApacheZooKeeper, tmp_path: Path
) -> None:
    report_path = tmp_path / "report.json"
    html_path = tmp_path / "report.html"
    code = _run(
        [
            "bench",
            "--server",
            zookeeper.address,
            "--pid",
            str(zookeeper.pid),
            "--workloads",
            "watch-fanout,session-storm,memory,set",
            "--watchers",
            "5",
            "--rounds",
            "3",
            "--sessions",
            "20",
            "--znodes",
            "200",
            "--ops",
            "200",
            "--processes",
            "2",
            "--connections",
            "4",
            "--duration-s",
            "120",
            "--json",
            str(report_path),
            "--html",
            str(html_path),
        ]
    )
    assert code == 0
    results = _results(report_path)
    fanout = results["watch-fanout"]
    assert fanout["ops_completed"] == 5 * 3  # notifications received
    assert fanout["latency"]["count"] == 3  # one sample per round
    assert fanout["extra"]["watchers"] == 5
    storm = results["session-storm"]
    assert storm["ops_completed"] == 20
    assert storm["client_processes"] == 2
    memory = results["memory"]
    assert memory["ops_completed"] == 200
    assert memory["extra"]["znodes"] == 200
    assert "bytes_per_znode" in memory["extra"]
    written = results["set"]
    assert written["ops_completed"] == 200
    assert written["client_processes"] == 2
    assert written["latency"]["count"] == 200
    assert written["server_disk_write_mb"] > 0  # ZooKeeper logs every setData
    for name, result in results.items():
        assert result["failure"] is None, name
        assert result["errors"] == {}, name
    assert html_path.read_text().count("<svg") == 3  # throughput, latency, memory
    assert not _root_exists(zookeeper), "bench left its znodes behind"


def test_a_server_that_is_not_there_is_a_failure_not_a_hang(tmp_path: Path) -> None:
    from corral.cli.launch import free_port

    report_path = tmp_path / "report.json"
    code = _run(
        [
            "bench",
            "--server",
            f"127.0.0.1:{free_port()}",
            "--workloads",
            "get",
            "--ops",
            "10",
            "--json",
            str(report_path),
        ]
    )
    assert code == 1
    (result,) = _results(report_path).values()
    assert result["ops_completed"] == 0
    assert "setup failed" in result["failure"]


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.mark.zookeeper
@needs_zookeeper
def test_compare_runs_both_servers_alternately_and_stops_them(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Two ZooKeepers stand in for the pair (the development switch): this checks the
    # side-by-side machinery, not corral's server.
    report_path = tmp_path / "report.json"
    code = _run(
        [
            "bench",
            "--compare",
            "--dev-twin-zookeeper",
            "--workloads",
            "get,set",
            "--ops",
            "100",
            "--warmup-s",
            "0",
            "--repeat",
            "2",
            "--json",
            str(report_path),
        ]
    )
    captured = capsys.readouterr()
    assert code == 0, captured.err
    # Each workload runs twice on each server, each round starting on the other server.
    runs = [
        line.split(":")[1].strip()
        for line in captured.err.splitlines()
        if line.startswith("bench: ") and " ops in " in line and "warm-up" not in line
    ]
    assert runs == [
        "get on zookeeper (run 1/2)",
        "get on zookeeper-b (run 1/2)",
        "get on zookeeper-b (run 2/2)",
        "get on zookeeper (run 2/2)",
        "set on zookeeper-b (run 1/2)",
        "set on zookeeper (run 1/2)",
        "set on zookeeper (run 2/2)",
        "set on zookeeper-b (run 2/2)",
    ]
    assert captured.out.count("median of runs 2") == 4
    report = json.loads(report_path.read_text())
    targets = report["targets"]
    assert [t["name"] for t in targets] == ["zookeeper", "zookeeper-b"]
    assert all(t["owned"] for t in targets)
    assert all(t["settings"]["forceSync"].startswith("yes") for t in targets)
    # Alternation: the first workload starts on the first server, the next one on the other.
    order = [(r["workload"], r["target"]) for r in report["results"]]
    assert order == [
        ("get", "zookeeper"),
        ("get", "zookeeper-b"),
        ("set", "zookeeper-b"),
        ("set", "zookeeper"),
    ]
    assert all(r["ops_completed"] == 100 for r in report["results"])
    assert [row["workload"] for row in report["ratios"]] == ["get", "set"]
    assert "zookeeper-b/zookeeper" in captured.out
    for target in targets:
        assert not _pid_alive(target["pid"]), f"server {target['pid']} left running"


def test_bench_help_renders() -> None:
    import subprocess
    import sys

    result = subprocess.run(
        [sys.executable, "-m", "corral", "bench", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "--compare" in result.stdout
    assert "90% getData" in result.stdout


# --------------------------------------------------------------------------- failover


def _trial(product: str, trial: int, write_ms: float | None) -> bench_failover.TrialResult:
    return bench_failover.TrialResult(
        product=product,
        trial=trial,
        old_leader_id=1,
        new_leader_id=2,
        write_ms=write_ms,
        leader_ms=None if write_ms is None else write_ms - 1,
        writers=(),
        failure=None if write_ms is not None else "no acknowledged write",
    )


def test_failover_summary_is_median_and_max_of_the_measured_trials() -> None:
    results = [
        _trial("zookeeper", 1, 400.0),
        _trial("corral", 1, 100.0),
        _trial("corral", 2, 300.0),
        _trial("zookeeper", 2, 800.0),
        _trial("zookeeper", 3, None),
        _trial("zookeeper", 4, 600.0),
    ]
    zookeeper = bench_failover.summarize("zookeeper", results)
    assert zookeeper.trials == 4
    assert zookeeper.measured == 3
    assert zookeeper.write_median_ms == 600.0
    assert zookeeper.write_max_ms == 800.0
    assert zookeeper.write_samples_ms == (400.0, 800.0, 600.0)
    corral = bench_failover.summarize("corral", results)
    assert corral.write_median_ms == 200.0  # the mean of the middle two
    assert corral.leader_max_ms == 299.0
    settings = bench_failover.FailoverSettings(
        products=("zookeeper", "corral"),
        trials=4,
        tick_time_ms=2000,
        init_limit=10,
        sync_limit=5,
        trial_timeout_s=60.0,
    )
    text = bench_failover.render_text([zookeeper, corral], settings)
    ratio_row = next(line for line in text.splitlines() if line.startswith("corral/zookeeper"))
    assert ratio_row.split()[1:3] == ["0.33x", "0.38x"]  # 200/600, 300/800
    assert "3/4" in text
    report = bench_failover.to_json(
        results=results,
        summaries=[zookeeper, corral],
        settings=settings,
        machine={},
        command=["corral", "bench", "failover"],
        started_at="now",
    )
    assert report["ratios_corral_over_zookeeper"]["write_median_ms"] == pytest.approx(1 / 3)
    assert report["settings"]["zoo_cfg"]["forceSync"] == "yes"


def test_failover_counts_only_writes_sent_after_the_fault() -> None:
    writer = bench_failover._Writer(2, "127.0.0.1", 1)
    writer._ack(sent_ns=100, arrival_ns=110)  # warm-up: counted, not kept
    writer.watch_from_ns = 200
    writer._ack(sent_ns=250, arrival_ns=400)  # sent before the fault at 300, acked after
    writer._ack(sent_ns=410, arrival_ns=900)
    writer._ack(sent_ns=900, arrival_ns=950)
    assert writer.acks_before_watch == 1
    assert writer.first_ack_ns(300) == 900  # not 400: that write was sent before the fault
    assert writer.first_ack_ns(1_000) is None
    result = writer.result(300)
    assert result.first_ack_ms == pytest.approx(600 / 1e6)
    assert result.member_id == 2


def test_failover_refuses_contradictory_arguments() -> None:
    with pytest.raises(SystemExit):
        _parse(["bench", "failover", "--compare", "--product", "corral"])
    with pytest.raises(SystemExit):
        _parse(["bench", "failover", "--trials", "0"])
    args = _parse(["bench", "failover", "--product", "corral", "--trials", "2"])
    settings = bench_failover.settings_from_args(args)
    assert settings.products == ("corral",)
    assert settings.trials == 2
    assert settings.tick_time_ms == 2000
    assert (settings.init_limit, settings.sync_limit) == (10, 5)
    assert settings.fault == "kill"
    with pytest.raises(SystemExit):
        _parse(["bench", "failover", "--fault", "reboot"])
    paused = bench_failover.settings_from_args(_parse(["bench", "failover", "--fault", "pause"]))
    assert paused.fault == "pause"
    assert paused.products == ("zookeeper", "corral")


def _child_pids() -> set[int]:
    pids: set[int] = set()
    for children in Path(f"/proc/{os.getpid()}/task").glob("*/children"):
        pids.update(int(pid) for pid in children.read_text().split())
    return pids


@pytest.mark.zookeeper
@pytest.mark.parametrize("fault", ["kill", "pause"])
def test_failover_measures_both_products_and_stops_every_member(
    fault: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    require_zookeeper()
    report_path = tmp_path / "failover.json"
    children_before = _child_pids()
    # A small tickTime (the same for both) keeps the elections short; the figures are
    # not checked for speed, only for being there and consistent.
    code = _run(
        [
            "bench",
            "failover",
            "--trials",
            "1",
            "--fault",
            fault,
            "--tick-time-ms",
            "200",
            "--trial-timeout-s",
            "30",
            "--json",
            str(report_path),
        ]
    )
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert _child_pids() <= children_before, "a server was left running"
    report = json.loads(report_path.read_text())
    assert report["benchmark"] == "failover"
    assert report["settings"]["tick_time_ms"] == 200
    assert report["settings"]["fault"] == fault
    trials = report["trials"]
    assert sorted(t["product"] for t in trials) == ["corral", "zookeeper"]
    for trial in trials:
        assert trial["failure"] is None, trial
        assert trial["write_ms"] > 0, trial
        assert trial["leader_ms"] > 0, trial
        assert trial["old_leader_id"] in (1, 2, 3)
        assert trial["new_leader_id"] in (1, 2, 3)
        assert trial["new_leader_id"] != trial["old_leader_id"]
        writers = trial["writers"]
        assert sorted(w["member_id"] for w in writers) == sorted(
            {1, 2, 3} - {trial["old_leader_id"]}
        )
        assert all(w["acks_before_kill"] >= bench_failover.WARMUP_ACKS for w in writers)
        # The first write on any survivor is the earliest of the writers' first writes.
        firsts = [w["first_ack_ms"] for w in writers if w["first_ack_ms"] is not None]
        assert trial["write_ms"] == min(firsts)
    summaries = {s["product"]: s for s in report["summary"]}
    assert summaries["corral"]["measured"] == summaries["zookeeper"]["measured"] == 1
    assert report["ratios_corral_over_zookeeper"]["write_median_ms"] > 0
    assert "corral/zookeeper" in captured.out
    assert "trial 1/1 corral" in captured.err
    assert "trial 1/1 zookeeper" in captured.err
