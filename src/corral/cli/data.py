"""`corral data ...`: look at, print, purge and import data directories.

    corral data inspect DIR [--log-dir D]          snapshots and WAL segments, verified
    corral data dump DIR [--log-dir D]             the tree (snapshot + log), readable
    corral data dump DIR --log FROM..TO            log entries in [FROM, TO], decoded
    corral data purge DIR [--log-dir D] [-n N]     keep the newest N (>= 3) snapshots
    corral data import ZK_DATA_DIR OUT_DIR         from Apache ZooKeeper 3.x
    corral data bench-restart [--znodes N]         restart-time benchmark (reported only)

Rules:
* inspect and dump never write: they read files as they are (a torn tail is reported,
  not repaired). purge only deletes. import refuses an OUT_DIR that already holds data.
* DIR is a server's dataDir; the log is in dataLogDir when the server has one
  (`--log-dir`), else in DIR too.
* Exit codes: 0 done, 1 the data is damaged or unreadable (with the reason on stderr),
  2 bad usage.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from corral.consensus.types import Entry, EntryKind, HardState, SnapshotMeta
from corral.protocol.errors import DecodeError
from corral.protocol.records import ACL
from corral.storage.framing import ScanEnd
from corral.storage.fs import OsFileSystem
from corral.storage.recovery import purge
from corral.storage.snapshots import (
    SnapshotCorrupt,
    list_snapshots,
    read_snapshot,
    snapshot_dir,
    write_snapshot,
)
from corral.storage.wal import (
    StorageError,
    create_wal,
    list_segments,
    read_log,
    read_segment,
)
from corral.storage.zookeeper import (
    ZkState,
    ZooKeeperFormatError,
    load_zk_data_dir,
    session_password,
)
from corral.tree.snapshot import decode_snapshot, encode_snapshot
from corral.tree.tree import DataTree, SessionInfo
from corral.tree.txn import decode_txn
from corral.tree.znode import Znode

PURGE_RETAIN_MIN = 3  # as ZooKeeper's PurgeTxnLog


def add_data_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "data",
        help="inspect, dump, purge or import data directories",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="data_command", metavar="SUBCOMMAND", required=True)

    inspect = commands.add_parser("inspect", help="list snapshots and log segments, verified")
    inspect.add_argument("dir", help="dataDir")
    inspect.add_argument("--log-dir", help="dataLogDir (default: DIR)")
    inspect.set_defaults(func=_inspect)

    dump = commands.add_parser("dump", help="print the tree, or a range of the log")
    dump.add_argument("dir", help="dataDir")
    dump.add_argument("--log-dir", help="dataLogDir (default: DIR)")
    dump.add_argument("--log", metavar="FROM..TO", help="print log entries FROM..TO instead")
    dump.set_defaults(func=_dump)

    purge_parser = commands.add_parser("purge", help="delete old snapshots and log segments")
    purge_parser.add_argument("dir", help="dataDir")
    purge_parser.add_argument("--log-dir", help="dataLogDir (default: DIR)")
    purge_parser.add_argument(
        "-n", "--count", type=int, default=PURGE_RETAIN_MIN, help="snapshots to keep (>= 3)"
    )
    purge_parser.set_defaults(func=_purge)

    import_parser = commands.add_parser(
        "import", help="convert an Apache ZooKeeper 3.x data directory"
    )
    import_parser.add_argument("zk_data_dir", help="ZooKeeper's dataDir (holding version-2/)")
    import_parser.add_argument("out_dir", help="the new corral dataDir")
    import_parser.add_argument("--log-dir", help="the new corral dataLogDir (default: OUT_DIR)")
    import_parser.add_argument("--zk-log-dir", help="ZooKeeper's dataLogDir, if not its dataDir")
    import_parser.set_defaults(func=_import)

    bench = commands.add_parser("bench-restart", help="time a restart on a large tree")
    bench.add_argument("--znodes", type=int, default=1_000_000)
    bench.add_argument("--log-entries", type=int, default=100_000)
    bench.add_argument("--dir", help="work directory (default: a temporary one, removed)")
    bench.set_defaults(func=_bench_restart)


def _log_dir(args: argparse.Namespace, data_dir: str) -> str:
    return str(args.log_dir) if args.log_dir else data_dir


def _fail(message: str) -> int:
    print(f"corral data: {message}", file=sys.stderr)
    return 1


# ---------------------------------------------------------------------- inspect


def _inspect(args: argparse.Namespace) -> int:
    fs = OsFileSystem()
    data_dir = str(args.dir)
    log_dir = _log_dir(args, data_dir)
    damaged = False
    print(f"snapshots in {snapshot_dir(data_dir)}:")
    snapshots = list_snapshots(fs, data_dir)
    if not snapshots:
        print("  (none)")
    for index, path in reversed(snapshots):
        size = fs.size(path)
        try:
            snapshot = read_snapshot(fs, path)
        except SnapshotCorrupt as e:
            damaged = True
            print(f"  {_name(path)}  index {index}  {size} bytes  CORRUPT: {e}")
            continue
        meta = snapshot.meta
        print(
            f"  {_name(path)}  index {meta.index} (zxid {meta.index:#x})  term {meta.term}  "
            f"voters {','.join(map(str, meta.voters))}  {size} bytes  checksums ok"
        )
    print(f"log segments in {log_dir}/wal:")
    segments = list_segments(fs, log_dir)
    if not segments:
        print("  (none)")
    for _, _, path in segments:
        try:
            segment = read_segment(fs, path)
        except StorageError as e:
            damaged = True
            print(f"  {_name(path)}  CORRUPT: {e}")
            continue
        indexes = [e.index for _, e in segment.entries]
        terms = [e.term for _, e in segment.entries]
        span = (
            f"entries {min(indexes)}..{max(indexes)} ({len(indexes)})" if indexes else "no entries"
        )
        term_span = f"terms {min(terms)}..{max(terms)}" if terms else ""
        hard = segment.hard_states[-1][1] if segment.hard_states else None
        hard_text = (
            f"hard state term={hard.term} vote={hard.vote} commit={hard.commit}" if hard else ""
        )
        status = "checksums ok"
        if segment.end is ScanEnd.TORN:
            status = f"TORN at offset {segment.end_offset} ({segment.reason})"
        elif segment.end is ScanEnd.CORRUPT:
            damaged = True
            status = f"CORRUPT at offset {segment.end_offset} ({segment.reason})"
        print(
            f"  {_name(path)}  first {segment.first_index}  {span}  {term_span}  "
            f"used {segment.end_offset} of {segment.size_bytes} bytes  {hard_text}  {status}"
        )
    for directory in (snapshot_dir(data_dir), f"{log_dir}/wal"):
        for name in fs.listdir(directory):
            if name.endswith(".tmp"):
                print(f"  leftover temporary file {directory}/{name} (removed at next start)")
    return 1 if damaged else 0


def _name(path: str) -> str:
    return path.rpartition("/")[2]


# ---------------------------------------------------------------------- dump


def _load_tree(data_dir: str, log_dir: str) -> tuple[DataTree, str]:
    fs = OsFileSystem()
    tree: DataTree | None = None
    origin = "no snapshot"
    for _, path in list_snapshots(fs, data_dir):
        try:
            tree = decode_snapshot(read_snapshot(fs, path).content, extended_types_enabled=True)
            origin = path
            break
        except (SnapshotCorrupt, DecodeError) as e:
            print(f"# skipping {path}: {e}", file=sys.stderr)
    if tree is None:
        tree = DataTree(extended_types_enabled=True)
    log = read_log(fs, log_dir, tree.last_zxid)
    if log.note:
        print(f"# log ends early: {log.note}", file=sys.stderr)
    applied = 0
    for entry in log.entries:
        if entry.kind == EntryKind.NORMAL:
            tree.apply(decode_txn(entry.data), entry.index)
            applied += 1
    return tree, f"{origin} + {applied} log entries"


def _acl_text(acl: tuple[ACL, ...]) -> str:
    letters = "rwcda"
    parts = []
    for entry in acl:
        perms = "".join(letter for bit, letter in enumerate(letters) if entry.perms >> bit & 1)
        parts.append(f"{entry.id.scheme}:{entry.id.id}:{perms}")
    return ",".join(parts)


def _dump(args: argparse.Namespace) -> int:
    data_dir = str(args.dir)
    log_dir = _log_dir(args, data_dir)
    try:
        if args.log:
            low_text, sep, high_text = str(args.log).partition("..")
            if not sep:
                print("corral data dump: --log expects FROM..TO", file=sys.stderr)
                return 2
            low = int(low_text, 0) if low_text else 1
            high = int(high_text, 0) if high_text else 2**63
            log = read_log(OsFileSystem(), log_dir, low - 1)
            hard_state, note = log.hard_state, log.note
            for entry in log.entries:
                if entry.index > high:
                    break
                body = repr(decode_txn(entry.data)) if entry.kind == EntryKind.NORMAL else ""
                where = f"{entry.index} (zxid {entry.index:#x}) term {entry.term}"
                print(f"{where} {entry.kind.name} {body}")
            if hard_state is not None:
                term, vote, commit = hard_state.term, hard_state.vote, hard_state.commit
                print(f"# hard state: term {term} vote {vote} commit {commit}")
            if note:
                print(f"# log ends early: {note}")
            return 0
        tree, origin = _load_tree(data_dir, log_dir)
    except (StorageError, DecodeError) as e:
        return _fail(str(e))
    print(f"# {origin}; last zxid {tree.last_zxid:#x}; {tree.node_count - 1} znodes")
    for info in sorted(tree.sessions.values(), key=lambda s: s.session_id):
        print(f"# session {info.session_id:#x} timeout {info.timeout_ms} ms")
    for path, znode in tree.walk():
        stat = znode.stat()
        print(path)
        print(f"  data = {znode.data!r}")
        print(f"  acl = {_acl_text(znode.acl)}")
        print(
            f"  cZxid = {stat.czxid:#x}  mZxid = {stat.mzxid:#x}  pZxid = {stat.pzxid:#x}  "
            f"ctime = {stat.ctime_ms}  mtime = {stat.mtime_ms}"
        )
        print(
            f"  version = {stat.version}  cversion = {stat.cversion}  aversion = {stat.aversion}"
            f"  ephemeralOwner = {stat.ephemeral_owner & 0xFFFF_FFFF_FFFF_FFFF:#x}"
            f"  dataLength = {stat.data_length}  numChildren = {stat.num_children}"
        )
    return 0


# ---------------------------------------------------------------------- purge


def _purge(args: argparse.Namespace) -> int:
    if args.count < PURGE_RETAIN_MIN:
        print(f"corral data purge: -n must be at least {PURGE_RETAIN_MIN}", file=sys.stderr)
        return 2
    data_dir = str(args.dir)
    removed = purge(OsFileSystem(), data_dir, _log_dir(args, data_dir), retain_count=args.count)
    for path in removed:
        print(f"removed {path}")
    print(f"{len(removed)} files removed")
    return 0


# ---------------------------------------------------------------------- import


def zk_state_to_tree(state: ZkState) -> DataTree:
    """ZooKeeper's database as a corral DataTree: every Stat, ACL and zxid kept."""
    nodes: list[tuple[str, Znode]] = []
    peaks: dict[int, int] = {}
    for path, zk_node in state.nodes.items():
        znode = Znode(
            data=zk_node.data,
            acl=zk_node.acl,
            zxid=zk_node.czxid,
            time_ms=zk_node.ctime_ms,
            ephemeral_owner=zk_node.ephemeral_owner,
        )
        znode.mzxid, znode.pzxid, znode.mtime_ms = zk_node.mzxid, zk_node.pzxid, zk_node.mtime_ms
        znode.version, znode.cversion = zk_node.version, zk_node.cversion
        znode.aversion = zk_node.aversion
        znode.children_peak = len(zk_node.children)
        nodes.append((path, znode))
        if znode.is_ephemeral:
            peaks[znode.ephemeral_owner] = peaks.get(znode.ephemeral_owner, 0) + 1
    sessions = [
        SessionInfo(
            session_id=session_id, timeout_ms=timeout_ms, password=session_password(session_id)
        )
        for session_id, timeout_ms in sorted(state.sessions.items())
    ]
    last_zxid = max([state.last_zxid, *(max(n.czxid, n.mzxid, n.pzxid) for _, n in nodes)])
    tree = DataTree.restore(
        nodes=nodes,
        sessions=sessions,
        ephemeral_peaks=peaks,
        last_zxid=last_zxid,
        extended_types_enabled=True,
    )
    if isinstance(tree, str):
        raise ZooKeeperFormatError(f"the ZooKeeper tree does not convert: {tree}")
    return tree


def _import(args: argparse.Namespace) -> int:
    fs = OsFileSystem()
    out_dir = str(args.out_dir)
    log_dir = str(args.log_dir) if args.log_dir else out_dir
    if list_snapshots(fs, out_dir) or list_segments(fs, log_dir):
        return _fail(f"{out_dir} already holds corral data; import into an empty directory")
    try:
        state = load_zk_data_dir(
            fs, str(args.zk_data_dir), str(args.zk_log_dir) if args.zk_log_dir else None
        )
        tree = zk_state_to_tree(state)
    except ZooKeeperFormatError as e:
        return _fail(str(e))
    index = tree.last_zxid
    # ZooKeeper's epoch becomes the term, so corral's terms continue after it.
    term = max(1, index >> 32)
    meta = SnapshotMeta(index=index, term=term, voters=(1,))
    fs.makedirs(out_dir)
    write_snapshot(fs, out_dir, meta=meta, content=encode_snapshot(tree))
    wal = create_wal(fs, log_dir, snapshot=meta)
    wal.append_sync((), HardState(term=term, vote=0, commit=index))
    wal.close()
    print(
        f"imported {tree.node_count - 1} znodes and {len(tree.sessions)} sessions up to zxid "
        f"{index:#x} from {state.snapshot_path} + {state.txns_replayed} txns "
        f"({len(state.logs_replayed)} log files); corral continues at zxid {index + 2:#x}"
    )
    return 0


# ---------------------------------------------------------------------- bench-restart


def _bench_restart(args: argparse.Namespace) -> int:
    """Build a data dir with `--znodes` znodes in a snapshot and `--log-entries` entries
    after it, then time a real server's start (until it answers), its memory, and the
    snapshot encode + write time. Reported, never asserted."""
    work = Path(args.dir) if args.dir else Path(tempfile.mkdtemp(prefix="corral-bench-restart-"))
    try:
        return _bench_restart_in(work, int(args.znodes), int(args.log_entries))
    finally:
        if not args.dir:
            shutil.rmtree(work, ignore_errors=True)


def _bench_restart_in(work: Path, znodes: int, log_entries: int) -> int:
    from corral.cli.launch import CorralServer
    from corral.protocol.constants import OpCode
    from corral.protocol.records import OPEN_ACL_UNSAFE, CreateRequest
    from corral.tree.txn import ClientTxn, CreateSessionTxn, encode_txn

    data_dir = work / "data"
    data_dir.mkdir(parents=True, exist_ok=True)
    fs = OsFileSystem()
    rng = random.Random(1)
    started = time.monotonic()
    tree = DataTree()
    session_id = 0x100
    zxid = 1
    tree.apply(
        CreateSessionTxn(session_id=session_id, password=bytes(16), timeout_ms=30_000, time_ms=0),
        zxid,
    )

    def creates(count: int) -> Iterator[ClientTxn]:
        for i in range(count):
            # A two-level tree: 1000 parents of up to 1000 children each.
            parent, child = divmod(i, 1000)
            path = f"/p{parent:04d}" if child == 0 else f"/p{parent:04d}/c{child:04d}"
            yield ClientTxn(
                session_id=session_id,
                opcode=OpCode.CREATE,
                request=CreateRequest(
                    path=path, data=rng.randbytes(32), acl=OPEN_ACL_UNSAFE, flags=0
                ),
                identities=(),
                time_ms=1,
            )

    for txn in creates(znodes):
        zxid += 1
        tree.apply(txn, zxid)
    build_s = time.monotonic() - started
    # What starting a snapshot writer costs a server of this size: the event loop's
    # worst lag while a thread spawns a process (as the server does), against fork().
    idle_lag_ms = asyncio.run(_loop_lag_ms(spawn=None))
    spawn_lag_ms = asyncio.run(_loop_lag_ms(spawn=True))
    fork_lag_ms = asyncio.run(_loop_lag_ms(spawn=False))
    started = time.monotonic()
    content = encode_snapshot(tree)
    encode_s = time.monotonic() - started
    meta = SnapshotMeta(index=zxid, term=1, voters=(1,))
    started = time.monotonic()
    write_snapshot(fs, str(data_dir), meta=meta, content=content)
    write_s = time.monotonic() - started
    snapshot_mb = len(content) / 1e6
    del tree, content
    wal = create_wal(fs, str(data_dir), snapshot=meta, force_sync=False)
    batch: list[Entry] = []
    for i in range(log_entries):
        zxid += 1
        txn = ClientTxn(
            session_id=session_id,
            opcode=OpCode.CREATE,
            request=CreateRequest(
                path=f"/tail{i:07d}", data=b"x" * 32, acl=OPEN_ACL_UNSAFE, flags=0
            ),
            identities=(),
            time_ms=2,
        )
        batch.append(Entry(term=1, index=zxid, kind=EntryKind.NORMAL, data=encode_txn(txn)))
        if len(batch) == 1000 or i == log_entries - 1:
            wal.append_sync(tuple(batch), HardState(term=1, vote=1, commit=zxid))
            batch = []
    wal.close()
    # The snapshot writer as the server runs it: previous snapshot + log replay + write.
    started = time.monotonic()
    writer = subprocess.run(
        [
            sys.executable,
            "-m",
            "corral.server.snapshotter",
            "--data-dir",
            str(data_dir),
            "--log-dir",
            str(data_dir),
            "--index",
            str(zxid),
            "--term",
            "1",
            "--voters",
            "1",
        ],
        check=False,
    )
    writer_s = time.monotonic() - started
    server = CorralServer(
        config={"snapCount": str(10 * (znodes + log_entries) + 10)},
        extra_args=["--data-dir", str(data_dir)],
        start_timeout_ms=600_000,
    )
    started = time.monotonic()
    server.start()
    start_s = time.monotonic() - started
    rss_kb = _rss_kb(server.pid)
    server.stop()
    total = znodes + log_entries
    print(f"restart benchmark: {znodes} znodes in the snapshot + {log_entries} log entries")
    print(f"  build tree in memory          {build_s:8.2f} s")
    print(f"  loop lag, nothing started     {idle_lag_ms:8.1f} ms  (the machine's noise)")
    print(f"  loop lag, spawning a writer   {spawn_lag_ms:8.1f} ms  (worst of 5)")
    print(f"  loop lag, fork() instead      {fork_lag_ms:8.1f} ms  (worst of 5; not used)")
    print(f"  snapshot encode               {encode_s:8.2f} s")
    print(f"  snapshot write (fsync)        {write_s:8.2f} s  ({snapshot_mb:.0f} MB)")
    status = "ok" if writer.returncode == 0 else f"FAILED, exit {writer.returncode}"
    print(f"  snapshot writer (replay+write){writer_s:8.2f} s  ({status}; decode, replay, encode)")
    print(f"  server start until serving    {start_s:8.2f} s  ({total} znodes)")
    print(f"  server memory after start     {rss_kb / 1024:8.0f} MiB RSS")
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"  this process peak memory      {peak_mib:8.0f} MiB")
    return 0


async def _loop_lag_ms(*, spawn: bool | None) -> float:
    """The event loop's worst lag (beyond a 1 ms sleep) over 5 snapshot-writer starts:
    spawned (True), forked (False) or none (None: the baseline)."""
    lags: list[float] = []
    done = asyncio.Event()

    async def ticker() -> None:
        last = time.monotonic()
        while not done.is_set():
            await asyncio.sleep(0.001)
            now = time.monotonic()
            lags.append(now - last - 0.001)
            last = now

    task = asyncio.create_task(ticker())
    await asyncio.sleep(0.05)
    for _ in range(5):
        if spawn is None:
            await asyncio.sleep(0.01)
        elif spawn:
            process = await asyncio.to_thread(subprocess.Popen, ["/bin/true"])
            await asyncio.to_thread(process.wait)
        else:
            pid = os.fork()
            if pid == 0:
                os._exit(0)
            await asyncio.to_thread(os.waitpid, pid, 0)
        await asyncio.sleep(0.02)
    done.set()
    await task
    return max(lags) * 1000


def _rss_kb(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


__all__ = ["add_data_parser", "zk_state_to_tree"]
