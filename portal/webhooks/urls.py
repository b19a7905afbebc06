"""Which endpoint URLs the portal may POST to: an http(s) URL whose host is public (pure
rules in alerts.destinations; the name resolution is passed in). URLs are attacker-controlled
input: this is judged when an endpoint is saved, and every connection of a send is judged
again (alerts.egress), so a name that later resolves inside the network is refused then."""

from __future__ import annotations

import re
from collections.abc import Iterable
from urllib.parse import urlsplit

from alerts import egress
from alerts.destinations import Network, Resolver, host_refusal

MAX_URL_LENGTH = 2000
_CONTROL_OR_SPACE = re.compile(r"[\x00-\x20\x7f]")


def url_refusal(url: str, allow: Iterable[Network], resolve: Resolver = egress.resolve) -> str | None:
    """Why `url` cannot be a webhook endpoint ("url: …"), or None. Blocks while its host is
    resolved (DNS)."""
    if not url or len(url) > MAX_URL_LENGTH:
        return f"url: must be 1 to {MAX_URL_LENGTH} characters"
    if _CONTROL_OR_SPACE.search(url):
        return "url: must not contain spaces or control characters"
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        return f"url: is not a valid URL ({exc})"
    if parts.scheme not in ("http", "https"):
        return "url: must start with https:// (or http://)"
    if not parts.hostname:
        return "url: names no host"
    if parts.username is not None or parts.password is not None:
        return "url: must not carry a user name or password (the signature authenticates the portal)"
    if parts.fragment:
        return "url: must not have a #fragment"
    refusal = host_refusal(parts.hostname, port, allow, resolve)
    if refusal is not None:
        return f"url: {refusal}; webhooks go only to public hosts"
    return None
