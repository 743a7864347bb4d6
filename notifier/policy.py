"""Decisions made around each SMS attempt: retry or stop, and whether to send at all."""

import random
from datetime import timedelta

from flask import current_app
from sqlalchemy import update

from portal.extensions import db
from portal.models import Client, Consent, Delivery, PhoneLine, utcnow

# Rules from notifier/codes/*.toml that allow another attempt, with their attempt limit (None =
# the delivery's own max_attempts).
RETRY_LIMITS = {"later": None, "once": 2}


def retry_time(delivery, classification):
    """Return when to try ``delivery`` again after a failure, or None when it must stop."""
    if classification.retry not in RETRY_LIMITS:
        return None
    limit = RETRY_LIMITS[classification.retry] or delivery.max_attempts
    if delivery.attempts >= min(limit, delivery.max_attempts):
        return None
    when = utcnow() + timedelta(seconds=backoff_seconds(delivery.attempts))
    validity = timedelta(seconds=current_app.config["PAWPOST_SMS_VALIDITY_SECONDS"])
    # A scheduled message counts its validity from the time it was due, not from when it was made.
    if when > (delivery.message.send_at or delivery.message.created_at) + validity:
        return None
    return when


def backoff_seconds(attempts):
    """Return the wait before attempt ``attempts + 1``: exponential, capped, with jitter."""
    base = current_app.config["PAWPOST_RETRY_BASE_SECONDS"]
    cap = current_app.config["PAWPOST_RETRY_MAX_SECONDS"]
    ceiling = min(cap, base * 2 ** max(attempts - 1, 0))
    # Jitter spreads retries of a burst that failed together, so they do not return together.
    return random.uniform(ceiling / 2, ceiling)


def schedule_retry(delivery, when):
    """Put a failed attempt back in the queue for ``when``; return False if something else moved it."""
    statement = (
        update(Delivery)
        .where(Delivery.id == delivery.id, Delivery.attempts == delivery.attempts, Delivery.status_rank == 4)
        # The next attempt gets a new provider message id. Keeping the failed one would make the
        # retry's callbacks look like another message's, so they would stay unmatched.
        .values(
            status="queued",
            status_rank=0,
            next_attempt_at=when,
            final_at=None,
            provider_message_id=None,
            updated_at=utcnow(),
        )
        .execution_options(synchronize_session=False)
    )
    moved = db.session.execute(statement).rowcount == 1
    db.session.refresh(delivery)
    return moved


def suppression_reason(clinic, number):
    """Return ``opted_out`` or ``landline`` when Pawpost must not text ``number`` from this clinic."""
    return suppression_reasons(clinic, [number]).get(number)


def suppression_reasons(clinic, numbers):
    """Return ``{number: reason}`` for each of ``numbers`` that Pawpost must not text from this clinic.

    The reason is ``opted_out`` or ``landline``, with three queries however many numbers there are.
    """
    numbers = list(numbers)
    opted_out = set(
        db.session.execute(
            db.select(Consent.client_number).where(
                Consent.sender_number == clinic.sender_number,
                Consent.client_number.in_(numbers),
                Consent.opted_out.is_(True),
            )
        ).scalars()
    )
    landlines = set(
        db.session.execute(
            db.select(PhoneLine.number).where(PhoneLine.number.in_(numbers), PhoneLine.line_type == "landline")
        ).scalars()
    )
    # The clinic's PIMS lists no mobile number for these clients, so the number kept on the
    # record must not be texted. Staff see the landline reason and fix the record.
    untextable = set(
        db.session.execute(
            db.select(Client.mobile_number).where(
                Client.clinic_id == clinic.id, Client.mobile_number.in_(numbers), Client.textable.is_(False)
            )
        ).scalars()
    )
    reasons = {}
    for number in numbers:
        if number in opted_out:
            reasons[number] = "opted_out"
        elif number in landlines or number in untextable:
            reasons[number] = "landline"
    return reasons


def record_consent(sender_number, client_number, opted_out, source, message_id=None):
    """Set the consent of ``client_number`` towards ``sender_number``."""
    consent = db.session.execute(
        db.select(Consent).where(Consent.sender_number == sender_number, Consent.client_number == client_number)
    ).scalar_one_or_none()
    if consent is None:
        consent = Consent(sender_number=sender_number, client_number=client_number)
        db.session.add(consent)
    consent.opted_out = opted_out
    consent.source = source
    consent.message_id = message_id
    consent.updated_at = utcnow()
    return consent


def record_line_type(number, line_type, source, detail=None):
    """Remember the line type of ``number`` for every clinic."""
    line = db.session.execute(db.select(PhoneLine).where(PhoneLine.number == number)).scalar_one_or_none()
    if line is None:
        line = PhoneLine(number=number)
        db.session.add(line)
    line.line_type = line_type
    line.source = source
    line.detail = detail
    line.updated_at = utcnow()
    return line
