"""Seed the benchmark database with millions of messages in SQL, and the fixtures every benchmark uses.

Rows come from ``generate_series`` in a few statements, with the secondary indexes and unique
constraints of ``messages`` and ``deliveries`` dropped during the load and rebuilt after it, and
foreign-key triggers off (``session_replication_role = replica``, which needs a superuser). The
hourly rollups are computed from the seeded deliveries, and the daily ones from them on the
dashboard's first read, so the dashboard's figures and a full scan of the same rows must agree.
"""

import logging
import time
from dataclasses import dataclass

from sqlalchemy import text

from bench import environment
from portal.extensions import db
from portal.models import ApiToken, Client, Clinic

log = logging.getLogger(__name__)

SEEDED_TABLES = ("messages", "deliveries")
SEED_DAYS = 60
CLINICS = 100
CLIENTS_PER_CLINIC = 2000
# The pet parent the inbox benchmark signs in as has a client record at this many clinics, so
# the inbox shows this many threads, each with its newest message.
INBOX_THREADS = 20
INBOX_NUMBER = "+15557000100"
THREAD_MESSAGES = 20
FIXTURE_PREFIX = "Bench fixture"


@dataclass(frozen=True)
class Fixtures:
    """Ids of the rows the benchmarks act on, created outside the seeded bulk."""

    twilio_clinic_id: int
    bandwidth_clinic_id: int
    inbox_client_id: int
    thread_client_id: int


def seeded_count():
    """Return how many messages the last complete seed wrote, or 0."""
    exists = db.session.execute(text("SELECT to_regclass('bench_seed_info')")).scalar()
    if exists is None:
        return 0
    return db.session.execute(text("SELECT coalesce(max(messages), 0) FROM bench_seed_info")).scalar()


def seed(messages):
    """Replace the seeded bulk with ``messages`` messages and their deliveries and rollups; return seconds."""
    started = time.monotonic()
    connection = db.session.connection()
    connection.execute(text("SET session_replication_role = replica"))
    connection.execute(text("SET maintenance_work_mem = '512MB'"))
    _truncate(connection)
    saved = _drop_secondary_indexes(connection)
    _insert_clinics_and_clients(connection)
    _insert_messages(connection, messages)
    _insert_deliveries(connection)
    _restore_indexes(connection, saved)
    _insert_rollups(connection)
    _reset_sequences(connection)
    connection.execute(text("CREATE TABLE IF NOT EXISTS bench_seed_info (messages bigint, seeded_at timestamptz)"))
    connection.execute(text("INSERT INTO bench_seed_info VALUES (:count, now())"), {"count": messages})
    connection.execute(text("SET session_replication_role = origin"))
    db.session.commit()
    # Vacuumed as well as analyzed, since the benchmark machine's PostgreSQL may run without
    # autovacuum: the new rows are then marked visible to all, as in a database that has run a while.
    tables = ", ".join((*SEEDED_TABLES, "clients", "sms_hourly_stats"))
    with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        connection.execute(text(f"VACUUM (ANALYZE) {tables}"))
    return time.monotonic() - started


def _truncate(connection):
    # Every table that refers to messages or clients goes too; the fixtures are created again after.
    connection.execute(
        text(
            "TRUNCATE messages, deliveries, clients, clinics, provider_events, sms_hourly_stats, "
            "sms_daily_stats, sms_closed_days, sms_fleet_hourly_stats, sms_rollup_marks, "
            "portal_tokens, attachments, api_tokens, idempotency_keys, staff_users RESTART IDENTITY CASCADE"
        )
    )
    connection.execute(text("DROP TABLE IF EXISTS bench_seed_info"))


def _drop_secondary_indexes(connection):
    """Drop the non-primary indexes and unique constraints of the seeded tables; return how to rebuild them."""
    saved = []
    for table in SEEDED_TABLES:
        constraints = connection.execute(
            text(
                "SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint "
                "WHERE conrelid = CAST(:table AS regclass) AND contype = 'u'"
            ),
            {"table": table},
        ).all()
        for name, definition in constraints:
            connection.execute(text(f'ALTER TABLE {table} DROP CONSTRAINT "{name}"'))
            saved.append(f'ALTER TABLE {table} ADD CONSTRAINT "{name}" {definition}')
        indexes = connection.execute(
            text(
                "SELECT i.relname, pg_get_indexdef(i.oid) FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid "
                "WHERE x.indrelid = CAST(:table AS regclass) "
                "AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = x.indexrelid)"
            ),
            {"table": table},
        ).all()
        for name, definition in indexes:
            connection.execute(text(f'DROP INDEX "{name}"'))
            saved.append(definition)
    return saved


def _restore_indexes(connection, saved):
    for statement in saved:
        connection.execute(text(statement))


def _insert_clinics_and_clients(connection):
    # Odd clinics use Twilio and even ones Bandwidth; clinic n's clients have ids
    # (n - 1) * CLIENTS_PER_CLINIC + 1 ... n * CLIENTS_PER_CLINIC.
    connection.execute(
        text(
            """
            INSERT INTO clinics (id, name, provider, sender_number, country, fallback_enabled, mms_enabled,
                                 provider_handles_keywords, timezone, twilio_account_sid, twilio_auth_token,
                                 bandwidth_account_id, bandwidth_username, bandwidth_password,
                                 bandwidth_application_id, webhook_username, webhook_password, created_at)
            SELECT n, 'Bench Clinic ' || n,
                   CASE WHEN n % 2 = 1 THEN 'twilio' ELSE 'bandwidth' END,
                   '+1555800' || lpad(n::text, 4, '0'), 'US', n % 2 = 0, false, n % 2 = 1, 'America/New_York',
                   CASE WHEN n % 2 = 1 THEN :sid END, CASE WHEN n % 2 = 1 THEN :token END,
                   CASE WHEN n % 2 = 0 THEN '99' || lpad(n::text, 5, '0') END,
                   CASE WHEN n % 2 = 0 THEN 'bw-api-user' END, CASE WHEN n % 2 = 0 THEN 'bw-api-password' END,
                   CASE WHEN n % 2 = 0 THEN 'bench-app-' || n END,
                   CASE WHEN n % 2 = 0 THEN :webhook_user END, CASE WHEN n % 2 = 0 THEN :webhook_password END,
                   now() - interval '400 days'
            FROM generate_series(1, :clinics) AS n
            """
        ),
        {
            "clinics": CLINICS,
            "sid": environment.TWILIO_SID,
            "token": environment.TWILIO_TOKEN,
            "webhook_user": environment.WEBHOOK_USER,
            "webhook_password": environment.WEBHOOK_PASSWORD,
        },
    )
    connection.execute(
        text(
            """
            INSERT INTO clients (id, clinic_id, name, mobile_number, textable, email_enabled, push_enabled,
                                 session_version, created_at)
            SELECT n, (n - 1) / :per_clinic + 1, 'Client ' || n, '+1555' || lpad(n::text, 7, '0'),
                   true, false, false, 1, now() - interval '400 days'
            FROM generate_series(1, :clients) AS n
            """
        ),
        {"per_clinic": CLIENTS_PER_CLINIC, "clients": CLINICS * CLIENTS_PER_CLINIC},
    )


def _insert_messages(connection, messages):
    # Message ids grow with time over SEED_DAYS, ending an hour ago; every 20th is a client's reply.
    connection.execute(
        text(
            """
            INSERT INTO messages (id, clinic_id, client_id, direction, body, source, created_at)
            SELECT g,
                   ((g::bigint * 7919) % :clients) / :per_clinic + 1,
                   ((g::bigint * 7919) % :clients) + 1,
                   CASE WHEN g % 20 = 0 THEN 'inbound' ELSE 'outbound' END,
                   'Bench reminder ' || g,
                   CASE WHEN g % 20 = 0 THEN 'client' ELSE 'api' END,
                   (now() at time zone 'utc') - interval '1 hour'
                       - (:messages - g) * (interval '1 day' * :days / :messages)
            FROM generate_series(1, :messages) AS g
            """
        ),
        {"clients": CLINICS * CLIENTS_PER_CLINIC, "per_clinic": CLIENTS_PER_CLINIC, "messages": messages, "days": SEED_DAYS},
    )


# Outcome of the SMS delivery of outbound message g, by (g * 31) % 100: the share of each
# outcome roughly follows the demo's history, with 3 % filtered by carriers.
SMS_OUTCOMES = """
    CASE WHEN b < 90 THEN 'delivered' WHEN b < 93 THEN 'undelivered' WHEN b < 95 THEN 'undelivered'
         WHEN b < 96 THEN 'failed' WHEN b < 97 THEN 'unknown' WHEN b < 98 THEN 'suppressed'
         ELSE 'undelivered' END
"""
SMS_CATEGORIES = """
    CASE WHEN b < 90 THEN NULL WHEN b < 93 THEN 'carrier_filtered' WHEN b < 95 THEN 'landline'
         WHEN b < 96 THEN 'invalid_number' WHEN b < 97 THEN NULL WHEN b < 98 THEN 'opted_out'
         ELSE 'blocked' END
"""
SMS_CODES = """
    CASE WHEN b < 90 OR (b >= 96 AND b < 98) THEN NULL
         WHEN provider = 'twilio' THEN (CASE WHEN b < 93 THEN '30007' WHEN b < 95 THEN '30006'
                                             WHEN b < 96 THEN '30005' ELSE '30004' END)
         ELSE (CASE WHEN b < 93 THEN '4770' WHEN b < 95 THEN '4720' WHEN b < 96 THEN '4721' ELSE '4772' END) END
"""


def _insert_deliveries(connection):
    # Outbound message g gets SMS delivery 2g - 1 and portal copy 2g; replies get none.
    connection.execute(
        text(
            f"""
            INSERT INTO deliveries (id, message_id, channel, status, status_rank, provider, provider_message_id,
                                    error_code, category, attempts, max_attempts, chat_notification,
                                    claimed_at, final_at, created_at, updated_at)
            SELECT 2 * m.id - 1, m.id, 'sms', {SMS_OUTCOMES}, 4, provider,
                   CASE WHEN b = 97 THEN NULL ELSE 'SMbench' || m.id END, {SMS_CODES}, {SMS_CATEGORIES},
                   1, 4, false, m.created_at, m.created_at + interval '5 seconds', m.created_at,
                   m.created_at + interval '5 seconds'
            FROM (SELECT messages.*, (id * 31) % 100 AS b,
                         CASE WHEN clinic_id % 2 = 1 THEN 'twilio' ELSE 'bandwidth' END AS provider
                  FROM messages WHERE direction = 'outbound') AS m
            """
        )
    )
    connection.execute(
        text(
            """
            INSERT INTO deliveries (id, message_id, channel, status, status_rank, attempts, max_attempts,
                                    chat_notification, read_at, final_at, created_at, updated_at)
            SELECT 2 * id, id, 'portal', 'delivered', 4, 0, 1, (id * 31) % 100 BETWEEN 90 AND 92,
                   CASE WHEN id % 5 = 0 THEN NULL ELSE created_at + interval '1 hour' END,
                   created_at, created_at, created_at
            FROM messages WHERE direction = 'outbound'
            """
        )
    )


def _insert_rollups(connection):
    connection.execute(
        text(
            """
            INSERT INTO sms_hourly_stats (clinic_id, hour, outcome, category, count)
            SELECT m.clinic_id, date_trunc('hour', d.final_at),
                   CASE WHEN d.status IN ('undelivered', 'failed') THEN 'failed' ELSE d.status END,
                   coalesce(d.category, ''), count(*)
            FROM deliveries d JOIN messages m ON m.id = d.message_id
            WHERE d.channel = 'sms'
            GROUP BY 1, 2, 3, 4
            """
        )
    )


def _reset_sequences(connection):
    for table in ("clinics", "clients", "messages", "deliveries", "sms_hourly_stats"):
        connection.execute(
            text(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), coalesce((SELECT max(id) FROM {table}), 0) + 1, false)")
        )


def ensure_fixtures():
    """Create (once) the clinics, API token and pet parent the benchmarks use; return their ids."""
    twilio = _fixture_clinic("twilio")
    bandwidth = _fixture_clinic("bandwidth")
    token_hash = ApiToken.hash(environment.API_TOKEN)
    if db.session.execute(db.select(ApiToken).where(ApiToken.token_hash == token_hash)).scalar_one_or_none() is None:
        row, _raw = ApiToken.issue(twilio, "Benchmark PIMS", raw=environment.API_TOKEN)
        db.session.add(row)
    inbox_clients = _inbox_person()
    db.session.commit()
    return Fixtures(twilio.id, bandwidth.id, inbox_clients[0].id, inbox_clients[0].id)


def _fixture_clinic(provider):
    name = f"{FIXTURE_PREFIX} {provider}"
    clinic = db.session.execute(db.select(Clinic).where(Clinic.name == name)).scalar_one_or_none()
    if clinic is not None:
        return clinic
    clinic = Clinic(
        name=name,
        provider=provider,
        sender_number="+15559990001" if provider == "twilio" else "+15559990002",
        fallback_enabled=True,
        provider_handles_keywords=provider == "twilio",
    )
    if provider == "twilio":
        clinic.twilio_account_sid = environment.TWILIO_SID
        clinic.twilio_auth_token = environment.TWILIO_TOKEN
    else:
        clinic.bandwidth_account_id = "9999999"
        clinic.bandwidth_username = "bw-api-user"
        clinic.bandwidth_password = "bw-api-password"
        clinic.bandwidth_application_id = "bench-app-fixture"
        clinic.webhook_username = environment.WEBHOOK_USER
        clinic.webhook_password = environment.WEBHOOK_PASSWORD
    db.session.add(clinic)
    db.session.flush()
    return clinic


def _inbox_person():
    """Return the inbox pet parent's client records, one per seeded clinic, each with a thread.

    The first record's thread has THREAD_MESSAGES messages; the others have one each.
    """
    records = db.session.execute(
        db.select(Client).where(Client.mobile_number == INBOX_NUMBER).order_by(Client.id)
    ).scalars().all()
    if records:
        return records
    connection = db.session.connection()
    for clinic_id in range(1, INBOX_THREADS + 1):
        client_id = connection.execute(
            text(
                "INSERT INTO clients (clinic_id, name, mobile_number, textable, email_enabled, push_enabled, "
                "session_version, created_at) VALUES (:clinic, 'Inbox Parent', :number, true, false, false, 1, now()) "
                "RETURNING id"
            ),
            {"clinic": clinic_id, "number": INBOX_NUMBER},
        ).scalar_one()
        count = THREAD_MESSAGES if clinic_id == 1 else 1
        for index in range(count):
            message_id = connection.execute(
                text(
                    "INSERT INTO messages (clinic_id, client_id, direction, body, source, created_at) "
                    "VALUES (:clinic, :client, 'outbound', :body, 'api', now() - make_interval(mins => :age)) RETURNING id"
                ),
                {"clinic": clinic_id, "client": client_id, "body": f"Thread message {index + 1}: Bella is due for her vaccines.", "age": 60 * (count - index)},
            ).scalar_one()
            connection.execute(
                text(
                    "INSERT INTO deliveries (message_id, channel, status, status_rank, attempts, max_attempts, "
                    "chat_notification, read_at, final_at, created_at, updated_at) "
                    "VALUES (:message, 'portal', 'delivered', 4, 0, 1, false, NULL, now(), now(), now())"
                ),
                {"message": message_id},
            )
    db.session.flush()
    return db.session.execute(
        db.select(Client).where(Client.mobile_number == INBOX_NUMBER).order_by(Client.id)
    ).scalars().all()


def database_size():
    """Return the benchmark database's size as PostgreSQL reports it, such as '7 GB'."""
    return db.session.execute(text("SELECT pg_size_pretty(pg_database_size(current_database()))")).scalar()
