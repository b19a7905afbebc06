"""`usage-portal secrets rotate`: the stored alert destinations re-encrypted under the current
key (the rotation itself, and the order of steps around it: portal/operations/secret_rotation.py)."""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Any

from portal.cli import SettingsFor
from portal.operations.secret_rotation import RotationRefused, rotate


def cmd_secrets_rotate(args: argparse.Namespace) -> None:
    settings, started = args.settings_for(args)
    try:
        report = asyncio.run(rotate(settings))
    except RotationRefused as exc:
        sys.exit(f"error: {exc}")
    finally:
        if started:
            started.stop()
    print("\n".join(report.lines()))


def register_secrets_commands(sub: Any, settings_for: SettingsFor) -> None:
    """Add `secrets rotate` to the `usage-portal` parser."""
    secrets = sub.add_parser("secrets", help="the secret key protecting stored alert destinations")
    secrets_sub = secrets.add_subparsers(dest="secrets_command", required=True)
    rotate_parser = secrets_sub.add_parser(
        "rotate",
        help="re-encrypt stored destinations under PORTAL_SECRET_KEY "
        "(PORTAL_SECRET_KEY_PREVIOUS: the old keys, comma-separated)",
    )
    rotate_parser.set_defaults(func=cmd_secrets_rotate, settings_for=settings_for)
