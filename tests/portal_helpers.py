"""Helpers of the Pet Portal tests: messages in a known state, link sign-in, sign-in codes and test files."""

import re
import struct
import zlib
from pathlib import Path

import requests

from conftest import STAFF_PASSWORD, wait_for
from helpers import BODY, csrf_token
from notifier import media
from portal.extensions import db
from portal.models import FINAL_RANK, Attachment, Delivery, Message, PortalToken, utcnow

VIDEO_FILE = Path(__file__).parent / "browser" / "fixtures" / "clip.mp4"
# The first run of exactly six digits in a sign-in text or email is its code.
CODE_PATTERN = re.compile(r"(?<!\d)(\d{6})(?!\d)")


def portal_message(clinic, client, body=BODY, chat=False, read=False, files=(), created_at=None):
    """Store an outbound message with its portal copy and stored attachments; return the message."""
    message = Message(clinic_id=clinic.id, client_id=client.id, body=body, source="api")
    if created_at is not None:
        message.created_at = created_at
    portal = Delivery(
        message=message,
        channel="portal",
        status="delivered",
        status_rank=FINAL_RANK,
        final_at=utcnow(),
        chat_notification=chat,
        read_at=utcnow() if read else None,
    )
    db.session.add_all([message, portal])
    db.session.flush()
    for position, data in enumerate(files):
        key, content_type = media.store(clinic.id, message.id, position, data)
        db.session.add(
            Attachment(
                message_id=message.id,
                position=position,
                content_type=content_type,
                size_bytes=len(data),
                storage_key=key,
                fetched_at=utcnow(),
            )
        )
    db.session.commit()
    return message


def inbound_message(clinic, client, body="Thanks, see you Tuesday."):
    """Store a reply the client texted to the clinic."""
    message = Message(clinic_id=clinic.id, client_id=client.id, direction="inbound", source="client", body=body)
    db.session.add(message)
    db.session.commit()
    return message


def issue_link(client_id, message_id=None, days=7):
    """Store a pointer token and return its raw value, as the pointer job does."""
    row, raw = PortalToken.issue(client_id=client_id, message_id=message_id, purpose="pointer", days=days)
    db.session.add(row)
    db.session.commit()
    return raw


def sign_in(http, client_id, message_id=None, remember=False):
    """Sign ``http`` (a Flask test client) in as a client through a fresh link; return the POST response."""
    raw = issue_link(client_id, message_id)
    page = http.get(f"/p/{raw}")
    data = {"csrf_token": csrf_token(page.data)}
    if remember:
        data["remember"] = "y"
    return http.post(f"/p/{raw}", data=data)


def page_token(http, path):
    """Return the CSRF token of the first form on ``path``."""
    return csrf_token(http.get(path).data)


def staff_browser(live, staff):
    """Return a requests session of ``staff`` signed in to the admin on the live server."""
    browser = requests.Session()
    page = browser.get(f"{live.url}/admin/login", timeout=5)
    data = {"csrf_token": csrf_token(page.content), "email": staff.email, "password": STAFF_PASSWORD}
    response = browser.post(f"{live.url}/admin/login", data=data, timeout=5, allow_redirects=False)
    assert response.status_code == 302, response.text
    return browser


def received_texts(live, number):
    """Return the texts a sandbox phone received, oldest first."""
    return requests.get(f"{live.sandbox_url}/phones/{number}/messages", timeout=5).json()


def wait_for_texts(live, number, count=1):
    """Wait until a sandbox phone has received ``count`` texts, then return them, oldest first."""

    def phone_received_texts():
        texts = received_texts(live, number)
        return texts if len(texts) >= count else None

    return wait_for(phone_received_texts)


def code_from_text(text):
    """Return the 6-digit code in a sign-in text."""
    return CODE_PATTERN.search(text).group(1)


def png_image(width=48, height=32, seed=0):
    """Build an RGB PNG with a diagonal colour gradient, so two seeds give two different photos."""
    rows = []
    for y in range(height):
        row = bytearray([0])
        for x in range(width):
            row += bytes(((x * 255 // width + seed * 40) % 256, (y * 255 // height) % 256, (120 + seed * 70) % 256))
        rows.append(bytes(row))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header) + _chunk(b"IDAT", zlib.compress(b"".join(rows))) + _chunk(b"IEND", b"")


def _chunk(kind, data):
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def video_clip():
    """Return a one-second H.264 MP4 clip that browsers can play."""
    return VIDEO_FILE.read_bytes()
