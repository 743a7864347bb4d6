"""Status-callback ingest: signed Twilio callbacks per second, each checked, stored and applied.

Every request is a distinct ``delivered`` callback for its own text in status ``sent``, so each
one verifies the X-Twilio-Signature, is queued, then stored and applied by the workers' appliers
(moving a delivery forward and counting it in the hourly rollup). The figure is the callbacks
applied per second: the requests wrk completed, divided by the time from the load's start until
the last of them was applied. The baseline serves a Flask view that only returns 200 with the
same gunicorn command, under the same wrk load.
"""

import time

from sqlalchemy import text

from bench import environment, load
from bench.context import discard_rows_after, row_marker
from bench.results import Figure
from bench.texts import sent_texts, twilio_callback
from notifier import status_queue
from portal.extensions import db

CONNECTIONS = 16
# Texts prepared per second of load, so no callback repeats unless ingest beats this rate.
PREPARED_PER_SECOND = 3000


def run_benchmark(run, web):
    """Return the Figures of callback ingest against the do-nothing baseline; ``web`` is Pawpost's gunicorn."""
    settings = run.settings
    seconds = run.http_seconds
    with run.app.app_context():
        marker = row_marker()
        clinic_id = run.fixtures.twilio_clinic_id
        delivery_ids = sent_texts(clinic_id, int(PREPARED_PER_SECOND * seconds))
    replay_path = run.run_dir / "callbacks.replay"
    load.write_replay_file(
        replay_path, (twilio_callback(settings.web_url, clinic_id, d, "delivered") for d in delivery_ids)
    )
    workers = environment.start_workers(run.processes, settings)
    try:
        started = time.monotonic()
        result = load.run_wrk(
            settings.web_url, seconds, CONNECTIONS, script="replay.lua", script_args=(str(replay_path), "2")
        )
        loaded = time.monotonic()
        with run.app.app_context():
            drained = status_queue.wait_applied(timeout=120)
        applied_after = time.monotonic() - loaded
        applying_seconds = time.monotonic() - started
        with run.app.app_context():
            applied = db.session.execute(
                text("SELECT count(*) FROM deliveries WHERE id = ANY(:ids) AND status = 'delivered'"), {"ids": delivery_ids}
            ).scalar()
            events = db.session.execute(
                text("SELECT count(*) FROM provider_events WHERE delivery_id = ANY(:ids)"), {"ids": delivery_ids}
            ).scalar()
    finally:
        for process in workers:
            run.processes.stop(process)
        with run.app.app_context():
            discard_rows_after(marker)

    baseline_server = environment.start_web(
        run.processes, settings, app_path="bench.baseline_app:app", name="baseline-web", port=settings.baseline_port
    )
    try:
        baseline = load.run_wrk(
            settings.baseline_url, seconds, CONNECTIONS, script="replay.lua", script_args=(str(replay_path), "2")
        )
    finally:
        run.processes.stop(baseline_server)
    replay_path.unlink(missing_ok=True)

    applied_rate = result.requests / applying_seconds if applying_seconds else 0.0
    detail = (
        f"{result.rate:.0f} callbacks/s answered; the last applied {applied_after:.2f} s after the load ended"
        f"{'' if drained else ' (some were still queued after 120 s)'}; {events} events stored, "
        f"{applied} deliveries moved to delivered, {result.errors} errors"
    )
    return [
        Figure(
            name=f"status callbacks applied, {CONNECTIONS} connections",
            value=applied_rate,
            unit="callbacks/s",
            goal=(">=", 2000),
            baseline=baseline.rate,
            baseline_name="req/s of a 200-only view",
            ratio_goal=0.4,
            detail=detail,
            extra={
                "pawpost": result.__dict__,
                "baseline": baseline.__dict__,
                "applied": applied,
                "events": events,
                "applied_after_load_seconds": applied_after,
            },
        ),
        Figure(
            name=f"status callbacks p99 of the answer, {CONNECTIONS} connections",
            value=result.p99_ms,
            unit="ms",
            goal=("<=", 50),
            detail=(
                f"p50 {result.p50_ms:.1f} ms, p95 {result.p95_ms:.1f} ms, max {result.max_ms:.0f} ms; "
                f"baseline p99 {baseline.p99_ms:.1f} ms"
            ),
        ),
    ]
