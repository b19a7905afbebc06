"""Shared pieces of the JSON API: camelCase structs and the error body."""

from __future__ import annotations

import msgspec


class CamelStruct(msgspec.Struct, rename="camel", forbid_unknown_fields=True):
    """Request and response bodies: camelCase on the wire, like the event schema.

    Unknown fields are refused so that a typo ("metricname") is an error, not a default.
    """


ID_PATTERN = r"^[A-Za-z0-9._:@+\-]+$"
"""Customer ids and metric names: no braces (they would break Redis hash tags), no spaces."""
