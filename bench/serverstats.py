"""Server-side counters around a phase: Valkey's per-command time (INFO commandstats, always
available) and Postgres' per-statement time (pg_stat_statements, with --pg-stats).

Both are read as before/after snapshots, so nothing is reset on a shared server.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import asyncpg
from redis.asyncio import Redis


@dataclass(frozen=True, slots=True)
class Stat:
    """Calls and time (µs) of one command or statement."""

    label: str
    calls: int
    usec: float
    rows: int = 0


async def valkey_commands(redis: Redis) -> dict[str, Stat]:
    info: dict[str, Any] = await redis.info("commandstats")
    out: dict[str, Stat] = {}
    for name, values in info.items():
        command = name.removeprefix("cmdstat_")
        out[command] = Stat(command, int(values["calls"]), float(values["usec"]))
    return out


async def pg_stat_statements_available(pg: asyncpg.Connection) -> bool:
    return bool(await pg.fetchval("SELECT count(*) FROM pg_extension WHERE extname = 'pg_stat_statements'"))


async def pg_statements(pg: asyncpg.Connection) -> dict[str, Stat]:
    """Per statement (all databases, all users): calls, total execution time, rows."""
    rows = await pg.fetch(
        "SELECT queryid::text AS id, query, calls, total_exec_time, rows "
        "FROM pg_stat_statements WHERE queryid IS NOT NULL"
    )
    return {
        r["id"]: Stat(_short(r["query"]), int(r["calls"]), float(r["total_exec_time"]) * 1000, int(r["rows"]))
        for r in rows
    }


def _short(query: str, limit: int = 90) -> str:
    text = re.sub(r"\s+", " ", query).strip()
    return text if len(text) <= limit else text[: limit - 1] + "…"


def delta(before: dict[str, Stat], after: dict[str, Stat]) -> list[Stat]:
    """What happened between two snapshots, most time first."""
    out = []
    for key, stat in after.items():
        old = before.get(key)
        calls = stat.calls - (old.calls if old else 0)
        if calls <= 0:
            continue
        out.append(
            Stat(
                stat.label,
                calls,
                stat.usec - (old.usec if old else 0.0),
                stat.rows - (old.rows if old else 0),
            )
        )
    return sorted(out, key=lambda s: s.usec, reverse=True)


def table(stats: list[Stat], events: int, top: int = 8) -> list[str]:
    lines = []
    for stat in stats[:top]:
        per_event = stat.usec / events if events else 0.0
        lines.append(
            f"     {stat.usec / 1e6:>7.2f} s {stat.calls:>9,} calls "
            f"{stat.usec / stat.calls:>9.1f} µs/call {per_event:>6.2f} µs/event  {stat.label}"
        )
    return lines


async def counters(pg: asyncpg.Connection, redis: Redis) -> dict[str, float]:
    """Cumulative server counters worth a delta: WAL volume, AOF growth and rewrites,
    bytes into Valkey."""
    out: dict[str, float] = {}
    wal = await pg.fetchrow("SELECT wal_records, wal_fpi, wal_bytes FROM pg_stat_wal")
    if wal is not None:
        out.update(
            {
                "pg_wal_bytes": float(wal["wal_bytes"]),
                "pg_wal_fpi": float(wal["wal_fpi"]),
                "pg_wal_records": float(wal["wal_records"]),
            }
        )
    checkpoints = (
        await pg.fetchrow("SELECT num_timed, num_requested FROM pg_stat_checkpointer")
        if await pg.fetchval("SELECT to_regclass('pg_catalog.pg_stat_checkpointer') IS NOT NULL")
        else None
    )
    if checkpoints is not None:
        out["pg_checkpoints_timed"] = float(checkpoints["num_timed"])
        out["pg_checkpoints_requested"] = float(checkpoints["num_requested"])
    info: dict[str, Any] = {
        **await redis.info("persistence"),
        **await redis.info("stats"),
        **await redis.info("memory"),
    }
    for key in (
        "aof_rewrites",
        "aof_current_size",
        "total_net_input_bytes",
        "total_net_output_bytes",
        "used_memory",
    ):
        if key in info:
            out[f"valkey_{key}"] = float(info[key])
    return out


def counter_lines(before: dict[str, float], after: dict[str, float], events: int) -> list[str]:
    if not events:
        return []

    def d(key: str) -> float:
        return after.get(key, 0.0) - before.get(key, 0.0)

    lines = []
    if "pg_wal_bytes" in after:
        lines.append(
            f"     Postgres WAL {d('pg_wal_bytes') / events:,.0f} bytes/event "
            f"({d('pg_wal_bytes') / 2**20:,.0f} MiB, {d('pg_wal_fpi'):,.0f} full-page "
            f"images, {d('pg_wal_records') / events:.1f} records/event; checkpoints "
            f"{d('pg_checkpoints_requested'):.0f} requested (WAL full), "
            f"{d('pg_checkpoints_timed'):.0f} timed)"
        )
    if "valkey_total_net_input_bytes" in after:
        lines.append(
            f"     Valkey in {d('valkey_total_net_input_bytes') / events:,.0f} bytes/event, "
            f"out {d('valkey_total_net_output_bytes') / events:,.0f} bytes/event; "
            f"AOF +{d('valkey_aof_current_size') / 2**20:,.0f} MiB, "
            f"{d('valkey_aof_rewrites'):.0f} AOF rewrites; memory "
            f"{after.get('valkey_used_memory', 0) / 2**20:,.0f} MiB at the end"
        )
    return lines
