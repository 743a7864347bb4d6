"""Bearer-token authentication and the per-token rate limit of the API."""

import hashlib
import logging
import math
import time
from datetime import timedelta
from functools import wraps

import redis
from flask import current_app, g, request
from limits import parse as parse_limit
from sqlalchemy import or_, update

from portal.api.errors import ApiError
from portal.extensions import db
from portal.ratelimit import current_limiter
from portal.models import ApiToken, utcnow

log = logging.getLogger(__name__)

# last_used_at is written at most once per this interval per token, so a busy PIMS costs one
# small UPDATE a minute instead of one per request.
LAST_USED_RESOLUTION = timedelta(minutes=1)
DEFAULT_RATE_LIMIT = "600 per minute"


def token_required(view):
    """Authenticate the request's bearer token and set ``g.clinic`` and ``g.api_token_id``, or raise a 401 ApiError."""

    @wraps(view)
    def wrapped(*args, **kwargs):
        token = authenticate(request.headers.get("Authorization", ""))
        g.api_token_id = token.id
        g.clinic = token.clinic
        return view(*args, **kwargs)

    return wrapped


def authenticate(header):
    """Return the active ApiToken named by an ``Authorization: Bearer`` header, or raise a 401 ApiError."""
    raw = _bearer_value(header)
    if raw is None:
        raise ApiError(401, "unauthorized", "Send the clinic's API token as 'Authorization: Bearer <token>'.")
    token = db.session.execute(
        db.select(ApiToken).where(ApiToken.token_hash == ApiToken.hash(raw))
    ).scalar_one_or_none()
    if token is None or token.revoked_at is not None:
        raise ApiError(
            401, "unauthorized", "The API token is invalid or revoked. Ask a clinic admin for a new one in Pawpost."
        )
    _touch(token)
    return token


def _bearer_value(header):
    scheme, _, raw = header.partition(" ")
    raw = raw.strip()
    if scheme.lower() != "bearer" or not raw or not raw.isascii():
        return None
    return raw


def _touch(token):
    now = utcnow()
    if token.last_used_at is not None and now - token.last_used_at < LAST_USED_RESOLUTION:
        return
    # Conditional, so concurrent requests of one token write once.
    db.session.execute(
        update(ApiToken)
        .where(
            ApiToken.id == token.id,
            or_(ApiToken.last_used_at.is_(None), ApiToken.last_used_at < now - LAST_USED_RESOLUTION),
        )
        .values(last_used_at=now)
        .execution_options(synchronize_session=False)
    )
    db.session.commit()


def check_rate_limit():
    """Count the request against its token's limit (PAWPOST_API_RATE_LIMIT); raise a 429 ApiError past it.

    Requests without a bearer token share a limit per client address. When Redis is unreachable
    the request goes through, since refusing every API call would be worse than no limit.
    """
    limit = parse_limit(current_app.config.get("PAWPOST_API_RATE_LIMIT") or DEFAULT_RATE_LIMIT)
    raw = _bearer_value(request.headers.get("Authorization", ""))
    key = "token:" + hashlib.sha256(raw.encode()).hexdigest()[:32] if raw else "address:" + (request.remote_addr or "")
    try:
        counter = current_limiter()
        if counter.hit(limit, "api", key):
            return
        reset = counter.get_window_stats(limit, "api", key).reset_time
    except redis.exceptions.RedisError as exc:
        log.warning("API rate limit not checked: Redis is unreachable (%s).", exc)
        return
    wait = max(1, math.ceil(reset - time.time()))
    raise ApiError(
        429,
        "rate_limited",
        f"This API token sent more than {limit} requests. Wait {wait} seconds, then try again.",
        headers={"Retry-After": str(wait)},
    )
