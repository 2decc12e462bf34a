"""Jute primitives: bounds on every length read, wire encodings of §1.3."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from corral.protocol.errors import DecodeError, LocalProtocolError
from corral.protocol.jute import Reader, Writer

from .vectors_util import h


@pytest.mark.parametrize("prefix", ["fffffffe", "80000000", "00000004", "7fffffff"])
def test_buffer_length_below_minus_one_or_past_the_end(prefix: str) -> None:
    reader = Reader(h(prefix) + b"abc")
    with pytest.raises(DecodeError):
        reader.buffer()


def test_buffer_null_empty_and_exact() -> None:
    assert Reader(h("ffffffff")).buffer() is None
    assert Reader(h("00000000")).buffer() == b""
    reader = Reader(h("00000003 616263 ff"))
    assert reader.buffer() == b"abc"
    assert reader.remaining == 1


@pytest.mark.parametrize("method", ["int32", "int64", "boolean", "buffer", "ustring"])
@pytest.mark.parametrize("data", [b"", b"\x00\x00\x00"])
def test_reading_past_the_end(method: str, data: bytes) -> None:
    if method == "boolean" and data:
        data = b""
    with pytest.raises(DecodeError):
        getattr(Reader(data), method)()


def test_boolean_any_nonzero_is_true() -> None:
    assert [Reader(bytes([b])).boolean() for b in (0, 1, 2, 0x80, 0xFF)] == [
        False,
        True,
        True,
        True,
        True,
    ]
    w = Writer()
    w.boolean(True)
    w.boolean(False)
    assert w.getvalue() == h("01 00")


def test_vector_count_larger_than_the_frame_is_rejected() -> None:
    with pytest.raises(DecodeError):
        Reader(h("00000005 00000000")).string_vector()


@pytest.mark.parametrize(
    ("value", "method"), [(2**31, "int32"), (-(2**31) - 1, "int32"), (2**63, "int64")]
)
def test_writer_refuses_out_of_range(value: int, method: str) -> None:
    with pytest.raises(LocalProtocolError):
        getattr(Writer(), method)(value)


def test_writer_emits_standard_utf8_for_supplementary_characters() -> None:
    w = Writer()
    w.ustring("\U0001f600")
    assert w.getvalue() == h("00000004 f09f9880")


@settings(max_examples=100, deadline=None, print_blob=True)
@given(
    ints=st.lists(st.integers(-(2**31), 2**31 - 1), max_size=4),
    longs=st.lists(st.integers(-(2**63), 2**63 - 1), max_size=4),
    text=st.none() | st.text(max_size=20),
    data=st.none() | st.binary(max_size=20),
)
def test_primitives_round_trip(
    ints: list[int], longs: list[int], text: str | None, data: bytes | None
) -> None:
    w = Writer()
    for value in ints:
        w.int32(value)
    for value in longs:
        w.int64(value)
    w.ustring(text)
    w.buffer(data)
    r = Reader(w.getvalue())
    assert [r.int32() for _ in ints] == ints
    assert [r.int64() for _ in longs] == longs
    assert r.ustring() == text
    assert r.buffer() == data
    assert r.remaining == 0


@settings(max_examples=200, deadline=None, print_blob=True)
@given(raw=st.binary(max_size=30))
def test_ustring_decodes_any_bytes_to_encodable_text(raw: bytes) -> None:
    value = Reader(len(raw).to_bytes(4, "big") + raw).ustring()
    assert value is not None
    value.encode("utf-8")  # strict: never a lone surrogate
