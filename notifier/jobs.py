"""RQ jobs. Each takes ids, reloads its rows and is safe to run twice."""

import logging
from datetime import timedelta

from flask import current_app
from sqlalchemy import update

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
    message = delivery.message
    clinic = message.clinic
    if message.source != "keyword":
        _look_up_line_type(clinic, message.client.mobile_number)
    reason = None if message.source == "keyword" else policy.suppression_reason(clinic, message.client.mobile_number)
    if reason is not None:
        # No provider call: the portal copy and other channels carry the message.
        status.advance(delivery, "suppressed", category=reason)
        db.session.commit()
        metrics.SUPPRESSED.labels(reason).inc()
        log.info("Delivery %s suppressed before sending: %s.", delivery.id, reason)
        return "suppressed"

    text = _outbound_text(clinic, delivery)
    if text.expires_at <= utcnow():
        # Past its validity a reminder may be wrong or misleading, so it is not sent late.
        if status.advance(delivery, "failed", "expired", category="temporary"):
            stats.record(delivery, "failed", "temporary")
        db.session.commit()
        log.info("Delivery %s expired before it could be sent.", delivery.id)
        return "expired"
    db.session.commit()
    # Last step before the provider call, so the provider receives the text at its reserved slot.
    pacing.wait_for_turn(clinic.sender_number)
    try:
        result = _adapter(clinic).send(text)
    except ProviderError as exc:
        return _record_rejection(clinic, delivery, exc)
    except ProviderUnreachable as exc:
        # The provider may have the message, so the reconciler looks it up before any resend.
        log.warning("Provider call for delivery %s failed with no response (%s); left for the reconciler.", delivery.id, exc)
        return "unconfirmed"

    status.advance(delivery, "accepted", provider_message_id=result.provider_message_id)
    db.session.commit()
    metrics.SENDS.labels(clinic.provider, delivery.channel).inc()
    if delivery.channel == "pointer" and delivery.attempts == 1:
        # The pointer row is created by the callback that reported the filter.
        metrics.CALLBACK_TO_FALLBACK.observe((utcnow() - delivery.created_at).total_seconds())
    log.info("Delivery %s accepted by %s as %s.", delivery.id, clinic.provider, result.provider_message_id)
    return "accepted"


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


def claim(delivery_id):
    """Move a queued delivery to ``sending`` and count the attempt; return False if it was not queued.

    This single conditional UPDATE is what lets two workers run the same job without two
    provider calls: only one of them changes the row.
    """
    statement = (
        update(Delivery)
        .where(Delivery.id == delivery_id, Delivery.status == "queued")
        .values(
            status="sending",
            status_rank=STATUS_RANK["sending"],
            attempts=Delivery.attempts + 1,
            claimed_at=utcnow(),
            next_attempt_at=None,
            updated_at=utcnow(),
        )
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
