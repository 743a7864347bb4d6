"""Store message attachments on disk, outside the web root, named by content hash."""

import hashlib
import logging
import os
import threading
from pathlib import Path

import filetype
from flask import current_app

log = logging.getLogger(__name__)

# A photo's smaller copy lies beside it, named after it with this suffix.
PREVIEW_SUFFIX = ".preview.jpg"

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


# Photos wider or taller than this are shown in the Pet Portal as a JPEG copy of this size,
# enough for a phone screen at twice its CSS pixels.
PREVIEW_MAX_SIDE = 1280
PREVIEW_TYPES = ("image/jpeg", "image/png", "image/webp")
# A small file can still decode to a huge image (a PNG of one colour compresses to almost
# nothing), so larger images are served as they are rather than decoded in a web process.
PREVIEW_MAX_PIXELS = 50_000_000


def preview_path(storage_key, content_type):
    """Return the path of a photo's smaller copy, made on first use, or the original's path.

    The copy is turned upright by its EXIF orientation and keeps none of the file's metadata.
    The original is served instead when the file is not a still photo of a decodable type (an
    animated WebP keeps its animation), or is a small JPEG without metadata already. Requests
    that make the same copy at once each write their own file, and the last rename wins.
    """
    original = path_for(storage_key)
    if content_type not in PREVIEW_TYPES:
        return original
    preview = original.with_name(original.name + PREVIEW_SUFFIX)
    if preview.exists():
        return preview
    # Imported here: only web processes that serve photos need the imaging library.
    from PIL import Image, ImageOps, UnidentifiedImageError

    partial = preview.with_name(f"{preview.name}.{os.getpid()}-{threading.get_ident()}.part")
    try:
        with Image.open(original) as image:
            if getattr(image, "is_animated", False):
                return original
            if image.width * image.height > PREVIEW_MAX_PIXELS:
                log.warning("Attachment file %s is %sx%s pixels; serving the original.", storage_key, *image.size)
                return original
            if max(image.size) <= PREVIEW_MAX_SIDE and content_type == "image/jpeg" and not image.getexif():
                return original
            # For a JPEG, decode at a reduced scale straight away, which takes less time and memory.
            image.draft("RGB", (PREVIEW_MAX_SIDE, PREVIEW_MAX_SIDE))
            image = ImageOps.exif_transpose(image)
            image.thumbnail((PREVIEW_MAX_SIDE, PREVIEW_MAX_SIDE))
            image = _flattened(image)
            image.save(partial, "JPEG", quality=82, optimize=True)
        os.replace(partial, preview)
    except (OSError, UnidentifiedImageError, Image.DecompressionBombError, ValueError) as exc:
        log.warning("Could not make a smaller copy of attachment file %s (%s); serving the original.", storage_key, exc)
        partial.unlink(missing_ok=True)
        return original
    return preview


def _flattened(image):
    """Return ``image`` as RGB, with any transparency laid on white, as JPEG needs."""
    from PIL import Image

    if image.mode in ("I", "I;16", "I;16B", "I;16L"):
        # 16-bit greyscale (common in medical imaging exports) would clip to white.
        return image.convert("I").point(lambda value: value / 256).convert("RGB")
    if image.mode not in ("RGBA", "LA", "P"):
        return image.convert("RGB")
    image = image.convert("RGBA")
    background = Image.new("RGB", image.size, (255, 255, 255))
    background.paste(image, mask=image.getchannel("A"))
    return background


def preview_file(storage_key, content_type):
    """Return the path and content type of a photo's smaller copy, or of the file itself."""
    path = preview_path(storage_key, content_type)
    return path, "image/jpeg" if path.name.endswith(PREVIEW_SUFFIX) else content_type


def file_present(attachment):
    """Return True when a stored attachment's file is in the media directory, else log its id and return False."""
    if path_for(attachment.storage_key).is_file():
        return True
    log.error(
        "Attachment %s is missing from the media directory. Restore it from a backup of PAWPOST_MEDIA_DIR.",
        attachment.id,
    )
    return False


def path_for(storage_key):
    """Return the file path of a stored attachment, refusing keys that leave the media directory."""
    root = media_root().resolve()
    path = (root / storage_key).resolve()
    if root not in path.parents:
        raise MediaRejected(f"The storage key {storage_key!r} is outside the media directory.")
    return path
