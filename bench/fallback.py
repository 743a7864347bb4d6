"""Carrier-filter fallback: a failure callback in, the portal copy committed and the pointer SMS at the provider.

Each probe posts a signed Twilio ``undelivered`` callback with code 30007 for a sent text of a
clinic with fallback on. The webhook commits the portal copy before it responds, and a worker
then sends the pointer SMS from the ``fallback`` queue. The latency runs from just before the
callback is posted to the pointer's arrival at the provider stand-in.

Measured twice: on idle workers, and while the batch API feeds the workers 225 texts a second.
"""

import statistics
import threading
import time

import requests
from sqlalchemy import text

from bench import environment
from bench.context import discard_rows_after, row_marker, wait_until
from bench.results import Figure
from bench.texts import sent_texts, twilio_callback, warm_up
from portal.extensions import db

PROBES = 40
PROBE_INTERVAL_SECONDS = 0.25
BURST_RATE = 225
# The burst arrives as batch API calls of this many texts, BURST_RATE / BURST_CALL_SIZE times a second.
BURST_CALL_SIZE = 45


def percentile(values, share):
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, int(round(share * (len(ordered) - 1))))]


def probe(run, delivery_ids):
    """Post one failure callback per delivery, spaced out; return ``{sms delivery id: (posted, responded)}``."""
    settings = run.settings
    clinic_id = run.fixtures.twilio_clinic_id
    times = {}
    with requests.Session() as session:
        for delivery_id in delivery_ids:
            method, path, headers, body = twilio_callback(settings.web_url, clinic_id, delivery_id, "undelivered", 30007)
            posted = time.time()
            response = session.post(settings.web_url + path, data=body, headers=headers, timeout=30)
            if response.status_code != 200:
                raise RuntimeError(f"Failure callback for delivery {delivery_id} returned {response.status_code}.")
            times[delivery_id] = (posted, time.time())
            time.sleep(PROBE_INTERVAL_SECONDS)
    return times


def pointer_latencies(run, times, cursor):
    """Return callback-to-pointer latencies in ms and callback response times in ms, for the probed deliveries."""
    settings = run.settings
    with run.app.app_context():
        rows = db.session.execute(
            text(
                "SELECT sms.id, pointer.id FROM deliveries sms JOIN deliveries pointer "
                "ON pointer.message_id = sms.message_id AND pointer.channel = 'pointer' WHERE sms.id = ANY(:ids)"
            ),
            {"ids": list(times)},
        ).all()
    pointer_of = {pointer: sms for sms, pointer in rows}

    def arrived():
        calls, _next = environment.provider_calls(settings, cursor)
        refs = {int(call[3].split(".")[0]) for call in calls if call[4] and call[3]}
        return set(pointer_of) <= refs

    wait_until(arrived, timeout=60, interval=0.25)
    calls, _next = environment.provider_calls(settings, cursor)
    latencies = []
    for call in calls:
        if not call[4] or not call[3]:
            continue
        sms_id = pointer_of.get(int(call[3].split(".")[0]))
        if sms_id is not None:
            latencies.append((call[0] - times[sms_id][0]) * 1000)
    responses = [(responded - posted) * 1000 for posted, responded in times.values()]
    return latencies, responses, len(pointer_of)


class BurstFeeder(threading.Thread):
    """Post batch API calls that add ``BURST_RATE`` texts a second until stopped or ``seconds`` pass."""

    def __init__(self, settings, seconds):
        super().__init__(daemon=True)
        self.settings = settings
        self.seconds = seconds
        self.stop_event = threading.Event()
        self.sent = 0
        self.failures = 0

    def run(self):
        interval = BURST_CALL_SIZE / BURST_RATE
        headers = {"Authorization": f"Bearer {environment.API_TOKEN}"}
        started = time.monotonic()
        with requests.Session() as session:
            call = 0
            while not self.stop_event.is_set() and time.monotonic() - started < self.seconds:
                entries = [
                    {"to": f"+1555620{(call * BURST_CALL_SIZE + i) % 1000:04d}", "body": f"Burst text {call}-{i}."}
                    for i in range(BURST_CALL_SIZE)
                ]
                response = session.post(f"{self.settings.web_url}/api/v1/messages/batch", json={"messages": entries}, headers=headers, timeout=30)
                if response.status_code == 201:
                    self.sent += BURST_CALL_SIZE
                else:
                    self.failures += 1
                call += 1
                # Keep the schedule: the next call is due at started + call * interval.
                delay = started + call * interval - time.monotonic()
                if delay > 0:
                    self.stop_event.wait(delay)


def measure(run, burst):
    settings = run.settings
    with run.app.app_context():
        delivery_ids = sent_texts(run.fixtures.twilio_clinic_id, PROBES, number_prefix="+1555630")
    _calls, cursor = environment.provider_calls(settings)
    feeder = None
    if burst:
        feeder = BurstFeeder(settings, seconds=PROBES * PROBE_INTERVAL_SECONDS + 30)
        feeder.start()
        # Let the backlog build before the first probe.
        time.sleep(3)
    try:
        times = probe(run, delivery_ids)
        latencies, responses, pointers = pointer_latencies(run, times, cursor)
    finally:
        if feeder is not None:
            feeder.stop_event.set()
            feeder.join(60)
    elapsed = PROBES * PROBE_INTERVAL_SECONDS + 3
    return {
        "latencies": latencies,
        "responses": responses,
        "pointers": pointers,
        "burst_texts_per_second": round(feeder.sent / elapsed, 1) if feeder else 0,
        "burst_failures": feeder.failures if feeder else 0,
    }


def run_benchmark(run, web):
    settings = run.settings
    environment.flush_redis(settings)
    environment.reset_provider(settings)
    environment.set_provider_latency(settings, 0)
    with run.app.app_context():
        marker = row_marker()
    workers = environment.start_workers(run.processes, settings)
    figures = []
    try:
        warm_up(run)
        for label, burst, goal in (("idle", False, 50), (f"{BURST_RATE} texts/s burst", True, 1000)):
            result = measure(run, burst)
            latencies = result["latencies"]
            detail = (
                f"{len(latencies)} of {PROBES} pointers; p50 {percentile(latencies, 0.5):.0f} ms, "
                f"max {max(latencies, default=float('nan')):.0f} ms; callback response p95 "
                f"{percentile(result['responses'], 0.95):.0f} ms"
            )
            if burst:
                detail += f"; burst fed {result['burst_texts_per_second']} texts/s"
            figures.append(
                Figure(
                    name=f"fallback, callback to pointer at provider, {label}, p95",
                    value=percentile(latencies, 0.95),
                    unit="ms",
                    goal=("<=", goal),
                    detail=detail,
                    extra={**result, "latencies": sorted(round(x, 1) for x in latencies)},
                )
            )
            environment.flush_redis(settings)
    finally:
        for process in workers:
            run.processes.stop(process)
        environment.flush_redis(settings)
        with run.app.app_context():
            discard_rows_after(marker)
    return figures
