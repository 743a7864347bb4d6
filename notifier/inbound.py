"""Store text messages that clients send to a clinic's number."""

import json
import logging

from sqlalchemy.exc import IntegrityError

from notifier.phone import InvalidPhoneNumber, normalize
from notifier.sending import find_or_create_client
from portal.extensions import db
from portal.models import Message, ProviderEvent

log = logging.getLogger(__name__)


def store_inbound(clinic, provider, provider_message_id, from_number, body, media_urls, payload):
    """Log the raw event and add the reply to the client's conversation; return the message or None.

    A repeated webhook for the same provider message id is logged and stores no second message.
    """
    outcome, message = "stored", None
    try:
        normalize(from_number, clinic.country)
    except InvalidPhoneNumber:
        outcome = "unmatched"
    if outcome == "stored":
        client = find_or_create_client(clinic, from_number)
        message = Message(
            clinic_id=clinic.id,
            client_id=client.id,
            direction="inbound",
            body=body or "",
            source="client",
            provider_message_id=provider_message_id,
        )
        try:
            with db.session.begin_nested():
                db.session.add(message)
        except IntegrityError:
            outcome, message = "duplicate", None

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
    log.info("Inbound %s message for clinic %s: %s (%s media).", provider, clinic.id, outcome, len(media_urls))
    return message
