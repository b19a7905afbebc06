"""The printed table of figures, CPU per role, server counters and PASS/MISS against the
targets, and the same results as a JSON-ready dict.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from datetime import UTC, datetime
from typing import Any

from bench import preload as preload_module
from bench import serverstats
from bench.config import (
    SINGLE_OPEN_RATE,
    TARGET_BATCH_EPS,
    TARGET_COPY_RATIO,
    TARGET_FLAT_RATIO,
    TARGET_LAG_P99_S,
    TARGET_SINGLE_P99_S,
    TARGET_SINGLE_RPS,
    TARGET_STARTUP_S,
    TARGET_TIMELINE_RATIO,
    TARGET_VALKEY_BYTES,
    VALKEY_PROJECTION_DAYS,
    VALKEY_PROJECTION_EPS,
)
from bench.machine import describe
from bench.measure import Persisted
from bench.phases import Bench, PhaseResult
from bench.procstat import ROLES
from bench.startup import Startup
from bench.verdicts import Verdict, not_measured
from bench.verdicts import lines as verdict_lines

# The history the "flat as data grows" and startup targets name.
TARGET_HISTORY_MILLIONS = 100
LONG_RUN_S = 30 * 60


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


def _minute_rates(result: PhaseResult) -> tuple[float, float] | None:
    """Persisted events/s in the first and in the last full minute of the load window."""
    elapsed = int(result.load.elapsed)
    if elapsed < 120:
        return None
    per_second = result.persisted.per_second
    first = sum(per_second.get(s, 0) for s in range(0, 60)) / 60
    last = sum(per_second.get(s, 0) for s in range(elapsed - 60, elapsed)) / 60
    return first, last


def sustained_eps(result: PhaseResult) -> float:
    return min(result.accepted_eps, result.persisted_eps)


def report(
    bench: Bench, machine: dict[str, Any], servers: dict[str, Any], startup: Startup | None = None
) -> dict[str, Any]:
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
    lines.append(f"machine   {describe(machine)}")
    lines.append(
        f"servers   Postgres {servers['postgres']} (fsync={servers['postgres_fsync']}, "
        f"synchronous_commit={servers['postgres_synchronous_commit']}), "
        f"Valkey {servers['valkey']} (live view appendfsync={servers['valkey_appendfsync']}, "
        f"broker appendfsync={servers.get('broker_appendfsync', '-')})"
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
    verdicts: list[Verdict] = []

    if bench.history is not None:
        lines += ["", "0. History loaded before the phases (--preload-millions)"]
        lines += preload_module.lines(bench.history)
    empty = bench.results.get("batch@empty")
    if empty:
        lines += [
            "",
            "0. Batch ingest on the empty store, before the history "
            f"(--compare-empty, {empty.load.elapsed:.1f} s)",
            f"   accepted {empty.accepted_eps:>10,.0f} events/s, persisted {empty.persisted_eps:>10,.0f} "
            "events/s in the window",
            "   timeline:",
            *timeline_rows(empty),
        ]

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
        sustained = sustained_eps(batch)
        verdicts.append(
            Verdict(
                "1. batch ingest, accepted and persisted",
                f">= {TARGET_BATCH_EPS:,} events/s",
                f"{sustained:,.0f} events/s",
                sustained >= TARGET_BATCH_EPS,
                "" if lb.elapsed >= 59 else f"a {lb.elapsed:.0f} s phase; the target says sustained 60 s",
            )
        )
    else:
        verdicts.append(
            not_measured(
                "1. batch ingest, accepted and persisted",
                f">= {TARGET_BATCH_EPS:,} events/s",
                "no batch phase",
            )
        )

    floor = bench.copy_floor
    if floor is not None:
        lines += [
            "",
            f"1b. Raw COPY floor (usage_events-shaped rows into a scratch logged table without indexes, "
            f"{floor.rows_per_copy:,} per COPY, {floor.connections} connections, {floor.elapsed_s:.1f} s)",
            f"   COPY          {floor.rows_per_s:>10,.0f} rows/s   ({floor.rows:,} rows, "
            f"{floor.table_bytes / floor.rows if floor.rows else 0:,.0f} bytes/row on disk)",
        ]
    copy_target = "1. batch persisted / raw COPY floor (same run)"
    if floor is not None and batch is not None and floor.rows_per_s > 0:
        ratio = batch.persisted_eps / floor.rows_per_s
        lines.append(
            f"   persisted/COPY {ratio:>9.3f}x  ({batch.persisted_eps:,.0f} / {floor.rows_per_s:,.0f}; "
            f"floor {TARGET_COPY_RATIO:g}x)"
        )
        verdicts.append(
            Verdict(
                copy_target,
                f">= {TARGET_COPY_RATIO:g}x",
                f"{ratio:.3f}x of {floor.rows_per_s:,.0f} rows/s",
                ratio >= TARGET_COPY_RATIO,
            )
        )
    else:
        verdicts.append(
            not_measured(copy_target, f">= {TARGET_COPY_RATIO:g}x", "needs the batch and copy phases")
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
        verdicts.append(
            Verdict(
                "2. single events, closed loop",
                f">= {TARGET_SINGLE_RPS:,} requests/s",
                f"{rps:,.0f} requests/s",
                rps >= TARGET_SINGLE_RPS,
            )
        )
    else:
        verdicts.append(
            not_measured(
                "2. single events, closed loop", f">= {TARGET_SINGLE_RPS:,} requests/s", "no single phase"
            )
        )

    open_single = next((r for n, r in bench.results.items() if n.startswith("single@")), None)
    open_target = f"2. single events p99 at {SINGLE_OPEN_RATE:,.0f} requests/s"
    if open_single:
        lo = open_single.load
        rate = float(open_single.settings["rate_rps"])
        rps = lo.requests / lo.elapsed if lo.elapsed else 0.0
        p99 = pct(lo.latencies, 0.99)
        lines += [
            "",
            f"2b. Single-event requests on a fixed schedule ({rate:,.0f} requests/s, open loop, "
            f"{lo.elapsed:.1f} s)",
            f"   requests      {rps:>10,.0f} /s   ({lo.requests:,} requests, {lo.accepted:,} accepted; "
            f"{lo.late_sends} sends late, {lo.extra_connections} extra connections)",
            f"   latency       p50 {fmt_ms(pct(lo.latencies, 0.5))}, p99 {fmt_ms(p99)}, "
            f"p99.9 {fmt_ms(pct(lo.latencies, 0.999))}, "
            f"max {fmt_ms(max(lo.latencies) if lo.latencies else None)}",
        ]
        failed = sum(n for status, n in lo.statuses.items() if status != 202)
        notes = []
        if rate < SINGLE_OPEN_RATE * 0.99:
            notes.append(f"measured at {rate:,.0f} requests/s, below the rate the target names")
        if failed:
            notes.append(f"{failed:,} answers other than 202")
        verdicts.append(
            Verdict(
                open_target,
                f"<= {TARGET_SINGLE_P99_S * 1000:g} ms",
                f"{fmt_ms(p99)}",
                p99 is not None and p99 <= TARGET_SINGLE_P99_S and not notes,
                "; ".join(notes),
            )
        )
    else:
        verdicts.append(not_measured(open_target, f"<= {TARGET_SINGLE_P99_S * 1000:g} ms", "--single-rate 0"))

    lag_results = [r for n, r in bench.results.items() if n.startswith("lag")]
    for lag in lag_results:
        ll = lag.load
        rate = float(lag.settings["rate_eps"])
        why = (
            "half the batch phase's sustained rate"
            if opts.lag_rate is None and "batch" in bench.results
            else "as asked"
            if opts.lag_rate is not None
            else "half the batch target: no batch phase"
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

    lag_target = "3. lag accepted->persisted p99 at half the batch rate"
    if lag_results:
        judged = lag_results[0]
        rate = float(judged.settings["rate_eps"])
        p99 = judged.persisted.lag_p99_s
        note = ""
        if opts.lag_rate is not None:
            note = f"at --lag-rate {rate:,.0f}, not half the measured batch rate"
        elif "batch" not in bench.results:
            note = "no batch phase to halve: at half the batch target"
        if not judged.persisted.drained:
            note = "; ".join(x for x in (note, "backlog not drained") if x)
        verdicts.append(
            Verdict(
                lag_target,
                f"<= {TARGET_LAG_P99_S:g} s",
                f"{fmt_s(p99)} at {rate:,.0f} events/s",
                # Judged only at the rate the target names (half the measured batch rate).
                p99 is not None and p99 <= TARGET_LAG_P99_S and not note,
                note,
            )
        )
    else:
        verdicts.append(not_measured(lag_target, f"<= {TARGET_LAG_P99_S:g} s", "no lag phase"))

    verdicts += _flat_verdicts(bench, lines)
    verdicts += _memory_verdicts(bench, lines)
    verdicts += _startup_verdicts(startup, lines)

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
        if result.edges is not None:
            lines.append(f"   {name}: µs of CPU per accepted event, first and last minute (what grew):")
            for label, edge in zip(("first minute", "last minute"), result.edges, strict=True):
                per_event = 1e6 / edge.accepted if edge.accepted else 0.0
                cells = ", ".join(
                    f"{role} {edge.cpu.by_role.get(role, 0.0) * per_event:.1f}" for role in ROLES
                )
                lines.append(
                    f"      {label:<13} {edge.accepted / 60:>8,.0f} accepted/s   {cells}; "
                    f"machine busy {100 * edge.cpu.machine_busy_fraction:.0f}%"
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
    lines += [
        "",
        "Targets of issue 15 (2-core machine, everything on it; MISS also when not measured):",
        *(f"   {t}" for t in verdict_lines(verdicts)),
    ]
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
        if result.edges is not None:
            out["phases"][name]["edge_minutes"] = [
                {"accepted": edge.accepted, "cpu_s": edge.cpu.by_role} for edge in result.edges
            ]
    out["bench"] = "ingest"
    out["verdicts"] = [v.as_dict() for v in verdicts]
    if bench.copy_floor is not None:
        out["copy_floor"] = {
            "rows_per_s": bench.copy_floor.rows_per_s,
            "rows": bench.copy_floor.rows,
            "elapsed_s": bench.copy_floor.elapsed_s,
            "connections": bench.copy_floor.connections,
        }
    if bench.memory is not None:
        out["valkey_memory"] = {
            "used_before": bench.memory.before.used_memory,
            "used_after": bench.memory.after.used_memory,
            "keys_before": dict(bench.memory.before.prefix_keys),
            "keys_after": dict(bench.memory.after.prefix_keys),
            "bytes_per_event_held": bench.memory.bytes_per_event,
            "marker_hold_s": bench.memory.marker_hold.total_seconds(),
            "fixed_bytes": bench.memory.fixed_bytes,
            "growing_bytes": bench.memory.growing_bytes,
            "projected_bytes": bench.memory.projected_bytes,
        }
    if bench.history is not None:
        out["preload"] = dataclasses.asdict(bench.history)
    if startup is not None:
        out["startup"] = dataclasses.asdict(startup)
    return out


def _flat_verdicts(bench: Bench, lines: list[str]) -> list[Verdict]:
    """Target 4: the batch rate with history against the empty store's, and the last
    minute of the batch phase against its first."""
    opts = bench.opts
    out: list[Verdict] = []
    batch = bench.results.get("batch")
    flat_target = "4. batch rate with history / empty store"
    floor = f">= {TARGET_FLAT_RATIO:.0%}"
    empty_phase = bench.results.get("batch@empty")
    empty = (
        opts.empty_rate
        if opts.empty_rate is not None
        else (sustained_eps(empty_phase) if empty_phase else None)
    )
    if bench.history is None or batch is None:
        out.append(
            not_measured(
                flat_target, floor, f"run with --preload-millions {TARGET_HISTORY_MILLIONS} --compare-empty"
            )
        )
    elif not empty:
        out.append(not_measured(flat_target, floor, "give --empty-rate or --compare-empty"))
    else:
        ratio = sustained_eps(batch) / empty
        millions = bench.history.events / 1e6
        note = (
            ""
            if millions >= TARGET_HISTORY_MILLIONS
            else f"{millions:g}M events of history; the target asks >= {TARGET_HISTORY_MILLIONS}M"
        )
        lines += [
            "",
            f"4. Flat as data grows: {sustained_eps(batch):,.0f} events/s with {millions:g}M events "
            "of history "
            f"vs {empty:,.0f} empty ({'--empty-rate' if opts.empty_rate is not None else 'batch@empty'}): "
            f"{ratio:.0%}",
        ]
        out.append(
            Verdict(
                flat_target,
                floor,
                f"{ratio:.0%} ({sustained_eps(batch):,.0f} / {empty:,.0f})",
                ratio >= TARGET_FLAT_RATIO and not note,
                note,
            )
        )
    timeline_target = "4. batch phase last minute / first minute"
    floor = f">= {TARGET_TIMELINE_RATIO:.0%}"
    minutes = _minute_rates(batch) if batch else None
    if batch is None or minutes is None:
        out.append(
            not_measured(
                timeline_target,
                floor,
                f"needs a batch phase of >= 2 minutes (the target: --duration {LONG_RUN_S})",
            )
        )
    else:
        first, last = minutes
        ratio = last / first if first else 0.0
        note = (
            ""
            if batch.load.elapsed >= LONG_RUN_S - 1
            else f"a {batch.load.elapsed / 60:.0f}-minute run; the target names 30"
        )
        lines.append(
            f"   timeline: first minute {first:,.0f} persisted/s, last minute {last:,.0f} "
            f"persisted/s: {ratio:.0%}"
        )
        out.append(
            Verdict(
                timeline_target,
                floor,
                f"{ratio:.0%} ({last:,.0f} / {first:,.0f})",
                ratio >= TARGET_TIMELINE_RATIO,
                note,
            )
        )
    return out


def _memory_verdicts(bench: Bench, lines: list[str]) -> list[Verdict]:
    target = f"5. Valkey memory at {VALKEY_PROJECTION_EPS:,} events/s for {VALKEY_PROJECTION_DAYS} days"
    floor = f"<= {TARGET_VALKEY_BYTES / 1e9:g} GB"
    memory = bench.memory
    if memory is None:
        return [not_measured(target, floor, "needs the batch phase")]
    lines += ["", "5. Valkey memory around the batch phase, and its projection", *memory.lines()]
    lines.append(
        f"   projection    {memory.projected_bytes / 1e9:,.3f} GB = fixed {memory.fixed_bytes / 1e9:,.3f} GB "
        f"+ growing {memory.growing_bytes / 1e9:,.3f} GB (floor {TARGET_VALKEY_BYTES / 1e9:g} GB)"
    )
    return [
        Verdict(
            target,
            floor,
            f"{memory.projected_bytes / 1e9:,.2f} GB",
            memory.projected_bytes <= TARGET_VALKEY_BYTES,
            f"{memory.bytes_per_event:,.0f} B/event held for {memory.held_s / 86400:,.2f} days",
        )
    ]


def _startup_verdicts(startup: Startup | None, lines: list[str]) -> list[Verdict]:
    target = "5. `usage-portal up` to /readyz 200"
    floor = f"<= {TARGET_STARTUP_S:g} s"
    if startup is None:
        return [not_measured(target, floor, "run with --startup (and --preload-millions 100)")]
    lines += [
        "",
        f"5b. `usage-portal up` on this run's data dir ({startup.events_in_store:,} events in the ledger, "
        f"{startup.valkey_keys:,} keys in Valkey): "
        + (
            f"{startup.seconds:.1f} s to /readyz 200"
            if startup.seconds is not None
            else f"no 200 ({startup.note})"
        ),
    ]
    notes = [startup.note] if startup.note else []
    if startup.events_in_store < TARGET_HISTORY_MILLIONS * 1_000_000 * 0.99:
        # Timed on a smaller store than the target names: not shown to be met.
        notes.append(f"{startup.events_in_store / 1e6:,.1f}M events in store; the target names 100M")
    small = startup.events_in_store < TARGET_HISTORY_MILLIONS * 1_000_000 * 0.99
    return [
        Verdict(
            target,
            floor,
            "-" if startup.seconds is None else f"{startup.seconds:.1f} s",
            startup.seconds is not None and startup.seconds <= TARGET_STARTUP_S and not small,
            "; ".join(notes),
        )
    ]
