"""tree/acl.py: digest ids, auth packets, ACL validation/expansion, checks, whoAmI."""

from __future__ import annotations

import pytest

from corral.protocol.constants import Perm
from corral.protocol.records import ACL, OPEN_ACL_UNSAFE, ClientInfo, Id
from corral.tree.acl import authenticate, check_acl, digest, fix_acl, mask_digests, who_am_i
from tests.tree.harness import IP, SUPER, acl, digest_id

ALICE = digest_id("alice:secret")
BOB = digest_id("bob:pw")


def test_digest_vector_from_the_reference() -> None:
    assert digest("user:pass") == "user:smGaoVKd/cQkjm7b88GyorAUz20="


def test_digest_user_is_before_the_first_colon() -> None:
    assert digest("a:b:c").startswith("a:")
    assert digest("a:b:c") != digest("a:b")


def test_69_digest_auth_without_colon_succeeds() -> None:
    ids = authenticate("digest", b"nocolon", super_digest=None)
    assert ids == (Id(scheme="digest", id=digest("nocolon")),)
    assert ids[0].id.startswith("nocolon:")
    assert who_am_i(ids) == (ClientInfo(auth_scheme="digest", user="nocolon"),)


def test_70_digest_matching_super_digest_adds_super() -> None:
    super_digest = digest("super:adminpw")
    assert authenticate("digest", b"super:adminpw", super_digest=super_digest) == (
        Id(scheme="digest", id=super_digest),
        SUPER,
    )
    assert authenticate("digest", b"super:wrong", super_digest=super_digest) == (
        Id(scheme="digest", id=digest("super:wrong")),
    )


def test_71_ip_auth_adds_nothing_and_whoami_lists_the_address() -> None:
    assert authenticate("ip", b"127.0.0.1", super_digest=None) == ()
    assert who_am_i((IP,)) == (ClientInfo(auth_scheme="ip", user="127.0.0.1"),)


@pytest.mark.parametrize("scheme", ["unknown", "sasl", "x509", "super", "world", "auth", ""])
def test_68_auth_with_unknown_scheme_fails(scheme: str) -> None:
    assert authenticate(scheme, b"x:y", super_digest=None) is None


def test_whoami_lists_identities_in_zookeepers_hash_set_order() -> None:
    alice = digest_id("alice:pw-a")
    bob = digest_id("bob:pw-b")
    # Observed on ZooKeeper 3.8 (differential edge 62): bob before alice, ip last,
    # although ip was the first identity and alice authenticated before bob.
    assert who_am_i((IP, alice, bob)) == (
        ClientInfo(auth_scheme="digest", user="bob"),
        ClientInfo(auth_scheme="digest", user="alice"),
        ClientInfo(auth_scheme="ip", user="127.0.0.1"),
    )
    # wire-protocol §10.9 capture: [("ip", "127.0.0.1"), ("digest", "user")].
    assert who_am_i((IP, digest_id("user:pass"))) == (
        ClientInfo(auth_scheme="ip", user="127.0.0.1"),
        ClientInfo(auth_scheme="digest", user="user"),
    )
    # A set: duplicates collapse.
    assert who_am_i((IP, SUPER, IP)) == who_am_i((IP, SUPER))


def test_whoami_users() -> None:
    infos = set(who_am_i((ALICE, BOB, IP, SUPER)))
    assert infos == {
        ClientInfo(auth_scheme="digest", user="alice"),
        ClientInfo(auth_scheme="digest", user="bob"),
        ClientInfo(auth_scheme="ip", user="127.0.0.1"),
        ClientInfo(auth_scheme="super", user=""),
    }


@pytest.mark.parametrize(
    "bad",
    [
        acl(31, "world", "someone"),
        acl(31, "digest", "a:"),
        acl(31, "digest", "a:b:c"),
        acl(31, "digest", "nocolon"),
        acl(31, "digest", ""),
        acl(31, "ip", "10.0.0.0/33"),
        acl(31, "ip", "localhost"),
        acl(31, "ip", "1.2.3"),
        acl(31, "ip", "1.2.3.256"),
        acl(31, "ip", "1.2.3.4/-1"),
        acl(31, "super", ""),
        acl(31, "x509", "CN=me"),
        acl(31, "sasl", "me"),
        acl(31, "custom", "x"),
    ],
)
def test_59_invalid_acl_entries(bad: ACL) -> None:
    assert fix_acl((bad,), (IP, ALICE)) is None
    assert fix_acl((*OPEN_ACL_UNSAFE, bad), (IP, ALICE)) is None


def test_59_null_and_empty_lists_are_invalid() -> None:
    assert fix_acl(None, (IP,)) is None
    assert fix_acl((), (IP,)) is None


@pytest.mark.parametrize(
    "good",
    [
        acl(31, "digest", ":b"),
        acl(31, "digest", "a:b:"),  # Java's split drops the trailing empty part
        acl(1, "ip", "10.0.0.1"),
        acl(1, "ip", "10.0.0.0/8"),
        acl(1, "ip", "10.0.0.0/0"),
        acl(1, "ip", "10.0.0.0/32"),
        acl(1, "ip", "::1"),
        acl(1, "ip", "fe80::/10"),
    ],
)
def test_valid_acl_entries_are_stored_as_given(good: ACL) -> None:
    assert fix_acl((good,), (IP,)) == (good,)


def test_60_exact_duplicates_collapse_but_perm_variants_stay() -> None:
    read_world = acl(1, "world", "anyone")
    assert fix_acl((*OPEN_ACL_UNSAFE, *OPEN_ACL_UNSAFE), (IP,)) == OPEN_ACL_UNSAFE
    assert fix_acl((*OPEN_ACL_UNSAFE, read_world), (IP,)) == (*OPEN_ACL_UNSAFE, read_world)


def test_61_odd_perms_are_kept() -> None:
    entries = (acl(0, "world", "anyone"), acl(0xFF, "digest", ALICE.id))
    assert fix_acl(entries, (IP,)) == entries


def test_62_auth_scheme_needs_an_authenticated_identity() -> None:
    creator_all = (acl(31, "auth", ""),)
    assert fix_acl(creator_all, (IP,)) is None
    assert fix_acl(creator_all, (IP, SUPER)) is None
    expanded = fix_acl((acl(5, "auth", "ignored"),), (ALICE, IP, BOB))
    assert expanded is not None
    assert set(expanded) == {ACL(perms=5, id=ALICE), ACL(perms=5, id=BOB)}
    # In ZooKeeper's auth-set order (differential edge 62: bob first).
    alice, bob = digest_id("alice:pw-a"), digest_id("bob:pw-b")
    assert fix_acl((acl(13, "auth", ""),), (IP, alice, bob)) == (
        ACL(perms=13, id=bob),
        ACL(perms=13, id=alice),
    )


def test_63_auth_entry_with_world_entry_keeps_both_in_order() -> None:
    entries = (*OPEN_ACL_UNSAFE, acl(31, "auth", ""))
    assert fix_acl(entries, (IP, ALICE)) == (*OPEN_ACL_UNSAFE, ACL(perms=31, id=ALICE))


def test_check_world_and_missing_bit() -> None:
    read_only = (acl(Perm.READ, "world", "anyone"),)
    assert check_acl(read_only, Perm.READ, ())
    assert not check_acl(read_only, Perm.WRITE, (IP, ALICE))


def test_check_empty_acl_allows_everything() -> None:
    assert check_acl((), Perm.ADMIN, ())


def test_check_digest_is_exact() -> None:
    entries = (ACL(perms=Perm.ALL, id=ALICE),)
    assert check_acl(entries, Perm.WRITE, (IP, ALICE))
    assert not check_acl(entries, Perm.WRITE, (IP, BOB))
    assert not check_acl(entries, Perm.WRITE, (Id(scheme="ip", id=ALICE.id),))


def test_check_super_and_skip_acl_bypass() -> None:
    nothing = (acl(0, "world", "anyone"),)
    assert not check_acl(nothing, Perm.READ, (IP, ALICE))
    assert check_acl(nothing, Perm.READ, (IP, SUPER))
    assert check_acl(nothing, Perm.READ, (), skip_acl=True)


@pytest.mark.parametrize(
    ("expression", "caller", "granted"),
    [
        ("127.1.2.3/8", "127.0.0.1", True),  # case 64: host bits in the ACL are ignored
        ("10.0.0.0/8", "127.0.0.1", False),  # case 64
        ("127.0.0.1", "127.0.0.1", True),
        ("127.0.0.2", "127.0.0.1", False),
        ("0.0.0.0/0", "192.168.7.9", True),
        ("192.168.4.0/22", "192.168.7.255", True),
        ("192.168.4.0/22", "192.168.8.0", False),
        ("::1", "::1", True),
        ("::1", "127.0.0.1", False),
        ("fe80::/10", "fe80::1234", True),
        ("fe80::/10", "fec0::1", False),
    ],
)
def test_64_ip_cidr_matching(expression: str, caller: str, granted: bool) -> None:
    entries = (acl(Perm.READ, "ip", expression),)
    assert check_acl(entries, Perm.READ, (Id(scheme="ip", id=caller),)) is granted


def test_65_masking_digest_ids() -> None:
    entries = (ACL(perms=1, id=ALICE), *OPEN_ACL_UNSAFE, acl(1, "digest", "nocolon"))
    assert mask_digests(entries) == (
        acl(1, "digest", "alice:x"),
        *OPEN_ACL_UNSAFE,
        acl(1, "digest", "nocolon"),
    )


def test_acl_entries_limit_at_max_and_max_plus_one() -> None:
    from corral.limits import ACL_ENTRIES_MAX

    entries = tuple(acl(1, "ip", f"10.{i // 256}.{i % 256}.1") for i in range(ACL_ENTRIES_MAX))
    assert fix_acl(entries, (IP,)) == entries
    extra = acl(1, "ip", "11.0.0.1")
    assert fix_acl((*entries, extra), (IP,)) is None
    # Duplicates do not count towards the limit.
    assert fix_acl((*entries, entries[0]), (IP,)) == entries
    # Nor can `auth` expansion push a list past it.
    assert fix_acl((*entries[1:], acl(1, "auth", "")), (ALICE, BOB)) is None
