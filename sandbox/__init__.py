"""Sandbox carrier: a local stand-in for the Twilio and Bandwidth messaging APIs.

The official SDKs talk to it over HTTP, and it posts status callbacks and inbound message
webhooks back the way each provider does. Pawpost uses it only when configured to. See
sandbox/README.md.
"""

import flask
from werkzeug.exceptions import HTTPException

from sandbox import bandwidth_api, inbound, media, phones, twilio_api, twilio_lookup
from sandbox.bandwidth_payloads import error_body as bandwidth_error_body
from sandbox.config import normalize_config
from sandbox.state import SandboxState
from sandbox.twilio_payloads import error_body as twilio_error_body


def render_http_error(error: HTTPException):
    """Render routing errors under a provider's path in that provider's JSON error shape."""
    path = flask.request.path
    if path.startswith(("/2010-04-01/", "/v2/")):
        code = 20404 if error.code == 404 else error.code
        return flask.jsonify(twilio_error_body(code, error.description, error.code)), error.code
    if path.startswith("/api/v2/"):
        error_type = "not-found" if error.code == 404 else "request-error"
        return flask.jsonify(bandwidth_error_body(error_type, error.description)), error.code
    return error


def create_app(config: dict | None = None) -> flask.Flask:
    """Build the sandbox app, raising ValueError if the config is invalid."""
    app = flask.Flask(__name__)
    app.extensions["sandbox"] = SandboxState(normalize_config(config))
    app.register_blueprint(twilio_api.blueprint)
    app.register_blueprint(bandwidth_api.blueprint)
    app.register_blueprint(twilio_lookup.blueprint)
    app.register_blueprint(media.twilio_blueprint)
    app.register_blueprint(media.bandwidth_blueprint)
    app.register_blueprint(phones.blueprint)
    app.register_blueprint(inbound.blueprint)
    app.register_error_handler(HTTPException, render_http_error)
    return app
