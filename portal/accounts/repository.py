"""Every query on the accounts' tables, `users`, `user_customers`, `password_tokens` and
`audit_log`; other modules call these functions, never the tables. None of them commits.

Reads select columns rather than whole models, so nothing lands in the session's identity
map (a user read after an update in the same transaction is read again, not remembered).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import delete, func, insert, or_, select, text, update
from sqlalchemy.dialects.postgresql import aggregate_order_by
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from portal.accounts.models import AuditEntry as AuditRow
from portal.accounts.models import PasswordToken, UserCustomer
from portal.accounts.models import User as UserRow
from portal.accounts.schemas import AuditEntry, User

_USER = (
    col(UserRow.id),
    col(UserRow.email),
    col(UserRow.name),
    col(UserRow.role),
    col(UserRow.customer_id),
    col(UserRow.all_customers),
    col(UserRow.password_hash),
    col(UserRow.created_at),
    col(UserRow.disabled_at),
)
_AUDIT = (
    col(AuditRow.id),
    col(AuditRow.at),
    col(AuditRow.actor),
    col(AuditRow.action),
    col(AuditRow.object_type),
    col(AuditRow.object_id),
    col(AuditRow.customer_id),
    col(AuditRow.reason),
    col(AuditRow.detail),
)
# Only columns are read and written here, never objects a session would have to keep in step.
_NO_SYNC = {"synchronize_session": False}


def _user(row: Any) -> User:
    return User(*tuple(row))


def _audit(row: Any) -> AuditEntry:
    return AuditEntry(*tuple(row))


# --- users


async def create_user(
    db: AsyncSession,
    *,
    email: str,
    name: str,
    role: str,
    customer_id: str | None,
    all_customers: bool,
    password_hash: str | None,
) -> User | None:
    """Insert the user; None when a user has this email already, whatever its case (the
    caller's transaction goes on: the insert runs in a savepoint)."""
    statement = (
        insert(UserRow)
        .values(
            email=email,
            name=name,
            role=role,
            customer_id=customer_id,
            all_customers=all_customers,
            password_hash=password_hash,
        )
        .returning(*_USER)
    )
    try:
        async with db.begin_nested():
            row = (await db.execute(statement)).one()
    except IntegrityError:
        return None
    return _user(row)


async def user_by_id(db: AsyncSession, user_id: int) -> User | None:
    row = (await db.execute(select(*_USER).where(col(UserRow.id) == user_id))).first()
    return _user(row) if row else None


async def user_by_email(db: AsyncSession, email: str) -> User | None:
    """The user with this email, whatever its case."""
    statement = select(*_USER).where(func.lower(col(UserRow.email)) == func.lower(email))
    row = (await db.execute(statement)).first()
    return _user(row) if row else None


async def set_password_hash(db: AsyncSession, user_id: int, password_hash: str) -> None:
    statement = update(UserRow).where(col(UserRow.id) == user_id).values(password_hash=password_hash)
    await db.execute(statement.execution_options(**_NO_SYNC))


async def disable_user(db: AsyncSession, user_id: int) -> None:
    """Mark the user disabled now, or keep when they were disabled before."""
    statement = (
        update(UserRow)
        .where(col(UserRow.id) == user_id)
        .values(disabled_at=func.coalesce(col(UserRow.disabled_at), func.now()))
    )
    await db.execute(statement.execution_options(**_NO_SYNC))


async def enable_user(db: AsyncSession, user_id: int) -> None:
    statement = update(UserRow).where(col(UserRow.id) == user_id).values(disabled_at=None)
    await db.execute(statement.execution_options(**_NO_SYNC))


async def set_all_customers(db: AsyncSession, user_id: int, all_customers: bool) -> None:
    statement = update(UserRow).where(col(UserRow.id) == user_id).values(all_customers=all_customers)
    await db.execute(statement.execution_options(**_NO_SYNC))


async def users_with_assignments(db: AsyncSession) -> list[tuple[User, list[str]]]:
    """Every user with the customers assigned to them, by role then email, in one query."""
    assigned = func.array_agg(
        aggregate_order_by(col(UserCustomer.customer_id), col(UserCustomer.customer_id))
    ).filter(col(UserCustomer.customer_id).is_not(None))
    statement = (
        select(*_USER, assigned)
        .outerjoin(UserCustomer, col(UserCustomer.user_id) == col(UserRow.id))
        .group_by(col(UserRow.id))
        .order_by(col(UserRow.role), func.lower(col(UserRow.email)))
    )
    out: list[tuple[User, list[str]]] = []
    for row in await db.execute(statement):
        *columns, customer_ids = tuple(row)
        out.append((User(*columns), list(customer_ids or ())))
    return out


async def user_counts(db: AsyncSession) -> tuple[int, int, int]:
    """(active, invited, disabled): invited people have not set a password yet."""
    enabled = col(UserRow.disabled_at).is_(None)
    has_password = col(UserRow.password_hash).is_not(None)
    statement = select(
        func.count().filter(enabled, has_password),
        func.count().filter(enabled, ~has_password),
        func.count().filter(~enabled),
    ).select_from(UserRow)
    active, invited, disabled = (await db.execute(statement)).one()
    return int(active), int(invited), int(disabled)


# --- user_customers: the customers assigned to an account manager


async def assigned_customers(db: AsyncSession, user_id: int) -> list[str]:
    statement = (
        select(col(UserCustomer.customer_id))
        .where(col(UserCustomer.user_id) == user_id)
        .order_by(col(UserCustomer.customer_id))
    )
    return list((await db.scalars(statement)).all())


async def is_assigned(db: AsyncSession, user_id: int, customer_id: str) -> bool:
    statement = select(col(UserCustomer.user_id)).where(
        col(UserCustomer.user_id) == user_id, col(UserCustomer.customer_id) == customer_id
    )
    return (await db.execute(statement)).first() is not None


async def assign_customers(db: AsyncSession, user_id: int, customer_ids: Iterable[str]) -> None:
    """Add these assignments; those the user has already are kept."""
    rows = [{"user_id": user_id, "customer_id": c} for c in customer_ids]
    if rows:
        await db.execute(pg_insert(UserCustomer).values(rows).on_conflict_do_nothing())


async def unassign_other_customers(db: AsyncSession, user_id: int, kept: Sequence[str]) -> None:
    """Remove every assignment of the user except those to `kept`."""
    statement = delete(UserCustomer).where(
        col(UserCustomer.user_id) == user_id, col(UserCustomer.customer_id).not_in(list(kept))
    )
    await db.execute(statement.execution_options(**_NO_SYNC))


def assigned_customer_ids_sql(user_param: str) -> str:
    """`(SELECT customer_id …)`: the customers assigned to the user whose id is bound as
    `:{user_param}`.

    Raw SQL because the pages' reports that embed it (portal.pages.access.customer_scope) are
    raw SQL over other domains' tables."""
    return f"(SELECT customer_id FROM user_customers WHERE user_id = :{user_param})"


# --- password_tokens: one-time links to set a password (SHA-256 of the token only)


async def add_password_link(
    db: AsyncSession, *, token_hash: bytes, user_id: int, now: datetime, expires_at: datetime
) -> None:
    """Store a new link for the user; their earlier unused links stop working at `now`."""
    retire = (
        update(PasswordToken)
        .where(col(PasswordToken.user_id) == user_id, col(PasswordToken.used_at).is_(None))
        .values(used_at=now)
    )
    await db.execute(retire.execution_options(**_NO_SYNC))
    await db.execute(
        insert(PasswordToken).values(
            token_hash=token_hash, user_id=user_id, created_at=now, expires_at=expires_at
        )
    )


async def password_link_user(db: AsyncSession, token_hash: bytes, *, now: datetime) -> User | None:
    """The enabled user an unused link, still valid at `now`, belongs to."""
    statement = (
        select(*_USER)
        .join(PasswordToken, col(PasswordToken.user_id) == col(UserRow.id))
        .where(
            col(PasswordToken.token_hash) == token_hash,
            col(PasswordToken.used_at).is_(None),
            col(PasswordToken.expires_at) > now,
            col(UserRow.disabled_at).is_(None),
        )
    )
    row = (await db.execute(statement)).first()
    return _user(row) if row else None


async def use_password_link(db: AsyncSession, token_hash: bytes, *, now: datetime) -> int | None:
    """Mark an unused link, still valid at `now`, used; the id of its user, or None."""
    statement = (
        update(PasswordToken)
        .where(
            col(PasswordToken.token_hash) == token_hash,
            col(PasswordToken.used_at).is_(None),
            col(PasswordToken.expires_at) > now,
        )
        .values(used_at=now)
        .returning(col(PasswordToken.user_id))
        .execution_options(**_NO_SYNC)
    )
    user_id = (await db.execute(statement)).scalar_one_or_none()
    return None if user_id is None else int(user_id)


# --- audit_log (append-only)


async def add_audit_entry(
    db: AsyncSession,
    *,
    user_id: int | None,
    actor: str,
    action: str,
    object_type: str,
    object_id: str,
    customer_id: str | None,
    reason: str | None,
    detail: dict[str, Any],
) -> None:
    await db.execute(
        insert(AuditRow).values(
            user_id=user_id,
            actor=actor,
            action=action,
            object_type=object_type,
            object_id=object_id,
            customer_id=customer_id,
            reason=reason,
            detail=detail,
        )
    )


async def audit_entries(
    db: AsyncSession,
    *,
    object_type: str | None,
    object_id: str | None,
    customer_id: str | None,
    limit: int,
) -> list[AuditEntry]:
    """Newest first; each of `object_type`, `object_id`, `customer_id` that is given must match."""
    statement = select(*_AUDIT).order_by(col(AuditRow.at).desc(), col(AuditRow.id).desc()).limit(limit)
    if object_type is not None:
        statement = statement.where(col(AuditRow.object_type) == object_type)
    if object_id is not None:
        statement = statement.where(col(AuditRow.object_id) == object_id)
    if customer_id is not None:
        statement = statement.where(col(AuditRow.customer_id) == customer_id)
    return [_audit(row) for row in await db.execute(statement)]


async def audit_trails(db: AsyncSession, object_type: str, object_ids: Sequence[str]) -> list[AuditEntry]:
    """Every entry about these objects, oldest first."""
    statement = (
        select(*_AUDIT)
        .where(col(AuditRow.object_type) == object_type, col(AuditRow.object_id).in_(list(object_ids)))
        .order_by(col(AuditRow.at), col(AuditRow.id))
    )
    return [_audit(row) for row in await db.execute(statement)]


async def audit_page(
    db: AsyncSession,
    *,
    visible: str,
    params: dict[str, Any],
    about_no_customer: bool,
    customer_id: str | None,
    limit: int,
    offset: int,
) -> tuple[list[AuditEntry], int]:
    """One page of entries, newest first, with how many there are in all: entries about the
    customers in `visible` (a raw SQL subquery of customer ids bound by `params`, see
    portal.pages.manager.common.visible_ids), and about no customer if `about_no_customer`;
    only those about `customer_id` when it is given."""
    # The scope is raw SQL: the same subquery limits the pages' raw report queries.
    in_scope = text(f"audit_log.customer_id IN {visible}")
    statement = (
        select(*_AUDIT, func.count().over())
        .where(or_(in_scope, col(AuditRow.customer_id).is_(None)) if about_no_customer else in_scope)
        .order_by(col(AuditRow.at).desc(), col(AuditRow.id).desc())
        .limit(limit)
        .offset(offset)
    )
    if customer_id is not None:
        statement = statement.where(col(AuditRow.customer_id) == customer_id)
    entries, total = [], 0
    for row in await db.execute(statement, params):
        entries.append(_audit(row[:-1]))
        total = row[-1]
    return entries, total
