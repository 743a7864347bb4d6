"""SMS failure figures for the System Health Dashboard, read from hourly rollups.

Each SMS delivery is counted once, when it settles: delivered, failed for good (no retry
left), suppressed before sending, or unknown for lack of a receipt.
"""

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone

from sqlalchemy import func
from sqlalchemy.dialects import postgresql, sqlite

from portal.extensions import db
from portal.models import SmsHourlyStat, utcnow

WINDOWS = {"24h": timedelta(hours=24), "7d": timedelta(days=7), "30d": timedelta(days=30)}
# Thresholds on the 7-day failure rate, as fractions.
WATCH_AT = 0.05
INVESTIGATE_ABOVE = 0.08


def record(delivery, outcome, category=None):
    """Count one settled SMS delivery in its clinic's hourly row."""
    if delivery.channel != "sms":
        return
    hour = utcnow().replace(minute=0, second=0, microsecond=0)
    values = {
        "clinic_id": delivery.message.clinic_id,
        "hour": hour,
        "outcome": outcome,
        "category": category or "",
        "count": 1,
    }
    insert = postgresql.insert if db.session.get_bind().dialect.name == "postgresql" else sqlite.insert
    statement = insert(SmsHourlyStat).values(**values)
    statement = statement.on_conflict_do_update(
        index_elements=["clinic_id", "hour", "outcome", "category"],
        set_={"count": SmsHourlyStat.count + 1},
    )
    db.session.execute(statement)


@dataclass
class Window:
    delivered: int = 0
    failed: int = 0
    unknown: int = 0
    suppressed: int = 0

    @property
    def attempted(self):
        return self.delivered + self.failed + self.unknown

    @property
    def rate(self):
        """Return failed ÷ attempted as a fraction, or None when nothing was attempted."""
        return self.failed / self.attempted if self.attempted else None


def window_figures(clinic_ids, since):
    """Return the outcome totals and the failures by category since ``since``."""
    rows = db.session.execute(
        _scoped(
            db.select(SmsHourlyStat.outcome, SmsHourlyStat.category, func.sum(SmsHourlyStat.count))
            .where(SmsHourlyStat.hour >= since)
            .group_by(SmsHourlyStat.outcome, SmsHourlyStat.category),
            clinic_ids,
        )
    ).all()
    totals, by_category = Window(), {}
    for outcome, category, count in rows:
        setattr(totals, outcome, getattr(totals, outcome) + int(count))
        if outcome == "failed":
            by_category[category] = by_category.get(category, 0) + int(count)
    return totals, by_category


def summary(clinic_ids=None):
    """Return the figures of every window, the 7-day state and the top cause of failures."""
    now = utcnow()
    windows = {name: window_figures(clinic_ids, now - span) for name, span in WINDOWS.items()}
    week_rate = windows["7d"][0].rate
    top = max(windows["7d"][1].items(), key=lambda item: item[1], default=(None, 0))
    return {
        "windows": windows,
        "state": state_for(week_rate),
        "top_category": top[0],
        "daily": daily_rates(clinic_ids, days=30),
    }


def state_for(rate):
    """Return healthy, watch or investigate for a 7-day failure rate."""
    if rate is None or rate < WATCH_AT:
        return "healthy"
    if rate <= INVESTIGATE_ABOVE:
        return "watch"
    return "investigate"


def daily_rates(clinic_ids, days):
    """Return ``[(day, attempted, failed)]`` for the last ``days`` UTC days, oldest first, gaps as zero.

    The database adds the hours up by day, so the cost stays at one row per day and outcome
    however many clinics are included.
    """
    today = utcnow().replace(hour=0, minute=0, second=0, microsecond=0)
    start = today - timedelta(days=days - 1)
    day = _day_of(SmsHourlyStat.hour)
    rows = db.session.execute(
        _scoped(
            db.select(day, SmsHourlyStat.outcome, func.sum(SmsHourlyStat.count))
            .where(SmsHourlyStat.hour >= start, SmsHourlyStat.outcome != "suppressed")
            .group_by(day, SmsHourlyStat.outcome),
            clinic_ids,
        )
    ).all()
    buckets = {(start + timedelta(days=n)).date(): [0, 0] for n in range(days)}
    for value, outcome, count in rows:
        bucket = buckets.get(_as_date(value))
        if bucket is None:
            continue
        bucket[0] += int(count)
        if outcome == "failed":
            bucket[1] += int(count)
    return [
        (datetime.combine(day_value, time.min, tzinfo=timezone.utc), attempted, failed)
        for day_value, (attempted, failed) in sorted(buckets.items())
    ]


def rates_by_clinic(clinic_ids=None):
    """Return ``{clinic_id: {window: Window}}`` for every window, with one query per window."""
    now = utcnow()
    result = {}
    for name, span in WINDOWS.items():
        rows = db.session.execute(
            _scoped(
                db.select(SmsHourlyStat.clinic_id, SmsHourlyStat.outcome, func.sum(SmsHourlyStat.count))
                .where(SmsHourlyStat.hour >= now - span)
                .group_by(SmsHourlyStat.clinic_id, SmsHourlyStat.outcome),
                clinic_ids,
            )
        ).all()
        for clinic_id, outcome, count in rows:
            window = result.setdefault(clinic_id, {}).setdefault(name, Window())
            setattr(window, outcome, getattr(window, outcome) + int(count))
    return result


def _day_of(column):
    if db.session.get_bind().dialect.name == "postgresql":
        return func.date_trunc("day", column)
    return func.date(column)


def _as_date(value):
    # PostgreSQL returns a timestamp, SQLite a "YYYY-MM-DD" string.
    if isinstance(value, str):
        return date.fromisoformat(value[:10])
    return value.date() if isinstance(value, datetime) else value


def _scoped(statement, clinic_ids):
    if clinic_ids is None:
        return statement
    return statement.where(SmsHourlyStat.clinic_id.in_(clinic_ids))
