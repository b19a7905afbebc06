"""`usage-portal catalog ...` and `usage-portal invoices ...`: billing from the terminal.

Each command finds the running servers (or starts the embedded ones for its own run, like
every other command), does its work in one transaction, prints the result on stdout and
exits 1 with the message when the request is refused.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from pathlib import Path
from typing import Any

from portal.billing.catalog_file import CatalogFileError
from portal.cli import SettingsFor, arguments
from portal.infrastructure.domain_errors import Problem
from portal.infrastructure.settings import Settings


def _run(args: argparse.Namespace, work: Any) -> None:
    """Run one billing command with servers found or started; errors exit 1 with the message."""
    settings, started = args.settings_for(args)
    try:
        output = asyncio.run(work(settings))
        print(output, end="" if output.endswith("\n") else "\n")
    except (Problem, CatalogFileError) as exc:
        sys.exit(f"error: {exc}")
    finally:
        if started:
            started.stop()


def cmd_catalog_apply(args: argparse.Namespace) -> None:
    from portal.billing.commands import apply_catalog_file

    async def work(settings: Settings) -> str:
        report = await apply_catalog_file(settings, Path(args.file))
        return "\n".join(report.lines())

    _run(args, work)


def cmd_invoices_run(args: argparse.Namespace) -> None:
    from portal.billing.commands import invoice_run, summary_lines

    async def work(settings: Settings) -> str:
        summary = await invoice_run(settings, args.period)
        if summary.errors:
            print("\n".join(summary_lines(summary)))
            sys.exit(1)
        return "\n".join(summary_lines(summary))

    _run(args, work)


def cmd_invoices_list(args: argparse.Namespace) -> None:
    from portal.billing.commands import list_invoices

    _run(args, lambda s: list_invoices(s, customer_id=args.customer, state=args.state))


def cmd_invoices_show(args: argparse.Namespace) -> None:
    from portal.billing.commands import show_invoice

    _run(args, lambda s: show_invoice(s, args.id))


def cmd_invoices_approve(args: argparse.Namespace) -> None:
    from portal.billing.commands import approve_invoice

    by = args.by or os.environ.get("USER") or "cli"
    _run(args, lambda s: approve_invoice(s, args.id, approved_by=by))


def cmd_invoices_void(args: argparse.Namespace) -> None:
    from portal.billing.commands import void_invoice

    _run(args, lambda s: void_invoice(s, args.id, reason=args.reason))


def cmd_invoices_export(args: argparse.Namespace) -> None:
    from portal.billing.commands import export_csv

    _run(args, lambda s: export_csv(s, lines=args.lines, customer_id=args.customer))


def register_billing_commands(sub: Any, settings_for: SettingsFor) -> None:
    """Add the `catalog` and `invoices` command groups to the CLI's subparsers."""
    catalog = sub.add_parser("catalog", help="meters, customers, plans and subscriptions as data")
    catalog_sub = catalog.add_subparsers(dest="catalog_command", required=True)
    apply = catalog_sub.add_parser(
        "apply", help="create what a catalog file (YAML or JSON) lists; idempotent"
    )
    apply.add_argument("file")
    apply.set_defaults(settings_for=settings_for, func=cmd_catalog_apply)

    inv = sub.add_parser("invoices", help="invoice runs, review and approval")
    inv_sub = inv.add_subparsers(dest="invoices_command", required=True)
    run = inv_sub.add_parser("run", help="create or refresh every customer's draft for a period")
    run.add_argument("--period", required=True, help="YYYY-MM: the periods starting in that month")
    run.set_defaults(settings_for=settings_for, func=cmd_invoices_run)
    listing = inv_sub.add_parser("list", help="invoices, newest first")
    listing.add_argument("--customer")
    listing.add_argument("--state", choices=["draft", "awaiting_review", "finalized", "void"])
    listing.set_defaults(settings_for=settings_for, func=cmd_invoices_list)
    show = inv_sub.add_parser("show", help="one invoice with its lines and adjustments (JSON)")
    show.add_argument("id", type=arguments.record_id)
    show.set_defaults(settings_for=settings_for, func=cmd_invoices_show)
    approve = inv_sub.add_parser("approve", help="finalize a draft awaiting review")
    approve.add_argument("id", type=arguments.record_id)
    approve.add_argument("--by", help="who approves (default: $USER)")
    approve.set_defaults(settings_for=settings_for, func=cmd_invoices_approve)
    void = inv_sub.add_parser("void", help="void a finalized invoice and reissue its period")
    void.add_argument("id", type=arguments.record_id)
    void.add_argument("--reason", required=True)
    void.set_defaults(settings_for=settings_for, func=cmd_invoices_void)
    export = inv_sub.add_parser("export", help="CSV of invoices (or --lines) on stdout")
    export.add_argument("--lines", action="store_true")
    export.add_argument("--customer")
    export.set_defaults(settings_for=settings_for, func=cmd_invoices_export)
