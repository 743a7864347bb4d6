"""SMS segment counting for the num_segments / segmentCount fields of responses."""

import math

GSM7_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
# Characters of the GSM-7 extension table, sent as ESC plus a code, so each costs two septets.
GSM7_EXTENSION = frozenset("^{}\\[~]|€\f")

# (single-segment capacity, per-segment capacity once the text is split), in encoding units.
GSM7_CAPACITY = (160, 153)
UCS2_CAPACITY = (70, 67)


def encoding_units(text: str) -> tuple[int, tuple[int, int]]:
    """Return the text length in encoding units and the capacities of the encoding it needs."""
    if all(char in GSM7_BASIC or char in GSM7_EXTENSION for char in text):
        septets = sum(2 if char in GSM7_EXTENSION else 1 for char in text)
        return septets, GSM7_CAPACITY
    # UCS-2 counts UTF-16 code units, so an emoji outside the BMP takes two.
    return len(text.encode("utf-16-le")) // 2, UCS2_CAPACITY


def count_segments(text: str) -> int:
    """Count the SMS segments a carrier would split the text into (at least 1)."""
    units, (single, split) = encoding_units(text)
    if units <= single:
        return 1
    return math.ceil(units / split)
