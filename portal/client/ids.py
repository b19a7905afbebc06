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


class IdGenerator:
    """Monotonic ids for one process (thread-safe); `new_event_id` uses a shared one."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._last_ms = -1
        self._last_random = 0

    def new(self, now_ms: int | None = None) -> str:
        """A new id, greater than every id this generator made before."""
        ms = int(time.time() * 1000) if now_ms is None else now_ms
        with self._lock:
            if ms <= self._last_ms:
                # Same millisecond (or the clock stepped back): keep ordering by counting up.
                ms = self._last_ms
                random_part = self._last_random + 1
                if random_part > _RANDOM_MAX:
                    ms += 1
                    random_part = secrets.randbits(_RANDOM_BITS - 1)
            else:
                # One bit of headroom keeps increments within the millisecond from overflowing.
                random_part = secrets.randbits(_RANDOM_BITS - 1)
            self._last_ms, self._last_random = ms, random_part
        if ms >= 1 << 48:
            raise ValueError("timestamp does not fit in 48 bits")
        return _encode((ms << _RANDOM_BITS) | random_part)


_default = IdGenerator()


def new_event_id(now_ms: int | None = None) -> str:
    """A new id, greater than every id `new_event_id` made before in this process."""
    return _default.new(now_ms)


def event_id_time_ms(event_id: str) -> int:
    """The millisecond timestamp an id made by `new_event_id` carries."""
    value = 0
    for char in event_id.upper():
        value = (value << 5) | ALPHABET.index(char)
    return value >> _RANDOM_BITS
