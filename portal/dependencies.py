"""Request dependencies: the per-request transaction and the process state."""

from __future__ import annotations

from collections.abc import AsyncIterator

from litestar.datastructures import State
from litestar.di import NamedDependency
from sqlalchemy.ext.asyncio import AsyncSession

from portal.infrastructure.db import transaction
from portal.state import PortalState


def provide_state(state: State) -> PortalState:
    portal: PortalState = state.portal
    return portal


async def provide_session(state: State) -> AsyncIterator[AsyncSession]:
    """One transaction per request: committed if the handler returns, else rolled back;
    the jobs it owes are sent after the commit (`portal.infrastructure.jobs.after_commit`)."""
    portal: PortalState = state.portal
    async with transaction(portal.sessions) as session:
        yield session


async def provide_read_session(
    state: State, db: NamedDependency[AsyncSession]
) -> AsyncIterator[AsyncSession]:
    """For handlers that only display data: a session on the read replica when one is set
    and close enough (its completeness in `info`, portal/usage/completeness.py), else the
    request's own primary transaction `db` (which opens no connection until used).
    Nothing may be written through it: the replica refuses writes."""
    portal: PortalState = state.portal
    session = await portal.replica.open() if portal.replica is not None else None
    if session is None:
        yield db
        return
    try:
        yield session
    finally:
        await session.close()


# Handler parameter types: injected by name ("portal", "db", "read_db").
Portal = NamedDependency[PortalState]
Db = NamedDependency[AsyncSession]
ReadDb = NamedDependency[AsyncSession]
