"""Event ids: ULID-style, 26 characters of Crockford base32, unique and time-ordered.

The first 48 bits are the Unix time in milliseconds, the other 80 bits are random. Within
one millisecond the random part of a process's ids is incremented, so the ids one process
makes sort in the order they were made (and, across processes, by millisecond).
"""

from __future__ import annotations

import secrets
import threading
import time

ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_RANDOM_BITS = 80
_RANDOM_MAX = (1 << _RANDOM_BITS) - 1

_lock = threading.Lock()
_last_ms = -1
_last_random = 0


def _encode(value: int) -> str:
    chars = []
    for _ in range(26):
        chars.append(ALPHABET[value & 31])
        value >>= 5
    return "".join(reversed(chars))


def new_event_id(now_ms: int | None = None) -> str:
    """A new id, greater than every id this process made before (monotonic)."""
    global _last_ms, _last_random
    ms = int(time.time() * 1000) if now_ms is None else now_ms
    with _lock:
        if ms <= _last_ms:
            # Same millisecond (or the clock stepped back): keep ordering by counting up.
            ms = _last_ms
            random_part = _last_random + 1
            if random_part > _RANDOM_MAX:
                ms += 1
                random_part = secrets.randbits(_RANDOM_BITS - 1)
        else:
            # One bit of headroom keeps increments within the millisecond from overflowing.
            random_part = secrets.randbits(_RANDOM_BITS - 1)
        _last_ms, _last_random = ms, random_part
    if ms >= 1 << 48:
        raise ValueError("timestamp does not fit in 48 bits")
    return _encode((ms << _RANDOM_BITS) | random_part)


def event_id_time_ms(event_id: str) -> int:
    """The millisecond timestamp an id made by `new_event_id` carries."""
    value = 0
    for char in event_id.upper():
        value = (value << 5) | ALPHABET.index(char)
    return value >> _RANDOM_BITS
