"""One API call with 1,000 texts: the time until every message is stored and the batch is queued.

The request goes to gunicorn over HTTP with a kept-alive connection, as a PIMS would send it.
The figure is the median of the calls after a warm-up call that also creates the clients. The
fan-out job that turns the batch into 1,000 send jobs runs later in a worker. Its time is
measured in-process and reported beside the figure.
"""

import statistics
import time

import requests
from sqlalchemy import text

from bench import environment
from bench.context import discard_rows_after, row_marker
from bench.results import Figure
from notifier import batch
from portal.extensions import db

BATCH_SIZE = 1000
CALLS = 15


def run_benchmark(run, web):
    settings = run.settings
    environment.flush_redis(settings)
    with run.app.app_context():
        marker = row_marker()
    headers = {"Authorization": f"Bearer {environment.API_TOKEN}"}
    entries = [{"to": f"+1555650{i:04d}", "body": f"Bella is due for her vaccines. Reminder {i}."} for i in range(BATCH_SIZE)]
    times = []
    try:
        with requests.Session() as session:
            for call in range(CALLS + 1):
                started = time.perf_counter()
                response = session.post(f"{settings.web_url}/api/v1/messages/batch", json={"messages": entries}, headers=headers, timeout=60)
                elapsed = (time.perf_counter() - started) * 1000
                if response.status_code != 201 or response.json()["count"] != BATCH_SIZE:
                    raise RuntimeError(f"The batch call returned {response.status_code}: {response.text[:300]}")
                if call:
                    times.append(elapsed)
        with run.app.app_context():
            delivery_ids = db.session.execute(
                text("SELECT id FROM deliveries WHERE id > :marker AND channel = 'sms' ORDER BY id LIMIT :count"),
                {"marker": marker[1], "count": BATCH_SIZE},
            ).scalars().all()
            environment.flush_redis(settings)
            started = time.perf_counter()
            batch.enqueue_batch_sends(delivery_ids)
            fanout_ms = (time.perf_counter() - started) * 1000
    finally:
        environment.flush_redis(settings)
        with run.app.app_context():
            discard_rows_after(marker)
    return [
        Figure(
            name=f"batch API call, {BATCH_SIZE} texts stored and queued",
            value=statistics.median(times),
            unit="ms",
            goal=("<=", 150),
            detail=(
                f"median of {len(times)}, p95 {sorted(times)[int(0.95 * (len(times) - 1))]:.0f} ms, max {max(times):.0f} ms; "
                f"the fan-out job queues the {BATCH_SIZE} send jobs in {fanout_ms:.0f} ms more"
            ),
            extra={"times_ms": [round(t, 1) for t in times], "fanout_ms": fanout_ms},
        )
    ]
