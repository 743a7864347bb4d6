"""``Idempotency-Key`` support: the first response to a request is stored and replayed to its retries.

The key row is inserted in the same transaction as the message, and the unique constraint on
``(clinic_id, key)`` decides between concurrent duplicates. The second insert waits for the
first transaction and then fails, so the second request replays the stored response instead
of sending again. A request rejected before it sends anything (invalid input, a media URL that
could not be fetched) stores nothing, so it can be retried with the same key. The reconciler
deletes keys older than ``PAWPOST_IDEMPOTENCY_KEY_HOURS``, after which a key can be used again.
"""

import hashlib
import json
import logging

from flask import jsonify, request
from sqlalchemy.exc import IntegrityError

from portal.api.errors import ApiError
from portal.extensions import db
from portal.models import IdempotencyKey

log = logging.getLogger(__name__)

HEADER = "Idempotency-Key"
MAX_KEY_CHARS = 255


def key_from_request():
    """Return the request's Idempotency-Key, None without one, or raise a 400 ApiError for a malformed key."""
    key = request.headers.get(HEADER)
    if key is None:
        return None
    if not key or len(key) > MAX_KEY_CHARS or not key.isascii() or not key.isprintable():
        raise ApiError(
            400,
            "invalid_header",
            f"The {HEADER} header must be 1 to {MAX_KEY_CHARS} printable ASCII characters, such as a UUID.",
            HEADER,
        )
    return key


def fingerprint(fields):
    """Return the SHA-256 of the method, path and the request's parsed fields, so formatting does not matter."""
    canonical = json.dumps(
        {"method": request.method, "path": request.path, "fields": fields}, sort_keys=True, separators=(",", ":")
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


def stored_response(clinic_id, key, request_hash):
    """Return the stored response for ``key`` if it exists; raise a 422 or 409 ApiError when it cannot be replayed."""
    row = db.session.execute(
        db.select(IdempotencyKey).where(IdempotencyKey.clinic_id == clinic_id, IdempotencyKey.key == key)
    ).scalar_one_or_none()
    if row is None:
        return None
    if row.request_hash != request_hash:
        raise ApiError(
            422,
            "idempotency_key_reused",
            f"The {HEADER} {key!r} was already used for a different request. "
            "Use a new key for each new message, and the same key only to retry the same request.",
            HEADER,
        )
    if row.status_code is None:
        raise ApiError(
            409,
            "idempotency_key_in_use",
            f"A request with the {HEADER} {key!r} is still being processed. Retry in a few seconds.",
            HEADER,
        )
    log.info("Replaying the stored response of idempotency key %s for clinic %s.", row.id, clinic_id)
    return _replay(row)


def claim(clinic_id, key, request_hash):
    """Insert the key row in the current transaction; return it, or the stored response if another request won."""
    # Call before anything else is written in the transaction: the rollback below discards it.
    # A savepoint would not do on SQLite, where pysqlite commits when the outermost one is released.
    row = IdempotencyKey(clinic_id=clinic_id, key=key, request_hash=request_hash)
    db.session.add(row)
    try:
        db.session.flush()
    except IntegrityError:
        # Another request with this key committed first (the insert waited for it).
        db.session.rollback()
        replay = stored_response(clinic_id, key, request_hash)
        if replay is None:
            raise ApiError(
                409,
                "idempotency_key_in_use",
                f"A request with the {HEADER} {key!r} is still being processed. Retry in a few seconds.",
                HEADER,
            ) from None
        return None, replay
    return row, None


def record(row, status_code, body):
    """Store the response on the claimed key row, before the transaction commits."""
    row.status_code = status_code
    row.response_body = json.dumps(body, sort_keys=True)


def _replay(row):
    body = json.loads(row.response_body)
    response = jsonify(body)
    response.status_code = row.status_code
    response.headers["Idempotent-Replayed"] = "true"
    if row.status_code == 201 and isinstance(body, dict) and "id" in body:
        response.headers["Location"] = f"/api/v1/messages/{body['id']}"
    return response
