"""ACLs and authentication: digest ids, ACL validation and expansion, permission checks.

Rules (server-semantics §11):
* Pure functions over records; no state. The caller's identities are a tuple of `Id`
  (an `ip` identity for the connection address, `digest` ids from auth packets and
  `Id("super", "")` when a digest matched the configured super digest).
* Schemes known here: world, auth (expanded, never stored), digest, ip (IPv4 and, as
  in 3.9.4+, IPv6). Every other scheme (sasl, x509, super, custom) has no provider,
  so it is invalid inside an ACL and never matches.
* super bypasses every check; an empty ACL list allows everything; skip_acl allows
  everything.
* Identities are listed (auth expansion, whoAmI) in ZooKeeper's hash-set order
  (javaorder.py), because clients can see that order.
* Nothing here knows about znodes, sessions or sockets.
"""

from __future__ import annotations

import base64
import hashlib
import ipaddress
from collections.abc import Iterable

from corral.limits import ACL_ENTRIES_MAX
from corral.protocol.constants import Perm
from corral.protocol.records import ACL, OPEN_ACL_UNSAFE, READ_ACL_UNSAFE, ClientInfo, Id
from corral.tree.javaorder import concurrent_set_order

SUPER_ID = Id(scheme="super", id="")
# Providers whose identities count as "authenticated" for the `auth` scheme (ip does not).
_AUTHENTICATED_SCHEMES = frozenset({"digest"})


def digest(credential: str) -> str:
    """`user:password` -> `user:base64(sha1(user:password))` (the user is before the 1st ':')."""
    user = credential.split(":", 1)[0]
    hashed = hashlib.sha1(credential.encode("utf-8", errors="surrogatepass")).digest()
    return user + ":" + base64.b64encode(hashed).decode("ascii")


def authenticate(
    scheme: str, auth: bytes | None, *, super_digest: str | None
) -> tuple[Id, ...] | None:
    """The identities an auth packet adds, or None for AUTH_FAILED."""
    if scheme == "digest":
        # Java decodes the credential with the platform charset; UTF-8 here.
        credential = (auth or b"").decode("utf-8", errors="replace")
        identity = Id(scheme="digest", id=digest(credential))
        if super_digest is not None and identity.id == super_digest:
            return (identity, SUPER_ID)
        return (identity,)
    if scheme == "ip":
        # The connection already holds its ip identity: success, nothing new.
        return ()
    return None


def _java_split_colon(text: str) -> list[str]:
    """Java's String.split(":"): trailing empty parts are dropped."""
    if text == "":
        return [""]
    parts = text.split(":")
    while parts and parts[-1] == "":
        parts.pop()
    return parts


def _parse_ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """A literal IPv4 (four decimal parts 0-255, as Java parses them) or IPv6 address."""
    if ":" in text:
        try:
            return ipaddress.IPv6Address(text)
        except ValueError:
            return None
    parts = text.split(".")
    if len(parts) != 4:
        return None
    octets = []
    for part in parts:
        if not part.isdigit() or not part.isascii() or len(part) > 3:
            return None
        value = int(part)
        if value > 255:
            return None
        octets.append(value)
    return ipaddress.IPv4Address(bytes(octets))


def _parse_ip_acl(
    expression: str,
) -> tuple[ipaddress.IPv4Address | ipaddress.IPv6Address, int] | None:
    """`addr` or `addr/bits` -> (address, prefix bits); None if invalid."""
    address_text, slash, bits_text = expression.partition("/")
    address = _parse_ip(address_text)
    if address is None:
        return None
    width = address.max_prefixlen
    if not slash:
        return address, width
    if not bits_text.isdigit() or not bits_text.isascii():
        return None
    bits = int(bits_text)
    if bits > width:
        return None
    return address, bits


def _ip_matches(expression: str, caller: str) -> bool:
    parsed = _parse_ip_acl(expression)
    caller_address = _parse_ip(caller)
    if parsed is None or caller_address is None:
        return False
    acl_address, bits = parsed
    if acl_address.version != caller_address.version:
        return False
    width = acl_address.max_prefixlen
    mask = ((1 << bits) - 1) << (width - bits) if bits else 0
    return (int(acl_address) & mask) == (int(caller_address) & mask)


def _id_is_valid(identity: Id) -> bool:
    if identity.scheme == "digest":
        return len(_java_split_colon(identity.id)) == 2
    if identity.scheme == "ip":
        return _parse_ip_acl(identity.id) is not None
    return False


def fix_acl(acl: Iterable[ACL] | None, identities: Iterable[Id]) -> tuple[ACL, ...] | None:
    """Validate and expand an ACL list for create/setACL (§11.3); None = INVALID_ACL."""
    if acl is None:
        return None
    # world:anyone alone, as the request decoder shares these lists: valid and final as is.
    if acl is OPEN_ACL_UNSAFE:
        return OPEN_ACL_UNSAFE
    if acl is READ_ACL_UNSAFE:
        return READ_ACL_UNSAFE
    unique: list[ACL] = []
    for entry in acl:
        if entry not in unique:
            unique.append(entry)
        if len(unique) > ACL_ENTRIES_MAX:
            return None
    if not unique:
        return None
    callers = tuple(identities)
    result: list[ACL] = []
    for entry in unique:
        scheme = entry.id.scheme
        if scheme == "world":
            if entry.id.id != "anyone":
                return None
            result.append(entry)
        elif scheme == "auth":
            expanded = [
                ACL(perms=entry.perms, id=identity)
                for identity in concurrent_set_order(callers)
                if identity.scheme in _AUTHENTICATED_SCHEMES
            ]
            if not expanded:
                return None
            result.extend(expanded)
        elif _id_is_valid(entry.id):
            result.append(entry)
        else:
            return None
    if len(result) > ACL_ENTRIES_MAX:
        return None
    return tuple(result)


def check_acl(
    acl: Iterable[ACL], perm: Perm, identities: Iterable[Id], *, skip_acl: bool = False
) -> bool:
    """Whether identities hold `perm` on a node with `acl` (§11.4)."""
    if skip_acl:
        return True
    entries = acl if isinstance(acl, tuple) else tuple(acl)
    if not entries:
        return True
    callers = identities if isinstance(identities, tuple) else tuple(identities)
    bit = int(perm)  # IntFlag arithmetic is slow; this runs for every read and event
    # The entries before super: the answer is the same (any match allows), and the
    # common world:anyone entry then answers without a scan of the caller's identities.
    for entry in entries:
        if not entry.perms & bit:
            continue
        scheme = entry.id.scheme
        if scheme == "world":
            if entry.id.id == "anyone":
                return True
        elif scheme == "digest":
            if any(c.scheme == "digest" and c.id == entry.id.id for c in callers):
                return True
        elif scheme == "ip" and any(
            c.scheme == "ip" and _ip_matches(entry.id.id, c.id) for c in callers
        ):
            return True
    return any(identity.scheme == "super" for identity in callers)


def mask_digests(acl: Iterable[ACL]) -> tuple[ACL, ...]:
    """getACL without ADMIN: every digest id `user:hash` becomes `user:x`."""
    return tuple(
        ACL(perms=entry.perms, id=Id(scheme="digest", id=entry.id.id.split(":", 1)[0] + ":x"))
        if entry.id.scheme == "digest" and ":" in entry.id.id
        else entry
        for entry in acl
    )


def who_am_i(identities: Iterable[Id]) -> tuple[ClientInfo, ...]:
    """One (scheme, user) per identity, in ZooKeeper's set order: ip -> address,
    digest -> user, super -> ''."""
    infos = []
    for identity in concurrent_set_order(identities):
        if identity.scheme == "digest":
            user = identity.id.split(":", 1)[0]
        elif identity.scheme == "super":
            user = ""
        else:
            user = identity.id
        infos.append(ClientInfo(auth_scheme=identity.scheme, user=user))
    return tuple(infos)
