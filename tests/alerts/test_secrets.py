"""Secrets at rest: Fernet under a key derived from the portal's secret key."""

from __future__ import annotations

import re

import pytest

from alerts.secrets import decrypt, encrypt, webhook_secret

KEY = "portal-secret-key-for-tests"


@pytest.mark.parametrize("plaintext", ["slack://T1JJ3T3L2/A1BRTD4JD/TIiajkdnlazkcOXrIdevi7", "", "ünïcødé ✓"])
def test_round_trip(plaintext: str) -> None:
    token = encrypt(KEY, plaintext)
    assert isinstance(token, bytes)
    assert plaintext.encode() not in token or plaintext == ""
    assert decrypt(KEY, token) == plaintext


def test_each_encryption_differs() -> None:
    assert encrypt(KEY, "same") != encrypt(KEY, "same")


def test_a_changed_key_fails_clearly() -> None:
    token = encrypt(KEY, "mailto://user:pass@smtp.example.com")
    with pytest.raises(ValueError, match="secret key changed"):
        decrypt("another-key", token)


def test_a_corrupt_token_fails_the_same_way() -> None:
    token = bytearray(encrypt(KEY, "x"))
    token[-5] ^= 1
    with pytest.raises(ValueError, match="secret key changed"):
        decrypt(KEY, bytes(token))
    with pytest.raises(ValueError, match="secret key changed"):
        decrypt(KEY, b"not a token")


def test_an_empty_key_is_refused() -> None:
    with pytest.raises(ValueError, match="secret_key"):
        encrypt("", "x")


def test_webhook_secrets_are_random_and_urlsafe() -> None:
    first, second = webhook_secret(), webhook_secret()
    assert first != second
    assert re.fullmatch(r"whsec_[A-Za-z0-9_-]{43}", first)
