"""An append-only JSON-lines spool of the events not yet acknowledged by the server.

Line kinds: an event (`{"e": {...}}`) is appended before `record` returns; an
acknowledgement (`{"a": [ids]}`) is appended when the server has answered for those ids
(accepted, duplicate or rejected). On open, events without an acknowledgement are the
unsent ones. The file is rewritten (to a temporary file, fsynced, then renamed over the
old one) when it holds many acknowledged lines, so it stays about as large as the buffer.

A torn last line (the process died mid-write) is ignored: its `record` had not returned.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
from collections.abc import Collection, Iterable
from pathlib import Path
from typing import Any

from portal.client.errors import UsageClientError

log = logging.getLogger(__name__)

Event = dict[str, Any]


class SpoolInUse(UsageClientError):
    """Another client (in this or another process) holds the spool."""


def _dump(obj: Any) -> bytes:
    return (json.dumps(obj, separators=(",", ":"), ensure_ascii=False) + "\n").encode()


class Spool:
    """Not thread-safe on its own: the pipeline calls it under its lock."""

    def __init__(
        self, path: str | os.PathLike[str], *, fsync: bool = True, compact_after: int = 10_000
    ) -> None:
        self.path = Path(path)
        self.fsync = fsync
        self.compact_after = compact_after
        self._acked_lines = 0
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # One client per spool: a second one would resend and compact the first's events.
        self._lock_fd = os.open(self.path.with_name(self.path.name + ".lock"), os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(self._lock_fd)
            raise SpoolInUse(f"the spool {self.path} is used by another client") from exc
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)

    def load(self) -> list[Event]:
        """The events written and never acknowledged, in the order they were written."""
        pending: dict[str, Event] = {}
        with self.path.open("rb") as handle:
            for number, raw in enumerate(handle, 1):
                try:
                    line = json.loads(raw)
                except ValueError:
                    log.warning("usage spool %s: skipping unreadable line %d", self.path, number)
                    continue
                if "e" in line:
                    event = line["e"]
                    pending[str(event["eventId"])] = event
                else:
                    for event_id in line.get("a", []):
                        pending.pop(str(event_id), None)
        events = list(pending.values())
        self.rewrite(events)
        return events

    def _write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            written = os.write(self._fd, view)
            view = view[written:]
        if self.fsync:
            os.fsync(self._fd)

    def append(self, events: list[Event]) -> None:
        self._write(b"".join(_dump({"e": event}) for event in events))

    def acknowledge(self, event_ids: list[str], remaining: Collection[Event]) -> None:
        """Mark ids as answered for; rewrite the file when it is mostly acknowledged lines.
        `remaining` is every event still unacknowledged, for that rewrite."""
        if not remaining:
            self.rewrite([])
            return
        self._write(_dump({"a": event_ids}))
        self._acked_lines += len(event_ids)
        if self._acked_lines >= self.compact_after and self._acked_lines >= len(remaining):
            self.rewrite(remaining)

    def rewrite(self, events: Iterable[Event]) -> None:
        temporary = self.path.with_name(self.path.name + ".tmp")
        with temporary.open("wb") as handle:
            handle.write(b"".join(_dump({"e": event}) for event in events))
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, self.path)
        directory = os.open(self.path.parent, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)
        os.close(self._fd)
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        self._acked_lines = 0

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
            os.close(self._lock_fd)  # releases the lock
