"""Which hosts a notice may go to: pure rules, no I/O (name resolution is passed in).

A destination a customer or an admin enters (a webhook, any Apprise URL with a host) must
not make the portal reach its own machine, its own network or a cloud's metadata service
(server-side request forgery). A host is refused when it is, or resolves to, a loopback,
private (RFC 1918, RFC 4193), shared (RFC 6598), link-local, multicast, unspecified,
broadcast, documentation, benchmarking or otherwise non-global address, or a metadata
address, in whatever notation the host is written: the legacy IPv4 forms the C resolver
accepts (`2130706433`, `0x7f000001`, `0177.0.0.1`, `127.1`), IPv6 forms that carry an IPv4
address (`::ffff:127.0.0.1`, `::127.0.0.1`, NAT64, 6to4, Teredo), a trailing dot,
uppercase, percent-encoding, full-width digits and other IDNA-mapped forms.

The operator may allow networks (PORTAL_DESTINATION_ALLOW_NETWORKS, e.g. `127.0.0.0/8` for
tests and demos); metadata addresses and names stay refused even inside an allowed network.
The operator's own servers (the portal's SMTP server, the Slack webhook base) are operator
configuration and are not judged here.
"""

from __future__ import annotations

import ipaddress
import re
import socket
import unicodedata
from collections.abc import Callable, Iterable, Sequence
from urllib.parse import unquote

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network
# (host, port) → the addresses the host resolves to; raises OSError when it does not resolve.
Resolver = Callable[[str, int | None], Sequence[Address]]

ALLOW_NETWORKS_SETTING = "PORTAL_DESTINATION_ALLOW_NETWORKS"
MAX_PORT = 65535
# Long hosts are shown clipped in refusals.
_SHOWN_HOST_CHARS = 80

_net = ipaddress.ip_network

# Cloud metadata services, never reachable even inside an allowed network: AWS, GCP, Azure,
# OpenStack, DigitalOcean and Oracle (169.254.169.254), AWS ECS and EKS task credentials
# (169.254.170.2, 169.254.170.23), AWS IPv6 (fd00:ec2::254, fd00:ec2::23), Alibaba
# (100.100.100.200), Oracle's legacy one (192.0.0.192).
METADATA_ADDRESSES = frozenset(
    ipaddress.ip_address(a)
    for a in (
        "169.254.169.254",
        "169.254.170.2",
        "169.254.170.23",
        "fd00:ec2::254",
        "fd00:ec2::23",
        "100.100.100.200",
        "192.0.0.192",
    )
)
METADATA_NAMES = frozenset(
    ("metadata", "metadata.google.internal", "metadata.goog", "instance-data", "instance-data.ec2.internal")
)

# Names that only mean something inside the portal's own network: RFC 6761's localhost,
# ICANN's private-use .internal, mDNS .local, RFC 8375's home.arpa, and the suffixes
# RFC 6762 (appendix G) lists as in private use.
_INTERNAL_SUFFIXES = (
    "localhost",
    "internal",
    "local",
    "home.arpa",
    "intranet",
    "private",
    "corp",
    "home",
    "lan",
)

# The first network that holds an address names why it is refused (order matters: the
# specific before the general). Anything else that is not global is refused by the rule
# after this table.
_REFUSED_NETWORKS: tuple[tuple[Network, str], ...] = (
    (_net("0.0.0.0/32"), "the unspecified address (0.0.0.0)"),
    (_net("0.0.0.0/8"), "a 'this network' address (0.0.0.0/8), which reaches the portal's own machine"),
    (_net("127.0.0.0/8"), "a loopback address (127.0.0.0/8)"),
    (_net("10.0.0.0/8"), "a private address (RFC 1918, 10.0.0.0/8)"),
    (_net("172.16.0.0/12"), "a private address (RFC 1918, 172.16.0.0/12)"),
    (_net("192.168.0.0/16"), "a private address (RFC 1918, 192.168.0.0/16)"),
    (_net("100.64.0.0/10"), "a shared address (RFC 6598 carrier-grade NAT, 100.64.0.0/10)"),
    (_net("169.254.0.0/16"), "a link-local address (169.254.0.0/16)"),
    (_net("192.0.0.0/24"), "an IETF protocol assignment (192.0.0.0/24)"),
    (_net("192.0.2.0/24"), "a documentation address (192.0.2.0/24)"),
    (_net("198.51.100.0/24"), "a documentation address (198.51.100.0/24)"),
    (_net("203.0.113.0/24"), "a documentation address (203.0.113.0/24)"),
    (_net("192.88.99.0/24"), "a 6to4 relay address (192.88.99.0/24)"),
    (_net("198.18.0.0/15"), "a benchmarking address (198.18.0.0/15)"),
    (_net("224.0.0.0/4"), "a multicast address (224.0.0.0/4)"),
    (_net("255.255.255.255/32"), "the broadcast address"),
    (_net("240.0.0.0/4"), "a reserved address (240.0.0.0/4)"),
    (_net("::/128"), "the unspecified address (::)"),
    (_net("::1/128"), "a loopback address (::1)"),
    (_net("fc00::/7"), "a unique local address (RFC 4193, fc00::/7)"),
    (_net("fe80::/10"), "a link-local address (fe80::/10)"),
    (_net("fec0::/10"), "a site-local address (fec0::/10)"),
    (_net("ff00::/8"), "a multicast address (ff00::/8)"),
    (_net("2001:db8::/32"), "a documentation address (2001:db8::/32)"),
    (_net("100::/64"), "a discard-only address (100::/64)"),
    (_net("64:ff9b:1::/48"), "a local-use NAT64 address (64:ff9b:1::/48)"),
)
_NAT64 = _net("64:ff9b::/96")
_IPV4_COMPATIBLE = _net("::/96")
_SIXTOFOUR = _net("2002::/16")
_TEREDO = _net("2001::/32")

# Characters of a legacy IPv4 literal (decimal, octal and 0x-hex parts); only such hosts are
# read with inet_aton, the C parser getaddrinfo itself uses for numeric hosts.
_IPV4_CHARS = re.compile(r"[0-9a-fx.]+")
_DIGITS_AND_DOTS = re.compile(r"[0-9.]+")
_NAME_CHARS = re.compile(r"[a-z0-9_.-]+")
# IDNA's label separators besides ".": ideographic, full-width and half-width full stops.
_DOTS = str.maketrans({"\u3002": ".", "\uff0e": ".", "\uff61": "."})


class AllowedNetworks(tuple[Network, ...]):
    """The operator's allowed networks: a tuple of networks, of its own type so that typed
    settings holding it stay one type to validators (msgspec refuses a union of the two
    ipaddress network classes)."""

    __slots__ = ()


# The default: no network besides the public ones.
NO_NETWORKS = AllowedNetworks()


def parse_networks(text: str) -> AllowedNetworks:
    """The networks in `text`: CIDRs separated by commas (`127.0.0.0/8, ::1/128`; a bare
    address is one host); "" → (). Host bits are ignored (`10.1.2.3/8` is 10.0.0.0/8).
    Raises ValueError naming the first item that is not a network."""
    networks: list[Network] = []
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        try:
            networks.append(ipaddress.ip_network(item, strict=False))
        except ValueError:
            raise ValueError(
                f"{item!r} is not a network in CIDR form (such as 127.0.0.0/8 or ::1/128)"
            ) from None
    return AllowedNetworks(networks)


def is_allowed(address: Address, allow: Iterable[Network]) -> bool:
    """True when `address` is inside one of the operator's allowed networks."""
    return any(address.version == network.version and address in network for network in allow)


def address_refusal(address: Address, allow: Iterable[Network] = ()) -> str | None:
    """Why the portal must not connect to `address` ("a loopback address (127.0.0.0/8)"),
    or None when it may: a global address, or one inside an allowed network. Metadata
    addresses are refused even when allowed. An IPv6 address that carries an IPv4 one
    (mapped, compatible, NAT64) is judged as that IPv4 address; one whose 6to4 or Teredo
    form embeds a refused IPv4 address is refused."""
    allow = tuple(allow)
    plain = _without_scope(address)
    if plain in METADATA_ADDRESSES:
        return f"a cloud metadata service address ({plain})"
    if isinstance(plain, ipaddress.IPv6Address):
        carried = _carried_ipv4(plain)
        if carried is not None:
            if is_allowed(plain, allow):
                return None if carried not in METADATA_ADDRESSES else address_refusal(carried, allow)
            inner = address_refusal(carried, allow)
            return None if inner is None else f"an IPv6 form of {carried}, {inner}"
        for embedded in _tunnelled_ipv4(plain):
            inner = address_refusal(embedded, allow)
            if inner is not None and not is_allowed(plain, allow):
                return f"a tunnel address carrying {embedded}, {inner}"
    if is_allowed(plain, allow):
        return None
    for network, reason in _REFUSED_NETWORKS:
        if plain.version == network.version and plain in network:
            return reason
    if not plain.is_global:
        return "not a public address"
    return None


def normalize_host(raw: str) -> str:
    """`raw` (a URL's host, as written) the way a resolver reads it: brackets removed,
    percent-decoded, IDNA-mapped (full-width digits and dots, case) and punycoded, trailing
    dots dropped, lower case. Raises ValueError for a host that is empty or cannot be a
    host name."""
    host = unquote(raw.strip())
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    host = unicodedata.normalize("NFKC", host.translate(_DOTS)).casefold().rstrip(".")
    if not host:
        raise ValueError("is empty")
    if not host.isascii():
        try:
            host = host.encode("idna").decode("ascii")
        except UnicodeError:
            raise ValueError("is not a valid host name") from None
    # A name is letters, digits, "-", "_" and dots once IDNA is done; ":" only in an IPv6
    # literal (and "%" only in its zone), which literal_address reads.
    if ":" not in host and not _NAME_CHARS.fullmatch(host):
        raise ValueError("is not a valid host name")
    return host


def literal_address(host: str) -> Address | None:
    """The address `host` (normalized) is written as, in any notation the C resolver reads
    (`127.0.0.1`, `127.1`, `2130706433`, `0x7f000001`, `0177.0.0.1`, `::ffff:7f00:1`,
    `fe80::1%eth0`), or None for a name. Raises ValueError for something that looks like
    an address and is not one (`999.1.1.1`, `1:2`)."""
    if ":" in host:
        try:
            return ipaddress.ip_address(host)
        except ValueError:
            raise ValueError("is not a valid IPv6 address") from None
    if _IPV4_CHARS.fullmatch(host):
        try:
            return ipaddress.IPv4Address(socket.inet_aton(host))
        except OSError:
            pass
    if _DIGITS_AND_DOTS.fullmatch(host):
        raise ValueError("is not a valid IPv4 address")
    return None


def name_refusal(host: str) -> str | None:
    """Why the name `host` (normalized, not an address) only makes sense inside the portal's
    own network, or None for an ordinary public name."""
    if host in METADATA_NAMES:
        return "the name of a cloud metadata service"
    if host == "localhost" or host.endswith(".localhost"):
        return "a name for the portal's own machine"
    for suffix in _INTERNAL_SUFFIXES:
        if host.endswith("." + suffix):
            return f"a private-use name (.{suffix})"
    if "." not in host:
        return "a single-label name, which the portal's resolver completes inside its own network"
    return None


def port_refusal(port: object) -> str | None:
    """Why `port` cannot be a TCP or UDP port (None, meaning the scheme's default, is fine)."""
    if port is None or port == "":
        return None
    try:
        number = int(str(port))
    except ValueError:
        return f"port {str(port)[:20]!r} is not a number"
    if not 1 <= number <= MAX_PORT:
        return f"port {number} is not a valid port (1 to {MAX_PORT})"
    return None


def host_refusal(host: str, port: object, allow: Iterable[Network], resolve: Resolver) -> str | None:
    """Why the portal must not send to `host` (as written in a destination) on `port`, or
    None when it may. An address literal is judged as it stands. A name is resolved with
    `resolve` and refused when ANY of its addresses is refused; a name that does not
    resolve is not refused (its send will fail and say so), except a name that only means
    something inside the portal's network (`localhost`, `*.internal`, single-label names),
    which must resolve, and into allowed networks. Metadata names are always refused."""
    allow = tuple(allow)
    shown = host if len(host) <= _SHOWN_HOST_CHARS else host[: _SHOWN_HOST_CHARS - 1] + "…"
    refused_port = port_refusal(port)
    if refused_port is not None:
        return refused_port
    try:
        name = normalize_host(host)
        address = literal_address(name)
    except ValueError as exc:
        return f"host {shown!r} {exc}"
    if address is not None:
        reason = address_refusal(address, allow)
        if reason is None:
            return None
        written = "" if str(address) == host.strip("[]") else f" ({address})"
        return f"host {shown}{written} is {reason}"
    internal = name_refusal(name)
    if name in METADATA_NAMES:
        return f"host {shown} is {internal}"
    try:
        addresses = list(resolve(name, _port_number(port)))
    except OSError:
        addresses = []
    if not addresses:
        return None if internal is None else f"host {shown} is {internal}"
    for resolved in addresses:
        reason = address_refusal(resolved, allow)
        if reason is not None:
            # Which address is not said: a refusal must not become a way to read the
            # portal's internal DNS.
            return f"host {shown} resolves to {reason}"
    return None


def refusal_of_connection(address: object, allow: Iterable[Network], resolve: Resolver) -> str | None:
    """Why a socket of a guarded send must not connect (or send) to `address`, a Python
    socket address: (host, port[, flowinfo, scope_id]) for IP, else a local socket (a path
    or another family), which is always refused."""
    if not (isinstance(address, tuple) and address and isinstance(address[0], str)):
        return "a local socket of the portal's own machine"
    host = address[0]
    port = address[1] if len(address) > 1 else None
    try:
        literal: Address | None = ipaddress.ip_address(host)
    except ValueError:
        literal = None
    if literal is None:
        # socket.connect given a name resolves it itself: judge what the name resolves to.
        return host_refusal(host, port, allow, resolve)
    reason = address_refusal(literal, allow)
    return None if reason is None else f"{literal} is {reason}"


def _port_number(port: object) -> int | None:
    try:
        return int(str(port)) if port not in (None, "") else None
    except ValueError:
        return None


def _without_scope(address: Address) -> Address:
    if isinstance(address, ipaddress.IPv6Address) and address.scope_id:
        return ipaddress.IPv6Address(address.packed)
    return address


def _carried_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address a connection to `address` reaches: IPv4-mapped (::ffff:a.b.c.d),
    IPv4-compatible (::a.b.c.d, deprecated but still routed by some stacks) and NAT64
    (64:ff9b::a.b.c.d, RFC 6052) forms."""
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address in _IPV4_COMPATIBLE and int(address) > 1:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    if address in _NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def _tunnelled_ipv4(address: ipaddress.IPv6Address) -> list[ipaddress.IPv4Address]:
    """The IPv4 addresses a 6to4 (2002::/16) or Teredo (2001::/32: server and client)
    address embeds."""
    if address in _SIXTOFOUR and address.sixtofour is not None:
        return [address.sixtofour]
    if address in _TEREDO and address.teredo is not None:
        return list(address.teredo)
    return []
