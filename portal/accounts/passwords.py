"""Password hashing: argon2id (memory-hard), PHC strings, with rehash on policy change.

The parameters are argon2-cffi's defaults (RFC 9106's second recommended profile: 64 MiB,
3 passes, 4 lanes): a stolen `users` table costs an attacker 64 MiB of memory per guess.
"""

from __future__ import annotations

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

MIN_LENGTH = 12
MAX_LENGTH = 256

_hasher = PasswordHasher()

# Verified against when the email is unknown, so that a miss costs the same time as a hit
# and response times do not reveal which addresses have accounts.
_DUMMY_HASH = _hasher.hash("not a password anyone has: timing equaliser")


def password_problem(password: str) -> str | None:
    """Why `password` cannot be used, or None. Length is what matters (NIST SP 800-63B)."""
    if len(password) < MIN_LENGTH:
        return f"use at least {MIN_LENGTH} characters"
    if len(password) > MAX_LENGTH:
        return f"use at most {MAX_LENGTH} characters"
    if not password.strip():
        return "a password cannot be only spaces"
    return None


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(stored: str | None, password: str) -> bool:
    """Whether `password` matches `stored` (None: no password set yet, never matches)."""
    try:
        return _hasher.verify(stored or _DUMMY_HASH, password) and stored is not None
    except (VerificationError, InvalidHashError):
        return False


def needs_rehash(stored: str) -> bool:
    return _hasher.check_needs_rehash(stored)
