"""Settings: one typed object, read from the environment once.

Every knob has a development default so `usage-portal up` needs no configuration. The
secret key is the exception: outside development it must be given (PORTAL_SECRET_KEY, at
least 32 bytes) or nothing starts; in development a random one is generated once per data
dir (`<data_dir>/secret_key`, mode 0600). No public constant ever signs or encrypts.
"""

from __future__ import annotations

import ipaddress
import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import timedelta
from decimal import Decimal
from functools import lru_cache
from pathlib import Path
from urllib.parse import urlsplit

from alerts.destinations import ALLOW_NETWORKS_SETTING, NO_NETWORKS, AllowedNetworks, parse_networks
from alerts.secrets import register_previous_keys
from portal.infrastructure.redis_client import is_cluster_url

# The default of earlier versions, public in their source: refused wherever it is given.
PLACEHOLDER_SECRET = "dev-only-secret-change-me"
MIN_SECRET_KEY_BYTES = 32
# In development, the generated key lives here, under the data dir.
SECRET_KEY_FILE = "secret_key"
_NEW_KEY_HINT = "generate one with: python -c 'import secrets; print(secrets.token_urlsafe(48))'"


class SettingsError(RuntimeError):
    """A setting is missing or unusable; the message names it."""


def _int(name: str, default: int, *, least: int = 0, most: int = 10**9) -> int:
    """An integer setting in [least, most]: a zero or negative interval, window or count
    would start a process that then fails at its first use (a division by zero refusing
    every event, a timeout that never waits), so it is refused at start, naming the range."""
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError as exc:
        raise SettingsError(f"{name} must be an integer, got {raw!r}") from exc
    if not least <= value <= most:
        raise SettingsError(f"{name} must be an integer from {least} to {most}, got {raw!r}")
    return value


def _retention(name: str, default_days: int) -> timedelta | None:
    """A number of days; 0 means forever (None)."""
    days = _int(name, default_days, least=-(10**9), most=36_500)
    if days < 0:
        raise SettingsError(f"{name} must be a number of days (0: keep forever), got {days}")
    return timedelta(days=days) if days else None


WEEK_MS = 7 * 86_400_000
# 1 min, 5 min, 30 min, 2 h, 6 h, 12 h, 24 h.
WEBHOOK_RETRY_DELAYS_MS = (60_000, 300_000, 1_800_000, 7_200_000, 21_600_000, 43_200_000, 86_400_000)


def _ints(name: str, default: tuple[int, ...]) -> tuple[int, ...]:
    """Delays in milliseconds, separated by commas: each from 0 to a week."""
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        values = tuple(int(part) for part in raw.split(","))
    except ValueError as exc:
        raise SettingsError(f"{name} must be integers separated by commas, got {raw!r}") from exc
    if any(not 0 <= v <= WEEK_MS for v in values):
        raise SettingsError(f"{name} must be delays from 0 to {WEEK_MS} ms, got {raw!r}")
    return values


def _decimal(name: str, default: Decimal) -> Decimal:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = Decimal(raw)
    except ArithmeticError as exc:
        raise SettingsError(f"{name} must be a number, got {raw!r}") from exc
    if not value.is_finite() or value <= 1:
        raise SettingsError(f"{name} must be a number above 1, got {raw!r}")
    return value


def _seconds(name: str, default: float, *, least: float) -> float:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError as exc:
        raise SettingsError(f"{name} must be a number of seconds, got {raw!r}") from exc
    if not least <= value < float("inf"):
        raise SettingsError(f"{name} must be at least {least} seconds, got {raw!r}")
    return value


def _networks(name: str) -> tuple[str, ...]:
    """Comma-separated IP addresses or CIDR networks (`10.0.0.0/8, ::1`), each checked and
    written as a network (`::1/128`); empty: none."""
    raw = os.environ.get(name, "")
    found: list[str] = []
    for part in (p.strip() for p in raw.split(",")):
        if not part:
            continue
        try:
            found.append(str(ipaddress.ip_network(part, strict=False)))
        except ValueError as exc:
            raise SettingsError(f"{name}: {part!r} is not an IP address or CIDR network") from exc
    return tuple(found)


def secret_key_problem(key: str, *, name: str = "PORTAL_SECRET_KEY") -> str | None:
    """Why `key` cannot sign or encrypt anything, or None when it can."""
    if not key:
        return f"{name} is empty; {_NEW_KEY_HINT}"
    if key == PLACEHOLDER_SECRET:
        return f"{name} is the public placeholder {PLACEHOLDER_SECRET!r}; {_NEW_KEY_HINT}"
    size = len(key.encode("utf-8"))
    if size < MIN_SECRET_KEY_BYTES:
        return f"{name} is {size} bytes long; it must be at least {MIN_SECRET_KEY_BYTES}; {_NEW_KEY_HINT}"
    return None


def _read_key_file(path: Path) -> str:
    mode = path.stat().st_mode
    if mode & 0o077:
        raise SettingsError(
            f"{path} can be read by other users (mode {mode & 0o777:o}); run `chmod 600 {path}`"
        )
    key = path.read_text(encoding="utf-8").strip()
    if problem := secret_key_problem(key, name=str(path)):
        raise SettingsError(problem)
    return key


def development_secret_key(data_dir: Path) -> str:
    """The data dir's own random key: read from `<data_dir>/secret_key`, or created there
    (mode 0600) on first use. Processes starting together agree: the file is written
    aside and hard-linked into place, so one of them wins and the others read its key."""
    path = data_dir / SECRET_KEY_FILE
    try:
        return _read_key_file(path)
    except FileNotFoundError:
        pass
    data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    key = secrets.token_urlsafe(48)
    aside = data_dir / f".{SECRET_KEY_FILE}.{os.getpid()}.{secrets.token_hex(4)}"
    fd = os.open(aside, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(key + "\n")
            out.flush()
            os.fsync(out.fileno())
        try:
            os.link(aside, path)
        except FileExistsError:
            return _read_key_file(path)
    finally:
        aside.unlink(missing_ok=True)
    return key


def _destination_networks() -> AllowedNetworks:
    try:
        return parse_networks(os.environ.get(ALLOW_NETWORKS_SETTING, ""))
    except ValueError as exc:
        raise SettingsError(f"{ALLOW_NETWORKS_SETTING}: {exc}") from None


@dataclass(frozen=True, slots=True)
class Issuer:
    """The seller named on invoices: PORTAL_ISSUER_* and PORTAL_PAYMENT_TERMS_DAYS."""

    name: str = "Usage Portal"
    address: tuple[str, ...] = ()
    tax_id: str = ""
    email: str = ""
    # Days from the issue date to the due date ("Net 30").
    payment_terms_days: int = 30
    # How to pay (bank details, a payment link), printed under the totals.
    payment_instructions: str = ""

    @property
    def payment_terms(self) -> str:
        if self.payment_terms_days == 0:
            return "Due on receipt"
        return (
            f"Net {self.payment_terms_days} (payment due {self.payment_terms_days} days after the issue date)"
        )


def _lines(raw: str) -> tuple[str, ...]:
    """A multi-line setting: real newlines or the two characters `\\n` separate lines."""
    return tuple(line.strip() for line in raw.replace("\\n", "\n").splitlines() if line.strip())


def _issuer() -> Issuer:
    env = os.environ
    days = _int("PORTAL_PAYMENT_TERMS_DAYS", 30, least=-(10**9))
    if not 0 <= days <= 365:
        raise SettingsError(f"PORTAL_PAYMENT_TERMS_DAYS must be between 0 and 365, got {days}")
    return Issuer(
        name=env.get("PORTAL_ISSUER_NAME", "").strip() or "Usage Portal",
        address=_lines(env.get("PORTAL_ISSUER_ADDRESS", "")),
        tax_id=env.get("PORTAL_ISSUER_TAX_ID", "").strip(),
        email=env.get("PORTAL_ISSUER_EMAIL", "").strip(),
        payment_terms_days=days,
        payment_instructions="\n".join(_lines(env.get("PORTAL_PAYMENT_INSTRUCTIONS", ""))),
    )


@dataclass(frozen=True, slots=True)
class Settings:
    environment: str = "development"
    # Signs the login form's CSRF token and (derived) encrypts stored alert destinations.
    # Empty: in development, the data dir's generated key (filled in at construction);
    # outside development, refused.
    secret_key: str = ""
    # Older keys, newest first, still accepted for decrypting stored destinations while
    # `usage-portal secrets rotate` re-encrypts them (never used to encrypt or sign).
    previous_secret_keys: tuple[str, ...] = ()
    data_dir: Path = Path(".portal-data")
    # None means "start or find the embedded server under data_dir".
    database_url: str | None = None
    redis_url: str | None = None
    broker_url: str | None = None
    # A streaming replica for reads that only display data (docs/architecture.md, "Reads
    # and writes"); None: every read goes to the primary. One further behind than
    # `read_replica_max_lag_s` is not read (the primary is, and /readyz says so).
    database_read_url: str | None = None
    read_replica_max_lag_s: float = 30.0
    # Events older than this (by their own timestamp) are refused; it is also how long
    # Postgres remembers an event id for dedup.
    accepted_lateness: timedelta = timedelta(days=35)
    # Raw events are kept this long (about 13 months) after their month ends, then their
    # monthly partition is exported to the archive dir, verified and dropped
    # (portal/ingest/archive.py). None: kept forever (PORTAL_RAW_EVENT_RETENTION_DAYS=0).
    raw_event_retention: timedelta | None = timedelta(days=400)
    # Where archived partitions go; None: `<data_dir>/archive`.
    archive_dir: Path | None = None
    future_tolerance: timedelta = timedelta(minutes=5)
    max_batch_events: int = 1000
    max_body_bytes: int = 5 * 1024 * 1024
    max_dimensions: int = 20
    max_dimension_key_chars: int = 64
    max_dimension_value_chars: int = 256
    max_event_id_chars: int = 128
    # Redis dedup markers answer "duplicate" at the edge for events resent within this window
    # (client retries); Postgres' ledger is the guard for the whole lateness window. Markers
    # are held one to two windows, so their memory is bounded by rate x window.
    dedup_marker_window: timedelta = timedelta(minutes=30)
    # Accepted events waiting for Postgres in the broker, at most (about; 0: unbounded). At
    # the bound, ingest holds requests back up to `ingest_backlog_wait_s`, then answers 503
    # with Retry-After (portal/ingest/backlog.py). A million events is about a minute at full
    # speed, a quarter of an hour at 1,000 events/s, and under a GB of broker memory.
    ingest_backlog_events: int = 1_000_000
    ingest_backlog_wait_s: float = 2.0
    # How often the scheduler rewrites settled live hours from Postgres.
    reconcile_interval: timedelta = timedelta(seconds=60)
    # Settled hours further back than this are rewritten only by a full reconcile.
    reconcile_window: timedelta = timedelta(hours=48)
    # Worker retry policy for persisting a batch: bounded, short enough to notice.
    persist_max_retries: int = 12
    persist_min_backoff_ms: int = 500
    persist_max_backoff_ms: int = 30_000
    # A worker that stops heartbeating for this long has its unacked messages requeued.
    broker_heartbeat_timeout_ms: int = 15_000
    # Per million broker commands, how many also run the requeue-dead-workers check.
    broker_maintenance_chance: int = 50_000
    catalog_cache_seconds: float = 5.0
    # How long a web process keeps a customer's limits, plan and period for entitlement
    # checks at most: changes made through the API and pages reach every process within a
    # second (portal/entitlements/service.py `EntitlementBook.changed`); this bounds the rest
    # (a plan change scheduled for a later moment than the period's start).
    entitlement_cache_seconds: float = 300.0
    # Every process beats this often (portal/operations/heartbeats.py); one silent for 3 beats is not alive.
    heartbeat_seconds: float = 5.0
    # After a period ends, its draft waits this long for late events before it can be
    # approved (it shows as awaiting review from then on).
    invoice_grace: timedelta = timedelta(hours=24)
    # The review queue flags an invoice whose total moved more than this factor (up or
    # down) from the customer's previous period.
    review_change_factor: Decimal = Decimal(3)
    # Alerts. The portal's address, for links in notices.
    public_url: str = "http://127.0.0.1:8000"
    # The SMTP server email notices go through: smtp://user:pass@host:port?from=…&mode=…
    smtp_url: str | None = None
    # Where slack:// notices are posted (an egress proxy, or a local receiver in tests).
    slack_webhook_base: str = "https://hooks.slack.com/services"
    # Ingest triggers an evaluation this long after a customer's first new usage, so a
    # burst is evaluated once, within seconds of the crossing.
    alert_debounce_ms: int = 500
    # Delays between delivery attempts; after the last one a delivery is failed.
    alert_retry_delays_ms: tuple[int, ...] = (5_000, 30_000, 120_000, 600_000)
    # How long a worker owns a delivery it is sending; after that another may retry it.
    alert_lease_seconds: int = 60
    alert_send_timeout_s: float = 15.0
    # Outgoing billing webhooks (docs/webhooks.md): delays between attempts (1 min, 5 min,
    # 30 min, 2 h, 6 h, 12 h, 24 h: eight attempts over about 45 hours), then failed.
    webhook_retry_delays_ms: tuple[int, ...] = WEBHOOK_RETRY_DELAYS_MS
    webhook_send_timeout_s: float = 10.0
    # Forecasts wait until this much of the period has passed.
    forecast_min_elapsed: timedelta = timedelta(hours=1)
    # Networks alert destinations may reach although they are not public (loopback,
    # private…): PORTAL_DESTINATION_ALLOW_NETWORKS, CIDRs separated by commas. Empty: none.
    destination_allow_networks: AllowedNetworks = NO_NETWORKS
    # Reverse proxies whose X-Forwarded-For is believed (the sign-in limits count per
    # client address), as CIDR networks. Empty: the TCP peer is the client, whatever the
    # header says. (Strings, not ipaddress objects: Litestar's signature model reads this
    # dataclass through the `portal` dependency and refuses unions of custom types.)
    trusted_proxies: tuple[str, ...] = ()
    # Who issues the invoices, printed on every invoice and note (PDF and page). The
    # address keeps its lines (write them with "\n" or real newlines in the variable).
    issuer: Issuer = field(default_factory=Issuer)

    def __post_init__(self) -> None:
        if self.environment == "development" and not self.secret_key:
            object.__setattr__(self, "secret_key", development_secret_key(self.data_dir))
        self.check()
        # Readers handed only `secret_key` (alert channels, the workers) read values stored
        # under a previous key too, while a rotation is under way.
        register_previous_keys(self.secret_key, self.previous_secret_keys)

    @property
    def secret_keys(self) -> tuple[str, ...]:
        """The current key, then the previous ones: decrypt with any, encrypt with the first."""
        return (self.secret_key, *self.previous_secret_keys)

    def with_urls(self, *, database_url: str, redis_url: str, broker_url: str | None = None) -> Settings:
        return replace(self, database_url=database_url, redis_url=redis_url, broker_url=broker_url)

    @property
    def archive_path(self) -> Path:
        """The archive of raw events: PORTAL_ARCHIVE_DIR, else `<data_dir>/archive`."""
        return self.archive_dir or self.data_dir / "archive"

    @property
    def effective_broker_url(self) -> str | None:
        return self.broker_url or self.redis_url

    def check(self) -> None:
        """Raise SettingsError (naming the setting and the fix) for a key nothing may be
        signed with: empty, the old public placeholder, or shorter than 32 bytes. Outside
        development (PORTAL_ENV other than `development`) the key must be given."""
        if problem := secret_key_problem(self.secret_key):
            raise SettingsError(f"refusing to start (PORTAL_ENV={self.environment}): {problem}")
        if self.redis_url and is_cluster_url(self.redis_url) and not self.broker_url:
            # BROKER_URL defaults to REDIS_URL, and Dramatiq's Redis broker is not cluster-safe.
            raise SettingsError(
                "REDIS_URL names a Redis Cluster: set BROKER_URL to RabbitMQ (amqp://…) or to a "
                "standalone Redis (redis://…); the broker cannot run on a cluster"
            )


LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
LOG_FORMATS = ("json", "console")


def _check_environment(env: Mapping[str, str]) -> None:
    """The settings read elsewhere (logging) or used only later (the public URL in emailed
    links, the SMTP server at the first email), refused at start rather than at first use."""
    level = (env.get("PORTAL_LOG_LEVEL") or "INFO").strip()
    if level.upper() not in LOG_LEVELS:
        raise SettingsError(f"PORTAL_LOG_LEVEL must be one of {', '.join(LOG_LEVELS)}, got {level!r}")
    form = (env.get("PORTAL_LOG_FORMAT") or "json").strip()
    if form not in LOG_FORMATS:
        raise SettingsError(f"PORTAL_LOG_FORMAT must be json or console, got {form!r}")
    public = env.get("PORTAL_PUBLIC_URL", "")
    if public:
        parts = urlsplit(public)
        if parts.scheme not in ("http", "https") or not parts.hostname or parts.query or parts.fragment:
            raise SettingsError(
                f"PORTAL_PUBLIC_URL must be the portal's address, such as https://usage.example.com, "
                f"got {public!r}"
            )
    smtp = env.get("PORTAL_SMTP_URL", "")
    if smtp:
        from alerts.smtp import SmtpSettingsError, portal_smtp

        try:
            portal_smtp(smtp)
        except SmtpSettingsError as exc:
            raise SettingsError(f"PORTAL_SMTP_URL: {exc}") from None


def from_environment(*, data_dir: Path | None = None) -> Settings:
    """Settings from the environment; `data_dir` (a command's --data-dir) wins over
    PORTAL_DATA_DIR, and is the data dir whose key development uses."""
    env = os.environ
    _check_environment(env)
    return Settings(
        environment=env.get("PORTAL_ENV", "development"),
        secret_key=env.get("PORTAL_SECRET_KEY", ""),
        previous_secret_keys=tuple(
            k.strip() for k in env.get("PORTAL_SECRET_KEY_PREVIOUS", "").split(",") if k.strip()
        ),
        trusted_proxies=_networks("PORTAL_TRUSTED_PROXIES"),
        data_dir=data_dir or Path(env.get("PORTAL_DATA_DIR", ".portal-data")),
        database_url=env.get("DATABASE_URL") or None,
        redis_url=env.get("REDIS_URL") or None,
        broker_url=env.get("BROKER_URL") or None,
        database_read_url=env.get("DATABASE_READ_URL") or None,
        read_replica_max_lag_s=_seconds("DATABASE_READ_MAX_LAG_S", 30.0, least=0.0),
        accepted_lateness=timedelta(days=_int("PORTAL_ACCEPTED_LATENESS_DAYS", 35, least=1, most=3650)),
        raw_event_retention=_retention("PORTAL_RAW_EVENT_RETENTION_DAYS", 400),
        archive_dir=Path(env["PORTAL_ARCHIVE_DIR"]) if env.get("PORTAL_ARCHIVE_DIR") else None,
        dedup_marker_window=timedelta(minutes=_int("PORTAL_DEDUP_MARKER_MINUTES", 30, least=1, most=1440)),
        ingest_backlog_events=_int("PORTAL_INGEST_BACKLOG_EVENTS", 1_000_000, least=1),
        ingest_backlog_wait_s=_seconds("PORTAL_INGEST_BACKLOG_WAIT_S", 2.0, least=0.0),
        reconcile_interval=timedelta(seconds=_int("PORTAL_RECONCILE_SECONDS", 60, least=5, most=86_400)),
        persist_max_retries=_int("PORTAL_PERSIST_MAX_RETRIES", 12, most=1000),
        persist_min_backoff_ms=_int("PORTAL_PERSIST_MIN_BACKOFF_MS", 500, least=1, most=WEEK_MS),
        persist_max_backoff_ms=_int("PORTAL_PERSIST_MAX_BACKOFF_MS", 30_000, least=1, most=WEEK_MS),
        broker_heartbeat_timeout_ms=_int("PORTAL_BROKER_HEARTBEAT_MS", 15_000, least=1000, most=3_600_000),
        broker_maintenance_chance=_int("PORTAL_BROKER_MAINTENANCE_CHANCE", 50_000, least=1),
        invoice_grace=timedelta(hours=_int("PORTAL_INVOICE_GRACE_HOURS", 24, most=24 * 31)),
        review_change_factor=_decimal("PORTAL_REVIEW_CHANGE_FACTOR", Decimal(3)),
        public_url=env.get("PORTAL_PUBLIC_URL", "http://127.0.0.1:8000").rstrip("/"),
        smtp_url=env.get("PORTAL_SMTP_URL") or None,
        slack_webhook_base=env.get("PORTAL_SLACK_WEBHOOK_BASE", "https://hooks.slack.com/services"),
        alert_debounce_ms=_int("PORTAL_ALERT_DEBOUNCE_MS", 500, most=60_000),
        alert_retry_delays_ms=_ints("PORTAL_ALERT_RETRY_DELAYS_MS", (5_000, 30_000, 120_000, 600_000)),
        alert_lease_seconds=_int("PORTAL_ALERT_LEASE_SECONDS", 60, least=1, most=3600),
        alert_send_timeout_s=float(_int("PORTAL_ALERT_SEND_TIMEOUT_S", 15, least=1, most=600)),
        webhook_retry_delays_ms=_ints("PORTAL_WEBHOOK_RETRY_DELAYS_MS", WEBHOOK_RETRY_DELAYS_MS),
        webhook_send_timeout_s=float(_int("PORTAL_WEBHOOK_SEND_TIMEOUT_S", 10, least=1, most=600)),
        forecast_min_elapsed=timedelta(minutes=_int("PORTAL_FORECAST_MIN_ELAPSED_MINUTES", 60, most=44_640)),
        destination_allow_networks=_destination_networks(),
        catalog_cache_seconds=float(_int("PORTAL_CATALOG_CACHE_SECONDS", 5, most=3600)),
        entitlement_cache_seconds=_seconds("PORTAL_ENTITLEMENT_CACHE_SECONDS", 300.0, least=0.0),
        heartbeat_seconds=_seconds("PORTAL_HEARTBEAT_SECONDS", 5.0, least=0.1),
        issuer=_issuer(),
    )


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process's settings, read once. Tests build their own `Settings` instead."""
    return from_environment()
