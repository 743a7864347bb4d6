"""System Health Dashboard: SMS failure rates, their causes, the worklist and escalations."""

import csv
import io
import json
import logging
from datetime import timedelta

from flask import Response, abort, flash, redirect, render_template, request, url_for
from flask_login import current_user

from notifier import stats
from notifier.classify import categories
from notifier.explain import failure_text
from portal.admin import bp
from portal.auth import staff_required
from portal.extensions import db
from portal.forms import ConfirmForm
from portal.models import Client, Clinic, Delivery, Escalation, Message, PhoneLine, utcnow

log = logging.getLogger(__name__)

WORKLIST_CATEGORIES = ("landline", "invalid_number")


@bp.get("/health")
@staff_required
def health():
    """Show SMS failure rates for the staff member's clinic, or every clinic for operators."""
    clinic_ids = _clinic_ids()
    clinics = db.session.execute(
        db.select(Clinic).where(Clinic.id.in_(clinic_ids)) if clinic_ids is not None else db.select(Clinic)
    ).scalars().all()
    per_clinic = []
    if current_user.is_operator:
        rates = stats.rates_by_clinic(clinic_ids)
        per_clinic = [(clinic, _clinic_row(rates.get(clinic.id, {}))) for clinic in clinics]
    summary = stats.summary(clinic_ids)
    return render_template(
        "admin/health.html",
        summary=summary,
        per_clinic=per_clinic,
        categories=categories(),
        top_fix=_top_fix(summary["top_category"]),
        worklist=worklist(clinic_ids)[:50],
        escalations=_recent_escalations(clinic_ids),
        chart=_chart(summary["daily"]),
        form=ConfirmForm(),
    )


@bp.get("/health/worklist.csv")
@staff_required
def worklist_csv():
    """Export the clients whose number must be corrected in the PIMS, as CSV."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["client_id", "name", "mobile_number", "problem", "last_seen"])
    for row in worklist(_clinic_ids()):
        writer.writerow([row["client"].id, row["client"].name, row["client"].mobile_number, row["problem"], row["seen"].date().isoformat()])
    return Response(
        buffer.getvalue(),
        mimetype="text/csv",
        headers={"Content-Disposition": "attachment; filename=pawpost-numbers-to-fix.csv"},
    )


@bp.post("/health/escalations")
@staff_required
def escalate():
    """Record that the clinic escalated persistent carrier filtering, with today's figures."""
    form = ConfirmForm()
    if current_user.clinic_id is None or not form.validate_on_submit():
        abort(400)
    summary = stats.summary([current_user.clinic_id])
    figures = {
        name: {
            "rate": totals.rate,
            "attempted": totals.attempted,
            "failed": totals.failed,
            "by_category": by_category,
        }
        for name, (totals, by_category) in summary["windows"].items()
    }
    escalation = Escalation(
        clinic_id=current_user.clinic_id,
        staff_id=current_user.id,
        figures=json.dumps(figures, sort_keys=True),
        note=(request.form.get("note") or "")[:500] or None,
    )
    db.session.add(escalation)
    db.session.commit()
    log.info("Clinic %s escalated carrier filtering (escalation %s, staff %s).", current_user.clinic_id, escalation.id, current_user.id)
    flash("Escalation recorded with today's figures. Support will take it to the carrier.", "success")
    return redirect(url_for("admin.health"))


def _clinic_row(windows):
    totals = {name: windows.get(name, stats.Window()) for name in stats.WINDOWS}
    return {"rates": {name: window.rate for name, window in totals.items()}, "state": stats.state_for(totals["7d"].rate)}


def worklist(clinic_ids, days=30):
    """Return clients whose number is a landline, out of service or not a mobile per the PIMS, newest problem first."""
    since = utcnow() - timedelta(days=days)
    failures = db.session.execute(
        _scope_clients(
            db.select(Client, Delivery.category, Delivery.final_at)
            .join(Message, Message.client_id == Client.id)
            .join(Delivery, Delivery.message_id == Message.id)
            .where(Delivery.channel == "sms", Delivery.category.in_(WORKLIST_CATEGORIES), Delivery.final_at >= since),
            clinic_ids,
        ).order_by(Delivery.final_at.desc())
    ).all()
    landlines = db.session.execute(
        _scope_clients(
            db.select(Client, PhoneLine.updated_at)
            .join(PhoneLine, PhoneLine.number == Client.mobile_number)
            .where(PhoneLine.line_type == "landline"),
            clinic_ids,
        )
    ).all()
    rows = {}
    for client, category, seen in failures:
        rows.setdefault(client.id, {"client": client, "problem": category, "seen": seen})
    for client, seen in landlines:
        rows.setdefault(client.id, {"client": client, "problem": "landline", "seen": seen})
    # Clients whose PIMS record lists no number that can get texts.
    untextable = db.session.execute(_scope_clients(db.select(Client).where(Client.textable.is_(False)), clinic_ids)).scalars()
    for client in untextable:
        rows.setdefault(client.id, {"client": client, "problem": "landline", "seen": client.pims_updated_at or client.created_at})
    return sorted(rows.values(), key=lambda row: row["seen"], reverse=True)


def _scope_clients(statement, clinic_ids):
    return statement if clinic_ids is None else statement.where(Client.clinic_id.in_(clinic_ids))


def _clinic_ids():
    return None if current_user.is_operator else [current_user.clinic_id]


def _top_fix(category):
    if category is None:
        return None
    if category in WORKLIST_CATEGORIES:
        return "Most failures are numbers that can't get texts. Fix the clients below in your PIMS; the list is exportable as CSV."
    if category == "carrier_filtered":
        return "Carriers keep filtering your texts. If it persists, escalate to the carrier below."
    return failure_text(category, None)


def _recent_escalations(clinic_ids):
    statement = db.select(Escalation).order_by(Escalation.created_at.desc()).limit(5)
    if clinic_ids is not None:
        statement = statement.where(Escalation.clinic_id.in_(clinic_ids))
    return db.session.execute(statement).scalars().all()


def _chart(daily, width=600, height=120):
    """Return bar geometry for the daily failure-rate chart, drawn as SVG by the template."""
    peak = max([failed / attempted for _day, attempted, failed in daily if attempted] + [0.1])
    slot = width / max(len(daily), 1)
    bars = []
    for index, (day, attempted, failed) in enumerate(daily):
        rate = failed / attempted if attempted else 0
        bar_height = round(rate / peak * (height - 20), 1)
        bars.append(
            {
                "x": round(index * slot + 1, 1),
                "y": round(height - bar_height, 1),
                "width": round(slot - 2, 1),
                "height": bar_height,
                "label": f"{day:%b %d}: {rate:.1%} of {attempted} texts failed",
            }
        )
    return {"width": width, "height": height, "bars": bars, "peak": peak}
