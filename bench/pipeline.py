"""Send pipeline: queued texts to provider calls per second, sustained, against RQ draining no-op jobs.

A backlog of one job per text is queued first, through the batch module's bulk insert, so
the measurement is the workers' rate alone. Each job claims its delivery, calls the provider
through the official SDK and records the result, exactly as in production. Texts alternate
between a Twilio and a Bandwidth clinic. The rate counts the create calls that reached the
provider stand-in in a window of ``duration`` seconds that starts after a warm-up.

The baseline runs the same number of plain ``rq worker --worker-class rq.worker.SimpleWorker``
processes over a backlog of jobs that do nothing, so it is RQ's own ceiling on this machine.
"""

import sys
import time

import redis
from rq import Queue

from bench import environment, profiling
from bench.context import cpu_seconds, discard_rows_after, machine_cpu_seconds, row_marker, wait_until
from bench.results import Figure
from notifier import batch
from portal.extensions import db
from portal.models import Clinic

WARMUP_SECONDS = 5
CHUNK = 1000
# Distinct client numbers the backlog is spread over.
CLIENT_NUMBERS = 1000
BASELINE_QUEUE = "bench-noop"


def fill_backlog(run, count):
    """Store ``count`` texts and queue one send job each; return the seconds it took."""
    started = time.monotonic()
    with run.app.app_context():
        clinics = [db.session.get(Clinic, run.fixtures.twilio_clinic_id), db.session.get(Clinic, run.fixtures.bandwidth_clinic_id)]
        for start in range(0, count, CHUNK):
            size = min(CHUNK, count - start)
            clinic = clinics[(start // CHUNK) % 2]
            items = [
                batch.BatchItem(f"+1555600{(start + i) % CLIENT_NUMBERS:04d}", f"Bench text {start + i}: Bella is due for her vaccines.")
                for i in range(size)
            ]
            stored = batch.store_batch(clinic, items, "api")
            db.session.commit()
            batch.enqueue_batch_sends([text.sms_delivery_id for text in stored])
    return time.monotonic() - started


def measure_provider_rate(run, duration, pids, expected):
    """Wait for the first provider call, then count calls for ``duration`` seconds after the warm-up.

    Returns ``(rate, details)``. The window ends early when ``expected`` calls have arrived.
    """
    settings = run.settings
    calls, cursor = [], 0

    def first_call():
        nonlocal calls, cursor
        new, cursor = environment.provider_calls(settings, cursor)
        calls.extend(new)
        return bool(calls)

    if not wait_until(first_call, timeout=60, interval=0.2):
        raise RuntimeError("No provider call arrived within 60 s; see the worker logs in the run folder.")
    window_start = calls[0][0] + WARMUP_SECONDS
    window_end = window_start + duration
    while time.time() < window_start:
        time.sleep(0.05)
    cpu_before = {pid: cpu_seconds(pid) for pid in pids}
    machine_before = machine_cpu_seconds()
    profile = None
    if run.profile:
        profile_path = run.run_dir / f"profile-worker-{run.settings.provider_port}-{int(time.time())}.txt"
        profile = profiling.start(run.processes, pids[0], min(duration, 20), profile_path)
    while time.time() < window_end and len(calls) < expected:
        time.sleep(0.5)
        new, cursor = environment.provider_calls(settings, cursor)
        calls.extend(new)
    measured_end = min(time.time(), window_end)
    cpu_after = {pid: cpu_seconds(pid) for pid in pids}
    machine_busy = machine_cpu_seconds() - machine_before
    in_window = [call for call in calls if window_start <= call[0] < measured_end]
    seconds = measured_end - window_start
    rate = len(in_window) / seconds if seconds > 0 else 0.0
    worker_cpu = sum(cpu_after[pid] - cpu_before[pid] for pid in pids)
    details = {
        "calls_in_window": len(in_window),
        "window_seconds": round(seconds, 1),
        "worker_cpu_ms_per_text": round(1000 * worker_cpu / max(len(in_window), 1), 2),
        "machine_cpu_ms_per_text": round(1000 * machine_busy / max(len(in_window), 1), 2),
    }
    if profile is not None:
        profile.wait(timeout=60)
        details["profile"] = profiling.summarize(profile_path)
        details["profile_file"] = profile_path.name
    return rate, details


def run_pawpost(run, latency_ms, duration, goal, workers):
    """Measure Pawpost's send rate with ``workers`` worker processes; return ``(rate, details)``."""
    settings = run.settings
    environment.flush_redis(settings)
    environment.reset_provider(settings)
    environment.set_provider_latency(settings, latency_ms)
    with run.app.app_context():
        marker = row_marker()
    expected = int(goal * (duration + WARMUP_SECONDS) * 1.3)
    fill_seconds = fill_backlog(run, expected)
    started = environment.start_workers(run.processes, settings, count=workers)
    try:
        rate, details = measure_provider_rate(run, duration, [p.pid for p in started], expected)
        details["backlog"] = expected
        details["backlog_fill_seconds"] = round(fill_seconds, 1)
        details["worker_peak_rss_mib"] = max(environment.memory_kib(p.pid)[1] for p in started) / 1024
    finally:
        for process in started:
            run.processes.stop(process)
        environment.flush_redis(settings)
        with run.app.app_context():
            discard_rows_after(marker)
    return rate, details


def run_baseline(run, duration, workers, expected_rate=3000):
    """Measure how fast ``workers`` plain RQ SimpleWorkers drain jobs that do nothing; return ``(rate, details)``."""
    settings = run.settings
    environment.flush_redis(settings)
    connection = redis.Redis.from_url(settings.redis_url)
    queue = Queue(BASELINE_QUEUE, connection=connection)
    total = int(expected_rate * (duration + WARMUP_SECONDS))
    for start in range(0, total, CHUNK):
        jobs = [
            Queue.prepare_data("bench.noop.noop", (n,), result_ttl=600, failure_ttl=7 * 24 * 3600)
            for n in range(start, min(start + CHUNK, total))
        ]
        with connection.pipeline() as pipeline:
            queue.enqueue_many(jobs, pipeline=pipeline)
            pipeline.execute()
    command = [
        sys.executable, "-m", "rq.cli", "worker", "--burst", "--worker-class", "rq.worker.SimpleWorker",
        "--url", settings.redis_url, BASELINE_QUEUE,
    ]
    started = [run.processes.start(f"baseline-worker-{i}", command, environment.app_environment(settings)) for i in range(workers)]
    try:
        wait_until(lambda: queue.count < total, timeout=60)
        time.sleep(WARMUP_SECONDS)
        begin_count, begin = queue.count, time.monotonic()
        cpu_before = {p.pid: cpu_seconds(p.pid) for p in started}
        while time.monotonic() - begin < duration and queue.count > 0:
            time.sleep(0.25)
        seconds = time.monotonic() - begin
        done = begin_count - queue.count
        worker_cpu = sum(cpu_seconds(p.pid) - cpu_before[p.pid] for p in started)
        details = {
            "jobs_in_window": done,
            "window_seconds": round(seconds, 1),
            "worker_cpu_ms_per_job": round(1000 * worker_cpu / max(done, 1), 2),
            "ran_out": queue.count == 0,
        }
    finally:
        for process in started:
            run.processes.stop(process)
        environment.flush_redis(settings)
    return done / seconds, details


def run_benchmark(run, latency_ms, goal, workers, baseline):
    """Return the Figure of the send pipeline with a ``latency_ms`` provider."""
    rate, details = run_pawpost(run, latency_ms, run.duration, goal, workers)
    return Figure(
        name=f"send pipeline, {latency_ms} ms provider, {workers} workers",
        value=rate,
        unit="texts/s",
        goal=(">=", goal),
        baseline=baseline[0] if baseline else None,
        baseline_name="no-op jobs/s" if baseline else "",
        ratio_goal=1.0 if baseline else None,
        detail=f"{details['calls_in_window']} provider calls in {details['window_seconds']} s",
        extra={**details, "baseline": baseline[1] if baseline else None},
    )
