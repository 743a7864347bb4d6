"""Reject submitted text that the database cannot store: a NUL or an unpaired UTF-16 surrogate.

PostgreSQL rejects a NUL in any text column, and a lone surrogate (a JSON escape such as
``\ud83d`` without its pair) cannot be encoded as UTF-8 at all. A person cannot type either into
a form, so a form or API request that contains one gets a 400 that names the field, before a
view reads it. Provider webhooks are not rejected, because the provider would retry them: their
texts are stored with each such character replaced by U+FFFD (``storable_text``).
"""

import re

from flask import abort, request
from flask.json.provider import DefaultJSONProvider

# A NUL, or a surrogate code point: JSON joins each valid pair into one character, so any left is unpaired.
UNSTORABLE = re.compile("[\x00\ud800-\udfff]")
# The stand-in for such a character in a provider's text, so the text can be stored.
REPLACEMENT = "\ufffd"
FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")


def unstorable_field(value, name=""):
    """Return the name of the first field of ``value`` whose name or text has a NUL or lone surrogate, or None.

    ``value`` is a string, a list, a dict (as parsed JSON) or a MultiDict. Nested fields are named
    as ``messages[0].body``.
    """
    if isinstance(value, str):
        return (name or "value") if UNSTORABLE.search(value) else None
    if isinstance(value, list):
        for index, item in enumerate(value):
            found = unstorable_field(item, f"{name}[{index}]")
            if found:
                return found
        return None
    if hasattr(value, "items"):
        # A MultiDict lists every value of a repeated field only with multi=True.
        pairs = value.items(multi=True) if hasattr(value, "getlist") else value.items()
        for key, item in pairs:
            key_text = str(key)
            field = f"{name}.{key_text}" if name else key_text
            if UNSTORABLE.search(key_text):
                return field
            found = unstorable_field(item, field)
            if found:
                return found
    return None


def storable_text(value):
    """Return ``value`` with each NUL and lone surrogate replaced by U+FFFD when it is a string, else unchanged.

    Webhook handling uses it, because a rejected webhook would be retried by the provider.
    """
    if isinstance(value, str):
        return UNSTORABLE.sub(REPLACEMENT, value)
    return value


def submitted_unstorable_field(include_json=False):
    """Return the first field of this request's path, query, form or (with ``include_json``) JSON that cannot be stored."""
    found = unstorable_field(request.view_args or {}) or unstorable_field(request.args)
    if found is None and request.method != "GET" and request.mimetype in FORM_TYPES:
        found = unstorable_field(request.form)
    if found is None and include_json and request.mimetype == "application/json":
        found = unstorable_field(request.get_json(silent=True))
    return found


def unstorable_message(field):
    """Return the error message for a NUL or lone surrogate in ``field``, with the fix."""
    return (
        f"'{field}' contains a NUL character (\\u0000) or an unpaired UTF-16 surrogate (\\ud800 to \\udfff), "
        "which Pawpost cannot store. Remove it, or send the whole character, and send again."
    )


class JSONProvider(DefaultJSONProvider):
    """Flask's JSON, reading JSON nested too deeply for Python's parser as invalid, not as a server error."""

    def loads(self, s, **kwargs):
        try:
            return super().loads(s, **kwargs)
        except RecursionError:
            # Werkzeug handles a ValueError as invalid JSON: a 400, or None when silent.
            raise ValueError("The JSON is nested too deeply.") from None


def init_app(app):
    """Read JSON with JSONProvider, and reject browser requests with a NUL or lone surrogate.

    The API and webhooks handle their own requests.
    """
    app.json = JSONProvider(app)

    @app.before_request
    def reject_unstorable_form_text():
        # The reply view reads its form itself, to show the error of an oversized one on the thread page.
        if request.blueprint in ("api", "webhooks") or request.endpoint == "portal.reply":
            return None
        field = submitted_unstorable_field(include_json=True)
        if field is not None:
            abort(400, unstorable_message(field))
        return None
