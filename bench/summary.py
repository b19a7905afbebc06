"""`python -m bench.summary FILE...`: every target's verdict from the benchmarks' JSON
files (`--json`), in one table: what `make bench` prints at the end.

A file that is missing or has no verdicts is named (that benchmark failed or was not
run) and makes the exit status 1; a missed target does not: it is a figure, not an error.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from bench.verdicts import Verdict, lines


def load(path: Path) -> tuple[str, list[Verdict]] | str:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        return f"{path}: no results ({type(exc).__name__}: {exc}); did that benchmark fail?"
    raw = data.get("verdicts") if isinstance(data, dict) else None
    if not raw:
        return f"{path}: no verdicts in it"
    verdicts = [
        Verdict(
            str(v.get("target", "?")),
            str(v.get("floor", "?")),
            str(v.get("measured", "?")),
            v.get("verdict") == "PASS",
            str(v.get("note", "")),
        )
        for v in raw
    ]
    return str(data.get("bench") or path.stem), verdicts


def main(argv: list[str] | None = None) -> int:
    paths = [Path(p) for p in (sys.argv[1:] if argv is None else argv)]
    out = ["", "=" * 100, "Summary of every target (issue 15; 2-core machine, everything on it)", "=" * 100]
    everything: list[Verdict] = []
    problems: list[str] = []
    for path in paths:
        loaded = load(path)
        if isinstance(loaded, str):
            problems.append(loaded)
            continue
        _, verdicts = loaded
        everything += verdicts
    out += lines(everything)
    passed = sum(v.ok is True for v in everything)
    out.append(f"{passed} of {len(everything)} targets PASS")
    out += [f"   ! {p}" for p in problems]
    out.append("=" * 100)
    print("\n".join(out), flush=True)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
