"""GSM 03.38 (GSM-7) character set: what fits a plain single-encoding SMS."""

import unicodedata

# The basic table; each of these costs one septet.
BASIC = set(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
# The extension table; each of these is sent as ESC plus a code, so it costs two septets.
EXTENSION = set("^{}\\[~]|€\f")


def is_gsm7(text):
    """Return True when every character of ``text`` is in the GSM-7 basic or extension table."""
    return all(ch in BASIC or ch in EXTENSION for ch in text)


def septets(text):
    """Return the GSM-7 length of ``text``, counting extension characters twice."""
    return sum(2 if ch in EXTENSION else 1 for ch in text)


def to_gsm7(text):
    """Return ``text`` reduced to GSM-7 basic characters: accents stripped where needed, the rest dropped."""
    out = []
    for ch in text:
        if ch in BASIC:
            out.append(ch)
            continue
        base = unicodedata.normalize("NFKD", ch)
        out.extend(c for c in base if c in BASIC and not unicodedata.combining(c))
    return "".join(out)
