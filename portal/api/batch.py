"""``/messages/batch``: send up to 1,000 texts in one request, stored together and queued by one job."""

import logging

from flask import g, jsonify, request

from notifier import batch
from notifier.phone import InvalidPhoneNumber, normalize
from notifier.sending import MAX_BODY_CHARS, InvalidMessage, extension_message, validate_body
from portal.api import bp, idempotency, openapi
from portal.api.auth import token_required
from portal.api.errors import ApiError
from portal.api.messages import scheduled_time
from portal.api.serialize import iso
from portal.extensions import db

log = logging.getLogger(__name__)

ITEM_FIELDS = ("to", "body")


@bp.post("/messages/batch")
@token_required
def create_batch():
    """Send each text of ``messages`` now (or after quiet hours), creating clients for unknown numbers."""
    clinic = g.clinic
    items, fields = parse_batch(clinic.country)
    key = idempotency.key_from_request()
    request_hash = idempotency.fingerprint(fields) if key else None
    if key:
        replay = idempotency.stored_response(clinic.id, key, request_hash)
        if replay is not None:
            return replay

    send_at = scheduled_time(clinic, None)
    key_row = None
    if key:
        key_row, replay = idempotency.claim(clinic.id, key, request_hash)
        if replay is not None:
            return replay
    stored = batch.store_batch(clinic, items, "api", send_at=send_at)
    body = {
        "count": len(stored),
        "send_at": iso(send_at),
        "messages": [{"id": text.message_id, "client_id": text.client_id, "to": text.to} for text in stored],
    }
    if key_row is not None:
        idempotency.record(key_row, 201, body)
    db.session.commit()

    batch.enqueue_batch(stored, at=send_at)
    log.info("API token %s sent a batch of %s messages for clinic %s.", g.api_token_id, len(stored), clinic.id)
    return jsonify(body), 201


def parse_batch(country):
    """Return the validated BatchItems of a JSON batch request and the fields its idempotency key covers."""
    data = request.get_json(silent=True) if request.mimetype == "application/json" else None
    if request.mimetype != "application/json":
        raise ApiError(
            415, "unsupported_media_type", f"The Content-Type {request.mimetype or 'none'!r} is not accepted. Send application/json."
        )
    if not isinstance(data, dict) or set(data) != {"messages"} or not isinstance(data["messages"], list):
        raise ApiError(400, "invalid_json", 'The body must be a JSON object {"messages": [{"to": "+15551234567", "body": "..."}]}.')
    entries = data["messages"]
    if not 1 <= len(entries) <= batch.MAX_BATCH_MESSAGES:
        raise ApiError(
            400, "invalid_field", f"'messages' has {len(entries)} entries; send 1 to {batch.MAX_BATCH_MESSAGES}.", "messages"
        )
    items, numbers = [], {}
    for index, entry in enumerate(entries):
        items.append(_parse_item(index, entry, country, numbers))
    return items, {"messages": entries}


def _parse_item(index, entry, country, numbers):
    where = f"messages[{index}]"
    if not isinstance(entry, dict):
        raise ApiError(400, "invalid_field", f"'{where}' must be an object with 'to' and 'body'.", where)
    unknown = sorted(str(name) for name in entry if name not in ITEM_FIELDS)
    if unknown:
        raise ApiError(400, "invalid_field", f"'{where}.{unknown[0]}' is not a field of a batch message. Send only to and body.", f"{where}.{unknown[0]}")
    to, body = entry.get("to"), entry.get("body")
    if not isinstance(to, str):
        raise ApiError(400, "invalid_field", f"'{where}.to' is required and must be a string.", f"{where}.to")
    if not isinstance(body, str):
        raise ApiError(400, "invalid_field", f"'{where}.body' is required and must be a string.", f"{where}.body")
    if to not in numbers:
        try:
            e164, extension = normalize(to, country)
        except InvalidPhoneNumber as exc:
            raise ApiError(400, "invalid_field", str(exc), f"{where}.to") from None
        if extension:
            raise ApiError(400, "invalid_field", extension_message(to), f"{where}.to")
        numbers[to] = e164
    try:
        body = validate_body(body)
    except InvalidMessage as exc:
        raise ApiError(400, "invalid_field", str(exc), f"{where}.body") from None
    return batch.BatchItem(numbers[to], body)


# The OpenAPI document is data in portal/api/openapi.py; this route adds its own entries there.
openapi.SCHEMAS["BatchRequest"] = {
    "type": "object",
    "required": ["messages"],
    "additionalProperties": False,
    "properties": {
        "messages": {
            "type": "array",
            "minItems": 1,
            "maxItems": batch.MAX_BATCH_MESSAGES,
            "items": {
                "type": "object",
                "required": ["to", "body"],
                "additionalProperties": False,
                "properties": {
                    "to": {"type": "string", "description": "The client's mobile number, as for a single message."},
                    "body": {"type": "string", "minLength": 1, "maxLength": MAX_BODY_CHARS},
                },
            },
        }
    },
}
openapi.SCHEMAS["Batch"] = {
    "type": "object",
    "required": ["count", "send_at", "messages"],
    "properties": {
        "count": {"type": "integer", "minimum": 1},
        "send_at": {**openapi.NULLABLE_TIME, "description": "When the batch goes out after quiet hours; null when sent at once."},
        "messages": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["id", "client_id", "to"],
                "properties": {"id": {"type": "integer"}, "client_id": {"type": "integer"}, "to": {"type": "string"}},
            },
        },
    },
}
openapi.PATHS["/api/v1/messages/batch"] = {
    "post": {
        "operationId": "createMessageBatch",
        "summary": "Send up to 1,000 texts in one request",
        "description": (
            "Stores every message before responding and queues them together; read each one's status with "
            "GET /api/v1/messages/{message_id}. The whole batch is rejected if any entry is invalid."
        ),
        "parameters": openapi.PATHS["/api/v1/messages"]["post"]["parameters"],
        "requestBody": {"required": True, "content": openapi._json(openapi._ref("BatchRequest"))},
        "responses": {
            "201": {
                "description": "Every message was stored and queued (or scheduled after quiet hours).",
                "headers": {
                    "Idempotent-Replayed": {"schema": {"type": "string", "enum": ["true"]}, "description": "Set on a replayed response."}
                },
                "content": openapi._json(openapi._ref("Batch")),
            },
            "400": {"$ref": "#/components/responses/BadRequest"},
            "409": openapi._error("A request with the same Idempotency-Key is still being processed."),
            "413": {"$ref": "#/components/responses/PayloadTooLarge"},
            "415": {"$ref": "#/components/responses/UnsupportedMediaType"},
            "422": openapi._error("The Idempotency-Key was already used for a different request."),
            **openapi.TOKEN_ERRORS,
        },
    }
}
