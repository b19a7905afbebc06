"""Plans: the list, one plan's charges, and uploading a catalog file (the format of
`usage-portal catalog apply`) to create meters, customers, plans and subscriptions.

An upload is applied in one transaction of its own, never the request's: a refused file
answers 422 with nothing applied, and "check only" runs the whole apply then rolls back,
so what it reports is exactly what applying would do now.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import PurePath
from typing import Any

from litestar import Request, get, post
from litestar.datastructures import UploadFile
from litestar.params import FromPath
from litestar.response import Template
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from portal.billing.catalog_file import ApplyReport, CatalogFileError, apply_catalog, parse_catalog
from portal.billing.repository import plans as plan_store
from portal.billing.schemas import Charge, Plan
from portal.catalog import service
from portal.dependencies import Db, Portal
from portal.infrastructure.domain_errors import Problem
from portal.pages.admin.common import ADMIN_TZ, AdminController, record
from portal.pages.admin.forms import UNPROCESSABLE, Form, read_form, text_of
from portal.pages.admin.plan_limits import plan_page
from portal.pages.web import page

MAX_UPLOAD_BYTES = 1024 * 1024
KINDS = ("meters", "customers", "plans", "subscriptions")
UPLOAD_LABELS = {"file": "Catalog file", "check": "Check only"}
MODEL_LABELS = {
    "per_unit": "per unit",
    "graduated": "graduated tiers",
    "volume": "volume tiers",
    "package": "package",
    "flat": "flat fee",
}


@dataclass(frozen=True, slots=True)
class PlanRow:
    plan: Plan
    subscribers: int

    @property
    def charges_summary(self) -> str:
        return "; ".join(charge_summary(c) for c in self.plan.charges)


def charge_summary(charge: Charge) -> str:
    """'api_calls: per unit on api_calls' — what a charge is, in one phrase."""
    on = f" on {charge.meter}" if charge.meter else ""
    return f"{charge.key}: {MODEL_LABELS[charge.model]}{on}"


@dataclass(frozen=True, slots=True)
class Outcome:
    """What an upload did (or, checked only, would do)."""

    file_name: str
    checked_only: bool
    report: ApplyReport

    def rows(self) -> list[tuple[str, int, int, int]]:
        r = self.report
        return [
            (kind, r.created.get(kind, 0), r.changed.get(kind, 0), r.unchanged.get(kind, 0)) for kind in KINDS
        ]


async def apply_upload(
    sessions: async_sessionmaker[AsyncSession],
    request: Request[Any, Any, Any],
    content: bytes,
    file_name: str,
    *,
    check_only: bool,
    now: datetime,
) -> ApplyReport:
    """Parse and apply the file in one transaction; raises CatalogFileError (nothing applied)."""
    catalog = parse_catalog(content, name=file_name)
    async with sessions() as db:
        transaction = await db.begin()
        try:
            report = await apply_catalog(db, catalog, now=now)
            if not check_only:
                await record(
                    db,
                    request,
                    action="catalog.applied",
                    object_type="catalog",
                    object_id=file_name,
                    detail={
                        "created": report.created,
                        "changed": report.changed,
                        "unchanged": report.unchanged,
                    },
                )
        except (Problem, service.AlreadyExists) as exc:
            await transaction.rollback()
            raise CatalogFileError(f"{file_name}: {exc}") from exc
        except DBAPIError as exc:
            await transaction.rollback()
            raise CatalogFileError(f"{file_name}: the database refused it: {exc.orig}") from exc
        except BaseException:
            await transaction.rollback()
            raise
        if check_only:
            await transaction.rollback()
        else:
            await transaction.commit()
    return report


class PlanPagesController(AdminController):
    @get("/plans")
    async def plans(self, request: Request[Any, Any, Any], db: Db) -> Template:
        plans = [PlanRow(plan, n) for plan, n in await plan_store.plans_with_subscriber_counts(db)]
        return page("admin/plans.html", request, plans=plans)

    @get("/plans/{plan_id:str}")
    async def plan(self, request: Request[Any, Any, Any], db: Db, plan_id: FromPath[str]) -> Template:
        """Charges, discounts, subscribers and the plan's limits (`plan_limits.py`)."""
        return await plan_page(request, db, plan_id)

    @get("/catalog")
    async def upload_form(self, request: Request[Any, Any, Any]) -> Template:
        return page(
            "admin/catalog.html",
            request,
            form=Form(labels=UPLOAD_LABELS, values={"check": ""}),
            outcome=None,
            tz=ADMIN_TZ,
        )

    @post("/catalog", status_code=200)
    async def upload(self, request: Request[Any, Any, Any], portal: Portal) -> Template:
        data = await read_form(request)
        form = Form(labels=UPLOAD_LABELS, values={"check": text_of(data, "check")})
        upload = data.get("file")
        check_only = form.values["check"] == "1"
        if not isinstance(upload, UploadFile) or not upload.filename:
            form.fail("file", "choose a YAML or JSON catalog file")
        else:
            file_name = PurePath(upload.filename.replace("\\", "/")).name or "catalog.yaml"
            content = await upload.read(MAX_UPLOAD_BYTES + 1)
            if len(content) > MAX_UPLOAD_BYTES:
                form.fail("file", f"{file_name} is larger than {MAX_UPLOAD_BYTES // 1024} KiB")
            else:
                try:
                    report = await apply_upload(
                        portal.sessions, request, content, file_name, check_only=check_only, now=portal.now()
                    )
                except CatalogFileError as exc:
                    form.fail("file", f"{exc} (nothing was applied)")
                else:
                    if not check_only:
                        # As the API does after creating a customer or meter.
                        portal.catalog.invalidate()
                    return page(
                        "admin/catalog.html",
                        request,
                        form=form,
                        tz=ADMIN_TZ,
                        outcome=Outcome(file_name, check_only, report),
                    )
        return page(
            "admin/catalog.html", request, status_code=UNPROCESSABLE, form=form, outcome=None, tz=ADMIN_TZ
        )
