"""Stand-in for Bandwidth's Messaging API v2: create a message and search messages."""

import logging
import re
import secrets
import string
import time
from datetime import datetime

import flask

from sandbox import outcomes, segments
from sandbox.bandwidth_payloads import delivery_steps, error_body, list_item, message_resource
from sandbox.callbacks import start_steps
from sandbox.request_log import current_state, log_requests_of
from sandbox.state import Delivery, utc_now

logger = logging.getLogger("sandbox")

blueprint = log_requests_of(flask.Blueprint("bandwidth", __name__, url_prefix="/api/v2"))

E164_PATTERN = re.compile(r"^\+[1-9]\d{1,14}$")
# Alphanumeric sender IDs: 1-11 of these characters with at least one letter.
SENDER_ID_PATTERN = re.compile(r"^(?=.*[A-Za-z])[A-Za-z0-9 +\-_&]{1,11}$")
URL_PATTERN = re.compile(r"^https?://[^\s/]+")
MAX_TEXT_CHARACTERS = 2048
MAX_MEDIA_URL_CHARACTERS = 4096
MAX_TAG_CHARACTERS = 1024
MAX_RECIPIENTS = 10
PRIORITIES = ("default", "high")
# Search parameters matched exactly against the result field of the same name. Others are ignored.
SEARCH_FILTERS = (
    "messageId",
    "sourceTn",
    "destinationTn",
    "messageStatus",
    "messageDirection",
    "messageType",
    "errorCode",
)


class BandwidthError(Exception):
    """A request that Bandwidth would reject with an HTTP error."""

    def __init__(self, status: int, body: dict) -> None:
        super().__init__(body["description"])
        self.status = status
        self.body = body


@blueprint.errorhandler(BandwidthError)
def render_bandwidth_error(error: BandwidthError) -> tuple[flask.Response, int]:
    """Return Bandwidth's JSON error body with the error's HTTP status."""
    return flask.jsonify(error.body), error.status


def authenticate() -> None:
    """Raise 401 unless the request has HTTP basic auth with a non-empty user and password."""
    auth = flask.request.authorization
    if auth is None or auth.type != "basic" or not auth.username or not auth.password:
        description = "Basic auth with a Bandwidth API user and password is required."
        raise BandwidthError(401, error_body("unauthorized", description))


def request_json() -> dict:
    """Return the JSON object body, or raise 415 or 400."""
    request = flask.request
    if not request.is_json:
        description = f"Content-Type {request.content_type!r} is not supported. Send application/json."
        raise BandwidthError(415, error_body("unsupported-content-type", description))
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        raise validation_error([field_error("body", "The request body must be a JSON object.")])
    return body


def field_error(field_name: str, description: str) -> dict:
    """Build one fieldErrors entry."""
    return {"fieldName": field_name, "description": description}


def validation_error(field_errors: list[dict]) -> "BandwidthError":
    """Build a 400 request-validation error listing the invalid fields."""
    description = "The request is invalid: " + " ".join(error["description"] for error in field_errors)
    return BandwidthError(400, error_body("request-validation", description, field_errors))


def check_application(body: dict) -> list[dict]:
    """Return errors unless applicationId names an application in the sandbox config."""
    application_id = body.get("applicationId")
    if not isinstance(application_id, str) or not application_id:
        return [field_error("applicationId", "applicationId is required.")]
    if current_state().bandwidth_application(application_id) is None:
        description = (
            f"applicationId {application_id!r} is not configured. "
            "Add it to bandwidth_applications in the sandbox config."
        )
        return [field_error("applicationId", description)]
    return []


def normalize_recipients(value: object) -> list[str] | None:
    """Return `to` as a list of strings, or None if it is neither a string nor a list of them."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and all(isinstance(item, str) for item in value):
        return list(value)
    return None


def check_recipients(body: dict) -> list[dict]:
    """Return errors unless `to` contains 1-10 E.164 numbers."""
    recipients = normalize_recipients(body.get("to"))
    if not recipients:
        return [field_error("to", "to must be an E.164 number or a non-empty array of them.")]
    if len(recipients) > MAX_RECIPIENTS:
        description = f"to has {len(recipients)} numbers, more than the maximum of {MAX_RECIPIENTS}."
        return [field_error("to", description)]
    if not all(E164_PATTERN.match(number) for number in recipients):
        return [field_error("to", "Every number in to must be in E.164 format.")]
    return []


def check_sender(body: dict) -> list[dict]:
    """Return errors unless `from` is an E.164 number or an alphanumeric sender ID."""
    sender = body.get("from")
    if isinstance(sender, str) and (E164_PATTERN.match(sender) or SENDER_ID_PATTERN.match(sender)):
        return []
    return [field_error("from", "from must be an E.164 number or an alphanumeric sender ID.")]


def check_content(body: dict) -> list[dict]:
    """Return errors for missing content, oversized text or invalid media URLs."""
    text, media = body.get("text"), body.get("media")
    if text is not None and not isinstance(text, str):
        return [field_error("text", "text must be a string.")]
    if media is not None and not isinstance(media, list):
        return [field_error("media", "media must be an array of URLs.")]
    if not text and not media:
        return [field_error("text", "text or media is required.")]
    if text and len(text) > MAX_TEXT_CHARACTERS:
        return [field_error("text", f"text is longer than {MAX_TEXT_CHARACTERS} characters.")]
    return check_media(media or [])


def check_media(media: list) -> list[dict]:
    """Return errors unless each media entry is an http(s) URL of at most 4096 characters."""
    for url in media:
        if not isinstance(url, str) or not URL_PATTERN.match(url):
            return [field_error("media", "Each media entry must be an absolute http(s) URL.")]
        if len(url) > MAX_MEDIA_URL_CHARACTERS:
            description = f"A media URL is longer than {MAX_MEDIA_URL_CHARACTERS} characters."
            return [field_error("media", description)]
    return []


def check_options(body: dict) -> list[dict]:
    """Return errors for an invalid tag, priority or expiration."""
    errors = []
    tag = body.get("tag")
    if tag is not None and (not isinstance(tag, str) or len(tag) > MAX_TAG_CHARACTERS):
        errors.append(field_error("tag", f"tag must be a string of at most {MAX_TAG_CHARACTERS} characters."))
    if body.get("priority") is not None and body.get("priority") not in PRIORITIES:
        errors.append(field_error("priority", f"priority must be one of {list(PRIORITIES)}."))
    if body.get("expiration") is not None and not is_future_timestamp(body["expiration"]):
        errors.append(field_error("expiration", "expiration must be an RFC 3339 date-time in the future."))
    return errors


def is_future_timestamp(value: object) -> bool:
    """Return whether the value is an RFC 3339 string with a time zone, later than now."""
    if not isinstance(value, str):
        return False
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return False
    return moment.tzinfo is not None and moment > utc_now()


def parse_create_body(body: dict) -> dict:
    """Validate the create body and return its fields, or raise a 400 request-validation error."""
    errors = []
    for check in (check_application, check_recipients, check_sender, check_content, check_options):
        errors.extend(check(body))
    if errors:
        raise validation_error(errors)
    return {
        "application_id": body["applicationId"],
        "recipients": normalize_recipients(body["to"]),
        "from_": body["from"],
        "text": body.get("text") or "",
        "media": list(body.get("media") or []),
        "tag": body.get("tag"),
        "priority": body.get("priority") or "default",
        "expiration": body.get("expiration"),
    }


def new_message_id() -> str:
    """Return an id shaped like Bandwidth's: epoch milliseconds then 15 random characters."""
    alphabet = string.ascii_lowercase + string.digits
    return f"{int(time.time() * 1000)}{''.join(secrets.choice(alphabet) for _ in range(15))}"


def new_delivery(message_id: str, account_id: str, fields: dict, recipient: str) -> Delivery:
    """Build the queued delivery of one recipient, leaving the outcome for the caller to set."""
    now = utc_now()
    # Bandwidth reports an MMS as one segment whatever the text length.
    segment_count = 1 if fields["media"] else segments.count_segments(fields["text"])
    details = {key: fields[key] for key in ("application_id", "recipients", "tag", "priority", "expiration")}
    return Delivery(
        id=message_id,
        provider="bandwidth",
        account_id=account_id,
        to=recipient,
        from_=fields["from_"],
        body=fields["text"],
        media=fields["media"],
        outcome="",
        status="QUEUED",
        segment_count=segment_count,
        created=now,
        updated=now,
        details=details,
    )


def resolve_outcome(recipient: str, text: str) -> outcomes.Outcome:
    """Pick the outcome of one recipient from its number, attempt count and the text."""
    state = current_state()
    return outcomes.effective_outcome(
        outcomes.outcome_for_number(recipient),
        attempt=state.next_attempt(recipient),
        body=text,
        allowed_link_prefix=state.config_value("allowed_link_prefix"),
    )


def schedule_recipient(message_id: str, account_id: str, fields: dict, recipient: str) -> Delivery:
    """Store one recipient's delivery and start its status steps."""
    state = current_state()
    outcome = resolve_outcome(recipient, fields["text"])
    delivery = new_delivery(message_id, account_id, fields, recipient)
    delivery.outcome = outcome.name
    generation = state.add_delivery(delivery)
    application = state.bandwidth_application(fields["application_id"])
    start_steps(state, delivery, delivery_steps(delivery, outcome, application), generation)
    logger.info("Bandwidth message %s accepted with outcome %s", message_id, outcome.name)
    return delivery


@blueprint.post("/users/<account_id>/messages")
def create_message(account_id: str) -> tuple[flask.Response, int]:
    """Accept a message, schedule each recipient's callbacks and return 202 with the Message."""
    authenticate()
    fields = parse_create_body(request_json())
    message_id = new_message_id()
    deliveries = [
        schedule_recipient(message_id, account_id, fields, recipient)
        for recipient in dict.fromkeys(fields["recipients"])
    ]
    return flask.jsonify(message_resource(deliveries[0], text=fields["text"])), 202


def matches_filters(item: dict, filters: dict) -> bool:
    """Return whether a search result item equals every given filter value."""
    return all(str(item.get(field)) == value for field, value in filters.items())


@blueprint.get("/users/<account_id>/messages")
def list_messages(account_id: str) -> flask.Response:
    """Search the account's messages by the supported exact-match filters, oldest first."""
    authenticate()
    args = flask.request.args
    filters = {field: args[field] for field in SEARCH_FILTERS if field in args}
    if not args:
        raise BandwidthError(400, error_body("request-validation", "Include at least one query parameter."))
    items = [list_item(delivery) for delivery in current_state().search_deliveries("bandwidth", account_id)]
    found = [item for item in items if matches_filters(item, filters)]
    limit = args.get("limit", default=100, type=int)
    return flask.jsonify({"totalCount": len(found), "pageInfo": {}, "messages": found[:limit]})
