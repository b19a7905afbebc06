"""The address rules (alerts/destinations.py): which hosts a destination may name, in every
notation a resolver reads. Pure: names resolve through a table, not DNS."""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

import pytest

from alerts.destinations import (
    NO_NETWORKS,
    Address,
    AllowedNetworks,
    address_refusal,
    host_refusal,
    literal_address,
    normalize_host,
    parse_networks,
    port_refusal,
    refusal_of_connection,
)

LOOPBACK = parse_networks("127.0.0.0/8, ::1/128")

# What the third-party names of these tests resolve to (nothing else resolves).
DNS: dict[str, list[str]] = {
    "localhost": ["127.0.0.1", "::1"],
    "hooks.example.com": ["93.184.215.14", "2606:2800:21f:cb07:6820:80da:af6b:8b2c"],
    "rebound.example.com": ["93.184.215.14", "10.0.0.7"],
    "metadata.example.com": ["169.254.169.254"],
    "v6-private.example.com": ["fd12:3456::1"],
    "mapped.example.com": ["::ffff:192.168.1.1"],
    "printer.local": ["192.168.1.20"],
    "intranet": ["93.184.215.14"],
}


def resolve(host: str, port: int | None) -> Sequence[Address]:
    if host not in DNS:
        raise OSError(-2, "Name or service not known")
    return [ipaddress.ip_address(a) for a in DNS[host]]


def refusal(host: str, allow: AllowedNetworks = NO_NETWORKS, port: object = None) -> str | None:
    return host_refusal(host, port, allow, resolve)


# --- every notation of a refused address ----------------------------------------------------


@pytest.mark.parametrize(
    ("host", "reason"),
    [
        # the cases
        ("127.0.0.1", "host 127.0.0.1 is a loopback address (127.0.0.0/8)"),
        ("169.254.169.254", "host 169.254.169.254 is a cloud metadata service address (169.254.169.254)"),
        ("10.0.0.1", "host 10.0.0.1 is a private address (RFC 1918, 10.0.0.0/8)"),
        ("[::1]", "host [::1] is a loopback address (::1)"),
        ("0x7f000001", "host 0x7f000001 (127.0.0.1) is a loopback address (127.0.0.0/8)"),
        ("2130706433", "host 2130706433 (127.0.0.1) is a loopback address (127.0.0.0/8)"),
        # legacy IPv4 notations the C resolver reads
        ("0177.0.0.1", "host 0177.0.0.1 (127.0.0.1) is a loopback address"),
        ("017700000001", "host 017700000001 (127.0.0.1) is a loopback address"),
        ("0x7f.0.0.1", "host 0x7f.0.0.1 (127.0.0.1) is a loopback address"),
        ("0x7f.1", "host 0x7f.1 (127.0.0.1) is a loopback address"),
        ("127.1", "host 127.1 (127.0.0.1) is a loopback address"),
        ("127.0.1", "host 127.0.1 (127.0.0.1) is a loopback address"),
        ("10.1", "host 10.1 (10.0.0.1) is a private address (RFC 1918, 10.0.0.0/8)"),
        ("0", "host 0 (0.0.0.0) is the unspecified address (0.0.0.0)"),
        ("0xA9FEA9FE", "host 0xA9FEA9FE (169.254.169.254) is a cloud metadata service address"),
        ("2852039166", "host 2852039166 (169.254.169.254) is a cloud metadata service address"),
        # written oddly
        ("127.0.0.1.", "host 127.0.0.1. (127.0.0.1) is a loopback address"),
        ("%31%32%37.0.0.1", "host %31%32%37.0.0.1 (127.0.0.1) is a loopback address"),
        # full-width digits and dots (IDNA maps them)
        ("１２７．０．０．１", "(127.0.0.1) is a loopback address"),
        ("127。0。0。1", "(127.0.0.1) is a loopback address"),  # ideographic full stops
        ("[%3A%3A1]", "host [%3A%3A1] (::1) is a loopback address (::1)"),
        # IPv6 forms that carry an IPv4 address
        ("::ffff:127.0.0.1", "is an IPv6 form of 127.0.0.1, a loopback address (127.0.0.0/8)"),
        ("[::ffff:7f00:1]", "is an IPv6 form of 127.0.0.1, a loopback address"),
        ("::ffff:169.254.169.254", "is an IPv6 form of 169.254.169.254, a cloud metadata service address"),
        ("::127.0.0.1", "is an IPv6 form of 127.0.0.1, a loopback address"),
        ("::a00:1", "is an IPv6 form of 10.0.0.1, a private address"),
        ("64:ff9b::10.0.0.1", "is an IPv6 form of 10.0.0.1, a private address"),  # NAT64
        ("2002:c0a8:101::1", "carrying 192.168.1.1, a private address (RFC 1918, 192.168.0.0/16)"),  # 6to4
        ("2001:0:4136:e378:8000:63bf:3fff:fdd2", "carrying 192.0.2.45, a documentation address"),  # Teredo
        # every refused kind of network
        ("172.16.5.4", "a private address (RFC 1918, 172.16.0.0/12)"),
        ("192.168.0.1", "a private address (RFC 1918, 192.168.0.0/16)"),
        ("fc00::1", "a unique local address (RFC 4193, fc00::/7)"),
        ("fd12:3456::1", "a unique local address (RFC 4193, fc00::/7)"),
        ("169.254.1.1", "a link-local address (169.254.0.0/16)"),
        ("fe80::1", "a link-local address (fe80::/10)"),
        ("[fe80::1%25eth0]", "a link-local address (fe80::/10)"),
        ("224.0.0.1", "a multicast address (224.0.0.0/4)"),
        ("ff02::1", "a multicast address (ff00::/8)"),
        ("0.0.0.0", "the unspecified address (0.0.0.0)"),
        ("::", "the unspecified address (::)"),
        ("0.1.2.3", "a 'this network' address (0.0.0.0/8)"),
        ("100.64.0.1", "a shared address (RFC 6598 carrier-grade NAT, 100.64.0.0/10)"),
        ("192.0.0.8", "an IETF protocol assignment (192.0.0.0/24)"),
        ("198.18.0.1", "a benchmarking address (198.18.0.0/15)"),
        ("240.0.0.1", "a reserved address (240.0.0.0/4)"),
        ("255.255.255.255", "the broadcast address"),
        ("192.0.2.1", "a documentation address (192.0.2.0/24)"),
        ("2001:db8::1", "a documentation address (2001:db8::/32)"),
        ("fec0::1", "a site-local address (fec0::/10)"),
        ("100::1", "a discard-only address (100::/64)"),
        ("fd00:ec2::254", "a cloud metadata service address (fd00:ec2::254)"),
        ("100.100.100.200", "a cloud metadata service address (100.100.100.200)"),
    ],
)
def test_a_refused_address_is_refused_in_every_notation(host: str, reason: str) -> None:
    found = refusal(host)
    assert found is not None and reason in found, found


@pytest.mark.parametrize(
    "host",
    [
        "8.8.8.8",
        "93.184.215.14",
        "1.1.1.1",
        "2606:4700:4700::1111",
        "[2606:4700:4700::1111]",
        "::ffff:8.8.8.8",
        "64:ff9b::8.8.8.8",
        "2002:808:808::1",
        "0x08080808",
        "134744072",
        "hooks.example.com",
        "HOOKS.Example.COM.",
        "unknown.example.com",
    ],
)
def test_public_hosts_pass(host: str) -> None:
    assert refusal(host) is None


# --- names --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("host", "reason"),
    [
        ("localhost", "host localhost resolves to a loopback address"),
        ("LOCALHOST.", "host LOCALHOST. resolves to a loopback address"),
        (
            "rebound.example.com",
            "host rebound.example.com resolves to a private address (RFC 1918, 10.0.0.0/8)",
        ),
        ("metadata.example.com", "resolves to a cloud metadata service address"),
        ("v6-private.example.com", "resolves to a unique local address (RFC 4193, fc00::/7)"),
        ("mapped.example.com", "resolves to an IPv6 form of 192.168.1.1, a private address"),
        ("metadata.google.internal", "host metadata.google.internal is the name of a cloud metadata service"),
        ("metadata", "host metadata is the name of a cloud metadata service"),
        ("Metadata.Google.Internal.", "is the name of a cloud metadata service"),
        ("app.localhost", "host app.localhost is a name for the portal's own machine"),
        ("db.internal", "host db.internal is a private-use name (.internal)"),
        ("printer.local", "host printer.local resolves to a private address"),
        ("nas.home.arpa", "a private-use name (.home.arpa)"),
        ("redis", "host redis is a single-label name, which the portal's resolver completes inside its own"),
    ],
)
def test_names_are_judged_by_what_they_resolve_to_internal_ones_must_resolve(host: str, reason: str) -> None:
    found = refusal(host)
    assert found is not None and reason in found, found


def test_a_resolved_refusal_does_not_say_which_address_the_name_has() -> None:
    found = refusal("rebound.example.com")
    assert found is not None and "10.0.0.7" not in found


def test_a_single_label_name_that_resolves_to_a_public_address_passes() -> None:
    assert refusal("intranet") is None


@pytest.mark.parametrize(
    ("host", "reason"),
    [
        ("999.1.1.1", "host '999.1.1.1' is not a valid IPv4 address"),
        ("4294967296", "is not a valid IPv4 address"),
        ("1:2", "host '1:2' is not a valid IPv6 address"),
        ("ex ample.com", "is not a valid host name"),
        ("evil.com@127.0.0.1", "is not a valid host name"),
        ("%2531%2532%2537.0.0.1", "is not a valid host name"),
        ("", "is empty"),
        ("...", "is empty"),
    ],
)
def test_hosts_that_cannot_be_hosts_are_refused(host: str, reason: str) -> None:
    found = refusal(host)
    assert found is not None and reason in found, found


def test_idna_names_are_resolved_in_their_ascii_form() -> None:
    seen: list[str] = []

    def recording(host: str, port: int | None) -> Sequence[Address]:
        seen.append(host)
        return [ipaddress.ip_address("93.184.215.14")]

    assert host_refusal("Bücher.Example", None, (), recording) is None
    assert seen == ["xn--bcher-kva.example"]


# --- ports --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("port", "reason"),
    [
        (None, None),
        ("", None),
        (1, None),
        (443, None),
        ("8443", None),
        (65535, None),
        (0, "port 0 is not a valid port (1 to 65535)"),
        (65536, "port 65536 is not a valid port (1 to 65535)"),
        (99999, "port 99999 is not a valid port (1 to 65535)"),
        (-1, "port -1 is not a valid port (1 to 65535)"),
        ("http", "port 'http' is not a number"),
    ],
)
def test_ports(port: object, reason: str | None) -> None:
    assert port_refusal(port) == reason


def test_an_invalid_port_is_refused_even_for_a_public_host() -> None:
    assert refusal("hooks.example.com", port=99999) == "port 99999 is not a valid port (1 to 65535)"


# --- the operator's allow-list ------------------------------------------------------------------


@pytest.mark.parametrize(
    "host",
    [
        "127.0.0.1",
        "127.0.0.2",
        "0x7f000001",
        "2130706433",
        "127.1",
        "[::1]",
        "::ffff:127.0.0.1",
        "localhost",
    ],
)
def test_allowed_networks_are_reached_in_every_notation(host: str) -> None:
    assert refusal(host, LOOPBACK) is None


@pytest.mark.parametrize("host", ["10.0.0.1", "192.168.1.1", "169.254.1.1", "fd12:3456::1", "redis"])
def test_allowing_the_loopback_allows_nothing_else(host: str) -> None:
    assert refusal(host, LOOPBACK) is not None


@pytest.mark.parametrize(
    "host",
    [
        "169.254.169.254",
        "::ffff:169.254.169.254",
        "0xA9FEA9FE",
        "metadata.google.internal",
        "metadata.example.com",
    ],
)
def test_metadata_stays_refused_inside_an_allowed_network(host: str) -> None:
    allow = parse_networks("169.254.0.0/16, ::ffff:0:0/96, 0.0.0.0/0")
    found = refusal(host, allow)
    assert found is not None and "metadata service" in found


def test_an_allowed_private_network_is_reached() -> None:
    assert refusal("10.20.30.40", parse_networks("10.20.0.0/16")) is None
    assert refusal("10.21.0.1", parse_networks("10.20.0.0/16")) is not None


@pytest.mark.parametrize(
    ("text", "networks"),
    [
        ("", ()),
        ("  ", ()),
        ("127.0.0.0/8", ("127.0.0.0/8",)),
        ("127.0.0.0/8,::1/128", ("127.0.0.0/8", "::1/128")),
        (" 10.0.0.0/8 , , 192.168.1.7 ", ("10.0.0.0/8", "192.168.1.7/32")),
        ("10.1.2.3/8", ("10.0.0.0/8",)),
    ],
)
def test_parse_networks(text: str, networks: tuple[str, ...]) -> None:
    parsed = parse_networks(text)
    assert isinstance(parsed, AllowedNetworks)
    assert tuple(str(n) for n in parsed) == networks


@pytest.mark.parametrize("text", ["localhost", "10.0.0.0/33", "127.0.0.0/8;10.0.0.0/8", "*"])
def test_parse_networks_names_what_is_not_a_network(text: str) -> None:
    with pytest.raises(ValueError, match="is not a network in CIDR form"):
        parse_networks(text)


# --- the pieces ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "host"),
    [
        ("Example.COM.", "example.com"),
        ("[::1]", "::1"),
        ("ex%41mple.com", "example.com"),
        ("ＥＸＡＭＰＬＥ．com", "example.com"),
        ("bücher.example", "xn--bcher-kva.example"),
    ],
)
def test_normalize_host(raw: str, host: str) -> None:
    assert normalize_host(raw) == host


@pytest.mark.parametrize(
    ("host", "address"),
    [
        ("127.0.0.1", "127.0.0.1"),
        ("2130706433", "127.0.0.1"),
        ("0x7f000001", "127.0.0.1"),
        ("0177.0.0.1", "127.0.0.1"),
        ("127.1", "127.0.0.1"),
        ("::ffff:7f00:1", "::ffff:7f00:1"),
        ("example.com", None),
        ("deadbeef.example", None),
        ("cafe", None),
    ],
)
def test_literal_address(host: str, address: str | None) -> None:
    found = literal_address(host)
    assert (None if found is None else str(found)) == address


def test_address_refusal_of_a_global_address_is_none() -> None:
    assert address_refusal(ipaddress.ip_address("93.184.215.14")) is None
    assert address_refusal(ipaddress.ip_address("127.0.0.1"), LOOPBACK) is None


@pytest.mark.parametrize(
    ("address", "reason"),
    [
        (("127.0.0.1", 5432), "127.0.0.1 is a loopback address (127.0.0.0/8)"),
        (("::1", 22, 0, 0), "::1 is a loopback address (::1)"),
        (("::ffff:10.0.0.1", 80, 0, 0), "::ffff:a00:1 is an IPv6 form of 10.0.0.1, a private address"),
        (("93.184.215.14", 443), None),
        (("localhost", 6379), "host localhost resolves to a loopback address"),
        ("/var/run/docker.sock", "a local socket of the portal's own machine"),
        (b"\0abstract", "a local socket of the portal's own machine"),
    ],
)
def test_refusal_of_connection(address: object, reason: str | None) -> None:
    found = refusal_of_connection(address, (), resolve)
    assert found == reason or (reason is not None and found is not None and reason in found), found
