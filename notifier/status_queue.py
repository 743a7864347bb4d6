"""Provider status events queued in a Redis stream by the web processes and applied in batches by the workers.

The webhook returns 200 once the callback's signature is checked and its event is in the stream,
so the web process does no database work for it. Each worker runs an applier thread that reads the
stream as one consumer of a group and applies up to ``BATCH_SIZE`` events in one transaction.
On PostgreSQL, the events that move a delivery forward (nearly all of them) take one statement,
``status.move_in_one_statement``. Every other event goes through ``status.apply_in_session`` in
arrival order.

Between the webhook and the database:

- An event stays in the stream until its batch has committed. A worker that dies mid-batch
  leaves its events pending, and another applier claims them after ``CLAIM_IDLE_MS``.
- Applying an event twice stores a second copy and moves nothing, as for a provider's duplicate.
- When Redis cannot take the event, the web process applies it itself, as before the queue.
  A Redis that takes it but answers after the client's timeout gets it applied twice. The second
  copy is stored as a duplicate and moves nothing.
- An event that fails while other events of the same pass apply is logged and moved to
  ``FAILED_STREAM``, so it does not hold up the events behind it. When every event fails, as
  with an unreachable or read-only database, they stay queued and the applier tries again.
- A Redis restart without persistence loses the events still queued. Deploy Redis append-only
  (docs/deploy.md). The reconciler looks up at the provider each text whose receipt never came.
"""

import json
import logging
import os
import socket
import threading
import time
from collections import Counter
from datetime import datetime
from typing import NamedTuple

import redis
from flask import current_app
from sqlalchemy.exc import DBAPIError, OperationalError

from notifier import metrics, queues
from notifier.failures import FailureLog, error_name
from notifier.status import Move, StatusEvent, apply_in_session, can_move_in_one_statement, map_status, move_in_one_statement
from portal.extensions import db
from portal.models import FINAL_RANK, STATUS_RANK, utcnow

log = logging.getLogger(__name__)

STREAM = "pawpost:status-events"
GROUP = "appliers"
FAILED_STREAM = "pawpost:status-events:failed"
# Events applied in one transaction. Larger batches share the commit among more events.
BATCH_SIZE = 500
# An event read by an applier that has not acknowledged it for this long is claimed by another.
CLAIM_IDLE_MS = 30_000
# How often each applier looks for such events, and for consumers of stopped workers to forget.
CLAIM_EVERY_SECONDS = 10
# After a batch smaller than BATCH_SIZE, an applier waits this long for more events. Under load,
# batches grow and the work per event shrinks. A waiting applier still reads the first new event at once.
LINGER_SECONDS = 0.02
# A consumer with nothing pending and idle this long belonged to a stopped worker.
FORGET_CONSUMER_MS = 24 * 3600 * 1000
# The SQLSTATE of a write in a read-only transaction.
READ_ONLY_SQLSTATE = "25006"


def enabled():
    return current_app.config["PAWPOST_QUEUE_STATUS_EVENTS"]


def push(clinic_id, events):
    """Add ``events`` of ``clinic_id`` to the stream, all or none; return False when Redis did not take them."""
    received_at = utcnow().isoformat()
    fields = [{"event": _encode(clinic_id, event, received_at)} for event in events]
    try:
        if len(fields) == 1:
            queues.connection().xadd(STREAM, fields[0])
        else:
            with queues.connection().pipeline(transaction=True) as pipeline:
                for entry in fields:
                    pipeline.xadd(STREAM, entry)
                pipeline.execute()
    except redis.exceptions.RedisError as exc:
        log.warning("Could not queue %s status event(s) of clinic %s (%s); applying them now.", len(fields), clinic_id, exc)
        return False
    return True


def _encode(clinic_id, event, received_at):
    return json.dumps(
        {
            "clinic_id": clinic_id,
            "provider": event.provider,
            "provider_status": event.provider_status,
            "provider_message_id": event.provider_message_id,
            "error_code": event.error_code,
            "delivery_id": event.delivery_id,
            "attempt": event.attempt,
            "payload": event.payload,
            "received_at": received_at,
        },
        separators=(",", ":"),
    )


class QueuedEvent:
    """An event read from the stream: its stream id, clinic, arrival time and the event itself."""

    __slots__ = ("entry_id", "clinic_id", "received_at", "event", "status")

    def __init__(self, entry_id, data):
        self.entry_id = entry_id
        self.clinic_id = int(data["clinic_id"])
        self.received_at = datetime.fromisoformat(data["received_at"])
        self.event = StatusEvent(
            provider=data["provider"],
            provider_status=data["provider_status"],
            provider_message_id=data["provider_message_id"],
            error_code=data["error_code"],
            delivery_id=data["delivery_id"],
            attempt=data["attempt"],
            payload=data["payload"],
        )
        self.status = map_status(self.event.provider, self.event.provider_status)


# Applying -----------------------------------------------------------------------------------


class ApplyingFailed(RuntimeError):
    """Every event of a pass failed, so the cause is likely the database, not the events."""


def apply_entries(entries):
    """Apply stream ``entries`` (``[(entry_id, fields)]``) and acknowledge them; return how many were applied.

    One transaction applies the batch. When it fails, each event is applied on its own. An event
    that fails while others of the pass apply is set aside, so it cannot hold up the rest. When
    every event fails, or the database is unreachable or read-only, nothing is set aside: the
    events stay pending and the applier tries again (``ApplyingFailed`` or the database error is
    raised).
    """
    if not entries:
        return 0
    events = []
    for entry_id, fields in entries:
        try:
            events.append(QueuedEvent(_text(entry_id), json.loads(fields[b"event"])))
        except (KeyError, ValueError, TypeError):
            _set_aside(entry_id, fields, "it is not a status event")
    if not events:
        return 0
    try:
        followups, moved_rows = _apply_batch(events)
    except Exception as exc:
        db.session.rollback()
        if _database_at_fault(exc):
            raise
        return _apply_one_by_one(events, exc)
    _after_commit(followups, moved_rows, [queued.entry_id for queued in events])
    return len(events)


def _database_at_fault(exc):
    """Return True when ``exc`` shows the database, not the event, is at fault: unreachable or read-only."""
    if isinstance(exc, OperationalError):
        return True
    # A standby, or a database set read-only.
    return getattr(getattr(exc, "orig", None), "sqlstate", None) == READ_ONLY_SQLSTATE


def _apply_one_by_one(events, batch_error):
    applied, failed = 0, []
    for queued in events:
        try:
            followups, moved_rows = _apply_batch([queued])
        except Exception as exc:
            db.session.rollback()
            if _database_at_fault(exc):
                raise
            failed.append((queued, exc))
            continue
        _after_commit(followups, moved_rows, [queued.entry_id])
        applied += 1
    if failed and not applied:
        queued, exc = failed[-1]
        raise ApplyingFailed(f"All {len(failed)} status events failed, the last with {error_name(exc)}; they stay queued.")
    if failed:
        # Logged only when some events applied: when none do, the applier's FailureLog reports it.
        log.warning(
            "A batch of %s status events failed (%s): %s applied one by one, %s set aside.",
            len(events), error_name(batch_error), applied, len(failed),
        )
    for queued, exc in failed:
        # Only the exception's class: database errors quote the statement's values, phone numbers included.
        log.error("Status event %s of clinic %s could not be applied (%s).", queued.entry_id, queued.clinic_id, error_name(exc))
        _set_aside(queued.entry_id, {b"event": _encode(queued.clinic_id, queued.event, queued.received_at.isoformat())}, "applying it failed")
    return applied


def _after_commit(followups, moved_rows, entry_ids):
    queues.enqueue_followups(followups)
    # Counted after the commit, so a batch retried event by event counts each delivery once.
    for row in moved_rows:
        if STATUS_RANK[row.status] >= FINAL_RANK:
            metrics.FINAL_DELIVERIES.labels(row.channel, row.status, "").inc()
    _acknowledge(entry_ids)


def _apply_batch(events):
    """Apply ``events`` in one transaction and commit it; return the follow-ups and the rows moved in bulk."""
    now = utcnow()
    moved_rows = []
    if db.engine.dialect.name == "postgresql":
        candidates = [queued for queued in events if can_move_in_one_statement(queued.event, queued.status)]
        moved_rows = _move_many(candidates, events, now)
    moved = {row.entry_id for row in moved_rows}
    followups = []
    for queued in events:
        if queued.entry_id not in moved:
            followups.extend(apply_in_session(queued.clinic_id, queued.event, queued.received_at))
    db.session.commit()
    return followups, moved_rows


class MovedRow(NamedTuple):
    """A delivery the one statement moved, with the stream entry of its event."""

    entry_id: str
    id: int
    channel: str
    status: str


def _move_many(candidates, events, now):
    """Move the deliveries of ``candidates`` forward with one statement; return the MovedRows.

    A delivery named by more than one event of the batch, by its id or by its provider message
    id, is left to the general path, which applies its events one by one in the order they arrived.
    """
    delivery_ids = Counter(queued.event.delivery_id for queued in events)
    message_ids = Counter(queued.event.provider_message_id for queued in events)
    single = [
        queued
        for queued in candidates
        if delivery_ids[queued.event.delivery_id] == 1 and message_ids[queued.event.provider_message_id] == 1
    ]
    if not single:
        return []
    moves = [Move(queued.clinic_id, queued.event, queued.status, queued.received_at) for queued in single]
    rows = move_in_one_statement(db.session.connection(), moves, now)
    if rows:
        log.info("Applied %s status events with one statement, for deliveries %s to %s.", len(rows), rows[0].id, rows[-1].id)
    return [MovedRow(single[row.position].entry_id, row.id, row.channel, row.status) for row in rows]


def _acknowledge(entry_ids):
    if not entry_ids:
        return
    with queues.connection().pipeline(transaction=False) as pipeline:
        pipeline.xack(STREAM, GROUP, *entry_ids)
        pipeline.xdel(STREAM, *entry_ids)
        pipeline.execute()


def _set_aside(entry_id, fields, reason):
    """Move an entry to the stream of events that could not be applied, and acknowledge it."""
    log.error("Status event %s set aside in %s: %s.", _text(entry_id), FAILED_STREAM, reason)
    connection = queues.connection()
    connection.xadd(FAILED_STREAM, {**fields, "reason": reason, "entry": _text(entry_id)})
    _acknowledge([_text(entry_id)])


def requeue_set_aside():
    """Move every set-aside event back to the stream, to be applied again; return how many moved.

    For after the cause is fixed. An event that fails again is set aside again.
    """
    connection = queues.connection()
    moved = 0
    for entry_id, fields in connection.xrange(FAILED_STREAM, count=10_000):
        event = fields.get(b"event")
        with connection.pipeline(transaction=True) as pipeline:
            if event is not None:
                pipeline.xadd(STREAM, {"event": event})
            pipeline.xdel(FAILED_STREAM, entry_id)
            pipeline.execute()
        moved += event is not None
    return moved


def _text(value):
    return value.decode() if isinstance(value, bytes) else value


# Reading ------------------------------------------------------------------------------------


def ensure_group():
    """Create the consumer group (and the stream) unless they exist, reading from the stream's start."""
    try:
        queues.connection().xgroup_create(STREAM, GROUP, id="0", mkstream=True)
    except redis.exceptions.ResponseError as exc:
        if "BUSYGROUP" not in str(exc):
            raise


def read_and_apply(consumer, block_ms=0, pending=False):
    """Read up to ``BATCH_SIZE`` events as ``consumer`` and apply them; return how many were read.

    Waits up to ``block_ms`` for an event (0: not at all). With ``pending``, reads the events this
    consumer read before and has not acknowledged.
    """
    entries = []
    if pending:
        entries = _read(consumer, "0", BATCH_SIZE, None)
    if len(entries) < BATCH_SIZE:
        # New events join the pending ones, so an event that keeps failing alone is distinguished
        # from a database that fails them all, and cannot hold up the events behind it.
        entries += _read(consumer, ">", BATCH_SIZE - len(entries), None if entries else block_ms or None)
    apply_entries(entries)
    return len(entries)


def _read(consumer, start, count, block):
    connection = queues.connection()
    try:
        response = connection.xreadgroup(GROUP, consumer, {STREAM: start}, count=count, block=block)
    except redis.exceptions.ResponseError as exc:
        if "NOGROUP" not in str(exc):
            raise
        # A new or emptied Redis (a restart without persistence) has no group yet.
        ensure_group()
        response = connection.xreadgroup(GROUP, consumer, {STREAM: start}, count=count, block=block)
    return response[0][1] if response else []


def claim_abandoned(consumer):
    """Take over events that another applier read but left unacknowledged; apply them and return how many."""
    connection = queues.connection()
    claimed = 0
    start = "0-0"
    while True:
        start, entries, *_deleted = connection.xautoclaim(
            STREAM, GROUP, consumer, min_idle_time=CLAIM_IDLE_MS, start_id=start, count=BATCH_SIZE
        )
        if entries:
            log.warning("Claimed %s status events that another applier left unapplied.", len(entries))
            apply_entries([(entry_id, fields) for entry_id, fields in entries if fields])
            claimed += len(entries)
        if _text(start) == "0-0" or not entries:
            return claimed


def forget_stopped_consumers():
    """Remove consumers of stopped workers: nothing pending and idle for a day."""
    connection = queues.connection()
    for info in connection.xinfo_consumers(STREAM, GROUP):
        if info["pending"] == 0 and info["idle"] > FORGET_CONSUMER_MS:
            connection.xgroup_delconsumer(STREAM, GROUP, info["name"])


def waiting():
    """Return how many events are in the stream, read or not, that no applier has finished with."""
    return queues.connection().xlen(STREAM)


def wait_applied(timeout):
    """Wait until the appliers have applied every queued event; return False if some remain after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while waiting():
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.005)
    return True


def drain(consumer="drain", timeout=10.0):
    """Apply every queued event in this thread, then wait for other appliers to finish theirs.

    Tests use it to see the effect of callbacks that already returned 200.
    """
    ensure_group()
    while read_and_apply(consumer):
        pass
    deadline = time.monotonic() + timeout
    while waiting() and time.monotonic() < deadline:
        time.sleep(0.01)
        read_and_apply(consumer)
    return waiting() == 0


def consumer_name():
    return f"{socket.gethostname()}-{os.getpid()}"


def start_applier(app, block_ms=1000):
    """Apply queued status events on a daemon thread of this process until the returned event is set."""
    stop = threading.Event()
    consumer = consumer_name()

    def loop():
        next_claim = 0.0
        pending = True
        # An event that fails alone stays queued until another applies beside it, and an outage
        # can last hours: the applier retries each second but logs at most once a minute.
        failures = FailureLog(log, "Applying status events", "each second")
        while not stop.is_set():
            with app.app_context():
                try:
                    if time.monotonic() >= next_claim:
                        ensure_group()
                        claim_abandoned(consumer)
                        forget_stopped_consumers()
                        next_claim = time.monotonic() + CLAIM_EVERY_SECONDS
                    read = read_and_apply(consumer, block_ms=block_ms, pending=pending)
                    pending = False
                    failures.succeeded()
                    if 0 < read < BATCH_SIZE:
                        stop.wait(LINGER_SECONDS)
                except (redis.exceptions.RedisError, DBAPIError, ApplyingFailed) as exc:
                    # Redis or the database is unreachable or failing: the events wait in the stream.
                    failures.failed(exc)
                    pending = True
                    stop.wait(1)
                except Exception as exc:
                    failures.failed(exc, expected=False)
                    pending = True
                    stop.wait(1)

    threading.Thread(target=loop, name="status-applier", daemon=True).start()
    return stop
