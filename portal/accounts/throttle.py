"""Sign-in throttling that an attacker cannot turn against the people it protects.

Failed attempts are counted in Redis for 15 minutes from the first one:

- per (address, client): 5 failures for one email address from one client lock that
  pair out for the rest of the window. Someone guessing a known user's password from
  their own machine stops there; the user, from any other client, signs in as usual.
- per client: 30 failures from one client, whatever the addresses, lock that client out
  (one machine trying many accounts).

A client is an IP address (portal/http/client_address.py: X-Forwarded-For only from
PORTAL_TRUSTED_PROXIES); for IPv6 the /64 network, since one host commonly holds a whole /64.

There is deliberately no lockout per address alone: any counter that strangers can fill
locks the owner out (the attack this module replaced). Failures per address are still
counted, and the 20th within a window is logged as a warning (`signin_address_targeted`)
so that a guessing campaign spread over many clients is seen; the defence against it is
the password rules (portal/accounts/passwords.py) and the argon2id cost of each guess.
A success clears its own (address, client) count only: signing in to one's own account
never resets the per-client count that slows guessing at others'.
"""

from __future__ import annotations

import hashlib
import ipaddress
from dataclasses import dataclass

from redis.asyncio import Redis

WINDOW_S = 15 * 60
MAX_PER_ADDRESS_AND_CLIENT = 5
MAX_PER_CLIENT = 30
# Failures for one address, from every client, that are logged as a campaign.
ADDRESS_WARNING_AT = 20

_PREFIX = "login-fail:"

# KEYS[1]: a failure count; ARGV[1]: its window (s), started by the first failure.
_COUNT_FAILURE = """
local n = redis.call('INCR', KEYS[1])
redis.call('EXPIRE', KEYS[1], ARGV[1], 'NX')
return n
"""


@dataclass(frozen=True, slots=True)
class Lockout:
    retry_after_s: int


def _address(email: str) -> str:
    return email.strip().lower()


def _digest(*parts: str) -> str:
    # Keys of a fixed size, whatever the form held (an address can be megabytes long).
    return hashlib.sha256("\x00".join(parts).encode("utf-8", "surrogatepass")).hexdigest()[:32]


def client_bucket(client: str) -> str:
    """What one client is counted as: its IPv4 address, its IPv6 /64 network, or the text
    itself when it is not an address."""
    try:
        address = ipaddress.ip_address(client)
    except ValueError:
        return client[:100]
    if isinstance(address, ipaddress.IPv6Address):
        return str(ipaddress.IPv6Network((address, 64), strict=False))
    return str(address)


def pair_key(email: str, client: str) -> str:
    return f"{_PREFIX}pair:{_digest(_address(email), client_bucket(client))}"


def client_key(client: str) -> str:
    return f"{_PREFIX}client:{client_bucket(client)}"


def address_key(email: str) -> str:
    return f"{_PREFIX}address:{_digest(_address(email))}"


async def locked_out(redis: Redis, email: str, client: str) -> Lockout | None:
    """Whether this client may not try this address now (None: it may), and for how long."""
    keys = (pair_key(email, client), client_key(client))
    # Two GETs in one round trip, not MGET: on a Redis Cluster the keys are in different slots.
    async with redis.pipeline(transaction=False) as pipe:
        for key in keys:
            pipe.get(key)
        by_pair, by_client = await pipe.execute()
    for key, count, limit in (
        (keys[0], by_pair, MAX_PER_ADDRESS_AND_CLIENT),
        (keys[1], by_client, MAX_PER_CLIENT),
    ):
        if count is not None and int(count) >= limit:
            ttl = await redis.ttl(key)
            return Lockout(retry_after_s=max(int(ttl), 1))
    return None


async def record_failure(redis: Redis, email: str, client: str) -> int:
    """Count a failed attempt; returns the failures for this address from every client in
    its window (for the campaign warning, never for a lockout)."""
    # Each count and its window together (a script per key, atomic on its own): one MULTI
    # over the three keys is refused by a Redis Cluster, whose slots they are spread over.
    async with redis.pipeline(transaction=False) as pipe:
        for key in (pair_key(email, client), client_key(client), address_key(email)):
            pipe.eval(_COUNT_FAILURE, 1, key, WINDOW_S)
        results = await pipe.execute()
    return int(results[2])


async def record_success(redis: Redis, email: str, client: str) -> None:
    await redis.delete(pair_key(email, client))


# --- "Forgot your password?": links asked for from the sign-in page, per hour.
RESET_WINDOW_S = 60 * 60
# Links one address is sent: enough for a lost email or two, never a flood of someone's inbox.
MAX_RESETS_PER_ADDRESS = 3
# Requests one client may make, whatever the addresses (one machine probing many).
MAX_RESETS_PER_CLIENT = 20
_RESET_PREFIX = "pw-reset:"


@dataclass(frozen=True, slots=True)
class ResetAllowance:
    client_refused: bool  # answered 429: this client asked too often
    send: bool  # False past the address's allowance: the same answer, no email


async def count_reset(redis: Redis, email: str, client: str) -> ResetAllowance:
    """Count a request for a password link and say what it may do. Past the address's
    allowance the answer stays the same (it never says whether the address has an
    account); only the email is not sent."""
    keys = (
        f"{_RESET_PREFIX}client:{client_bucket(client)}",
        f"{_RESET_PREFIX}address:{_digest(_address(email))}",
    )
    async with redis.pipeline(transaction=False) as pipe:
        for key in keys:
            pipe.eval(_COUNT_FAILURE, 1, key, RESET_WINDOW_S)
        by_client, by_address = await pipe.execute()
    return ResetAllowance(
        client_refused=int(by_client) > MAX_RESETS_PER_CLIENT, send=int(by_address) <= MAX_RESETS_PER_ADDRESS
    )
