"""zoo.cfg: the same keys and defaults as Apache ZooKeeper, plus command-line overrides.

Rules: parsing is strict where ZooKeeper is strict (booleans of known keys accept only
true/false; min > max session timeout is an error) and lenient where it is lenient
(unknown keys are kept and logged, not fatal). ZooKeeper reads some settings only as
JVM system properties (`zookeeper.X`); corral accepts both spellings in zoo.cfg, with or
without the `zookeeper.` prefix, and `jute.maxbuffer` too (see docs/compatibility.md).
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass, field, replace
from pathlib import Path

from corral import limits
from corral.replica.replica import ReplicaConfig

log = logging.getLogger(__name__)

DEFAULT_DATA_DIR = "./data"
DEFAULT_CLIENT_PORT = 2181
# The AdminServer (HTTP) is on by default on all interfaces, port 8080, as in ZooKeeper
# (docs/compatibility.md): a ZooKeeper user's `curl host:8080/commands/ruok` works.
DEFAULT_ADMIN_SERVER_ADDRESS = "0.0.0.0"
DEFAULT_ADMIN_SERVER_PORT = 8080
DEFAULT_ADMIN_IDLE_TIMEOUT_MS = 30_000
DEFAULT_ADMIN_COMMAND_URL = "/commands"

# corral's default four-letter-word whitelist: the cheap, read-only ones (ZooKeeper's
# default is srvr alone, which breaks monitoring tools). Costly or state-changing words
# (cons, crst, srst, dump, wchc, wchp, stmk, gtmk, hash) must be listed to be enabled.
DEFAULT_FOUR_LETTER_WHITELIST: frozenset[str] = frozenset(
    {"ruok", "srvr", "stat", "mntr", "isro", "conf", "envi", "dirs", "wchs"}
)

_ALIASES = {
    # system-property spellings accepted in zoo.cfg
    "zookeeper.extendedTypesEnabled": "extendedTypesEnabled",
    "zookeeper.skipACL": "skipACL",
    "zookeeper.enforceQuota": "enforceQuota",
    "zookeeper.4lw.commands.whitelist": "4lw.commands.whitelist",
    "zookeeper.DigestAuthenticationProvider.superDigest": (
        "DigestAuthenticationProvider.superDigest"
    ),
    "zookeeper.jute.maxbuffer": "jute.maxbuffer",
    "zookeeper.readonlymode.enabled": "readonlymode.enabled",
    "zookeeper.snapCount": "snapCount",
    "zookeeper.preAllocSize": "preAllocSize",
    "zookeeper.forceSync": "forceSync",
    "zookeeper.maxCnxns": "maxCnxns",
    "zookeeper.admin.enableServer": "admin.enableServer",
    "zookeeper.admin.serverAddress": "admin.serverAddress",
    "zookeeper.admin.serverPort": "admin.serverPort",
    "zookeeper.admin.idleTimeout": "admin.idleTimeout",
    "zookeeper.admin.commandURL": "admin.commandURL",
}

_KNOWN_IGNORED = {
    # Accepted for compatibility; they change nothing in corral (yet).
    "electionAlg",
    "standaloneEnabled",
    "reconfigEnabled",
    "clientPortListenBacklog",
    "globalOutstandingLimit",
    "maxResponseCacheSize",
    "maxGetChildrenResponseCacheSize",
    "digest.enabled",
    "metricsProvider.className",
    "metricsProvider.httpHost",
    "metricsProvider.httpPort",
    "metricsProvider.exportJvmInfo",
    "syncEnabled",
    "snapSizeLimitInKb",
    "localSessionsEnabled",
    "localSessionsUpgradingEnabled",
    "audit.enable",
}


class ConfigError(ValueError):
    pass


@dataclass(frozen=True, slots=True, kw_only=True)
class Member:
    """One `server.N=host:quorumPort:electionPort[:participant|observer][;[host:]clientPort]`."""

    replica_id: int
    host: str
    quorum_port: int  # corral's replica-to-replica link (the election port is unused)
    election_port: int
    observer: bool = False
    client_host: str = ""
    client_port: int = 0


def parse_member(key: str, value: str) -> Member:
    """Parse a zoo.cfg `server.N` line as ZooKeeper writes it."""
    try:
        replica_id = int(key.removeprefix("server."))
    except ValueError:
        raise ConfigError(f"{key}: N must be a number") from None
    if not 1 <= replica_id <= 254:
        raise ConfigError(f"{key}: N must be 1..254")
    server_part, _, client_part = value.partition(";")
    fields = server_part.strip().split(":")
    if len(fields) not in (3, 4):
        raise ConfigError(f"{key}: expected host:quorumPort:electionPort[:role], got {value!r}")
    role = fields[3].strip() if len(fields) == 4 else "participant"
    if role not in ("participant", "observer"):
        raise ConfigError(f"{key}: role must be participant or observer, got {role!r}")
    quorum_port = _parse_int(key, fields[1], minimum=1)
    election_port = _parse_int(key, fields[2], minimum=1)
    if quorum_port == election_port:
        raise ConfigError(f"{key}: quorum and election ports must differ")
    client_host, client_port = "", 0
    if client_part.strip():
        host_port = client_part.strip().rsplit(":", 1)
        if len(host_port) == 2:
            client_host = host_port[0]
        client_port = _parse_int(key, host_port[-1], minimum=1)
    return Member(
        replica_id=replica_id,
        host=fields[0].strip(),
        quorum_port=quorum_port,
        election_port=election_port,
        observer=role == "observer",
        client_host=client_host,
        client_port=client_port,
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class ServerConfig:
    data_dir: str = DEFAULT_DATA_DIR
    data_log_dir: str = ""  # "" = data_dir
    client_port: int = DEFAULT_CLIENT_PORT
    client_port_address: str = "0.0.0.0"
    tick_time_ms: int = limits.TICK_TIME_DEFAULT_MS
    max_client_cnxns: int = limits.MAX_CLIENT_CNXNS_DEFAULT
    max_cnxns: int = 0  # total connections; 0 = unlimited
    min_session_timeout_ms: int = 0  # 0: 2 x tickTime
    max_session_timeout_ms: int = 0  # 0: 20 x tickTime
    four_letter_whitelist: frozenset[str] = DEFAULT_FOUR_LETTER_WHITELIST
    jute_max_buffer: int = limits.FRAME_SIZE_MAX
    extended_types_enabled: bool = False
    skip_acl: bool = False
    enforce_quota: bool = False
    super_digest: str | None = None
    container_check_interval_ms: int = limits.CONTAINER_CHECK_INTERVAL_DEFAULT_MS
    container_max_per_minute: int = limits.CONTAINER_DELETES_PER_MINUTE_MAX
    container_max_never_used_ms: int = 0
    snap_count: int = 100_000
    pre_alloc_size_kb: int = 65_536
    force_sync: bool = True
    autopurge_snap_retain_count: int = 3
    autopurge_purge_interval_hours: int = 0
    admin_enabled: bool = True
    admin_server_address: str = DEFAULT_ADMIN_SERVER_ADDRESS
    admin_server_port: int = DEFAULT_ADMIN_SERVER_PORT  # 0: any free port
    admin_idle_timeout_ms: int = DEFAULT_ADMIN_IDLE_TIMEOUT_MS
    admin_command_url: str = DEFAULT_ADMIN_COMMAND_URL
    members: tuple[Member, ...] = ()  # the ensemble; () = standalone
    init_limit_ticks: int = limits.INIT_LIMIT_DEFAULT_TICKS  # initLimit, in tickTimes
    sync_limit_ticks: int = limits.SYNC_LIMIT_DEFAULT_TICKS  # syncLimit, in tickTimes
    # peer.dialAddress.N: dial replica N here instead of at its server.N quorum address
    # (a port-forward, or a test's fault-injecting proxy); its identity stays N.
    peer_dial_addresses: dict[int, tuple[str, int]] = field(default_factory=dict)
    my_id: int = 1  # this server's N (dataDir/myid, or the `myid` key)
    ensemble_secret: str = ""  # shared by the members; peers prove they know it
    read_only_mode_enabled: bool = False  # readonlymode.enabled: serve reads without quorum
    source_text: str = ""  # the zoo.cfg text, for `conf`/diagnostics
    unknown: dict[str, str] = field(default_factory=dict)

    @property
    def source_text_redacted(self) -> str:
        """The zoo.cfg text with the ensemble secret blanked out, for anything that shows
        the file to operators (the AdminServer's initial_configuration)."""
        lines = []
        for line in self.source_text.splitlines(keepends=True):
            stripped = line.strip()
            if stripped and stripped[0] not in "#!":
                key, _ = _split_property(stripped)
                if _ALIASES.get(key, key) == "ensemble.secret":
                    line = "ensemble.secret=<redacted>\n"
            lines.append(line)
        return "".join(lines)

    @property
    def log_dir(self) -> str:
        return self.data_log_dir or self.data_dir

    @property
    def is_ensemble(self) -> bool:
        return len(self.members) > 1

    def peer_dial_address(self, member: Member) -> tuple[str, int]:
        """Where this server dials `member`'s quorum link."""
        return self.peer_dial_addresses.get(member.replica_id, (member.host, member.quorum_port))

    def membership_text(self) -> str:
        """The ensemble's members as ZooKeeper prints its quorum configuration (in `conf`
        and as the data of /zookeeper/config): one
        `server.N=host:quorumPort:electionPort:role[;clientHost:clientPort]` line per member
        (the client part only where the member's line gave one), then `version=` (0: the
        static configuration; corral has no reconfig)."""
        lines = []
        for member in sorted(self.members, key=lambda m: m.replica_id):
            role = "observer" if member.observer else "participant"
            line = (
                f"server.{member.replica_id}={member.host}:{member.quorum_port}"
                f":{member.election_port}:{role}"
            )
            if member.client_port:
                line += f";{member.client_host or '0.0.0.0'}:{member.client_port}"
            lines.append(line + "\n")
        return "".join(lines) + "version=0"

    def replica_config(self) -> ReplicaConfig:
        voters = tuple(m.replica_id for m in self.members if not m.observer)
        learners = tuple(m.replica_id for m in self.members if m.observer)
        return ReplicaConfig(
            replica_id=self.my_id if self.is_ensemble else 1,
            voters=voters if self.is_ensemble else (),
            learners=learners if self.is_ensemble else (),
            tick_time_ms=self.tick_time_ms,
            init_limit_ticks=self.init_limit_ticks,
            sync_limit_ticks=self.sync_limit_ticks,
            min_session_timeout_ms=self.min_session_timeout_ms,
            max_session_timeout_ms=self.max_session_timeout_ms,
            max_client_cnxns=self.max_client_cnxns,
            read_only_mode_enabled=self.read_only_mode_enabled,
            extended_types_enabled=self.extended_types_enabled,
            skip_acl=self.skip_acl,
            enforce_quota=self.enforce_quota,
            super_digest=self.super_digest,
            container_check_interval_ms=self.container_check_interval_ms,
            container_max_per_minute=self.container_max_per_minute,
            container_max_never_used_ms=self.container_max_never_used_ms,
            config_znode_data=self.membership_text().encode() if self.is_ensemble else b"",
        )

    @property
    def min_session_timeout_effective_ms(self) -> int:
        return self.min_session_timeout_ms or 2 * self.tick_time_ms

    @property
    def max_session_timeout_effective_ms(self) -> int:
        return self.max_session_timeout_ms or 20 * self.tick_time_ms


def parse_properties(text: str) -> dict[str, str]:
    """Java-properties lines: `key=value`, `key: value` or `key value`; # and ! comments."""
    result: dict[str, str] = {}
    logical = ""
    for raw in text.splitlines():
        line = raw.strip() if not logical else raw.lstrip()
        if not logical and (not line or line[0] in "#!"):
            continue
        if line.endswith("\\") and not line.endswith("\\\\"):
            logical += line[:-1]
            continue
        logical += line
        key, value = _split_property(logical)
        result[key] = value
        logical = ""
    if logical:
        key, value = _split_property(logical)
        result[key] = value
    return result


def _split_property(line: str) -> tuple[str, str]:
    for index, char in enumerate(line):
        if char in "=:":
            return line[:index].strip(), line[index + 1 :].strip()
        if char.isspace():
            rest = line[index:].strip()
            if rest[:1] in ("=", ":"):
                rest = rest[1:].strip()
            return line[:index].strip(), rest
    return line.strip(), ""


def _parse_bool(key: str, value: str) -> bool:
    lowered = value.strip().lower()
    if lowered in ("true", "yes"):
        return True
    if lowered in ("false", "no"):
        return False
    raise ConfigError(f"{key}: expected true or false, got {value!r}")


def _parse_int(key: str, value: str, *, minimum: int | None = None) -> int:
    try:
        number = int(value.strip())
    except ValueError:
        raise ConfigError(f"{key}: expected an integer, got {value!r}") from None
    if minimum is not None and number < minimum:
        raise ConfigError(f"{key}: must be >= {minimum}, got {number}")
    return number


def build_config(properties: dict[str, str], *, source_text: str = "") -> ServerConfig:
    """Interpret zoo.cfg keys (already merged with overrides) into a ServerConfig."""
    config = ServerConfig(source_text=source_text)
    changes: dict[str, object] = {}
    unknown: dict[str, str] = {}
    members: list[Member] = []
    dial_addresses: dict[int, tuple[str, int]] = {}
    client_port_seen = False
    for raw_key, value in properties.items():
        key = _ALIASES.get(raw_key, raw_key)
        if key == "tickTime":
            changes["tick_time_ms"] = _parse_int(key, value, minimum=1)
        elif key == "initLimit":
            changes["init_limit_ticks"] = _parse_int(key, value, minimum=1)
        elif key == "syncLimit":
            changes["sync_limit_ticks"] = _parse_int(key, value, minimum=1)
        elif key == "dataDir":
            changes["data_dir"] = value
        elif key == "dataLogDir":
            changes["data_log_dir"] = value
        elif key == "clientPort":
            changes["client_port"] = _parse_int(key, value, minimum=0)
            client_port_seen = True
        elif key == "clientPortAddress":
            changes["client_port_address"] = value
        elif key == "maxClientCnxns":
            changes["max_client_cnxns"] = _parse_int(key, value, minimum=0)
        elif key == "maxCnxns":
            changes["max_cnxns"] = _parse_int(key, value, minimum=0)
        elif key == "minSessionTimeout":
            changes["min_session_timeout_ms"] = max(0, _parse_int(key, value))
        elif key == "maxSessionTimeout":
            changes["max_session_timeout_ms"] = max(0, _parse_int(key, value))
        elif key == "4lw.commands.whitelist":
            words = {w.strip() for w in value.split(",") if w.strip()}
            changes["four_letter_whitelist"] = frozenset(words) | {"srvr"}
        elif key == "jute.maxbuffer":
            size = _parse_int(key, value, minimum=1024)
            if size > limits.FRAME_SIZE_HARD_MAX:
                raise ConfigError(f"jute.maxbuffer: at most {limits.FRAME_SIZE_HARD_MAX}")
            changes["jute_max_buffer"] = size
        elif key == "extendedTypesEnabled":
            changes["extended_types_enabled"] = _parse_bool(key, value)
        elif key == "skipACL":
            changes["skip_acl"] = _parse_bool(key, value)
        elif key == "enforceQuota":
            changes["enforce_quota"] = _parse_bool(key, value)
        elif key == "DigestAuthenticationProvider.superDigest":
            changes["super_digest"] = value or None
        elif key in (
            "znode.container.checkIntervalMs",
            "zookeeper.znode.container.checkIntervalMs",
        ):
            changes["container_check_interval_ms"] = _parse_int(key, value, minimum=1)
        elif key in ("znode.container.maxPerMinute", "zookeeper.znode.container.maxPerMinute"):
            changes["container_max_per_minute"] = _parse_int(key, value, minimum=1)
        elif key in (
            "znode.container.maxNeverUsedIntervalMs",
            "zookeeper.znode.container.maxNeverUsedIntervalMs",
        ):
            changes["container_max_never_used_ms"] = _parse_int(key, value, minimum=0)
        elif key == "snapCount":
            changes["snap_count"] = _parse_int(key, value, minimum=2)
        elif key == "preAllocSize":
            changes["pre_alloc_size_kb"] = _parse_int(key, value, minimum=1)
        elif key == "forceSync":
            changes["force_sync"] = _parse_bool(key, value)
        elif key == "autopurge.snapRetainCount":
            changes["autopurge_snap_retain_count"] = max(3, _parse_int(key, value))
        elif key == "autopurge.purgeInterval":
            changes["autopurge_purge_interval_hours"] = _parse_int(key, value, minimum=0)
        elif key == "admin.enableServer":
            changes["admin_enabled"] = _parse_bool(key, value)
        elif key == "admin.serverAddress":
            changes["admin_server_address"] = value
        elif key == "admin.serverPort":
            port = _parse_int(key, value, minimum=0)
            if port > 65_535:
                raise ConfigError(f"{key}: must be <= 65535, got {port}")
            changes["admin_server_port"] = port
        elif key == "admin.idleTimeout":
            changes["admin_idle_timeout_ms"] = _parse_int(key, value, minimum=1)
        elif key == "admin.commandURL":
            url = value.strip()
            if not url.startswith("/") or any(c in url for c in "?# \t"):
                raise ConfigError(f"{key}: expected a path such as /commands, got {value!r}")
            changes["admin_command_url"] = url.rstrip("/") or "/"
        elif key.startswith("peer.dialAddress."):
            dial_id = _parse_int(key, key.removeprefix("peer.dialAddress."), minimum=1)
            host, _, port_text = value.strip().rpartition(":")
            if not host:
                raise ConfigError(f"{key}: expected host:port, got {value!r}")
            dial_port = _parse_int(key, port_text, minimum=1)
            if dial_port > 65_535:
                raise ConfigError(f"{key}: port must be <= 65535, got {dial_port}")
            dial_addresses[dial_id] = (host, dial_port)
        elif key.startswith("server."):
            members.append(parse_member(key, value))
        elif key == "myid":
            changes["my_id"] = _parse_int(key, value, minimum=1)
        elif key == "ensemble.secret":
            changes["ensemble_secret"] = value
        elif key == "readonlymode.enabled":
            changes["read_only_mode_enabled"] = _parse_bool(key, value)
        elif key == "dynamicConfigFile":
            raise ConfigError(f"{key}: dynamic reconfiguration is not supported")
        elif key in _KNOWN_IGNORED:
            log.info("zoo.cfg: %s is accepted and has no effect in corral", key)
        else:
            unknown[key] = value
    if (
        "clientPortAddress" in properties
        and not client_port_seen
        and "clientPort" not in properties
    ):
        raise ConfigError("clientPortAddress is set but clientPort is not")
    members.sort(key=lambda m: m.replica_id)
    if len({m.replica_id for m in members}) != len(members):
        raise ConfigError("two server.N lines with the same N")
    changes["members"] = tuple(members)
    changes["peer_dial_addresses"] = dial_addresses
    config = replace(config, **changes, unknown=unknown)  # type: ignore[arg-type]
    if config.is_ensemble:
        if config.my_id not in {m.replica_id for m in members}:
            raise ConfigError(f"myid {config.my_id} is not one of the server.N lines")
        if not any(not m.observer for m in members):
            raise ConfigError("an ensemble needs at least one participant")
        if not config.ensemble_secret:
            # Without it anything that reaches a quorum port could vote and write.
            raise ConfigError("an ensemble needs ensemble.secret (the same on every member)")
    for dial_id in dial_addresses:
        if dial_id not in {m.replica_id for m in members} or dial_id == config.my_id:
            raise ConfigError(f"peer.dialAddress.{dial_id}: not another server.N of this ensemble")
    if config.min_session_timeout_effective_ms > config.max_session_timeout_effective_ms:
        raise ConfigError("minSessionTimeout must not be larger than maxSessionTimeout")
    for key in unknown:
        log.warning("zoo.cfg: unknown key %s (ignored)", key)
    return config


def load_config(path: str | None, overrides: dict[str, str] | None = None) -> ServerConfig:
    """Read zoo.cfg (if given), apply `overrides` (key -> value) on top, and interpret."""
    text = ""
    properties: dict[str, str] = {}
    if path is not None:
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as e:
            raise ConfigError(f"cannot read {path}: {e.strerror}") from None
        properties = parse_properties(text)
    properties.update(overrides or {})
    if "myid" not in properties and any(k.startswith("server.") for k in properties):
        # ZooKeeper reads the server's N from dataDir/myid.
        myid_path = Path(properties.get("dataDir", DEFAULT_DATA_DIR)) / "myid"
        # A one-member "ensemble" needs none; otherwise build_config says it is missing.
        with contextlib.suppress(OSError):
            properties["myid"] = myid_path.read_text(encoding="utf-8").strip()
    return build_config(properties, source_text=text)
