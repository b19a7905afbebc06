"""API keys: the list, creating one (its token shown once, on the answer to the form, and
never stored), and revoking one after a confirmation page."""

from __future__ import annotations

import logging
from typing import Any

from litestar import Request, Response, get, post
from litestar.params import FromPath, FromQuery
from litestar.response import Redirect, Template
from sqlalchemy.ext.asyncio import AsyncSession

from portal.dependencies import Db, Portal
from portal.infrastructure.db import transaction
from portal.infrastructure.domain_errors import NotFound
from portal.keys import service
from portal.keys.schemas import SCOPES, KeyListing
from portal.pages.admin.common import ADMIN_PATH, ADMIN_TZ, AdminController, numeric_id, record
from portal.pages.admin.forms import UNPROCESSABLE, Form, read_form, text_of
from portal.pages.web import page

log = logging.getLogger(__name__)

KEY_LABELS = {"name": "Name", "scope": "Scope"}
SCOPE_LABELS = {"ingest": "ingest: send usage events", "admin": "admin: the whole API"}
MAX_NAME = 200


def key_form(values: dict[str, str] | None = None) -> Form:
    return Form(labels=KEY_LABELS, values=values or {"name": "", "scope": "ingest"})


class KeyPagesController(AdminController):
    @get("/keys")
    async def keys(
        self,
        request: Request[Any, Any, Any],
        db: Db,
        revoked: FromQuery[str | None] = None,
        unconfirmed: FromQuery[int] = 0,
    ) -> Template:
        return await _keys_page(request, db, key_form(), revoked=revoked, unconfirmed=unconfirmed)

    @post("/keys", status_code=200)
    async def create(self, request: Request[Any, Any, Any], db: Db) -> Template:
        data = await read_form(request)
        form = key_form({"name": text_of(data, "name"), "scope": text_of(data, "scope")})
        if not form.values["name"] or len(form.values["name"]) > MAX_NAME or "\x00" in form.values["name"]:
            form.fail("name", f"give the key a name of 1 to {MAX_NAME} characters (who or what uses it)")
        scope = form.values["scope"]
        if scope not in SCOPES:
            form.fail("scope", "choose ingest or admin")
        if not form.ok:
            return await _keys_page(request, db, form, status_code=UNPROCESSABLE)
        key, token = await service.create_key(db, scope=scope, name=form.values["name"])
        await record(
            db,
            request,
            action="api_key.created",
            object_type="api_key",
            object_id=str(key.id),
            detail={"name": key.name, "scope": key.scope},
        )
        return page("admin/key_created.html", request, key=key, token=token)

    @get("/keys/{key_id:str}/revoke")
    async def confirm_revoke(
        self, request: Request[Any, Any, Any], db: Db, key_id: FromPath[str]
    ) -> Template:
        key = await _require_key(db, key_id)
        return page("admin/key_revoke.html", request, key=key, tz=ADMIN_TZ)

    @post("/keys/{key_id:str}/revoke", status_code=303)
    async def revoke(
        self, request: Request[Any, Any, Any], db: Db, portal: Portal, key_id: FromPath[str]
    ) -> Response[Any]:
        """Revoke, commit, then have every web process drop its cached keys before answering:
        once this page answers, the key is refused everywhere."""
        key = await _require_key(db, key_id)
        unconfirmed = 0
        if key.revoked_at is None:
            # Its own transaction: the notice must follow the commit (service.announce_revocation).
            async with transaction(portal.sessions) as revoking:
                await service.revoke_key(revoking, key.id)
                await record(
                    revoking,
                    request,
                    action="api_key.revoked",
                    object_type="api_key",
                    object_id=str(key.id),
                    detail={"name": key.name, "scope": key.scope},
                )
            try:
                unconfirmed = (await service.announce_revocation(portal.redis)).unconfirmed
            except Exception as exc:  # Redis unreachable: processes that lose it cache nothing
                log.warning(
                    "API key %s revoked, but the revocation notice could not be sent: %s", key.id, exc
                )
                unconfirmed = -1
        suffix = f"&unconfirmed={unconfirmed}" if unconfirmed else ""
        return Redirect(f"{ADMIN_PATH}/keys?revoked={key.id}{suffix}", status_code=303)


async def _require_key(db: AsyncSession, key_id: str) -> KeyListing:
    """The key a path names; 404 for anything else (ids are numbers)."""
    number = numeric_id(key_id)
    key = await service.get_key(db, number) if number is not None else None
    if key is None:
        raise NotFound(f"There is no API key {key_id}.")
    return key


async def _keys_page(
    request: Request[Any, Any, Any],
    db: AsyncSession,
    form: Form,
    *,
    revoked: str | None = None,
    unconfirmed: int = 0,
    status_code: int = 200,
) -> Template:
    keys = await service.list_keys(db)
    revoked_key = next((k for k in keys if revoked is not None and str(k.id) == revoked), None)
    return page(
        "admin/keys.html",
        request,
        status_code=status_code,
        keys=keys,
        form=form,
        scopes=SCOPE_LABELS,
        tz=ADMIN_TZ,
        revoked=revoked_key,
        unconfirmed=unconfirmed,
        notice_limit_s=int(service.POSITIVE_TTL_S),
    )
