"""Sign-in limits per (address, client) and per client: an attacker cannot lock a user out,
and X-Forwarded-For counts only when a trusted proxy wrote it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

import asyncpg
import pytest
from litestar.testing import AsyncTestClient
from redis.asyncio import Redis

from portal.accounts import throttle
from portal.app import create_app
from portal.http.client_address import parse_ip, resolve_client
from portal.infrastructure.settings import Settings
from tests.pages.helpers import PASSWORD, make_user, submit_login

OWNER = "ada@vendor.test"
WRONG = "not the password at all"


class FromAddress:
    """The app as seen from a chosen TCP peer address (the test client's is `testclient`)."""

    def __init__(self, app: Any, peer: str) -> None:
        self.app = app
        self.peer = peer

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] in ("http", "websocket"):
            scope = {**scope, "client": (self.peer, 40000)}
        await self.app(scope, receive, send)


async def _login(
    client: AsyncTestClient[Any], email: str, password: str, *, forwarded_for: str | None = None
) -> int:
    if forwarded_for is not None:
        client.headers["X-Forwarded-For"] = forwarded_for
    response = await submit_login(client, email, password)
    client.cookies.delete("portal_session")
    return response.status_code


@pytest.fixture
async def owner(pg: asyncpg.Connection) -> str:
    """The owner's account; returns their password."""
    await make_user(pg, OWNER, role="admin")
    return PASSWORD


@pytest.fixture
async def attacker(settings: Settings) -> AsyncIterator[AsyncTestClient[Any]]:
    async with AsyncTestClient(app=FromAddress(create_app(settings), "198.51.100.66")) as client:
        yield client


@pytest.fixture
async def owners_client(settings: Settings) -> AsyncIterator[AsyncTestClient[Any]]:
    async with AsyncTestClient(app=FromAddress(create_app(settings), "192.0.2.10")) as client:
        yield client


@pytest.fixture
async def roaming(settings: Settings) -> AsyncIterator[tuple[AsyncTestClient[Any], FromAddress]]:
    """A client whose address the test changes (`shim.peer = …`)."""
    shim = FromAddress(create_app(settings), "192.0.2.10")
    async with AsyncTestClient(app=shim) as client:
        yield client, shim


# --- an attacker elsewhere ------------------------------------------------------------------


async def test_the_owner_signs_in_after_an_attackers_failures_elsewhere(
    owner: str,
    attacker: AsyncTestClient[Any],
    owners_client: AsyncTestClient[Any],
) -> None:
    # Given an attacker who knows the owner's address and failed until refused
    statuses = [await _login(attacker, OWNER, WRONG) for _ in range(7)]
    assert statuses == [401] * 5 + [429] * 2
    # The right password does not get the attacker in either, from that client
    assert await _login(attacker, OWNER, owner) == 429
    # When the owner signs in from their own client, then they are in
    assert await _login(owners_client, OWNER, owner) == 303


async def test_the_pair_stays_locked_for_the_window(
    owner: str, attacker: AsyncTestClient[Any], redis: Redis
) -> None:
    for _ in range(5):
        await _login(attacker, OWNER, WRONG)
    response = await submit_login(attacker, OWNER, owner)
    assert response.status_code == 429
    assert "Too many failed sign-ins. Try again in 15 minutes." in response.text
    assert 890 <= await redis.ttl(throttle.pair_key(OWNER, "198.51.100.66")) <= 900


async def test_one_client_guessing_many_addresses_is_locked_out(
    owner: str, attacker: AsyncTestClient[Any], owners_client: AsyncTestClient[Any]
) -> None:
    statuses = [await _login(attacker, f"user{n}@vendor.test", WRONG) for n in range(30)]
    assert statuses == [401] * 30
    assert await _login(attacker, "someone-new@vendor.test", WRONG) == 429
    assert await _login(attacker, OWNER, owner) == 429
    assert await _login(owners_client, OWNER, owner) == 303


async def test_failures_for_one_address_from_many_clients_lock_nobody_out(
    owner: str,
    roaming: tuple[AsyncTestClient[Any], FromAddress],
    caplog: pytest.LogCaptureFixture,
) -> None:
    # A spread campaign: 4 failures from each of 6 clients (24 in all; never 5 from one).
    # (One app, its peer changed: a new app would reconfigure logging under caplog.)
    client, shim = roaming
    for n in range(6):
        shim.peer = f"203.0.113.{n + 1}"
        assert [await _login(client, OWNER, WRONG) for _ in range(4)] == [401] * 4
    shim.peer = "192.0.2.10"
    assert await _login(client, OWNER, owner) == 303
    warnings = [r.getMessage() for r in caplog.records if r.name == "portal.signin"]
    assert warnings == [
        "signin_address_targeted: 20 failed sign-ins for 'ada@vendor.test' from any client "
        "within 15 minutes (the latest from 203.0.113.5)"
    ]


async def test_a_success_clears_only_its_own_pair(
    owner: str, owners_client: AsyncTestClient[Any], redis: Redis
) -> None:
    for n in range(4):
        await _login(owners_client, OWNER, WRONG)
        await _login(owners_client, f"other{n}@vendor.test", WRONG)
    assert await _login(owners_client, OWNER, owner) == 303
    assert await redis.exists(throttle.pair_key(OWNER, "192.0.2.10")) == 0
    assert await redis.get(throttle.client_key("192.0.2.10")) == "8"


# --- X-Forwarded-For --------------------------------------------------------------------------


async def test_rotating_x_forwarded_for_without_a_trusted_proxy_changes_nothing(
    owner: str,
    attacker: AsyncTestClient[Any],
) -> None:
    # Each attempt claims another address; the limits still count the TCP peer
    statuses = [await _login(attacker, OWNER, WRONG, forwarded_for=f"10.9.8.{n}") for n in range(6)]
    assert statuses == [401] * 5 + [429]
    others = [
        await _login(attacker, f"u{n}@vendor.test", WRONG, forwarded_for=f"10.7.{n}.1") for n in range(25)
    ]
    assert others == [401] * 25
    assert await _login(attacker, "fresh@vendor.test", WRONG, forwarded_for="10.0.0.99") == 429


async def test_behind_a_trusted_proxy_the_forwarded_client_is_counted(settings: Settings, owner: str) -> None:
    # Given the portal behind a proxy at 127.0.0.1 (every request arrives from it)
    proxied = replace(settings, trusted_proxies=("127.0.0.1/32",))
    async with AsyncTestClient(app=FromAddress(create_app(proxied), "127.0.0.1")) as proxy:
        # When an attacker (203.0.113.9, as the proxy writes it) fails five times, even
        # claiming other addresses to the left of what the proxy appended
        statuses = [
            await _login(proxy, OWNER, WRONG, forwarded_for=f"10.1.1.{n}, 203.0.113.9") for n in range(6)
        ]
        assert statuses == [401] * 5 + [429]
        # Then the owner behind the same proxy, from another address, signs in
        assert await _login(proxy, OWNER, owner, forwarded_for="192.0.2.44") == 303


async def test_a_direct_client_claiming_to_be_a_proxy_is_not_believed(settings: Settings, owner: str) -> None:
    proxied = replace(settings, trusted_proxies=("127.0.0.1/32",))
    async with AsyncTestClient(app=FromAddress(create_app(proxied), "198.51.100.66")) as direct:
        statuses = [
            await _login(direct, OWNER, WRONG, forwarded_for=f"127.0.0.1, 10.2.2.{n}") for n in range(6)
        ]
    assert statuses == [401] * 5 + [429]


# --- the client address, pure -----------------------------------------------------------------

PROXIES = ("10.0.0.0/8", "2001:db8:ffff::/48")


@pytest.mark.parametrize(
    ("peer", "headers", "expected"),
    [
        ("198.51.100.7", ["203.0.113.1"], "198.51.100.7"),  # not from a proxy: header ignored
        ("10.0.0.2", [], "10.0.0.2"),  # a proxy that sent no header
        ("10.0.0.2", ["203.0.113.1"], "203.0.113.1"),
        ("10.0.0.2", ["1.2.3.4, 203.0.113.1"], "203.0.113.1"),  # the client's own claim is left of it
        ("10.0.0.2", ["203.0.113.1, 10.0.0.3"], "203.0.113.1"),  # two proxies
        ("10.0.0.2", ["203.0.113.1", "10.0.0.3"], "203.0.113.1"),  # the chain split over two headers
        ("10.0.0.2", ["10.0.0.5, 10.0.0.3"], "10.0.0.5"),  # every hop a proxy: the left-most
        ("10.0.0.2", ["203.0.113.1, unknown"], "10.0.0.2"),  # garbage ends the walk at the proxy
        ("10.0.0.2", ["203.0.113.1:4711"], "203.0.113.1"),
        ("10.0.0.2", ["[2001:db8::1]:443"], "2001:db8::1"),
        ("2001:db8:ffff::1", ["2001:db8::9"], "2001:db8::9"),
        ("::ffff:10.0.0.2", ["203.0.113.1"], "203.0.113.1"),  # IPv4-mapped peer
        ("testclient", ["203.0.113.1"], "testclient"),  # not an address: itself
        (None, [], "unknown"),
    ],
)
def test_the_client_address(peer: str | None, headers: list[str], expected: str) -> None:
    assert resolve_client(peer, headers, PROXIES) == expected


def test_no_proxy_is_trusted_by_default() -> None:
    assert resolve_client("127.0.0.1", ["203.0.113.1"], ()) == "127.0.0.1"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (" 192.0.2.1 ", "192.0.2.1"),
        ("::ffff:192.0.2.1", "192.0.2.1"),
        ("0x7f000001", None),
        ("", None),
        ("2001:db8::1", "2001:db8::1"),
    ],
)
def test_parse_ip(text: str, expected: str | None) -> None:
    found = parse_ip(text)
    assert (None if found is None else str(found)) == expected


def test_an_ipv6_client_is_counted_by_its_64() -> None:
    assert throttle.client_key("2001:db8:1:2:aaaa::1") == throttle.client_key("2001:db8:1:2:bbbb::7")
    assert throttle.client_key("2001:db8:1:3::1") != throttle.client_key("2001:db8:1:2::1")
    same = throttle.pair_key("a@x.test", "2001:db8:1:2::9")
    assert throttle.pair_key("A@x.test ", "2001:db8:1:2::1") == same
