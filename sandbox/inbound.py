"""A phone texts a clinic number, and the sandbox posts the provider's inbound webhook to the clinic."""

import logging
import re
import uuid

import flask

from sandbox import segments
from sandbox.bandwidth_api import new_message_id
from sandbox.bandwidth_payloads import event_callback, received_event
from sandbox.callbacks import Callback, post_copies
from sandbox.media import PNG_CONTENT_TYPE, add_bandwidth_media, add_twilio_media
from sandbox.opt_out import apply_keyword
from sandbox.phones import normalize_number
from sandbox.request_log import current_state
from sandbox.state import Delivery, SandboxState, utc_now
from sandbox.twilio_payloads import inbound_params, signed_callback

logger = logging.getLogger("sandbox")

blueprint = flask.Blueprint("inbound", __name__)

E164_PATTERN = re.compile(r"^\+[1-9]\d{1,14}$")
MAX_BODY_CHARACTERS = 1600
MAX_MEDIA = 10
# The same webhook can be posted up to this many times, to test idempotent handling.
MAX_REPEAT = 3


class InboundError(Exception):
    """An invalid request to send a message from a phone."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@blueprint.errorhandler(InboundError)
def render_inbound_error(error: InboundError) -> tuple[flask.Response, int]:
    """Return {"error": message} with the error's HTTP status."""
    return flask.jsonify({"error": error.message}), error.status


def is_count(value: object, minimum: int, maximum: int) -> bool:
    """Return whether the value is an integer (not a bool) within the bounds."""
    return isinstance(value, int) and not isinstance(value, bool) and minimum <= value <= maximum


def parse_send_request(body: object) -> dict:
    """Validate the JSON body of a send request and return its fields, or raise InboundError."""
    if not isinstance(body, dict):
        raise InboundError(400, 'Send a JSON object such as {"to": "+15550000001", "body": "Hi"}.')
    to, text = body.get("to"), body.get("body", "")
    media, repeat = body.get("media", 0), body.get("repeat", 1)
    if not isinstance(to, str) or not E164_PATTERN.match(to):
        raise InboundError(400, "to is missing or invalid. Give the clinic number in E.164 format.")
    if not isinstance(text, str) or len(text) > MAX_BODY_CHARACTERS:
        raise InboundError(400, f"body must be a string of at most {MAX_BODY_CHARACTERS} characters.")
    if not is_count(media, 0, MAX_MEDIA):
        raise InboundError(400, f"media must be the number of images to attach, from 0 to {MAX_MEDIA}.")
    if not is_count(repeat, 1, MAX_REPEAT):
        raise InboundError(400, f"repeat must be how many times to post the webhook, from 1 to {MAX_REPEAT}.")
    if not text and not media:
        raise InboundError(400, "body or media is required.")
    return {"to": to, "body": text, "media": media, "repeat": repeat}


def inbound_delivery(message_id: str, provider: str, account_id: str, phone: str, request: dict) -> Delivery:
    """Build the stored record of a message that a phone sent to a clinic number."""
    now = utc_now()
    return Delivery(
        id=message_id,
        provider=provider,
        account_id=account_id,
        to=request["to"],
        from_=phone,
        body=request["body"],
        media=[],
        outcome="received",
        status="received" if provider == "twilio" else "RECEIVED",
        # Both providers count an MMS as one segment whatever the text length.
        segment_count=1 if request["media"] else segments.count_segments(request["body"]),
        created=now,
        updated=now,
        sent=now,
        direction="inbound",
    )


def post_webhook(
    state: SandboxState, delivery: Delivery, callback: Callback | None, repeat: int
) -> list[dict]:
    """Store the inbound message, post its webhook `repeat` times and return the post records."""
    generation = state.add_delivery(delivery)
    if callback is None:
        logger.warning(
            "Skipped the webhook of inbound message %s: its application has no callback_url", delivery.id
        )
        skipped = {"event": "message-received", "skipped": "the application has no callback_url"}
        state.record_callback(delivery, skipped, generation)
        records = [skipped]
    else:
        records = post_copies(state, delivery, callback, generation, repeat)
    state.finish_callbacks(delivery, generation)
    return records


def receive_twilio(
    state: SandboxState, phone: str, request: dict, clinic: dict
) -> tuple[Delivery, list[dict]]:
    """Apply opt-out keywords, then post Twilio's signed inbound webhook to the clinic's inbound_url."""
    base_url = flask.request.host_url.rstrip("/")
    account_sid, auth_token = clinic["account_sid"], clinic["auth_token"]
    delivery = inbound_delivery("SM" + uuid.uuid4().hex, "twilio", account_sid, phone, request)
    delivery.media = add_twilio_media(state, base_url, account_sid, auth_token, delivery.id, request["media"])
    # Twilio records the opt-out and sends its confirmation before it forwards the message.
    apply_keyword(state, delivery)
    params = inbound_params(delivery, [PNG_CONTENT_TYPE] * len(delivery.media))
    callback = signed_callback(clinic["inbound_url"], params, auth_token, "received")
    return delivery, post_webhook(state, delivery, callback, request["repeat"])


def receive_bandwidth(
    state: SandboxState, phone: str, request: dict, clinic: dict
) -> tuple[Delivery, list[dict]]:
    """Post a message-received event to the callback_url of the clinic number's application."""
    base_url = flask.request.host_url.rstrip("/")
    message_id = new_message_id()
    delivery = inbound_delivery(message_id, "bandwidth", clinic["account_id"], phone, request)
    delivery.media = add_bandwidth_media(state, base_url, clinic["account_id"], message_id, request["media"])
    delivery.details = {"application_id": clinic["application_id"], "recipients": [request["to"]]}
    application = state.bandwidth_application(clinic["application_id"])
    callback = event_callback(delivery, application, received_event(delivery))
    return delivery, post_webhook(state, delivery, callback, request["repeat"])


@blueprint.post("/phones/<number>/send")
def send_from_phone(number: str) -> tuple[flask.Response, int]:
    """Deliver a message from the phone to a clinic number, and return 202 with the webhook result."""
    phone = normalize_number(number)
    if not E164_PATTERN.match(phone):
        raise InboundError(
            400, "The phone number in the path is invalid. Use E.164, as in /phones/+15551230001/send."
        )
    request = parse_send_request(flask.request.get_json(silent=True))
    state = current_state()
    clinic = state.clinic_number(request["to"])
    if clinic is None:
        raise InboundError(404, "to is not a clinic number. Add it to numbers in the sandbox config.")
    receive = receive_twilio if clinic["provider"] == "twilio" else receive_bandwidth
    delivery, records = receive(state, phone, request, clinic)
    delivered = all(record.get("delivered") for record in records)
    logger.info(
        "Inbound %s message %s posted to the clinic, delivered: %s", delivery.provider, delivery.id, delivered
    )
    result = {
        "id": delivery.id,
        "delivered": delivered,
        "status": records[-1].get("http_status"),
        "webhooks": records,
    }
    return flask.jsonify(result), 202
