"""Entitlement API: checks (an ingest or admin key, in an application's request path) and
limits (admin key)."""

from __future__ import annotations

from typing import Any

import redis.exceptions
import sqlalchemy.exc
from litestar import Controller, Request, get, post, put
from litestar.params import FromPath, JSONBody

from portal.dependencies import Db, Portal
from portal.entitlements import service
from portal.entitlements.limits import Limit, PlanRule
from portal.entitlements.schemas import (
    CheckIn,
    ChecksIn,
    ChecksOut,
    CustomerLimits,
    EntitlementOut,
    LimitOut,
    PlanLimits,
)
from portal.http import short_way
from portal.http.openapi_answers import error_answers
from portal.infrastructure.domain_errors import NotFound
from portal.infrastructure.http_errors import ServiceUnavailable
from portal.keys.guard import key_actor
from portal.state import PortalState
from portal.usage.combine import exact


def _plan_out(rule: PlanRule) -> LimitOut:
    return LimitOut(
        meter=rule.metric_name,
        limit=exact(rule.quantity),
        enforcement=rule.enforcement,
        customer_may_lower=rule.customer_may_lower,
    )


def _limit_out(limit: Limit) -> LimitOut:
    return LimitOut(
        meter=limit.metric_name,
        limit=exact(limit.quantity),
        enforcement=limit.enforcement,
        customer_may_lower=limit.customer_may_lower,
    )


# A store that cannot be reached: the answer is a 503 with Retry-After (the client raises
# EntitlementUnavailable and the application chooses), never a 500.
OUTAGES = (
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
    sqlalchemy.exc.OperationalError,
    sqlalchemy.exc.InterfaceError,
    OSError,
)


def outage_message(exc: BaseException) -> str:
    return f"usage cannot be read now ({type(exc).__name__}); retry later"


async def _answers(portal: PortalState, asks: list[CheckIn]) -> list[EntitlementOut]:
    try:
        return await service.check(portal.entitlements, asks, now=portal.now())
    except OUTAGES as exc:
        raise ServiceUnavailable(outage_message(exc)) from exc


class EntitlementCheckController(Controller):
    """May this customer use more? Answered from the live counters."""

    path = "/v1/entitlements"
    tags = ["entitlements"]
    opt = {"scope": "ingest"}

    @post("/check", status_code=200)
    async def check(
        self, data: JSONBody[ChecksIn], portal: Portal, request: Request[Any, Any, Any]
    ) -> ChecksOut:
        """Up to 10,000 questions at once, answered in order. Each: `allowed` (false only
        under a hard limit the period's usage has reached, or would pass with `quantity`),
        `used`, `limit`, `remaining`, the billing period, and how fresh the answer is
        (`asOf`, `lagMs`). An unknown customer or meter is answered with `error`."""
        outage = short_way.told_outage(request.scope)  # the short way found the store down
        if outage is not None:
            raise ServiceUnavailable(outage)
        return ChecksOut(await _answers(portal, data.checks))


class CustomerEntitlementController(Controller):
    path = "/v1/customers/{customer_id:str}"
    tags = ["entitlements"]
    opt = {"scope": "ingest"}

    @get("/entitlements", responses=error_answers(404))
    async def entitlements(self, customer_id: FromPath[str], portal: Portal) -> list[EntitlementOut]:
        """The customer's every meter in its current billing period: used, limit, remaining,
        allowed, and how fresh the answer is."""
        book = portal.entitlements
        now = portal.now()
        try:
            profiles = await book.profiles({customer_id}, now)
            meters = sorted(await book.aggregations(fresh=True))
        except OUTAGES as exc:
            raise ServiceUnavailable(outage_message(exc)) from exc
        if customer_id not in profiles:
            raise NotFound(f"no customer {customer_id!r}")
        asks = [CheckIn(customer_id=customer_id, meter=m) for m in meters]
        return await _answers(portal, asks) if asks else []

    @get("/limits", opt={"scope": "admin"}, responses=error_answers(404))
    async def limits(self, customer_id: FromPath[str], db: Db, portal: Portal) -> list[LimitOut]:
        """The limits in force for the customer: its own where set, else its plan's."""
        profile = await service.limits_for(db, customer_id, portal.now())
        return [_limit_out(limit) for _, limit in sorted(profile.limits.items())]

    @put("/limits", opt={"scope": "admin"}, responses=error_answers(404, 422))
    async def set_limits(
        self,
        customer_id: FromPath[str],
        data: JSONBody[CustomerLimits],
        db: Db,
        portal: Portal,
        request: Request[Any, Any, Any],
    ) -> list[LimitOut]:
        """Replace the customer's own limits (an empty list: its plan's apply). Each stays
        within the plan's limit on that meter, and hard where the plan's is hard."""
        await service.set_customer_limits(db, customer_id, data, actor=key_actor(request), now=portal.now())
        await portal.entitlements.changed(customer_id)
        profile = await service.limits_for(db, customer_id, portal.now())
        return [_limit_out(limit) for _, limit in sorted(profile.limits.items())]


class PlanEntitlementController(Controller):
    path = "/v1/plans/{plan_id:str}/limits"
    tags = ["entitlements"]
    opt = {"scope": "admin"}

    @get("/", responses=error_answers(404))
    async def limits(self, plan_id: FromPath[str], db: Db) -> list[LimitOut]:
        return [_plan_out(rule) for rule in await service.plan_limits(db, plan_id)]

    @put("/", responses=error_answers(404, 422))
    async def set_limits(
        self,
        plan_id: FromPath[str],
        data: JSONBody[PlanLimits],
        db: Db,
        portal: Portal,
        request: Request[Any, Any, Any],
    ) -> list[LimitOut]:
        """Replace the plan's limits per meter and billing period: `hard` (checks deny past
        it) or `soft` (allowed, flagged); `customerMayLower` lets its customers set a lower
        limit for themselves in the portal."""
        rules = await service.set_plan_limits(db, plan_id, data, actor=key_actor(request))
        await portal.entitlements.changed()
        return [_plan_out(rule) for rule in rules]
