"""zoo.cfg parsing: ZooKeeper's keys and defaults, strictness where ZooKeeper is strict."""

from __future__ import annotations

from pathlib import Path

import pytest

from corral.server.config import (
    DEFAULT_FOUR_LETTER_WHITELIST,
    ConfigError,
    build_config,
    load_config,
    parse_properties,
)


def test_properties_syntax() -> None:
    text = "# comment\n! also\ntickTime=2000\ndataDir : /var/zk\nclientPort 2181\nlong=a\\\n  b\n\n"
    assert parse_properties(text) == {
        "tickTime": "2000",
        "dataDir": "/var/zk",
        "clientPort": "2181",
        "long": "ab",
    }


def test_defaults_follow_zookeeper() -> None:
    config = build_config({})
    assert config.tick_time_ms == 2000
    assert config.client_port == 2181
    assert config.max_client_cnxns == 60
    assert config.min_session_timeout_effective_ms == 4000
    assert config.max_session_timeout_effective_ms == 40000
    assert config.jute_max_buffer == 0xFFFFF
    assert config.extended_types_enabled is False
    assert config.four_letter_whitelist == DEFAULT_FOUR_LETTER_WHITELIST
    assert "cons" not in config.four_letter_whitelist


def test_session_timeouts_follow_tick_time() -> None:
    config = build_config({"tickTime": "500"})
    assert (config.min_session_timeout_effective_ms, config.max_session_timeout_effective_ms) == (
        1000,
        10000,
    )
    config = build_config(
        {"tickTime": "500", "minSessionTimeout": "3000", "maxSessionTimeout": "9000"}
    )
    assert (config.min_session_timeout_effective_ms, config.max_session_timeout_effective_ms) == (
        3000,
        9000,
    )
    with pytest.raises(ConfigError):
        build_config({"minSessionTimeout": "9000", "maxSessionTimeout": "5000"})


def test_system_property_spellings_and_whitelist() -> None:
    config = build_config(
        {
            "zookeeper.extendedTypesEnabled": "true",
            "4lw.commands.whitelist": "ruok, cons",
            "DigestAuthenticationProvider.superDigest": "super:abc=",
            "jute.maxbuffer": "2097152",
        }
    )
    assert config.extended_types_enabled is True
    assert config.four_letter_whitelist == {"ruok", "cons", "srvr"}  # srvr is always on
    assert config.super_digest == "super:abc="
    assert config.jute_max_buffer == 2097152


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("tickTime", "0"),
        ("tickTime", "abc"),
        ("extendedTypesEnabled", "maybe"),
        ("server.1", "127.0.0.1:2888"),
        ("server.1", "127.0.0.1:2888:2888"),
        ("server.0", "127.0.0.1:2888:3888"),
        ("server.1", "127.0.0.1:2888:3888:voter"),
        ("jute.maxbuffer", "10"),
    ],
)
def test_bad_values_are_refused(key: str, value: str) -> None:
    with pytest.raises(ConfigError):
        build_config({key: value})


def test_unknown_keys_are_kept_not_fatal() -> None:
    config = build_config({"someFutureKey": "1"})
    assert config.unknown == {"someFutureKey": "1"}


def test_load_config_with_overrides(tmp_path: Path) -> None:
    path = tmp_path / "zoo.cfg"
    path.write_text("tickTime=3000\nclientPort=2222\ndataDir=/tmp/x\n")
    config = load_config(str(path), {"clientPort": "3333"})
    assert (config.tick_time_ms, config.client_port, config.data_dir) == (3000, 3333, "/tmp/x")
    assert "tickTime=3000" in config.source_text
    with pytest.raises(ConfigError):
        load_config(str(tmp_path / "missing.cfg"))


def test_ensemble_lines_and_myid(tmp_path: Path) -> None:
    (tmp_path / "myid").write_text("2\n")
    path = tmp_path / "zoo.cfg"
    path.write_text(
        f"dataDir={tmp_path}\n"
        "ensemble.secret=s3cret\n"
        "server.1=10.0.0.1:2888:3888\n"
        "server.2=10.0.0.2:2888:3888;2181\n"
        "server.3=10.0.0.3:2888:3888:participant;0.0.0.0:2181\n"
        "server.4=10.0.0.4:2888:3888:observer\n"
    )
    config = load_config(str(path))
    assert config.is_ensemble
    assert config.my_id == 2
    replica = config.replica_config()
    assert (replica.replica_id, replica.voters, replica.learners) == (2, (1, 2, 3), (4,))
    member = config.members[2]
    assert (member.host, member.quorum_port, member.client_host, member.client_port) == (
        "10.0.0.3",
        2888,
        "0.0.0.0",
        2181,
    )
    (tmp_path / "myid").write_text("9\n")
    with pytest.raises(ConfigError):
        load_config(str(path))


def test_a_single_server_line_is_standalone() -> None:
    config = build_config({"server.1": "127.0.0.1:2888:3888"})
    assert not config.is_ensemble
    assert config.replica_config().voter_ids == (1,)


@pytest.mark.parametrize("key", ["readonlymode.enabled", "zookeeper.readonlymode.enabled"])
def test_read_only_mode_reaches_the_replica(key: str) -> None:
    assert not build_config({}).replica_config().read_only_mode_enabled
    config = build_config({key: "true"})
    assert config.read_only_mode_enabled and config.replica_config().read_only_mode_enabled
    with pytest.raises(ConfigError):
        build_config({key: "maybe"})


def test_init_limit_sync_limit_and_dial_addresses() -> None:
    members = {f"server.{n}": f"10.0.0.{n}:2888:3888" for n in (1, 2, 3)}
    config = build_config(
        {
            **members,
            "myid": "1",
            "ensemble.secret": "k",
            "tickTime": "200",
            "initLimit": "7",
            "syncLimit": "3",
            "peer.dialAddress.2": "127.0.0.1:40002",
        }
    )
    replica = config.replica_config()
    assert (replica.init_limit_ticks, replica.sync_limit_ticks) == (7, 3)
    assert (replica.init_timeout_ms, replica.sync_timeout_ms) == (1400, 600)
    assert config.peer_dial_address(config.members[1]) == ("127.0.0.1", 40002)
    assert config.peer_dial_address(config.members[2]) == ("10.0.0.3", 2888)
    defaults = build_config({**members, "myid": "1", "ensemble.secret": "k"}).replica_config()
    assert (defaults.init_limit_ticks, defaults.sync_limit_ticks) == (10, 1)
    for bad in (
        {"syncLimit": "0"},
        {"initLimit": "x"},
        {"peer.dialAddress.1": "127.0.0.1:1"},  # this server itself
        {"peer.dialAddress.9": "127.0.0.1:1"},  # not a member
        {"peer.dialAddress.2": "40002"},
        {"peer.dialAddress.2": "127.0.0.1:70000"},
    ):
        with pytest.raises(ConfigError):
            build_config({**members, "myid": "1", "ensemble.secret": "k", **bad})


def test_an_ensemble_needs_a_secret_and_admin_never_shows_it(tmp_path: Path) -> None:
    members = {f"server.{n}": f"10.0.0.{n}:2888:3888" for n in (1, 2, 3)}
    with pytest.raises(ConfigError, match=r"ensemble\.secret"):
        build_config({**members, "myid": "1"})
    path = tmp_path / "zoo.cfg"
    path.write_text(
        "tickTime=2000\nmyid=1\nensemble.secret = hunter2\n"
        + "".join(f"{k}={v}\n" for k, v in members.items())
    )
    config = load_config(str(path))
    assert config.ensemble_secret == "hunter2"
    assert "hunter2" not in config.source_text_redacted
    assert "tickTime=2000\n" in config.source_text_redacted
    assert "ensemble.secret=<redacted>\n" in config.source_text_redacted
