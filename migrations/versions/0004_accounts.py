"""Portal accounts: users with roles, account-manager assignments, one-time password links,
and the audit log of what people did in the portal.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-24
"""

from portal.operations.migrate import execute_script as _execute

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    _execute(
        """
        -- A person who signs in to the portal. A customer user sees one customer; an account
        -- manager sees the customers assigned to them (or all); an admin sees everything.
        CREATE TABLE users (
            id             bigserial PRIMARY KEY,
            email          text NOT NULL,
            name           text NOT NULL,
            role           text NOT NULL CHECK (role IN ('customer', 'account_manager', 'admin')),
            customer_id    text REFERENCES customers (id),
            all_customers  boolean NOT NULL DEFAULT false,
            -- argon2id (PHC string); NULL until the person sets a password through their link.
            password_hash  text,
            created_at     timestamptz NOT NULL DEFAULT now(),
            disabled_at    timestamptz,
            CHECK ((role = 'customer') = (customer_id IS NOT NULL)),
            CHECK (NOT all_customers OR role = 'account_manager')
        );
        CREATE UNIQUE INDEX users_email ON users (lower(email));

        CREATE TABLE user_customers (
            user_id      bigint NOT NULL REFERENCES users (id) ON DELETE CASCADE,
            customer_id  text NOT NULL REFERENCES customers (id),
            PRIMARY KEY (user_id, customer_id)
        );

        -- One-time links to set a password; only the SHA-256 of the token is stored.
        CREATE TABLE password_tokens (
            token_hash  bytea PRIMARY KEY,
            user_id     bigint NOT NULL REFERENCES users (id) ON DELETE CASCADE,
            created_at  timestamptz NOT NULL DEFAULT now(),
            expires_at  timestamptz NOT NULL,
            used_at     timestamptz
        );

        -- Who did what, when and why: approvals, voids, adjustments, replays, discards, users
        -- and keys. Append-only.
        CREATE TABLE audit_log (
            id           bigserial PRIMARY KEY,
            at           timestamptz NOT NULL DEFAULT now(),
            user_id      bigint REFERENCES users (id),
            actor        text NOT NULL,
            action       text NOT NULL,
            object_type  text NOT NULL,
            object_id    text NOT NULL,
            customer_id  text,
            reason       text,
            detail       jsonb NOT NULL DEFAULT '{}'
        );
        CREATE INDEX audit_log_object ON audit_log (object_type, object_id, at DESC);
        CREATE INDEX audit_log_customer ON audit_log (customer_id, at DESC);
        """
    )


def downgrade() -> None:
    _execute("DROP TABLE audit_log, password_tokens, user_customers, users;")
