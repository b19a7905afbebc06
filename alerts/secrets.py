"""Secrets at rest: channel destinations (Apprise URLs hold tokens and passwords) and
webhook signing secrets are stored encrypted with a key derived from the portal's secret key.

Derivation: HKDF-SHA256 over the UTF-8 secret key, no salt, info
`b"usage-portal/alerts/fernet/v1"`, 32 bytes, urlsafe-base64 encoded as a Fernet key.
The info label keeps this key apart from anything else derived from the same secret
(sessions, CSRF), and its `v1` lets a later derivation coexist during a migration. Fernet
authenticates as well as encrypts, so a wrong key is detected rather than yielding garbage.

Rotation (MultiFernet): `keys` may be one secret key or several, newest first. Encryption
uses the newest; decryption tries each in turn, so values stored under a previous key stay
readable while `usage-portal secrets rotate` re-encrypts them under the new one. A caller
that passes one key (`settings.secret_key`) gets the previous keys the process's Settings
registered for it (`register_previous_keys`), so every reader follows a rotation.
"""

from __future__ import annotations

import base64
import secrets
from collections.abc import Sequence

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

_INFO = b"usage-portal/alerts/fernet/v1"

# 32 random bytes, as Stripe-style `whsec_…` so a leaked one is recognisable in logs/scans.
WEBHOOK_SECRET_PREFIX = "whsec_"

# One secret key, or a key ring newest first (Settings.secret_keys).
Keys = str | Sequence[str]

# The previous keys each current key was configured with in this process.
_PREVIOUS: dict[str, tuple[str, ...]] = {}


def register_previous_keys(current: str, previous: Sequence[str]) -> None:
    """Decrypting with `current` alone also tries `previous` (newest first) from now on in
    this process. Settings calls it with PORTAL_SECRET_KEY_PREVIOUS."""
    if previous:
        _PREVIOUS[current] = tuple(previous)


def _fernet(secret_key: str) -> Fernet:
    if not secret_key:
        # An empty key would "work" and protect nothing.
        raise ValueError("secret_key: must not be empty")
    raw = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_INFO).derive(secret_key.encode("utf-8"))
    return Fernet(base64.urlsafe_b64encode(raw))


def _ring(keys: Keys) -> list[str]:
    ring = [keys, *_PREVIOUS.get(keys, ())] if isinstance(keys, str) else list(keys)
    if not ring:
        raise ValueError("secret_key: no key given")
    return ring


def encrypt(secret_key: Keys, plaintext: str) -> bytes:
    """Encrypt `plaintext` (UTF-8) under a key derived from `secret_key` (the newest of a
    key ring); returns a Fernet token (ASCII bytes, timestamped, authenticated). Raises
    ValueError for an empty key."""
    return _fernet(_ring(secret_key)[0]).encrypt(plaintext.encode("utf-8"))


def decrypt(secret_key: Keys, token: bytes) -> str:
    """The plaintext `encrypt(…)` produced under `secret_key` or, for a key ring, under any
    of its keys. Raises ValueError when the token authenticates under none of them: the
    portal's secret key changed since it was stored (and the old one is not among the
    previous keys), or the token is corrupt (the two cannot be told apart). Tokens never
    expire."""
    try:
        return MultiFernet([_fernet(k) for k in _ring(secret_key)]).decrypt(token).decode("utf-8")
    except InvalidToken:
        raise ValueError(
            "cannot decrypt a stored alert secret: the portal secret key changed since it was "
            "encrypted and the old key is not in PORTAL_SECRET_KEY_PREVIOUS (or the stored value "
            "is corrupt); add the old key there, or re-enter the channel's destination"
        ) from None


def reencrypt(keys: Keys, token: bytes) -> bytes:
    """`token` encrypted again under the newest key (the plaintext never leaves this call).
    Raises ValueError like `decrypt` when no key of the ring reads it."""
    return encrypt(keys, decrypt(keys, token))


def readable_with_newest(keys: Keys, token: bytes) -> bool:
    """Whether the newest key alone reads `token` (False: it still needs a previous key)."""
    try:
        _fernet(_ring(keys)[0]).decrypt(token)
    except InvalidToken:
        return False
    return True


def webhook_secret() -> str:
    """A new random webhook signing secret: `whsec_` + 32 random bytes, urlsafe base64
    without padding (49 characters)."""
    return WEBHOOK_SECRET_PREFIX + secrets.token_urlsafe(32)
