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
from datetime import datetime
from functools import cache
from pathlib import Path
from typing import NamedTuple

from sqlalchemy import bindparam, func, select, text, update
from sqlalchemy.exc import IntegrityError

from notifier import metrics, policy, stats
from notifier.classify import classify
from portal.extensions import db
from portal.inputs import storable_text
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

    def __post_init__(self):
        # The database cannot store a NUL or a lone surrogate, and a rejected callback would only be retried.
        for name in ("provider_status", "provider_message_id", "error_code"):
            object.__setattr__(self, name, storable_text(getattr(self, name)))


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


def can_move_in_one_statement(event, status):
    """Return True when ``event``, mapped to ``status``, may take ``move_in_one_statement``.

    That is a forward move (not a failure) that names its delivery, attempt and provider message id.
    """
    return (
        status is not None
        and status not in FAILED_STATUSES
        and event.delivery_id is not None
        and event.attempt is not None
        and bool(event.provider_message_id)
    )


class Move(NamedTuple):
    """One event for ``move_in_one_statement``: its clinic, the event, its status and arrival time."""

    clinic_id: int
    event: StatusEvent
    status: str
    received_at: datetime


def move_in_one_statement(connection, moves, now):
    """Move deliveries forward, count them and store their events with one PostgreSQL statement.

    Each move has the conditions of ``_forward_update``, plus those under which ``_find_delivery``
    and ``_apply`` let an event apply: the delivery belongs to the clinic and provider, the event
    is for the attempt in flight, and its provider message id matches. Only the deliveries that
    moved are counted and stored. Each delivery may appear once. Return rows (position in
    ``moves``, id, channel, message_id, status) of the deliveries that moved.
    """
    return connection.execute(
        _move_statement(),
        {
            "positions": list(range(len(moves))),
            "clinic_ids": [move.clinic_id for move in moves],
            "providers": [move.event.provider for move in moves],
            "delivery_ids": [move.event.delivery_id for move in moves],
            "attempts": [move.event.attempt for move in moves],
            "message_ids": [move.event.provider_message_id for move in moves],
            "statuses": [move.status for move in moves],
            "ranks": [STATUS_RANK[move.status] for move in moves],
            "provider_statuses": [(move.event.provider_status or "")[:24] for move in moves],
            "error_codes": [move.event.error_code or None for move in moves],
            "payloads": [json.dumps(move.event.payload, sort_keys=True) for move in moves],
            "received": [UTCDateTime().process_bind_param(move.received_at, None) for move in moves],
            "counted": list(stats.COUNTED_OUTCOMES),
            "now": now,
            "hour": stats.hour_start(now),
        },
    ).all()


def _moved_in_one_statement(clinic_id, event):
    """Apply a forward move of the attempt in flight with one statement; return True when it moved.

    Nearly every callback is a sent or delivered event for the attempt in flight, and on
    PostgreSQL one statement moves the delivery, counts it and stores the event. Any other
    event, and one that moves nothing, takes the general path, which finds out why.
    """
    status = map_status(event.provider, event.provider_status)
    if not can_move_in_one_statement(event, status) or db.engine.dialect.name != "postgresql":
        return False
    now = utcnow()
    moves = [Move(clinic_id, event, status, now)]
    in_session = db.session().in_transaction()
    if in_session:
        # The session may hold locks on this delivery (an earlier event of the same Bandwidth
        # array), which a second connection would wait for until the request's end: forever.
        rows = move_in_one_statement(db.session.connection(), moves, now)
    else:
        # The statement is a transaction of its own, so it runs without BEGIN and COMMIT: one
        # round trip instead of three.
        with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
            rows = move_in_one_statement(connection, moves, now)
    if not rows:
        return False
    moved = rows[0]
    if STATUS_RANK[status] >= FINAL_RANK:
        counted = metrics.FINAL_DELIVERIES.labels(moved.channel, status, "")
        if in_session:
            metrics.count_after_commit(counted)
        else:
            counted.inc()
    with log_context(clinic_id=clinic_id, message_id=moved.message_id, delivery_id=moved.id):
        log.info("Status event for delivery %s: %s (applied).", moved.id, status)
    return True


@cache
def _move_statement():
    """Return the statement of ``move_in_one_statement``, which reads its moves from arrays."""
    sql = f"""
        WITH input AS (
            SELECT * FROM unnest(
                CAST(:positions AS integer[]), CAST(:clinic_ids AS integer[]), CAST(:providers AS text[]),
                CAST(:delivery_ids AS integer[]), CAST(:attempts AS integer[]), CAST(:message_ids AS text[]),
                CAST(:statuses AS text[]), CAST(:ranks AS integer[]), CAST(:provider_statuses AS text[]),
                CAST(:error_codes AS text[]), CAST(:payloads AS text[]), CAST(:received AS timestamp[])
            ) AS i(position, clinic_id, provider, delivery_id, attempt, message_id, status, rank,
                   provider_status, error_code, payload, received_at)
        ), moved AS (
            UPDATE deliveries AS d SET
                status = i.status,
                status_rank = i.rank,
                updated_at = :now,
                error_code = CASE WHEN i.status IN ('delivered', 'suppressed') THEN NULL ELSE d.error_code END,
                category = CASE WHEN i.status IN ('delivered', 'suppressed') THEN NULL ELSE d.category END,
                final_at = CASE WHEN i.rank >= {FINAL_RANK} THEN :now ELSE d.final_at END,
                provider_message_id = coalesce(d.provider_message_id, i.message_id)
            FROM input AS i, messages AS m
            WHERE d.id = i.delivery_id AND d.provider = i.provider AND d.status_rank < i.rank
              AND d.attempts = i.attempt AND d.next_attempt_at IS NULL
              AND (d.provider_message_id IS NULL OR d.provider_message_id = i.message_id)
              AND m.id = d.message_id AND m.clinic_id = i.clinic_id
            RETURNING i.position, d.id, d.channel, d.message_id, i.clinic_id, i.status
        ), stored AS (
            INSERT INTO provider_events
                (clinic_id, provider, kind, provider_message_id, delivery_id, status, error_code, outcome, payload, received_at)
            SELECT i.clinic_id, i.provider, 'status', i.message_id, moved.id, i.provider_status,
                   i.error_code, 'applied', i.payload, i.received_at
            FROM moved JOIN input AS i ON i.position = moved.position
        ), counted AS (
            INSERT INTO sms_hourly_stats (clinic_id, hour, outcome, category, stripe, count)
            SELECT clinic_id, :hour, status, '', id % {STRIPES}, count(*) FROM moved
            WHERE channel = 'sms' AND status = ANY(CAST(:counted AS text[]))
            GROUP BY clinic_id, status, id % {STRIPES}
            ON CONFLICT (clinic_id, hour, outcome, category, stripe)
            DO UPDATE SET count = sms_hourly_stats.count + excluded.count
        )
        SELECT position, id, channel, message_id, status FROM moved ORDER BY id
    """
    return text(sql).bindparams(bindparam("now", type_=UTCDateTime()), bindparam("hour", type_=UTCDateTime()))


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
