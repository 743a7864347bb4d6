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


# Smart punctuation that forces UCS-2, with the GSM-7 characters staff may swap in.
SMART_PUNCTUATION = {
    "\u2018": "'", "\u2019": "'", "\u201a": "'", "\u201b": "'",
    "\u201c": '"', "\u201d": '"', "\u201e": '"', "\u201f": '"',
    "\u2013": "-", "\u2014": "-", "\u2026": "...", "\u00a0": " ", "\u2022": "-",
}


def encoding(text):
    """Return ``("GSM-7", units)`` or ``("UCS-2", units)``: the encoding a carrier uses and the text's length in it."""
    if is_gsm7(text):
        return "GSM-7", septets(text)
    # UCS-2 counts UTF-16 code units, so an emoji outside the Basic Multilingual Plane counts twice.
    return "UCS-2", len(text.encode("utf-16-le")) // 2


def segments(text):
    """Return the number of SMS segments a provider bills for ``text``: 160/153 GSM-7, 70/67 UCS-2."""
    name, units = encoding(text)
    single, split = (160, 153) if name == "GSM-7" else (70, 67)
    if units <= single:
        return 1
    return -(-units // split)


def replace_smart_punctuation(text):
    """Return ``text`` with curly quotes, dashes and ellipses replaced by their GSM-7 lookalikes."""
    return "".join(SMART_PUNCTUATION.get(ch, ch) for ch in text)
