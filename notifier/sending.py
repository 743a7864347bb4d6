"""Create outbound messages: stored with one delivery per channel before any job is queued."""

import logging
import unicodedata

from flask import current_app
from sqlalchemy.exc import IntegrityError

from notifier import mail, media, push, queues
from notifier.phone import InvalidPhoneNumber, normalize
from portal.extensions import db
from portal.models import FINAL_RANK, Attachment, Client, Delivery, Message, utcnow

log = logging.getLogger(__name__)

MAX_ATTEMPTS_SETTINGS = {"email": "PAWPOST_EMAIL_MAX_ATTEMPTS", "push": "PAWPOST_PUSH_MAX_ATTEMPTS"}

# Twilio rejects longer bodies (error 21617); Bandwidth allows 2048, so the lower limit wins.
MAX_BODY_CHARS = 1600


class InvalidMessage(ValueError):
    """The message cannot be sent as given; the text names the value and the fix."""

    def __init__(self, field, text):
        super().__init__(text)
        self.field = field


def extension_message(raw_number):
    """Return the error for a number with an extension: an office line, which Pawpost never texts."""
    return f"The phone number {raw_number!r} has an extension, so it cannot receive texts. Give the client's mobile number."


def has_visible_text(text):
    """Return True when ``text`` has a character that shows: not only spaces and invisible format characters."""
    return any(not char.isspace() and unicodedata.category(char) != "Cf" for char in text)


def validate_body(body):
    """Return ``body`` stripped, or raise InvalidMessage when it shows nothing or is too long."""
    if not isinstance(body, str) or not has_visible_text(body):
        raise InvalidMessage(
            "body",
            "The message body is empty or only spaces and invisible characters. Write the text to send, or attach a photo.",
        )
    body = body.strip()
    if len(body) > MAX_BODY_CHARS:
        raise InvalidMessage(
            "body",
            f"The message body is {len(body)} characters long; the limit is {MAX_BODY_CHARS}. Shorten it.",
        )
    return body


def find_or_create_client(clinic, raw_number, name=""):
    """Return ``(client, created)`` for the clinic's client with this number, creating one if none exists."""
    try:
        e164, extension = normalize(raw_number, clinic.country)
    except InvalidPhoneNumber as exc:
        raise InvalidMessage("to", str(exc)) from None
    if extension:
        raise InvalidMessage("to", extension_message(raw_number))

    client = _client_by_number(clinic, e164)
    if client is not None:
        return client, False
    client = Client(clinic_id=clinic.id, mobile_number=e164, name=name or "")
    try:
        with db.session.begin_nested():
            db.session.add(client)
    except IntegrityError:
        # Another request created the same client a moment ago.
        return _client_by_number(clinic, e164), False
    return client, True


def check_new_number(client):
    """Queue a line-type lookup for a new number when the clinic's provider offers one.

    Call after the client is committed. Only Twilio has a lookup (Lookup v2), and it is paid,
    so it runs only with PAWPOST_LINE_TYPE_LOOKUP on.
    """
    if client.clinic.provider == "twilio" and current_app.config["PAWPOST_LINE_TYPE_LOOKUP"]:
        queues.enqueue_line_type_check(client.id)


def _client_by_number(clinic, e164):
    return db.session.execute(
        db.select(Client).where(Client.clinic_id == clinic.id, Client.mobile_number == e164)
    ).scalar_one_or_none()


def send_message(client, body, source, author=None, uploads=(), send_at=None):
    """Store a message to ``client`` with one delivery per channel, commit, then queue each send.

    Email and push deliveries are added for a client who turned them on. Each has its own job,
    queue and retries, so nothing that happens to the SMS changes them.

    ``uploads`` are ``(name, data, content_type)`` triples already checked against the provider's
    limits; they are stored before anything is queued. ``send_at`` (aware UTC) delays every
    channel until then.
    """
    message = store_message(client, body, source, author, uploads, send_at)
    db.session.commit()
    enqueue_deliveries(message)
    return message


def store_message(client, body, source, author=None, uploads=(), send_at=None):
    """Add a message with its deliveries to the session and flush, without committing or queueing.

    The caller commits, then calls ``enqueue_deliveries``. The API uses the gap to store its
    idempotent response in the same transaction.
    """
    body = body.strip() if uploads and isinstance(body, str) and not body.strip() else validate_body(body)
    if send_at is not None and send_at <= utcnow():
        send_at = None
    message = Message(
        clinic_id=client.clinic_id, client_id=client.id, body=body, source=source, author=author, send_at=send_at
    )
    db.session.add(message)
    db.session.flush()
    for position, (_name, data, _content_type) in enumerate(uploads):
        key, content_type = media.store(client.clinic_id, message.id, position, data)
        message.attachments.append(
            Attachment(position=position, storage_key=key, content_type=content_type, size_bytes=len(data), fetched_at=utcnow())
        )
    # Decided before the deliveries exist, since the checks query the database.
    channels = _notification_channels(client, source)
    sms = Delivery(
        message=message,
        channel="sms",
        provider=client.clinic.provider,
        max_attempts=current_app.config["PAWPOST_SMS_MAX_ATTEMPTS"],
    )
    # Every message is readable in the Pet Portal from the start.
    portal = Delivery(
        message=message, channel="portal", status="delivered", status_rank=FINAL_RANK, final_at=utcnow()
    )
    notifications = [
        Delivery(message=message, channel=channel, max_attempts=current_app.config[MAX_ATTEMPTS_SETTINGS[channel]])
        for channel in channels
    ]
    for delivery in (sms, *notifications):
        # The reconciler leaves a delivery alone until this time.
        delivery.next_attempt_at = send_at
    db.session.add_all([message, sms, portal, *notifications])
    db.session.flush()
    return message


def enqueue_deliveries(message):
    """Queue the send job of each queued delivery of a committed message, at its ``send_at`` if set."""
    sms = message.delivery("sms")
    log.info("Message %s stored for clinic %s with SMS delivery %s.", message.id, message.clinic_id, sms.id if sms else None)
    for delivery in message.deliveries:
        if delivery.status != "queued":
            continue
        if delivery.channel != "sms":
            log.info("Message %s also goes by %s as delivery %s.", message.id, delivery.channel, delivery.id)
        queues.enqueue_send(delivery, at=message.send_at)


def _notification_channels(client, source):
    # Replies to keywords (STOP, HELP) respond to a text, so they go back by text only.
    if source == "keyword":
        return []
    checks = {"email": mail.skip_reason, "push": push.skip_reason}
    return [channel for channel, skip_reason in checks.items() if skip_reason(client) is None]
