"""DataTree: error precedence (§6.2), create modes, per-op permissions (§11.5), reads.

Tests named test_NN_* are server-semantics §27 edge case NN.
"""

from __future__ import annotations

import pytest

from corral.protocol.constants import ErrorCode, OpCode, Perm
from corral.protocol.records import (
    ACL,
    OPEN_ACL_UNSAFE,
    GetACLResponse,
    GetEphemeralsRequest,
    GetEphemeralsResponse,
    Id,
    StatResponse,
)
from corral.tree.znode import CONTAINER_OWNER
from tests.tree.harness import IP, S1, S2, SUPER, Harness, acl, digest_id

OK = ErrorCode.OK
ALICE = digest_id("alice:secret")
BOB = digest_id("bob:pw")
TTL_ON = {"extended_types_enabled": True}


# --------------------------------------------------------------------------- create flags / TTL


@pytest.mark.parametrize("flags", [7, -1, 100])
def test_34_bad_flags_beat_everything(flags: int) -> None:
    h = Harness()
    assert h.create("/missing/x", flags=flags, acl=()).err == ErrorCode.BAD_ARGUMENTS
    assert h.create("/x", flags=flags).err == ErrorCode.BAD_ARGUMENTS


def test_35_ttl_flags_on_non_ttl_opcode_and_vice_versa() -> None:
    h = Harness(**TTL_ON)
    for opcode in (OpCode.CREATE, OpCode.CREATE2, OpCode.CREATE_CONTAINER):
        for flags in (5, 6):
            assert h.create("/x", flags=flags, opcode=opcode).err == ErrorCode.BAD_ARGUMENTS
    for flags in (0, 1, 4):
        result = h.create("/x", flags=flags, opcode=OpCode.CREATE_TTL, ttl_ms=1000)
        assert result.err == ErrorCode.BAD_ARGUMENTS
    assert h.tree.get("/x") is None


@pytest.mark.parametrize("flags", [0, 1, 2, 3, 4])
def test_33_create_ttl_with_non_ttl_flags_and_negative_ttl(flags: int) -> None:
    for options in ({}, TTL_ON):
        h = Harness(**options)
        result = h.create("/x", flags=flags, opcode=OpCode.CREATE_TTL, ttl_ms=-1)
        assert result.err == ErrorCode.BAD_ARGUMENTS
        assert h.create("/ok").err == OK  # the tree is still usable


def test_36_ttl_needs_extended_types() -> None:
    h = Harness()
    result = h.create("/x", flags=5, opcode=OpCode.CREATE_TTL, ttl_ms=1000)
    assert result.err == ErrorCode.UNIMPLEMENTED
    # §6.2 order: UNIMPLEMENTED (step 2) comes before the TTL consistency check (step 3).
    assert h.create("/x", flags=5, opcode=OpCode.CREATE2).err == ErrorCode.UNIMPLEMENTED


def test_37_ttl_range() -> None:
    h = Harness(**TTL_ON)
    ttl = OpCode.CREATE_TTL
    assert h.create("/a", flags=5, opcode=ttl, ttl_ms=0).err == ErrorCode.BAD_ARGUMENTS
    assert h.create("/a", flags=5, opcode=ttl, ttl_ms=1099511627776).err == (
        ErrorCode.BAD_ARGUMENTS
    )
    assert h.create("/a", flags=5, opcode=ttl, ttl_ms=1099511627775).err == OK
    assert h.create("/b", flags=6, opcode=ttl, ttl_ms=1).body.path == "/b0000000001"  # type: ignore[union-attr]


def test_117_flags_4_on_create_is_plain_persistent_and_container_opcode_makes_container() -> None:
    h = Harness()
    h.create("/plain", flags=4, opcode=OpCode.CREATE2)
    h.create("/box", flags=0, opcode=OpCode.CREATE_CONTAINER)
    h.create("/box2", flags=1, opcode=OpCode.CREATE_CONTAINER)  # ephemeral flag ignored (§24)
    assert h.tree.get("/plain").ephemeral_owner == 0  # type: ignore[union-attr]
    assert h.tree.get("/box").ephemeral_owner == CONTAINER_OWNER  # type: ignore[union-attr]
    assert h.tree.get("/box2").is_container  # type: ignore[union-attr]
    assert h.tree.ephemerals(S1) == frozenset()
    assert h.stat("/box").ephemeral_owner == 0


def test_sequential_container() -> None:
    h = Harness()
    result = h.create("/c-", flags=2, opcode=OpCode.CREATE_CONTAINER)
    assert result.body.path == "/c-0000000000"  # type: ignore[union-attr]
    assert h.tree.get("/c-0000000000").is_container  # type: ignore[union-attr]


def test_119_ttl_and_container_hide_owner_and_allow_ephemeral_children() -> None:
    h = Harness(**TTL_ON)
    result = h.create("/t", flags=5, opcode=OpCode.CREATE_TTL, ttl_ms=5000)
    assert result.body.stat.ephemeral_owner == 0  # type: ignore[union-attr]
    h.create("/c", opcode=OpCode.CREATE_CONTAINER)
    assert h.stat("/t").ephemeral_owner == h.stat("/c").ephemeral_owner == 0
    assert h.create("/t/e", flags=1).err == OK
    assert h.create("/c/e", flags=3).err == OK
    assert h.stat("/t/e").ephemeral_owner == S1


# --------------------------------------------------------------------------- create precedence


def test_38_invalidacl_beats_nonode() -> None:
    h = Harness()
    assert h.create("/missing/x", acl=()).err == ErrorCode.INVALID_ACL


def test_39_noauth_beats_nodeexists() -> None:
    h = Harness()
    no_create = (acl(Perm.ALL & ~Perm.CREATE, "world", "anyone"),)
    h.create("/p")
    h.create("/p/c")
    h.set_acl("/p", no_create)
    assert h.create("/p/c").err == ErrorCode.NO_AUTH
    assert h.create("/p/new").err == ErrorCode.NO_AUTH


def test_40_41_children_of_ephemerals() -> None:
    h = Harness()
    h.create("/e", flags=1)
    assert h.create("/e/c").err == ErrorCode.NO_CHILDREN_FOR_EPHEMERALS
    assert h.create("/e/c", flags=2).err == ErrorCode.NO_CHILDREN_FOR_EPHEMERALS
    assert h.create("/e").err == ErrorCode.NODE_EXISTS


def test_create_path_check_before_acl() -> None:
    h = Harness()
    assert h.create("noslash", acl=()).err == ErrorCode.BAD_ARGUMENTS


def test_create_full_validation_after_noauth() -> None:
    h = Harness()
    h.create("/p", acl=(acl(Perm.READ, "world", "anyone"),))
    assert h.create("/p/.").err == ErrorCode.NO_AUTH


def test_session_must_exist() -> None:
    h = Harness()
    for result in (
        h.create("/x", session=S2),
        h.delete("/zookeeper", session=S2),
        h.set_data("/", b"", session=S2),
        h.multi(session=S2),
        h.write(OpCode.CLOSE_SESSION, None, session=S2),
    ):
        assert (result.err, result.body, result.events) == (ErrorCode.SESSION_EXPIRED, None, ())
    assert h.tree.get("/x") is None


# --------------------------------------------------------------------------- permissions per op


def locked(perms: int) -> tuple[ACL, ...]:
    """World gets `perms`; alice gets everything."""
    return (acl(perms, "world", "anyone"), ACL(perms=Perm.ALL, id=ALICE))


@pytest.mark.parametrize(
    ("perm", "operation"),
    [
        (Perm.CREATE, lambda h, ids: h.create("/p/new", ids=ids)),
        (Perm.DELETE, lambda h, ids: h.delete("/p/c", ids=ids)),
        (Perm.WRITE, lambda h, ids: h.set_data("/p", b"x", ids=ids)),
        (Perm.ADMIN, lambda h, ids: h.set_acl("/p", OPEN_ACL_UNSAFE, ids=ids)),
        (Perm.READ, lambda h, ids: h.multi((OpCode.CHECK, _check("/p", -1)), ids=ids)),
    ],
)
def test_write_permissions(perm: Perm, operation) -> None:  # type: ignore[no-untyped-def]
    h = Harness()
    h.create("/p")
    h.create("/p/c")
    h.set_acl("/p", locked(Perm.ALL & ~perm))
    denied = operation(h, (IP,))
    if denied.body is not None and hasattr(denied.body, "results"):
        assert denied.body.results[0].err == ErrorCode.NO_AUTH
    else:
        assert denied.err == ErrorCode.NO_AUTH
    for ids in ((IP, ALICE), (IP, SUPER)):
        h2 = Harness()
        h2.create("/p")
        h2.create("/p/c")
        h2.set_acl("/p", locked(Perm.ALL & ~perm))
        allowed = operation(h2, ids)
        assert allowed.err == OK
        if hasattr(allowed.body, "results"):
            assert allowed.body.results[0].err == 0
            assert allowed.body.results[0].type == OpCode.CHECK


def _check(path: str, version: int):  # type: ignore[no-untyped-def]
    from corral.protocol.records import CheckVersionRequest

    return CheckVersionRequest(path=path, version=version)


def test_skip_acl_allows_everything() -> None:
    h = Harness(skip_acl=True)
    assert h.set_data("/zookeeper/config", b"x").err == OK
    h.create("/p", acl=(acl(0, "world", "anyone"),))
    assert h.get_data("/p")[0] == OK


def test_49_noauth_beats_nonode_of_target() -> None:
    h = Harness()
    h.create("/p", acl=locked(Perm.ALL & ~Perm.DELETE))
    assert h.delete("/p/missing").err == ErrorCode.NO_AUTH


def test_52_deleting_a_node_with_perms_0_under_an_open_parent() -> None:
    h = Harness()
    h.create("/p")
    h.create("/p/c", acl=(acl(0, "world", "anyone"),))
    assert h.delete("/p/c").err == OK


def test_54_noauth_beats_badversion_on_set_data() -> None:
    h = Harness()
    h.create("/p", acl=locked(Perm.ALL & ~Perm.WRITE))
    assert h.set_data("/p", b"", version=42).err == ErrorCode.NO_AUTH
    assert h.set_data("/p", b"", version=42, ids=(IP, ALICE)).err == ErrorCode.BAD_VERSION


def test_58_set_acl_noauth_then_badversion() -> None:
    h = Harness()
    h.create("/p", acl=locked(Perm.ALL & ~Perm.ADMIN))
    assert h.set_acl("/p", OPEN_ACL_UNSAFE, version=7).err == ErrorCode.NO_AUTH
    assert h.set_acl("/p", OPEN_ACL_UNSAFE, version=7, ids=(IP, ALICE)).err == (
        ErrorCode.BAD_VERSION
    )


def test_62_63_acl_expansion_is_stored() -> None:
    h = Harness()
    assert h.create("/a", acl=(acl(31, "auth", ""),)).err == ErrorCode.INVALID_ACL
    h.create("/a", acl=(*OPEN_ACL_UNSAFE, acl(7, "auth", "")), ids=(IP, ALICE, BOB))
    assert h.tree.get("/a").acl == (  # type: ignore[union-attr]
        *OPEN_ACL_UNSAFE,
        ACL(perms=7, id=ALICE),
        ACL(perms=7, id=BOB),
    )


def test_64_ip_acl_in_the_tree() -> None:
    h = Harness()
    h.create("/net", acl=(acl(Perm.ALL, "ip", "127.1.2.3/8"),))
    h.create("/ten", acl=(acl(Perm.ALL, "ip", "10.0.0.0/8"),))
    assert h.get_data("/net")[0] == OK
    assert h.get_data("/ten")[0] == ErrorCode.NO_AUTH
    other = (Id(scheme="ip", id="10.1.1.1"),)
    assert h.get_data("/ten", ids=other)[0] == OK


def test_65_get_acl_masking_and_permissions() -> None:
    h = Harness()
    entries = (ACL(perms=Perm.READ, id=ALICE), ACL(perms=Perm.ADMIN, id=BOB))
    h.create("/a", acl=entries)
    stat = h.stat("/a")
    masked = (ACL(perms=Perm.READ, id=Id(scheme="digest", id="alice:x")), entries[1])
    masked = (masked[0], ACL(perms=Perm.ADMIN, id=Id(scheme="digest", id="bob:x")))
    assert h.get_acl("/a", ids=(IP, ALICE)) == (OK, GetACLResponse(acl=masked, stat=stat))
    assert h.get_acl("/a", ids=(IP, BOB)) == (OK, GetACLResponse(acl=entries, stat=stat))
    h.create("/w", acl=(acl(Perm.WRITE, "world", "anyone"),))
    assert h.get_acl("/w") == (ErrorCode.NO_AUTH, None)
    assert h.get_acl("/missing") == (ErrorCode.NO_NODE, None)


def test_61_odd_perms_round_trip_through_get_acl() -> None:
    h = Harness()
    entries = (acl(0xFF, "world", "anyone"),)
    h.create("/a", acl=entries)
    assert h.get_acl("/a")[1] == GetACLResponse(acl=entries, stat=h.stat("/a"))


def test_66_exists_needs_read_on_existing_nodes() -> None:
    h = Harness()
    h.create("/secret", acl=(ACL(perms=Perm.ALL, id=ALICE),))
    assert h.exists("/secret") == (ErrorCode.NO_AUTH, None)
    assert h.exists("/secret", ids=(IP, ALICE)) == (OK, StatResponse(stat=h.stat("/secret")))
    assert h.exists("/secret/missing") == (ErrorCode.NO_NODE, None)


def test_67_reads_need_read() -> None:
    h = Harness()
    h.create("/secret", acl=(acl(Perm.ALL & ~Perm.READ, "world", "anyone"),))
    for reader in (h.get_data, h.get_children, h.get_children2, h.all_children_number):
        assert reader("/secret") == (ErrorCode.NO_AUTH, None)
        assert reader("/secret", ids=(IP, SUPER))[0] == OK


def test_70_super_reads_perms_0_and_writes_config() -> None:
    h = Harness()
    h.create("/zero", acl=(acl(0, "world", "anyone"),))
    assert h.get_data("/zero", ids=(IP, SUPER))[0] == OK
    assert h.set_data("/zookeeper/config", b"cfg", ids=(IP, SUPER)).err == OK


# --------------------------------------------------------------------------- ephemerals read


def test_72_get_ephemerals_is_per_session_and_prefix_based() -> None:
    h = Harness(sessions=(S1, S2))
    h.create("/x")
    h.create("/x/eph1", flags=1)
    h.create("/x/eph2", flags=3)  # -> /x/eph20000000001
    h.create("/x/other", flags=1)
    h.create("/x/theirs", flags=1, session=S2)

    def ephemerals(prefix: str, session: int = S1) -> tuple[str, ...]:
        err, body = h.read(
            OpCode.GET_EPHEMERALS, GetEphemeralsRequest(prefix_path=prefix), session=session
        )
        assert err == OK
        assert isinstance(body, GetEphemeralsResponse)
        return tuple(sorted(body.ephemerals))

    mine = ("/x/eph1", "/x/eph20000000001", "/x/other")
    assert ephemerals("/") == ephemerals("") == ephemerals("  ") == mine
    assert ephemerals("/x/eph") == ("/x/eph1", "/x/eph20000000001")
    assert ephemerals("/nomatch") == ()
    assert ephemerals("/", session=S2) == ("/x/theirs",)
    assert h.tree.ephemeral_count == 4


def test_53_any_session_may_delete_another_sessions_ephemeral() -> None:
    h = Harness(sessions=(S1, S2))
    h.create("/e", flags=1, session=S2)
    assert h.delete("/e", session=S1).err == OK
    assert h.tree.ephemerals(S2) == frozenset()
    assert S2 in h.tree.sessions


# --------------------------------------------------------------------------- event ACLs


def test_110_111_events_carry_the_acl_that_decides_delivery() -> None:
    h = Harness()
    parent_acl = (ACL(perms=Perm.ALL, id=ALICE), acl(Perm.READ, "world", "anyone"))
    child_acl = (ACL(perms=Perm.ALL, id=BOB),)
    h.create("/p", acl=parent_acl)
    created = h.create("/p/c", acl=child_acl, ids=(IP, ALICE))
    assert [(e.type, e.path, e.acl) for e in created.events] == [
        (1, "/p/c", child_acl),
        (4, "/p", parent_acl),
    ]
    changed = h.set_data("/p/c", b"x", ids=(IP, BOB))
    assert [(e.type, e.path, e.acl) for e in changed.events] == [(3, "/p/c", child_acl)]
    deleted = h.delete("/p/c", ids=(IP, ALICE))
    assert [(e.type, e.path, e.acl) for e in deleted.events] == [
        (2, "/p/c", child_acl),
        (4, "/p", parent_acl),
    ]


def test_93_failed_writes_and_set_acl_fire_nothing() -> None:
    h = Harness()
    h.create("/a")
    assert h.set_data("/a", b"x", version=5).events == ()
    assert h.set_acl("/a", OPEN_ACL_UNSAFE).events == ()
    assert h.delete("/a", version=3).events == ()
    assert h.create("/a").events == ()
