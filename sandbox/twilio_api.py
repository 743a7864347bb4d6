"""Stand-in for Twilio's Messages API (2010-04-01): create and fetch a message."""

import logging
import re
import uuid

import flask

from sandbox import outcomes, segments
from sandbox.callbacks import start_steps
from sandbox.request_log import current_state, log_requests_of
from sandbox.state import Delivery, utc_now
from sandbox.twilio_payloads import delivery_steps, error_body, message_resource

logger = logging.getLogger("sandbox")

blueprint = log_requests_of(flask.Blueprint("twilio", __name__, url_prefix="/2010-04-01"))

E164_PATTERN = re.compile(r"^\+[1-9]\d{1,14}$")
URL_PATTERN = re.compile(r"^https?://[^\s/]+")
MAX_BODY_CHARACTERS = 1600
MAX_MEDIA_URLS = 10


class TwilioError(Exception):
    """A request that Twilio would reject with an error code."""

    def __init__(self, code: int, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status


@blueprint.errorhandler(TwilioError)
def render_twilio_error(error: TwilioError) -> tuple[flask.Response, int]:
    """Return Twilio's JSON error body with the error's HTTP status."""
    return flask.jsonify(error_body(error.code, error.message, error.status)), error.status


def authenticate(account_sid: str) -> str:
    """Return the auth token from HTTP basic auth, or raise 20003 unless the user is the AccountSid."""
    auth = flask.request.authorization
    if auth is None or auth.type != "basic" or auth.username != account_sid or not auth.password:
        raise TwilioError(20003, "Authenticate: basic auth must be the AccountSid and its auth token.", 401)
    return auth.password


def validate_number(value: str | None, field: str, missing_code: int, invalid_code: int) -> str:
    """Return a required E.164 number field, or raise the field's Twilio error."""
    if not value:
        raise TwilioError(missing_code, f"A '{field}' phone number is required.")
    if not E164_PATTERN.match(value):
        # The number stays out of the message because callers tend to log exception text.
        raise TwilioError(invalid_code, f"The '{field}' number is not a valid E.164 phone number.")
    return value


def validate_content(body: str, media_urls: list[str]) -> None:
    """Raise the Twilio error for a missing or oversized body or invalid media URLs."""
    if not body and not media_urls:
        raise TwilioError(21602, "Message body is required.")
    if len(body) > MAX_BODY_CHARACTERS:
        message = f"The message body exceeds the {MAX_BODY_CHARACTERS} character limit."
        raise TwilioError(21617, message)
    if len(media_urls) > MAX_MEDIA_URLS:
        raise TwilioError(21623, f"Number of media files exceeds the maximum of {MAX_MEDIA_URLS}.")
    for url in media_urls:
        if not URL_PATTERN.match(url):
            raise TwilioError(21620, f"Invalid media URL {url!r}: use an absolute http(s) URL.")


def validate_status_callback(url: str | None) -> None:
    """Raise 21609 unless the StatusCallback is absent or an absolute http(s) URL."""
    if url and not URL_PATTERN.match(url):
        raise TwilioError(21609, f"Invalid StatusCallback URL {url!r}: use an absolute http(s) URL.")


def parse_create_form(form) -> dict:
    """Validate the create form and return its fields, or raise TwilioError on invalid input."""
    fields = {
        "to": validate_number(form.get("To"), "To", 21604, 21211),
        "from_": validate_number(form.get("From"), "From", 21603, 21212),
        "body": form.get("Body", ""),
        "media": form.getlist("MediaUrl"),
        "status_callback": form.get("StatusCallback") or None,
    }
    validate_content(fields["body"], fields["media"])
    validate_status_callback(fields["status_callback"])
    return fields


def resolve_outcome(fields: dict) -> outcomes.Outcome:
    """Pick the outcome for the destination, raising 21610 for an opted-out number."""
    outcome = outcomes.outcome_for_number(fields["to"])
    if outcome.twilio_reject_code is not None:
        raise TwilioError(outcome.twilio_reject_code, outcome.twilio_error_message)
    state = current_state()
    return outcomes.effective_outcome(
        outcome,
        attempt=state.next_attempt(fields["to"]),
        body=fields["body"],
        allowed_link_prefix=state.config_value("allowed_link_prefix"),
    )


def new_delivery(account_sid: str, fields: dict, outcome: outcomes.Outcome) -> Delivery:
    """Build a queued Twilio message from validated create fields."""
    now = utc_now()
    return Delivery(
        id="SM" + uuid.uuid4().hex,
        provider="twilio",
        account_id=account_sid,
        to=fields["to"],
        from_=fields["from_"],
        body=fields["body"],
        media=fields["media"],
        outcome=outcome.name,
        status="queued",
        # Twilio bills an MMS as one segment whatever the body length.
        segment_count=1 if fields["media"] else segments.count_segments(fields["body"]),
        created=now,
        updated=now,
        details={"status_callback": fields["status_callback"]},
    )


@blueprint.post("/Accounts/<account_sid>/Messages.json")
def create_message(account_sid: str) -> tuple[flask.Response, int]:
    """Accept a message, schedule its status steps and return 201 with the Message resource."""
    auth_token = authenticate(account_sid)
    fields = parse_create_form(flask.request.form)
    outcome = resolve_outcome(fields)
    delivery = new_delivery(account_sid, fields, outcome)
    state = current_state()
    generation = state.add_delivery(delivery)
    start_steps(state, delivery, delivery_steps(delivery, outcome, auth_token), generation)
    logger.info("Twilio message %s accepted with outcome %s", delivery.id, outcome.name)
    return flask.jsonify(message_resource(delivery)), 201


@blueprint.get("/Accounts/<account_sid>/Messages/<message_sid>.json")
def fetch_message(account_sid: str, message_sid: str) -> flask.Response:
    """Return the message's current state, or 404 with code 20404."""
    authenticate(account_sid)
    found = current_state().find_deliveries("twilio", account_sid, message_sid)
    if not found:
        raise TwilioError(20404, f"The requested resource {flask.request.path} was not found", 404)
    return flask.jsonify(message_resource(found[0]))
