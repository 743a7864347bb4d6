"""Shared state of a benchmark run (settings, in-process app, started processes, fixtures) and its helpers."""

import os
import time
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import text
from sqlalchemy.exc import IntegrityError

from bench import environment, seed
from portal.extensions import db


@dataclass
class Run:
    settings: environment.Settings
    app: object
    processes: environment.Processes
    fixtures: object
    # Length of each sustained measurement, in seconds; the goals use 60 for the send pipeline.
    duration: float
    # Length of each HTTP load run, in seconds.
    http_seconds: float
    profile: bool = False

    @property
    def run_dir(self):
        return self.settings.run_dir


def row_marker():
    """Return the highest message and delivery ids now, so rows a benchmark adds can be removed after it."""
    with_ids = db.session.execute(
        text("SELECT coalesce(max(id), 0) FROM messages UNION ALL SELECT coalesce(max(id), 0) FROM deliveries")
    ).scalars().all()
    return tuple(with_ids)


# The tables a benchmark adds rows to and discard_rows_after deletes them from.
VACUUMED_TABLES = ("messages", "deliveries", "provider_events", "portal_tokens", "attachments", "sms_hourly_stats")


def vacuum():
    """Vacuum and analyze the tables benchmarks write to, as autovacuum would in production.

    PostgreSQL on the benchmark machine may run with autovacuum off. Deleted rows then stay in
    the indexes, and planning any join of messages and deliveries walks past them at the ends of
    the id indexes, which made later benchmarks slower than a maintained database would be.
    """
    with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        connection.execute(text(f"VACUUM (ANALYZE) {', '.join(VACUUMED_TABLES)}"))


def discard_rows_after(marker):
    """Delete the messages and deliveries (and rows that refer to them) added after ``marker``."""
    message_id, delivery_id = marker
    params = {"message": message_id, "delivery": delivery_id, "seeded_clinics": seed.CLINICS}
    statements = [
        "DELETE FROM provider_events WHERE delivery_id > :delivery",
        "DELETE FROM portal_tokens WHERE message_id > :message",
        "DELETE FROM attachments WHERE message_id > :message",
        "DELETE FROM deliveries WHERE id > :delivery OR message_id > :message",
        "DELETE FROM messages WHERE id > :message",
        # Texts the benchmarks settle are counted in their clinic's rollup; the seeded clinics
        # come first, so the rows of later clinics are all benchmark residue.
        "DELETE FROM sms_hourly_stats WHERE clinic_id > :seeded_clinics",
        "DELETE FROM sms_daily_stats WHERE clinic_id > :seeded_clinics",
        # The sums across clinics may contain such rows too; the next read sums them again.
        "DELETE FROM sms_fleet_hourly_stats",
        "DELETE FROM sms_rollup_marks",
    ]
    # A request or job still finishing can add a row that refers to one being deleted, so a
    # failed pass is retried once it had time to end.
    for attempt in range(5):
        try:
            for statement in statements:
                db.session.execute(text(statement), params)
            db.session.commit()
            vacuum()
            return
        except IntegrityError:
            db.session.rollback()
            time.sleep(1 + attempt)
    raise RuntimeError(f"Could not remove the rows added after messages {message_id} and deliveries {delivery_id}.")


def cpu_seconds(pid):
    """Return the user plus system CPU seconds a process has used, from /proc/<pid>/stat."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    # utime and stime are fields 14 and 15 of stat(5); index 0 here is field 3.
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def machine_cpu_seconds():
    """Return the busy CPU seconds of the whole machine so far (every core), from /proc/stat."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = values[3] + values[4]
    return (sum(values[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def wait_until(predicate, timeout, interval=0.1):
    """Poll ``predicate`` until it is true or ``timeout`` seconds pass; return its last value."""
    deadline = time.monotonic() + timeout
    value = predicate()
    while not value and time.monotonic() < deadline:
        time.sleep(interval)
        value = predicate()
    return value
