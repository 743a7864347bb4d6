"""Stand-in for Twilio's Messages API (2010-04-01): create, fetch and list messages."""

import logging
import operator
import re
import uuid
from datetime import date
from urllib.parse import urlencode

import flask

from sandbox import outcomes, segments
from sandbox.callbacks import start_steps
from sandbox.request_log import current_state, log_requests_of
from sandbox.state import Delivery, utc_now
from sandbox.twilio_payloads import API_VERSION, delivery_steps, error_body, message_resource

logger = logging.getLogger("sandbox")

blueprint = log_requests_of(flask.Blueprint("twilio", __name__, url_prefix="/2010-04-01"))

E164_PATTERN = re.compile(r"^\+[1-9]\d{1,14}$")
URL_PATTERN = re.compile(r"^https?://[^\s/]+")
MAX_BODY_CHARACTERS = 1600
MAX_MEDIA_URLS = 10
# A DateSent filter value: a date, or the UTC date-time that the SDK sends for a date, whose time
# of day is ignored.
DATE_FILTER_PATTERN = re.compile(r"^(\d{4}-\d\d-\d\d)(T\d\d:\d\d:\d\dZ)?$")
DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 1000
MAX_PAGE_NUMBER = 1_000_000
# DateSent filters compare whole days in GMT, as Twilio's docs for the Messages list describe.
# The SDK sends date_sent_after as "DateSent>" and date_sent_before as "DateSent<", which is what
# the documented "DateSent>=YYYY-MM-DD" query string parses to.
# NOTE: the docs say "on or before midnight on a date" for DateSent<=, which could also mean the
# day itself is excluded. The sandbox includes it.
DATE_COMPARISONS = {
    "DateSent": operator.eq,
    "DateSent>": operator.ge,
    "DateSent<": operator.le,
}


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
    state = current_state()
    if state.is_opted_out(fields["from_"], fields["to"]):
        # The phone texted STOP to this sender, so Twilio refuses to send until it texts START.
        raise TwilioError(21610, "Attempt to send to an unsubscribed recipient.")
    outcome = outcomes.outcome_for_number(fields["to"])
    if outcome.twilio_reject_code is not None:
        raise TwilioError(outcome.twilio_reject_code, outcome.twilio_error_message)
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


def parse_date_filter(name: str, value: str) -> date:
    """Return the UTC date of a DateSent filter value, or raise 20001 if it is invalid."""
    match = DATE_FILTER_PATTERN.match(value)
    if match:
        try:
            return date.fromisoformat(match.group(1))
        except ValueError:
            pass  # A well-formed but impossible date, such as 2025-02-30.
    raise TwilioError(20001, f"Invalid {name} value {value!r}: use YYYY-MM-DD.")


def parse_integer(args, name: str, default: int, minimum: int, maximum: int) -> int:
    """Return an integer query parameter, or raise 20001 unless it is within the bounds."""
    value = args.get(name)
    if value is None:
        return default
    if not value.isdigit() or not minimum <= int(value) <= maximum:
        raise TwilioError(20001, f"{name} must be an integer from {minimum} to {maximum}.")
    return int(value)


def parse_list_filters(args) -> dict:
    """Return the To, From and DateSent filters of a list request, with dates parsed."""
    filters = {name: args[name] for name in ("To", "From") if name in args}
    for name in DATE_COMPARISONS:
        if name in args:
            filters[name] = parse_date_filter(name, args[name])
    return filters


def matches_list_filters(delivery: Delivery, filters: dict) -> bool:
    """Return whether a message passes every filter of a list request."""
    if delivery.to != filters.get("To", delivery.to) or delivery.from_ != filters.get("From", delivery.from_):
        return False
    date_filters = [name for name in DATE_COMPARISONS if name in filters]
    # A message that was never sent has no date_sent, so no DateSent filter matches it.
    if date_filters and delivery.sent is None:
        return False
    return all(DATE_COMPARISONS[name](delivery.sent.date(), filters[name]) for name in date_filters)


def page_uri(account_sid: str, args, page: int, page_size: int) -> str:
    """Return the relative URI of one page of a message list with the same filters."""
    query = [(name, args[name]) for name in ("To", "From", *DATE_COMPARISONS) if name in args]
    query += [("PageSize", page_size), ("Page", page)]
    return f"/{API_VERSION}/Accounts/{account_sid}/Messages.json?{urlencode(query)}"


def list_page(account_sid: str, messages: list[dict], args, page: int, page_size: int) -> dict:
    """Build one page of Twilio's list shape, which the SDK's Page class reads."""
    start = page * page_size
    records = messages[start : start + page_size]
    has_next = start + page_size < len(messages)
    return {
        "messages": records,
        "end": start + max(len(records) - 1, 0),
        "first_page_uri": page_uri(account_sid, args, 0, page_size),
        "next_page_uri": page_uri(account_sid, args, page + 1, page_size) if has_next else None,
        "page": page,
        "page_size": page_size,
        "previous_page_uri": page_uri(account_sid, args, page - 1, page_size) if page > 0 else None,
        "start": start,
        "uri": page_uri(account_sid, args, page, page_size),
    }


@blueprint.get("/Accounts/<account_sid>/Messages.json")
def list_messages(account_sid: str) -> flask.Response:
    """List the account's messages, newest first, filtered by To, From and DateSent."""
    authenticate(account_sid)
    args = flask.request.args
    filters = parse_list_filters(args)
    page_size = parse_integer(args, "PageSize", DEFAULT_PAGE_SIZE, 1, MAX_PAGE_SIZE)
    page = parse_integer(args, "Page", 0, 0, MAX_PAGE_NUMBER)
    # Reversing the stored (oldest first) order before the stable sort keeps the later of two
    # messages with the same date_created first.
    stored = reversed(current_state().search_deliveries("twilio", account_sid))
    found = [delivery for delivery in stored if matches_list_filters(delivery, filters)]
    found.sort(key=lambda delivery: delivery.created, reverse=True)
    messages = [message_resource(delivery) for delivery in found]
    return flask.jsonify(list_page(account_sid, messages, args, page, page_size))
