"""``/messages``: send a text (now, at a set time, or after the clinic's quiet hours) and read its status."""

import hashlib
import logging
import re
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

from flask import current_app, g, jsonify, request

from notifier import outbound_media, remote_media, scheduling
from notifier.phone import InvalidPhoneNumber, normalize
from notifier.sending import (
    InvalidMessage,
    check_new_number,
    enqueue_deliveries,
    find_or_create_client,
    has_visible_text,
    store_message,
    validate_body,
)
from portal.api import bp, idempotency
from portal.api.auth import token_required
from portal.api.errors import ApiError
from portal.api.serialize import message_json
from portal.extensions import db
from portal.models import Message, utcnow

log = logging.getLogger(__name__)

JSON_FIELDS = ("to", "body", "media_urls", "send_at")
MULTIPART_FIELDS = ("to", "body", "send_at")
MULTIPART_FILE_FIELD = "media"
MAX_URL_CHARS = 2000
# Far enough for yearly reminders; a later date is almost always a typo.
MAX_SCHEDULE_AHEAD = timedelta(days=366)
RFC3339 = re.compile(r"\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d{1,6})?([Zz]|[+-]\d{2}:\d{2})")
# Ids above this cannot exist: the column is a 32-bit integer on PostgreSQL.
MAX_ID = 2**31 - 1


@dataclass
class SendRequest:
    """A validated send request; ``fields`` is what the idempotency fingerprint covers."""

    to: str
    body: str
    send_at: datetime | None
    media_urls: list = field(default_factory=list)
    files: list = field(default_factory=list)
    fields: dict = field(default_factory=dict)


@bp.post("/messages")
@token_required
def create_message():
    """Send a text to ``to``, creating the client if the clinic has none with that number."""
    clinic = g.clinic
    send = parse_send_request(clinic.country)
    key = idempotency.key_from_request()
    request_hash = idempotency.fingerprint(send.fields) if key else None
    if key:
        replay = idempotency.stored_response(clinic.id, key, request_hash)
        if replay is not None:
            return replay

    uploads = gather_media(clinic.provider, send)
    send_at = scheduled_time(clinic, send.send_at)

    key_row = None
    if key:
        key_row, replay = idempotency.claim(clinic.id, key, request_hash)
        if replay is not None:
            return replay
    try:
        client, created = find_or_create_client(clinic, send.to)
        message = store_message(client, send.body, "api", uploads=uploads, send_at=send_at)
    except InvalidMessage as exc:
        db.session.rollback()
        raise ApiError(400, "invalid_field", str(exc), exc.field) from None
    body = message_json(message)
    if key_row is not None:
        idempotency.record(key_row, 201, body)
    db.session.commit()

    enqueue_deliveries(message)
    if created:
        check_new_number(client)
    log.info("API token %s sent message %s for clinic %s.", g.api_token_id, message.id, message.clinic_id)
    return jsonify(body), 201, {"Location": f"/api/v1/messages/{message.id}"}


@bp.get("/messages/<int:message_id>")
@token_required
def get_message(message_id):
    """Return a message with each channel's delivery, what staff see and its timeline."""
    return jsonify(message_json(get_message_or_404(message_id)))


def get_message_or_404(message_id):
    """Return the clinic's message ``message_id``; another clinic's message is reported as missing."""
    message = db.session.get(Message, message_id) if message_id <= MAX_ID else None
    if message is None or message.clinic_id != g.clinic.id:
        raise ApiError(404, "not_found", f"Message {message_id} was not found for this clinic. Check the id.")
    return message


def parse_send_request(country):
    """Read a JSON or multipart send request and validate every field before anything is written."""
    if request.mimetype == "application/json":
        data = request.get_json(silent=True)
        if not isinstance(data, dict):
            raise ApiError(
                400, "invalid_json", 'The body must be a JSON object such as {"to": "+15551234567", "body": "..."}.'
            )
        _reject_unknown(data, JSON_FIELDS)
        values, files = dict(data), []
    elif request.mimetype == "multipart/form-data":
        values, files = _multipart_values()
    else:
        raise ApiError(
            415,
            "unsupported_media_type",
            f"The Content-Type {request.mimetype or 'none'!r} is not accepted. "
            "Send application/json, or multipart/form-data to upload files.",
        )

    to = _required_string(values, "to")
    try:
        normalize(to, country)
    except InvalidPhoneNumber as exc:
        raise ApiError(400, "invalid_field", str(exc), "to") from None
    media_urls = _media_urls(values.get("media_urls"))
    has_media = bool(media_urls or files)
    body = _body(values, has_media)
    if len(media_urls) + len(files) > outbound_media.MAX_FILES:
        raise ApiError(
            400,
            "invalid_media",
            f"{len(media_urls) + len(files)} media files were given; a message can carry at most {outbound_media.MAX_FILES}.",
            "media_urls" if media_urls else MULTIPART_FILE_FIELD,
        )
    raw_send_at = values.get("send_at")
    fields = {
        "to": to,
        "body": values.get("body"),
        "media_urls": media_urls,
        "send_at": raw_send_at,
        "media": [hashlib.sha256(data).hexdigest() for _name, data in files],
    }
    return SendRequest(to, body, parse_send_at(raw_send_at), media_urls, files, fields)


def _reject_unknown(data, allowed):
    # A multipart part without a name is read as the name None.
    unknown = sorted((str(name) for name in data if name not in allowed))
    if unknown:
        raise ApiError(
            400,
            "invalid_field",
            f"'{unknown[0]}' is not a field of a message. Send only {', '.join(allowed)}.",
            unknown[0],
        )


def _multipart_values():
    form, uploaded = request.form, request.files
    _reject_unknown(form, MULTIPART_FIELDS)
    values = {}
    for name in form:
        entries = form.getlist(name)
        if len(entries) > 1:
            raise ApiError(400, "invalid_field", f"'{name}' was sent {len(entries)} times; send it once.", name)
        values[name] = entries[0]
    if values.get("send_at") == "":
        del values["send_at"]
    unknown = sorted(str(name) for name in uploaded if name != MULTIPART_FILE_FIELD)
    if unknown:
        raise ApiError(
            400, "invalid_field", f"The file field '{unknown[0]}' is not accepted. Send files as '{MULTIPART_FILE_FIELD}'.", unknown[0]
        )
    files = [(f.filename or f"file {i + 1}", f.read()) for i, f in enumerate(uploaded.getlist(MULTIPART_FILE_FIELD))]
    return values, files


def _required_string(values, name):
    value = values.get(name)
    if not isinstance(value, str):
        raise ApiError(400, "invalid_field", f"'{name}' is required and must be a string.", name)
    return value


def _body(values, has_media):
    body = values.get("body")
    if body is None and has_media:
        return ""
    if not isinstance(body, str):
        raise ApiError(400, "invalid_field", "'body' is required and must be a string.", "body")
    if has_media and not has_visible_text(body):
        return ""
    try:
        return validate_body(body)
    except InvalidMessage as exc:
        raise ApiError(400, "invalid_field", str(exc), exc.field) from None


def _media_urls(value):
    if value is None:
        return []
    if not isinstance(value, list):
        raise ApiError(400, "invalid_field", "'media_urls' must be a list of http or https URLs, such as [\"https://files.example.com/rex.jpg\"].", "media_urls")
    for index, url in enumerate(value):
        if not isinstance(url, str) or not url or len(url) > MAX_URL_CHARS:
            raise ApiError(
                400,
                "invalid_field",
                f"'media_urls[{index}]' must be an http or https URL of at most {MAX_URL_CHARS} characters.",
                f"media_urls[{index}]",
            )
    return value


def parse_send_at(value):
    """Parse ``value`` (RFC 3339 text with an offset) to aware UTC; return None when absent, raise a 400 ApiError when invalid."""
    if value is None:
        return None
    example = "2026-03-09T09:00:00-04:00 or 2026-03-09T13:00:00Z"
    if not isinstance(value, str) or not RFC3339.fullmatch(value):
        raise ApiError(
            400, "invalid_field", f"'send_at' is {value!r}, which is not an RFC 3339 time with an offset, such as {example}.", "send_at"
        )
    try:
        moment = datetime.fromisoformat(value.upper().replace(" ", "T")).astimezone(timezone.utc)
    except (ValueError, OverflowError):
        raise ApiError(
            400, "invalid_field", f"'send_at' is {value!r}, which is not a real date and time, such as {example}.", "send_at"
        ) from None
    if moment > utcnow() + MAX_SCHEDULE_AHEAD:
        raise ApiError(
            400,
            "invalid_field",
            f"'send_at' is {value!r}, more than {MAX_SCHEDULE_AHEAD.days} days ahead. Schedule it closer to the date.",
            "send_at",
        )
    return moment


def scheduled_time(clinic, requested):
    """Return the send time (aware UTC), or None to send now.

    A past time means now, and the clinic's quiet hours can move the time later.
    """
    now = utcnow()
    when = max(requested or now, now)
    try:
        allowed = scheduling.next_allowed_time(clinic, when)
    except scheduling.InvalidTimezone:
        log.error("Clinic %s has an invalid time zone; quiet hours are not applied until it is fixed.", clinic.id)
        allowed = when
    return allowed if allowed > now else None


def gather_media(provider, send):
    """Return the uploads (name, data, content_type) of the request's files and media URLs, checked against the provider's limits."""
    named = [(name, data, MULTIPART_FILE_FIELD) for name, data in send.files]
    policy = remote_media.FetchPolicy(
        max_bytes=outbound_media.LIMITS[provider]["total"],
        allow_loopback=current_app.config["PAWPOST_ENV"] != "production",
    )
    deadline = time.monotonic() + remote_media.TOTAL_TIMEOUT_SECONDS
    for index, url in enumerate(send.media_urls):
        try:
            data = remote_media.fetch(url, policy, deadline)
        except remote_media.MediaFetchFailed as exc:
            raise ApiError(400, "invalid_media", str(exc), f"media_urls[{index}]") from None
        named.append((url, data, f"media_urls[{index}]"))
    for name, data, field_name in named:
        try:
            outbound_media.check_uploads(provider, [(name, data)])
        except outbound_media.UploadRejected as exc:
            raise ApiError(400, "invalid_media", str(exc), field_name) from None
    try:
        return outbound_media.check_uploads(provider, [(name, data) for name, data, _field in named])
    except outbound_media.UploadRejected as exc:
        raise ApiError(400, "invalid_media", str(exc), "media_urls" if send.media_urls else MULTIPART_FILE_FIELD) from None
