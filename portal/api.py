"""JSON API for practice-management systems, authenticated by a per-clinic bearer token."""

import logging
from functools import wraps

from flask import Blueprint, g, jsonify, request

from notifier.explain import staff_message
from notifier.sending import InvalidMessage, check_new_number, find_or_create_client, send_message, validate_body
from portal.extensions import csrf, db
from portal.models import ApiToken, Message

log = logging.getLogger(__name__)
bp = Blueprint("api", __name__, url_prefix="/api/v1")
csrf.exempt(bp)


class ApiError(Exception):
    def __init__(self, status, code, message, field=None):
        super().__init__(message)
        self.status, self.code, self.message, self.field = status, code, message, field


@bp.errorhandler(ApiError)
def api_error(exc):
    body = {"error": {"code": exc.code, "message": exc.message}}
    if exc.field:
        body["error"]["field"] = exc.field
    return jsonify(body), exc.status


@bp.errorhandler(404)
@bp.errorhandler(405)
def http_error(exc):
    return jsonify(error={"code": exc.name.lower().replace(" ", "_"), "message": exc.description}), exc.code


def token_required(view):
    """Authenticate the request's bearer token and set ``g.clinic``; 401 otherwise."""

    @wraps(view)
    def wrapped(*args, **kwargs):
        header = request.headers.get("Authorization", "")
        scheme, _, raw = header.partition(" ")
        if scheme.lower() != "bearer" or not raw.strip():
            raise ApiError(401, "unauthorized", "Send the clinic's API token as 'Authorization: Bearer <token>'.")
        token = db.session.execute(
            db.select(ApiToken).where(ApiToken.token_hash == ApiToken.hash(raw.strip()))
        ).scalar_one_or_none()
        if token is None or token.revoked_at is not None:
            raise ApiError(401, "unauthorized", "The API token is invalid or revoked. Ask the clinic's admin for a new one.")
        g.clinic = token.clinic
        return view(*args, **kwargs)

    return wrapped


@bp.post("/messages")
@token_required
def create_message():
    """Send a text to the number in ``to``, creating the client if the clinic has none with it."""
    data = request.get_json(silent=True)
    if not isinstance(data, dict):
        raise ApiError(400, "invalid_json", "The body must be a JSON object such as {\"to\": \"+15551234567\", \"body\": \"...\"}.")
    for field in ("to", "body"):
        if not isinstance(data.get(field), str):
            raise ApiError(400, "invalid_field", f"'{field}' is required and must be a string.", field)

    try:
        # The body is checked before the client is created, so a rejected request writes nothing.
        body = validate_body(data["body"])
        client, created = find_or_create_client(g.clinic, data["to"])
        message = send_message(client, body, source="api")
    except InvalidMessage as exc:
        db.session.rollback()
        raise ApiError(400, "invalid_field", str(exc), exc.field) from None
    if created:
        check_new_number(client)
    return jsonify(message_json(message)), 201, {"Location": f"/api/v1/messages/{message.id}"}


@bp.get("/messages/<int:message_id>")
@token_required
def get_message(message_id):
    """Return a message with each channel's delivery, status and what staff see."""
    message = db.session.get(Message, message_id)
    if message is None or message.clinic_id != g.clinic.id:
        raise ApiError(404, "not_found", f"Message {message_id} was not found for this clinic.")
    return jsonify(message_json(message))


def message_json(message):
    return {
        "id": message.id,
        "client_id": message.client_id,
        "direction": message.direction,
        "body": message.body,
        "created_at": message.created_at.isoformat(),
        "deliveries": [delivery_json(d) for d in message.deliveries],
    }


def delivery_json(delivery):
    return {
        "channel": delivery.channel,
        "status": delivery.status,
        "category": delivery.category,
        "error_code": delivery.error_code,
        "attempts": delivery.attempts,
        "staff_message": staff_message(delivery),
        "updated_at": delivery.updated_at.isoformat() if delivery.updated_at else None,
    }
