"""Phone number normalisation to E.164."""

import phonenumbers


class InvalidPhoneNumber(ValueError):
    """A phone number could not be parsed or is not a possible number."""


def normalize(raw, country="US"):
    """Return ``(e164, extension)`` for ``raw``, read with ``country`` as the default region.

    Raises InvalidPhoneNumber with a message that names the value and the fix.
    """
    text = (raw or "").strip()
    if not text:
        raise InvalidPhoneNumber("The phone number is missing. Give a mobile number such as +15551234567.")
    try:
        parsed = phonenumbers.parse(text, country)
    except phonenumbers.NumberParseException:
        parsed = None
    if parsed is None or not phonenumbers.is_possible_number(parsed):
        raise InvalidPhoneNumber(
            f"The phone number {text!r} is not a valid phone number. "
            "Give it in international form, such as +15551234567."
        )
    e164 = phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)
    return e164, parsed.extension or None


def mask(e164):
    """Return ``e164`` with all but the last two digits hidden, for places a person must tell numbers apart."""
    if not e164:
        return ""
    return "•" * max(len(e164) - 2, 0) + e164[-2:]
