"""Users: the list, inviting a person (a one-time link to set their password, emailed),
sending a new link, disabling someone, and the customers an account manager sees.

Sessions cache a person's role, customer and "all customers" flag (portal.pages.sessions),
but an account manager's assigned customers are read on every request (access.may_see):
changing the assignments takes effect on their next click; changing "all customers" ends
their sessions, so that the cached flag is never stale.
"""

from __future__ import annotations

from typing import Any

from litestar import Request, Response, get, post
from litestar.params import FromPath, FromQuery
from litestar.response import Redirect, Template
from sqlalchemy.ext.asyncio import AsyncSession

from portal.accounts import service as accounts
from portal.accounts.invites import Invitation, invite, resend
from portal.accounts.schemas import ROLES, User
from portal.catalog import repository as catalog
from portal.dependencies import Db, Portal
from portal.infrastructure.db import transaction
from portal.infrastructure.domain_errors import Conflict, Invalid, NotFound
from portal.pages.access import viewer
from portal.pages.admin.common import ADMIN_PATH, ADMIN_TZ, AdminController, numeric_id, record
from portal.pages.admin.forms import UNPROCESSABLE, Form, read_form, text_of, texts_of
from portal.pages.sessions import close_user_sessions
from portal.pages.web import error_page, page

USER_LABELS = {
    "email": "Email",
    "name": "Name",
    "role": "Role",
    "customerId": "Customer",
    "scope": "Customers seen",
    "assigned": "Assigned customers",
}
SCOPES = ("all", "assigned")


def user_form(values: dict[str, Any] | None = None) -> Form:
    return Form(
        labels=USER_LABELS,
        values=values
        or {
            "email": "",
            "name": "",
            "role": "customer",
            "customerId": "",
            "scope": "assigned",
            "assigned": [],
        },
    )


def _field_of(message: str, role: str) -> str:
    """The form field a service message is about (the service says customerId for both
    a customer user's customer and an account manager's assignments)."""
    name = message.partition(":")[0]
    if name == "customerId" and role == "account_manager":
        return "assigned"
    name = {"allCustomers": "scope"}.get(name, name)
    return name if name in USER_LABELS else "email"


class UserPagesController(AdminController):
    @get("/users")
    async def users(self, request: Request[Any, Any, Any], db: Db) -> Template:
        return await _users_page(request, db, user_form())

    @post("/users", status_code=200)
    async def create(self, request: Request[Any, Any, Any], db: Db, portal: Portal) -> Template:
        data = await read_form(request)
        form = user_form(
            {
                "email": text_of(data, "email"),
                "name": text_of(data, "name"),
                "role": text_of(data, "role"),
                "customerId": text_of(data, "customerId"),
                "scope": text_of(data, "scope") or "assigned",
                "assigned": texts_of(data, "assigned"),
            }
        )
        role = form.values["role"]
        form.require("email", "name")
        if role not in ROLES:
            form.fail("role", f"choose one of: {', '.join(accounts.ROLE_LABELS.values())}")
        if form.values["scope"] not in SCOPES:
            form.fail("scope", "choose all customers or only the assigned ones")
        all_customers = role == "account_manager" and form.values["scope"] == "all"
        assigned = form.values["assigned"] if role == "account_manager" and not all_customers else []
        customer_id = (form.values["customerId"] or None) if role == "customer" else None
        if form.ok:
            try:
                invitation = await invite(
                    portal.sessions,
                    portal.settings,
                    email=form.values["email"],
                    name=form.values["name"],
                    role=role,
                    customer_id=customer_id,
                    all_customers=all_customers,
                    assigned=assigned,
                    now=portal.now(),
                )
            except (Invalid, Conflict) as exc:
                form.fail(_field_of(str(exc), role), str(exc).partition(": ")[2] or str(exc))
            else:
                # invite() commits the user in its own transaction before emailing the link.
                async with transaction(portal.sessions) as audit_db:
                    await record(
                        audit_db,
                        request,
                        action="user.created",
                        object_type="user",
                        object_id=str(invitation.user.id),
                        customer_id=invitation.user.customer_id,
                        detail={
                            "email": invitation.user.email,
                            "role": role,
                            "emailed": invitation.email_error is None,
                        },
                    )
                return _link_page(request, invitation, created=True)
        return await _users_page(request, db, form, status_code=UNPROCESSABLE)

    @get("/users/{user_id:str}")
    async def user(
        self,
        request: Request[Any, Any, Any],
        db: Db,
        user_id: FromPath[str],
        saved: FromQuery[str | None] = None,
    ) -> Template:
        user = await _require_user(db, user_id)
        assigned = await accounts.assigned_customers(db, user.id)
        form = user_form({"scope": "all" if user.all_customers else "assigned", "assigned": assigned})
        return await _user_page(request, db, user, form, saved=saved is not None)

    @post("/users/{user_id:str}/customers", status_code=303)
    async def set_customers(
        self, request: Request[Any, Any, Any], db: Db, portal: Portal, user_id: FromPath[str]
    ) -> Response[Any]:
        user = await _require_user(db, user_id)
        data = await read_form(request)
        form = user_form({"scope": text_of(data, "scope"), "assigned": texts_of(data, "assigned")})
        if form.values["scope"] not in SCOPES:
            form.fail("scope", "choose all customers or only the assigned ones")
        else:
            all_customers = form.values["scope"] == "all"
            wanted = [] if all_customers else sorted(set(form.values["assigned"]))
            before = await accounts.assigned_customers(db, user.id)
            try:
                await accounts.set_assignments(db, user.id, all_customers=all_customers, customer_ids=wanted)
            except Invalid as exc:
                form.fail("assigned", str(exc).partition(": ")[2] or str(exc))
            else:
                await record(
                    db,
                    request,
                    action="user.customers_changed",
                    object_type="user",
                    object_id=str(user.id),
                    detail={
                        "allCustomers": [user.all_customers, all_customers],
                        "assigned": [before, wanted],
                    },
                )
                if all_customers != user.all_customers:
                    # Sessions cache the flag: signing in again picks up the new one.
                    await close_user_sessions(portal.redis, user.id)
                return Redirect(f"{ADMIN_PATH}/users/{user.id}?saved=1", status_code=303)
        return await _user_page(request, db, user, form, status_code=UNPROCESSABLE)

    @post("/users/{user_id:str}/resend", status_code=200)
    async def resend_link(
        self, request: Request[Any, Any, Any], db: Db, portal: Portal, user_id: FromPath[str]
    ) -> Response[Any]:
        user = await _require_user(db, user_id)
        if user.disabled_at is not None:
            return error_page(
                request,
                409,
                "Cannot send a link",
                f"{user.email} is disabled: a link would not let them sign in.",
            )
        invitation = await resend(portal.sessions, portal.settings, user.id, now=portal.now())
        await record(
            db,
            request,
            action="user.link_resent",
            object_type="user",
            object_id=str(user.id),
            customer_id=user.customer_id,
            detail={"emailed": invitation.email_error is None},
        )
        return _link_page(request, invitation, created=False)

    @get("/users/{user_id:str}/disable")
    async def confirm_disable(
        self, request: Request[Any, Any, Any], db: Db, user_id: FromPath[str]
    ) -> Response[Any]:
        user = await _require_user(db, user_id)
        if user.id == viewer(request).user_id:
            return _cannot_disable_self(request)
        return page("admin/user_disable.html", request, user=user, tz=ADMIN_TZ)

    @post("/users/{user_id:str}/disable", status_code=303)
    async def disable(
        self, request: Request[Any, Any, Any], db: Db, portal: Portal, user_id: FromPath[str]
    ) -> Response[Any]:
        user = await _require_user(db, user_id)
        if user.id == viewer(request).user_id:
            return _cannot_disable_self(request)
        if user.disabled_at is None:
            await accounts.disable_user(db, user.id)
            await record(
                db,
                request,
                action="user.disabled",
                object_type="user",
                object_id=str(user.id),
                customer_id=user.customer_id,
                detail={"email": user.email},
            )
        await close_user_sessions(portal.redis, user.id)
        return Redirect(f"{ADMIN_PATH}/users/{user.id}", status_code=303)

    @post("/users/{user_id:str}/enable", status_code=303)
    async def enable(self, request: Request[Any, Any, Any], db: Db, user_id: FromPath[str]) -> Response[Any]:
        user = await _require_user(db, user_id)
        if user.disabled_at is not None:
            await accounts.enable_user(db, user.id)
            await record(
                db,
                request,
                action="user.enabled",
                object_type="user",
                object_id=str(user.id),
                customer_id=user.customer_id,
                detail={"email": user.email},
            )
        return Redirect(f"{ADMIN_PATH}/users/{user.id}", status_code=303)


async def _require_user(db: AsyncSession, user_id: str) -> User:
    """The user a path names; 404 for anything else (ids are numbers)."""
    number = numeric_id(user_id)
    user = await accounts.get_user(db, number) if number is not None else None
    if user is None:
        raise NotFound(f"There is no user {user_id}.")
    return user


def _cannot_disable_self(request: Request[Any, Any, Any]) -> Response[Any]:
    return error_page(
        request,
        UNPROCESSABLE,
        "You cannot disable yourself",
        "Another admin has to do it (so there is always an admin who can sign in).",
    )


def _link_page(request: Request[Any, Any, Any], invitation: Invitation, *, created: bool) -> Template:
    return page(
        "admin/user_link.html",
        request,
        invitation=invitation,
        created=created,
        role_labels=accounts.ROLE_LABELS,
    )


async def _users_page(
    request: Request[Any, Any, Any], db: AsyncSession, form: Form, *, status_code: int = 200
) -> Template:
    listing = await accounts.list_users_with_assignments(db)
    rows = [(user, assigned, accounts.user_status(user)) for user, assigned in listing]
    return page(
        "admin/users.html",
        request,
        status_code=status_code,
        rows=rows,
        form=form,
        customers=await catalog.customer_choices(db),
        roles=accounts.ROLE_LABELS,
        tz=ADMIN_TZ,
        me=viewer(request).user_id,
    )


async def _user_page(
    request: Request[Any, Any, Any],
    db: AsyncSession,
    user: User,
    form: Form,
    *,
    saved: bool = False,
    status_code: int = 200,
) -> Template:
    return page(
        "admin/user.html",
        request,
        status_code=status_code,
        user=user,
        form=form,
        status=accounts.user_status(user),
        customers=await catalog.customer_choices(db),
        roles=accounts.ROLE_LABELS,
        tz=ADMIN_TZ,
        saved=saved,
        me=viewer(request).user_id,
    )
