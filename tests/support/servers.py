"""One configuration, two servers: how a test asks for ZooKeeper and corral alike.

Rules: a ServerSpec says what the test needs in ZooKeeper's vocabulary (zoo.cfg keys
and JVM system properties); `start_zookeeper` and `start_corral` translate it for
each server, so a differential test never configures the two differently by
accident. corral takes every setting as `--set KEY=VALUE` (zoo.cfg keys; system
properties without their `zookeeper.` prefix, as zoo.cfg would spell them).
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass, field

import pytest

from corral.cli.launch import (
    ZOOKEEPER_INSTALL_HINT,
    ApacheZooKeeper,
    CorralServer,
    zookeeper_available,
)

SUPER_PASSWORD = "super-secret"
# base64(sha1("super:super-secret")), what DigestAuthenticationProvider.generateDigest gives.
SUPER_DIGEST = "super:2KCAOlea08rlrYvOZvQwvrr82Jc="


@dataclass(frozen=True, slots=True, kw_only=True)
class ServerSpec:
    tick_time_ms: int = 2_000
    zoo_cfg: dict[str, str] = field(default_factory=dict)  # e.g. {"maxSessionTimeout": ...}
    # JVM system properties for ZooKeeper; corral gets them as --set with the
    # "zookeeper." prefix removed (zoo.cfg spelling).
    system_properties: dict[str, str] = field(default_factory=dict)

    def corral_settings(self) -> dict[str, str]:
        settings = dict(self.zoo_cfg)
        for key, value in self.system_properties.items():
            settings[key.removeprefix("zookeeper.")] = value
        return settings


# The servers shared by most scenarios: everything a scenario may need that does not
# disturb the others (super digest, quota enforcement, a fast container reaper).
SHARED_SPEC = ServerSpec(
    zoo_cfg={"4lw.commands.whitelist": "*", "maxClientCnxns": "0"},
    system_properties={
        "zookeeper.DigestAuthenticationProvider.superDigest": SUPER_DIGEST,
        "zookeeper.enforceQuota": "true",
        "zookeeper.extendedTypesEnabled": "true",
        "znode.container.checkIntervalMs": "1000",
    },
)


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() == "true"


def require_zookeeper() -> None:
    """Skip (or, in CI, fail) when Apache ZooKeeper is not installed."""
    if zookeeper_available():
        return
    message = f"{ZOOKEEPER_INSTALL_HINT}; e.g. `apt-get install -y zookeeper`"
    if in_ci():
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


_corral_server_checked: list[bool] = []


def corral_server_available() -> bool:
    """True once `python -m corral server` exists (it is being written alongside)."""
    if not _corral_server_checked:
        try:
            result = subprocess.run(
                [sys.executable, "-m", "corral", "server", "--help"],
                capture_output=True,
                timeout=30,
                check=False,
            )
            _corral_server_checked.append(result.returncode == 0)
        except (OSError, subprocess.TimeoutExpired):
            _corral_server_checked.append(False)
    return _corral_server_checked[0]


def require_corral_server() -> None:
    if corral_server_available():
        return
    message = (
        "`python -m corral server` is not available (yet); "
        "set CORRAL_DIFF_SELF=1 to run ZooKeeper against itself"
    )
    if in_ci():
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


def self_mode() -> bool:
    """CORRAL_DIFF_SELF=1: compare ZooKeeper with a second ZooKeeper (checks the harness)."""
    return os.environ.get("CORRAL_DIFF_SELF", "") not in ("", "0")


def start_zookeeper(spec: ServerSpec) -> ApacheZooKeeper:
    require_zookeeper()
    return ApacheZooKeeper(
        tick_time_ms=spec.tick_time_ms,
        config=spec.zoo_cfg,
        system_properties=spec.system_properties,
    ).start()


def start_corral(spec: ServerSpec) -> CorralServer:
    require_corral_server()
    return CorralServer(tick_time_ms=spec.tick_time_ms, config=spec.corral_settings()).start()


def start_second(spec: ServerSpec) -> ApacheZooKeeper | CorralServer:
    """Server B of a differential pair: corral, or ZooKeeper again in self mode."""
    if self_mode():
        return start_zookeeper(spec)
    return start_corral(spec)
