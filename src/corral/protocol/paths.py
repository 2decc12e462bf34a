"""ZooKeeper path rules (PathUtils.validatePath), parent and child names.

Rules: pure functions on str. Characters are judged as UTF-16 code units, as Java
does, so any supplementary-plane character (a surrogate pair in Java) is invalid.
"""

from __future__ import annotations

import re

# U+0000-U+001F, U+007F-U+009F, U+D800-U+F8FF, U+FFF0-U+FFFF, and anything beyond the BMP
# (which Java sees as surrogates, U+D800-U+DFFF).
_BAD_CHARS = re.compile(
    "[\u0000-\u001f\u007f-\u009f\ud800-\uf8ff\ufff0-\uffff\U00010000-\U0010ffff]"
)


def path_error(path: str | None) -> str | None:
    """Why `path` is not a valid znode path, or None if it is."""
    if not path:
        return "path must not be empty"
    if path[0] != "/":
        return "path must start with /"
    if path == "/":
        return None
    if path[-1] == "/":
        return "path must not end with /"
    match = _BAD_CHARS.search(path)
    if match is not None:
        return f"invalid character U+{ord(match.group()):04X} at {match.start()}"
    for segment in path[1:].split("/"):
        if segment == "":
            return "empty segment"
        if segment in (".", ".."):
            return f"relative segment {segment!r}"
    return None


def is_valid_path(path: str | None) -> bool:
    return path_error(path) is None


def parent_path(path: str) -> str:
    """The parent of `path` ('/' for top-level names). `path` need not be valid."""
    index = path.rfind("/")
    if index <= 0:
        return "/"
    return path[:index]


def child_name(path: str) -> str:
    return path[path.rfind("/") + 1 :]


def join_path(parent: str, name: str) -> str:
    return parent + name if parent == "/" else parent + "/" + name
