"""The byte-level nesting check that runs before any JSON decoder sees a client's body."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from portal.http.json_nesting import MAX_JSON_DEPTH, json_nesting_exceeds


def depth(value: Any) -> int:
    if isinstance(value, dict):
        return 1 + max((depth(v) for v in value.values()), default=0)
    if isinstance(value, list):
        return 1 + max((depth(v) for v in value), default=0)
    return 0


# Strings full of brackets and escapes, so the check must tell text from structure.
texts = st.text(alphabet='[]{}"\\ab,:', max_size=8)
json_values = st.recursive(
    st.none() | st.integers() | texts,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(texts, inner, max_size=3),
    max_leaves=40,
)


@settings(max_examples=300, derandomize=True)
@given(json_values, st.integers(min_value=1, max_value=8))
def test_the_check_agrees_with_the_decoded_depth(value: Any, limit: int) -> None:
    raw = json.dumps(value).encode()
    assert json_nesting_exceeds(raw, limit) == (depth(value) > limit)


def comb(depth: int, teeth: int) -> bytes:
    """`depth` levels, each holding a tooth (an empty list) and the next level: the shape
    that makes every pass remove the least, so the regex reads most of it."""
    if depth == 0:
        return b"[]"
    return b"[" + b"[]," * teeth + comb(depth - 1, teeth) + b"]"


@settings(max_examples=200, derandomize=True)
@given(st.lists(st.tuples(st.integers(0, 70), st.integers(0, 3)), min_size=1, max_size=6))
def test_combs_near_the_limit(shapes: list[tuple[int, int]]) -> None:
    raw = b"[" + b",".join(comb(d, t) for d, t in shapes) + b"]"
    deepest = 2 + max(d for d, _ in shapes)  # the outer list, the levels, the last empty list
    assert json_nesting_exceeds(raw) == (deepest > MAX_JSON_DEPTH)
    assert json_nesting_exceeds(raw[:-1]) == (deepest > MAX_JSON_DEPTH)  # truncated: unclosed


@pytest.mark.parametrize(
    ("raw", "too_deep"),
    [
        (b"[" * 65 + b"]" * 65, True),
        (b"[" * 64 + b"]" * 64, False),
        (b"[" * 100_000, True),  # unclosed: a decoder would descend all the way
        (b'{"a": [' * 40 + b"1" + b"]}" * 40, True),
        (b'{"a": [' * 32 + b"1" + b"]}" * 32, False),
        (b"[[]," * 200 + b"1" + b"]" * 200, True),  # no long run of openers, still deep
        (b'["' + b"[" * 10_000 + b'"]', False),  # brackets in a string are text
        (b'["\\"' + b"[" * 10_000 + b'"]', False),  # an escaped quote does not end the string
        (b"[]" * 100_000, False),
    ],
)
def test_known_shapes(raw: bytes, too_deep: bool) -> None:
    assert json_nesting_exceeds(raw) == too_deep
    assert MAX_JSON_DEPTH == 64
