"""Status-callback ingest: signed Twilio callbacks per second, each checked, stored and applied.

Every request is a distinct ``delivered`` callback for its own text in status ``sent``, so each
one verifies the X-Twilio-Signature, is queued, then stored and applied by the workers' appliers
(moving a delivery forward and counting it in the hourly rollup). The figure is the callbacks
applied per second: the requests wrk completed, divided by the time from the load's start until
the last of them was applied. The baseline serves a Flask view that only returns 200 with the
same gunicorn command, under the same wrk load. The same load then goes through the fixed stack
alone (bench/stack_floor_apps.py), to estimate what the libraries allow on this machine.
"""

import sys
import time

import redis
from sqlalchemy import text

from bench import environment, load, stack_floor_apps
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
    marker, delivery_ids, replay_path = _prepare_load(run, settings.web_url, "callbacks.replay")
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

    floor = _floor_run(run)
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
            name=f"fixed stack alone: status callbacks applied, {CONNECTIONS} connections",
            value=floor["rate"],
            unit="callbacks/s",
            goal=(">=", 2000),
            baseline=baseline.rate,
            baseline_name="req/s of a 200-only view",
            ratio_goal=0.4,
            detail=(
                f"no Pawpost code: signature checked, event queued, then stored and its delivery moved in batches of "
                f"{stack_floor_apps.BATCH}; {floor['result'].rate:.0f} callbacks/s answered, {floor['applied']} deliveries moved, "
                f"{floor['result'].errors} errors"
            ),
            extra={"result": floor["result"].__dict__, "applied": floor["applied"]},
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


def _prepare_load(run, base_url, file_name):
    """Store sent texts for the load and write their callbacks, signed for ``base_url``, to a replay file.

    Return the row marker from before the texts, their delivery ids and the replay file's path.
    """
    with run.app.app_context():
        marker = row_marker()
        clinic_id = run.fixtures.twilio_clinic_id
        delivery_ids = sent_texts(clinic_id, int(PREPARED_PER_SECOND * run.http_seconds))
    replay_path = run.run_dir / file_name
    load.write_replay_file(replay_path, (twilio_callback(base_url, clinic_id, d, "delivered") for d in delivery_ids))
    return marker, delivery_ids, replay_path


def _floor_run(run):
    """Run the same load through the fixed stack alone (bench/stack_floor_apps.py): its web app and appliers.

    Return its applied rate, the wrk result and how many deliveries it moved.
    """
    settings = run.settings
    seconds = run.http_seconds
    marker, delivery_ids, replay_path = _prepare_load(run, settings.baseline_url, "callbacks-floor.replay")
    connection = redis.Redis.from_url(settings.redis_url)
    stack_floor_apps.prepare_stream(connection)
    env = environment.app_environment(settings)
    started = [
        run.processes.start(f"floor-applier-{index}", [sys.executable, "-m", "bench.stack_floor_apps", "apply", f"floor-{index}"], env)
        for index in range(settings.rq_workers)
    ]
    started.append(
        environment.start_web(
            run.processes, settings, app_path="bench.stack_floor_apps:callbacks_app", name="floor-web", port=settings.baseline_port
        )
    )
    try:
        stack_floor_apps.wait_for_appliers(connection, settings.rq_workers, started)
        began = time.monotonic()
        result = load.run_wrk(
            settings.baseline_url, seconds, CONNECTIONS, script="replay.lua", script_args=(str(replay_path), "2")
        )
        deadline = time.monotonic() + 120
        while stack_floor_apps.pending(connection) and time.monotonic() < deadline:
            if any(process.poll() is not None for process in started):
                raise RuntimeError("A floor applier stopped; see floor-applier-*.log in the run folder.")
            time.sleep(0.01)
        elapsed = time.monotonic() - began
        with run.app.app_context():
            applied = db.session.execute(
                text("SELECT count(*) FROM deliveries WHERE id = ANY(:ids) AND status = 'delivered'"), {"ids": delivery_ids}
            ).scalar()
            db.session.rollback()
    finally:
        for process in started:
            run.processes.stop(process)
        connection.delete(stack_floor_apps.STREAM)
        replay_path.unlink(missing_ok=True)
        with run.app.app_context():
            discard_rows_after(marker)
    return {"rate": result.requests / elapsed if elapsed else 0.0, "result": result, "applied": applied}
