"""Store many outbound texts in a few statements and queue them with one fan-out job.

Creating 1,000 messages one by one costs an ORM flush per row and an RQ enqueue per job, about
a second in all. Here the clients, messages and deliveries of a batch are written with one
multi-row INSERT each, and the request queues a single ``enqueue_batch_sends`` job that a
worker turns into send jobs of ``PAWPOST_SEND_CONCURRENCY`` texts each. Every delivery is committed
before that job is queued, so a lost fan-out job loses nothing: the reconciler queues stalled
deliveries again.
"""

import logging
from dataclasses import dataclass

import redis
from flask import current_app
from rq import Queue
from sqlalchemy import bindparam, text
from sqlalchemy.dialects import postgresql, sqlite

from notifier import queues
from notifier.sending import store_message
from portal.extensions import db
from portal.models import FINAL_RANK, Client, Delivery, Message, utcnow
from portal.models.types import UTCDateTime

log = logging.getLogger(__name__)

MAX_BATCH_MESSAGES = 1000


@dataclass(frozen=True)
class BatchItem:
    """One text of a batch, already validated: an E.164 number and a stripped body."""

    to: str
    body: str


@dataclass(frozen=True)
class StoredText:
    message_id: int
    client_id: int
    to: str
    sms_delivery_id: int


def store_batch(clinic, items, source="api", send_at=None):
    """Add a message with its SMS delivery and portal copy for each item, flushed but not committed.

    Clients are found or created by number. A client who turned on email or push takes the
    one-by-one path (``sending.store_message``), which adds those channels' deliveries too.
    Returns a StoredText per item, in order.
    """
    clients = _clients_by_number(clinic, sorted({item.to for item in items}))
    bulk = [(index, item) for index, item in enumerate(items) if not clients[item.to].needs_notifications]
    stored = [None] * len(items)

    client_ids = [clients[item.to].id for _index, item in bulk]
    bodies = [item.body for _index, item in bulk]
    insert_rows = _insert_postgresql if db.session.get_bind().dialect.name == "postgresql" else _insert_orm
    message_ids, sms_ids = insert_rows(clinic, client_ids, bodies, source, send_at, utcnow())
    for position, (index, item) in enumerate(bulk):
        stored[index] = StoredText(message_ids[position], client_ids[position], item.to, sms_ids[position])

    for index, item in enumerate(items):
        if stored[index] is None:
            client = db.session.get(Client, clients[item.to].id)
            message = store_message(client, item.body, source, send_at=send_at)
            stored[index] = StoredText(message.id, client.id, item.to, message.delivery("sms").id)
    return stored


@dataclass(frozen=True)
class _ClientRef:
    id: int
    needs_notifications: bool


def _clients_by_number(clinic, numbers):
    """Return ``{e164: _ClientRef}`` for every number, creating the clients the clinic does not have yet."""
    found = _select_clients(clinic, numbers)
    missing = [number for number in numbers if number not in found]
    if missing:
        insert_into = postgresql.insert if db.session.get_bind().dialect.name == "postgresql" else sqlite.insert
        db.session.execute(
            insert_into(Client)
            .values([{"clinic_id": clinic.id, "mobile_number": number, "name": "", "created_at": utcnow()} for number in missing])
            # A concurrent request may create the same client; its row is used then.
            .on_conflict_do_nothing(index_elements=["clinic_id", "mobile_number"])
        )
        found.update(_select_clients(clinic, missing))
    return found


def _select_clients(clinic, numbers):
    rows = db.session.execute(
        db.select(Client.mobile_number, Client.id, Client.email_enabled, Client.push_enabled).where(
            Client.clinic_id == clinic.id, Client.mobile_number.in_(numbers)
        )
    ).all()
    return {number: _ClientRef(client_id, bool(email or push)) for number, client_id, email, push in rows}


def _insert_postgresql(clinic, client_ids, bodies, source, send_at, now):
    """Insert the messages, SMS deliveries and portal copies with one statement each; return their ids.

    Each statement reads its rows from arrays (``unnest``), so its text stays small whatever the
    batch size, and the ids are drawn from the sequences first so they pair with the inputs.
    """
    count = len(client_ids)
    if not count:
        return [], []
    message_ids = _next_ids("messages", count)
    delivery_ids = _next_ids("deliveries", 2 * count)
    times = [bindparam("now", type_=UTCDateTime()), bindparam("send_at", type_=UTCDateTime())]
    values = {"now": now, "send_at": send_at, "clinic": clinic.id, "source": source}
    db.session.execute(
        text(
            "INSERT INTO messages (id, clinic_id, client_id, direction, body, source, send_at, created_at) "
            "SELECT id, :clinic, client_id, 'outbound', body, :source, :send_at, :now "
            "FROM unnest(CAST(:ids AS integer[]), CAST(:client_ids AS integer[]), CAST(:bodies AS text[])) "
            "AS rows (id, client_id, body)"
        ).bindparams(*times),
        {**values, "ids": message_ids, "client_ids": client_ids, "bodies": bodies},
    )
    db.session.execute(
        text(
            "INSERT INTO deliveries (id, message_id, channel, status, status_rank, provider, attempts, max_attempts, "
            "next_attempt_at, chat_notification, final_at, created_at, updated_at) "
            "SELECT id, message_id, channel, status, status_rank, provider, 0, max_attempts, next_attempt_at, false, "
            "final_at, :now, :now FROM ("
            "  SELECT id, message_id, 'sms' AS channel, 'queued' AS status, 0 AS status_rank, "
            "         CAST(:provider AS varchar) AS provider, :max_attempts AS max_attempts, "
            "         :send_at AS next_attempt_at, CAST(NULL AS timestamp) AS final_at "
            "  FROM unnest(CAST(:sms_ids AS integer[]), CAST(:message_ids AS integer[])) AS sms (id, message_id) "
            "  UNION ALL "
            "  SELECT id, message_id, 'portal', 'delivered', :final_rank, NULL, 1, NULL, :now "
            "  FROM unnest(CAST(:portal_ids AS integer[]), CAST(:message_ids AS integer[])) AS portal (id, message_id)"
            ") AS rows"
        ).bindparams(*times),
        {
            **values,
            "sms_ids": delivery_ids[:count],
            "portal_ids": delivery_ids[count:],
            "message_ids": message_ids,
            "provider": clinic.provider,
            "max_attempts": current_app.config["PAWPOST_SMS_MAX_ATTEMPTS"],
            "final_rank": FINAL_RANK,
        },
    )
    return message_ids, delivery_ids[:count]


def _next_ids(table, count):
    return db.session.execute(
        text("SELECT nextval(pg_get_serial_sequence(:table, 'id')) FROM generate_series(1, :count)"),
        {"table": table, "count": count},
    ).scalars().all()


def _insert_orm(clinic, client_ids, bodies, source, send_at, now):
    """Insert the rows through the ORM, for databases other than PostgreSQL (SQLite in development)."""
    messages = [
        Message(clinic_id=clinic.id, client_id=client_id, body=body, source=source, send_at=send_at, created_at=now)
        for client_id, body in zip(client_ids, bodies, strict=True)
    ]
    db.session.add_all(messages)
    db.session.flush()
    sms = [
        Delivery(
            message_id=message.id, channel="sms", provider=clinic.provider, next_attempt_at=send_at,
            max_attempts=current_app.config["PAWPOST_SMS_MAX_ATTEMPTS"], created_at=now, updated_at=now,
        )
        for message in messages
    ]
    portal = [
        Delivery(message_id=message.id, channel="portal", status="delivered", status_rank=FINAL_RANK, final_at=now)
        for message in messages
    ]
    db.session.add_all([*sms, *portal])
    db.session.flush()
    return [message.id for message in messages], [delivery.id for delivery in sms]


def enqueue_batch(stored, at=None):
    """Queue the fan-out job for the SMS deliveries of a committed batch; return False when Redis is unreachable."""
    delivery_ids = [text.sms_delivery_id for text in stored]
    job_id = f"batch-{delivery_ids[0]}-{len(delivery_ids)}"
    try:
        queue = queues.queue("sms")
        if at is None or at <= utcnow():
            # At the front, so its send jobs join the queue before a backlog drains.
            queue.enqueue("notifier.batch.enqueue_batch_sends", delivery_ids, job_id=job_id, result_ttl=600, at_front=True)
        else:
            queue.enqueue_at(at, "notifier.batch.enqueue_batch_sends", delivery_ids, job_id=job_id, result_ttl=600)
    except redis.exceptions.RedisError as exc:
        log.warning("Could not queue batch %s of %s texts (%s); the reconciler will queue them.", job_id, len(delivery_ids), exc)
        return False
    return True


def enqueue_batch_sends(delivery_ids):
    """Queue the SMS deliveries of a batch as send jobs of up to ``PAWPOST_SEND_CONCURRENCY`` texts; return the count.

    A job as large as a worker's send threads makes all its provider calls at once, so a slow
    provider costs each job one wait, not one per round of threads. A job's fixed cost in RQ and
    PostgreSQL is shared by its texts, and a worker that dies mid-job leaves at most this many
    sends for the reconciler to look up.

    Each delivery also gets a key naming its job, so the reconciler can tell that it is still
    queued, as it does for a delivery with its own send job.
    """
    size = current_app.config["PAWPOST_SEND_CONCURRENCY"]
    chunks = [delivery_ids[start : start + size] for start in range(0, len(delivery_ids), size)]
    jobs = [
        Queue.prepare_data(
            queues.BATCH_SEND_JOB,
            (chunk,),
            job_id=f"send-batch-{chunk[0]}-{len(chunk)}",
            result_ttl=600,
            failure_ttl=7 * 24 * 3600,
        )
        for chunk in chunks
    ]
    with queues.connection().pipeline() as pipeline:
        for chunk, job in zip(chunks, jobs):
            for delivery_id in chunk:
                pipeline.set(queues.batch_job_key(delivery_id), job.job_id, ex=queues.BATCH_JOB_KEY_SECONDS)
        queues.queue("sms").enqueue_many(jobs, pipeline=pipeline)
        pipeline.execute()
    log.info("Queued %s texts of a batch in %s send jobs, starting with delivery %s.", len(delivery_ids), len(jobs), delivery_ids[0])
    return len(delivery_ids)
