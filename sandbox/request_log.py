"""Log of the raw provider API requests, so tests can assert what the SDKs sent."""

import flask

from sandbox.state import SandboxState, iso_utc, utc_now


def current_state() -> SandboxState:
    """Return the sandbox state of the running app."""
    return flask.current_app.extensions["sandbox"]


def request_payload(request: flask.Request) -> dict:
    """Return the request's form fields (as lists) or JSON body, whichever it carries."""
    if request.mimetype == "application/x-www-form-urlencoded":
        return {"form": request.form.to_dict(flat=False), "json": None}
    if request.is_json:
        return {"form": None, "json": request.get_json(silent=True)}
    return {"form": None, "json": None}


def record_request() -> None:
    """Store the incoming API request in the log (a before_request hook)."""
    request = flask.request
    auth = request.authorization
    entry = {
        "time": iso_utc(utc_now()),
        "method": request.method,
        "path": request.path,
        "query": request.args.to_dict(flat=False),
        "username": auth.username if auth else None,
        "password": auth.password if auth else None,
        "content_type": request.content_type,
        **request_payload(request),
        "status": None,
    }
    flask.g.sandbox_request_entry = current_state().log_request(entry)


def record_status(response: flask.Response) -> flask.Response:
    """Add the response status to the logged request (an after_request hook)."""
    entry = flask.g.get("sandbox_request_entry")
    if entry is not None:
        with current_state().lock:
            entry["status"] = response.status_code
    return response


def log_requests_of(blueprint: flask.Blueprint) -> flask.Blueprint:
    """Register the request log hooks on a provider API blueprint and return it."""
    blueprint.before_request(record_request)
    blueprint.after_request(record_status)
    return blueprint
