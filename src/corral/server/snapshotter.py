"""The snapshot writer: a separate process that rebuilds the tree at a log index from the
files alone (the previous snapshot plus the log after it) and writes the new snapshot.

    python -m corral.server.snapshotter --data-dir D --log-dir L --index N --term T
        --voters 1[,2,...] [--extended-types] [--skip-acl] [--enforce-quota]

Why a process that replays instead of a fork() of the server: fork() copies the page
tables of the whole heap while the event loop waits (measured here: ~50-70 ms per GB,
a million znodes is about 1 GB), whereas spawning a process (vfork + exec) costs the
server about a millisecond whatever its size. Replaying is exactly what recovery does at
every start (same decode, same deterministic DataTree.apply that every replica relies
on), so the snapshot equals the live tree at index N. The price is CPU: the writer
decodes the previous snapshot and replays the entries since, on the other core.

Rules:
* Read-only on everything but the new snapshot (written temp, fsync, rename, fsync dir).
* Entries up to N are committed, hence durable and final; the server may append after
  them meanwhile, which the reader tolerates (storage.wal.read_log).
* The rebuilt tree must end exactly at N with the entry at N of term T; anything else
  (a gap, a damaged file, a mismatch) exits 1 with the reason on stderr, and the server
  tries again after the next snapCount entries.
* The writer dies with the server (PR_SET_PDEATHSIG): a half-written snapshot is only
  ever a `.tmp` file, removed at the next start.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import os
import signal
import sys

from corral.consensus.types import EntryKind, SnapshotMeta
from corral.protocol.errors import DecodeError
from corral.storage.fs import OsFileSystem
from corral.storage.snapshots import SnapshotCorrupt, list_snapshots, read_snapshot, write_snapshot
from corral.storage.wal import StorageError, read_log
from corral.tree.snapshot import decode_snapshot, encode_snapshot
from corral.tree.tree import DataTree
from corral.tree.txn import decode_txn

_PR_SET_PDEATHSIG = 1


class SnapshotFailed(Exception):
    pass


def build_snapshot(
    *,
    data_dir: str,
    log_dir: str,
    meta: SnapshotMeta,
    extended_types_enabled: bool,
    skip_acl: bool,
    enforce_quota: bool,
) -> str:
    """Rebuild the tree at `meta.index` and write it; the snapshot's path."""
    fs = OsFileSystem()
    tree: DataTree | None = None
    for index, path in list_snapshots(fs, data_dir):
        if index > meta.index:
            continue
        try:
            tree = decode_snapshot(
                read_snapshot(fs, path).content,
                extended_types_enabled=extended_types_enabled,
                skip_acl=skip_acl,
                enforce_quota=enforce_quota,
            )
            break
        except (SnapshotCorrupt, DecodeError) as e:
            print(f"snapshot writer: skipping {path}: {e}", file=sys.stderr)
    if tree is None:
        tree = DataTree(
            extended_types_enabled=extended_types_enabled,
            skip_acl=skip_acl,
            enforce_quota=enforce_quota,
        )
    if tree.last_zxid == meta.index:
        raise SnapshotFailed(f"a snapshot at {meta.index} exists already")
    log = read_log(fs, log_dir, tree.last_zxid)
    last_entry_index = tree.last_zxid
    for entry in log.entries:
        if entry.index > meta.index:
            break
        if entry.kind == EntryKind.NORMAL:
            tree.apply(decode_txn(entry.data), entry.index)
        last_entry_index = entry.index
        if entry.index == meta.index and entry.term != meta.term:
            raise SnapshotFailed(f"entry {meta.index} has term {entry.term}, not {meta.term}")
    if last_entry_index != meta.index or tree.last_zxid != meta.index:
        raise SnapshotFailed(
            f"the log after {tree.last_zxid} does not reach {meta.index} ({log.note or 'ends'})"
        )
    return write_snapshot(fs, data_dir, meta=meta, content=encode_snapshot(tree))


def _die_with_parent() -> None:
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m corral.server.snapshotter")
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--log-dir", required=True)
    parser.add_argument("--index", type=int, required=True)
    parser.add_argument("--term", type=int, required=True)
    parser.add_argument("--voters", required=True, help="comma-separated replica ids")
    parser.add_argument("--learners", default="")
    parser.add_argument("--parent-pid", type=int, default=0)
    parser.add_argument("--extended-types", action="store_true")
    parser.add_argument("--skip-acl", action="store_true")
    parser.add_argument("--enforce-quota", action="store_true")
    args = parser.parse_args(argv)
    _die_with_parent()
    if args.parent_pid and os.getppid() != args.parent_pid:
        return 1  # the server died before prctl took effect
    meta = SnapshotMeta(
        index=args.index,
        term=args.term,
        voters=tuple(int(v) for v in args.voters.split(",")),
        learners=tuple(int(v) for v in args.learners.split(",") if v),
    )
    try:
        build_snapshot(
            data_dir=args.data_dir,
            log_dir=args.log_dir,
            meta=meta,
            extended_types_enabled=args.extended_types,
            skip_acl=args.skip_acl,
            enforce_quota=args.enforce_quota,
        )
    except (SnapshotFailed, StorageError, DecodeError, OSError) as e:
        print(f"snapshot writer: snapshot at {meta.index} failed: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
