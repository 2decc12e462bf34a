"""FrameBuffer: any cut of a stream into reads gives the same frames, in order.

Rules under test (frames.py): whole frames come out of `next_frame` whatever the reads
look like (a frame in one read, many frames in one read, a long frame over many reads);
`len` is what is buffered and not yet taken; a bad length raises FrameError as soon as
its four bytes are in. Hypothesis prints the failing example; rerun with the printed
@reproduce_failure blob to replay it.
"""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from corral.protocol.errors import FrameError
from corral.protocol.frames import FrameBuffer, frame

from .strategies import chunks

payloads = st.lists(
    st.binary(max_size=64) | st.binary(min_size=1000, max_size=3000), min_size=1, max_size=6
)


@settings(max_examples=200, deadline=None, print_blob=True)
@given(frames=payloads, cuts=st.lists(st.integers(min_value=0), max_size=30))
def test_any_cut_gives_the_frames_in_order(frames: list[bytes], cuts: list[int]) -> None:
    stream = b"".join(frame(payload) for payload in frames)
    buffer = FrameBuffer()
    got: list[bytes] = []
    fed = 0
    for piece in chunks(stream, cuts):
        buffer.feed(piece)
        fed += len(piece)
        while (payload := buffer.next_frame()) is not None:
            got.append(payload)
        assert len(buffer) == fed - sum(4 + len(p) for p in got)
    assert got == frames
    assert len(buffer) == 0


def test_a_long_frame_byte_by_byte() -> None:
    payload = bytes(range(256)) * 40
    stream = frame(payload) + frame(b"next")
    buffer = FrameBuffer()
    for index in range(len(stream)):
        buffer.feed(stream[index : index + 1])
        if index < 4 + len(payload) - 1:
            assert buffer.next_frame() is None
    assert buffer.next_frame() == payload
    assert buffer.next_frame() == b"next"
    assert buffer.next_frame() is None


@pytest.mark.parametrize("length", [-1, 101])
def test_a_bad_length_is_an_error_once_its_four_bytes_are_in(length: int) -> None:
    buffer = FrameBuffer(frame_size_max=100)
    buffer.feed(frame(b"ok") + struct.pack(">i", length)[:2])
    assert buffer.next_frame() == b"ok"
    assert buffer.next_frame() is None
    buffer.feed(struct.pack(">i", length)[2:])
    with pytest.raises(FrameError):
        buffer.next_frame()


def test_peek_and_take_see_a_partly_received_frame() -> None:
    buffer = FrameBuffer()
    stream = frame(b"x" * 500)
    buffer.feed(stream[:10])
    buffer.feed(stream[10:20])  # the frame is not whole: gathered apart
    assert buffer.peek(12) == stream[:12]
    assert buffer.take(4) == stream[:4]
    assert len(buffer) == 16


def test_a_taken_read_is_not_kept() -> None:
    # An idle connection must not hold on to its last read (it may be a large frame).
    buffer = FrameBuffer()
    read = frame(b"v" * 10_000)
    buffer.feed(read)
    assert buffer.next_frame() == b"v" * 10_000
    assert buffer._data == b""
