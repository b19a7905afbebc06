"""Users: who may sign in, with which role, seeing which customers.

Roles:
- `customer`: a person at one customer (users.customer_id); sees only that customer.
- `account_manager`: sees the customers assigned to them (user_customers), or every
  customer when `all_customers`; reviews bills, replays failed events.
- `admin`: everything, including users, API keys and the catalog.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from sqlalchemy import text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from portal.accounts.passwords import hash_password, password_problem
from portal.db import values
from portal.problems import Conflict, Invalid, NotFound

Role = Literal["customer", "account_manager", "admin"]
ROLES: tuple[Role, ...] = ("customer", "account_manager", "admin")
ROLE_LABELS: dict[str, str] = {
    "customer": "Customer user",
    "account_manager": "Account manager",
    "admin": "Admin",
}
PASSWORD_LINK_TTL = timedelta(hours=72)
_EMAIL = re.compile(r"^[^@\s]{1,64}@[^@\s]+\.[^@\s]+$")

_COLUMNS = "id, email, name, role, customer_id, all_customers, password_hash, created_at, disabled_at"


@dataclass(frozen=True, slots=True)
class User:
    id: int
    email: str
    name: str
    role: Role
    customer_id: str | None
    all_customers: bool
    password_hash: str | None
    created_at: datetime
    disabled_at: datetime | None

    @property
    def is_staff(self) -> bool:
        """Account managers and admins: the people who work on many customers."""
        return self.role != "customer"


def _user(row: Any) -> User:
    return User(*values(row))


def check_new_user(*, email: str, name: str, role: str, customer_id: str | None) -> None:
    """Raise Invalid naming the first field a person got wrong."""
    if not _EMAIL.match(email.strip()):
        raise Invalid("email: not an email address")
    if not name.strip() or len(name) > 200:
        raise Invalid("name: give the person's name (1 to 200 characters)")
    if role not in ROLES:
        raise Invalid(f"role: must be one of {', '.join(ROLES)}")
    if role == "customer" and not customer_id:
        raise Invalid("customerId: a customer user belongs to one customer")
    if role != "customer" and customer_id:
        raise Invalid("customerId: only customer users belong to a customer")


async def create_user(
    db: AsyncSession,
    *,
    email: str,
    name: str,
    role: str,
    customer_id: str | None = None,
    all_customers: bool = False,
    assigned: Sequence[str] = (),
    password: str | None = None,
) -> User:
    check_new_user(email=email, name=name, role=role, customer_id=customer_id)
    if all_customers and role != "account_manager":
        raise Invalid("allCustomers: only account managers are assigned customers")
    if password is not None and (problem := password_problem(password)):
        raise Invalid(f"password: {problem}")
    known = {
        r[0]
        for r in await db.execute(
            text("SELECT id FROM customers WHERE id = ANY(:ids)"),
            {"ids": [c for c in (customer_id, *assigned) if c]},
        )
    }
    for wanted in (customer_id, *assigned):
        if wanted and wanted not in known:
            raise Invalid(f"customerId: there is no customer {wanted!r}")
    try:
        async with db.begin_nested():
            row = (
                await db.execute(
                    text(
                        f"INSERT INTO users (email, name, role, customer_id, all_customers, password_hash) "
                        f"VALUES (:email, :name, :role, :cid, :all, :pw) RETURNING {_COLUMNS}"
                    ),
                    {
                        "email": email.strip(),
                        "name": name.strip(),
                        "role": role,
                        "cid": customer_id,
                        "all": all_customers,
                        "pw": hash_password(password) if password else None,
                    },
                )
            ).one()
    except IntegrityError as exc:
        raise Conflict(f"email: a user with {email.strip()!r} already exists") from exc
    user = _user(row)
    if assigned and role == "account_manager":
        await assign(db, user.id, assigned)
    return user


async def assign(db: AsyncSession, user_id: int, customer_ids: Sequence[str]) -> None:
    await db.execute(
        text(
            "INSERT INTO user_customers (user_id, customer_id) "
            "SELECT :u, unnest(CAST(:ids AS text[])) ON CONFLICT DO NOTHING"
        ),
        {"u": user_id, "ids": list(customer_ids)},
    )


async def assigned_customers(db: AsyncSession, user_id: int) -> list[str]:
    rows = await db.execute(
        text("SELECT customer_id FROM user_customers WHERE user_id = :u ORDER BY customer_id"), {"u": user_id}
    )
    return [r[0] for r in rows]


async def get_user(db: AsyncSession, user_id: int) -> User | None:
    row = (await db.execute(text(f"SELECT {_COLUMNS} FROM users WHERE id = :id"), {"id": user_id})).first()
    return _user(row) if row else None


async def require_user(db: AsyncSession, user_id: int) -> User:
    user = await get_user(db, user_id)
    if user is None:
        raise NotFound(f"there is no user {user_id}")
    return user


async def find_by_email(db: AsyncSession, email: str) -> User | None:
    row = (
        await db.execute(
            text(f"SELECT {_COLUMNS} FROM users WHERE lower(email) = lower(:e)"), {"e": email.strip()}
        )
    ).first()
    return _user(row) if row else None


async def set_password(db: AsyncSession, user_id: int, password_hash: str) -> None:
    await db.execute(
        text("UPDATE users SET password_hash = :h WHERE id = :id"), {"h": password_hash, "id": user_id}
    )


async def disable_user(db: AsyncSession, user_id: int) -> None:
    await db.execute(
        text("UPDATE users SET disabled_at = coalesce(disabled_at, now()) WHERE id = :id"), {"id": user_id}
    )


async def enable_user(db: AsyncSession, user_id: int) -> None:
    await db.execute(text("UPDATE users SET disabled_at = NULL WHERE id = :id"), {"id": user_id})


def _token_hash(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


async def issue_password_link(db: AsyncSession, user_id: int, *, now: datetime) -> str:
    """A new one-time token to set the user's password; earlier unused ones stop working."""
    token = secrets.token_urlsafe(32)
    await db.execute(
        text("UPDATE password_tokens SET used_at = :now WHERE user_id = :u AND used_at IS NULL"),
        {"u": user_id, "now": now},
    )
    await db.execute(
        text(
            "INSERT INTO password_tokens (token_hash, user_id, created_at, expires_at) "
            "VALUES (:h, :u, :now, :exp)"
        ),
        {"h": _token_hash(token), "u": user_id, "now": now, "exp": now + PASSWORD_LINK_TTL},
    )
    return token


async def password_link_user(db: AsyncSession, token: str, *, now: datetime) -> User | None:
    """The active user a still-valid, unused token belongs to."""
    row = (
        await db.execute(
            text(
                f"SELECT {', '.join('u.' + c.strip() for c in _COLUMNS.split(','))} FROM password_tokens t "
                "JOIN users u ON u.id = t.user_id WHERE t.token_hash = :h AND t.used_at IS NULL "
                "AND t.expires_at > :now AND u.disabled_at IS NULL"
            ),
            {"h": _token_hash(token), "now": now},
        )
    ).first()
    return _user(row) if row else None


async def use_password_link(db: AsyncSession, token: str, password: str, *, now: datetime) -> User:
    """Set the password through a one-time link; the link then stops working."""
    if problem := password_problem(password):
        raise Invalid(f"password: {problem}")
    used = (
        await db.execute(
            text(
                "UPDATE password_tokens SET used_at = :now WHERE token_hash = :h AND used_at IS NULL "
                "AND expires_at > :now RETURNING user_id"
            ),
            {"h": _token_hash(token), "now": now},
        )
    ).first()
    user = await get_user(db, int(used[0])) if used else None
    if user is None or user.disabled_at is not None:
        raise NotFound("this link has expired or was already used; ask for a new one")
    await set_password(db, user.id, hash_password(password))
    return user


# --- Admin pages: the user list with assignments, and changing an account manager's customers.

UserStatus = Literal["active", "invited", "disabled"]


def user_status(user: User) -> UserStatus:
    """Disabled people cannot sign in; invited ones have not set a password yet."""
    if user.disabled_at is not None:
        return "disabled"
    return "invited" if user.password_hash is None else "active"


async def list_users_with_assignments(db: AsyncSession) -> list[tuple[User, list[str]]]:
    """Every user with the customers assigned to them (account managers), in one query."""
    rows = await db.execute(
        text(
            f"SELECT {', '.join('u.' + c.strip() for c in _COLUMNS.split(','))}, "
            "coalesce(array_agg(uc.customer_id ORDER BY uc.customer_id) "
            "FILTER (WHERE uc.customer_id IS NOT NULL), '{}') "
            "FROM users u LEFT JOIN user_customers uc ON uc.user_id = u.id "
            "GROUP BY u.id ORDER BY u.role, lower(u.email)"
        )
    )
    out: list[tuple[User, list[str]]] = []
    for row in rows:
        *columns, assigned = values(row)
        out.append((User(*columns), list(assigned)))
    return out


async def set_assignments(
    db: AsyncSession, user_id: int, *, all_customers: bool, customer_ids: Sequence[str]
) -> None:
    """An account manager sees every customer, or exactly `customer_ids`.

    Raises Invalid naming the field (`assigned`) for an unknown customer or a user who is
    not an account manager."""
    user = await require_user(db, user_id)
    if user.role != "account_manager":
        raise Invalid("assigned: only account managers are assigned customers")
    wanted = sorted(set(customer_ids))
    known = {
        r[0] for r in await db.execute(text("SELECT id FROM customers WHERE id = ANY(:ids)"), {"ids": wanted})
    }
    for customer_id in wanted:
        if customer_id not in known:
            raise Invalid(f"assigned: there is no customer {customer_id!r}")
    await db.execute(
        text("UPDATE users SET all_customers = :all WHERE id = :id"), {"all": all_customers, "id": user_id}
    )
    await db.execute(
        text("DELETE FROM user_customers WHERE user_id = :u AND NOT customer_id = ANY(CAST(:ids AS text[]))"),
        {"u": user_id, "ids": wanted},
    )
    if wanted:
        await assign(db, user_id, wanted)
