"""Signing in and out, and setting a password through a one-time link."""

from __future__ import annotations

import logging
from typing import Annotated, Any

import msgspec
from litestar import Controller, Request, Response, get, post
from litestar.background_tasks import BackgroundTask
from litestar.params import FromPath, QueryParameter, URLEncodedBody
from litestar.response import Redirect, Template
from litestar.status_codes import HTTP_401_UNAUTHORIZED, HTTP_403_FORBIDDEN, HTTP_429_TOO_MANY_REQUESTS

from portal.accounts import service as accounts
from portal.accounts import throttle
from portal.accounts.mail import send_password_link
from portal.accounts.passwords import MIN_LENGTH, needs_rehash, password_problem, verify_password
from portal.accounts.passwords import hash_password as _hash
from portal.dependencies import Portal
from portal.http.client_address import client_address
from portal.infrastructure.db import transaction
from portal.infrastructure.domain_errors import Invalid, NotFound
from portal.infrastructure.settings import Settings
from portal.pages import sessions
from portal.pages.access import viewer
from portal.pages.sessions import CSRF_COOKIE, SESSION_COOKIE
from portal.pages.web import LOGIN_PATH, NO_STORE, PageController, return_path
from portal.state import PortalState

log = logging.getLogger("portal.signin")


class LoginForm(msgspec.Struct):
    # Defaults, so that a missing field is answered by the checks below (403/401), not 400.
    email: str = ""
    password: str = ""
    csrf_token: str = ""
    next: str = ""  # the page to come back to (checked by `return_path`)


class ResetForm(msgspec.Struct):
    email: str = ""
    csrf_token: str = ""


class PasswordForm(msgspec.Struct):
    password: str = ""
    confirm: str = ""
    csrf_token: str = ""


def _form_token(request: Request[Any, Any, Any], settings: Settings) -> tuple[str, bool]:
    """The visitor's signed CSRF token, reused while valid (several tabs); True if new."""
    cookie = request.cookies.get(CSRF_COOKIE)
    if cookie is not None and sessions.csrf_token_valid(cookie, settings.secret_key):
        return cookie, False
    return sessions.new_csrf_token(settings.secret_key), True


def _signed_out_page(
    template_name: str,
    request: Request[Any, Any, Any],
    settings: Settings,
    *,
    status_code: int = 200,
    **context: Any,
) -> Template:
    token, new = _form_token(request, settings)
    template = Template(
        template_name=template_name,
        status_code=status_code,
        context={"csrf_token": token, "session": None, "error": None, **context},
    )
    if new:
        template.set_cookie(sessions.csrf_cookie(token, settings))
    return template


_EXPIRED_FORM = "This form has expired or was sent from another site. Please try again."


class LoginController(Controller):
    """The pages a visitor without a session may open."""

    path = "/portal"
    include_in_schema = False

    @get("/login")
    async def login_form(
        self,
        request: Request[Any, Any, Any],
        portal: Portal,
        next_: Annotated[str, QueryParameter(name="next")] = "",
        expired: Annotated[str, QueryParameter(name="expired")] = "",
    ) -> Template:
        """The form; `next` (a page of the portal) is where a successful sign-in goes,
        `expired=1` says a session just ended."""
        return _signed_out_page(
            "login.html",
            request,
            portal.settings,
            email="",
            back_to=return_path(next_) or "",
            notice="Your session has ended. Sign in again to continue." if expired == "1" else None,
        )

    @post("/login", status_code=303)
    async def login(
        self, request: Request[Any, Any, Any], portal: Portal, data: URLEncodedBody[LoginForm]
    ) -> Response[Any]:
        """Open a session for a right email and password; the form again with the reason
        otherwise. The reason never says whether the address has an account."""
        settings = portal.settings

        back_to = return_path(data.next)

        def again(status: int, error: str) -> Template:
            return _signed_out_page(
                "login.html",
                request,
                settings,
                status_code=status,
                error=error,
                email=data.email,
                back_to=back_to or "",
            )

        if not sessions.csrf_matches(request.cookies.get(CSRF_COOKIE), data.csrf_token, settings.secret_key):
            return again(HTTP_403_FORBIDDEN, _EXPIRED_FORM)
        if not data.email.strip() or not data.password:
            return again(HTTP_401_UNAUTHORIZED, "Enter your email address and your password.")
        if "\x00" in data.email:  # no account has one (and Postgres refuses it in text)
            return again(HTTP_401_UNAUTHORIZED, "That email address and password do not match an account.")
        client = client_address(request, settings.trusted_proxies)
        lockout = await throttle.locked_out(portal.redis, data.email, client)
        if lockout is not None:
            minutes = -(-lockout.retry_after_s // 60)
            return again(
                HTTP_429_TOO_MANY_REQUESTS,
                f"Too many failed sign-ins. Try again in {minutes} minute{'s' * (minutes != 1)}.",
            )
        async with transaction(portal.sessions) as db:
            user = await accounts.find_by_email(db, data.email)
            ok = verify_password(user.password_hash if user else None, data.password)
            if ok and user is not None and user.password_hash and needs_rehash(user.password_hash):
                await accounts.set_password(db, user.id, _hash(data.password))
        if not ok or user is None or user.disabled_at is not None:
            failures = await throttle.record_failure(portal.redis, data.email, client)
            if failures == throttle.ADDRESS_WARNING_AT:
                log.warning(
                    "signin_address_targeted: %d failed sign-ins for %r from any client within "
                    "%d minutes (the latest from %s)",
                    failures,
                    data.email.strip().lower()[:254],
                    throttle.WINDOW_S // 60,
                    client,
                )
            return again(HTTP_401_UNAUTHORIZED, "That email address and password do not match an account.")
        await throttle.record_success(portal.redis, data.email, client)
        # A fresh id on every sign-in: an id known before signing in is never promoted.
        previous = request.cookies.get(SESSION_COOKIE)
        if previous:
            await sessions.close_session(portal.redis, previous)
        session = await sessions.open_session(portal.redis, user)
        return Redirect(
            back_to or session.home, status_code=303, cookies=[sessions.session_cookie(session.id, settings)]
        )

    @get("/forgot-password")
    async def reset_form(self, request: Request[Any, Any, Any], portal: Portal) -> Template:
        return _signed_out_page("forgot_password.html", request, portal.settings, email="", sent=False)

    @post("/forgot-password", status_code=200)
    async def reset(
        self, request: Request[Any, Any, Any], portal: Portal, data: URLEncodedBody[ResetForm]
    ) -> Template:
        """Email a one-hour link to choose a new password to the account with this address.
        The answer is the same whether or not there is one (and the email leaves after it,
        so its timing does not tell either); an address gets at most a few links an hour."""
        settings = portal.settings

        def answer(status: int = 200, error: str | None = None, *, sent: bool = False) -> Template:
            return _signed_out_page(
                "forgot_password.html",
                request,
                settings,
                status_code=status,
                error=error,
                email=data.email,
                sent=sent,
            )

        if not sessions.csrf_matches(request.cookies.get(CSRF_COOKIE), data.csrf_token, settings.secret_key):
            return answer(HTTP_403_FORBIDDEN, _EXPIRED_FORM)
        email = data.email.strip()
        if not email or len(email) > 254 or "@" not in email or "\x00" in email:
            return answer(422, "Enter the email address you sign in with.")
        client = client_address(request, settings.trusted_proxies)
        allowance = await throttle.count_reset(portal.redis, email, client)
        if allowance.client_refused:
            return answer(
                HTTP_429_TOO_MANY_REQUESTS, "Too many requests for new passwords. Try again in an hour."
            )
        page = answer(sent=True)
        if allowance.send:
            # Looked up and issued after the answer, whether or not the account exists, so
            # the answer's timing says nothing either (issuing a link is a write).
            page.background = BackgroundTask(_reset_link, portal, email)
        return page

    @get("/set-password/{token:str}")
    async def password_form(
        self, request: Request[Any, Any, Any], portal: Portal, token: FromPath[str]
    ) -> Template:
        async with portal.sessions() as db:
            user = await accounts.password_link_user(db, token, now=portal.now())
        if user is None:
            return _signed_out_page(
                "set_password.html",
                request,
                portal.settings,
                status_code=404,
                user=None,
                token=token,
                min_length=MIN_LENGTH,
            )
        return _signed_out_page(
            "set_password.html", request, portal.settings, user=user, token=token, min_length=MIN_LENGTH
        )

    @post("/set-password/{token:str}", status_code=303)
    async def set_password(
        self,
        request: Request[Any, Any, Any],
        portal: Portal,
        token: FromPath[str],
        data: URLEncodedBody[PasswordForm],
    ) -> Response[Any]:
        settings = portal.settings
        now = portal.now()
        async with portal.sessions() as db:
            user = await accounts.password_link_user(db, token, now=now)

        def again(status: int, error: str) -> Template:
            return _signed_out_page(
                "set_password.html",
                request,
                settings,
                status_code=status,
                error=error,
                user=user,
                token=token,
                min_length=MIN_LENGTH,
            )

        if not sessions.csrf_matches(request.cookies.get(CSRF_COOKIE), data.csrf_token, settings.secret_key):
            return again(HTTP_403_FORBIDDEN, _EXPIRED_FORM)
        if user is None:
            return again(404, "This link has expired or was already used; ask for a new one.")
        if problem := password_problem(data.password):
            return again(422, f"Password: {problem}.")
        if data.password != data.confirm:
            return again(422, "The two passwords are not the same.")
        try:
            async with transaction(portal.sessions) as db:
                user = await accounts.use_password_link(db, token, data.password, now=now)
        except (NotFound, Invalid) as exc:
            return again(422 if isinstance(exc, Invalid) else 404, str(exc))
        # Whoever was signed in as this person before no longer is.
        await sessions.close_user_sessions(portal.redis, user.id)
        session = await sessions.open_session(portal.redis, user)
        return Redirect(
            session.home, status_code=303, cookies=[sessions.session_cookie(session.id, settings)]
        )


async def _reset_link(portal: PortalState, email: str) -> None:
    """After the answer: issue a reset link to the enabled account with this address, if
    there is one, and email it; a failure is logged (never the link)."""
    try:
        async with transaction(portal.sessions) as db:
            user = await accounts.find_by_email(db, email)
            if user is None or user.disabled_at is not None:
                return
            token = await accounts.issue_password_link(
                db, user.id, now=portal.now(), ttl=accounts.RESET_LINK_TTL
            )
        error = await send_password_link(portal.settings, user, token, reset=True)
    except Exception:  # after the answer: nobody else would hear of it
        log.exception("password reset link for %s not issued", "an account")
        return
    if error is not None:
        log.warning("password reset link for user %s not emailed: %s", user.id, error)


class LogoutController(PageController):
    @post("/logout", status_code=303)
    async def logout(self, request: Request[Any, Any, Any], portal: Portal) -> Response[Any]:
        await sessions.close_session(portal.redis, viewer(request).id)
        response = Redirect(LOGIN_PATH, status_code=303)
        response.delete_cookie(SESSION_COOKIE, path="/")
        return response


@get(["/", "/portal"], include_in_schema=False, cache_control=NO_STORE)  # "/" is not under /portal
async def portal_home(request: Request[Any, Any, Any], portal: Portal) -> Redirect:
    session = await sessions.load_session(portal.redis, request.cookies.get(SESSION_COOKIE))
    return Redirect(session.home if session else LOGIN_PATH, status_code=303)


signin_handlers: list[Any] = [LoginController, LogoutController, portal_home]
__all__ = ["signin_handlers"]
