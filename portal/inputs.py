"""Reject submitted text with a NUL character, which PostgreSQL cannot store in any text column.

A person cannot type one into a form, so a form or API request that contains one gets a 400 that
names the field, before a view reads it. Provider webhooks are not rejected, because the provider
would retry them: their texts are stored with each NUL replaced by U+FFFD (``without_nul``).
"""

from flask import abort, request

NUL = "\x00"
# The stand-in for a NUL in a provider's text, so the text can be stored.
REPLACEMENT = "\ufffd"
FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")


def nul_field(value, name=""):
    """Return the name of the first field of ``value`` whose name or text contains a NUL, or None.

    ``value`` is a string, a list, a dict (as parsed JSON) or a MultiDict. Nested fields are named
    as ``messages[0].body``.
    """
    if isinstance(value, str):
        return (name or "value") if NUL in value else None
    if isinstance(value, list):
        for index, item in enumerate(value):
            found = nul_field(item, f"{name}[{index}]")
            if found:
                return found
        return None
    if hasattr(value, "items"):
        # A MultiDict lists every value of a repeated field only with multi=True.
        pairs = value.items(multi=True) if hasattr(value, "getlist") else value.items()
        for key, item in pairs:
            key_text = str(key)
            field = f"{name}.{key_text}" if name else key_text
            if NUL in key_text:
                return field
            found = nul_field(item, field)
            if found:
                return found
    return None


def without_nul(value):
    """Return ``value`` with each NUL replaced by U+FFFD when it is a string, else unchanged.

    Webhook handling uses it, because a rejected webhook would be retried by the provider.
    """
    if isinstance(value, str) and NUL in value:
        return value.replace(NUL, REPLACEMENT)
    return value


def submitted_nul_field(include_json=False):
    """Return the first field of this request's path, query, form or (with ``include_json``) JSON with a NUL."""
    found = nul_field(request.view_args or {}) or nul_field(request.args)
    if found is None and request.method != "GET" and request.mimetype in FORM_TYPES:
        found = nul_field(request.form)
    if found is None and include_json and request.mimetype == "application/json":
        found = nul_field(request.get_json(silent=True))
    return found


def nul_message(field):
    """Return the error message for a NUL in ``field``, with the fix."""
    return f"'{field}' contains a NUL character (\\u0000), which Pawpost cannot store. Remove it and send again."


def init_app(app):
    """Reject browser requests with a NUL character. The API and webhooks handle their own requests."""

    @app.before_request
    def reject_nul_in_forms():
        # The reply view reads its form itself, to show the error of an oversized one on the thread page.
        if request.blueprint in ("api", "webhooks") or request.endpoint == "portal.reply":
            return None
        field = submitted_nul_field(include_json=True)
        if field is not None:
            abort(400, nul_message(field))
        return None
