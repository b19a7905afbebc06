"""Who is asking: the client's IP address, believing X-Forwarded-For only from our proxies.

The TCP peer is the client unless it is one of PORTAL_TRUSTED_PROXIES (empty by default).
When it is, X-Forwarded-For is read from the right (each proxy appends the address it
received the request from): the right-most address that is not a trusted proxy is the
client. Entries to its left were written by the client itself and are never believed.
An entry that is not an IP address ends the walk at the proxy that passed it on.
"""

from __future__ import annotations

import ipaddress
from functools import lru_cache
from typing import Any

from litestar.connection import ASGIConnection

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


@lru_cache(maxsize=16)
def _networks(cidrs: tuple[str, ...]) -> tuple[IPNetwork, ...]:
    return tuple(ipaddress.ip_network(cidr, strict=False) for cidr in cidrs)


def parse_ip(text: str | None) -> IPAddress | None:
    """An address as proxies write it (`203.0.113.7`, `203.0.113.7:5123`, `[2001:db8::1]:443`,
    `2001:db8::1`); an IPv4-mapped IPv6 address as the IPv4 one; None for anything else
    (`unknown`, obfuscated identifiers, host names)."""
    if not text:
        return None
    text = text.strip()
    if text.startswith("["):
        text = text[1:].partition("]")[0]
    elif text.count(":") == 1:
        text = text.partition(":")[0]
    try:
        found = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(found, ipaddress.IPv6Address) and found.ipv4_mapped is not None:
        return found.ipv4_mapped
    return found


def resolve_client(peer: str | None, forwarded_for: list[str], trusted_proxies: tuple[str, ...]) -> str:
    """The client's address as text (see the module doc). `peer` is the TCP peer's host
    (Litestar's `request.client.host`; a name such as `testclient` is used as it is),
    `forwarded_for` every X-Forwarded-For header in the order received, `trusted_proxies`
    CIDR networks (Settings.trusted_proxies)."""
    hop = parse_ip(peer)
    if hop is None:
        return peer or "unknown"
    trusted = _networks(trusted_proxies)

    def is_proxy(address: IPAddress) -> bool:
        return any(address in network for network in trusted)

    if not is_proxy(hop):
        return str(hop)
    entries = [entry for header in forwarded_for for entry in header.split(",")]
    for entry in reversed(entries):
        address = parse_ip(entry)
        if address is None:
            break
        hop = address
        if not is_proxy(hop):
            break
    return str(hop)


def client_address(connection: ASGIConnection[Any, Any, Any, Any], trusted_proxies: tuple[str, ...]) -> str:
    """`resolve_client` for a request."""
    peer = connection.client.host if connection.client else None
    return resolve_client(peer, connection.headers.getall("x-forwarded-for", []), trusted_proxies)
