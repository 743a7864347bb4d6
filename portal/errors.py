"""Error pages: plain sentences that state what happened and what to do next."""

import logging

from flask import jsonify, render_template, request
from flask_wtf.csrf import CSRFError
from werkzeug.exceptions import HTTPException

log = logging.getLogger(__name__)

MESSAGES = {
    400: "The request could not be understood. Go back, reload the page and try again.",
    401: "Please sign in first: open the newest link your clinic texted or emailed you.",
    403: "You do not have access to this page.",
    404: "This page does not exist or you do not have access to it.",
    405: "This page does not accept that kind of request.",
    500: "Something went wrong on our side. Try again in a minute; if it keeps happening, contact support.",
}


def init_app(app):
    for code in MESSAGES:
        app.register_error_handler(code, _render)
    app.register_error_handler(CSRFError, _csrf_failed)


def _wants_json():
    return request.path.startswith(("/api/", "/webhooks/", "/healthz"))


def _render(exc):
    if request.path.startswith("/api/") and isinstance(exc, HTTPException):
        # Errors raised before an API view runs (no matching route or method) keep the API's format.
        from portal.api.errors import http_error

        return http_error(exc)
    code = getattr(exc, "code", 500) or 500
    if code >= 500:
        log.error("Unhandled error on %s %s.", request.method, request.path)
    text = MESSAGES.get(code, MESSAGES[500])
    # An abort() with its own sentence, naming the value and the fix, is more useful than the default.
    if isinstance(exc, HTTPException) and code < 500 and exc.description != type(exc).description:
        text = exc.description
    if _wants_json():
        return jsonify(error={"code": code, "message": text}), code
    return render_template("error.html", code=code, text=text), code


def _csrf_failed(exc):
    text = "This form expired. Reload the page and press the button again."
    return render_template("error.html", code=400, text=text), 400
