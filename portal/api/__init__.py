"""JSON API for practice-management systems, authenticated by a per-clinic bearer token.

The OpenAPI document at /api/v1/openapi.json describes every endpoint.
"""

from flask import Blueprint

from portal import inputs
from portal.api import auth, errors
from portal.api.errors import ApiError
from portal.extensions import csrf

bp = Blueprint("api", __name__, url_prefix="/api/v1")
csrf.exempt(bp)
errors.init_app(bp)
bp.before_request(auth.check_rate_limit)


@bp.before_request
def reject_unstorable_text():
    """Reject a request whose path, query, form or JSON text contains a NUL or lone surrogate, naming the field."""
    field = inputs.submitted_unstorable_field(include_json=True)
    if field is not None:
        raise ApiError(400, "invalid_field", inputs.unstorable_message(field), field)


# Imported last: these modules add their routes to ``bp``.
from portal.api import batch, clients, messages, openapi, reports  # noqa: E402,F401
