"""SMS failure figures for the System Health Dashboard, read from rollups.

Each SMS delivery is counted once, when it settles: delivered, failed for good (no retry
left), suppressed before sending, or unknown for lack of a receipt. It is counted in its
clinic's row for the hour it settled. Those rows never change once their day is over, so the
first read after that sums the day into one row per clinic, outcome and category
(``close_days``). The 7-day and 30-day windows then add up days, and hours only at their ends.
Figures across every clinic, for operators, read closed hours summed across clinics instead
(``close_fleet_hours``).
"""

from dataclasses import dataclass
from functools import cache
from datetime import date, datetime, time, timedelta, timezone

from sqlalchemy import and_, bindparam, case, delete, func, literal, or_, text, update
from sqlalchemy.dialects import postgresql, sqlite

from portal.extensions import db
from portal.models import SmsClosedDay, SmsDailyStat, SmsFleetHourlyStat, SmsHourlyStat, SmsRollupMark, utcnow
from portal.models.stats import STRIPES
from portal.models.types import UTCDateTime

WINDOWS = {"24h": timedelta(hours=24), "7d": timedelta(days=7), "30d": timedelta(days=30)}
# Thresholds on the 7-day failure rate, as fractions.
WATCH_AT = 0.05
INVESTIGATE_ABOVE = 0.08
CHART_DAYS = 30
DAY = timedelta(days=1)
# A day or hour is summed once it has been over this long, so that a text settled just before
# its end whose transaction commits just after it is still in the sum.
CLOSE_AFTER = timedelta(hours=1)
FLEET_MARK = "fleet_hourly"
# The outcomes a status callback can settle a text with; failures are counted by ``settle``.
COUNTED_OUTCOMES = ("delivered", "unknown", "suppressed")
# Any fixed number, the same in every process: the advisory lock of ``lock_rollups``.
ROLLUP_LOCK_KEY = 7_290_514_031


def record(delivery, outcome, category=None, *, channel=None, clinic_id=None, delivery_id=None):
    """Count one settled SMS delivery in its clinic's hourly row.

    A caller without a loaded delivery passes ``delivery=None`` with its ``channel``,
    ``clinic_id`` and ``delivery_id``, which saves loading the delivery and its message.
    """
    if delivery is not None:
        channel = delivery.channel
    if channel != "sms":
        return
    if delivery is not None:
        clinic_id, delivery_id = delivery.message.clinic_id, delivery.id
    _add_to_hour(clinic_id, utcnow(), outcome, category or "", 1, delivery_id % STRIPES)


def add_history(clinic_id, when, outcome, count, category=""):
    """Add ``count`` texts settled at ``when``, in the past or now, as an import of history would.

    If ``when`` falls on a day already summed, the day is reopened and summed again on the next
    read. The caller commits, and until then a reader that would sum the same rows waits.
    """
    lock_rollups(db.session.connection())
    _add_to_hour(clinic_id, when, outcome, category, count, 0)
    day = _midnight(when)
    db.session.execute(delete(SmsDailyStat).where(SmsDailyStat.day == day))
    db.session.execute(delete(SmsClosedDay).where(SmsClosedDay.day == day))
    hour = hour_start(when)
    db.session.execute(delete(SmsFleetHourlyStat).where(SmsFleetHourlyStat.hour == hour))
    db.session.execute(
        update(SmsRollupMark).where(SmsRollupMark.name == FLEET_MARK, SmsRollupMark.until > hour).values(until=hour)
    )


def _add_to_hour(clinic_id, when, outcome, category, count, stripe):
    connection = db.session.connection()
    connection.execute(
        _hour_upsert(connection.dialect.name),
        {
            "clinic_id": clinic_id,
            "hour": hour_start(when),
            "outcome": outcome,
            "category": category,
            "stripe": stripe,
            "count": count,
        },
    )


@cache
def _hour_upsert(dialect_name):
    """Return the upsert that adds to an hourly row, built once per dialect since every settled text runs it."""
    table = SmsHourlyStat.__table__
    insert = postgresql.insert if dialect_name == "postgresql" else sqlite.insert
    statement = insert(table).values(
        clinic_id=bindparam("clinic_id"),
        hour=bindparam("hour", type_=UTCDateTime()),
        outcome=bindparam("outcome"),
        category=bindparam("category"),
        stripe=bindparam("stripe"),
        count=bindparam("count"),
    )
    return statement.on_conflict_do_update(
        index_elements=["clinic_id", "hour", "outcome", "category", "stripe"],
        set_={"count": table.c.count + statement.excluded.count},
    )


def close_days(since, now=None):
    """Sum the hourly rows of every day from ``since`` that is over and not yet summed.

    Return the midnight from which days are still read hour by hour. The sums are written in
    their own transaction, and two readers closing the same day write its rows once.
    """
    now = now or utcnow()
    # Days after the real time may still get texts, so a reading dated later closes none of them.
    open_from = _midnight(min(now, utcnow()) - CLOSE_AFTER)
    first = _midnight(since)
    if first >= open_from:
        return open_from
    closed = set(
        db.session.execute(
            db.select(SmsClosedDay.day).where(SmsClosedDay.day >= first, SmsClosedDay.day < open_from)
        ).scalars()
    )
    missing = [day for day in _days(first, open_from) if day not in closed]
    if missing:
        with db.engine.begin() as connection:
            lock_rollups(connection)
            for day in missing:
                connection.execute(_close_statement(day))
                connection.execute(
                    _insert(SmsClosedDay).values(day=day, closed_at=utcnow()).on_conflict_do_nothing()
                )
    return open_from


def close_fleet_hours(now=None):
    """Sum every clinic's hourly rows into one row per hour, outcome and category, for the hours that are over.

    Return the hour from which the figures across all clinics still read the clinics' own
    hourly rows. Only the hours of the longest window are summed.
    """
    now = now or utcnow()
    open_from = hour_start(min(now, utcnow()) - CLOSE_AFTER)
    # NOTE: hours older than the first sum's 30-day start are never summed, so a reading dated
    # earlier than an earlier one (only tests and benchmarks pass ``now``) can miss them.
    oldest = hour_start(now - WINDOWS["30d"])
    mark = db.session.execute(db.select(SmsRollupMark.until).where(SmsRollupMark.name == FLEET_MARK)).scalar()
    if mark is not None and mark >= open_from:
        return open_from
    with db.engine.begin() as connection:
        lock_rollups(connection)
        # Read again under the lock: a history import may have moved the mark back meanwhile.
        mark = connection.execute(db.select(SmsRollupMark.until).where(SmsRollupMark.name == FLEET_MARK)).scalar()
        start = oldest if mark is None else max(mark, oldest)
        if start < open_from:
            connection.execute(_fleet_close_statement(start, open_from))
            connection.execute(_fleet_mark_statement(open_from))
    return open_from


def _fleet_close_statement(start, end):
    hourly = SmsHourlyStat
    sums = (
        db.select(hourly.hour, hourly.outcome, hourly.category, func.sum(hourly.count))
        .where(hourly.hour >= start, hourly.hour < end)
        .group_by(hourly.hour, hourly.outcome, hourly.category)
    )
    columns = ["hour", "outcome", "category", "count"]
    return _insert(SmsFleetHourlyStat).from_select(columns, sums).on_conflict_do_nothing()


def _fleet_mark_statement(until):
    marks = _insert(SmsRollupMark).values(name=FLEET_MARK, until=until)
    return marks.on_conflict_do_update(
        index_elements=["name"],
        # Two readers may close hours at once; the mark only moves forward.
        set_={"until": case((marks.excluded.until > SmsRollupMark.until, marks.excluded.until), else_=SmsRollupMark.until)},
    )


def lock_rollups(connection):
    """Take the lock that orders summing hourly rows against history imports, until the transaction ends.

    Without it, an import that commits while a reader sums the same hours would be missed by
    that sum for good. PostgreSQL takes an advisory lock; SQLite already lets one writer at a time.
    """
    if connection.dialect.name == "postgresql":
        connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": ROLLUP_LOCK_KEY})


def _close_statement(day):
    hourly = SmsHourlyStat
    sums = (
        db.select(
            hourly.clinic_id,
            literal(day, UTCDateTime),
            hourly.outcome,
            hourly.category,
            func.sum(hourly.count),
        )
        .where(hourly.hour >= day, hourly.hour < day + DAY)
        .group_by(hourly.clinic_id, hourly.outcome, hourly.category)
    )
    columns = ["clinic_id", "day", "outcome", "category", "count"]
    return _insert(SmsDailyStat).from_select(columns, sums).on_conflict_do_nothing()


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


def summary(clinic_ids=None, now=None):
    """Return the figures of every window, the 7-day state, the top cause of failures and the daily chart.

    ``clinic_ids`` limits the figures to those clinics; None means every clinic.
    """
    windows, daily = _figures(clinic_ids, now or utcnow(), CHART_DAYS)
    week_rate = windows["7d"][0].rate
    top = max(windows["7d"][1].items(), key=lambda item: item[1], default=(None, 0))
    return {"windows": windows, "state": state_for(week_rate), "top_category": top[0], "daily": daily}


def state_for(rate):
    """Return healthy, watch or investigate for a 7-day failure rate."""
    if rate is None or rate < WATCH_AT:
        return "healthy"
    if rate <= INVESTIGATE_ABOVE:
        return "watch"
    return "investigate"


def daily_rates(clinic_ids, days, now=None):
    """Return ``[(day, attempted, failed)]`` for the last ``days`` UTC days, oldest first, gaps as zero."""
    return _figures(clinic_ids, now or utcnow(), days)[1]


def _figures(clinic_ids, now, chart_days):
    """Return ``(windows, daily)``: each window's totals and failures by category, and the chart's days.

    Two statements read them. Each sums a rollup table by day, outcome and category, with one sum
    per window and one for the chart, so the rows returned do not grow with the number of clinics.
    """
    today = _midnight(now)
    chart_start = today - timedelta(days=chart_days - 1)
    if clinic_ids is None:
        open_from = close_fleet_hours(now)
        closed, still_open = _fleet_ranges(now, open_from, chart_start)
        rows = _period_sums(SmsFleetHourlyStat, None, closed) + _period_sums(SmsHourlyStat, None, still_open)
    else:
        open_from = close_days(min(now - WINDOWS["30d"], chart_start), now)
        hourly, daily = _clinic_ranges(now, open_from, chart_start)
        rows = _period_sums(SmsHourlyStat, clinic_ids, hourly)
        if daily:
            rows += _period_sums(SmsDailyStat, clinic_ids, daily)

    windows = {name: (Window(), {}) for name in WINDOWS}
    buckets = {(chart_start + timedelta(days=n)).date(): [0, 0] for n in range(chart_days)}
    for day, outcome, category, *counts in rows:
        *window_counts, chart_count = (int(count or 0) for count in counts)
        for (totals, by_category), count in zip(windows.values(), window_counts):
            if not count:
                continue
            setattr(totals, outcome, getattr(totals, outcome) + count)
            if outcome == "failed":
                by_category[category] = by_category.get(category, 0) + count
        bucket = buckets.get(_as_date(day))
        if bucket is not None and outcome != "suppressed":
            bucket[0] += chart_count
            if outcome == "failed":
                bucket[1] += chart_count
    daily = [
        (datetime.combine(day_value, time.min, tzinfo=timezone.utc), attempted, failed)
        for day_value, (attempted, failed) in sorted(buckets.items())
    ]
    return windows, daily


def _clinic_ranges(now, open_from, chart_start=None):
    """Return the ``{window or "chart": [(low, high)]}`` ranges to read from the hourly and the daily rows.

    A window from ``start`` to ``now`` reads the hourly rows up to the first midnight after
    ``start``, the daily rows of the closed days after it, and the hourly rows of the open days.
    """
    hourly, daily = {}, {}
    for name, span in WINDOWS.items():
        start = now - span
        first_full_day = start if start == _midnight(start) else _midnight(start) + DAY
        if first_full_day >= open_from:
            hourly[name] = [(start, None)]
        else:
            hourly[name] = [(start, first_full_day), (open_from, None)]
            daily[name] = [(first_full_day, open_from)]
    if chart_start is not None:
        hourly["chart"] = [(max(chart_start, open_from), None)]
        if chart_start < open_from:
            daily["chart"] = [(chart_start, open_from)]
    return hourly, daily


def _fleet_ranges(now, open_from, chart_start):
    """Return the ranges to read from the rows summed across clinics and from the clinics' own hourly rows."""
    closed = {name: [(now - span, open_from)] for name, span in WINDOWS.items()}
    closed["chart"] = [(chart_start, open_from)]
    still_open = {name: [(open_from, None)] for name in (*WINDOWS, "chart")}
    return closed, still_open


def _period_sums(table, clinic_ids, ranges, by_clinic=False):
    """Return ``(day, outcome, category, *sums)`` rows of ``table``: one sum per window, then the chart's.

    With ``by_clinic`` the rows are ``(clinic_id, outcome, *sums)`` instead. A window or the chart
    without a range in ``ranges`` sums to zero. The statement is built once for each table, key
    and shape of ranges, with the bounds as parameters.
    """
    names = (*WINDOWS, "chart")
    shape = tuple(tuple(high is not None for _low, high in ranges.get(name, ())) for name in names)
    params = {}
    for name in names:
        for number, (low, high) in enumerate(ranges.get(name, ())):
            params[f"{name}_{number}_low"] = low
            if high is not None:
                params[f"{name}_{number}_high"] = high
    if clinic_ids is not None:
        params["clinic_ids"] = list(clinic_ids)
    dialect_name = db.session.get_bind().dialect.name
    statement = _period_statement(table.__tablename__, clinic_ids is not None, shape, dialect_name, by_clinic)
    return db.session.execute(statement, params).all()


@cache
def _period_statement(table_name, scoped, shape, dialect_name, by_clinic):
    table = {model.__tablename__: model for model in (SmsHourlyStat, SmsDailyStat, SmsFleetHourlyStat)}[table_name]
    column = table.day if table is SmsDailyStat else table.hour
    names = (*WINDOWS, "chart")

    def within(name, bounded):
        spans = []
        for number, has_high in enumerate(bounded):
            condition = column >= bindparam(f"{name}_{number}_low", type_=UTCDateTime())
            if has_high:
                condition = and_(condition, column < bindparam(f"{name}_{number}_high", type_=UTCDateTime()))
            spans.append(condition)
        return or_(*spans)

    sums = [
        func.sum(case((within(name, bounded), table.count), else_=0)) if bounded else literal(0)
        for name, bounded in zip(names, shape)
    ]
    if by_clinic:
        keys = (table.clinic_id, table.outcome)
    else:
        day = column if table is SmsDailyStat else _day_of(column, dialect_name)
        keys = (day, table.outcome, table.category)
    statement = (
        db.select(*keys, *sums)
        .where(or_(*(within(name, bounded) for name, bounded in zip(names, shape) if bounded)))
        .group_by(*keys)
    )
    if scoped:
        statement = statement.where(table.clinic_id.in_(bindparam("clinic_ids", expanding=True)))
    return statement


def rates_by_clinic(clinic_ids=None, now=None):
    """Return ``{clinic_id: {window: Window}}`` for every window, with one query per rollup table."""
    now = now or utcnow()
    open_from = close_days(now - WINDOWS["30d"], now)
    hourly, daily = _clinic_ranges(now, open_from)
    rows = _period_sums(SmsHourlyStat, clinic_ids, hourly, by_clinic=True)
    if daily:
        rows += _period_sums(SmsDailyStat, clinic_ids, daily, by_clinic=True)
    result = {}
    for clinic_id, outcome, *counts in rows:
        for name, count in zip(WINDOWS, counts):
            window = result.setdefault(clinic_id, {}).setdefault(name, Window())
            setattr(window, outcome, getattr(window, outcome) + int(count or 0))
    return result


def _day_of(column, dialect_name=None):
    if (dialect_name or db.session.get_bind().dialect.name) == "postgresql":
        return func.date_trunc("day", column)
    return func.date(column)


def _as_date(value):
    # PostgreSQL returns a timestamp, SQLite a "YYYY-MM-DD" string.
    if isinstance(value, str):
        return date.fromisoformat(value[:10])
    return value.date() if isinstance(value, datetime) else value


def hour_start(moment):
    """Return the start of the UTC hour that ``moment`` falls in."""
    return moment.replace(minute=0, second=0, microsecond=0)


def _midnight(moment):
    return moment.replace(hour=0, minute=0, second=0, microsecond=0)


def _days(first, end):
    day = first
    while day < end:
        yield day
        day += DAY


def _insert(table):
    return postgresql.insert(table) if db.session.get_bind().dialect.name == "postgresql" else sqlite.insert(table)
