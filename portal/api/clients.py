"""``/clients``: upsert a client record by its PIMS id, and list clients, or those whose number must be fixed."""

import base64
import binascii
import json
import logging
from datetime import datetime
from urllib.parse import quote

from flask import g, jsonify, request
from sqlalchemy.exc import IntegrityError

from notifier import clients
from notifier.sending import check_new_number
from portal.api import bp
from portal.api.auth import token_required
from portal.api.errors import ApiError
from portal.api.messages import MAX_ID
from portal.api.serialize import client_json, iso
from portal.dashboard import worklist
from portal.extensions import db
from portal.models import Client

log = logging.getLogger(__name__)

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 200


@bp.put("/clients/<pims_id>")
@token_required
def put_client(pims_id):
    """Create or update the clinic's client with this PIMS id; 201 when created, 200 when updated."""
    if request.mimetype != "application/json":
        raise ApiError(
            415,
            "unsupported_media_type",
            f"The Content-Type {request.mimetype or 'none'!r} is not accepted. Send the client record as application/json.",
        )
    data = request.get_json(silent=True)
    if not isinstance(data, dict):
        raise ApiError(400, "invalid_json", 'The body must be a JSON object such as {"name": "Pat Parent", "numbers": [...]}.')

    client, created, number_changed = _upsert_with_retry(pims_id, data)

    if number_changed and client.textable:
        check_new_number(client)
    log.info("API token %s %s client %s of clinic %s.", g.api_token_id, "created" if created else "updated", client.id, client.clinic_id)
    headers = {"Location": f"/api/v1/clients/{quote(pims_id, safe='')}"} if created else {}
    return jsonify(client_json(client)), 201 if created else 200, headers


@bp.get("/clients/<pims_id>")
@token_required
def get_client(pims_id):
    """Return the clinic's client with this PIMS id."""
    client = clients.find_by_pims_id(g.clinic, pims_id) if len(pims_id) <= clients.MAX_PIMS_ID_CHARS else None
    if client is None:
        raise ApiError(404, "not_found", f"No client with PIMS id {pims_id!r} was found for this clinic. Check the id.")
    return jsonify(client_json(client))


def _upsert_with_retry(pims_id, data):
    # A concurrent request may create the same PIMS id or claim the same number between our
    # reads and our commit. The unique constraints stop it, or the number looks taken by the
    # record being created; the second try sees the committed row either way.
    for attempt in (1, 2):
        try:
            client, created, number_changed = clients.upsert(g.clinic, pims_id, data)
            db.session.commit()
            return client, created, number_changed
        except clients.InvalidClient as exc:
            db.session.rollback()
            raise ApiError(400, "invalid_field", str(exc), exc.field) from None
        except clients.NumberConflict as exc:
            db.session.rollback()
            if attempt == 2:
                raise ApiError(409, "number_conflict", str(exc), exc.field) from None
        except IntegrityError:
            db.session.rollback()
            if attempt == 2:
                raise ApiError(
                    409, "conflict", f"Client {pims_id!r} was changed by another request at the same time. Send it again."
                ) from None
    raise AssertionError("unreachable")


@bp.get("/clients")
@token_required
def list_clients():
    """List the clinic's clients by id, or with ``bad_number=true`` those whose number can't get texts."""
    bad_number = _bool_arg("bad_number")
    limit = _limit_arg()
    cursor = _cursor_arg()
    if bad_number:
        items, next_cursor = _bad_number_page(limit, cursor)
    else:
        items, next_cursor = _client_page(limit, cursor)
    return jsonify(clients=items, next_cursor=next_cursor)


def _client_page(limit, cursor):
    if cursor is not None and set(cursor) != {"id"}:
        raise _bad_cursor()
    statement = db.select(Client).where(Client.clinic_id == g.clinic.id).order_by(Client.id).limit(limit + 1)
    if cursor is not None:
        statement = statement.where(Client.id > cursor["id"])
    rows = db.session.execute(statement).scalars().all()
    page = rows[:limit]
    next_cursor = _encode_cursor({"id": page[-1].id}) if len(rows) > limit else None
    return [client_json(client) for client in page], next_cursor


def _bad_number_page(limit, cursor):
    if cursor is not None and set(cursor) != {"id", "seen"}:
        raise _bad_cursor()
    rows = sorted(worklist([g.clinic.id]), key=lambda row: (row["seen"], row["client"].id), reverse=True)
    if cursor is not None:
        try:
            after = (datetime.fromisoformat(cursor["seen"]), cursor["id"])
        except (TypeError, ValueError):
            raise _bad_cursor() from None
        if after[0].tzinfo is None:
            raise _bad_cursor()
        rows = [row for row in rows if (row["seen"], row["client"].id) < after]
    page = rows[:limit]
    next_cursor = None
    if len(rows) > limit:
        last = page[-1]
        next_cursor = _encode_cursor({"seen": last["seen"].isoformat(), "id": last["client"].id})
    items = [
        {**client_json(row["client"]), "problem": row["problem"], "problem_seen_at": iso(row["seen"])} for row in page
    ]
    return items, next_cursor


def _bool_arg(name):
    value = request.args.get(name)
    if value is None:
        return False
    if value.lower() in ("true", "1"):
        return True
    if value.lower() in ("false", "0"):
        return False
    raise ApiError(400, "invalid_parameter", f"'{name}' is {value!r}; use true or false.", name)


def _limit_arg():
    value = request.args.get("limit")
    if value is None:
        return DEFAULT_PAGE_SIZE
    # Only ASCII digits: str.isdigit() also accepts characters such as "²" that int() rejects.
    whole_number = value.isascii() and value.isdigit() and len(value) <= len(str(MAX_PAGE_SIZE))
    if not whole_number or not 1 <= int(value) <= MAX_PAGE_SIZE:
        raise ApiError(400, "invalid_parameter", f"'limit' is {value!r}; use a whole number from 1 to {MAX_PAGE_SIZE}.", "limit")
    return int(value)


def _cursor_arg():
    value = request.args.get("cursor")
    if value is None:
        return None
    try:
        decoded = json.loads(base64.urlsafe_b64decode(value + "=" * (-len(value) % 4)))
    except (binascii.Error, ValueError, UnicodeDecodeError, RecursionError):
        raise _bad_cursor() from None
    position = decoded.get("id") if isinstance(decoded, dict) else None
    if not isinstance(position, int) or isinstance(position, bool) or not 0 <= position <= MAX_ID:
        raise _bad_cursor()
    return decoded


def _encode_cursor(position):
    return base64.urlsafe_b64encode(json.dumps(position, separators=(",", ":")).encode()).decode().rstrip("=")


def _bad_cursor():
    return ApiError(
        400,
        "invalid_parameter",
        "'cursor' is not a cursor from this listing. Pass the next_cursor of the previous page unchanged, or leave it out.",
        "cursor",
    )
