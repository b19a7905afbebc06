"""Outgoing billing webhooks: endpoints operators subscribe, the events the portal announces,
one delivery per event and endpoint, and every attempt of each.

- `webhook_endpoints`: a URL (public hosts only, judged when saved and at every connection),
  the event types it receives, its signing secret (encrypted like alert channel secrets),
  enabled or not; deleted endpoints are kept (deleted_at) so their deliveries stay readable.
- `webhook_events`: what happened, as the exact JSON body every delivery of it sends
  (`id` is the `evt_…` id receivers dedupe on), written in the transaction of the change.
- `webhook_deliveries`: an event to one endpoint: pending, delivered or failed, its retry
  schedule and lease; a replay is a new delivery of the same event (`replay_of_id`).
- `webhook_delivery_attempts`: one row per POST: when, how long, the HTTP status or error.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-06
"""

from portal.operations.migrate import execute_script as _execute

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    _execute(
        """
        CREATE TABLE webhook_endpoints (
            id                       bigserial PRIMARY KEY,
            url                      text NOT NULL,
            description              text NOT NULL DEFAULT '',
            event_types              text[] NOT NULL,
            signing_secret_encrypted bytea NOT NULL,
            enabled                  boolean NOT NULL DEFAULT true,
            created_at               timestamptz NOT NULL DEFAULT now(),
            updated_at               timestamptz NOT NULL DEFAULT now(),
            deleted_at               timestamptz
        );

        CREATE TABLE webhook_events (
            id          text PRIMARY KEY,
            type        text NOT NULL,
            api_version text NOT NULL,
            customer_id text REFERENCES customers (id),
            body        text NOT NULL,
            created_at  timestamptz NOT NULL
        );
        CREATE INDEX webhook_events_created ON webhook_events (created_at DESC);
        CREATE INDEX webhook_events_customer ON webhook_events (customer_id, created_at DESC);

        CREATE TABLE webhook_deliveries (
            id              bigserial PRIMARY KEY,
            event_id        text NOT NULL REFERENCES webhook_events (id),
            endpoint_id     bigint NOT NULL REFERENCES webhook_endpoints (id),
            replay_of_id    bigint REFERENCES webhook_deliveries (id),
            status          text NOT NULL DEFAULT 'pending'
                CHECK (status IN ('pending', 'delivered', 'failed')),
            attempts        integer NOT NULL DEFAULT 0,
            next_attempt_at timestamptz NOT NULL DEFAULT now(),
            leased_until    timestamptz,
            last_error      text,
            created_at      timestamptz NOT NULL DEFAULT now(),
            delivered_at    timestamptz,
            failed_at       timestamptz
        );
        CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_attempt_at)
            WHERE status = 'pending';
        CREATE INDEX webhook_deliveries_event ON webhook_deliveries (event_id);
        CREATE INDEX webhook_deliveries_endpoint ON webhook_deliveries (endpoint_id, created_at DESC);

        CREATE TABLE webhook_delivery_attempts (
            id          bigserial PRIMARY KEY,
            delivery_id bigint NOT NULL REFERENCES webhook_deliveries (id),
            attempt     integer NOT NULL,
            started_at  timestamptz NOT NULL,
            duration_ms integer NOT NULL,
            http_status integer,
            error       text
        );
        CREATE INDEX webhook_delivery_attempts_delivery ON webhook_delivery_attempts (delivery_id);
        """
    )


def downgrade() -> None:
    _execute(
        """
        DROP TABLE webhook_delivery_attempts;
        DROP TABLE webhook_deliveries;
        DROP TABLE webhook_events;
        DROP TABLE webhook_endpoints;
        """
    )
