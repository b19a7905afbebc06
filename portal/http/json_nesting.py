"""How deep a JSON body nests, judged from its bytes before any decoder sees them.

msgspec decodes (and skips `Raw` values) by recursion, so a body of ten thousand `[` would
take it to the interpreter's recursion limit: a RecursionError at best (a 500 where Litestar
decodes), and whatever runs at that depth meanwhile (a finaliser the garbage collector calls,
a log line) fails too. Every JSON body is measured here first: the ingest routes, the
compatible APIs and, through `PortalRequest`, every body Litestar decodes.
"""

from __future__ import annotations

import functools
import re

# JSON bodies nested deeper than this are refused (400) before anything is decoded; no
# accepted body needs more than a few levels (batch, event, dimensions or data; a plan's
# charges and tiers).
MAX_JSON_DEPTH = 64


def json_nesting_exceeds(raw: bytes, limit: int = MAX_JSON_DEPTH) -> bool:
    """Whether a JSON text nests arrays and objects more than `limit` deep.

    This check reads the bytes at C speed (counts, replaces, a translate): a batch of 1000
    events costs a fraction of decoding it. Unclosed brackets count as nesting (a decoder
    would descend into them before it found the end missing).
    """
    if raw.count(b"[") + raw.count(b"{") <= limit:
        return False  # too few openers to nest that deep (every single event)
    if b"\\" in raw:
        # Escapes pair from the left: drop escaped backslashes, then escaped quotes, so
        # every quote left opens or closes a string.
        raw = raw.replace(b"\\\\", b"").replace(b'\\"', b"")
    skeleton = raw.translate(_SKELETON, _NOT_SKELETON)
    # `""` is an empty string or the gap between two strings (nothing but commas, colons,
    # numbers, spaces): dropping it keeps every bracket on its side of the quotes.
    skeleton = skeleton.replace(b'""', b"")
    if b'"' in skeleton:  # strings holding brackets: those brackets are text
        skeleton = b"".join(skeleton.split(b'"')[::2])
    return _bracket_nesting_exceeds(skeleton, limit)


# Openers as "(", closers as ")", quotes kept, everything else dropped.
_SKELETON = bytes.maketrans(b"[{]}", b"(())")
_NOT_SKELETON = bytes(b for b in range(256) if b not in b'[]{}"')


def _bracket_nesting_exceeds(skeleton: bytes, limit: int) -> bool:
    """Whether a skeleton of "(" and ")" nests more than `limit` deep: exact for JSON that
    is well formed, on the safe side for JSON that is not."""
    removed = 0
    # A pass removes the innermost pair of every nest (one level) at memcpy speed; passes go
    # on while they shrink the skeleton by a quarter, which empties any ordinary body.
    for _ in range(limit + 1):
        if skeleton.count(b"(") + removed <= limit:
            return False  # even if every opener left nested in the last, it fits
        inner = skeleton.replace(b"()", b"")
        if len(inner) == len(skeleton):
            break
        shrank = len(inner) * 4 <= len(skeleton) * 3
        skeleton, removed = inner, removed + 1
        if not shrank:
            break
    if removed > limit:
        return True  # every pass removed a level
    if skeleton.count(b"(") + removed <= limit:
        return False
    # What is left is read by a regex that nests as deep as allowed: it stops at the first
    # opener too deep (or at a stray closer, where a decoder stops too).
    match = _nesting_within(limit - removed).match(skeleton)
    end = match.end() if match else 0
    return end < len(skeleton) and skeleton[end] == ord("(")


@functools.cache
def _nesting_within(limit: int) -> re.Pattern[bytes]:
    """Skeletons that nest at most `limit` deep, their last brackets possibly unclosed.
    Atomic groups never backtrack, so matching is linear in the skeleton's length."""
    balanced = within = b""
    for _ in range(limit):
        balanced = rb"(?>\(" + balanced + rb"\))*"
        within = balanced + rb"(?:\(" + within + rb")?"
    return re.compile(within)
