"""The OpenAPI 3.1 document of the API, written by hand as data and served at /api/v1/openapi.json.

tests/test_api_openapi.py checks that every route under /api/v1 is described here and that
the responses of the running app match these schemas.
"""

from flask import jsonify

from portal.api import bp
from portal.api.clients import MAX_PAGE_SIZE
from portal.api.idempotency import MAX_KEY_CHARS
from portal.api.messages import MAX_ID, MAX_URL_CHARS
from notifier.clients import MAX_EMAIL_CHARS, MAX_NAME_CHARS, MAX_NUMBERS, MAX_PIMS_ID_CHARS, NUMBER_TYPES
from notifier.outbound_media import MAX_FILES
from notifier.sending import MAX_BODY_CHARS
from portal.models import CHANNELS, STATUS_RANK


def _ref(name):
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema):
    return {"application/json": {"schema": schema}}


def _error(description):
    return {"description": description, "content": _json(_ref("Error"))}


TIME = {"type": "string", "format": "date-time"}
NULLABLE_TIME = {"type": ["string", "null"], "format": "date-time"}
TOKEN_ERRORS = {
    "401": {"$ref": "#/components/responses/Unauthorized"},
    "429": {"$ref": "#/components/responses/RateLimited"},
}

SCHEMAS = {
    "Error": {
        "type": "object",
        "required": ["error"],
        "properties": {
            "error": {
                "type": "object",
                "required": ["code", "message"],
                "properties": {
                    "code": {"type": "string", "description": "Stable code, such as invalid_field or number_conflict."},
                    "message": {"type": "string", "description": "What failed, on which value, and how to fix it."},
                    "field": {"type": "string", "description": "The field, parameter or header at fault, such as numbers[1].number."},
                },
            }
        },
    },
    "MessageRequest": {
        "type": "object",
        "required": ["to"],
        "additionalProperties": False,
        "properties": {
            "to": {"type": "string", "description": "The client's mobile number; read with the clinic's country when it has no +country code."},
            "body": {
                "type": "string",
                "maxLength": MAX_BODY_CHARS,
                "description": "The text. Required unless media is attached.",
            },
            "media_urls": {
                "type": "array",
                "maxItems": MAX_FILES,
                "items": {"type": "string", "maxLength": MAX_URL_CHARS, "format": "uri"},
                "description": "Public http(s) URLs of photos or short videos, downloaded once when the message is created.",
            },
            "send_at": {
                **TIME,
                "description": "RFC 3339 time with an offset. A past time sends now; the clinic's quiet hours can move it later.",
            },
        },
    },
    "MessageUpload": {
        "type": "object",
        "required": ["to"],
        "properties": {
            "to": {"type": "string"},
            "body": {"type": "string", "maxLength": MAX_BODY_CHARS},
            "send_at": TIME,
            "media": {
                "type": "array",
                "maxItems": MAX_FILES,
                "items": {"type": "string", "contentMediaType": "application/octet-stream"},
                "description": "Photos (JPEG, PNG, GIF) or short videos (MP4, 3GP, QuickTime) within the provider's MMS limits.",
            },
        },
    },
    "Delivery": {
        "type": "object",
        "required": ["channel", "status", "category", "error_code", "attempts", "staff_message", "next_attempt_at", "updated_at"],
        "properties": {
            "channel": {"type": "string", "enum": list(CHANNELS)},
            "status": {"type": "string", "enum": list(STATUS_RANK)},
            "category": {"type": ["string", "null"], "description": "Failure category, such as landline or carrier_filtered."},
            "error_code": {"type": ["string", "null"], "description": "The provider's raw error code."},
            "attempts": {"type": "integer", "minimum": 0},
            "staff_message": {"type": ["string", "null"], "description": "The sentence clinic staff see for this delivery."},
            "next_attempt_at": {**NULLABLE_TIME, "description": "When a scheduled send or a retry is due."},
            "updated_at": NULLABLE_TIME,
        },
    },
    "Message": {
        "type": "object",
        "required": [
            "id", "client_id", "client_pims_id", "direction", "source", "body", "created_at", "send_at", "media",
            "deliveries", "timeline",
        ],
        "properties": {
            "id": {"type": "integer"},
            "client_id": {"type": "integer"},
            "client_pims_id": {"type": ["string", "null"]},
            "direction": {"type": "string", "enum": ["outbound", "inbound"]},
            "source": {"type": "string", "description": "api, admin, client, keyword or another sender."},
            "body": {"type": "string"},
            "created_at": TIME,
            "send_at": {**NULLABLE_TIME, "description": "When a scheduled message goes out, after quiet hours; null when sent at once."},
            "media": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["position", "content_type", "size_bytes"],
                    "properties": {
                        "position": {"type": "integer"},
                        "content_type": {"type": ["string", "null"]},
                        "size_bytes": {"type": ["integer", "null"]},
                    },
                },
            },
            "deliveries": {"type": "array", "items": _ref("Delivery")},
            "timeline": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["at", "event"],
                    "properties": {"at": TIME, "event": {"type": "string"}},
                },
            },
        },
    },
    "ClientRecord": {
        "type": "object",
        "additionalProperties": False,
        "description": "Fields left out keep their stored value. A new client needs at least one number.",
        "properties": {
            "name": {"type": ["string", "null"], "maxLength": MAX_NAME_CHARS},
            "numbers": {
                "type": "array",
                "maxItems": MAX_NUMBERS,
                "description": (
                    "Every number the PIMS lists. Pawpost texts the first mobile or cell number, else the first "
                    "untyped or other number not known as a landline, never a home, work or landline number."
                ),
                "items": {
                    "type": "object",
                    "required": ["number"],
                    "additionalProperties": False,
                    "properties": {
                        "number": {"type": "string"},
                        "type": {"type": ["string", "null"], "enum": [*NUMBER_TYPES, None]},
                    },
                },
            },
            "email": {"type": ["string", "null"], "maxLength": MAX_EMAIL_CHARS},
            "preferences": {
                "type": "object",
                "additionalProperties": False,
                "properties": {"email": {"type": "boolean"}, "push": {"type": "boolean"}},
            },
        },
    },
    "Client": {
        "type": "object",
        "required": [
            "id", "pims_id", "name", "textable_number", "numbers", "email", "email_verified", "preferences",
            "created_at", "updated_at",
        ],
        "properties": {
            "id": {"type": "integer"},
            "pims_id": {"type": ["string", "null"]},
            "name": {"type": "string"},
            "textable_number": {"type": ["string", "null"], "description": "The E.164 number Pawpost texts; null when none can get texts."},
            "numbers": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["number", "type", "extension", "textable"],
                    "properties": {
                        "number": {"type": "string"},
                        "type": {"type": ["string", "null"]},
                        "extension": {"type": ["string", "null"]},
                        "textable": {"type": "boolean"},
                    },
                },
            },
            "email": {"type": ["string", "null"]},
            "email_verified": {"type": "boolean", "description": "True once the client confirmed the address in the Pet Portal."},
            "preferences": {
                "type": "object",
                "required": ["email", "push"],
                "properties": {"email": {"type": "boolean"}, "push": {"type": "boolean"}},
            },
            "created_at": TIME,
            "updated_at": {**NULLABLE_TIME, "description": "When the PIMS last sent this record."},
        },
    },
    "ClientList": {
        "type": "object",
        "required": ["clients", "next_cursor"],
        "properties": {
            "clients": {
                "type": "array",
                "items": {
                    "allOf": [_ref("Client")],
                    "properties": {
                        "problem": {"type": "string", "enum": ["landline", "invalid_number"], "description": "Only with bad_number=true."},
                        "problem_seen_at": {**TIME, "description": "Only with bad_number=true."},
                    },
                },
            },
            "next_cursor": {"type": ["string", "null"], "description": "Pass as cursor for the next page; null on the last page."},
        },
    },
    "FailureWindow": {
        "type": "object",
        "required": ["rate", "attempted", "delivered", "failed", "unknown", "suppressed", "failed_by_category"],
        "properties": {
            "rate": {"type": ["number", "null"], "description": "failed ÷ attempted as a fraction; null when nothing was attempted."},
            "attempted": {"type": "integer"},
            "delivered": {"type": "integer"},
            "failed": {"type": "integer"},
            "unknown": {"type": "integer"},
            "suppressed": {"type": "integer", "description": "Not sent (opted out or landline); not counted as attempted."},
            "failed_by_category": {"type": "object", "additionalProperties": {"type": "integer"}},
        },
    },
    "FailureRates": {
        "type": "object",
        "required": ["windows", "state", "top_category", "thresholds", "daily"],
        "properties": {
            "windows": {
                "type": "object",
                "required": ["24h", "7d", "30d"],
                "properties": {name: _ref("FailureWindow") for name in ("24h", "7d", "30d")},
            },
            "state": {"type": "string", "enum": ["healthy", "watch", "investigate"], "description": "From the 7-day rate."},
            "top_category": {"type": ["string", "null"]},
            "thresholds": {
                "type": "object",
                "required": ["watch_at", "investigate_above"],
                "properties": {"watch_at": {"type": "number"}, "investigate_above": {"type": "number"}},
            },
            "daily": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["date", "attempted", "failed"],
                    "properties": {"date": {"type": "string", "format": "date"}, "attempted": {"type": "integer"}, "failed": {"type": "integer"}},
                },
            },
        },
    },
}

RESPONSES = {
    "BadRequest": _error("Invalid input: the message names the field, the value and the fix."),
    "Unauthorized": _error("The bearer token is missing, unknown or revoked."),
    "NotFound": _error("Nothing with this id exists for the token's clinic."),
    "UnsupportedMediaType": _error("The Content-Type is not one the endpoint accepts."),
    "PayloadTooLarge": _error("The request body is larger than the server's upload limit."),
    "RateLimited": {
        "description": "The token sent too many requests; retry after the number of seconds in Retry-After.",
        "headers": {"Retry-After": {"schema": {"type": "integer"}}},
        "content": _json(_ref("Error")),
    },
}

PIMS_ID = {
    "name": "pims_id",
    "in": "path",
    "required": True,
    "description": "The client's id in the practice-management system.",
    "schema": {"type": "string", "minLength": 1, "maxLength": MAX_PIMS_ID_CHARS},
}

PATHS = {
    "/api/v1/messages": {
        "post": {
            "operationId": "sendMessage",
            "summary": "Send a text, now or at send_at, with optional photos or videos",
            "description": (
                "Creates the client if the clinic has none with this number. Media can be given as URLs (JSON) or "
                "uploaded as files (multipart/form-data, field media). A send inside the clinic's quiet hours is "
                "held until they end."
            ),
            "parameters": [
                {
                    "name": "Idempotency-Key",
                    "in": "header",
                    "required": False,
                    "description": (
                        "Retries with the same key and request return the first response (header Idempotent-Replayed: "
                        "true) and send nothing; the same key with a different request gets 422. Keys are kept for "
                        "PAWPOST_IDEMPOTENCY_KEY_HOURS (48 by default) and can be used again after that."
                    ),
                    "schema": {"type": "string", "minLength": 1, "maxLength": MAX_KEY_CHARS},
                }
            ],
            "requestBody": {
                "required": True,
                "content": {
                    "application/json": {
                        "schema": _ref("MessageRequest"),
                        "example": {"to": "+15551234567", "body": "Rex is due for his rabies booster. Reply to book a visit."},
                    },
                    "multipart/form-data": {"schema": _ref("MessageUpload")},
                },
            },
            "responses": {
                "201": {
                    "description": "The message was stored and queued (or scheduled).",
                    "headers": {
                        "Location": {"schema": {"type": "string"}},
                        "Idempotent-Replayed": {"schema": {"type": "string", "enum": ["true"]}, "description": "Set on a replayed response."},
                    },
                    "content": _json(_ref("Message")),
                },
                "400": {"$ref": "#/components/responses/BadRequest"},
                "409": _error("A request with the same Idempotency-Key is still being processed."),
                "413": {"$ref": "#/components/responses/PayloadTooLarge"},
                "415": {"$ref": "#/components/responses/UnsupportedMediaType"},
                "422": _error("The Idempotency-Key was already used for a different request."),
                **TOKEN_ERRORS,
            },
        }
    },
    "/api/v1/messages/{message_id}": {
        "get": {
            "operationId": "getMessage",
            "summary": "Read a message with its deliveries, what staff see and its timeline",
            "parameters": [
                {"name": "message_id", "in": "path", "required": True, "schema": {"type": "integer", "minimum": 1, "maximum": MAX_ID}}
            ],
            "responses": {
                "200": {"description": "The message.", "content": _json(_ref("Message"))},
                "404": {"$ref": "#/components/responses/NotFound"},
                **TOKEN_ERRORS,
            },
        }
    },
    "/api/v1/clients": {
        "get": {
            "operationId": "listClients",
            "summary": "List the clinic's clients, or with bad_number=true those whose number can't get texts",
            "description": (
                "bad_number=true lists clients whose number is a landline, out of service, or has no mobile number "
                "in the PIMS, newest problem first. Otherwise clients are listed by id."
            ),
            "parameters": [
                {"name": "bad_number", "in": "query", "schema": {"type": "boolean"}},
                {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": MAX_PAGE_SIZE, "default": 50}},
                {"name": "cursor", "in": "query", "schema": {"type": "string"}, "description": "next_cursor of the previous page."},
            ],
            "responses": {
                "200": {"description": "One page of clients.", "content": _json(_ref("ClientList"))},
                "400": {"$ref": "#/components/responses/BadRequest"},
                **TOKEN_ERRORS,
            },
        }
    },
    "/api/v1/clients/{pims_id}": {
        "get": {
            "operationId": "getClient",
            "summary": "Read a client by PIMS id",
            "parameters": [PIMS_ID],
            "responses": {
                "200": {"description": "The client.", "content": _json(_ref("Client"))},
                "404": {"$ref": "#/components/responses/NotFound"},
                **TOKEN_ERRORS,
            },
        },
        "put": {
            "operationId": "upsertClient",
            "summary": "Create or update a client by PIMS id",
            "parameters": [PIMS_ID],
            "requestBody": {
                "required": True,
                "content": {
                    "application/json": {
                        "schema": _ref("ClientRecord"),
                        "example": {
                            "name": "Pat Parent",
                            "numbers": [{"number": "+15551234567", "type": "mobile"}, {"number": "+15557654321", "type": "home"}],
                            "email": "pat@example.com",
                            "preferences": {"email": True, "push": False},
                        },
                    }
                },
            },
            "responses": {
                "200": {"description": "The client was updated.", "content": _json(_ref("Client"))},
                "201": {
                    "description": "The client was created.",
                    "headers": {"Location": {"schema": {"type": "string"}}},
                    "content": _json(_ref("Client")),
                },
                "400": {"$ref": "#/components/responses/BadRequest"},
                "404": {"$ref": "#/components/responses/NotFound"},
                "409": _error("The number to text belongs to another client of the clinic."),
                "415": {"$ref": "#/components/responses/UnsupportedMediaType"},
                **TOKEN_ERRORS,
            },
        },
    },
    "/api/v1/failure-rates": {
        "get": {
            "operationId": "getFailureRates",
            "summary": "Read the clinic's SMS failure rates for 24 hours, 7 days and 30 days",
            "responses": {"200": {"description": "The figures.", "content": _json(_ref("FailureRates"))}, **TOKEN_ERRORS},
        }
    },
    "/api/v1/openapi.json": {
        "get": {
            "operationId": "getOpenApi",
            "summary": "This document",
            "security": [],
            "responses": {
                "200": {"description": "The OpenAPI document.", "content": _json({"type": "object"})},
                "429": {"$ref": "#/components/responses/RateLimited"},
            },
        }
    },
}

DOCUMENT = {
    "openapi": "3.1.0",
    "info": {
        "title": "Pawpost API",
        "version": "1.0.0",
        "description": (
            "Send texts to pet parents, read their delivery status, upsert client contact records from a "
            "practice-management system and read SMS failure rates. Every request needs a clinic API token, "
            "created by a clinic admin at /admin/api-tokens. Errors are JSON: {\"error\": {\"code\", \"message\", \"field\"}}."
        ),
    },
    "servers": [{"url": "/"}],
    "security": [{"bearerAuth": []}],
    "paths": PATHS,
    "components": {
        "securitySchemes": {"bearerAuth": {"type": "http", "scheme": "bearer", "description": "A clinic API token (pp_…)."}},
        "schemas": SCHEMAS,
        "responses": RESPONSES,
    },
}


@bp.get("/openapi.json")
def openapi_document():
    """Serve the OpenAPI document; it needs no token, so integrators can read it before they have one."""
    return jsonify(DOCUMENT)
