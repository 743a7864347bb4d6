"""The pointer SMS: a short plain text that leads the client to their Pet Portal inbox."""

from notifier.gsm import is_gsm7, septets, to_gsm7

MAX_SEPTETS = 160
TEMPLATE = "{clinic}: you have a new message in your Pet Portal. Open it here: {url}"


def pointer_text(clinic_name, url):
    """Return the pointer text for ``url``: GSM-7, one segment, no content of the original message.

    The clinic's name is reduced to GSM-7 characters and shortened if the whole text would not
    fit 160 septets.
    """
    # Whitespace is collapsed before the GSM-7 reduction, which would drop a tab between words.
    clinic = " ".join(to_gsm7(" ".join(clinic_name.split())).split()) or "Your clinic"
    text = TEMPLATE.format(clinic=clinic, url=url)
    overflow = septets(text) - MAX_SEPTETS
    if overflow > 0:
        clinic = clinic[: max(len(clinic) - overflow, 1)].rstrip()
        text = TEMPLATE.format(clinic=clinic, url=url)
    if not is_gsm7(text) or septets(text) > MAX_SEPTETS:
        raise ValueError(f"The pointer link {url!r} is too long or not GSM-7; shorten PAWPOST_BASE_URL.")
    return text
