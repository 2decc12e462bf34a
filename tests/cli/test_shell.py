"""`corral shell` against Apache ZooKeeper's zkCli.sh: same commands, same output.

The same script runs through zkCli.sh against an Apache ZooKeeper and through
`corral shell` against a corral server (and against the same ZooKeeper); the outputs
(stdout and stderr merged, as a terminal shows them) must match once the values that
legitimately differ are normalised: times, zxids and session ids (mapped in order of
appearance). Watch events are compared as their own ordered list, apart from the
other lines: zkCli.sh prints them from another thread, so where they land between
command outputs is a race there.

Then the REPL through a pseudo-terminal (pexpect): prompt, completion of commands and
paths, history, a watch event printed while the prompt waits; and the exit codes a
script sees. Servers are module-scoped; each test works under its own chroot.
"""

from __future__ import annotations

import difflib
import itertools
import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pexpect
import pexpect.popen_spawn
import pytest

from corral.cli.launch import ApacheZooKeeper, CorralServer
from corral.cli.shell_format import (
    UsageError,
    format_event,
    java_date,
    java_path_error,
    parse_acl,
    parse_options,
    perm_string,
    split_words,
)
from corral.client.sync import SyncClient
from corral.protocol.constants import EventType, KeeperState
from tests.support.servers import in_ci, require_zookeeper

ZKCLI = Path("/usr/share/zookeeper/bin/zkCli.sh")
RUN_TIMEOUT_S = 60
PEXPECT_TIMEOUT_S = 20

_names = itertools.count()


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def corral_server() -> Iterator[CorralServer]:
    with CorralServer() as server:
        yield server


@pytest.fixture(scope="module")
def zookeeper_server() -> Iterator[ApacheZooKeeper]:
    require_zookeeper()
    if not ZKCLI.is_file():
        message = f"{ZKCLI} is missing: apt-get install -y zookeeper"
        if in_ci():
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    with ApacheZooKeeper() as server:
        yield server


def make_root(address: str) -> str:
    """A fresh top-level znode to use as a chroot; returns `address/root`."""
    root = f"/shell{os.getpid()}_{next(_names)}"
    with SyncClient(address, timeout_s=10) as zk:
        zk.create(root, b"")
    return address + root


def shell_command(server: str, *words: str, timeout_ms: int = 10_000) -> list[str]:
    return [
        sys.executable,
        "-m",
        "corral",
        "shell",
        "-server",
        server,
        "-timeout",
        str(timeout_ms),
        *words,
    ]


def run_shell(
    server: str, *words: str, script: str = "", timeout_ms: int = 10_000
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        shell_command(server, *words, timeout_ms=timeout_ms),
        input=script,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=RUN_TIMEOUT_S,
        check=False,
    )


def run_zkcli(server: str, script: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(ZKCLI), "-server", server],
        input=script,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=RUN_TIMEOUT_S,
        check=False,
    )


# --------------------------------------------------------------------------- normalising

_EVENT = re.compile(r"\nWATCHER::\n|\n(WatchedEvent [^\n]*)\n")
_BANNER = re.compile(r"^(SLF4J:|Connecting to |Welcome to |JLine support)")
_TIME = re.compile(r"^(ctime|mtime) = .*$")
_HEX = re.compile(r"0x[0-9a-f]+")
_DATE = re.compile(r"^[A-Z][a-z]{2} [A-Z][a-z]{2} \d{2} \d{2}:\d{2}:\d{2} \S+ \d{4}$")


def normalise(output: str) -> tuple[list[str], list[str]]:
    """(lines, events): banners dropped, times and hex ids mapped; watch events apart."""
    lines: list[str] = []
    events: list[str] = []
    mapping: dict[str, str] = {}

    def map_hex(match: re.Match[str]) -> str:
        value = match.group()
        if value == "0x0":
            return value
        return mapping.setdefault(value, f"<hex{len(mapping)}>")

    # zkCli.sh prints an event (two println calls, "\nWATCHER::" and "\nWatchedEvent
    # ...") from its event thread: in the middle of a line the main thread prints in
    # pieces (`[` ... `]` of ls), or around a line on stderr. Take both pieces, each
    # with the newlines it added, out of the text before splitting it into lines.
    events.extend(match.group(1) for match in _EVENT.finditer(output) if match.group(1))
    output = _EVENT.sub("", output)
    for raw in output.splitlines():
        line = raw.rstrip()
        if not line or _BANNER.match(line):
            continue
        time_match = _TIME.match(line)
        if time_match is not None:
            assert _DATE.match(line.split(" = ", 1)[1]), line
            line = f"{time_match.group(1)} = <time>"
        lines.append(_HEX.sub(map_hex, line))
    return lines, events


CLOSED_EVENT = "WatchedEvent state:Closed type:None path:null"


def assert_same_output(ours: str, theirs: str, *, events_ordered: bool = True) -> None:
    """Equal after normalising. Closed events are left out: zkCli.sh may exit before its
    event thread prints the last one (tests check ours where it matters). Unordered
    events: the same ones, in any order."""
    our_lines, our_events = normalise(ours)
    their_lines, their_events = normalise(theirs)
    our_events = [event for event in our_events if event != CLOSED_EVENT]
    their_events = [event for event in their_events if event != CLOSED_EVENT]
    diff = difflib.unified_diff(their_lines, our_lines, "zkCli.sh", "corral shell", lineterm="")
    assert our_lines == their_lines, "\n".join(diff)
    if not events_ordered:
        our_events, their_events = sorted(our_events), sorted(their_events)
    diff = difflib.unified_diff(their_events, our_events, "zkCli.sh", "corral shell", lineterm="")
    assert our_events == their_events, "\n".join(diff)


# --------------------------------------------------------------------------- comparisons

BASIC_SCRIPT = """\
ls /
create /a hello
create /a dup
create -s /a/seq- x
create -s /a/seq- y
create -e /a/eph
create -e -s /a/es
create -c /box
create -t 60000 /ttl
create /nodata
create /x/y/z
create /a/eph/child
get /a
get -s /a
get /nodata
get /missing
stat /a
stat /missing
stat /a/eph
set /a world
set -s /a again
set -v 99 /a nope
set /missing x
ls /
ls -s /a
ls -R /
ls /missing
ls /a watch
getAllChildrenNumber /a
getAllChildrenNumber /missing
getAcl /a
getAcl -s /a
getAcl /missing
delete /a
delete -v 99 /box
delete /missing
delete /nodata 0
deleteall /missing
deleteall /x
whoami
sync /
create /quoted "two words"
get /quoted
create /q2 'single quoted'
get /q2
create /acl1 x world:anyone:r,ip:127.0.0.1:cdrwa
getAcl /acl1
create /acl2 x world:anyone:rz,bad
getAcl /acl2
create /acl3 x digest:nohash:cdrwa
create /acl4 x bad
addauth digest alice:secret
setAcl /box auth:alice:secret:crwda
getAcl /box
setAcl -s /box world:anyone:r
set /box x
setAcl /box foo
setAcl -v 5 /a world:anyone:r
setAcl -R /a world:anyone:cdrwa
getAcl /a/eph
whoami
create -c -e /bad
create -t 0 /bad
create -t x /bad
create -e -t 100 /bad
create /bad/
create /bad//x
create /bad/./x
get bad
ls -z /
set -v
get
create
printwatches
printwatches off
printwatches
printwatches on
deleteall /a
ls /
history
redo 1
redo 99
quit
"""


def test_basic_commands_match_zkcli(
    corral_server: CorralServer, zookeeper_server: ApacheZooKeeper
) -> None:
    theirs = run_zkcli(make_root(zookeeper_server.address), BASIC_SCRIPT)
    ours = run_shell(make_root(corral_server.address), script=BASIC_SCRIPT)
    # Sanity: the script really ran (not two identical connection failures).
    assert "Created /a" in ours.stdout
    assert "Node does not exist: /missing" in ours.stdout
    assert_same_output(ours.stdout, theirs.stdout)


WATCH_SCRIPT = """\
create /w 1
get -w /w
set /w 2
ls -w /w
create /w/c
stat -w /w
set /w 3
stat -w /nope
create /nope
ls -s -w /w
get -s -w /w
delete /w/c
addWatch /w
set /w 4
create /w/d
addWatch -m PERSISTENT /w
addWatch -m BAD /w
removewatches /w
removewatches /w -c
removewatches /zz
ls -R -w /w
set /w 5
delete /w/d
close
ls /
get /w
"""


def test_watch_commands_match_zkcli(
    corral_server: CorralServer, zookeeper_server: ApacheZooKeeper
) -> None:
    theirs = run_zkcli(make_root(zookeeper_server.address), WATCH_SCRIPT)
    ours = run_shell(make_root(corral_server.address), script=WATCH_SCRIPT)
    assert "WatchedEvent state:SyncConnected type:NodeDataChanged path:/w" in ours.stdout
    assert CLOSED_EVENT in ours.stdout  # from `close`
    assert_same_output(ours.stdout, theirs.stdout)


TREE_SCRIPT = """\
create /t
create /t/b
create /t/a
create /t/a/y
create /t/a/x
create /t/a/x/deep
create /t/c
create /t/b/z
ls -R /t
ls -R /
ls -? /t
setAcl -R /t world:anyone:cdrwa
setAcl -R /missing world:anyone:r
getAllChildrenNumber /t
getAllChildrenNumber /
stat /t watch
get /t watch
delete /t/c 0
delete /t/a
ls -s /t
create /t/a/x/deep/er data world:anyone:r
getAcl -s /t/a/x/deep/er
set /t/a/x/deep/er x
delete -v 0 /t/a/x/deep/er
deleteall /t -b 2
ls /
"""


def test_tree_commands_match_zkcli(
    corral_server: CorralServer, zookeeper_server: ApacheZooKeeper
) -> None:
    theirs = run_zkcli(make_root(zookeeper_server.address), TREE_SCRIPT)
    ours = run_shell(make_root(corral_server.address), script=TREE_SCRIPT)
    assert "/t/a/x/deep" in ours.stdout
    assert_same_output(ours.stdout, theirs.stdout)


REMOVE_SCRIPT = """\
create /r x
create /r/c
get -w /r
removewatches /r -d
ls -w /r
removewatches /r -c
stat -w /r
ls -w /r
removewatches /r -a
get -w /r
removewatches /r -d -l
set /r y
addWatch -m PERSISTENT /r
removewatches /r -c
removewatches /r
set /r z
removewatches /r
"""


def test_removewatches_match_zkcli(
    corral_server: CorralServer, zookeeper_server: ApacheZooKeeper
) -> None:
    theirs = run_zkcli(make_root(zookeeper_server.address), REMOVE_SCRIPT)
    ours = run_shell(make_root(corral_server.address), script=REMOVE_SCRIPT)
    assert "type:DataWatchRemoved path:/r" in ours.stdout
    # The Java client tells the removals of one call in a HashMap's order, which
    # changes from run to run.
    assert_same_output(ours.stdout, theirs.stdout, events_ordered=False)


@pytest.mark.parametrize(
    "script",
    [BASIC_SCRIPT, WATCH_SCRIPT, TREE_SCRIPT],
    ids=["basic", "watch", "tree"],
)
def test_shell_against_apache_zookeeper_matches_zkcli(
    zookeeper_server: ApacheZooKeeper, script: str
) -> None:
    # Same server, two shells: only the shell differs.
    theirs = run_zkcli(make_root(zookeeper_server.address), script)
    ours = run_shell(make_root(zookeeper_server.address), script=script)
    assert_same_output(ours.stdout, theirs.stdout)


def test_config_and_chroot(corral_server: CorralServer, zookeeper_server: ApacheZooKeeper) -> None:
    script = "config\nconfig -s\nconfig -c\nls /\ncreate /in x\nls /\n"
    theirs = run_zkcli(make_root(zookeeper_server.address), script)
    server = make_root(corral_server.address)
    ours = run_shell(server, script=script)
    assert_same_output(ours.stdout, theirs.stdout)
    # The chroot really is one: seen from the root, /in is under it.
    root = server[len(corral_server.address) :]
    outside = run_shell(corral_server.address, "ls", root)
    assert outside.stdout.splitlines()[-1] == "[in]"


# --------------------------------------------------------------------------- exit codes


def test_one_command_exit_codes(corral_server: CorralServer) -> None:
    server = make_root(corral_server.address)
    created = run_shell(server, "create", "/one", "data")
    assert created.returncode == 0, created.stdout
    assert "Created /one" in created.stdout
    got = run_shell(server, "get", "/one")
    assert (got.returncode, got.stdout.splitlines()[-1]) == (0, "data")
    missing = run_shell(server, "get", "/missing")
    assert missing.returncode == 1
    assert missing.stdout.splitlines()[-1] == "Node does not exist: /missing"
    unknown = run_shell(server, "bogus")
    assert unknown.returncode == 127
    assert unknown.stdout.splitlines()[-1] == "Command not found: Command not found bogus"
    usage = run_shell(server, "get")
    assert (usage.returncode, usage.stdout.splitlines()[-1]) == (1, "get [-s] [-w] path")


def test_deleteall_failure_is_reported(corral_server: CorralServer) -> None:
    # Nobody may delete children of /guarded (no `d` permission): the batch fails whole.
    server = make_root(corral_server.address)
    result = run_shell(
        server,
        script="create /guarded x world:anyone:crwa\ncreate /guarded/c\ndeleteall /guarded\n",
    )
    assert result.returncode == 1
    assert result.stdout.splitlines()[-1] == "Failed to delete some node(s) in the subtree!"
    assert run_shell(server, "ls", "/guarded").stdout.splitlines()[-1] == "[c]"
    bad = run_shell(server, "deleteall", "/guarded", "-b", "x")
    assert (bad.returncode, bad.stdout.splitlines()[-1]) == (1, "-b argument must be an int value")


def test_failed_addauth_is_reported_and_the_session_goes_on(corral_server: CorralServer) -> None:
    result = run_shell(make_root(corral_server.address), script="addauth nosuch x\nls /\n")
    assert result.returncode == 1
    lines = result.stdout.splitlines()
    assert "WatchedEvent state:AuthFailed type:None path:null" in lines
    assert "KeeperErrorCode = AuthFailed" in lines
    assert lines[-1] == "[]"  # the session was resumed without the refused credential


def test_stdin_exit_code_reports_any_failure(corral_server: CorralServer) -> None:
    server = make_root(corral_server.address)
    ok = run_shell(server, script="create /s1\nls /\n")
    assert ok.returncode == 0, ok.stdout
    failed_then_ok = run_shell(server, script="get /missing\nls /\n")
    assert failed_then_ok.returncode == 1
    assert failed_then_ok.stdout.splitlines()[-1] == "[s1]"  # went on after the failure


def test_closed_output_stops_the_shell_quietly(corral_server: CorralServer, tmp_path: Path) -> None:
    # `corral shell ... < script | head -1`: the reader leaves early.
    script = tmp_path / "script"
    script.write_text("ls /\n" * 20_000)
    with script.open() as stdin:
        process = subprocess.Popen(
            shell_command(make_root(corral_server.address)),
            stdin=stdin,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            assert process.stdout is not None and process.stderr is not None
            assert process.stdout.readline().startswith("Connecting to ")
            process.stdout.close()
            code = process.wait(timeout=RUN_TIMEOUT_S)
            errors = process.stderr.read()
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
    assert code == 1
    assert errors == ""  # no traceback


def test_unreachable_server_fails_with_one_line() -> None:
    result = run_shell("127.0.0.1:1", "ls", "/", timeout_ms=1_000)
    assert result.returncode == 1
    assert result.stdout.splitlines()[-1] == "Unable to connect to 127.0.0.1:1 within 1000 ms"


# --------------------------------------------------------------------------- the REPL


def spawn_repl(server: str, history_path: Path) -> pexpect.spawn:
    env = dict(os.environ)
    env.update(
        {
            "TERM": "xterm",
            "PROMPT_TOOLKIT_NO_CPR": "1",  # pexpect answers no cursor-position requests
            "CORRAL_SHELL_HISTORY": str(history_path),
            "PYTHONUNBUFFERED": "1",
        }
    )
    command = shell_command(server)
    return pexpect.spawn(
        command[0],
        command[1:],
        env=env,
        encoding="utf-8",
        timeout=PEXPECT_TIMEOUT_S,
        dimensions=(40, 200),
    )


def test_repl_prompt_completion_history_and_watch_events(
    corral_server: CorralServer, tmp_path: Path
) -> None:
    server = make_root(corral_server.address)
    child = spawn_repl(server, tmp_path / "history")
    try:
        child.expect(re.escape(f"[zk: {server}(CONNECTED) 0]"))
        child.sendline("create /alpha one")
        child.expect("Created /alpha")
        child.expect(re.escape("(CONNECTED) 1]"))
        # A command name, then a znode path, completed with Tab.
        # The terminal shows what completion inserted (the rest of the word); the
        # command's output proves the line held the completed words.
        child.send("getAc\t")
        child.expect("cl")
        child.send(" /alp\t")
        child.expect("ha")
        child.sendline("")
        child.expect(re.escape("'world,'anyone"))
        child.expect(re.escape("(CONNECTED) 2]"))
        # A watch event arrives while the prompt waits for input.
        child.sendline("get -w /alpha")
        child.expect("one")
        child.expect(re.escape("(CONNECTED) 3]"))
        with SyncClient(corral_server.address, timeout_s=10) as zk:
            zk.set(server[len(corral_server.address) :] + "/alpha", b"two")
        child.expect(re.escape("WatchedEvent state:SyncConnected type:NodeDataChanged path:/alpha"))
        # Up-arrow recalls the previous line.
        child.send("\x1b[A")
        child.expect(re.escape("get -w /alpha"))
        child.sendline("")
        child.expect("two")
        child.expect(re.escape("(CONNECTED) 4]"))
        child.sendline("get /missing")
        child.expect(re.escape("Node does not exist: /missing"))
        child.expect(re.escape("(CONNECTED) 5]"))
        child.sendline("quit")
        child.expect(re.escape(CLOSED_EVENT))
        child.expect(pexpect.EOF)
    finally:
        child.close(force=True)
    assert child.exitstatus == 1  # `get /missing` failed
    assert "get -w /alpha" in (tmp_path / "history").read_text()


def test_repl_ctrl_d_leaves_cleanly(corral_server: CorralServer, tmp_path: Path) -> None:
    child = spawn_repl(make_root(corral_server.address), tmp_path / "history")
    try:
        child.expect(re.escape("(CONNECTED) 0]"))
        child.sendline("ls /")
        child.expect(re.escape("[]"))
        child.expect(re.escape("(CONNECTED) 1]"))  # keys typed before it may be lost
        child.sendcontrol("d")
        child.expect(pexpect.EOF)
    finally:
        child.close(force=True)
    assert child.exitstatus == 0


# --------------------------------------------------------------------------- formats


def test_split_words_like_zkcli() -> None:
    assert split_words("create /a 'x y' \"p q\" z") == ["create", "/a", "x y", "p q", "z"]
    assert split_words("  ls   /  ") == ["ls", "/"]
    assert split_words("set /a ''") == ["set", "/a", ""]
    assert split_words('create /a "x') == ["create", "/a", "x"]  # as zkCli.sh's regex


def test_parse_options_like_commons_cli() -> None:
    parsed = parse_options(["ls", "-sw", "/a"], {"s": False, "w": False, "R": False})
    assert parsed.words == ["ls", "/a"] and parsed.has("s") and parsed.has("w")
    parsed = parse_options(["set", "-v3", "/a", "-1"], {"s": False, "v": True})
    assert parsed.words == ["set", "/a", "-1"] and parsed.value("v") == "3"
    parsed = parse_options(["removewatches", "/a", "-c"], {"c": False})
    assert parsed.words == ["removewatches", "/a"] and parsed.has("c")
    with pytest.raises(UsageError, match="Unrecognized option: -z"):
        parse_options(["ls", "-z", "/"], {"s": False})
    with pytest.raises(UsageError, match="Missing argument for option: v"):
        parse_options(["set", "-v"], {"v": True})


def test_java_formats() -> None:
    assert java_date(0).endswith(" 1970") and java_date(0)[:3] == "Thu"
    assert perm_string(31) == "cdrwa" and perm_string(1) == "r" and perm_string(0) == ""
    acl, warnings = parse_acl("digest:u:h=:cd,world:anyone:rq,bad")
    assert [(a.id.scheme, a.id.id, a.perms) for a in acl] == [
        ("digest", "u:h=", 12),
        ("world", "anyone", 1),
    ]
    assert warnings == ["Unknown perm type: q", "bad does not have the form scheme:id:perm"]
    assert (
        java_path_error("/a//b")
        == 'Invalid path string "/a//b" caused by empty node name specified @3'
    )
    assert java_path_error("/a/", sequential=True) is None
    assert format_event(KeeperState.SYNC_CONNECTED, EventType.NODE_CREATED, "/a")[-1] == (
        "WatchedEvent state:SyncConnected type:NodeCreated path:/a"
    )


def test_connect_and_close_match_zkcli(
    corral_server: CorralServer, zookeeper_server: ApacheZooKeeper
) -> None:
    def script(server: str) -> str:
        return f"create /c1\nclose\nls /\nconnect {server}\nls /\nstat /c2\n"

    zk_server = make_root(zookeeper_server.address)
    theirs = run_zkcli(zk_server, script(zk_server))
    our_server = make_root(corral_server.address)
    ours = run_shell(our_server, script=script(our_server))
    assert "Not connected" in ours.stdout and "[c1]" in ours.stdout
    assert_same_output(ours.stdout, theirs.stdout)


def test_session_events_printed_when_the_server_goes(tmp_path: Path) -> None:
    with CorralServer() as server:
        root = make_root(server.address)
        command = shell_command(root)
        shell = pexpect.popen_spawn.PopenSpawn(command, encoding="utf-8", timeout=PEXPECT_TIMEOUT_S)
        try:
            shell.sendline("create /k v")
            shell.expect("Created /k")
            server.stop()
            shell.expect(re.escape("WatchedEvent state:Disconnected type:None path:null"))
            shell.sendline("printwatches")
            shell.expect("printwatches is on")  # local commands work without a server
            shell.sendeof()
            shell.expect(pexpect.EOF)
        finally:
            if shell.proc.poll() is None:
                shell.kill(signal.SIGKILL)
            shell.wait()
        assert shell.exitstatus == 0


def test_repl_ctrl_c_interrupts_a_waiting_command(
    corral_server: CorralServer, tmp_path: Path
) -> None:
    child = spawn_repl(make_root(corral_server.address), tmp_path / "history")
    try:
        child.expect(re.escape("(CONNECTED) 0]"))
        child.sendline("connect 127.0.0.1:1")  # nobody listens there: it waits 10 s
        child.expect(re.escape("connect 127.0.0.1:1"))
        # A Ctrl-C typed before the command really starts is a key for the prompt (it
        # clears the next line, harmlessly); send it until the command hears it.
        for _ in range(20):
            child.sendintr()
            if child.expect(["Interrupted", pexpect.TIMEOUT], timeout=0.5) == 0:
                break
        else:
            pytest.fail("Ctrl-C never interrupted the command")
        # Whether the Ctrl-C landed before or after `connect` closed the old session
        # depends on timing (both are right); either way the shell goes on. A Ctrl-C
        # still in flight may clear this line: type it until it runs.
        for _ in range(10):
            child.sendline("version")
            if child.expect(["corral shell version", pexpect.TIMEOUT], timeout=2) == 0:
                break
        else:
            pytest.fail("the shell did not go on after the interrupt")
        # Ctrl-D only once the next prompt is up: typed while `version` still runs, the
        # terminal (cooked then) swallows it as an end-of-file nobody reads.
        child.expect(r"\((?:CONNECTED|CLOSED)\) \d+\]")
        child.sendcontrol("d")
        child.expect(pexpect.EOF)
    finally:
        child.close(force=True)
    assert child.exitstatus == 130  # its last failed command: the interrupted `connect`
