"""Phone inboxes as JSON and HTML pages, and the sandbox's inspection endpoints."""

import dataclasses
import re

import flask
from markupsafe import Markup, escape

from sandbox.request_log import current_state
from sandbox.state import Delivery, iso_utc

blueprint = flask.Blueprint("phones", __name__)

URL_PATTERN = re.compile(r"https?://[^\s<>\"']+")
# Punctuation that ends a sentence rather than the URL it follows.
TRAILING_PUNCTUATION = ".,;:!?)]}'\""


def normalize_number(number: str) -> str:
    """Return the number in E.164 form, restoring a '+' that a URL decoder turned into a space."""
    number = number.strip()
    return number if number.startswith("+") else "+" + number


def phone_message(delivery: Delivery) -> dict:
    """Build the JSON view of one message as the phone received it."""
    return {
        "id": delivery.id,
        "provider": delivery.provider,
        "from": delivery.from_,
        "body": delivery.body,
        "media": list(delivery.media),
        "time": iso_utc(delivery.delivered_to_phone),
    }


def received_messages(number: str) -> list[dict]:
    """Return the messages the number received, oldest first."""
    return [phone_message(delivery) for delivery in current_state().phone_deliveries(number)]


def linkify(text: str) -> Markup:
    """Escape the text and turn each http(s) URL in it into a link."""
    pieces = []
    position = 0
    for match in URL_PATTERN.finditer(text):
        url = match.group(0).rstrip(TRAILING_PUNCTUATION)
        pieces.append(escape(text[position : match.start()]))
        pieces.append(Markup('<a href="{0}" rel="noopener noreferrer">{0}</a>').format(url))
        position = match.start() + len(url)
    pieces.append(escape(text[position:]))
    return Markup("").join(pieces)


@blueprint.app_template_filter("linkify")
def linkify_filter(text: str) -> Markup:
    """Expose linkify to templates."""
    return linkify(text)


@blueprint.get("/")
def index() -> str:
    """Show the phones that received messages."""
    counts = current_state().phone_counts()
    return flask.render_template("index.html", phones=sorted(counts.items()))


@blueprint.get("/phones/<number>")
def phone_page(number: str) -> str:
    """Show one phone's received messages to a person."""
    number = normalize_number(number)
    return flask.render_template("phone.html", number=number, messages=received_messages(number))


@blueprint.get("/phones/<number>/messages")
def phone_messages(number: str) -> flask.Response:
    """Return the messages one phone received as JSON, oldest first."""
    return flask.jsonify(received_messages(normalize_number(number)))


@blueprint.get("/sandbox/requests")
def logged_requests() -> flask.Response:
    """Return the raw provider API requests received, oldest first."""
    return flask.jsonify(current_state().logged_requests())


@blueprint.post("/sandbox/reset")
def reset() -> flask.Response:
    """Clear all messages, inboxes, counters and logged requests."""
    current_state().reset()
    return flask.jsonify({"reset": True})


def delivery_summary(delivery: Delivery) -> dict:
    """Build the inspection view of one delivery, dates as ISO 8601 strings."""
    summary = dataclasses.asdict(delivery)
    summary["from"] = summary.pop("from_")
    for key in ("created", "updated", "sent", "delivered_to_phone"):
        summary[key] = iso_utc(summary[key]) if summary[key] else None
    return summary


@blueprint.get("/sandbox/messages")
def all_messages() -> flask.Response:
    """Return every message with its outcome, status and callback results, oldest first."""
    return flask.jsonify([delivery_summary(delivery) for delivery in current_state().all_deliveries()])
