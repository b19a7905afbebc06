"""Alerts API (admin key): channels, rules, plan default rules, firings, deliveries."""

from __future__ import annotations

from typing import Annotated

from litestar import Controller, delete, get, post
from litestar.params import FromPath, JSONBody, QueryParameter
from sqlalchemy.ext.asyncio import AsyncSession

from portal.alerting import channels, deliveries, rules
from portal.alerting.notices import send_test_notice
from portal.alerting.schemas import (
    Channel,
    ChannelCreate,
    Delivery,
    Firing,
    PlanRule,
    Rule,
    RuleBody,
    RuleCreate,
)
from portal.catalog.schemas import Customer
from portal.catalog.service import get_customer
from portal.dependencies import Db, Portal
from portal.http.openapi_answers import error_answers
from portal.http.query_params import choice
from portal.http.request_checks import ID_MAX
from portal.infrastructure.domain_errors import NotFound

ADMIN = {"scope": "admin"}
DELIVERY_STATUSES = ("pending", "sent", "failed")
STATUS_HELP = ", ".join(DELIVERY_STATUSES)
FIRING_CURSOR_HELP = "A firing id of this customer: only the firings listed after it (older)."
DELIVERY_CURSOR_HELP = "A delivery id: only deliveries with a lower id (older)."


class CustomerAlertController(Controller):
    """A customer's channels, rules and the notices they produced."""

    path = "/v1/customers/{customer_id:str}"
    tags = ["alerts"]
    opt = ADMIN

    @post("/alert-channels", status_code=201, responses=error_answers(409))
    async def create_channel(
        self, customer_id: FromPath[str], data: JSONBody[ChannelCreate], db: Db, portal: Portal
    ) -> Channel:
        """Checked now: a URL Apprise cannot use, or one whose host is or resolves to an
        address the portal must not reach (loopback, private, link-local, metadata…), is a
        422 naming the reason. Stored encrypted; shown masked. A webhook channel's signing
        secret is in this answer only. 409 for a name the customer uses already, or when it
        has 20 enabled channels (the most one customer may have)."""
        return await channels.create_channel(
            db,
            customer_id,
            data,
            secret_key=portal.settings.secret_key,
            allow_networks=portal.settings.destination_allow_networks,
        )

    @get("/alert-channels")
    async def list_channels(self, customer_id: FromPath[str], db: Db) -> list[Channel]:
        await _customer(db, customer_id)
        return await channels.list_channels(db, customer_id)

    @delete("/alert-channels/{channel_id:int}", status_code=204)
    async def disable_channel(self, customer_id: FromPath[str], channel_id: FromPath[int], db: Db) -> None:
        await channels.disable_channel(db, customer_id, channel_id)

    @post("/alert-channels/{channel_id:int}/test", status_code=202, responses=error_answers(429))
    async def test_channel(
        self, customer_id: FromPath[str], channel_id: FromPath[int], db: Db, portal: Portal
    ) -> Delivery:
        """Send a test notice through the channel; follow it at GET /v1/alert-deliveries/{id}.
        429 with Retry-After past 5 to one address, or 20 for one customer, in an hour (nothing is
        sent)."""
        customer = await _customer(db, customer_id)
        delivery_id = await send_test_notice(
            db, customer, channel_id, public_url=portal.settings.public_url, now=portal.now()
        )
        return await deliveries.get_delivery(db, delivery_id)

    @post("/alert-rules", status_code=201, responses=error_answers(409))
    async def create_rule(self, customer_id: FromPath[str], data: JSONBody[RuleCreate], db: Db) -> Rule:
        """409 when the customer has 100 enabled rules (the most one customer may have)."""
        return await rules.create_rule(db, customer_id, data)

    @get("/alert-rules")
    async def list_rules(self, customer_id: FromPath[str], db: Db) -> list[Rule]:
        await _customer(db, customer_id)
        return await rules.list_rules(db, customer_id)

    @delete("/alert-rules/{rule_id:int}", status_code=204)
    async def disable_rule(self, customer_id: FromPath[str], rule_id: FromPath[int], db: Db) -> None:
        await rules.disable_rule(db, customer_id, rule_id)

    @get("/alert-firings")
    async def firings(
        self,
        customer_id: FromPath[str],
        db: Db,
        limit: Annotated[int, QueryParameter(ge=1, le=500)] = 50,
        before: Annotated[int | None, QueryParameter(ge=1, le=ID_MAX, description=FIRING_CURSOR_HELP)] = None,
    ) -> list[Firing]:
        """The customer's most recent notices, newest first (by `firedAt`, then `id`), each
        with its deliveries; page with `before=<id of the last firing>`. The cursor must be
        one of this customer's firings: any other id is a 422."""
        await _customer(db, customer_id)
        return await deliveries.list_firings(db, customer_id, limit=limit, before=before)


class PlanAlertController(Controller):
    """Default rules of a plan: every subscriber gets its own copy."""

    path = "/v1/plans/{plan_id:str}/alert-rules"
    tags = ["alerts"]
    opt = ADMIN

    @post("/", status_code=201, responses=error_answers(409))
    async def create(self, plan_id: FromPath[str], data: JSONBody[RuleBody], db: Db) -> PlanRule:
        return await rules.create_plan_rule(db, plan_id, data)

    @get("/")
    async def list_(self, plan_id: FromPath[str], db: Db) -> list[PlanRule]:
        return await rules.list_plan_rules(db, plan_id)


class DeliveryController(Controller):
    """Every delivery and its attempts: what was sent, what failed and why."""

    path = "/v1/alert-deliveries"
    tags = ["alerts"]
    opt = ADMIN

    @get("/")
    async def list_(
        self,
        db: Db,
        customer_id: Annotated[str | None, QueryParameter(name="customerId")] = None,
        status: Annotated[
            str | None,
            QueryParameter(
                name="status", description=STATUS_HELP, schema_extra={"enum": list(DELIVERY_STATUSES)}
            ),
        ] = None,
        limit: Annotated[int, QueryParameter(ge=1, le=1000)] = 100,
        before: Annotated[
            int | None, QueryParameter(ge=1, le=ID_MAX, description=DELIVERY_CURSOR_HELP)
        ] = None,
    ) -> list[Delivery]:
        """Newest first (by id); page with `before=<id of the last delivery>`."""
        wanted = choice("status", status, DELIVERY_STATUSES)
        return await deliveries.list_deliveries(
            db, customer_id=customer_id, status=wanted, limit=limit, before=before
        )

    @get("/{delivery_id:int}")
    async def get_(self, delivery_id: FromPath[int], db: Db) -> Delivery:
        return await deliveries.get_delivery(db, delivery_id)


async def _customer(db: AsyncSession, customer_id: str) -> Customer:
    customer = await get_customer(db, customer_id)
    if customer is None:
        raise NotFound(f"no customer {customer_id!r}")
    return customer


alert_handlers = [CustomerAlertController, PlanAlertController, DeliveryController]
