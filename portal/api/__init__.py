"""JSON API for practice-management systems, authenticated by a per-clinic bearer token.

The OpenAPI document at /api/v1/openapi.json describes every endpoint.
"""

from flask import Blueprint

from portal.api import auth, errors
from portal.extensions import csrf

bp = Blueprint("api", __name__, url_prefix="/api/v1")
csrf.exempt(bp)
errors.init_app(bp)
bp.before_request(auth.check_rate_limit)

# Imported last: these modules add their routes to ``bp``.
from portal.api import batch, clients, messages, openapi, reports  # noqa: E402,F401
