"""One verdict per target of the performance issue: what was measured, against which
floor, PASS or MISS. Every benchmark prints its verdicts and writes them into its JSON
(`--json`), and `python -m bench.summary` prints them all together (`make bench`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class Verdict:
    target: str  # what is judged, e.g. "1. batch ingest, accepted and persisted"
    floor: str  # what it is judged against, e.g. ">= 50,000 events/s"
    measured: str  # the figure, e.g. "21,458 events/s", or why there is none
    ok: bool | None  # None: not measured in this run, which counts as a MISS
    note: str = ""

    @property
    def verdict(self) -> str:
        # A target not measured is not shown to be met: MISS, with the reason beside it.
        return "PASS" if self.ok else "MISS"

    def line(self, target_width: int = 48, measured_width: int = 22, floor_width: int = 16) -> str:
        note = f"  ({self.note})" if self.note else ""
        return (
            f"{self.target:<{target_width}}  {self.measured:>{measured_width}}  "
            f"floor {self.floor:<{floor_width}}  {self.verdict}{note}"
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "target": self.target,
            "floor": self.floor,
            "measured": self.measured,
            "verdict": self.verdict,
            "measured_ok": self.ok,
            "note": self.note,
        }


def not_measured(target: str, floor: str, why: str) -> Verdict:
    return Verdict(target, floor, "not measured", None, why)


def lines(verdicts: list[Verdict]) -> list[str]:
    """One aligned line per verdict: target, figure, floor, PASS/MISS and the note."""
    widths = (
        max((len(v.target) for v in verdicts), default=0),
        max((len(v.measured) for v in verdicts), default=0),
        max((len(v.floor) for v in verdicts), default=0),
    )
    return [v.line(*widths) for v in verdicts]
