"""Apply provider status events to deliveries, and start the Pet Portal fallback.

Statuses only move forward: each update is a conditional UPDATE on the status rank, so a
duplicate, late or concurrent event finds nothing to change. The same condition makes the
fallback run exactly once per message: only the event that moves the SMS delivery to its
final status can start it.
"""

import json
import logging
import tomllib
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from sqlalchemy import bindparam, func, select, text, update
from sqlalchemy.exc import IntegrityError

from notifier import metrics, policy, stats
from notifier.classify import classify
from portal.extensions import db
from portal.logging import log_context
from portal.models import (
    FAILED_STATUSES,
    FINAL_RANK,
    STATUS_RANK,
    Clinic,
    Delivery,
    Message,
    ProviderEvent,
    utcnow,
)
from portal.models.stats import STRIPES
from portal.models.types import UTCDateTime

log = logging.getLogger(__name__)

_deliveries = Delivery.__table__
_events = ProviderEvent.__table__
_messages = Message.__table__
# The delivery columns that applying an event reads. The join keeps the look-up within the
# clinic the callback authenticated as.
_FIND = (
    select(
        _deliveries.c.id,
        _deliveries.c.message_id,
        _deliveries.c.channel,
        _deliveries.c.provider_message_id,
        _deliveries.c.attempts,
        _deliveries.c.next_attempt_at,
    )
    .join(_messages, _messages.c.id == _deliveries.c.message_id)
    .where(_messages.c.clinic_id == bindparam("clinic_id"), _deliveries.c.provider == bindparam("provider"))
)
_FIND_BY_ID = _FIND.where(_deliveries.c.id == bindparam("delivery_id"))
_FIND_BY_PROVIDER_ID = _FIND.where(_deliveries.c.provider_message_id == bindparam("provider_message_id")).limit(1)


@dataclass(frozen=True)
class StatusEvent:
    provider: str
    provider_status: str
    provider_message_id: str | None
    error_code: str | None
    # Our delivery id and attempt number, echoed by the provider from the callback URL or tag.
    delivery_id: int | None
    attempt: int | None
    payload: dict


@dataclass(frozen=True)
class Followup:
    """A delivery to queue once the transaction commits, now or at ``at``."""

    delivery: Delivery
    at: object = None


@cache
def _status_words():
    return tomllib.loads((Path(__file__).parent / "codes" / "statuses.toml").read_text())


def map_status(provider, word):
    """Return the Pawpost status for a provider's status word, or None when it has no mapping."""
    return _status_words()[provider].get((word or "").strip().lower())


# Ids are INTEGER columns, 32-bit signed on PostgreSQL. A lookup with a larger value raises
# an error there instead of finding nothing.
MAX_REF_NUMBER = 2**31 - 1


def parse_ref(text):
    """Parse ``"<delivery_id>.<attempt>"`` into two ints, or ``(None, None)`` when malformed."""
    parts = (text or "").split(".")
    # Refs we issue are ASCII. str.isdigit() alone would also pass "²", which int() rejects.
    if len(parts) != 2 or not all(p.isascii() and p.isdigit() and len(p) <= 10 for p in parts):
        return None, None
    delivery_id, attempt = int(parts[0]), int(parts[1])
    if delivery_id > MAX_REF_NUMBER or attempt > MAX_REF_NUMBER:
        return None, None
    return delivery_id, attempt


def format_ref(delivery_id, attempt):
    return f"{delivery_id}.{attempt}"


def apply_event(clinic_id, event):
    """Record ``event`` in the log and apply it; return the follow-ups to queue.

    ``clinic_id`` is the clinic the callback authenticated as. The caller commits, then passes
    the follow-ups to ``queues.enqueue_followups``.
    """
    if _moved_in_one_statement(clinic_id, event):
        return []
    return apply_in_session(clinic_id, event)


def apply_in_session(clinic_id, event, received_at=None):
    """Apply ``event`` within the session's transaction, finding out what it does; return the follow-ups.

    ``received_at`` is when the callback arrived, for an event applied later than that.
    """
    found = _find_delivery(clinic_id, event)
    ids = {"message_id": found.message_id, "delivery_id": found.id} if found is not None else {}
    with log_context(clinic_id=clinic_id, **ids):
        return _apply(clinic_id, event, found, received_at)


def _moved_in_one_statement(clinic_id, event):
    """Apply a forward move of the attempt in flight with one statement; return True when it moved.

    Nearly every callback is a sent or delivered event for the attempt in flight, and on
    PostgreSQL one statement moves the delivery, counts it and stores the event. Any other
    event, and one that moves nothing, takes the general path, which finds out why.
    """
    status = map_status(event.provider, event.provider_status)
    if (
        status is None
        or status in FAILED_STATUSES
        or event.delivery_id is None
        or event.attempt is None
        or not event.provider_message_id
    ):
        return False
    if db.engine.dialect.name != "postgresql":
        return False
    now = utcnow()
    in_session = db.session().in_transaction()
    if in_session:
        # The session may hold locks on this delivery (an earlier event of the same Bandwidth
        # array), which a second connection would wait for until the request's end: forever.
        moved = _execute_move(db.session.connection(), status, clinic_id, event, now)
    else:
        # The statement is a transaction of its own, so it runs without BEGIN and COMMIT: one
        # round trip instead of three.
        with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
            moved = _execute_move(connection, status, clinic_id, event, now)
    if moved is None:
        return False
    if STATUS_RANK[status] >= FINAL_RANK:
        counted = metrics.FINAL_DELIVERIES.labels(moved.channel, status, "")
        if in_session:
            metrics.count_after_commit(counted)
        else:
            counted.inc()
    with log_context(clinic_id=clinic_id, message_id=moved.message_id, delivery_id=moved.id):
        log.info("Status event for delivery %s: %s (applied).", moved.id, status)
    return True


def _execute_move(connection, status, clinic_id, event, now):
    return connection.execute(
        _move_count_and_store(status),
        {
            "clinic_id": clinic_id,
            "provider": event.provider,
            "delivery_id": event.delivery_id,
            "attempt": event.attempt,
            "event_provider_message_id": event.provider_message_id,
            "now": now,
            "hour": stats.hour_start(now),
            "provider_status": (event.provider_status or "")[:24],
            "error_code": event.error_code or None,
            "payload": json.dumps(event.payload, sort_keys=True),
        },
    ).first()


@cache
def _move_count_and_store(status):
    """Return the PostgreSQL statement that moves a delivery to ``status``, counts it and stores the event.

    The move has the conditions of ``_forward_update``. It adds those under which ``_find_delivery``
    and ``_apply`` let an event apply: the delivery belongs to the clinic and provider, the event
    is for the attempt in flight, and its provider message id matches. The count and the stored
    event read the moved row, so a delivery that does not move leaves no trace.
    """
    rank = STATUS_RANK[status]
    assignments = ["status = :status", "status_rank = :rank", "updated_at = :now"]
    if status in ("delivered", "suppressed"):
        assignments += ["error_code = NULL", "category = NULL"]
    if rank >= FINAL_RANK:
        assignments.append("final_at = :now")
    assignments.append("provider_message_id = coalesce(d.provider_message_id, :event_provider_message_id)")
    count = ""
    if status in stats.COUNTED_OUTCOMES:
        count = f"""
        , counted AS (
            INSERT INTO sms_hourly_stats (clinic_id, hour, outcome, category, stripe, count)
            SELECT :clinic_id, :hour, :status, '', moved.id % {STRIPES}, 1 FROM moved WHERE moved.channel = 'sms'
            ON CONFLICT (clinic_id, hour, outcome, category, stripe)
            DO UPDATE SET count = sms_hourly_stats.count + excluded.count
        )"""
    sql = f"""
        WITH moved AS (
            UPDATE deliveries AS d SET {", ".join(assignments)}
            FROM messages AS m
            WHERE d.id = :delivery_id AND d.provider = :provider AND d.status_rank < :rank
              AND d.attempts = :attempt AND d.next_attempt_at IS NULL
              AND (d.provider_message_id IS NULL OR d.provider_message_id = :event_provider_message_id)
              AND m.id = d.message_id AND m.clinic_id = :clinic_id
            RETURNING d.id, d.channel, d.message_id
        ), stored AS (
            INSERT INTO provider_events
                (clinic_id, provider, kind, provider_message_id, delivery_id, status, error_code, outcome, payload, received_at)
            SELECT :clinic_id, :provider, 'status', :event_provider_message_id, moved.id, :provider_status,
                   :error_code, 'applied', :payload, :now
            FROM moved
        ){count}
        SELECT id, channel, message_id FROM moved
    """
    binds = [bindparam("status", status), bindparam("rank", rank), bindparam("now", type_=UTCDateTime())]
    if count:
        binds.append(bindparam("hour", type_=UTCDateTime()))
    return text(sql).bindparams(*binds)


def _apply(clinic_id, event, found, received_at=None):
    status = map_status(event.provider, event.provider_status)
    outcome, followups = "unmatched", []

    if found is not None and status is None:
        outcome = "ignored"
    elif found is not None and event.attempt is not None and (
        event.attempt != found.attempts or found.next_attempt_at is not None
    ):
        # A delivery waiting for its retry has no attempt in flight: the event is for one that failed.
        outcome = "stale"
    elif found is not None and status in FAILED_STATUSES:
        outcome, followups = _apply_failure(clinic_id, event, found.id, status)
    elif found is not None:
        outcome = "applied" if _move_forward(clinic_id, event, found, status) else "duplicate"

    _store_event(clinic_id, event, found.id if found is not None else None, outcome, received_at)
    log.info("Status event for delivery %s: %s (%s).", found.id if found else None, status, outcome)
    return followups


def _apply_failure(clinic_id, event, delivery_id, status):
    """Apply a failure through the ORM, because it may learn from the code, fall back or retry."""
    delivery = db.session.get(Delivery, delivery_id)
    if not advance(delivery, status, event.error_code, event.provider_message_id):
        return "duplicate", []
    return "applied", settle(db.session.get(Clinic, clinic_id), delivery)


def _move_forward(clinic_id, event, found, status):
    """Move a delivery to a status that is not a failure, without loading it. Return True when it moved.

    This is the path of nearly every callback (sent, delivered), so it runs one conditional
    UPDATE and no ORM flush or refresh.
    """
    connection = db.session.connection()
    moved = connection.execute(
        _forward_update(status),
        {
            "delivery_id": found.id,
            "current_attempts": found.attempts,
            "now": utcnow(),
            "event_provider_message_id": event.provider_message_id,
        },
    ).first()
    if moved is None:
        if event.provider_message_id and not found.provider_message_id:
            _set_provider_id(found.id, event.provider_message_id)
        return False
    if STATUS_RANK[status] >= FINAL_RANK:
        metrics.count_after_commit(metrics.FINAL_DELIVERIES.labels(found.channel, status, ""))
    if status in stats.COUNTED_OUTCOMES:
        stats.record(None, status, channel=found.channel, clinic_id=clinic_id, delivery_id=found.id)
    return True


@cache
def _forward_update(status):
    """Return the UPDATE that moves a delivery to ``status`` (not a failure) if that is a step forward.

    The conditions are those of ``advance``. The delivery also takes the event's provider
    message id when it has none yet.
    """
    table = _deliveries
    return (
        update(table)
        .where(
            table.c.id == bindparam("delivery_id"),
            table.c.status_rank < STATUS_RANK[status],
            table.c.attempts == bindparam("current_attempts"),
            table.c.next_attempt_at.is_(None),
        )
        .values(**_forward_values(status))
        .returning(table.c.id)
    )


def _forward_values(status):
    """Return the columns a move to ``status`` (not a failure) sets, with the bind parameter ``now``."""
    rank = STATUS_RANK[status]
    now = bindparam("now", type_=UTCDateTime())
    values = {"status": status, "status_rank": rank, "updated_at": now}
    if status in ("delivered", "suppressed"):
        values.update(error_code=None, category=None)
    if rank >= FINAL_RANK:
        values["final_at"] = now
    values["provider_message_id"] = func.coalesce(
        _deliveries.c.provider_message_id, bindparam("event_provider_message_id")
    )
    return values


def _store_event(clinic_id, event, delivery_id, outcome, received_at=None):
    db.session.connection().execute(
        _events.insert(),
        {
            "received_at": received_at or utcnow(),
            "clinic_id": clinic_id,
            "provider": event.provider,
            "kind": "status",
            "provider_message_id": event.provider_message_id,
            "delivery_id": delivery_id,
            "status": (event.provider_status or "")[:24],
            "error_code": event.error_code or None,
            "outcome": outcome,
            "payload": json.dumps(event.payload, sort_keys=True),
        },
    )


def advance(delivery, status, error_code=None, provider_message_id=None, category=None):
    """Move ``delivery`` to ``status`` if that is a step forward; return True when it moved.

    A failure takes its category from the error code unless ``category`` is given; a success
    clears the category left by an earlier failed attempt.
    """
    rank = STATUS_RANK[status]
    now = utcnow()
    values = {"status": status, "status_rank": rank, "updated_at": now}
    if status in FAILED_STATUSES:
        category = category or classify(delivery.provider, error_code or "none").category
        values.update(error_code=error_code, category=category)
    elif status == "suppressed":
        values.update(error_code=None, category=category)
    elif status == "delivered":
        values.update(error_code=None, category=None)
    if rank >= FINAL_RANK:
        values["final_at"] = now
    statement = (
        update(Delivery)
        .where(
            Delivery.id == delivery.id,
            Delivery.status_rank < rank,
            Delivery.attempts == delivery.attempts,
            # A scheduled retry sets next_attempt_at and the claim clears it, so a late event of
            # the failed attempt cannot move a delivery that waits for its retry.
            Delivery.next_attempt_at.is_(None),
        )
        .values(**values)
        .execution_options(synchronize_session=False)
    )
    moved = db.session.execute(statement).rowcount == 1
    if moved and rank >= FINAL_RANK:
        metrics.count_after_commit(metrics.FINAL_DELIVERIES.labels(delivery.channel, status, values.get("category") or ""))
    if moved and status in stats.COUNTED_OUTCOMES:
        stats.record(delivery, status, category)
    if provider_message_id and not delivery.provider_message_id:
        _set_provider_id(delivery.id, provider_message_id)
    db.session.refresh(delivery)
    return moved


def settle(clinic, delivery):
    """Act on a delivery that just failed: learn from the code, then fall back, retry or stop."""
    if delivery.status not in FAILED_STATUSES:
        return []
    classification = classify(delivery.provider, delivery.error_code or "none")
    _learn(clinic, delivery, classification)
    if delivery.channel == "pointer":
        metrics.count_after_commit(metrics.POINTER_FAILURES.labels(delivery.provider))

    if classification.category == "carrier_filtered":
        stats.record(delivery, "failed", delivery.category)
        pointer = start_fallback(clinic, delivery)
        return [Followup(pointer)] if pointer is not None else []
    when = policy.retry_time(delivery, classification)
    if when is None or not policy.schedule_retry(delivery, when):
        # No attempt is left, so this failure is the text's final outcome.
        stats.record(delivery, "failed", delivery.category)
        return []
    metrics.count_after_commit(metrics.RETRIES.labels(delivery.provider))
    log.info(
        "Delivery %s will retry at %s (attempt %s of %s).",
        delivery.id, when.isoformat(), delivery.attempts + 1, delivery.max_attempts,
    )
    return [Followup(delivery, when)]


def _learn(clinic, delivery, classification):
    number = delivery.message.client.mobile_number
    if classification.category == "opted_out":
        policy.record_consent(clinic.sender_number, number, True, "provider_error", delivery.message_id)
        log.info("Delivery %s: provider code %s recorded as an opt-out.", delivery.id, classification.code)
    elif classification.category == "landline" and classification.retry == "no":
        policy.record_line_type(number, "landline", "provider_error", f"{delivery.provider} {classification.code}")
        log.info("Delivery %s: provider code %s recorded the number as a landline.", delivery.id, classification.code)
    elif classification.category == "clinic_setup":
        metrics.count_after_commit(metrics.CLINIC_SETUP_FAILURES.labels(delivery.provider, classification.code))
        log.error(
            "Delivery %s of clinic %s failed with %s code %s (%s): the clinic's sending setup needs fixing.",
            delivery.id, clinic.id, delivery.provider, classification.code, classification.meaning,
        )


def _set_provider_id(delivery_id, provider_message_id):
    db.session.execute(
        update(Delivery)
        .where(Delivery.id == delivery_id, Delivery.provider_message_id.is_(None))
        .values(provider_message_id=provider_message_id)
        .execution_options(synchronize_session=False)
    )


def start_fallback(clinic, delivery):
    """Put the message in the Pet Portal as a chat notification and create the pointer SMS delivery.

    Runs only for the SMS delivery of a clinic with fallback on. Returns the pointer delivery to
    queue, or None.
    """
    if delivery.channel != "sms" or not clinic.fallback_enabled:
        return None
    db.session.execute(
        update(Delivery)
        .where(
            Delivery.message_id == delivery.message_id,
            Delivery.channel == "portal",
            Delivery.chat_notification.is_(False),
        )
        .values(chat_notification=True, updated_at=utcnow())
        .execution_options(synchronize_session=False)
    )
    pointer = Delivery(
        message_id=delivery.message_id, channel="pointer", provider=delivery.provider, max_attempts=delivery.max_attempts
    )
    try:
        # A savepoint keeps the surrounding transaction usable if the pointer already exists.
        with db.session.begin_nested():
            db.session.add(pointer)
    except IntegrityError:
        log.info("Pointer for message %s already exists; nothing to add.", delivery.message_id)
        return None
    metrics.count_after_commit(metrics.FALLBACKS.labels(delivery.provider))
    log.info("Fallback for message %s: portal copy marked, pointer delivery %s created.", delivery.message_id, pointer.id)
    return pointer


def _find_delivery(clinic_id, event):
    """Return what applying ``event`` needs of its delivery, or None when it names none of this clinic's.

    One query finds the delivery by our ref, or by the provider's message id when the event
    has no ref. A delivery of another clinic or provider counts as unknown, whatever the event claims.
    """
    params = {"clinic_id": clinic_id, "provider": event.provider}
    if event.delivery_id is not None:
        statement = _FIND_BY_ID
        params["delivery_id"] = event.delivery_id
    elif event.provider_message_id:
        statement = _FIND_BY_PROVIDER_ID
        params["provider_message_id"] = event.provider_message_id
    else:
        return None
    found = db.session.connection().execute(statement, params).first()
    if (
        found is not None
        and event.provider_message_id
        and found.provider_message_id
        and found.provider_message_id != event.provider_message_id
    ):
        return None
    return found
