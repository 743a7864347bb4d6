"""When a message may go out: the clinic's quiet hours, read on its local wall clock.

A clinic's quiet hours are a window of local wall-clock minutes after midnight,
``[quiet_start_minute, quiet_end_minute)``, in the IANA zone ``Clinic.timezone``. The window
wraps midnight when the start is later than the end (21:00–08:00). A null bound, or equal
bounds, means the clinic has no quiet hours.

A send whose time falls inside the window moves to the first instant after it at which the
clinic's clock reaches the end of the window. Two daylight-saving cases follow from that rule:

- The end time does not exist that day (spring forward, 02:30 on 2026-03-08 in New York): the
  clock jumps from 02:00 to 03:00, so the send moves to the jump, 03:00 local time.
- The end time happens twice (fall back, 01:30 on 2026-11-01 in New York): the send moves to
  the next of the two that is not earlier than the send time. A send during the first 01:00
  hour goes at the first 01:30 (daylight time); one during the repeated hour, at the second.
"""

from datetime import datetime, time, timedelta, timezone
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

class InvalidTimezone(ValueError):
    """A clinic's time zone is not a known IANA zone name."""


def clinic_zone(clinic):
    """Return the ZoneInfo of the clinic's ``timezone``, or raise InvalidTimezone."""
    try:
        return ZoneInfo(clinic.timezone)
    # A folder of the zone database, such as "America", raises IsADirectoryError, an OSError.
    except (ZoneInfoNotFoundError, ValueError, OSError) as exc:
        raise InvalidTimezone(
            f"Clinic {clinic.id} has the time zone {clinic.timezone!r}, which is not an IANA zone name "
            "such as America/New_York."
        ) from exc


def has_quiet_hours(clinic):
    """Return True when the clinic has a non-empty quiet window."""
    start, end = clinic.quiet_start_minute, clinic.quiet_end_minute
    return start is not None and end is not None and start != end


def in_quiet_hours(start, end, minute_of_day):
    """Return True when ``minute_of_day`` (may carry a fraction for seconds) falls in ``[start, end)``."""
    if start < end:
        return start <= minute_of_day < end
    # The window wraps midnight: it covers the late evening and the early morning.
    return minute_of_day >= start or minute_of_day < end


def next_allowed_time(clinic, when_utc):
    """Return the earliest aware UTC time at or after ``when_utc`` that is outside the clinic's quiet hours."""
    if not has_quiet_hours(clinic):
        return when_utc
    zone = clinic_zone(clinic)
    start, end = clinic.quiet_start_minute, clinic.quiet_end_minute
    local = when_utc.astimezone(zone)
    minute_of_day = local.hour * 60 + local.minute + local.second / 60 + local.microsecond / 60_000_000
    if not in_quiet_hours(start, end, minute_of_day):
        return when_utc

    # In a wrapping window the evening part ends on the next day.
    end_date = local.date()
    if start > end and minute_of_day >= start:
        end_date += timedelta(days=1)
    wall_end = datetime.combine(end_date, time(end // 60, end % 60))
    return first_instant_reaching(zone, wall_end, not_before=when_utc)


def first_instant_reaching(zone, wall_time, not_before):
    """Return the first UTC instant, not before ``not_before``, at which the clock in ``zone`` reaches ``wall_time``.

    ``wall_time`` is naive local time. When it happens twice (fall back), the earlier of the
    two that is not before ``not_before`` wins. When it does not exist (spring forward), the
    result is the instant the clock jumps past it.
    """
    occurrences = []
    for fold in (0, 1):
        instant = wall_time.replace(tzinfo=zone, fold=fold).astimezone(timezone.utc)
        if instant.astimezone(zone).replace(tzinfo=None) == wall_time:
            occurrences.append(instant)
    later = [instant for instant in occurrences if instant >= not_before]
    if later:
        return min(later)
    if occurrences:
        # The clock already reached ``wall_time`` before ``not_before``.
        return not_before
    return _gap_end(zone, wall_time)


def _gap_end(zone, wall_time):
    # zoneinfo reads a skipped time with the offset before the jump (fold=0) or after it
    # (fold=1), and the jump lies between those two instants. Zone transitions fall on whole
    # seconds, so a binary search over Unix seconds finds the first instant whose clock reads
    # at least ``wall_time``.
    bounds = [wall_time.replace(tzinfo=zone, fold=fold).timestamp() for fold in (0, 1)]
    low, high = int(min(bounds)), int(max(bounds))
    while high - low > 1:
        middle = (low + high) // 2
        if datetime.fromtimestamp(middle, zone).replace(tzinfo=None) >= wall_time:
            high = middle
        else:
            low = middle
    return datetime.fromtimestamp(high, timezone.utc)
