"""``/failure-rates``: the clinic's SMS failure rates, as on the System Health Dashboard."""

from flask import g, jsonify

from notifier import stats
from portal.api import bp
from portal.api.auth import token_required


@bp.get("/failure-rates")
@token_required
def failure_rates():
    """Return the clinic's SMS failure rate for 24 h, 7 and 30 days, failures by category, the state and a daily series."""
    summary = stats.summary([g.clinic.id])
    windows = {}
    for name, (totals, by_category) in summary["windows"].items():
        windows[name] = {
            "rate": totals.rate,
            "attempted": totals.attempted,
            "delivered": totals.delivered,
            "failed": totals.failed,
            "unknown": totals.unknown,
            "suppressed": totals.suppressed,
            "failed_by_category": by_category,
        }
    daily = [
        {"date": day.date().isoformat(), "attempted": attempted, "failed": failed}
        for day, attempted, failed in summary["daily"]
    ]
    return jsonify(
        windows=windows,
        state=summary["state"],
        top_category=summary["top_category"],
        thresholds={"watch_at": stats.WATCH_AT, "investigate_above": stats.INVESTIGATE_ABOVE},
        daily=daily,
    )
