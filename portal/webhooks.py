"""Provider webhooks: Twilio status and inbound callbacks, Bandwidth message events.

Nothing in a request is trusted until it is authenticated against the clinic named in the
URL: Twilio requests by their signature over our public URL, Bandwidth requests by the basic-auth
pair set on the clinic's messaging application. Anything else gets 403 and changes nothing.
"""

import hmac
import logging

from flask import Blueprint, abort, current_app, request, send_file
from flask.sessions import SecureCookieSessionInterface
from twilio.request_validator import RequestValidator

from notifier import media, outbound_media, queues, status_queue
from notifier.inbound import act_on_keyword, store_inbound
from notifier.status import StatusEvent, apply_event, parse_ref
from portal import webhook_credentials
from portal.extensions import csrf, db
from portal.models import Attachment, Clinic

log = logging.getLogger(__name__)
bp = Blueprint("webhooks", __name__, url_prefix="/webhooks")
csrf.exempt(bp)

# Bandwidth batches events; a larger array is refused rather than processed half-way.
MAX_BANDWIDTH_EVENTS = 100
EMPTY_TWIML = '<?xml version="1.0" encoding="UTF-8"?><Response></Response>'
# Provider callbacks are a few kilobytes; a larger body is refused before it is read.
MAX_WEBHOOK_BYTES = 256 * 1024


class BrowserSessionInterface(SecureCookieSessionInterface):
    """Flask's signed-cookie sessions for browser requests. Provider webhooks get none.

    Providers send no cookies, so opening a session for each of their many callbacks would only
    cost time. A webhook that tried to store something in the session would raise an error.
    """

    def open_session(self, app, request):
        if request.path.startswith(bp.url_prefix + "/"):
            return self.null_session_class()
        return super().open_session(app, request)


@bp.before_request
def limit_body():
    if request.path.startswith("/webhooks/media/"):
        return None
    if request.content_length is None and request.headers.get("Transfer-Encoding"):
        abort(400, "Send the callback with a Content-Length header.")
    if (request.content_length or 0) > MAX_WEBHOOK_BYTES:
        abort(400, f"The body is {request.content_length} bytes; callbacks may be at most {MAX_WEBHOOK_BYTES}.")
    return None


@bp.post("/twilio/<int:clinic_id>/status")
def twilio_status(clinic_id):
    """Apply a Twilio message status callback."""
    credentials = _twilio_clinic_or_403(clinic_id)
    form = request.form
    if not form.get("MessageSid") or not form.get("MessageStatus"):
        abort(400, "MessageSid and MessageStatus are required.")

    delivery_id, attempt = parse_ref(request.args.get("ref"))
    event = StatusEvent(
        provider="twilio",
        provider_status=form["MessageStatus"],
        provider_message_id=form["MessageSid"][:64],
        error_code=_error_code(form.get("ErrorCode")),
        delivery_id=delivery_id,
        attempt=attempt,
        payload=form.to_dict(flat=False),
    )
    if not _queued(credentials.clinic_id, [event]):
        followups = apply_event(credentials.clinic_id, event)
        db.session.commit()
        queues.enqueue_followups(followups)
    return "", 200


@bp.post("/twilio/<int:clinic_id>/inbound")
def twilio_inbound(clinic_id):
    """Store a text a client sent to a Twilio clinic's number; reply with empty TwiML."""
    clinic = db.session.get(Clinic, _twilio_clinic_or_403(clinic_id).clinic_id)
    form = request.form
    if not form.get("MessageSid") or not form.get("From"):
        abort(400, "MessageSid and From are required.")

    media = [form[f"MediaUrl{i}"] for i in range(_int(form.get("NumMedia"))) if form.get(f"MediaUrl{i}")]
    message = store_inbound(
        clinic, "twilio", form["MessageSid"][:64], form["From"], form.get("Body", ""), media,
        form.to_dict(flat=False),
    )
    db.session.commit()
    _after_inbound([message])
    return EMPTY_TWIML, 200, {"Content-Type": "text/xml"}


@bp.post("/bandwidth/<int:clinic_id>/messages")
def bandwidth_messages(clinic_id):
    """Store the inbound messages of a Bandwidth callback array, and queue or apply its status events."""
    credentials = _bandwidth_clinic_or_403(clinic_id)
    events = _bandwidth_events()
    from bandwidth.models.inbound_callback import InboundCallback

    statuses = [_bandwidth_status_event(raw, parsed) for raw, parsed in events if not isinstance(parsed, InboundCallback)]
    queued = bool(statuses) and _queued(credentials.clinic_id, statuses)
    followups, inbound = [], []
    for raw, parsed in events:
        if isinstance(parsed, InboundCallback):
            clinic = db.session.get(Clinic, credentials.clinic_id)
            inbound.append(_store_bandwidth_inbound(clinic, raw, parsed))
        elif not queued:
            followups.extend(apply_event(credentials.clinic_id, _bandwidth_status_event(raw, parsed)))
    db.session.commit()
    queues.enqueue_followups(followups)
    _after_inbound(inbound)
    return "", 200


def _queued(clinic_id, events):
    """Queue status ``events`` for the workers' appliers; return False when they must be applied now.

    They are applied in the request when the queue is off or Redis does not take them.
    """
    return status_queue.enabled() and status_queue.push(clinic_id, events)


def _after_inbound(messages):
    """Act on keywords and fetch attachments of newly stored inbound messages."""
    for message in messages:
        if message is None:
            continue
        act_on_keyword(message)
        if message.attachments:
            queues.enqueue_media_fetch(message.id)


@bp.route("/media/<token>", methods=["GET", "HEAD"])
def provider_media(token):
    """Serve an outbound attachment to the provider that fetches it; the signed URL is the only key."""
    attachment_id = outbound_media.attachment_id_from(token)
    found = db.session.get(Attachment, attachment_id) if attachment_id else None
    if found is None or not found.storage_key:
        abort(404)
    return send_file(media.path_for(found.storage_key), mimetype=found.content_type, max_age=0)


def _twilio_clinic_or_403(clinic_id):
    """Return the credentials of the Twilio clinic whose auth token signed this request, or abort with 403."""
    signature = request.headers.get("X-Twilio-Signature", "")
    if not signature:
        log.warning("Rejected Twilio webhook for clinic %s: no signature.", clinic_id)
        abort(403)
    credentials, reason = webhook_credentials.authenticate(clinic_id, lambda found: _twilio_rejection(found, signature))
    if credentials is None:
        log.warning("Rejected Twilio webhook for clinic %s: %s.", clinic_id, reason)
        abort(403)
    return credentials


def _twilio_rejection(credentials, signature):
    if credentials.provider != "twilio" or not credentials.twilio_auth_token:
        return "not a Twilio clinic"
    if not _twilio_signature_matches(credentials.twilio_auth_token, signature):
        return "signature does not match"
    if request.form.get("AccountSid") not in (None, credentials.twilio_account_sid):
        return "AccountSid belongs to another account"
    return None


def _twilio_signature_matches(auth_token, signature):
    validator = RequestValidator(auth_token)
    url = _public_url()
    # Twilio signs the URL as configured, with the form's fields. That one signature settles nearly
    # every callback; validate() also tries the URL with and without its port, and bodySHA256.
    expected = validator.compute_signature(url, request.form)
    if hmac.compare_digest(expected.encode(), signature.encode()):
        return True
    return validator.validate(url, request.form, signature)


def _public_url():
    # Twilio signs the URL it called, which is our public base URL, not the address a proxy used.
    url = current_app.config["PAWPOST_BASE_URL"] + request.path
    query = request.query_string.decode("latin-1")
    return f"{url}?{query}" if query else url


def _bandwidth_clinic_or_403(clinic_id):
    """Return the credentials of the Bandwidth clinic whose basic-auth pair this request carries, or abort with 403."""
    auth = request.authorization
    credentials = None
    if auth is not None and auth.type == "basic":
        credentials, _reason = webhook_credentials.authenticate(clinic_id, lambda found: _bandwidth_rejection(found, auth))
    if credentials is None:
        log.warning("Rejected Bandwidth webhook for clinic %s: credentials missing or wrong.", clinic_id)
        abort(403)
    return credentials


def _bandwidth_rejection(credentials, auth):
    if (
        credentials.provider != "bandwidth"
        or not credentials.webhook_username
        or not credentials.webhook_password
        or not _same(auth.username, credentials.webhook_username)
        or not _same(auth.password, credentials.webhook_password)
    ):
        return "credentials missing or wrong"
    return None


def _same(given, expected):
    return hmac.compare_digest((given or "").encode(), (expected or "").encode())


def _bandwidth_events():
    """Parse and validate the whole array first, so a bad event stores nothing of the batch."""
    # The Bandwidth SDK loads all of its Pydantic models (about 24 MB of RSS), so only processes
    # that receive Bandwidth callbacks import it.
    from bandwidth.models.inbound_callback import InboundCallback
    from bandwidth.models.status_callback import StatusCallback
    from pydantic import ValidationError

    body = request.get_json(silent=True)
    if not isinstance(body, list) or not body:
        abort(400, "The body must be a non-empty JSON array of Bandwidth message events.")
    if len(body) > MAX_BANDWIDTH_EVENTS:
        abort(400, f"The array has {len(body)} events; the limit is {MAX_BANDWIDTH_EVENTS}.")
    parsed = []
    for index, raw in enumerate(body):
        if not isinstance(raw, dict):
            abort(400, f"Event {index} is not a JSON object.")
        model = InboundCallback if raw.get("type") == "message-received" else StatusCallback
        try:
            parsed.append((raw, model.from_dict(raw)))
        except (ValidationError, ValueError) as exc:
            log.warning("Bandwidth event %s is invalid: %s error(s).", index, _error_count(exc))
            abort(400, f"Event {index} is not a valid Bandwidth message event.")
    return parsed


def _error_count(exc):
    from pydantic import ValidationError

    return exc.error_count() if isinstance(exc, ValidationError) else 1


def _bandwidth_status_event(raw, parsed):
    delivery_id, attempt = parse_ref(parsed.message.tag)
    return StatusEvent(
        provider="bandwidth",
        provider_status=raw.get("type"),
        provider_message_id=parsed.message.id[:64],
        error_code=_error_code(parsed.error_code),
        delivery_id=delivery_id,
        attempt=attempt,
        payload=raw,
    )


def _error_code(value):
    # Error code columns hold 16 characters. A longer code is no provider's, and the raw
    # value stays in the stored payload.
    text = str(value) if value is not None else ""
    return text[:16] or None


def _store_bandwidth_inbound(clinic, raw, parsed):
    message = parsed.message
    # Only messages coming in count; an outbound echo must never become a client reply.
    if message.direction and str(getattr(message.direction, "value", message.direction)) != "in":
        log.warning("Ignored Bandwidth message-received event with direction %s.", message.direction)
        return None
    return store_inbound(
        clinic, "bandwidth", message.id[:64], message.var_from, message.text or "",
        list(message.media or []), raw,
    )


def _int(value):
    try:
        return max(0, min(int(value or 0), 10))
    except ValueError:
        return 0
