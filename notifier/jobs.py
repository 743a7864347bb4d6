"""RQ jobs. Each takes ids, reloads its rows and is safe to run twice."""

import logging
import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import timedelta

from flask import current_app
from sqlalchemy import bindparam, update
from sqlalchemy.orm import joinedload, selectinload

from notifier import mail, media, metrics, outbound_media, pacing, policy, providers, push, queues, stats, status
from notifier.pointer import pointer_text
from notifier.providers import OutboundText, ProviderError, ProviderUnreachable
from portal.extensions import db
from portal.logging import log_context
from portal.models import STATUS_RANK, Client, Delivery, Message, PhoneLine, PortalToken, utcnow

log = logging.getLogger(__name__)


def send_text(delivery_id):
    """Send one SMS or pointer delivery through the clinic's provider, once per attempt."""
    delivery = _claimed(delivery_id)
    if delivery is None:
        return "skipped"
    with log_context(message_id=delivery.message_id, clinic_id=delivery.message.clinic_id, delivery_id=delivery.id):
        return _send(delivery)


def _send(delivery):
    clinic = delivery.message.clinic
    text = _prepare(delivery, _suppression_reason(clinic, delivery.message))
    db.session.commit()
    if isinstance(text, str):
        return text
    try:
        result = _call_provider(clinic, text)
    except (ProviderError, ProviderUnreachable) as exc:
        return _record_failed_call(clinic, delivery, exc)
    status.advance(delivery, "accepted", provider_message_id=result.provider_message_id)
    db.session.commit()
    _count_accepted(clinic, delivery, result)
    return "accepted"


def send_texts(delivery_ids):
    """Send a batch of SMS deliveries, each once per attempt, with several provider calls in flight.

    Each delivery takes the steps of ``send_text``. The batch shares the claim, the loading of
    rows, the suppression look-ups and the commits, and the provider calls run on
    ``PAWPOST_SEND_CONCURRENCY`` threads. Returns how many deliveries ended with each outcome.
    """
    outcomes = Counter()
    claimed = claim_many(delivery_ids)
    outcomes["skipped"] = len(delivery_ids) - len(claimed)
    if not claimed:
        return dict(outcomes)
    with _rows_kept_after_commit():
        _send_claimed(claimed, outcomes)
    return dict(outcomes)


@contextmanager
def _rows_kept_after_commit():
    """Keep loaded rows readable after each commit, instead of reloading every one of a batch's rows.

    Safe here because every change the batch makes is a conditional UPDATE on the claimed rows.
    """
    session = db.session()
    previous = session.expire_on_commit
    session.expire_on_commit = False
    try:
        yield
    finally:
        session.expire_on_commit = previous


def _send_claimed(claimed, outcomes):
    deliveries = db.session.execute(
        db.select(Delivery)
        .where(Delivery.id.in_(claimed))
        .options(
            joinedload(Delivery.message).joinedload(Message.clinic),
            joinedload(Delivery.message).joinedload(Message.client),
            joinedload(Delivery.message).selectinload(Message.attachments),
        )
        .order_by(Delivery.id)
    ).scalars().all()
    reasons = _suppression_reasons(deliveries)
    ready = []
    for delivery in deliveries:
        with _delivery_log_context(delivery):
            text = _prepare(delivery, reasons.get(delivery.id))
        if isinstance(text, str):
            outcomes[text] += 1
        else:
            ready.append((delivery, text))
    # Portal links made for the texts are stored before the texts leave.
    db.session.commit()

    calls = [(delivery.message.clinic, text) for delivery, text in ready]
    accepted = []
    for (delivery, _text), (result, error) in zip(ready, _call_all(calls)):
        clinic = delivery.message.clinic
        with _delivery_log_context(delivery):
            if error is not None:
                outcomes[_record_failed_call(clinic, delivery, error)] += 1
            else:
                accepted.append((delivery, result))
    _record_accepted_many(accepted)
    db.session.commit()
    for delivery, result in accepted:
        with _delivery_log_context(delivery):
            _count_accepted(delivery.message.clinic, delivery, result)
    outcomes["accepted"] += len(accepted)


def _delivery_log_context(delivery):
    return log_context(message_id=delivery.message_id, clinic_id=delivery.message.clinic_id, delivery_id=delivery.id)


def _suppression_reason(clinic, message):
    """Return why a text must not go to ``message``'s client, after a line-type look-up when they are on."""
    if message.source == "keyword":
        # Replies to STOP, HELP and START are sent whatever the consent records.
        return None
    _look_up_line_type(clinic, message.client.mobile_number)
    return policy.suppression_reason(clinic, message.client.mobile_number)


def _suppression_reasons(deliveries):
    """Return ``{delivery_id: reason}`` for the deliveries of a batch that must not be sent."""
    reasons = {}
    by_clinic = {}
    for delivery in deliveries:
        message = delivery.message
        if message.source == "keyword":
            continue
        _look_up_line_type(message.clinic, message.client.mobile_number)
        by_clinic.setdefault(message.clinic_id, (message.clinic, []))[1].append(delivery)
    for clinic, members in by_clinic.values():
        found = policy.suppression_reasons(clinic, {delivery.message.client.mobile_number for delivery in members})
        for delivery in members:
            reason = found.get(delivery.message.client.mobile_number)
            if reason is not None:
                reasons[delivery.id] = reason
    return reasons


def _prepare(delivery, reason):
    """Return the text to send for a claimed delivery, or the outcome when it must not be sent.

    A suppressed or expired delivery is settled here. The caller commits.
    """
    if reason is not None:
        # No provider call: the portal copy and other channels carry the message.
        status.advance(delivery, "suppressed", category=reason)
        metrics.SUPPRESSED.labels(reason).inc()
        log.info("Delivery %s suppressed before sending: %s.", delivery.id, reason)
        return "suppressed"
    text = _outbound_text(delivery.message.clinic, delivery)
    if text.expires_at <= utcnow():
        # Past its validity a reminder may be wrong or misleading, so it is not sent late.
        if status.advance(delivery, "failed", "expired", category="temporary"):
            stats.record(delivery, "failed", "temporary")
        log.info("Delivery %s expired before it could be sent.", delivery.id)
        return "expired"
    return text


def _call_provider(clinic, text):
    # The adapter is made first: a process's first text of a provider imports its SDK (about
    # 1.4 s for Bandwidth's), which would make the text reach the provider long after its slot.
    adapter = _adapter(clinic)
    # Last step before the provider call, so the provider receives the text at its reserved slot.
    pacing.wait_for_turn(clinic.sender_number)
    return adapter.send(text)


def _call_all(calls):
    """Make every ``(clinic, text)`` provider call and return ``[(result, error)]`` in the same order.

    The calls run on the process's send threads. Adapters are made here first, because they
    read the app's settings, and each thread pushes its own app context for pacing.
    """
    adapters = {clinic.id: _adapter(clinic) for clinic, _text in calls}
    app = current_app._get_current_object()

    def call(item):
        clinic, text = item
        with app.app_context():
            pacing.wait_for_turn(clinic.sender_number)
        try:
            return adapters[clinic.id].send(text), None
        except (ProviderError, ProviderUnreachable) as exc:
            return None, exc

    if len(calls) == 1:
        return [call(calls[0])]
    return list(_send_threads(app.config["PAWPOST_SEND_CONCURRENCY"]).map(call, calls))


_executor = None
_executor_lock = threading.Lock()


def _send_threads(size):
    """Return the process's pool of send threads, made on first use."""
    global _executor
    with _executor_lock:
        if _executor is None:
            _executor = ThreadPoolExecutor(max_workers=size, thread_name_prefix="send")
    return _executor


def _record_failed_call(clinic, delivery, exc):
    if isinstance(exc, ProviderError):
        return _record_rejection(clinic, delivery, exc)
    # The provider may have the message, so the reconciler looks it up before any resend.
    log.warning("Provider call for delivery %s failed with no response (%s); left for the reconciler.", delivery.id, exc)
    return "unconfirmed"


def _record_accepted_many(accepted):
    """Move every ``(delivery, result)`` of a batch to ``accepted`` with two statements in all.

    The conditions are those of ``status.advance``: a callback that arrived first keeps its
    later status, and the provider's id is kept either way.
    """
    if not accepted:
        return
    table = Delivery.__table__
    now = utcnow()
    connection = db.session.connection()
    connection.execute(
        update(table)
        .where(
            table.c.id == bindparam("b_id"),
            table.c.status_rank < STATUS_RANK["accepted"],
            table.c.attempts == bindparam("b_attempts"),
            table.c.next_attempt_at.is_(None),
        )
        .values(status="accepted", status_rank=STATUS_RANK["accepted"], updated_at=bindparam("b_now")),
        [{"b_id": delivery.id, "b_attempts": delivery.attempts, "b_now": now} for delivery, _result in accepted],
    )
    connection.execute(
        update(table)
        .where(table.c.id == bindparam("b_id"), table.c.provider_message_id.is_(None))
        .values(provider_message_id=bindparam("b_provider_id")),
        [{"b_id": delivery.id, "b_provider_id": result.provider_message_id} for delivery, result in accepted],
    )


def _count_accepted(clinic, delivery, result):
    metrics.SENDS.labels(clinic.provider, delivery.channel).inc()
    if delivery.channel == "pointer" and delivery.attempts == 1:
        # The pointer row is created by the callback that reported the filter.
        metrics.CALLBACK_TO_FALLBACK.observe((utcnow() - delivery.created_at).total_seconds())
    log.info("Delivery %s accepted by %s as %s.", delivery.id, clinic.provider, result.provider_message_id)


def send_email(delivery_id):
    """Email one message to its client with a sign-in link to the Pet Portal, once per attempt."""
    delivery = _claimed(delivery_id)
    if delivery is None:
        return "skipped"
    message = delivery.message
    reason = mail.skip_reason(message.client)
    if reason is not None:
        return _suppress(delivery, reason)

    email = mail.notification(message, _portal_link(message, "email"))
    # The link's token is stored before the email that carries it leaves.
    db.session.commit()
    try:
        email_id = mail.send_mail(message.client.email, **email)
    except mail.MailError as exc:
        log.warning("Email delivery %s of message %s failed: %s", delivery.id, message.id, exc)
        return _fail_notification(delivery, exc.code, exc.category, exc.temporary)

    status.advance(delivery, "delivered")
    db.session.commit()
    log.info("Email delivery %s of message %s sent as %s.", delivery.id, message.id, email_id)
    return "delivered"


def send_push(delivery_id):
    """Send one message's Web Push notification to each browser of its client, once per attempt.

    The delivery counts as delivered when at least one browser's push service took it.
    """
    delivery = _claimed(delivery_id)
    if delivery is None:
        return "skipped"
    message = delivery.message
    reason = push.skip_reason(message.client)
    if reason is not None:
        return _suppress(delivery, reason)

    outcome = push.notify(message)
    if outcome.delivered:
        status.advance(delivery, "delivered")
        db.session.commit()
        log.info("Push delivery %s of message %s reached %s browsers.", delivery.id, message.id, outcome.delivered)
        return "delivered"
    if not outcome.failures:
        # Every subscription was gone and is now deleted, so a retry has nowhere to go.
        status.advance(delivery, "failed", "gone", category="subscription_gone")
        db.session.commit()
        log.info("Push delivery %s of message %s failed: every subscription is gone.", delivery.id, message.id)
        return "failed"
    temporary_codes = [code for code, temporary in outcome.failures if temporary]
    if temporary_codes:
        return _fail_notification(delivery, temporary_codes[0], "temporary", True)
    return _fail_notification(delivery, outcome.failures[0][0], "rejected", False)


def _suppress(delivery, reason):
    status.advance(delivery, "suppressed", category=reason)
    db.session.commit()
    log.info("Delivery %s (%s) not sent: %s.", delivery.id, delivery.channel, reason)
    return "suppressed"


def _fail_notification(delivery, code, category, temporary):
    """Record a failed email or push attempt, and queue the next one when the failure is temporary.

    Retries use the SMS backoff (policy.backoff_seconds) and the delivery's own max_attempts.
    """
    status.advance(delivery, "failed", code, category=category)
    when = None
    if temporary and delivery.attempts < delivery.max_attempts:
        when = utcnow() + timedelta(seconds=policy.backoff_seconds(delivery.attempts))
    if when is not None and policy.schedule_retry(delivery, when):
        db.session.commit()
        queues.enqueue_send(delivery, when)
        log.info(
            "Delivery %s (%s) will retry at %s (attempt %s of %s).",
            delivery.id, delivery.channel, when.isoformat(), delivery.attempts + 1, delivery.max_attempts,
        )
        return "retrying"
    db.session.commit()
    log.warning("Delivery %s (%s) failed with %s (%s); no attempt is left.", delivery.id, delivery.channel, code, category)
    return "failed"


def _look_up_line_type(clinic, number):
    """Check an unknown number's line type before its first text, when lookups are on.

    The lookup job queued for a new client may not have run yet, so the first send checks too,
    and a landline never gets a text. A failed lookup lets the text go, as without lookups.
    """
    if clinic.provider != "twilio" or not current_app.config["PAWPOST_LINE_TYPE_LOOKUP"]:
        return
    if db.session.execute(db.select(PhoneLine.id).where(PhoneLine.number == number)).first():
        return
    try:
        line_type = _adapter(clinic).line_type(number)
    except (ProviderError, ProviderUnreachable) as exc:
        log.warning("Line-type lookup before sending failed (%s); sending anyway.", exc)
        return
    if line_type in ("landline", "mobile"):
        policy.record_line_type(number, line_type, "lookup", f"{clinic.provider} lookup")
        db.session.commit()


def _claimed(delivery_id):
    """Claim a delivery and return it, or return None when another worker has it or it is done."""
    if not claim(delivery_id):
        log.info("Delivery %s is not queued; another worker has it or it is done.", delivery_id)
        return None
    return db.session.get(Delivery, delivery_id)


def claim_many(delivery_ids):
    """Claim every queued delivery of ``delivery_ids`` as ``claim`` does; return the ids claimed."""
    statement = (
        update(Delivery)
        .where(Delivery.id.in_(delivery_ids), Delivery.status == "queued")
        .values(**_claim_values())
        .returning(Delivery.id)
        .execution_options(synchronize_session=False)
    )
    claimed = sorted(db.session.execute(statement).scalars())
    db.session.commit()
    skipped = len(delivery_ids) - len(claimed)
    if skipped:
        log.info("%s of %s deliveries of a batch were not queued; another worker has them or they are done.", skipped, len(delivery_ids))
    return claimed


def _claim_values():
    now = utcnow()
    return {
        "status": "sending",
        "status_rank": STATUS_RANK["sending"],
        "attempts": Delivery.attempts + 1,
        "claimed_at": now,
        "next_attempt_at": None,
        "updated_at": now,
    }


def claim(delivery_id):
    """Move a queued delivery to ``sending`` and count the attempt; return False if it was not queued.

    This single conditional UPDATE is what lets two workers run the same job without two
    provider calls: only one of them changes the row.
    """
    statement = (
        update(Delivery)
        .where(Delivery.id == delivery_id, Delivery.status == "queued")
        .values(**_claim_values())
        .execution_options(synchronize_session=False)
    )
    claimed = db.session.execute(statement).rowcount == 1
    db.session.commit()
    return claimed


def _adapter(clinic):
    return providers.for_clinic(
        clinic,
        sandbox_url=current_app.config["PAWPOST_SANDBOX_URL"],
        timeout=current_app.config["PAWPOST_SEND_TIMEOUT_SECONDS"],
        connections=current_app.config["PAWPOST_SEND_CONCURRENCY"],
    )


def _outbound_text(clinic, delivery):
    message = delivery.message
    validity = timedelta(seconds=current_app.config["PAWPOST_SMS_VALIDITY_SECONDS"])
    body, media_urls = _body_for(delivery), []
    files = [a for a in message.attachments if a.storage_key] if delivery.channel == "sms" else []
    if files and (clinic.provider == "twilio" or clinic.mms_enabled):
        media_urls = [outbound_media.signed_url(a.id) for a in files]
    elif files:
        # Without MMS on the clinic's Bandwidth account, photos wait in the Pet Portal.
        body = f"{body}\n\n{_media_pointer(message, len(files))}".strip()
    return OutboundText(
        to=message.client.mobile_number,
        sender=clinic.sender_number,
        body=body,
        media_urls=media_urls,
        status_callback=_twilio_callback_url(clinic, delivery) if clinic.provider == "twilio" else None,
        tag=status.format_ref(delivery.id, delivery.attempts),
        expires_at=(message.send_at or message.created_at) + validity,
    )


def _body_for(delivery):
    if delivery.channel != "pointer":
        return delivery.message.body
    message = delivery.message
    return pointer_text(message.clinic.name, _portal_link(message, "pointer"))


def _portal_link(message, purpose):
    """Add a single-use sign-in token for ``message`` to the session and return the link carrying it."""
    token, raw = PortalToken.issue(
        client_id=message.client_id,
        message_id=message.id,
        purpose=purpose,
        days=current_app.config["PAWPOST_PORTAL_TOKEN_DAYS"],
    )
    db.session.add(token)
    return f"{current_app.config['PAWPOST_BASE_URL']}/p/{raw}"


def _media_pointer(message, count):
    token, raw = PortalToken.issue(
        client_id=message.client_id,
        message_id=message.id,
        purpose="media",
        days=current_app.config["PAWPOST_PORTAL_TOKEN_DAYS"],
    )
    db.session.add(token)
    noun = "photo" if count == 1 else f"{count} photos"
    return f"See the {noun} in your Pet Portal: {current_app.config['PAWPOST_BASE_URL']}/p/{raw}"


def _twilio_callback_url(clinic, delivery):
    base = current_app.config["PAWPOST_BASE_URL"]
    ref = status.format_ref(delivery.id, delivery.attempts)
    return f"{base}/webhooks/twilio/{clinic.id}/status?ref={ref}"


def _record_rejection(clinic, delivery, exc):
    log.warning("Provider rejected delivery %s with code %s.", delivery.id, exc.code)
    status.advance(delivery, "failed", exc.code)
    followups = status.settle(clinic, delivery)
    db.session.commit()
    queues.enqueue_followups(followups)
    return "failed"


def fetch_attachments(message_id):
    """Download and store every attachment of an inbound message that is not stored yet."""
    message = db.session.get(Message, message_id)
    if message is None:
        return "missing"
    adapter = _adapter(message.clinic)
    for attachment in message.attachments:
        if attachment.storage_key or not attachment.source_url:
            continue
        try:
            data = adapter.fetch_media(attachment.source_url, media.MAX_MEDIA_BYTES)
            attachment.storage_key, attachment.content_type = media.store(
                message.clinic_id, message.id, attachment.position, data
            )
        except (ProviderError, media.MediaRejected) as exc:
            # Kept as a row without a file, so staff see that an attachment could not be kept.
            log.warning("Attachment %s of message %s was not stored: %s.", attachment.position, message.id, exc)
            attachment.source_url = None
            continue
        attachment.size_bytes = len(data)
        attachment.fetched_at = utcnow()
        # The provider's URL is no longer needed and carries account ids.
        attachment.source_url = None
        db.session.commit()
    db.session.commit()
    return "stored"


def check_line_type(client_id):
    """Look up a client's line type at the provider and remember a landline before any text fails."""
    client = db.session.get(Client, client_id)
    if client is None:
        return "missing"
    if db.session.execute(db.select(PhoneLine.id).where(PhoneLine.number == client.mobile_number)).first():
        # The first send already looked the number up.
        return "known"
    try:
        line_type = _adapter(client.clinic).line_type(client.mobile_number)
    except (ProviderError, ProviderUnreachable) as exc:
        log.warning("Line-type lookup for client %s failed (%s); texts will tell instead.", client.id, exc)
        return "failed"
    if line_type in ("landline", "mobile"):
        policy.record_line_type(client.mobile_number, line_type, "lookup", f"{client.clinic.provider} lookup")
        db.session.commit()
    log.info("Line-type lookup for client %s: %s.", client.id, line_type)
    return line_type or "unknown"
