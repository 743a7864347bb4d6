"""JSON errors of the API: ``{"error": {"code", "message", "field"?}}`` with a fitting HTTP status."""

import logging

from flask import current_app, jsonify, request
from werkzeug.exceptions import HTTPException

log = logging.getLogger(__name__)

# Error codes for the HTTP errors Werkzeug raises before or around a view.
HTTP_CODES = {
    400: ("invalid_request", "The request could not be read. Check the body and its Content-Type header."),
    401: ("unauthorized", "Send the clinic's API token as 'Authorization: Bearer <token>'."),
    404: ("not_found", "There is no API endpoint at this path. See /api/v1/openapi.json for the endpoints."),
    405: ("method_not_allowed", "This endpoint does not accept {method}. See /api/v1/openapi.json for the methods it accepts."),
    413: ("payload_too_large", "The request body is larger than the limit of {limit}. Send smaller or fewer files."),
    415: ("unsupported_media_type", "Send the request as JSON (Content-Type: application/json)."),
    429: ("rate_limited", "Too many requests. Wait a minute and try again."),
}
INTERNAL_ERROR = "Pawpost failed to handle this request. Try again in a minute; if it keeps failing, contact support."


class ApiError(Exception):
    """An error response: the HTTP status, a stable code, a sentence naming the value and the fix, and the field."""

    def __init__(self, status, code, message, field=None, headers=None):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.field = field
        self.headers = headers or {}


def error_response(status, code, message, field=None, headers=None):
    """Return the JSON error response for ``status``."""
    error = {"code": code, "message": message}
    if field is not None:
        error["field"] = field
    response = jsonify(error=error)
    response.status_code = status
    response.headers.update(headers or {})
    return response


def init_app(bp):
    """Register the API's error handlers on its blueprint."""
    bp.register_error_handler(ApiError, _api_error)
    bp.register_error_handler(HTTPException, http_error)
    bp.register_error_handler(Exception, _unexpected_error)


def _api_error(exc):
    return error_response(exc.status, exc.code, exc.message, exc.field, exc.headers)


def http_error(exc):
    """Return the API's JSON form of a Werkzeug HTTP error; also used for /api/ paths no route matched."""
    status = exc.code or 500
    if status >= 500:
        return _unexpected_error(exc)
    if status in HTTP_CODES:
        code, template = HTTP_CODES[status]
        limit = current_app.config.get("MAX_CONTENT_LENGTH") or 0
        size = f"{limit / 1024 / 1024:.1f} MB" if limit >= 1024 * 1024 else f"{limit} bytes"
        message = template.format(method=request.method, limit=size)
    else:
        code, message = "invalid_request", exc.description or "The request is invalid."
    headers = {}
    if status == 405 and getattr(exc, "valid_methods", None):
        headers["Allow"] = ", ".join(exc.valid_methods)
    return error_response(status, code, message, headers=headers)


def _unexpected_error(exc):
    if isinstance(exc, HTTPException) and (exc.code or 500) < 500:
        return http_error(exc)
    log.exception("API request %s %s failed.", request.method, request.path)
    return error_response(500, "internal_error", INTERNAL_ERROR)
