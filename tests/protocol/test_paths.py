"""paths.py against server-semantics §5.1 and wire-protocol §9.4, including what the jute
reader makes of bytes that are not valid UTF-8."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from corral.protocol.connection import Request
from corral.protocol.constants import OpCode
from corral.protocol.jute import Reader
from corral.protocol.paths import child_name, is_valid_path, join_path, parent_path, path_error
from corral.protocol.records import CreateRequest

from .vectors_util import connected_server, h

VALID = [
    "/",
    "/a",
    "/a/b/c",
    "/zookeeper",
    "/a/zookeeper",
    "/.a",
    "/a.",
    "/...",
    "/a/.b/c..",
    "/a b",
    "/ ",
    "/\u0020",  # first character after the control range
    "/\u007e",  # last before DEL
    "/\u00a0",  # first after the C1 range (verified 3.8)
    "/é",
    "/日本",
    "/\ud7ff",  # last before the surrogates
    "/\uf900",  # first after the private-use area
    "/\uffef",  # last before U+FFF0
    "/" + "x" * 10_000,  # no length limit but the frame
]

INVALID = [
    None,
    "",
    "a",
    "noslash",
    "a/b",
    "/a/",
    "/a/b/",
    "//",
    "//a",
    "/a//b",
    "/.",
    "/..",
    "/a/.",
    "/a/..",
    "/a/./b",
    "/a/../b",
    "/\u0000",
    "/a\u0000b",
    "/\u0001",
    "/\u001f",
    "/\u007f",
    "/\u0080",
    "/\u009f",
    "/\ud800",  # lone surrogates
    "/\udfff",
    "/\ue000",  # private use
    "/\uf8ff",
    "/\ufff0",
    "/\ufffd",  # the replacement character: invalid UTF-8 on the wire lands here
    "/\uffff",
    "/\U0001f600",  # supplementary plane: a surrogate pair in Java (verified 3.8)
    "/\U00010000",
    "/\U0010ffff",
]


@pytest.mark.parametrize("path", VALID)
def test_valid(path: str) -> None:
    assert path_error(path) is None
    assert is_valid_path(path)


@pytest.mark.parametrize("path", INVALID)
def test_invalid(path: str | None) -> None:
    error = path_error(path)
    assert isinstance(error, str)
    assert error
    assert not is_valid_path(path)


def _java_validate(path: str) -> bool:
    """PathUtils.validatePath, restated over UTF-16 code units as Java sees the string."""
    if not path or path[0] != "/":
        return False
    if path == "/":
        return True
    if path[-1] == "/":
        return False
    units = path.encode("utf-16-be", errors="surrogatepass")
    codes = [int.from_bytes(units[i : i + 2], "big") for i in range(0, len(units), 2)]
    for c in codes:
        if c == 0 or 0x01 <= c <= 0x1F or 0x7F <= c <= 0x9F:
            return False
        if 0xD800 <= c <= 0xF8FF or 0xFFF0 <= c <= 0xFFFF:
            return False
    return all(segment not in ("", ".", "..") for segment in path[1:].split("/"))


path_like = st.lists(
    st.sampled_from(["/", ".", "a", "é", "\u0000", "\u001f", "\u009f", "\ufffd", "😀", "\ue000"]),
    max_size=8,
).map("".join) | st.text(max_size=10).map(lambda s: "/" + s)


@settings(max_examples=200, deadline=None, print_blob=True)
@given(path=path_like)
def test_agrees_with_a_utf16_restatement(path: str) -> None:
    assert (path_error(path) is None) == _java_validate(path), repr(path)


def _decoded_path(raw: bytes) -> str:
    value = Reader(len(raw).to_bytes(4, "big") + raw).ustring()
    assert value is not None
    return value


def test_invalid_utf8_decodes_to_replacement_and_is_rejected() -> None:
    for raw in (b"/\xff", b"/a\xc3", b"/\x80b", b"/\xc0\xaf"):
        path = _decoded_path(raw)
        assert "\ufffd" in path
        assert not is_valid_path(path)


def test_java_cesu8_supplementary_character_is_paired_and_rejected() -> None:
    # Java's writer sends U+1F600 as two 3-byte surrogate encodings.
    path = _decoded_path(b"/" + h("eda0bd edb880"))
    assert path == "/\U0001f600"
    assert not is_valid_path(path)
    assert _decoded_path("/\U0001f600".encode()) == path


def test_lone_surrogate_bytes_never_escape_as_surrogates() -> None:
    # Was a bug: "surrogatepass" let a lone half through as a str that cannot be encoded.
    for raw in (b"/" + h("eda080"), b"/" + h("edb880") + b"x", b"/" + h("eda0bd")):
        path = _decoded_path(raw)
        assert path.encode("utf-8")  # strict: no surrogate left
        assert "\ufffd" in path
        assert not is_valid_path(path)


def test_valid_utf8_is_decoded_strictly() -> None:
    assert _decoded_path("/é/日本".encode()) == "/é/日本"
    assert _decoded_path(b"/plain") == "/plain"


def test_server_hands_invalid_paths_on_for_the_tree_to_judge() -> None:
    # Records carry what the peer sent; validation answers BADARGUMENTS later.
    body = h("00000003 2fff41 ffffffff 00000000 00000000")
    payload = h("00000001 00000001") + body
    server = connected_server()
    server.receive_data(len(payload).to_bytes(4, "big") + payload)
    event = server.next_event()
    assert isinstance(event, Request)
    assert event.opcode == OpCode.CREATE
    assert event.request == CreateRequest(path="/\ufffdA", data=None, acl=(), flags=0)


@pytest.mark.parametrize(
    ("path", "parent", "child"),
    [
        ("/a", "/", "a"),
        ("/a/b", "/a", "b"),
        ("/a/b/c", "/a/b", "c"),
        ("/", "/", ""),
    ],
)
def test_parent_and_child(path: str, parent: str, child: str) -> None:
    assert parent_path(path) == parent
    assert child_name(path) == child
    if path != "/":
        assert join_path(parent, child) == path


def test_parent_of_sequential_trailing_slash() -> None:
    # "/q/" + sequential suffix: the parent of "/q/" is "/q" (wire-protocol §4.3).
    assert parent_path("/q/") == "/q"
    assert parent_path("/q/0000000004") == "/q"
    assert parent_path("/0000000004") == "/"
