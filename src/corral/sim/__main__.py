"""`python -m corral.sim [--replicas] --seed N`: replay one simulated run (or a range).

Without --replicas, the consensus cores alone (sim/simulation.py); with it, whole
ensembles of Replicas and wire-protocol clients (sim/replicas.py). Prints the run's
figures, and for a failing run its violations and the last events. Exit status 1 when
any run violates an invariant.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from corral.sim.replicas import PlantedBug, ReplicaSimResult, run_replica_simulation
from corral.sim.simulation import SimResult, run_simulation


def _report(result: SimResult, *, verbose: bool) -> None:
    config = result.config
    print(
        f"seed {result.seed}: voters {config.voters} learners {config.learners} "
        f"loss {config.loss_probability} dup {config.duplicate_probability} "
        f"delay<={config.delay_max_ms}ms faults {config.fault_probability}/ms | "
        f"proposals {result.proposals} acknowledged {result.acknowledged} "
        f"applied {result.applied_max} elections {result.elections} crashes {result.crashes} "
        f"snapshots {result.snapshots_installed} reads {result.reads_answered} "
        f"messages {result.messages_sent}"
    )
    _print_outcome(result.trace, result.violations, result.reproduce, verbose=verbose)


def _report_replicas(result: ReplicaSimResult, *, verbose: bool) -> None:
    config = result.config
    print(
        f"seed {result.seed}: voters {config.replicas} learners {config.learners} "
        f"clients {config.clients} "
        f"registers {config.registers} | operations {result.operations} "
        f"answered {result.operations_answered} sessions {result.sessions} "
        f"crashes {result.crashes} pauses {result.pauses} partitions {result.partitions} "
        f"leaders {result.leaders} applied {result.applied_max} | {result.linearizability}"
    )
    _print_outcome(result.trace, result.violations, result.reproduce, verbose=verbose)


def _print_outcome(
    trace: Sequence[str], violations: Sequence[str], reproduce: str, *, verbose: bool
) -> None:
    """The last events (on a violation, or asked for), the violations, how to replay."""
    if violations or verbose:
        for line in trace:
            print("   ", line)
    for violation in violations:
        print(f"  VIOLATION {violation}")
    if violations:
        print(f"  {reproduce}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m corral.sim", description=__doc__)
    parser.add_argument("--seed", type=int, default=0, help="the first (or only) seed")
    parser.add_argument("--seeds", type=int, default=1, help="how many seeds from --seed")
    parser.add_argument("--steps", type=int, default=0, help="simulated ms with faults")
    parser.add_argument(
        "--replicas", action="store_true", help="simulate Replicas and clients, not cores"
    )
    parser.add_argument(
        "--planted",
        choices=[bug.value for bug in PlantedBug],
        help="with --replicas: a test-only bug the checks must catch",
    )
    parser.add_argument("--verbose", action="store_true", help="print the last events")
    options = parser.parse_args(argv)
    failed = 0
    if not options.verbose:
        logging.disable(logging.WARNING)  # replicas log every election and lost quorum
    for seed in range(options.seed, options.seed + options.seeds):
        if options.replicas:
            planted = PlantedBug(options.planted) if options.planted else None
            steps = {"steps_ms": options.steps} if options.steps else {}
            replicas_result = run_replica_simulation(seed, planted_bug=planted, **steps)
            _report_replicas(replicas_result, verbose=options.verbose)
            failed += bool(replicas_result.violations)
            continue
        result = run_simulation(seed, steps=options.steps or 4_000)
        _report(result, verbose=options.verbose)
        failed += bool(result.violations)
    if options.seeds > 1:
        print(f"{options.seeds - failed}/{options.seeds} seeds passed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
