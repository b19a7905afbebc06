"""Outgoing connections of a send: name resolution, and a guard on every socket it opens.

`guarded(allow)` marks the current context (and the Apprise worker threads it spawns, which
run in a copy of it) as a send to a destination someone entered. While it is active, every
`socket.connect`, `sendto` and `sendmsg` in that context is checked against
alerts.destinations' rules at the moment it happens, with the address actually being
connected to: after DNS resolution, on every redirect hop, on every retry, whatever library
or Apprise plugin opens the socket. A refused connection raises DestinationRefused (an
OSError, which HTTP and SMTP clients report as a failed connection) and is recorded for
the caller, so no re-resolution (DNS rebinding) can slip a private address in between the
check and the connection.

The check rides on a Python audit hook (PEP 578), installed once per process on first use;
outside a guarded context it returns at once. Sockets opened by C code that bypasses
Python's socket module (none in Apprise's HTTP, SMTP or MQTT paths) are not seen.
"""

from __future__ import annotations

import contextlib
import errno
import ipaddress
import socket
import sys
import threading
from collections.abc import Callable, Iterable, Iterator
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

from alerts.destinations import Address, Network, refusal_of_connection

_EVENTS = frozenset(("socket.connect", "socket.sendto", "socket.sendmsg"))


class DestinationRefused(PermissionError):
    """A guarded send tried to reach an address the rules refuse; `strerror` says why."""

    def __init__(self, reason: str) -> None:
        super().__init__(errno.EACCES, f"refused by the portal's destination rules: {reason}")


def resolve(host: str, port: int | None) -> list[Address]:
    """The addresses `host` resolves to for a TCP connection (what getaddrinfo answers, each
    once, in its order). Raises OSError (socket.gaierror) when it does not resolve."""
    found: list[Address] = []
    for *_, sockaddr in socket.getaddrinfo(host, port or 0, type=socket.SOCK_STREAM):
        address = ipaddress.ip_address(str(sockaddr[0]).split("%", 1)[0])
        if address not in found:
            found.append(address)
    return found


@dataclass
class _Guard:
    allow: tuple[Network, ...]
    refused: list[str] = field(default_factory=list)
    sockets: list[socket.socket] = field(default_factory=list)  # connected in the block


_ACTIVE: ContextVar[_Guard | None] = ContextVar("alerts_egress_guard", default=None)
_INSTALL_LOCK = threading.Lock()
_installed = False


@contextlib.contextmanager
def guarded(allow: Iterable[Network]) -> Iterator[list[str]]:
    """Refuse, for the duration of the block, every connection this context makes to an
    address alerts.destinations refuses (networks in `allow` excepted, metadata never).
    Yields the list the refusals' reasons are appended to, in order."""
    _install()
    guard = _Guard(tuple(allow))
    token = _ACTIVE.set(guard)
    try:
        yield guard.refused
    finally:
        _ACTIVE.reset(token)


def _audit(event: str, args: tuple[Any, ...]) -> None:
    # Runs for every audited event of the process: return at once unless it is ours.
    if event not in _EVENTS:
        return
    guard = _ACTIVE.get()
    if guard is None or len(args) < 2:
        return
    address = args[1]
    if event == "socket.sendmsg" and address is None:
        return  # a connected socket: its connect was checked
    reason = refusal_of_connection(address, guard.allow, resolve)
    if reason is not None:
        guard.refused.append(reason)
        raise DestinationRefused(reason)
    if event == "socket.connect" and isinstance(args[0], socket.socket):
        guard.sockets.append(args[0])


@contextlib.contextmanager
def cut_off_after(seconds: float) -> Iterator[Callable[[], bool]]:
    """Inside `guarded`: once `seconds` have passed, shut down every socket the block has
    connected, so whatever reads from them fails at once. Socket timeouts bound each read,
    not a send: a receiver answering a byte at a time, just inside the timeout, would hold
    the sending thread as long as it liked. Yields a function saying whether it cut."""
    guard = _ACTIVE.get()
    if guard is None:
        raise RuntimeError("cut_off_after is for a guarded block")
    fired = threading.Event()

    def cut() -> None:
        fired.set()
        for sock in list(guard.sockets):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    timer = threading.Timer(seconds, cut)
    timer.daemon = True
    timer.start()
    try:
        yield fired.is_set
    finally:
        timer.cancel()


def _install() -> None:
    global _installed
    with _INSTALL_LOCK:
        if not _installed:
            sys.addaudithook(_audit)
            _installed = True
