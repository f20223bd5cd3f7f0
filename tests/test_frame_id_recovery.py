"""A broken ``/ws`` frame still gets its error reply by ``id`` when the id can be read safely."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from wsgate.transports.frames import MAX_ID, FrameError, decode_frame, recover_id


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ('{"id": 7, "event": "x", "data": }', 7),
        ('{"event": "say", "id": 12, "data": [1,', 12),
        ('{"event": "a\\"id\\": 4", "id": 5, "data": ', 5),
        ('{"x": "\\\\", "id": 9}garbage', 9),
        (b'{"id": 3, "event": \xff}', 3),
        ('{"event": "x", "data": {"id": 3}, oops', None),  # not the frame's id
        ('[{"id": 1}, ', None),
        ('{"id": "7", ', None),
        ('{"id": -1, ', None),
        ('{"id": 01, ', None),
        ('{"id": 1.5, ', None),
        (f'{{"id": {MAX_ID + 1}, ', None),
        ('{"id": 7', None),  # cut before the value ends: 7 could be 70
        ('"', None),
        ("", None),
    ],
)
def test_recover_id(raw: str | bytes, expected: int | None) -> None:
    assert recover_id(raw) == expected


def test_a_broken_frame_keeps_its_id() -> None:
    assert decode_frame('{"id": 41, "event": "ping", "data": ') == FrameError(
        41, "Frame is not valid JSON"
    )


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3),
    max_leaves=10,
)


@settings(max_examples=300, deadline=None)
@given(
    frame_id=st.integers(min_value=0, max_value=MAX_ID), data=json_values, cut=st.integers(1, 60)
)
def test_the_id_of_a_cut_frame_is_recovered_or_none(frame_id: int, data: Any, cut: int) -> None:
    """Cut anywhere after the id: the id comes back; before it: nothing, never a wrong id."""
    text = json.dumps({"id": frame_id, "event": "e", "data": data})
    head = text[: len(f'{{"id": {frame_id},') + cut]
    assert recover_id(head) == frame_id
    assert recover_id(text[: len('{"id": ')]) is None


@settings(max_examples=300, deadline=None)
@given(st.text() | st.binary())
def test_recover_id_never_raises(raw: str | bytes) -> None:
    result = recover_id(raw)
    assert result is None or 0 <= result <= MAX_ID
