"""Secrets at rest: channel destinations (Apprise URLs hold tokens and passwords) and
webhook signing secrets are stored encrypted with a key derived from the portal's secret key.

Derivation: HKDF-SHA256 over the UTF-8 secret key, no salt, info
`b"usage-portal/alerts/fernet/v1"`, 32 bytes, urlsafe-base64 encoded as a Fernet key.
The info label keeps this key apart from anything else derived from the same secret
(sessions, CSRF), and its `v1` lets a later derivation coexist during a migration. Fernet
authenticates as well as encrypts, so a wrong key is detected rather than yielding garbage.
"""

from __future__ import annotations

import base64
import secrets

from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

_INFO = b"usage-portal/alerts/fernet/v1"

# 32 random bytes, as Stripe-style `whsec_…` so a leaked one is recognisable in logs/scans.
WEBHOOK_SECRET_PREFIX = "whsec_"


def _fernet(secret_key: str) -> Fernet:
    if not secret_key:
        # An empty key would "work" and protect nothing.
        raise ValueError("secret_key: must not be empty")
    raw = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_INFO).derive(secret_key.encode("utf-8"))
    return Fernet(base64.urlsafe_b64encode(raw))


def encrypt(secret_key: str, plaintext: str) -> bytes:
    """Encrypt `plaintext` (UTF-8) under a key derived from `secret_key`; returns a Fernet
    token (ASCII bytes, timestamped, authenticated). Raises ValueError for an empty key."""
    return _fernet(secret_key).encrypt(plaintext.encode("utf-8"))


def decrypt(secret_key: str, token: bytes) -> str:
    """The plaintext `encrypt(secret_key, …)` produced. Raises ValueError when the token does
    not authenticate under this key: the portal's secret key changed since it was stored, or
    the token is corrupt (the two cannot be told apart). Tokens never expire."""
    try:
        return _fernet(secret_key).decrypt(token).decode("utf-8")
    except InvalidToken:
        raise ValueError(
            "cannot decrypt a stored alert secret: the portal secret key changed since it was "
            "encrypted (or the stored value is corrupt); re-enter the channel's destination"
        ) from None


def webhook_secret() -> str:
    """A new random webhook signing secret: `whsec_` + 32 random bytes, urlsafe base64
    without padding (49 characters)."""
    return WEBHOOK_SECRET_PREFIX + secrets.token_urlsafe(32)
