"""SMS failure figures for the System Health Dashboard, read from hourly rollups.

Each SMS delivery is counted once, when it settles: delivered, failed for good (no retry
left), suppressed before sending, or unknown for lack of a receipt.
"""

from dataclasses import dataclass
from datetime import timedelta

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
    """Return ``[(day, attempted, failed)]`` for the last ``days`` UTC days, oldest first, gaps as zero."""
    today = utcnow().replace(hour=0, minute=0, second=0, microsecond=0)
    start = today - timedelta(days=days - 1)
    rows = db.session.execute(
        _scoped(
            db.select(SmsHourlyStat.hour, SmsHourlyStat.outcome, SmsHourlyStat.count).where(SmsHourlyStat.hour >= start),
            clinic_ids,
        )
    ).all()
    buckets = {start + timedelta(days=n): [0, 0] for n in range(days)}
    for hour, outcome, count in rows:
        day = hour.replace(hour=0)
        if day not in buckets or outcome == "suppressed":
            continue
        buckets[day][0] += count
        if outcome == "failed":
            buckets[day][1] += count
    return [(day, attempted, failed) for day, (attempted, failed) in sorted(buckets.items())]


def _scoped(statement, clinic_ids):
    if clinic_ids is None:
        return statement
    return statement.where(SmsHourlyStat.clinic_id.in_(clinic_ids))
