"""Small solid-colour PNG images for the media of inbound MMS, built without an imaging library."""

import struct
import zlib

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
IMAGE_SIZE_PIXELS = 8
# One RGB colour per media index, so a test or a person can tell the images of a message apart.
PALETTE = (
    (230, 57, 70),
    (42, 157, 143),
    (69, 123, 157),
    (244, 162, 97),
    (106, 76, 147),
    (255, 209, 102),
    (6, 214, 160),
    (17, 138, 178),
    (239, 71, 111),
    (38, 70, 83),
)


def chunk(chunk_type: bytes, data: bytes) -> bytes:
    """Encode one PNG chunk: length, type, data and the CRC-32 of type and data."""
    crc = zlib.crc32(chunk_type + data) & 0xFFFFFFFF
    return struct.pack(">I", len(data)) + chunk_type + data + struct.pack(">I", crc)


def colour_for(index: int) -> tuple[int, int, int]:
    """Return the RGB colour of the image at a media index."""
    return PALETTE[index % len(PALETTE)]


def solid_png(index: int, size: int = IMAGE_SIZE_PIXELS) -> bytes:
    """Build a size-by-size 8-bit RGB PNG filled with the colour of the media index."""
    # Bit depth 8, colour type 2 (RGB), deflate compression, adaptive filtering, no interlace.
    header = struct.pack(">IIBBBBB", size, size, 8, 2, 0, 0, 0)
    # Each scanline starts with filter type 0 (None), followed by its RGB pixels.
    scanline = b"\x00" + bytes(colour_for(index)) * size
    pixels = zlib.compress(scanline * size)
    return PNG_SIGNATURE + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")
