"""The machine the figures were measured on: code version, CPU, memory, and whether
something else keeps it busy.
"""

from __future__ import annotations

import contextlib
import os
import platform
import subprocess
import time
from pathlib import Path
from typing import Any

from bench.config import ROOT, log
from bench.procstat import machine_times


def code_version() -> str:
    """The commit measured, and whether the tree had changes outside bench/ (the figures
    then describe uncommitted code)."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, check=True, capture_output=True, text=True
        ).stdout.strip()
        status = subprocess.run(
            ["git", "status", "--porcelain", "--", ".", ":!bench"],
            cwd=ROOT,
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown (not a git checkout)"
    return head + (f" + uncommitted changes in {len(status.splitlines())} files" if status else "")


# The pure-Python loop timed by `cpu_probe_ms`: this 2-core machine did it in 35-55 ms when
# its host was quick (December 2026), and in 75-100 ms for minutes at a time when busy.
_PROBE_ADDITIONS = 1_000_000


def cpu_probe_ms() -> float:
    """The best of three timings of a fixed pure-Python loop, in ms: how fast this machine's
    cores are right now. A shared host's neighbours slowed the same code by up to ~2x between
    runs minutes apart (with no steal time shown), so every report prints it beside its
    figures; compare figures only at similar probes, or run before and after in turns."""
    best = float("inf")
    for _ in range(3):
        started = time.perf_counter()
        total = 0
        for i in range(_PROBE_ADDITIONS):
            total += i
        best = min(best, time.perf_counter() - started)
    return round(best * 1000, 1)


def describe(machine: dict[str, Any]) -> str:
    """One line about the machine for a report."""
    return (
        f"{machine.get('nproc')} CPUs ({machine.get('cpu_model')}), {machine.get('memory_gb')} GB, "
        f"Linux {machine.get('kernel')}, Python {machine.get('python')}; "
        f"CPU probe {machine.get('cpu_probe_ms', '?')} ms (lower is faster; 35-55 on a quick host)"
    )


def machine_info() -> dict[str, Any]:
    model = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    mem_gb = None
    with contextlib.suppress(OSError, ValueError, IndexError):
        mem_kb = int(Path("/proc/meminfo").read_text().splitlines()[0].split()[1])
        mem_gb = round(mem_kb / 1024 / 1024, 1)
    return {
        "nproc": len(os.sched_getaffinity(0)),
        "cpu_model": model,
        "memory_gb": mem_gb,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "code": code_version(),
        "cpu_probe_ms": cpu_probe_ms(),
    }


def machine_busy_fraction(seconds: float) -> float:
    busy0, total0, _ = machine_times()
    time.sleep(seconds)
    busy1, total1, _ = machine_times()
    return (busy1 - busy0) / (total1 - total0) if total1 > total0 else 0.0


def wait_for_idle(max_wait: float) -> float:
    """The machine's busy share over 2 s; with `max_wait`, keep sampling until it is
    below 10 % or the time is up. Another workload on the machine skews every figure."""
    deadline = time.monotonic() + max_wait
    busy = machine_busy_fraction(2.0)
    while busy > 0.1 and time.monotonic() < deadline:
        log(f"machine {100 * busy:.0f}% busy; waiting for it to be idle")
        busy = machine_busy_fraction(5.0)
    if busy > 0.1:
        log(
            f"WARNING: the machine is {100 * busy:.0f}% busy before the run: something else "
            "is running, and the figures will be pessimistic"
        )
    return busy
