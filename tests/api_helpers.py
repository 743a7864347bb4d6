"""Helpers of the API tests: test files, a local media server and temporary app settings."""

import struct
import time
import zlib
from contextlib import contextmanager

import pytest

from conftest import ServerThread


def png_bytes(width=2, height=2):
    """Return a small valid PNG image."""

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    rows = b"".join(b"\x00" + b"\x80\x40\x20" * width for _ in range(height))
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")


PNG = png_bytes()
# Larger than every provider's per-message media limit (Twilio 5 MB, Bandwidth 3.5 MB).
OVERSIZED_BYTES = 6 * 1024 * 1024


def media_app(environ, start_response):
    """Serve the files the media-URL tests download, on a loopback port."""
    path = environ["PATH_INFO"]
    host = environ["HTTP_HOST"]
    if path == "/photo.png":
        start_response("200 OK", [("Content-Type", "image/png"), ("Content-Length", str(len(PNG)))])
        return [PNG]
    if path == "/notes.txt":
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"not a photo"]
    if path == "/big.png":
        start_response("200 OK", [("Content-Type", "image/png")])
        return [PNG + b"\x00" * OVERSIZED_BYTES]
    if path == "/slow.png":
        time.sleep(2)
        start_response("200 OK", [("Content-Type", "image/png")])
        return [PNG]
    if path == "/redirect":
        start_response("302 Found", [("Location", f"http://{host}/photo.png")])
        return [b""]
    if path == "/redirect-private":
        start_response("302 Found", [("Location", "http://10.0.0.1/photo.png")])
        return [b""]
    if path == "/loop":
        start_response("302 Found", [("Location", "/loop")])
        return [b""]
    start_response("404 Not Found", [("Content-Type", "text/plain")])
    return [b"missing"]


@pytest.fixture(scope="session")
def media_server():
    """Return the base URL of a local server with the test files."""
    server = ServerThread(media_app)
    server.start()
    yield server.url
    server.stop()


@contextmanager
def app_settings(app, **settings):
    """Change app settings for the duration of a block; the live app is shared by the session."""
    saved = {name: app.config.get(name) for name in settings}
    app.config.update(settings)
    try:
        yield
    finally:
        app.config.update(saved)
