"""The printed table of figures, CPU per role, server counters and PASS/MISS against the
targets, and the same results as a JSON-ready dict.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from datetime import UTC, datetime
from typing import Any

from bench import serverstats
from bench.config import TARGET_BATCH_EPS, TARGET_LAG_P99_S, TARGET_LAG_RATE
from bench.measure import Persisted
from bench.phases import Bench, PhaseResult
from bench.procstat import ROLES


def pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index]


def fmt_ms(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds * 1000:,.1f} ms"


def fmt_s(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds:,.2f} s"


def verdict(ok: bool) -> str:
    return "PASS" if ok else "MISS"


def timeline_rows(result: PhaseResult, step: int = 10) -> list[str]:
    """Accepted/s (client) and persisted/s (ledger) per `step` seconds of the phase."""
    horizon = int(result.load.elapsed + (result.drain_s or 0)) + 1
    accepted: Counter[int] = Counter()
    for t, n in result.load.timeline:
        accepted[int(t // step)] += n
    persisted: Counter[int] = Counter()
    for s, n in result.persisted.per_second.items():
        persisted[max(0, s) // step] += n
    rows = []
    for bucket in range(0, horizon // step + 1):
        a, p = accepted.get(bucket, 0), persisted.get(bucket, 0)
        if a == 0 and p == 0:
            continue
        rows.append(
            f"    {bucket * step:>4}-{bucket * step + step:<4} s   accepted {a / step:>9,.0f}/s"
            f"   persisted {p / step:>9,.0f}/s"
        )
    return rows


def _commit_lag(persisted: Persisted) -> list[str]:
    if persisted.commit_lag_p99_s is None:
        return []
    return [
        f"   lag to commit p50 {fmt_s(persisted.commit_lag_p50_s)}, "
        f"p99 {fmt_s(persisted.commit_lag_p99_s)}, max {fmt_s(persisted.commit_lag_max_s)}   "
        "(commit timestamp - received_at: when the rows became visible)"
    ]


def report(bench: Bench, machine: dict[str, Any], servers: dict[str, Any]) -> dict[str, Any]:
    opts = bench.opts
    out: dict[str, Any] = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine,
        "servers": servers,
        "phases": {},
    }
    lines = ["", "=" * 78, "Ingest benchmark", "=" * 78]
    lines.append(f"date      {out['date']}")
    lines.append(f"code      {machine['code']}")
    lines.append(
        f"machine   {machine['nproc']} CPUs ({machine['cpu_model']}), "
        f"{machine['memory_gb']} GB, Linux {machine['kernel']}, Python {machine['python']}"
    )
    lines.append(
        f"servers   Postgres {servers['postgres']} (fsync={servers['postgres_fsync']}, "
        f"synchronous_commit={servers['postgres_synchronous_commit']}), "
        f"Valkey {servers['valkey']} (appendfsync={servers['valkey_appendfsync']})"
    )
    lines.append(
        f"idle      machine {100 * servers['busy_before_start']:.0f}% busy in the 2 s "
        "before the run (should be ~0)"
    )
    web = (
        f"`usage-portal web --workers {opts.web_workers}`"
        if opts.web_mode == "workers"
        else f"{opts.web_workers} x `usage-portal web` on their own ports"
    )
    lines.append(
        f"settings  web {web}, Dramatiq {opts.worker_processes} "
        f"processes x {opts.worker_threads} threads, batch size {opts.batch_size}, "
        f"{opts.event_ids} event ids, "
        + "".join(f"postgres {x}, " for x in opts.pg_settings)
        + "".join(f"valkey {x}, " for x in opts.valkey_settings)
        + "everything incl. the load generator on this machine"
    )
    targets: list[str] = []

    batch = bench.results.get("batch")
    if batch:
        lb = batch.load
        lines += [
            "",
            f"1. Batch ingest ({opts.batch_size}-event batches, {opts.concurrency} "
            f"connections, closed loop, {lb.elapsed:.1f} s)",
        ]
        lines.append(
            f"   accepted      {batch.accepted_eps:>10,.0f} events/s   "
            f"({lb.accepted:,} events, {lb.requests:,} requests)"
        )
        lines.append(
            f"   persisted     {batch.persisted_eps:>10,.0f} events/s   "
            f"(ledger rows with persisted_at in the same window)"
        )
        lines.append(
            f"   end to end    {batch.end_to_end_eps or 0:>10,.0f} events/s   "
            f"(all {batch.persisted.total:,} persisted / first send to last persist)"
        )
        lines.append(
            f"   backlog drain {fmt_s(batch.drain_s):>10}     after the load stopped"
            + ("" if batch.persisted.drained else "  (NOT fully drained)")
        )
        lines.append(
            f"   batch latency p50 {fmt_ms(pct(lb.latencies, 0.5))}, p99 {fmt_ms(pct(lb.latencies, 0.99))}"
        )
        lines.append(
            f"   lag (closed loop at full speed) p50 {fmt_s(batch.persisted.lag_p50_s)}, "
            f"p99 {fmt_s(batch.persisted.lag_p99_s)}"
        )
        lines += _commit_lag(batch.persisted)
        lines += ["   timeline:", *timeline_rows(batch)]
        sustained = min(batch.accepted_eps, batch.persisted_eps)
        targets.append(
            f"batch ingest >= {TARGET_BATCH_EPS:,} events/s accepted and persisted: "
            f"{sustained:,.0f}  {verdict(sustained >= TARGET_BATCH_EPS)}"
        )

    single = bench.results.get("single")
    if single:
        ls = single.load
        rps = ls.requests / ls.elapsed if ls.elapsed else 0.0
        lines += [
            "",
            f"2. Single-event requests ({opts.single_concurrency} connections, "
            f"closed loop, {ls.elapsed:.1f} s)",
        ]
        lines.append(
            f"   requests      {rps:>10,.0f} /s   ({ls.requests:,} requests, {ls.accepted:,} accepted)"
        )
        lines.append(
            f"   latency       p50 {fmt_ms(pct(ls.latencies, 0.5))}, "
            f"p99 {fmt_ms(pct(ls.latencies, 0.99))}, "
            f"max {fmt_ms(max(ls.latencies) if ls.latencies else None)}"
        )
        lines.append(
            f"   persisted     {single.persisted_eps:>10,.0f} events/s in the window; "
            f"backlog drain {fmt_s(single.drain_s)}"
            + ("" if single.persisted.drained else "  (NOT fully drained)")
        )
        lines += ["   timeline:", *timeline_rows(single, step=5)]

    lag_results = [r for n, r in bench.results.items() if n.startswith("lag")]
    for lag in lag_results:
        ll = lag.load
        rate = float(lag.settings["rate_eps"])
        why = (
            "the rate the target names"
            if lag.name == "lag@target"
            else "half the batch phase's sustained rate"
            if opts.lag_rate is None and "batch" in bench.results
            else "as asked"
        )
        lines += [
            "",
            f"3. Accepted-to-persisted lag (open loop at {rate:,.0f} events/s: {why}; {ll.elapsed:.1f} s)",
        ]
        lines.append(
            f"   accepted      {lag.accepted_eps:>10,.0f} events/s   "
            f"({ll.accepted:,} events; {ll.late_sends} sends late, "
            f"{ll.extra_connections} extra connections)"
        )
        lines.append(
            f"   lag           p50 {fmt_s(lag.persisted.lag_p50_s)}, "
            f"p99 {fmt_s(lag.persisted.lag_p99_s)}, p99.9 {fmt_s(lag.persisted.lag_p999_s)}, "
            f"max {fmt_s(lag.persisted.lag_max_s)}   (persisted_at - received_at)"
        )
        lines += _commit_lag(lag.persisted)
        lines.append(
            f"   batch latency p50 {fmt_ms(pct(ll.latencies, 0.5))}, p99 {fmt_ms(pct(ll.latencies, 0.99))}"
        )
        if not lag.persisted.drained:
            lines.append("   (backlog NOT fully drained: the lag figures cover persisted events only)")

    if lag_results:
        judged = max(lag_results, key=lambda r: float(r.settings["rate_eps"]))
        rate = float(judged.settings["rate_eps"])
        p99 = judged.persisted.lag_p99_s
        ok = p99 is not None and p99 < TARGET_LAG_P99_S and rate >= TARGET_LAG_RATE * 0.99
        note = (
            ""
            if rate >= TARGET_LAG_RATE * 0.99
            else (f" (measured at {rate:,.0f} events/s, below the {TARGET_LAG_RATE:,} the target names)")
        )
        targets.append(
            f"lag p99 < {TARGET_LAG_P99_S:.0f} s at {TARGET_LAG_RATE:,} events/s: "
            f"{fmt_s(p99)}{note}  {verdict(ok)}"
        )

    lines += ["", "CPU per role during each load window (s of CPU; % of the machine; µs per accepted event)"]
    header = f"   {'phase':<10}" + "".join(f"{r:>17}" for r in ROLES) + f"{'machine busy':>15}"
    lines.append(header)
    for name, result in bench.results.items():
        per_event = 1e6 / result.load.accepted if result.load.accepted else 0.0
        capacity = result.cpu.machine_total_s or 1.0
        cells = ""
        for role in ROLES:
            cpu = result.cpu.by_role.get(role, 0.0)
            cells += f"{cpu:>6.1f}s {100 * cpu / capacity:>3.0f}% {cpu * per_event:>4.0f}"
        steal = result.cpu.machine_steal_s / capacity
        lines.append(
            f"   {name:<10}{cells}{100 * result.cpu.machine_busy_fraction:>14.0f}%"
            + (f" (steal {100 * steal:.0f}%)" if steal >= 0.005 else "")
        )
    for name, result in bench.results.items():
        kernel = [
            f"{role} {100 * result.cpu.sys_by_role.get(role, 0) / cpu:.0f}%"
            for role in ROLES
            if (cpu := result.cpu.by_role.get(role, 0)) > 0.1 and role in result.cpu.sys_by_role
        ]
        lines.append(f"   {name}: share of that CPU spent in the kernel: {', '.join(kernel)}")
    lines.append(
        "   (loadgen = this process: building bodies, sending, parsing answers; other = busy "
        "CPU outside our processes: kernel work such as fsync and TCP, and anything "
        "else running on the machine)"
    )
    for name, result in bench.results.items():
        splits = []
        for role in ("web", "worker"):
            cpus = [cpu for r, cpu in result.cpu.by_pid.values() if r == role]
            total = sum(cpus) or 1.0
            shares = sorted((cpu for cpu in cpus if cpu > 0.01 * total), reverse=True)
            splits.append(f"{role} processes " + " / ".join(f"{100 * c / total:.0f}%" for c in shares))
        lines.append(f"   {name}: CPU split between {'; '.join(splits)}")
    for name, result in bench.results.items():
        foreign = result.cpu.foreign()
        if foreign:
            lines.append(
                f"   {name}: other processes " + ", ".join(f"{comm} {cpu:.1f}s" for comm, cpu in foreign)
            )
    busy_elsewhere = [
        name
        for name, r in bench.results.items()
        if r.cpu.machine_total_s and r.cpu.by_role.get("other", 0) / r.cpu.machine_total_s > 0.1
    ]
    if busy_elsewhere:
        lines.append(
            f"   WARNING: >10% of the machine went to 'other' during {', '.join(busy_elsewhere)}: "
            "was something else running? The figures are then pessimistic."
        )
    errors = {
        name: (dict(r.load.statuses), r.load.sample_errors, r.persisted.failed_events)
        for name, r in bench.results.items()
        if set(r.load.statuses) - {202} or r.load.rejected or r.persisted.failed_events
    }
    if errors:
        lines += ["", "Non-202 answers / rejections / failed events:"]
        for name, (statuses, samples, failed) in errors.items():
            lines.append(f"   {name}: statuses {statuses}, failed_events {failed}; {samples}")
    for name, result in bench.results.items():
        lines += [
            "",
            f"Valkey commands during {name} (time inside Valkey; EVALSHA includes the "
            "commands its script runs, which are also listed on their own)",
        ]
        lines += serverstats.table(result.valkey, result.load.accepted)
        lines += serverstats.counter_lines(*result.counters, result.load.accepted)
        if result.statements:
            lines += [f"Postgres statements during {name} (pg_stat_statements execution time)"]
            lines += serverstats.table(result.statements, result.load.accepted)
    lines += ["", "Targets (2-core machine, everything on it):", *(f"   {t}" for t in targets)]
    lines.append("=" * 78)
    print("\n".join(lines), flush=True)

    for name, result in bench.results.items():
        load = result.load
        out["phases"][name] = {
            "settings": result.settings,
            "elapsed_s": load.elapsed,
            "requests": load.requests,
            "accepted": load.accepted,
            "duplicates": load.duplicates,
            "rejected": load.rejected,
            "statuses": {str(k): v for k, v in load.statuses.items()},
            "accepted_eps": result.accepted_eps,
            "persisted_eps": result.persisted_eps,
            "end_to_end_eps": result.end_to_end_eps,
            "drain_s": result.drain_s,
            "drained": result.persisted.drained,
            "latency_p50_s": pct(load.latencies, 0.5),
            "latency_p99_s": pct(load.latencies, 0.99),
            "lag_p50_s": result.persisted.lag_p50_s,
            "lag_p99_s": result.persisted.lag_p99_s,
            "lag_p999_s": result.persisted.lag_p999_s,
            "lag_max_s": result.persisted.lag_max_s,
            "commit_lag_p50_s": result.persisted.commit_lag_p50_s,
            "commit_lag_p99_s": result.persisted.commit_lag_p99_s,
            "cpu_s": result.cpu.by_role,
            "machine_busy_fraction": result.cpu.machine_busy_fraction,
            "loadgen_cpu_s": load.loadgen_cpu_s,
            "persisted_per_second": result.persisted.per_second,
            "valkey_commands": [dataclasses.asdict(x) for x in result.valkey[:15]],
            "pg_statements": [dataclasses.asdict(x) for x in result.statements[:15]],
        }
    out["targets"] = targets
    return out
