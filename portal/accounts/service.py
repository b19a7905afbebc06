"""Users: who may sign in, with which role, seeing which customers; the rules of creating
them, assigning customers and setting passwords through one-time links. The SQL is in
`portal.accounts.repository`; nothing here commits.

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
from datetime import datetime, timedelta
from typing import Literal

from sqlalchemy.ext.asyncio import AsyncSession

from portal.accounts import repository
from portal.accounts.passwords import hash_password, password_problem
from portal.accounts.schemas import ROLES, User
from portal.catalog import repository as catalog
from portal.infrastructure.domain_errors import Conflict, Invalid, NotFound

ROLE_LABELS: dict[str, str] = {
    "customer": "Customer user",
    "account_manager": "Account manager",
    "admin": "Admin",
}
PASSWORD_LINK_TTL = timedelta(hours=72)
# A link asked for from the sign-in page ("forgot your password?") works for an hour: it
# reaches a mailbox the person is looking at now.
RESET_LINK_TTL = timedelta(hours=1)
_EMAIL = re.compile(r"^[^@\s\x00-\x1f\x7f]{1,64}@[^@\s\x00-\x1f\x7f]+\.[^@\s\x00-\x1f\x7f]+$")
# Control characters (NUL, CR, LF, tab…) and the Unicode line breaks: a name goes into email
# headers ("To: Eve <eve@…>"), which refuse line breaks, and Postgres refuses NUL.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def check_new_user(*, email: str, name: str, role: str, customer_id: str | None) -> None:
    """Raise Invalid naming the first field a person got wrong."""
    if not _EMAIL.match(email.strip()):
        raise Invalid("email: not an email address")
    if not name.strip() or len(name) > 200:
        raise Invalid("name: give the person's name (1 to 200 characters)")
    if _CONTROL.search(name):
        raise Invalid("name: must be on one line, without control characters")
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
    known = await catalog.known_customer_ids(db, [c for c in (customer_id, *assigned) if c])
    for wanted in (customer_id, *assigned):
        if wanted and wanted not in known:
            raise Invalid(f"customerId: there is no customer {wanted!r}")
    user = await repository.create_user(
        db,
        email=email.strip(),
        name=name.strip(),
        role=role,
        customer_id=customer_id,
        all_customers=all_customers,
        password_hash=hash_password(password) if password else None,
    )
    if user is None:
        raise Conflict(f"email: a user with {email.strip()!r} already exists")
    if assigned and role == "account_manager":
        await repository.assign_customers(db, user.id, assigned)
    return user


async def assigned_customers(db: AsyncSession, user_id: int) -> list[str]:
    return await repository.assigned_customers(db, user_id)


async def get_user(db: AsyncSession, user_id: int) -> User | None:
    return await repository.user_by_id(db, user_id)


async def require_user(db: AsyncSession, user_id: int) -> User:
    user = await get_user(db, user_id)
    if user is None:
        raise NotFound(f"there is no user {user_id}")
    return user


async def find_by_email(db: AsyncSession, email: str) -> User | None:
    """The user with this address, whatever its case and surrounding spaces."""
    return await repository.user_by_email(db, email.strip())


async def set_password(db: AsyncSession, user_id: int, password_hash: str) -> None:
    await repository.set_password_hash(db, user_id, password_hash)


async def disable_user(db: AsyncSession, user_id: int) -> None:
    await repository.disable_user(db, user_id)


async def enable_user(db: AsyncSession, user_id: int) -> None:
    await repository.enable_user(db, user_id)


def _token_hash(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


async def issue_password_link(
    db: AsyncSession, user_id: int, *, now: datetime, ttl: timedelta = PASSWORD_LINK_TTL
) -> str:
    """A new one-time token to set the user's password, valid for `ttl` (an invitation's
    72 hours, a reset's 1); earlier unused ones stop working."""
    token = secrets.token_urlsafe(32)
    await repository.add_password_link(
        db, token_hash=_token_hash(token), user_id=user_id, now=now, expires_at=now + ttl
    )
    return token


async def password_link_user(db: AsyncSession, token: str, *, now: datetime) -> User | None:
    """The active user a still-valid, unused token belongs to."""
    return await repository.password_link_user(db, _token_hash(token), now=now)


async def use_password_link(db: AsyncSession, token: str, password: str, *, now: datetime) -> User:
    """Set the password through a one-time link; the link then stops working."""
    if problem := password_problem(password):
        raise Invalid(f"password: {problem}")
    user_id = await repository.use_password_link(db, _token_hash(token), now=now)
    user = await get_user(db, user_id) if user_id is not None else None
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
    return await repository.users_with_assignments(db)


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
    known = await catalog.known_customer_ids(db, wanted)
    for customer_id in wanted:
        if customer_id not in known:
            raise Invalid(f"assigned: there is no customer {customer_id!r}")
    await repository.set_all_customers(db, user_id, all_customers)
    await repository.unassign_other_customers(db, user_id, wanted)
    await repository.assign_customers(db, user_id, wanted)
