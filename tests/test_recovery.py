"""Repairs that keep every delivery moving: killed workers, lost jobs and missing receipts.

A real ``flask worker`` process sends through ``SilentProvider``, a loopback server that reads
the create request and never responds. The test kills the worker with SIGKILL while it waits,
then runs the reconciler against the sandbox. In one case the silent server drops the request,
so the provider never had the text. In the other it first passes the request on to the sandbox,
so the provider has the text although Pawpost never saw the response.

A send that times out leaves the same ``sending`` row as a killed worker, so the cases for each
provider and for pointer texts and retries use a short send timeout in the test process instead.
"""

import http.client
import signal
import socketserver
import threading
import time
from urllib.parse import urlsplit

import pytest
import redis
from rq.exceptions import NoSuchJobError
from rq.job import Job, JobStatus

from conftest import run_worker, start_worker_process, wait_for
from helpers import count, delivery, send_via_api, wait_for_callbacks, wait_final
from notifier import queues, reconcile
from portal.models import Delivery

# settle_sandbox is an autouse fixture, so importing it applies it to every test here.
from provider_stubs import (  # noqa: F401
    CannedResponseServer,
    post_failure,
    provider_creates,
    queued_jobs,
    run_send_job,
    settle_sandbox,
    sms_delivery,
)
from sandbox.config import normalize_config

DELIVERED_NUMBER = "+15551230001"
NO_RECEIPT_NUMBER = "+15551230070"
FILTERED_NUMBER = "+15551230010"
PROVIDERS = ["twilio", "bandwidth"]
# Headers the silent server must not pass on, because http.client sets them for the new connection.
HOP_HEADERS = {"host", "connection", "content-length", "keep-alive"}


class SilentProvider:
    """A loopback server that reads each HTTP request and never responds to it.

    With ``forward_to`` it first sends the request on to that base URL and reads the response,
    so the provider there has the message while the client still waits.
    """

    def __init__(self, forward_to=None):
        self.forward_to = urlsplit(forward_to) if forward_to else None
        self.received = threading.Event()
        self.release = threading.Event()
        self.request_count = 0
        self.forwarded_statuses = []
        self.server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), self._handler_class())
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        ).start()

    def _handler_class(self):
        silent = self

        class Handler(socketserver.StreamRequestHandler):
            def handle(self):
                method, path, headers, body = read_request(self.rfile)
                silent.request_count += 1
                if silent.forward_to is not None:
                    silent.forwarded_statuses.append(silent.forward(method, path, headers, body))
                silent.received.set()
                # Hold the connection open without a response until the test ends.
                silent.release.wait(30)

        return Handler

    def forward(self, method, path, headers, body):
        connection = http.client.HTTPConnection(self.forward_to.hostname, self.forward_to.port, timeout=5)
        try:
            forwarded = {name: value for name, value in headers.items() if name.lower() not in HOP_HEADERS}
            connection.request(method, path, body=body, headers=forwarded)
            response = connection.getresponse()
            response.read()
            return response.status
        finally:
            connection.close()

    def stop(self):
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


def read_request(stream):
    """Read one HTTP/1.1 request from ``stream`` and return (method, path, headers, body)."""
    method, path, _version = stream.readline().decode("latin-1").split(" ", 2)
    headers = {}
    while True:
        line = stream.readline().decode("latin-1").rstrip("\r\n")
        if not line:
            break
        name, _, value = line.partition(":")
        headers[name.strip()] = value.strip()
    length = int(next((v for k, v in headers.items() if k.lower() == "content-length"), "0"))
    return method, path, headers, stream.read(length)


def next_send_job_exists(row):
    """Return whether RQ has a send job for the delivery's next attempt."""
    try:
        Job.fetch(queues.send_job_id(row.id, row.attempts + 1), connection=queues.connection())
    except NoSuchJobError:
        return False
    return True


@pytest.fixture
def silent_provider():
    """Return a function that starts a ``SilentProvider``, and stop every one started after the test."""
    started = []

    def start(forward_to=None):
        server = SilentProvider(forward_to)
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


def kill_worker_mid_send(live, monkeypatch, silent, message_id, channel="sms"):
    """Start a worker process that sends through ``silent``, and SIGKILL it while it waits for the response."""
    monkeypatch.setitem(live.app.config, "PAWPOST_SANDBOX_URL", silent.url)
    worker = start_worker_process(live.app)
    monkeypatch.setitem(live.app.config, "PAWPOST_SANDBOX_URL", live.sandbox_url)

    def delivery_is_sending():
        return delivery(message_id, channel).status == "sending"

    try:
        # A new process imports both SDKs and the app first, which takes seconds on a busy machine.
        wait_for(delivery_is_sending, timeout=30)
        wait_for(silent.received.is_set)
    finally:
        worker.send_signal(signal.SIGKILL)
        worker.wait(10)
    return worker.returncode


def recover_now(live, monkeypatch):
    """Run the interrupted-send repair at once, in its own app context as the reconciler does."""
    monkeypatch.setitem(live.app.config, "PAWPOST_STUCK_SENDING_SECONDS", 0)
    with live.app.app_context():
        return reconcile.recover_interrupted_sends()


def slow_callbacks(live):
    """Delay the sandbox's callbacks, so the provider's own status cannot reach Pawpost before the repair."""
    live.carrier.set_config(normalize_config({**live.carrier.config, "callback_delay": 5}))


def time_out_send(live, monkeypatch, silent, message_id, channel="sms"):
    """Run one send job through ``silent`` with a short timeout, and return the job's outcome."""
    monkeypatch.setitem(live.app.config, "PAWPOST_SANDBOX_URL", silent.url)
    monkeypatch.setitem(live.app.config, "PAWPOST_SEND_TIMEOUT_SECONDS", 0.2)
    outcome = run_send_job(live.app, message_id, channel)
    monkeypatch.setitem(live.app.config, "PAWPOST_SANDBOX_URL", live.sandbox_url)
    return outcome


def test_killed_before_provider_resends(client, live, factory, monkeypatch, silent_provider):
    clinic = factory.clinic("bandwidth")
    message_id = send_via_api(client, factory.api_token(clinic), DELIVERED_NUMBER)
    silent = silent_provider()

    returncode = kill_worker_mid_send(live, monkeypatch, silent, message_id)
    recovered = recover_now(live, monkeypatch)
    requeued_status = sms_delivery(message_id).status
    run_worker(live.app)
    final = wait_final(message_id, "sms")

    assert returncode == -signal.SIGKILL
    assert recovered == 1
    assert requeued_status == "queued"
    assert final.status == "delivered"
    assert len(provider_creates(live)) == 1


def test_killed_after_provider_no_resend(client, live, factory, monkeypatch, silent_provider):
    slow_callbacks(live)
    clinic = factory.clinic("twilio")
    message_id = send_via_api(client, factory.api_token(clinic), DELIVERED_NUMBER)
    forwarder = silent_provider(forward_to=live.sandbox_url)

    returncode = kill_worker_mid_send(live, monkeypatch, forwarder, message_id)
    recovered = recover_now(live, monkeypatch)
    row = sms_delivery(message_id)
    provider_ids = [d.id for d in live.carrier.all_deliveries()]

    assert returncode == -signal.SIGKILL
    assert forwarder.forwarded_statuses == [201]
    assert recovered == 1
    assert len(provider_creates(live)) == 1
    assert row.status == "accepted"
    assert row.attempts == 1
    assert provider_ids == [row.provider_message_id]
    assert queued_jobs() == 0


@pytest.mark.parametrize("provider", PROVIDERS)
def test_timeout_before_provider_requeued(client, live, factory, monkeypatch, silent_provider, provider):
    clinic = factory.clinic(provider)
    message_id = send_via_api(client, factory.api_token(clinic), DELIVERED_NUMBER)
    silent = silent_provider()

    outcome = time_out_send(live, monkeypatch, silent, message_id)
    waiting = sms_delivery(message_id).status
    recovered = recover_now(live, monkeypatch)
    row = sms_delivery(message_id)

    assert outcome == "unconfirmed"
    assert waiting == "sending"
    # The SDK must not repeat a POST that timed out, or the provider could get the text twice.
    assert silent.request_count == 1
    assert recovered == 1
    assert row.status == "queued"
    assert next_send_job_exists(row)
    assert provider_creates(live) == []


@pytest.mark.parametrize("provider", PROVIDERS)
def test_timeout_after_provider_no_resend(client, live, factory, monkeypatch, silent_provider, provider):
    slow_callbacks(live)
    clinic = factory.clinic(provider)
    message_id = send_via_api(client, factory.api_token(clinic), DELIVERED_NUMBER)
    forwarder = silent_provider(forward_to=live.sandbox_url)

    time_out_send(live, monkeypatch, forwarder, message_id)
    wait_for(forwarder.received.is_set)
    recovered = recover_now(live, monkeypatch)
    row = sms_delivery(message_id)
    provider_ids = [d.id for d in live.carrier.all_deliveries()]

    assert recovered == 1
    assert len(provider_creates(live)) == 1
    assert row.status == "accepted"
    assert provider_ids == [row.provider_message_id]
    assert not next_send_job_exists(row)


@pytest.mark.parametrize("provider", PROVIDERS)
def test_timeout_pointer_no_resend(client, live, factory, monkeypatch, silent_provider, provider):
    clinic = factory.clinic(provider, fallback=True)
    message_id = send_via_api(client, factory.api_token(clinic), FILTERED_NUMBER)
    run_send_job(live.app, message_id)
    wait_final(message_id, "sms")
    slow_callbacks(live)
    forwarder = silent_provider(forward_to=live.sandbox_url)

    time_out_send(live, monkeypatch, forwarder, message_id, channel="pointer")
    wait_for(forwarder.received.is_set)
    recovered = recover_now(live, monkeypatch)
    pointer = delivery(message_id, "pointer")
    provider_ids = [d.id for d in live.carrier.all_deliveries()]

    # The original text to the same number went out moments before: it must not pass for the pointer.
    assert recovered == 1
    assert len(provider_creates(live)) == 2
    assert pointer.status == "accepted"
    assert provider_ids[1] == pointer.provider_message_id
    assert not next_send_job_exists(pointer)


@pytest.mark.parametrize("provider", PROVIDERS)
def test_timeout_retry_not_taken_for_first(client, live, factory, monkeypatch, silent_provider, provider):
    clinic = factory.clinic(provider)
    message_id = send_via_api(client, factory.api_token(clinic), NO_RECEIPT_NUMBER)
    run_send_job(live.app, message_id)
    wait_for_callbacks(live)
    post_failure(client, live.app, sms_delivery(message_id), "30017" if provider == "twilio" else "4780")
    silent = silent_provider()

    # The retry times out before the provider has it; the first attempt's text is still listed.
    time_out_send(live, monkeypatch, silent, message_id)
    recovered = recover_now(live, monkeypatch)
    row = sms_delivery(message_id)

    assert recovered == 1
    assert row.attempts == 2
    assert row.status == "queued"
    assert row.provider_message_id is None
    assert next_send_job_exists(row)


@pytest.mark.parametrize("provider", PROVIDERS)
def test_lost_job_requeued(client, live, factory, provider):
    clinic = factory.clinic(provider)
    message_id = send_via_api(client, factory.api_token(clinic), DELIVERED_NUMBER)
    row = sms_delivery(message_id)

    with_live_job = reconcile.requeue_stalled(older_than_seconds=0)
    redis.Redis.from_url(live.app.config["REDIS_URL"]).flushdb()
    requeued = reconcile.requeue_stalled(older_than_seconds=0)
    job = Job.fetch(queues.send_job_id(row.id, 1), connection=queues.connection())

    assert with_live_job == 0
    assert requeued == 1
    assert job.get_status() == JobStatus.QUEUED
    assert job.func_name == "notifier.jobs.send_text"
    assert job.args == (row.id,)
    assert queued_jobs() == 1


def deliveries_in_flight():
    return count(Delivery, Delivery.status.in_(("sending", "accepted", "sent")))


@pytest.mark.parametrize("provider", PROVIDERS)
def test_missing_receipt_unknown(client, live, factory, monkeypatch, provider):
    monkeypatch.setitem(live.app.config, "PAWPOST_RECEIPT_TIMEOUT_SECONDS", 0)
    clinic = factory.clinic(provider)
    message_id = send_via_api(client, factory.api_token(clinic), NO_RECEIPT_NUMBER)
    run_send_job(live.app, message_id)
    wait_for_callbacks(live)
    waiting = sms_delivery(message_id).status

    resolved = reconcile.resolve_missing_receipts()
    row = sms_delivery(message_id)

    assert waiting == ("sent" if provider == "twilio" else "accepted")
    assert resolved == 1
    assert row.status == "unknown"
    assert deliveries_in_flight() == 0


@pytest.fixture
def callback_sink():
    """Return the URL of a loopback server that returns 200 to every callback and passes none on."""
    sink = CannedResponseServer(200, {})
    yield sink.url
    sink.stop()


def drop_callbacks(live, monkeypatch, clinic, sink_url):
    """Make the sandbox's status callbacks for ``clinic`` miss Pawpost, as if every one was lost."""
    if clinic.provider == "twilio":
        # Twilio posts to the StatusCallback URL of each message, built from the base URL.
        monkeypatch.setitem(live.app.config, "PAWPOST_BASE_URL", sink_url)
        return
    config = dict(live.carrier.config)
    applications = dict(config["bandwidth_applications"])
    applications[clinic.bandwidth_application_id] = {"callback_url": sink_url}
    config["bandwidth_applications"] = applications
    live.carrier.set_config(normalize_config(config))


@pytest.mark.parametrize("provider", PROVIDERS)
def test_missing_receipt_looked_up(client, live, factory, monkeypatch, callback_sink, provider):
    monkeypatch.setitem(live.app.config, "PAWPOST_RECEIPT_TIMEOUT_SECONDS", 0)
    clinic = factory.clinic(provider)
    message_id = send_via_api(client, factory.api_token(clinic), DELIVERED_NUMBER)
    drop_callbacks(live, monkeypatch, clinic, callback_sink)
    run_send_job(live.app, message_id)

    def provider_delivered():
        # The sandbox keeps Twilio's status words in lower case and Bandwidth's in upper case.
        return all(d.status.lower() == "delivered" for d in live.carrier.all_deliveries())

    wait_for(provider_delivered)
    waiting = sms_delivery(message_id).status
    resolved = reconcile.resolve_missing_receipts()

    assert waiting == "accepted"
    assert resolved == 1
    assert sms_delivery(message_id).status == "delivered"
    assert deliveries_in_flight() == 0


def test_one_reconciler_pass_per_interval(app):
    turns = [reconcile.take_turn(30) for _ in range(3)]

    assert turns == [True, False, False]


def test_next_reconciler_pass_after_the_turn_expires(app):
    reconcile.take_turn(2)
    time.sleep(1.2)

    assert reconcile.take_turn(2) is True
