"""Create or update a clinic's client from its practice-management system (PIMS) record.

The PIMS lists every number of a client with a type. Pawpost texts one of them, chosen the way
clinics expect:

1. the first number typed ``mobile`` or ``cell``;
2. otherwise the first untyped or ``other`` number;
3. never a number typed ``home``, ``work`` or ``landline``, nor one with an extension, nor one
   Pawpost has learned is a landline (from a provider error or a line-type lookup).

When no number qualifies, the client is kept with ``textable`` false. ``mobile_number`` then
keeps the last textable number, or for a new client the first listed number that no other
client of the clinic has. Texts to it are suppressed as a landline, so the client shows up on
the dashboard's worklist.
"""

import json
import logging
from dataclasses import dataclass

from email_validator import EmailNotValidError, validate_email

from notifier.phone import InvalidPhoneNumber, normalize
from portal.extensions import db
from portal.models import Client, PhoneLine, utcnow

log = logging.getLogger(__name__)

NUMBER_TYPES = ("mobile", "cell", "home", "work", "landline", "other")
MOBILE_TYPES = ("mobile", "cell")
NEVER_TEXTED_TYPES = ("home", "work", "landline")
RECORD_FIELDS = ("name", "numbers", "email", "preferences")
PREFERENCE_FIELDS = ("email", "push")
NUMBER_FIELDS = ("number", "type")
MAX_NUMBERS = 10
MAX_PIMS_ID_CHARS = 64
MAX_NAME_CHARS = 120
MAX_EMAIL_CHARS = 254


class InvalidClient(ValueError):
    """A PIMS record cannot be stored as given; the text names the field, the value and the fix."""

    def __init__(self, field, text):
        super().__init__(text)
        self.field = field


class NumberConflict(Exception):
    """The number chosen for a client already belongs to another client of the clinic."""

    def __init__(self, number, other):
        label = f"PIMS id {other.pims_id!r}" if other.pims_id else f"client {other.id}"
        super().__init__(
            f"The number {number} already belongs to another client of this clinic ({label}). "
            "Remove it from one of the two records in your PIMS, then send both again."
        )
        self.number = number
        self.field = "numbers"


@dataclass(frozen=True)
class ListedNumber:
    """One number of a PIMS record, normalised to E.164."""

    number: str
    type: str | None
    extension: str | None

    @property
    def may_be_texted(self):
        return self.type not in NEVER_TEXTED_TYPES and self.extension is None


def check_pims_id(pims_id):
    """Return ``pims_id`` or raise InvalidClient when it is blank, too long or contains control characters."""
    if not pims_id or not pims_id.strip() or len(pims_id) > MAX_PIMS_ID_CHARS or not pims_id.isprintable():
        raise InvalidClient(
            "pims_id",
            f"The PIMS id {pims_id!r} is invalid. Use 1 to {MAX_PIMS_ID_CHARS} printable characters, not only spaces.",
        )
    return pims_id


def parse_record(clinic, data):
    """Return the validated fields present in ``data``; numbers are normalised with the clinic's country."""
    if not isinstance(data, dict):
        raise InvalidClient(None, 'The body must be a JSON object such as {"name": "Pat Parent", "numbers": [...]}.')
    unknown = sorted(set(data) - set(RECORD_FIELDS))
    if unknown:
        raise InvalidClient(
            unknown[0], f"'{unknown[0]}' is not a client field. Send only {', '.join(RECORD_FIELDS)}."
        )
    values = {}
    if "name" in data:
        values["name"] = _parse_name(data["name"])
    if "numbers" in data:
        values["numbers"] = _parse_numbers(clinic, data["numbers"])
    if "email" in data:
        values["email"] = _parse_email(data["email"])
    if "preferences" in data:
        values["preferences"] = _parse_preferences(data["preferences"])
    return values


def _parse_name(value):
    if value is None:
        return ""
    if not isinstance(value, str) or len(value.strip()) > MAX_NAME_CHARS:
        raise InvalidClient("name", f"'name' must be a string of at most {MAX_NAME_CHARS} characters.")
    return value.strip()


def _parse_numbers(clinic, value):
    if not isinstance(value, list):
        raise InvalidClient("numbers", "'numbers' must be a list such as [{\"number\": \"+15551234567\", \"type\": \"mobile\"}].")
    if len(value) > MAX_NUMBERS:
        raise InvalidClient("numbers", f"'numbers' lists {len(value)} numbers; send at most {MAX_NUMBERS}.")
    return [_parse_number(clinic, index, item) for index, item in enumerate(value)]


def _parse_number(clinic, index, item):
    field = f"numbers[{index}]"
    if not isinstance(item, dict):
        raise InvalidClient(field, f"'{field}' must be an object such as {{\"number\": \"+15551234567\", \"type\": \"mobile\"}}.")
    unknown = sorted(set(item) - set(NUMBER_FIELDS))
    if unknown:
        raise InvalidClient(f"{field}.{unknown[0]}", f"'{field}.{unknown[0]}' is not a number field. Send only number and type.")
    raw = item.get("number")
    if not isinstance(raw, str):
        raise InvalidClient(f"{field}.number", f"'{field}.number' is required and must be a string such as \"+15551234567\".")
    try:
        e164, extension = normalize(raw, clinic.country)
    except InvalidPhoneNumber as exc:
        raise InvalidClient(f"{field}.number", f"'{field}.number': {exc}") from None
    number_type = item.get("type")
    if number_type is not None:
        if not isinstance(number_type, str) or number_type.strip().lower() not in NUMBER_TYPES:
            raise InvalidClient(
                f"{field}.type",
                f"'{field}.type' is {number_type!r}; use one of {', '.join(NUMBER_TYPES)}, or leave it out.",
            )
        number_type = number_type.strip().lower()
    return ListedNumber(e164, number_type, extension)


def _parse_email(value):
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if not isinstance(value, str) or len(value) > MAX_EMAIL_CHARS:
        raise InvalidClient("email", f"'email' must be an email address of at most {MAX_EMAIL_CHARS} characters, or null.")
    try:
        return validate_email(value.strip(), check_deliverability=False).normalized
    except EmailNotValidError:
        raise InvalidClient("email", f"'email' is {value!r}, which is not a valid email address. Fix it or send null.") from None


def _parse_preferences(value):
    if not isinstance(value, dict):
        raise InvalidClient("preferences", "'preferences' must be an object such as {\"email\": true, \"push\": false}.")
    preferences = {}
    for key, setting in value.items():
        if key not in PREFERENCE_FIELDS:
            raise InvalidClient(f"preferences.{key}", f"'preferences.{key}' is not a preference. Send only email and push.")
        if not isinstance(setting, bool):
            raise InvalidClient(f"preferences.{key}", f"'preferences.{key}' is {setting!r}; send true or false.")
        preferences[key] = setting
    return preferences


def choose_textable(numbers):
    """Return the E.164 number to text among ``numbers`` (ListedNumber), or None when none qualifies."""
    candidates = [n for n in numbers if n.may_be_texted]
    landlines = _known_landlines([n.number for n in candidates])
    candidates = [n for n in candidates if n.number not in landlines]
    for preferred_types in (MOBILE_TYPES, (None, "other")):
        for listed in candidates:
            if listed.type in preferred_types:
                return listed.number
    return None


def _known_landlines(numbers):
    if not numbers:
        return set()
    rows = db.session.execute(
        db.select(PhoneLine.number).where(PhoneLine.number.in_(numbers), PhoneLine.line_type == "landline")
    ).scalars()
    return set(rows)


def find_by_pims_id(clinic, pims_id):
    return db.session.execute(
        db.select(Client).where(Client.clinic_id == clinic.id, Client.pims_id == pims_id)
    ).scalar_one_or_none()


def _find_by_number(clinic, number):
    return db.session.execute(
        db.select(Client).where(Client.clinic_id == clinic.id, Client.mobile_number == number)
    ).scalar_one_or_none()


def upsert(clinic, pims_id, data):
    """Create or update the clinic's client with ``pims_id`` from ``data``; return ``(client, created, number_changed)``.

    Nothing is committed. Raises InvalidClient for bad input and NumberConflict when the number
    to text belongs to another client of the clinic. A client created earlier by a message to
    the same number, with no PIMS id yet, is taken over instead of duplicated.
    """
    values = parse_record(clinic, data)
    client = find_by_pims_id(clinic, check_pims_id(pims_id))
    numbers = values.get("numbers")
    if client is None and not numbers:
        raise InvalidClient(
            "numbers", "A new client needs at least one number in 'numbers', such as [{\"number\": \"+15551234567\", \"type\": \"mobile\"}]."
        )

    textable_number = choose_textable(numbers) if numbers is not None else None
    created = False
    if client is None and textable_number is not None:
        earlier = _find_by_number(clinic, textable_number)
        # The same PIMS id here means a concurrent request created the record after our lookup.
        if earlier is not None and earlier.pims_id in (None, pims_id):
            client = earlier
            if earlier.pims_id is None:
                log.info("Client %s of clinic %s is now linked to a PIMS record.", client.id, clinic.id)
    if client is None:
        client = Client(clinic_id=clinic.id, pims_id=pims_id)
        created = True

    number_changed = False
    if numbers is not None:
        number_changed = _apply_numbers(clinic, client, numbers, textable_number)
    if "name" in values:
        client.name = values["name"]
    if "email" in values:
        _apply_email(client, values["email"])
    preferences = values.get("preferences", {})
    if "email" in preferences:
        client.email_enabled = preferences["email"]
    if "push" in preferences:
        client.push_enabled = preferences["push"]
    client.pims_id = pims_id
    client.pims_updated_at = utcnow()
    if created:
        db.session.add(client)
    db.session.flush()
    return client, created, number_changed


def _apply_numbers(clinic, client, numbers, textable_number):
    """Set the listed numbers and the number to text; return True when the number to text changed."""
    client.pims_numbers = json.dumps(
        [{"number": n.number, "type": n.type, "extension": n.extension} for n in numbers]
    )
    previous = client.mobile_number if client.textable else None
    if textable_number is not None:
        _check_unused(clinic, client, textable_number)
        client.mobile_number = textable_number
        client.textable = True
    else:
        client.textable = False
        if client.mobile_number is None:
            client.mobile_number = _placeholder_number(clinic, client, numbers)
    changed = previous != (client.mobile_number if client.textable else None)
    if changed and client.id is not None and previous is not None:
        # A person signed in to the Pet Portal through the old number may not be this client any more.
        client.session_version = (client.session_version or 1) + 1
    return changed


def _check_unused(clinic, client, number):
    other = _find_by_number(clinic, number)
    if other is not None and other.id != client.id:
        raise NumberConflict(number, other)


def _placeholder_number(clinic, client, numbers):
    for listed in numbers:
        other = _find_by_number(clinic, listed.number)
        if other is None or other.id == client.id:
            return listed.number
    raise NumberConflict(numbers[0].number, _find_by_number(clinic, numbers[0].number))


def _apply_email(client, email):
    if (email or "").lower() != (client.email or "").lower():
        # A new address is unverified until the client proves they read it.
        client.email_verified_at = None
    client.email = email


def listed_numbers(client):
    """Return the client's numbers as ``[{"number", "type", "extension"}]``, from the PIMS when it sent them."""
    if client.pims_numbers:
        return json.loads(client.pims_numbers)
    return [{"number": client.mobile_number, "type": None, "extension": None}]
