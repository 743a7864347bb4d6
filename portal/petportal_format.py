"""Template helpers of the Pet Portal: clinic phone numbers, times in the clinic's own time zone, paths with an id."""

from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import phonenumbers
from flask import request, url_for

from portal.petportal import bp

UTC = ZoneInfo("UTC")
# An id no row reaches, put in a built path and replaced by the real id.
PLACEHOLDER_ID = 9876543210123
# Written out rather than through strftime, which costs more than the rest of a thread's times.
MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


@bp.app_template_filter("phone_display")
@lru_cache(maxsize=1024)
def phone_display(e164, country="US"):
    """Return ``e164`` as people in ``country`` write it, such as (555) 900-0001, or unchanged."""
    try:
        parsed = phonenumbers.parse(e164, country)
    except phonenumbers.NumberParseException:
        return e164
    if phonenumbers.region_code_for_country_code(parsed.country_code) == country:
        return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.NATIONAL)
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.INTERNATIONAL)


@lru_cache(maxsize=1024)
def clinic_zone(name):
    """Return the IANA zone ``name`` (a clinic's time zone setting), or UTC when it is not a zone name."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, TypeError, OSError):
        # A clinic row edited by hand may contain a name that is not a zone. Its times then show in
        # UTC. A folder of the zone database, such as "America", raises IsADirectoryError.
        return UTC


@bp.app_template_filter("clinic_time")
def clinic_time(moment, clinic):
    """Return ``moment`` as a short local time of ``clinic``, such as "Dec 4, 2026, 5:50 PM EST"."""
    local = moment.astimezone(clinic_zone(clinic.timezone))
    hour = local.hour % 12 or 12
    half = "AM" if local.hour < 12 else "PM"
    return f"{MONTHS[local.month - 1]} {local.day}, {local.year}, {hour}:{local.minute:02d} {half} {local.tzname()}"


# Filters rather than template globals: Jinja calls a filter directly, but routes each call of a
# global or method in a template through Context.call, which costs more than these helpers do.
@bp.app_template_filter("path_with_id")
def path_with_id(value, endpoint, name):
    """Return the path of ``endpoint`` with the integer ``value`` as its one argument ``name``.

    Same as ``url_for(endpoint, **{name: value})``, but the route is matched once per endpoint
    and app root, so a page with a link per message does not match it for every message.
    """
    # The last occurrence is the argument: an app root could contain the same digits.
    head, _placeholder, tail = _path_template(endpoint, name, request.script_root).rpartition(str(PLACEHOLDER_ID))
    return f"{head}{int(value)}{tail}"


@lru_cache(maxsize=64)
def _path_template(endpoint, name, _script_root):
    return url_for(endpoint, **{name: PLACEHOLDER_ID})


@bp.app_template_filter("isoformat")
def isoformat(moment):
    """Return ``moment`` in ISO 8601, for a ``<time datetime>`` attribute."""
    return moment.isoformat()
