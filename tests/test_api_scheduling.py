"""Quiet hours: the one rule that moves a send, checked as a table, across both 2026 DST changes in New York."""

from datetime import datetime, timezone
from zoneinfo import ZoneInfo

import pytest

from notifier.scheduling import InvalidTimezone, first_instant_reaching, next_allowed_time
from portal.models import Clinic

NEW_YORK = "America/New_York"


def clinic_with(start, end, zone=NEW_YORK):
    """Return an unsaved clinic with quiet hours from ``start`` to ``end`` ("HH:MM" or None)."""
    return Clinic(id=1, name="Quiet Clinic", timezone=zone, quiet_start_minute=_minutes(start), quiet_end_minute=_minutes(end))


def _minutes(text):
    if text is None:
        return None
    hours, minutes = text.split(":")
    return int(hours) * 60 + int(minutes)


def utc(text):
    return datetime.fromisoformat(text).replace(tzinfo=timezone.utc)


# (quiet start, quiet end, send time UTC, expected UTC). New York is UTC-5 (EST) in winter
# and UTC-4 (EDT) in summer. On 2026-03-08 the clock jumps from 02:00 EST to 03:00 EDT, and
# on 2026-11-01 it falls back from 02:00 EDT to 01:00 EST.
CASES = [
    # No quiet hours, or an empty window: never moved.
    (None, None, "2026-01-15T03:00:00", "2026-01-15T03:00:00"),
    ("21:00", None, "2026-01-15T03:00:00", "2026-01-15T03:00:00"),
    ("21:00", "21:00", "2026-01-15T03:00:00", "2026-01-15T03:00:00"),
    # A window that wraps midnight, 21:00-08:00, in winter (EST).
    ("21:00", "08:00", "2026-01-15T01:59:00", "2026-01-15T01:59:00"),  # 20:59 EST, before the window
    ("21:00", "08:00", "2026-01-15T02:00:00", "2026-01-15T13:00:00"),  # 21:00 EST: start is inside
    ("21:00", "08:00", "2026-01-15T12:59:00", "2026-01-15T13:00:00"),  # 07:59 EST
    ("21:00", "08:00", "2026-01-15T13:00:00", "2026-01-15T13:00:00"),  # 08:00 EST: end is outside
    ("21:00", "08:00", "2026-01-15T18:00:00", "2026-01-15T18:00:00"),  # 13:00 EST
    # The same window in summer (EDT).
    ("21:00", "08:00", "2026-07-01T03:00:00", "2026-07-01T12:00:00"),  # 23:00 EDT
    # A window within one day, 12:00-13:00.
    ("12:00", "13:00", "2026-07-01T16:30:00", "2026-07-01T17:00:00"),  # 12:30 EDT
    ("12:00", "13:00", "2026-07-01T15:59:00", "2026-07-01T15:59:00"),  # 11:59 EDT
    # Spring forward: the night of 2026-03-07 to 03-08 spans the jump.
    ("21:00", "08:00", "2026-03-08T02:30:00", "2026-03-08T12:00:00"),  # 21:30 EST -> 08:00 EDT
    ("21:00", "08:00", "2026-03-08T06:59:00", "2026-03-08T12:00:00"),  # 01:59 EST
    # A window ending at 02:30, a time that does not exist on 2026-03-08: the send goes at the
    # jump, 03:00 EDT (07:00 UTC).
    ("21:00", "02:30", "2026-03-08T05:00:00", "2026-03-08T07:00:00"),  # 00:00 EST
    ("21:00", "02:30", "2026-03-08T06:59:59", "2026-03-08T07:00:00"),  # 01:59:59 EST
    ("21:00", "02:30", "2026-03-08T07:00:00", "2026-03-08T07:00:00"),  # 03:00 EDT, past the end
    ("21:00", "02:30", "2026-03-07T07:00:00", "2026-03-07T07:30:00"),  # 02:00 EST the day before: a normal 02:30
    # A window starting inside the skipped hour: 02:15-06:00 begins at the jump.
    ("02:15", "06:00", "2026-03-08T06:59:00", "2026-03-08T06:59:00"),  # 01:59 EST, before the window
    ("02:15", "06:00", "2026-03-08T07:00:00", "2026-03-08T10:00:00"),  # 03:00 EDT -> 06:00 EDT
    # Fall back: 01:30 happens twice on 2026-11-01, at 05:30 UTC (EDT) and 06:30 UTC (EST).
    ("21:00", "01:30", "2026-11-01T04:50:00", "2026-11-01T05:30:00"),  # 00:50 EDT -> the first 01:30
    ("21:00", "01:30", "2026-11-01T05:29:00", "2026-11-01T05:30:00"),  # 01:29 EDT
    ("21:00", "01:30", "2026-11-01T05:40:00", "2026-11-01T05:40:00"),  # 01:40 EDT, past the first end
    ("21:00", "01:30", "2026-11-01T06:10:00", "2026-11-01T06:30:00"),  # 01:10 EST, repeated hour -> the second 01:30
    ("21:00", "01:30", "2026-11-01T06:30:00", "2026-11-01T06:30:00"),  # 01:30 EST
    ("21:00", "01:30", "2026-11-01T01:00:00", "2026-11-01T05:30:00"),  # 21:00 EDT the evening before
    # The whole fall-back night inside a 21:00-08:00 window ends at 08:00 EST.
    ("21:00", "08:00", "2026-11-01T05:30:00", "2026-11-01T13:00:00"),
    ("21:00", "08:00", "2026-11-01T06:30:00", "2026-11-01T13:00:00"),
]


@pytest.mark.parametrize(("start", "end", "send", "expected"), CASES)
def test_next_allowed_time(start, end, send, expected):
    assert next_allowed_time(clinic_with(start, end), utc(send)) == utc(expected)


def test_next_allowed_time_other_zone():
    # 21:00 in Los Angeles (UTC-8 in winter) is inside 20:00-09:00, which ends at 17:00 UTC.
    clinic = clinic_with("20:00", "09:00", zone="America/Los_Angeles")

    assert next_allowed_time(clinic, utc("2026-01-15T05:00:00")) == utc("2026-01-15T17:00:00")


def test_next_allowed_time_aware_utc():
    result = next_allowed_time(clinic_with("21:00", "08:00"), utc("2026-01-15T03:00:00"))

    assert result.utcoffset().total_seconds() == 0


def test_next_allowed_time_keeps_seconds_inside():
    # 07:59:30 EST is still inside a window that ends at 08:00.
    assert next_allowed_time(clinic_with("21:00", "08:00"), utc("2026-01-15T12:59:30")) == utc("2026-01-15T13:00:00")


@pytest.mark.parametrize("zone", ["Mars/Olympus", "America", "Europe/" + "x" * 300])
def test_invalid_timezone_raises(zone):
    with pytest.raises(InvalidTimezone, match="is not an IANA zone name"):
        next_allowed_time(clinic_with("21:00", "08:00", zone=zone), utc("2026-01-15T03:00:00"))


@pytest.mark.parametrize(
    ("wall", "not_before", "expected"),
    [
        ("2026-03-08T02:30:00", "2026-03-08T05:00:00", "2026-03-08T07:00:00"),  # skipped: the jump
        ("2026-03-08T02:00:00", "2026-03-08T05:00:00", "2026-03-08T07:00:00"),  # the first skipped minute
        ("2026-11-01T01:30:00", "2026-11-01T00:00:00", "2026-11-01T05:30:00"),  # twice: the first
        ("2026-11-01T01:30:00", "2026-11-01T05:31:00", "2026-11-01T06:30:00"),  # twice: the next one
        ("2026-07-01T08:00:00", "2026-07-01T00:00:00", "2026-07-01T12:00:00"),  # an ordinary time
    ],
    ids=["gap", "gap_start", "fold_first", "fold_second", "ordinary"],
)
def test_first_instant_reaching(wall, not_before, expected):
    result = first_instant_reaching(ZoneInfo(NEW_YORK), datetime.fromisoformat(wall), utc(not_before))

    assert result == utc(expected)
