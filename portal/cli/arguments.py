"""Argument types of the `usage-portal` command: a value out of range is argparse's usage
error (exit 2, one line naming the option), never a traceback from the database or the
server it would have reached."""

from __future__ import annotations

import argparse
from collections.abc import Callable

ID_MAX = 2**63 - 1  # a bigint: larger ids exist nowhere


def bounded_int(least: int, most: int) -> Callable[[str], int]:
    """An integer from `least` to `most`."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
        if not least <= value <= most:
            raise argparse.ArgumentTypeError(f"must be from {least} to {most}, got {value}")
        return value

    parse.__name__ = "integer"  # argparse names the type in its message
    return parse


record_id = bounded_int(1, ID_MAX)
port = bounded_int(1, 65_535)
count = bounded_int(1, 256)


def short_text(most: int) -> Callable[[str], str]:
    """Printable text of at most `most` characters (a key's name, shown in lists)."""

    def parse(text: str) -> str:
        if len(text) > most:
            raise argparse.ArgumentTypeError(f"at most {most} characters, got {len(text)}")
        if any(ord(c) < 0x20 or ord(c) == 0x7F for c in text):
            raise argparse.ArgumentTypeError("control characters are not allowed")
        return text

    parse.__name__ = "text"
    return parse
