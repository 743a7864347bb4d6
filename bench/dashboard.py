"""System Health Dashboard tile: its figures from the rollups against the same figures from a full scan.

The tile is ``notifier.stats.summary``: the 24-hour, 7-day and 30-day failure figures and the
daily chart. The baseline computes the same figures from the seeded deliveries themselves, one
row per text, and the benchmark checks that both give the same numbers.
"""

import statistics
import time
from datetime import timedelta

from sqlalchemy import text

from bench.results import Figure
from notifier import stats
from portal.extensions import db
from portal.models import utcnow

TILE_RUNS = 25
SCAN_RUNS = 3
# A seeded clinic (clinic 1 of the bulk), so the tile reads a realistic share of the rows.
CLINIC_ID = 1

SCAN_SQL = """
SELECT date_trunc('hour', d.final_at) AS hour,
       CASE WHEN d.status IN ('undelivered', 'failed') THEN 'failed' ELSE d.status END AS outcome,
       coalesce(d.category, '') AS category, count(*)
FROM deliveries d JOIN messages m ON m.id = d.message_id
WHERE d.channel = 'sms' AND d.status_rank = 4
  AND d.status IN ('delivered', 'undelivered', 'failed', 'suppressed', 'unknown')
  AND d.final_at >= :since {clinic_filter}
GROUP BY 1, 2, 3
"""


def summary_by_scan(clinic_ids):
    """Return the tile's window totals computed from every settled SMS delivery, not from the rollups."""
    now = utcnow()
    clinic_filter = "AND m.clinic_id = ANY(:clinics)" if clinic_ids is not None else ""
    rows = db.session.execute(
        text(SCAN_SQL.format(clinic_filter=clinic_filter)),
        {"since": (now - timedelta(days=31)).replace(tzinfo=None), "clinics": clinic_ids},
    ).all()
    windows = {}
    for name, span in stats.WINDOWS.items():
        since = (now - span).replace(tzinfo=None)
        totals = stats.Window()
        for hour, outcome, _category, count in rows:
            if hour >= since:
                setattr(totals, outcome, getattr(totals, outcome) + count)
        windows[name] = totals
    return windows


def timed(function, runs):
    """Return the median and max wall time of ``runs`` calls of ``function``, in milliseconds, after one warm-up call."""
    function()
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        function()
        db.session.rollback()
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times), max(times)


def run_benchmark(run, web=None):
    figures = []
    with run.app.app_context():
        for label, clinic_ids in (("one clinic", [CLINIC_ID]), ("all clinics (operator)", None)):
            tile = stats.summary(clinic_ids)
            scanned = summary_by_scan(clinic_ids)
            mismatch = [
                name
                for name, (totals, _categories) in tile["windows"].items()
                if (totals.attempted, totals.failed) != (scanned[name].attempted, scanned[name].failed)
            ]
            tile_ms, tile_max = timed(lambda ids=clinic_ids: stats.summary(ids), TILE_RUNS)
            scan_ms, scan_max = timed(lambda ids=clinic_ids: summary_by_scan(ids), SCAN_RUNS)
            week = tile["windows"]["7d"][0]
            figures.append(
                Figure(
                    name=f"dashboard tile, {label}",
                    value=tile_ms,
                    unit="ms",
                    goal=("<=", 20),
                    baseline=scan_ms,
                    baseline_name="ms by full scan",
                    ratio_goal=20,
                    baseline_divides=True,
                    detail=(
                        f"median of {TILE_RUNS}, max {tile_max:.1f} ms; 7-day: {week.failed} of {week.attempted} failed; "
                        + ("figures match the scan" if not mismatch else f"MISMATCH in {', '.join(mismatch)}")
                    ),
                    extra={"scan_max_ms": scan_max, "mismatch": mismatch},
                )
            )
    return figures
