"""Check staff uploads against each provider's MMS limits, and sign the URLs providers fetch."""

from flask import current_app
from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer

from notifier.media import sniff_type

MAX_FILES = 10
# Twilio takes up to 10 media and 5 MB per message: jpeg, png and gif up to 5 MB each, other
# accepted types up to 500 KB (twilio 9.13 MessageList.create docstring). Bandwidth takes
# 3.5 MB per file (its support article on MMS limits), and Pawpost keeps the total to 3.5 MB too.
LIMITS = {
    "twilio": {
        "total": 5 * 1024 * 1024,
        "types": {
            "image/jpeg": 5 * 1024 * 1024,
            "image/png": 5 * 1024 * 1024,
            "image/gif": 5 * 1024 * 1024,
            "video/mp4": 500 * 1024,
            "video/3gpp": 500 * 1024,
            "video/quicktime": 500 * 1024,
        },
    },
    "bandwidth": {
        "total": 3584 * 1024,
        "types": {
            "image/jpeg": 3584 * 1024,
            "image/png": 3584 * 1024,
            "image/gif": 3584 * 1024,
            "video/mp4": 3584 * 1024,
            "video/3gpp": 3584 * 1024,
        },
    },
}


class UploadRejected(ValueError):
    """An upload breaks a provider limit; the text names the file and the limit."""


def check_uploads(provider, files):
    """Return ``[(name, data, content_type)]`` for ``files`` (name, data) or raise UploadRejected."""
    limits = LIMITS[provider]
    if len(files) > MAX_FILES:
        raise UploadRejected(f"{len(files)} files were attached; a message can carry at most {MAX_FILES}.")
    checked, total = [], 0
    for name, data in files:
        content_type = sniff_type(data)
        if content_type not in limits["types"]:
            allowed = ", ".join(sorted(limits["types"]))
            raise UploadRejected(f"{name} is {content_type or 'of an unknown type'}; send one of: {allowed}.")
        limit = limits["types"][content_type]
        if len(data) > limit:
            raise UploadRejected(f"{name} is {_size(len(data))}; {content_type} files can be at most {_size(limit)}.")
        total += len(data)
        checked.append((name, data, content_type))
    if total > limits["total"]:
        raise UploadRejected(f"The attachments add up to {_size(total)}; the limit per message is {_size(limits['total'])}.")
    return checked


def _size(count):
    return f"{count / 1024 / 1024:.1f} MB" if count >= 1024 * 1024 else f"{count / 1024:.0f} KB"


def _serializer():
    return URLSafeTimedSerializer(current_app.config["SECRET_KEY"], salt="provider-media")


def signed_url(attachment_id):
    """Return the public, unguessable URL a provider fetches an attachment from."""
    token = _serializer().dumps(attachment_id)
    return f"{current_app.config['PAWPOST_BASE_URL']}/webhooks/media/{token}"


def attachment_id_from(token):
    """Return the attachment id of a media URL token, or None when it is forged or expired."""
    max_age = current_app.config["PAWPOST_MEDIA_URL_HOURS"] * 3600
    try:
        return int(_serializer().loads(token, max_age=max_age))
    except (BadSignature, SignatureExpired, ValueError, TypeError):
        return None
