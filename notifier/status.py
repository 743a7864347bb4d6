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

from sqlalchemy import update
from sqlalchemy.exc import IntegrityError

from notifier import metrics, policy, stats
from notifier.classify import classify
from portal.extensions import db
from portal.logging import log_context
from portal.models import FAILED_STATUSES, FINAL_RANK, STATUS_RANK, Delivery, Message, ProviderEvent, utcnow

log = logging.getLogger(__name__)


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


def apply_event(clinic, event):
    """Record ``event`` in the log and apply it; return the follow-ups to queue.

    The caller commits, then passes the follow-ups to ``queues.enqueue_followups``.
    """
    delivery = _find_delivery(clinic, event)
    message_id = delivery.message_id if delivery is not None else None
    with log_context(clinic_id=clinic.id, message_id=message_id, delivery_id=delivery.id if delivery else None):
        return _apply(clinic, event, delivery)


def _apply(clinic, event, delivery):
    status = map_status(event.provider, event.provider_status)
    outcome, followups = "unmatched", []

    if delivery is not None and status is None:
        outcome = "ignored"
    elif delivery is not None and event.attempt is not None and (
        event.attempt != delivery.attempts or delivery.next_attempt_at is not None
    ):
        # A delivery waiting for its retry has no attempt in flight: the event is for one that failed.
        outcome = "stale"
    elif delivery is not None:
        moved = advance(delivery, status, event.error_code, event.provider_message_id)
        outcome = "applied" if moved else "duplicate"
        if moved:
            followups = settle(clinic, delivery)

    db.session.add(
        ProviderEvent(
            clinic_id=clinic.id,
            provider=event.provider,
            kind="status",
            provider_message_id=event.provider_message_id,
            delivery_id=delivery.id if delivery else None,
            status=(event.provider_status or "")[:24],
            error_code=(event.error_code or None),
            outcome=outcome,
            payload=json.dumps(event.payload, sort_keys=True),
        )
    )
    log.info("Status event for delivery %s: %s (%s).", delivery.id if delivery else None, status, outcome)
    return followups


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
        metrics.FINAL_DELIVERIES.labels(delivery.channel, status, values.get("category") or "").inc()
    if moved and status in ("delivered", "unknown", "suppressed"):
        stats.record(delivery, status, category)
    if provider_message_id and not delivery.provider_message_id:
        _set_provider_id(delivery, provider_message_id)
    db.session.refresh(delivery)
    return moved


def settle(clinic, delivery):
    """Act on a delivery that just failed: learn from the code, then fall back, retry or stop."""
    if delivery.status not in FAILED_STATUSES:
        return []
    classification = classify(delivery.provider, delivery.error_code or "none")
    _learn(clinic, delivery, classification)
    if delivery.channel == "pointer":
        metrics.POINTER_FAILURES.labels(delivery.provider).inc()

    if classification.category == "carrier_filtered":
        stats.record(delivery, "failed", delivery.category)
        pointer = start_fallback(clinic, delivery)
        return [Followup(pointer)] if pointer is not None else []
    when = policy.retry_time(delivery, classification)
    if when is None or not policy.schedule_retry(delivery, when):
        # No attempt is left, so this failure is the text's final outcome.
        stats.record(delivery, "failed", delivery.category)
        return []
    metrics.RETRIES.labels(delivery.provider).inc()
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
        metrics.CLINIC_SETUP_FAILURES.labels(delivery.provider, classification.code).inc()
        log.error(
            "Delivery %s of clinic %s failed with %s code %s (%s): the clinic's sending setup needs fixing.",
            delivery.id, clinic.id, delivery.provider, classification.code, classification.meaning,
        )


def _set_provider_id(delivery, provider_message_id):
    db.session.execute(
        update(Delivery)
        .where(Delivery.id == delivery.id, Delivery.provider_message_id.is_(None))
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
    metrics.FALLBACKS.labels(delivery.provider).inc()
    log.info("Fallback for message %s: portal copy marked, pointer delivery %s created.", delivery.message_id, pointer.id)
    return pointer


def _find_delivery(clinic, event):
    delivery = None
    if event.delivery_id is not None:
        delivery = db.session.get(Delivery, event.delivery_id)
    elif event.provider_message_id:
        delivery = db.session.execute(
            db.select(Delivery).where(
                Delivery.provider == event.provider,
                Delivery.provider_message_id == event.provider_message_id,
            )
        ).scalar_one_or_none()
    if delivery is None or delivery.provider != event.provider:
        return None
    # An event for another clinic's delivery is treated as unknown, whatever it claims.
    if db.session.get(Message, delivery.message_id).clinic_id != clinic.id:
        return None
    if (
        event.provider_message_id
        and delivery.provider_message_id
        and delivery.provider_message_id != event.provider_message_id
    ):
        return None
    return delivery
