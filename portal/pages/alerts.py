"""Alerts self-service: a customer's rules (and monthly budget), channels and the notices
they produced, for everyone who may see the customer (its users, its account manager,
admins).

Each change runs in a savepoint of the request's transaction, so a refused change leaves
nothing behind and the form comes back (422, field named, values kept). A successful one
redirects to the alerts home (303) with a fixed message key, never user text in the URL.
Every rule and channel id is looked up within the customer of the path: another
customer's id is a 404, like an unknown one. Adding a channel redirects too, to the
channel's page, which shows a webhook's signing secret once (`alerts_secret.py`).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any
from urllib.parse import quote

from litestar import Request, Response, get, post
from litestar.exceptions import NotFoundException
from litestar.params import FromPath
from litestar.response import Redirect, Template
from sqlalchemy.ext.asyncio import AsyncSession

from portal.alerting import channels as channel_service
from portal.alerting import deliveries as delivery_service
from portal.alerting import editing
from portal.alerting import rules as rule_service
from portal.alerting.notices import send_test_notice
from portal.alerting.schemas import Channel, Rule
from portal.catalog.schemas import Customer
from portal.catalog.service import list_meters
from portal.dependencies import Db, Portal
from portal.infrastructure.domain_errors import Conflict, Invalid, NotFound
from portal.pages.access import check_owner, viewer, visible_customer
from portal.pages.alerts_forms import (
    CHANNEL_KINDS,
    LEVELS_ID,
    ChannelForm,
    RuleForm,
    channel_service_error,
    parse_channel_form,
    parse_rule_form,
    rule_service_error,
)
from portal.pages.alerts_secret import keep_secret, take_secret
from portal.pages.alerts_view import (
    BASIS_TEXT,
    alerts_home,
    channel_target,
    meter_units,
    plan_meters,
    rule_summary,
)
from portal.pages.web import PageController, page

DONE = {
    "rule-created": "The rule was saved. It is checked within a minute and after new usage arrives.",
    "budget-created": "Your monthly budget was saved. You will be notified as spend reaches each level.",
    "rule-updated": "The rule was changed. New levels are checked within a minute.",
    "rule-deleted": "The rule was deleted. Its past notices stay in the history.",
    "channel-deleted": "The channel was deleted. Rules no longer send to it.",
    "test-queued": "A test notice is on its way. Its status under Test notices updates by itself.",
}
# A test notice's status fragment answers 286 once it is final: htmx stops polling it.
STOP_POLLING = 286
_TEMPLATES = "alerts_pages"


def _home_url(customer_id: str, done: str | None = None) -> str:
    url = f"/portal/customers/{quote(customer_id, safe='')}/alerts"
    return f"{url}?done={done}#history" if done == "test-queued" else (f"{url}?done={done}" if done else url)


async def _rule(request: Request[Any, Any, Any], db: AsyncSession, customer: Customer, rule_id: int) -> Rule:
    """The customer's active rule, 404 otherwise (another customer's id included)."""
    try:
        rule: Rule | None = await editing.get_rule(db, customer.id, rule_id)
    except NotFound:
        rule = None
    await check_owner(request, db, None if rule is None else rule.customer_id, "alert rule")
    assert rule is not None
    return rule


async def _channel(
    request: Request[Any, Any, Any], db: AsyncSession, customer: Customer, channel_id: int
) -> Channel:
    channels = await channel_service.list_channels(db, customer.id)
    found = next((c for c in channels if c.id == channel_id), None)
    await check_owner(request, db, None if found is None else found.customer_id, "alert channel")
    assert found is not None
    return found


async def _rule_page(
    request: Request[Any, Any, Any],
    db: AsyncSession,
    customer: Customer,
    form: RuleForm,
    *,
    now: datetime,
    rule: Rule | None = None,
    status_code: int = 200,
) -> Template:
    meters = await plan_meters(db, customer, now)
    if rule is not None and rule.metric_name and rule.metric_name not in {m.metric_name for m in meters}:
        meters += [m for m in await list_meters(db) if m.metric_name == rule.metric_name]
    channels = await channel_service.list_channels(db, customer.id)
    return page(
        f"{_TEMPLATES}/rule_form.html",
        request,
        status_code=status_code,
        customer=customer,
        form=form,
        rule=rule,
        meters=meters,
        channels=channels,
        basis_text=BASIS_TEXT,
        levels_id=LEVELS_ID,
        summary=rule_summary(form, meter_units(meters), {c.id: c.name for c in channels}, customer.currency),
    )


def _channel_page(
    request: Request[Any, Any, Any], customer: Customer, form: ChannelForm, *, status_code: int = 200
) -> Template:
    return page(
        f"{_TEMPLATES}/channel_form.html",
        request,
        status_code=status_code,
        customer=customer,
        form=form,
        kinds=CHANNEL_KINDS,
    )


class AlertPagesController(PageController):
    """The alerts home and its forms (default PAGE_GUARDS: signed in, customer visible, CSRF)."""

    @get("/customers/{customer_id:str}/alerts")
    async def home(self, request: Request[Any, Any, Any], customer_id: FromPath[str], db: Db) -> Template:
        customer = await visible_customer(request, db, customer_id)
        home = await alerts_home(db, customer)
        done = request.query_params.get("done")
        return page(
            f"{_TEMPLATES}/home.html",
            request,
            customer=customer,
            home=home,
            notice=DONE.get(done or ""),
            channel_target=channel_target,
        )

    # --- rules -----------------------------------------------------------------------------

    @get("/customers/{customer_id:str}/alerts/rules/new")
    async def new_rule(
        self, request: Request[Any, Any, Any], customer_id: FromPath[str], db: Db, portal: Portal
    ) -> Template:
        """`?preset=budget` opens the form as a monthly budget (spend, 50/80/100 %);
        `?preset=anomaly` as a rule on unusual usage (spikes, drops to zero, silence)."""
        customer = await visible_customer(request, db, customer_id)
        preset = request.query_params.get("preset")
        form = (
            RuleForm.budget_preset()
            if preset == "budget"
            else RuleForm.anomaly_preset()
            if preset == "anomaly"
            else RuleForm()
        )
        return await _rule_page(request, db, customer, form, now=portal.now())

    @post("/customers/{customer_id:str}/alerts/rules/new")
    async def create_rule(
        self, request: Request[Any, Any, Any], customer_id: FromPath[str], db: Db, portal: Portal
    ) -> Response[Any]:
        customer = await visible_customer(request, db, customer_id)
        typed, body = parse_rule_form(await request.form())
        if body is None:
            return await _rule_page(request, db, customer, typed, now=portal.now(), status_code=422)
        try:
            async with db.begin_nested():
                await rule_service.create_rule(db, customer.id, body)
        except (Invalid, Conflict) as exc:
            return await _rule_page(
                request, db, customer, rule_service_error(typed, str(exc)), now=portal.now(), status_code=422
            )
        done = "budget-created" if body.basis == "budget" and body.metric_name is None else "rule-created"
        return Redirect(_home_url(customer.id, done), status_code=303)

    @get("/customers/{customer_id:str}/alerts/rules/summary")
    async def rule_summary_line(
        self, request: Request[Any, Any, Any], customer_id: FromPath[str], db: Db, portal: Portal
    ) -> Template:
        """The rule form's one-sentence summary, asked again by htmx as the form changes."""
        customer = await visible_customer(request, db, customer_id)
        query = request.query_params
        form = RuleForm(
            watch=query.get("watch") or "",
            levels=query.get("levels") or "",
            basis=query.get("basis") or "absolute",
            budget=query.get("budget") or "",
            channel_ids=[c for c in query.getall("channel", []) if isinstance(c, str)],
            notify_recovery=bool(query.get("notify_recovery")),
            notify_forecast=bool(query.get("notify_forecast")),
            kind="anomaly" if query.get("kind") == "anomaly" else "threshold",
        )
        meters = await plan_meters(db, customer, portal.now())
        channels = await channel_service.list_channels(db, customer.id)
        summary = rule_summary(form, meter_units(meters), {c.id: c.name for c in channels}, customer.currency)
        return page(f"{_TEMPLATES}/_rule_summary.html", request, customer=customer, summary=summary)

    @get("/customers/{customer_id:str}/alerts/rules/{rule_id:int}/edit")
    async def edit_rule(
        self,
        request: Request[Any, Any, Any],
        customer_id: FromPath[str],
        rule_id: FromPath[int],
        db: Db,
        portal: Portal,
    ) -> Template:
        customer = await visible_customer(request, db, customer_id)
        rule = await _rule(request, db, customer, rule_id)
        return await _rule_page(request, db, customer, RuleForm.of_rule(rule), now=portal.now(), rule=rule)

    @post("/customers/{customer_id:str}/alerts/rules/{rule_id:int}/edit")
    async def update_rule(
        self,
        request: Request[Any, Any, Any],
        customer_id: FromPath[str],
        rule_id: FromPath[int],
        db: Db,
        portal: Portal,
    ) -> Response[Any]:
        customer = await visible_customer(request, db, customer_id)
        rule = await _rule(request, db, customer, rule_id)
        typed, body = parse_rule_form(await request.form(), fixed=rule)
        if body is None:
            return await _rule_page(
                request, db, customer, typed, now=portal.now(), rule=rule, status_code=422
            )
        try:
            async with db.begin_nested():
                await editing.update_rule(db, customer.id, rule.id, body)
        except (Invalid, Conflict) as exc:
            return await _rule_page(
                request,
                db,
                customer,
                rule_service_error(typed, str(exc)),
                now=portal.now(),
                rule=rule,
                status_code=422,
            )
        return Redirect(_home_url(customer.id, "rule-updated"), status_code=303)

    @get("/customers/{customer_id:str}/alerts/rules/{rule_id:int}/delete")
    async def confirm_delete_rule(
        self, request: Request[Any, Any, Any], customer_id: FromPath[str], rule_id: FromPath[int], db: Db
    ) -> Template:
        """The confirm step of deleting (the form posts to the same path)."""
        customer = await visible_customer(request, db, customer_id)
        rule = await _rule(request, db, customer, rule_id)
        return page(
            f"{_TEMPLATES}/confirm_delete.html",
            request,
            customer=customer,
            what="rule",
            name=rule.name,
            action=f"{_home_url(customer.id)}/rules/{rule.id}/delete",
            consequence="Its past notices stay in the history; no new ones are sent.",
        )

    @post("/customers/{customer_id:str}/alerts/rules/{rule_id:int}/delete")
    async def delete_rule(
        self, request: Request[Any, Any, Any], customer_id: FromPath[str], rule_id: FromPath[int], db: Db
    ) -> Redirect:
        customer = await visible_customer(request, db, customer_id)
        rule = await _rule(request, db, customer, rule_id)
        await rule_service.disable_rule(db, customer.id, rule.id)
        return Redirect(_home_url(customer.id, "rule-deleted"), status_code=303)

    # --- channels --------------------------------------------------------------------------

    @get("/customers/{customer_id:str}/alerts/channels/new")
    async def new_channel(
        self, request: Request[Any, Any, Any], customer_id: FromPath[str], db: Db
    ) -> Template:
        customer = await visible_customer(request, db, customer_id)
        return _channel_page(request, customer, ChannelForm())

    @post("/customers/{customer_id:str}/alerts/channels/new")
    async def create_channel(
        self, request: Request[Any, Any, Any], customer_id: FromPath[str], db: Db, portal: Portal
    ) -> Response[Any]:
        """Redirects (303) to the new channel's page, so a reload does not add it again; a
        webhook's signing secret waits there for that page only (never shown again)."""
        customer = await visible_customer(request, db, customer_id)
        typed, body = parse_channel_form(await request.form())
        if body is None:
            return _channel_page(request, customer, typed, status_code=422)
        try:
            async with db.begin_nested():
                channel = await channel_service.create_channel(
                    db,
                    customer.id,
                    body,
                    secret_key=portal.settings.secret_key,
                    allow_networks=portal.settings.destination_allow_networks,
                )
        except (Invalid, Conflict) as exc:
            return _channel_page(
                request,
                customer,
                channel_service_error(typed, str(exc), conflict=isinstance(exc, Conflict)),
                status_code=422,
            )
        if channel.signing_secret is not None:
            await keep_secret(
                portal.redis,
                viewer(request).id,
                channel.id,
                channel.signing_secret,
                secret_key=portal.settings.secret_key,
            )
        return Redirect(
            f"{_home_url(customer.id)}/channels/{channel.id}?done=channel-created", status_code=303
        )

    @get("/customers/{customer_id:str}/alerts/channels/{channel_id:int}")
    async def channel_page(
        self,
        request: Request[Any, Any, Any],
        customer_id: FromPath[str],
        channel_id: FromPath[int],
        db: Db,
        portal: Portal,
    ) -> Template:
        """One channel: where it sends, its test button, and (once, to the session that
        added it) a webhook's signing secret."""
        customer = await visible_customer(request, db, customer_id)
        channel = await _channel(request, db, customer, channel_id)
        secret = await take_secret(
            portal.redis, viewer(request).id, channel.id, secret_key=portal.settings.secret_key
        )
        return page(
            f"{_TEMPLATES}/channel.html",
            request,
            customer=customer,
            channel=channel,
            target=channel_target(channel.kind, channel.destination),
            secret=secret,
            created=request.query_params.get("done") == "channel-created",
        )

    @get("/customers/{customer_id:str}/alerts/channels/{channel_id:int}/delete")
    async def confirm_delete_channel(
        self, request: Request[Any, Any, Any], customer_id: FromPath[str], channel_id: FromPath[int], db: Db
    ) -> Template:
        customer = await visible_customer(request, db, customer_id)
        channel = await _channel(request, db, customer, channel_id)
        return page(
            f"{_TEMPLATES}/confirm_delete.html",
            request,
            customer=customer,
            what="channel",
            name=channel.name,
            action=f"{_home_url(customer.id)}/channels/{channel.id}/delete",
            consequence="Rules stop sending to it; notices already sent stay in the history.",
        )

    @post("/customers/{customer_id:str}/alerts/channels/{channel_id:int}/delete")
    async def delete_channel(
        self, request: Request[Any, Any, Any], customer_id: FromPath[str], channel_id: FromPath[int], db: Db
    ) -> Redirect:
        customer = await visible_customer(request, db, customer_id)
        channel = await _channel(request, db, customer, channel_id)
        await channel_service.disable_channel(db, customer.id, channel.id)
        return Redirect(_home_url(customer.id, "channel-deleted"), status_code=303)

    @post("/customers/{customer_id:str}/alerts/channels/{channel_id:int}/test")
    async def test_channel(
        self,
        request: Request[Any, Any, Any],
        customer_id: FromPath[str],
        channel_id: FromPath[int],
        db: Db,
        portal: Portal,
    ) -> Redirect:
        """A test notice through the channel, the way the API sends one: a pending delivery,
        queued for the alert worker; the home's history shows its outcome."""
        customer = await visible_customer(request, db, customer_id)
        channel = await _channel(request, db, customer, channel_id)
        await send_test_notice(
            db, customer, channel.id, public_url=portal.settings.public_url, now=portal.now()
        )
        return Redirect(_home_url(customer.id, "test-queued"), status_code=303)

    @get("/customers/{customer_id:str}/alerts/tests/{delivery_id:int}")
    async def test_status(
        self, request: Request[Any, Any, Any], customer_id: FromPath[str], delivery_id: FromPath[int], db: Db
    ) -> Template:
        """One test notice's line, polled by the alerts home while it is pending; 286 once it
        was sent or failed, which stops the polling."""
        customer = await visible_customer(request, db, customer_id)
        try:
            delivery = await delivery_service.get_delivery(db, delivery_id)
        except NotFound:
            raise NotFoundException("No such test notice.") from None
        if delivery.customer_id != customer.id or delivery.firing_id is not None:
            raise NotFoundException("No such test notice.")
        return page(
            f"{_TEMPLATES}/_test_delivery.html",
            request,
            status_code=200 if delivery.status == "pending" else STOP_POLLING,
            customer=customer,
            d=delivery,
        )


alert_page_handlers = [AlertPagesController]
