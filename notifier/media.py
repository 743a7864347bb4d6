"""Store message attachments on disk, outside the web root, named by content hash."""

import hashlib
import os
from pathlib import Path

import filetype
from flask import current_app

# The largest file Pawpost keeps from a provider; Twilio's MMS limit is 5 MB per message.
MAX_MEDIA_BYTES = 5 * 1024 * 1024


class MediaRejected(ValueError):
    """A file is too large or of a type Pawpost does not keep."""


def media_root():
    return Path(current_app.config["PAWPOST_MEDIA_DIR"])


def sniff_type(data):
    """Return the MIME type read from the bytes themselves, or None when unknown."""
    kind = filetype.guess(data)
    return kind.mime if kind else None


def store(clinic_id, message_id, position, data):
    """Write ``data`` under the media directory; return ``(storage_key, content_type)``."""
    if len(data) > MAX_MEDIA_BYTES:
        raise MediaRejected(f"The file is {len(data)} bytes; the limit is {MAX_MEDIA_BYTES} bytes.")
    content_type = sniff_type(data)
    if content_type is None or not content_type.startswith(("image/", "video/", "audio/")):
        raise MediaRejected(f"The file type {content_type or 'unknown'} is not an image, video or audio file.")
    digest = hashlib.sha256(data).hexdigest()[:32]
    key = f"{clinic_id}/{message_id}/{position}-{digest}"
    path = media_root() / key
    path.parent.mkdir(parents=True, exist_ok=True)
    # Write then rename, so a reader never sees half a file.
    partial = path.with_suffix(".part")
    partial.write_bytes(data)
    os.replace(partial, path)
    return key, content_type


def path_for(storage_key):
    """Return the file path of a stored attachment, refusing keys that leave the media directory."""
    root = media_root().resolve()
    path = (root / storage_key).resolve()
    if root not in path.parents:
        raise MediaRejected(f"The storage key {storage_key!r} is outside the media directory.")
    return path
