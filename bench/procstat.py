"""CPU time per role (web, worker, postgres, valkey, load generator) from /proc.

Snapshots before and after a phase give, per role, the CPU seconds it used during the
phase: with the event count that is CPU per event, the figure that says where a 2-core
machine's time goes. A process that exits during a phase counts for its parent once
reaped (cutime); one not yet reaped, or whose parent is not ours, is lost to "other".
"""

from __future__ import annotations

import os
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
ROLES = ("web", "worker", "postgres", "valkey", "loadgen", "other")


@dataclass(frozen=True, slots=True)
class _Proc:
    pid: int
    ppid: int
    comm: str
    cpu_s: float
    sys_s: float  # of which in the kernel (system calls: network, disk)


def _read_procs() -> dict[int, _Proc]:
    procs: dict[int, _Proc] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            raw = (entry / "stat").read_text()
        except OSError:
            continue
        # comm may contain spaces and parentheses: split at the last ')'.
        comm = raw[raw.index("(") + 1 : raw.rindex(")")]
        fields = raw[raw.rindex(")") + 2 :].split()
        # fields[0] is state (field 3); utime, stime, cutime, cstime are fields 14-17.
        # Reaped children count for their parent (Postgres autovacuum workers, a Valkey
        # AOF rewrite), so their CPU stays with the role that caused it.
        cpu = sum(int(v) for v in fields[11:15]) / CLOCK_TICKS
        sys = (int(fields[12]) + int(fields[14])) / CLOCK_TICKS
        procs[int(entry.name)] = _Proc(int(entry.name), int(fields[1]), comm, cpu, sys)
    return procs


def machine_times() -> tuple[float, float, float]:
    """(busy, total, steal) CPU seconds of the whole machine since boot, from /proc/stat.
    Steal (time the hypervisor gave our vCPUs to someone else) counts as busy."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = values[3] + (values[4] if len(values) > 4 else 0)  # idle + iowait
    total = sum(values[:8])
    steal = values[7] if len(values) > 7 else 0
    return (total - idle) / CLOCK_TICKS, total / CLOCK_TICKS, steal / CLOCK_TICKS


@dataclass(slots=True)
class Roles:
    """Which processes belong to which role: the process trees under the given roots
    (the web and worker commands we started, the embedded servers' main processes).
    Servers we did not start (DATABASE_URL / REDIS_URL) are recognised by process name,
    which also catches any other Postgres or Valkey running on the machine."""

    roots: dict[int, str] = field(default_factory=dict)  # pid -> role

    def classify(self, procs: dict[int, _Proc]) -> dict[int, str]:
        out: dict[int, str] = {}
        me = os.getpid()
        by_root = self.roots
        rooted = set(self.roots.values())
        for proc in procs.values():
            role = None
            if proc.pid == me:
                role = "loadgen"
            else:
                cursor: _Proc | None = proc
                seen = 0
                while cursor is not None and seen < 64 and role is None:
                    role = by_root.get(cursor.pid)
                    cursor = procs.get(cursor.ppid)
                    seen += 1
            if role is None and "postgres" not in rooted and proc.comm == "postgres":
                role = "postgres"
            if role is None and "valkey" not in rooted and proc.comm.startswith(("valkey", "redis-")):
                role = "valkey"
            if role is not None:
                out[proc.pid] = role
        return out


@dataclass(frozen=True, slots=True)
class Snapshot:
    per_pid: dict[int, tuple[str, float, float]]  # role, CPU, of which system
    busy_s: float
    total_s: float
    steal_s: float


def snapshot(roles: Roles) -> Snapshot:
    procs = _read_procs()
    classified = roles.classify(procs)
    busy, total, steal = machine_times()
    # Unclassified processes are kept as "?<name>" to show what else used the machine.
    return Snapshot(
        {pid: (classified.get(pid, "?" + proc.comm), proc.cpu_s, proc.sys_s) for pid, proc in procs.items()},
        busy,
        total,
        steal,
    )


@dataclass(frozen=True, slots=True)
class CpuUsage:
    """CPU seconds per role (and per process) between two snapshots, and the machine's
    busy share."""

    by_role: dict[str, float]
    sys_by_role: dict[str, float]
    machine_busy_s: float
    machine_total_s: float
    machine_steal_s: float
    by_pid: dict[int, tuple[str, float]]

    @property
    def machine_busy_fraction(self) -> float:
        return self.machine_busy_s / self.machine_total_s if self.machine_total_s else 0.0

    def foreign(self, top: int = 4) -> list[tuple[str, float]]:
        """The processes outside our roles that used the most CPU: (name, seconds)."""
        totals: dict[str, float] = defaultdict(float)
        for role, cpu in self.by_pid.values():
            if role.startswith("?"):
                totals[role[1:]] += cpu
        return sorted(
            ((n, c) for n, c in totals.items() if c >= 0.05), key=lambda item: item[1], reverse=True
        )[:top]


def usage_between(before: Snapshot, after: Snapshot) -> CpuUsage:
    by_role: dict[str, float] = defaultdict(float)
    sys_by_role: dict[str, float] = defaultdict(float)
    by_pid: dict[int, tuple[str, float]] = {}
    for pid, (role, cpu, sys) in after.per_pid.items():
        start = before.per_pid.get(pid)
        # A kernel worker's name changes with its current work queue: same pid, same process.
        same = start is not None and (start[0] == role or (role[0] == "?" and start[0][0] == "?"))
        used = cpu - (start[1] if start is not None and same else 0.0)
        by_pid[pid] = (role, used)
        if not role.startswith("?"):
            by_role[role] += used
            sys_by_role[role] += sys - (start[2] if start is not None and same else 0.0)
    busy = after.busy_s - before.busy_s
    total = after.total_s - before.total_s
    accounted = sum(by_role.values())
    by_role["other"] = max(0.0, busy - accounted)
    return CpuUsage(dict(by_role), dict(sys_by_role), busy, total, after.steal_s - before.steal_s, by_pid)
