"""Hostile input against the served product, as an attacker or a buggy client would send it.

Starts the real tiers (`usage-portal web` and `worker` over embedded Postgres and Valkey),
then, at the same time:
- throws hostile requests at every ingest API and at paths and queries: the reproducers of
  issue 12 (NUL bytes, huge exponents, invalid UTF-8, deep nesting, timestamps out of
  range, ids beyond 64 bits, invented field names) and seeded random mutations of them;
- sends valid events for two customers (their exact totals are known);
- probes `/healthz` every 20 ms.

Then it prints what the issue's "done when" asks: requests tried, 5xx seen (must be 0),
the slowest `/healthz` answer against the 100 ms floor, and the live and billed totals of
the good customers against the quantities they sent. `python -m bench.hostile --help`.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any
from urllib.parse import quote

import httpx
from redis.asyncio import Redis

from bench import harness
from bench.config import INFLIGHT_KEY, Options, log, tier_options
from bench.figures import distribution
from bench.stack import Catalog, Environment, check_alive, create_catalog, start_tiers

HEALTHZ_FLOOR_MS = 100.0
PROBE_INTERVAL_S = 0.02


@dataclass(frozen=True, slots=True)
class HostileOptions:
    requests: int
    good_events: int
    concurrency: int
    seed: int
    web_workers: int
    keep_data: bool
    data_parent: str | None
    json_out: str | None
    wait_idle: float


def parse_options(argv: list[str] | None = None) -> HostileOptions:
    parser = argparse.ArgumentParser(
        prog="python -m bench.hostile",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--requests", type=int, default=3000, help="hostile requests to send")
    parser.add_argument("--good-events", type=int, default=2000, help="valid events to send beside them")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--seed", type=int, default=12)
    parser.add_argument("--web-workers", type=int, default=1)
    harness.add_run_options(parser)
    args = parser.parse_args(argv)
    return HostileOptions(
        args.requests,
        args.good_events,
        args.concurrency,
        args.seed,
        args.web_workers,
        args.keep_data,
        args.data_parent,
        args.json_out,
        args.wait_idle,
    )


def stack_options(opts: HostileOptions) -> Options:
    return tier_options(
        batch_size=100,
        web_workers=opts.web_workers,
        worker_processes=1,
        worker_threads=2,
        keep_data=opts.keep_data,
        data_parent=opts.data_parent,
        wait_idle=opts.wait_idle,
    )


# --------------------------------------------------------------------------- requests


@dataclass(frozen=True, slots=True)
class Attack:
    kind: str
    method: str
    path: str
    body: bytes = b""
    content_type: str = "application/json"
    key: str = "ingest"  # which key it carries: ingest or admin


def _now_ms() -> int:
    return int(time.time() * 1000)


def _native(customer: str, metric: str, **fields: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "eventId": uuid.uuid4().hex,
        "timestamp": _now_ms(),
        "customerId": customer,
        "metricName": metric,
        "quantity": "1",
        "dimensions": {"region": "eu-west"},
    }
    body.update(fields)
    return body


def _json(value: Any) -> bytes:
    import msgspec

    return msgspec.json.encode(value)


def reproducers(customer: str, metric: str) -> list[Attack]:
    """The cases issue 12 lists, one request each."""
    nul = "a\u0000b"
    out = [
        Attack("nul-eventId", "POST", "/v1/events", _json(_native(customer, metric, eventId=nul))),
        Attack("nul-productId", "POST", "/v1/events", _json(_native(customer, metric, productId=nul))),
        Attack(
            "nul-dimension",
            "POST",
            "/v1/events/batch",
            _json({"events": [_native(customer, metric, dimensions={"region": nul})]}),
        ),
        Attack(
            "nul-metadata", "POST", "/v1/events", _json(_native(customer, metric, metadata={"source": nul}))
        ),
        Attack(
            "quantity-1e1000000000",
            "POST",
            "/v1/events",
            _json(_native(customer, metric)).replace(b'"quantity":"1"', b'"quantity":1e1000000000'),
        ),
        Attack(
            "stripe-1e1000000000",
            "POST",
            "/v1/billing/meter_events",
            f"event_name={metric}&payload[stripe_customer_id]={customer}&payload[value]=1e1000000000".encode(),
            "application/x-www-form-urlencoded",
        ),
        Attack(
            "lago-1e1000000000",
            "POST",
            "/api/v1/events",
            b'{"event": {"transaction_id": "t1", '
            b'"external_customer_id": "%s", "code": "%s", "properties": {"value": 1e1000000000}}}'
            % (customer.encode(), metric.encode()),
        ),
        Attack(
            "cloudevents-1e1000000000",
            "POST",
            "/api/v1/events",
            b'{"specversion": "1.0", '
            b'"id": "c1", "source": "s", "type": "%s", "subject": "%s", "data": {"value": 1e1000000000}}'
            % (metric.encode(), customer.encode()),
            "application/cloudevents+json",
        ),
        Attack(
            "stripe-timestamp-max",
            "POST",
            "/v1/billing/meter_events",
            f"event_name={metric}&payload[stripe_customer_id]={customer}&payload[value]=1"
            f"&timestamp=253402300800".encode(),
            "application/x-www-form-urlencoded",
        ),
        Attack(
            "stripe-timestamp-negative",
            "POST",
            "/v1/billing/meter_events",
            f"event_name={metric}&payload[stripe_customer_id]={customer}&payload[value]=1"
            f"&timestamp=-99999999999999".encode(),
            "application/x-www-form-urlencoded",
        ),
        Attack(
            "invented-fields",
            "POST",
            "/v1/events/batch",
            _json({"events": [{**_native(customer, metric), f"x{i}": 1} for i in range(1000)]}),
        ),
    ]
    for timestamp in (b"1e12", b"1e15", b"253402300800", b"1e99999"):
        out.append(
            Attack(
                f"lago-timestamp-{timestamp.decode()}",
                "POST",
                "/api/v1/events",
                b'{"event": {"transaction_id": "t2", "external_customer_id": "%s", "code": "%s",'
                b' "timestamp": %s, "properties": {"value": 1}}}'
                % (customer.encode(), metric.encode(), timestamp),
            )
        )
    for path, ctype in (
        ("/v1/events", "application/json"),
        ("/v1/events/batch", "application/json"),
        ("/api/v1/events", "application/json"),
        ("/api/v1/events", "application/cloudevents+json"),
        ("/api/v1/events/batch", "application/json"),
    ):
        out.append(Attack(f"utf8 {path}", "POST", path, b'{"events": [{"eventId": "\xff"}]}', ctype))
        for depth in (1_000, 20_000):
            out.append(
                Attack(
                    f"depth-{depth} {path}",
                    "POST",
                    path,
                    b'{"events": %s}' % (b"[" * depth + b"]" * depth),
                    ctype,
                )
            )
    big = "9223372036854775808"
    for method, path in (
        ("GET", f"/v1/invoices/{big}"),
        ("GET", f"/v1/alert-deliveries/{big}"),
        ("DELETE", f"/v1/customers/{customer}/alert-channels/{big}"),
        ("DELETE", f"/v1/customers/{customer}/alert-rules/{big}"),
        ("POST", f"/v1/customers/{customer}/alert-channels/{big}/test"),
        ("GET", f"/v1/invoices?before={big}"),
        ("GET", "/v1/customers/a%00b"),
        ("GET", "/v1/plans/a%00b"),
        ("GET", "/v1/invoices?status=%00"),
        ("GET", f"/v1/customers/{customer}/usage?metric={metric}%00"),
        ("GET", "/v1/invoices?customerId=a%00b"),
        ("GET", f"/portal/invoices/{big}"),
        ("GET", "/portal/customers/a%00b"),
    ):
        out.append(Attack(f"path {method} {path[:40]}", method, path, key="admin"))
    return out


def mutations(rng: random.Random, customer: str, metric: str, n: int) -> list[Attack]:
    """Seeded random hostile requests: control characters in every string field, numbers
    out of range, junk bytes, and wrong types, at the four ingest APIs."""
    controls = [chr(c) for c in (*range(0x20), 0x7F)]
    numbers = ["1e20", "1e-13", "-1", "NaN", "Infinity", "1e999999999999", "9" * 100, "0x10", ""]
    out: list[Attack] = []
    for i in range(n):
        kind = rng.choice(["native-text", "native-number", "lago", "cloudevents", "stripe", "bytes", "types"])
        bad = "x" + rng.choice(controls) + str(i)
        number = rng.choice(numbers)
        if kind == "native-text":
            fld = rng.choice(["eventId", "productId", "customerId", "metricName"])
            out.append(Attack(kind, "POST", "/v1/events", _json(_native(customer, metric, **{fld: bad}))))
        elif kind == "native-number":
            out.append(Attack(kind, "POST", "/v1/events", _json(_native(customer, metric, quantity=number))))
        elif kind == "lago":
            out.append(
                Attack(
                    kind,
                    "POST",
                    "/api/v1/events",
                    _json(
                        {
                            "event": {
                                "transaction_id": bad,
                                "external_customer_id": customer,
                                "code": metric,
                                "properties": {"value": number or 1},
                            }
                        }
                    ),
                )
            )
        elif kind == "cloudevents":
            out.append(
                Attack(
                    kind,
                    "POST",
                    "/api/v1/events",
                    _json(
                        {
                            "specversion": "1.0",
                            "id": bad,
                            "source": "s",
                            "type": metric,
                            "subject": customer,
                            "data": {"value": number},
                        }
                    ),
                    "application/cloudevents+json",
                )
            )
        elif kind == "stripe":
            out.append(
                Attack(
                    kind,
                    "POST",
                    "/v1/billing/meter_events",
                    f"event_name={metric}&payload[stripe_customer_id]={customer}"
                    f"&payload[value]={quote(number)}&identifier={quote(bad)}".encode(),
                    "application/x-www-form-urlencoded",
                )
            )
        elif kind == "bytes":
            path = rng.choice(
                [
                    "/v1/events",
                    "/v1/events/batch",
                    "/api/v1/events",
                    "/api/v1/events/batch",
                    "/v1/billing/meter_events",
                ]
            )
            junk = bytes(rng.getrandbits(8) for _ in range(rng.randint(0, 64)))
            out.append(Attack(kind, "POST", path, junk))
        else:
            value = rng.choice([[1], {"a": 1}, None, True, "x" * 5000, -0.5])
            fld = rng.choice(["eventId", "timestamp", "quantity", "dimensions", "metadata"])
            out.append(
                Attack(
                    kind,
                    "POST",
                    "/v1/events/batch",
                    _json({"events": [_native(customer, metric, **{fld: value})]}),
                )
            )
    return out


# --------------------------------------------------------------------------- run


@dataclass(slots=True)
class Tally:
    tried: int = 0
    statuses: Counter[int] = field(default_factory=Counter)
    five_xx: list[str] = field(default_factory=list)
    accepted: list[str] = field(default_factory=list)
    healthz_ms: list[float] = field(default_factory=list)
    healthz_failures: int = 0


async def _send_attacks(
    client: httpx.AsyncClient, attacks: list[Attack], keys: dict[str, str], tally: Tally, concurrency: int
) -> None:
    queue: asyncio.Queue[Attack] = asyncio.Queue()
    for attack in attacks:
        queue.put_nowait(attack)

    async def one_worker() -> None:
        while not queue.empty():
            attack = queue.get_nowait()
            headers = {"Authorization": f"Bearer {keys[attack.key]}", "Content-Type": attack.content_type}
            try:
                response = await client.request(
                    attack.method, attack.path, content=attack.body or None, headers=headers
                )
            except httpx.HTTPError as exc:
                tally.five_xx.append(f"{attack.kind}: {type(exc).__name__}")
                continue
            tally.tried += 1
            tally.statuses[response.status_code] += 1
            if response.status_code < 300:  # a hostile request must never be accepted
                tally.accepted.append(f"{attack.kind}: {attack.body[:120]!r}")
            if response.status_code >= 500:
                tally.five_xx.append(f"{attack.kind}: {response.status_code} {response.text[:200]}")

    await asyncio.gather(*(one_worker() for _ in range(concurrency)))


async def _send_good(
    client: httpx.AsyncClient, key: str, customers: list[str], metric: str, n: int, rng: random.Random
) -> dict[str, Decimal]:
    sent = dict.fromkeys(customers, Decimal(0))
    for start in range(0, n, 100):
        events = []
        for _ in range(min(100, n - start)):
            customer = rng.choice(customers)
            quantity = Decimal(rng.randint(1, 10**6)).scaleb(-3)
            events.append(_native(customer, metric, quantity=str(quantity)))
            sent[customer] += quantity
        response = await client.post(
            "/v1/events/batch", json={"events": events}, headers={"Authorization": f"Bearer {key}"}
        )
        assert response.status_code == 202 and response.json()["accepted"] == len(events), response.text
    return sent


async def _probe(client: httpx.AsyncClient, tally: Tally, stop: asyncio.Event) -> None:
    while not stop.is_set():
        started = time.perf_counter()
        try:
            response = await client.get("/healthz")
            if response.status_code != 200:
                tally.healthz_failures += 1
        except httpx.HTTPError:
            tally.healthz_failures += 1
        tally.healthz_ms.append((time.perf_counter() - started) * 1000)
        await asyncio.sleep(PROBE_INTERVAL_S)


async def run_bench(opts: HostileOptions, env: Environment, busy_before: float) -> dict[str, Any]:
    from portal.infrastructure.db import create_engine, session_factory, transaction
    from portal.keys.service import create_key

    start_tiers(env, stack_options(opts))
    catalog: Catalog = await create_catalog(env, uuid.uuid4().hex[:6])
    engine = create_engine(env.database_url, pool_size=1)
    async with transaction(session_factory(engine)) as session:
        _, admin_key = await create_key(session, scope="admin", name="bench hostile")
    await engine.dispose()
    keys = {"ingest": catalog.ingest_key, "admin": admin_key}
    hostile_customer, good = catalog.customers[0], catalog.customers[1:3]
    rng = random.Random(opts.seed)
    attacks = reproducers(hostile_customer, catalog.sum_meter)
    attacks += mutations(rng, hostile_customer, catalog.sum_meter, max(opts.requests - len(attacks), 0))
    rng.shuffle(attacks)
    base = f"http://127.0.0.1:{env.ports[0]}"
    tally = Tally()
    stop = asyncio.Event()
    limits = httpx.Limits(max_connections=opts.concurrency + 4)
    async with (
        httpx.AsyncClient(base_url=base, timeout=60, limits=limits) as client,
        httpx.AsyncClient(base_url=base, timeout=10) as prober,
    ):
        probe = asyncio.create_task(_probe(prober, tally, stop))
        await asyncio.sleep(1)  # a quiet baseline first
        started = time.perf_counter()
        _, sent = await asyncio.gather(
            _send_attacks(client, attacks, keys, tally, opts.concurrency),
            _send_good(client, catalog.ingest_key, good, catalog.sum_meter, opts.good_events, rng),
        )
        elapsed = time.perf_counter() - started
        stop.set()
        await probe
        redis = Redis.from_url(env.redis_url)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:  # until everything accepted is in Postgres
            if not await redis.zcard(INFLIGHT_KEY):
                break
            await asyncio.sleep(0.1)
        await redis.aclose()
        check_alive(env)
        totals: dict[str, dict[str, str]] = {}
        for customer in [*good, hostile_customer]:
            totals[customer] = {}
            for source in ("live", "billed"):
                response = await client.get(
                    f"/v1/customers/{customer}/usage",
                    params={"metric": catalog.sum_meter, "source": source},
                    headers={"Authorization": f"Bearer {admin_key}"},
                )
                totals[customer][source] = response.json()["total"]
    expected = {c: format(sent[c].normalize(), "f") for c in good}
    return {
        "busy_before_start": busy_before,
        "requests_tried": tally.tried,
        "seconds": round(elapsed, 1),
        "statuses": dict(sorted(tally.statuses.items())),
        "five_xx": tally.five_xx,
        "accepted": tally.accepted,
        "healthz": distribution(tally.healthz_ms) | {"failures": tally.healthz_failures},
        "totals": totals,
        "expected": expected,
        "hostile_customer_expected": "0",
    }


def print_report(result: dict[str, Any]) -> None:
    def verdict(ok: bool) -> str:
        return "PASS" if ok else "MISS"

    healthz = result["healthz"]
    exact = all(result["totals"][c] == {"live": v, "billed": v} for c, v in result["expected"].items())
    untouched = next(v for c, v in result["totals"].items() if c not in result["expected"])
    print(
        f"hostile requests tried   {result['requests_tried']} in {result['seconds']} s; "
        f"statuses {result['statuses']}"
    )
    print(f"5xx answers              {len(result['five_xx'])}  (floor 0)  {verdict(not result['five_xx'])}")
    for line in result["five_xx"][:10]:
        print(f"    {line}")
    print(f"hostile ones accepted    {len(result['accepted'])}  (floor 0)  {verdict(not result['accepted'])}")
    for line in result["accepted"][:10]:
        print(f"    {line}")
    print(
        f"/healthz while attacked  p50 {healthz['p50']:.1f} ms, p99 {healthz['p99']:.1f} ms, "
        f"max {healthz['max']:.1f} ms, {healthz['failures']} failed  (floor {HEALTHZ_FLOOR_MS:.0f} ms)  "
        f"{verdict(healthz['max'] <= HEALTHZ_FLOOR_MS and not healthz['failures'])}"
    )
    print(f"good customers' totals   {result['totals']} vs sent {result['expected']}  {verdict(exact)}")
    print(
        f"hostile customer total   {untouched} (floor: nothing counted)  "
        f"{verdict(untouched == {'live': '0', 'billed': '0'})}"
    )


def main(argv: list[str] | None = None) -> int:
    opts = parse_options(argv)
    log(f"hostile input: {opts.requests} requests, {opts.good_events} good events beside them")
    return harness.run(
        opts,
        name="hostile",
        stack=stack_options(opts),
        report=print_report,
        measure=lambda env, busy_before: run_bench(opts, env, busy_before),
    )


if __name__ == "__main__":
    sys.exit(main())
