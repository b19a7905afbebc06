"""Text a client or user typed, shown inside our own sentences without taking them over.

A name or dimension value may carry Unicode's directional formatting characters (U+202A to
U+202E, U+2066 to U+2069, and the marks). Shown as is, an unterminated right-to-left
override such as U+202E reverses everything after it on the line: the amount next to a
customer's name, the rest of an alert email ("Trojan Source"-style spoofing). Such text is
wrapped in a first strong isolate (U+2068 ... U+2069): by the bidi algorithm an isolate's end
closes every embedding and override opened inside it, so the text shows as typed and the
words around it keep their order. Text without these characters is returned unchanged (most
text: nothing is added to ordinary pages; Arabic or Hebrew names display right without it).

Text that closes whatever it opens (an isolate we added, our own sentences around an
isolated name) is left as it is, so a value shown in a form field and saved again is not
wrapped once more on every save.
"""

from __future__ import annotations

import re
from typing import Any

_DIRECTIONAL = re.compile("[\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")
_EMBEDDINGS = frozenset("\u202a\u202b\u202d\u202e")  # LRE, RLE, LRO, RLO
_POP_EMBEDDING = "\u202c"  # PDF
_ISOLATES = frozenset("\u2066\u2067\u2068")  # LRI, RLI, FSI
FIRST_STRONG_ISOLATE = "\u2068"
POP_DIRECTIONAL_ISOLATE = "\u2069"


def isolate(text: str) -> str:
    """`text` inside an isolate when it would leave a directional formatting character open
    (an embedding, override or isolate not closed, or an isolate end that closes nothing).
    Closed text, such as our own sentences around an isolated name, is returned as is."""
    if _DIRECTIONAL.search(text) is None:
        return text
    kept, open_isolates, closed = _scan(text)
    if closed:
        return text
    # One isolate end for each isolate the text leaves open (each also closes the overrides
    # opened inside it), then ours.
    return FIRST_STRONG_ISOLATE + kept + POP_DIRECTIONAL_ISOLATE * (open_isolates + 1)


def _scan(text: str) -> tuple[str, int, bool]:
    """(`text` without the isolate ends that close nothing, how many isolates it leaves
    open, whether it leaves nothing open and has no such end). An unmatched U+2069 is inert
    where it stands but would close an isolate around it early, letting an override after
    it leak."""
    opened: list[bool] = []  # True: an isolate; False: an embedding or override
    kept: list[str] = []
    stray = False
    for char in text:
        if char in _EMBEDDINGS:
            opened.append(False)
        elif char == _POP_EMBEDDING:
            if opened and not opened[-1]:
                opened.pop()
        elif char in _ISOLATES:
            opened.append(True)
        elif char == POP_DIRECTIONAL_ISOLATE:
            if True not in opened:
                stray = True
                continue  # closes nothing: dropped
            while not opened.pop():
                pass
        kept.append(char)
    return "".join(kept), opened.count(True), not opened and not stray


def finalize(value: Any) -> Any:
    """Jinja's `finalize` for every `{{ ... }}`: plain strings isolated, markup our own
    templates built (already escaped, possibly holding isolated parts) left alone."""
    if type(value) is str:
        return isolate(value)
    return value
