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


# Handler parameter types: injected by name ("portal", "db").
Portal = NamedDependency[PortalState]
Db = NamedDependency[AsyncSession]
