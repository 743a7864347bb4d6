"""Store text messages that clients send to a clinic's number, and act on their keywords."""

import json
import logging

from sqlalchemy.exc import IntegrityError

from notifier import keywords, policy
from notifier.phone import InvalidPhoneNumber, normalize
from notifier.sending import find_or_create_client
from portal.extensions import db
from portal.inputs import storable_text
from portal.models import Attachment, Clinic, Message, ProviderEvent

log = logging.getLogger(__name__)

OPT_OUT_REPLY = "{clinic}: you are unsubscribed and will get no more texts from this number. Reply START to resubscribe."
OPT_IN_REPLY = "{clinic}: you are subscribed to texts again. Reply STOP to unsubscribe."


def store_inbound(clinic, provider, provider_message_id, from_number, body, media_urls, payload):
    """Log the raw event and add the reply to the client's conversation; return the new message or None.

    A repeated webhook for the same provider message id is logged and stores nothing twice, and a
    message from one of Pawpost's own sender numbers is never taken as a client's reply.
    """
    # The database cannot store a NUL or a lone surrogate, and a rejected webhook would only be retried.
    provider_message_id, from_number, body = (storable_text(value) for value in (provider_message_id, from_number, body))
    media_urls = [storable_text(url) for url in media_urls]
    outcome, message = _check_sender(from_number, clinic), None
    if outcome is None:
        message = _new_message(clinic, provider_message_id, from_number, body, media_urls)
        outcome = "stored" if message is not None else "duplicate"

    db.session.add(
        ProviderEvent(
            clinic_id=clinic.id,
            provider=provider,
            kind="inbound",
            provider_message_id=provider_message_id,
            status="received",
            outcome=outcome,
            payload=json.dumps(payload, sort_keys=True),
        )
    )
    log.info(
        "Inbound %s message %s for clinic %s: %s (%s media).",
        provider, message.id if message else None, clinic.id, outcome, len(media_urls),
    )
    return message


def _check_sender(from_number, clinic):
    try:
        e164, _extension = normalize(from_number, clinic.country)
    except InvalidPhoneNumber:
        return "unmatched"
    own = db.session.execute(db.select(Clinic.id).where(Clinic.sender_number == e164).limit(1)).first()
    return "loop" if own else None


def _new_message(clinic, provider_message_id, from_number, body, media_urls):
    client, _created = find_or_create_client(clinic, from_number)
    message = Message(
        clinic_id=clinic.id,
        client_id=client.id,
        direction="inbound",
        body=body or "",
        source="client",
        provider_message_id=provider_message_id,
        keyword=keywords.match(body),
    )
    message.attachments = [Attachment(position=i, source_url=url) for i, url in enumerate(media_urls)]
    try:
        with db.session.begin_nested():
            db.session.add(message)
    except IntegrityError:
        return None
    return message


def act_on_keyword(message):
    """Record the consent a keyword changes and queue the reply it needs; return the reply or None.

    Call after the inbound message is committed. A clinic whose provider replies to keywords itself
    (Twilio long codes) gets no second reply from Pawpost.
    """
    from notifier.sending import send_message

    clinic, client = message.clinic, message.client
    was_opted_out = policy.suppression_reason(clinic, client.mobile_number) == "opted_out"
    if message.keyword in ("opt_out", "opt_in"):
        opted_out = message.keyword == "opt_out"
        policy.record_consent(
            clinic.sender_number, client.mobile_number, opted_out, "keyword" if opted_out else "client_opt_in", message.id
        )
        db.session.commit()
        log.info("Client %s %s texts from clinic %s.", client.id, "opted out of" if opted_out else "opted back in to", clinic.id)
    if clinic.provider_handles_keywords or message.keyword not in ("opt_out", "opt_in", "help"):
        return None
    if message.keyword == "opt_in" and not was_opted_out:
        # YES is also the everyday reply to "Reply YES to confirm", so only a real opt-in is confirmed.
        return None
    if message.keyword == "opt_out" and was_opted_out:
        # The opt-out was confirmed when it was made; a repeated STOP gets no second text.
        log.info("Client %s repeated an opt-out from clinic %s; no second confirmation.", client.id, clinic.id)
        return None
    text = {"opt_out": OPT_OUT_REPLY, "opt_in": OPT_IN_REPLY}.get(message.keyword, "").format(clinic=clinic.name)
    return send_message(client, text or clinic.help_reply, source="keyword")
