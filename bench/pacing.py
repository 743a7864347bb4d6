"""Per-sender pacing: the busiest second at the provider, and the rate held while a backlog waits.

Workers run with ``PAWPOST_SENDER_RATES`` set for the two fixture senders. First one sender has
a backlog alone; then both have one at once, which shows how a slow sender occupies workers.
Every create call's arrival at the provider stand-in is recorded, and any one-second window
(starting at any call, not only on whole seconds) is checked against the sender's rate.
"""

import time

from bench import environment
from bench.context import discard_rows_after, row_marker, wait_until
from bench.results import Figure
from bench.texts import warm_up
from notifier import batch
from portal.extensions import db
from portal.models import Clinic

FAST_RATE = 20
SLOW_RATE = 5
# Each scenario's backlog lasts about this long, or a third of --duration if that is longer.
MIN_SECONDS = 10


def busiest_second(times):
    """Return the most calls whose arrival times fall in one half-open one-second window."""
    ordered = sorted(times)
    best, end = 0, 0
    for start_index, start in enumerate(ordered):
        while end < len(ordered) and ordered[end] < start + 1.0:
            end += 1
        best = max(best, end - start_index)
    return best


def held_rate(times):
    """Return calls per second from the first to the last call, counting the intervals between them."""
    ordered = sorted(times)
    if len(ordered) < 2:
        return 0.0
    return (len(ordered) - 1) / (ordered[-1] - ordered[0])


def queue_texts(run, clinic_id, count, prefix):
    with run.app.app_context():
        clinic = db.session.get(Clinic, clinic_id)
        items = [batch.BatchItem(f"{prefix}{i % 1000:04d}", f"Paced text {i}.") for i in range(count)]
        stored = batch.store_batch(clinic, items, "api")
        db.session.commit()
        batch.enqueue_batch_sends([text.sms_delivery_id for text in stored])


def senders(run):
    with run.app.app_context():
        twilio = db.session.get(Clinic, run.fixtures.twilio_clinic_id).sender_number
        bandwidth = db.session.get(Clinic, run.fixtures.bandwidth_clinic_id).sender_number
    return twilio, bandwidth


def scenario(run, backlogs):
    """Queue ``{clinic_id: count}`` texts, let the workers send them; return the arrival times per sender."""
    settings = run.settings
    environment.reset_provider(settings)
    expected = sum(backlogs.values())
    for clinic_id, count in backlogs.items():
        queue_texts(run, clinic_id, count, f"+155564{clinic_id % 10}")
    # Each sender's backlog takes count / rate seconds when paced exactly; the slow one bounds the wait.
    seconds_needed = sum(backlogs.values()) / SLOW_RATE

    def all_sent():
        calls, _next = environment.provider_calls(settings)
        return len(calls) >= expected

    wait_until(all_sent, timeout=seconds_needed * 3 + 30, interval=0.5)
    calls, _next = environment.provider_calls(settings)
    by_sender = {}
    for arrival, _provider, sender, _ref, _pointer in calls:
        by_sender.setdefault(sender, []).append(arrival)
    return by_sender


def run_benchmark(run, web=None):
    settings = run.settings
    fast_sender, slow_sender = senders(run)
    environment.flush_redis(settings)
    environment.set_provider_latency(settings, 0)
    with run.app.app_context():
        marker = row_marker()
    workers = environment.start_workers(
        run.processes, settings, extra_env={"PAWPOST_SENDER_RATES": f"{fast_sender}={FAST_RATE},{slow_sender}={SLOW_RATE}"}
    )
    seconds = max(MIN_SECONDS, run.duration / 3)
    try:
        warm_up(run, per_clinic=10)
        alone = scenario(run, {run.fixtures.twilio_clinic_id: int(FAST_RATE * seconds)})
        mixed = scenario(
            run, {run.fixtures.twilio_clinic_id: int(FAST_RATE * seconds), run.fixtures.bandwidth_clinic_id: int(SLOW_RATE * seconds)}
        )
    finally:
        for process in workers:
            run.processes.stop(process)
        environment.flush_redis(settings)
        with run.app.app_context():
            discard_rows_after(marker)

    alone_times = alone.get(fast_sender, [])
    mixed_fast, mixed_slow = mixed.get(fast_sender, []), mixed.get(slow_sender, [])
    return [
        Figure(
            name=f"pacing, busiest 1-second window of a {FAST_RATE}/s sender",
            value=max(busiest_second(alone_times), busiest_second(mixed_fast)),
            unit="texts",
            goal=("<=", FAST_RATE),
            detail=f"{len(alone_times)} texts alone, {len(mixed_fast)} beside a {SLOW_RATE}/s sender; "
            f"{SLOW_RATE}/s sender's busiest second: {busiest_second(mixed_slow)}",
            extra={"busiest_alone": busiest_second(alone_times), "busiest_mixed": busiest_second(mixed_fast)},
        ),
        Figure(
            name="pacing, share of the rate held with a backlog, sender alone",
            value=100 * held_rate(alone_times) / FAST_RATE,
            unit="%",
            goal=(">=", 95),
            detail=f"{held_rate(alone_times):.2f} texts/s of {FAST_RATE}",
        ),
        Figure(
            name=f"pacing, share held beside a {SLOW_RATE}/s sender's backlog",
            value=100 * held_rate(mixed_fast) / FAST_RATE,
            unit="%",
            goal=(">=", 95),
            detail=f"{held_rate(mixed_fast):.2f} texts/s of {FAST_RATE}; the {SLOW_RATE}/s sender held "
            f"{held_rate(mixed_slow):.2f}/s",
        ),
    ]
