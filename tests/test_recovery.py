"""Repairs that keep every delivery moving: killed workers, lost jobs and missing receipts.

A real ``flask worker`` process sends through ``SilentProvider``, a loopback server that reads
the create request and never answers. The test kills the worker with SIGKILL while it waits,
then runs the reconciler against the sandbox. In one case the silent server drops the request,
so the provider never had the text; in the other it first passes the request on to the sandbox,
so the provider has the text although Pawpost never saw the response.
"""

import http.client
import signal
import socket
import socketserver
import threading
from urllib.parse import urlsplit

import pytest
import redis

from conftest import run_worker, start_worker_process, wait_for
from helpers import count, delivery, send_via_api, wait_for_callbacks, wait_final
from notifier import queues, reconcile
from portal.extensions import db
from portal.models import Delivery
from provider_stubs import provider_creates, run_send_job, sms_delivery
from sandbox.config import normalize_config

DELIVERED_NUMBER = "+15551230001"
NO_RECEIPT_NUMBER = "+15551230070"
PROVIDERS = ["twilio", "bandwidth"]
# Headers the silent server must not pass on, because http.client sets them for the new connection.
HOP_HEADERS = {"host", "connection", "content-length", "keep-alive"}


class SilentProvider:
    """A loopback server that reads each HTTP request and never answers it.

    With ``forward_to`` it first sends the request on to that base URL and reads the response,
    so the provider there has the message while the client still waits.
    """

    def __init__(self, forward_to=None):
        self.forward_to = urlsplit(forward_to) if forward_to else None
        self.received = threading.Event()
        self.release = threading.Event()
        self.forwarded_statuses = []
        self.server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), self._handler_class())
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def _handler_class(self):
        silent = self

        class Handler(socketserver.StreamRequestHandler):
            def handle(self):
                method, path, headers, body = read_request(self.rfile)
                if silent.forward_to is not None:
                    silent.forwarded_statuses.append(silent.forward(method, path, headers, body))
                silent.received.set()
                # Hold the connection open without a response until the test ends.
                silent.release.wait(30)

        return Handler

    def forward(self, method, path, headers, body):
        connection = http.client.HTTPConnection(self.forward_to.hostname, self.forward_to.port, timeout=5)
        try:
            kept = {name: value for name, value in headers.items() if name.lower() not in HOP_HEADERS}
            connection.request(method, path, body=body, headers=kept)
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
    """Read one HTTP/1.1 request from ``stream``; return (method, path, headers, body)."""
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


@pytest.fixture
def silent_provider():
    """Return a function that starts a ``SilentProvider``; every one started is stopped afterwards."""
    started = []

    def start(forward_to=None):
        server = SilentProvider(forward_to)
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


def kill_worker_mid_send(live, monkeypatch, provider_url, message_id):
    """Start a worker process that sends through ``provider_url``, and SIGKILL it during the send."""
    monkeypatch.setitem(live.app.config, "PAWPOST_SANDBOX_URL", provider_url)
    worker = start_worker_process(live.app)
    monkeypatch.setitem(live.app.config, "PAWPOST_SANDBOX_URL", live.sandbox_url)
    try:

        def delivery_is_sending():
            return sms_delivery(message_id).status == "sending"

        wait_for(delivery_is_sending)
    finally:
        worker.send_signal(signal.SIGKILL)
        worker.wait(10)
    return worker.returncode


def recover_now(live, monkeypatch):
    """Run the interrupted-send repair at once, in its own app context as the reconciler does."""
    monkeypatch.setitem(live.app.config, "PAWPOST_STUCK_SENDING_SECONDS", 0)
    with live.app.app_context():
        return reconcile.recover_interrupted_sends()


@pytest.mark.parametrize("provider", PROVIDERS)
def test_killed_before_provider_resends(client, live, factory, monkeypatch, silent_provider, provider):
    clinic = factory.clinic(provider)
    message_id = send_via_api(client, factory.api_token(clinic), DELIVERED_NUMBER)
    silent = silent_provider()

    returncode = kill_worker_mid_send(live, monkeypatch, silent.url, message_id)
    recovered = recover_now(live, monkeypatch)
    requeued = sms_delivery(message_id)
    run_worker(live.app)
    final = wait_final(message_id, "sms")

    assert returncode == -signal.SIGKILL
    assert silent.received.is_set()
    assert recovered == 1
    assert requeued.status == "queued"
    assert final.status == "delivered"
    assert len(provider_creates(live)) == 1


@pytest.mark.parametrize("provider", PROVIDERS)
def test_killed_after_provider_no_resend(client, live, factory, monkeypatch, silent_provider, provider):
    # Slow callbacks keep the provider's own status from reaching Pawpost before the repair runs.
    live.carrier.set_config(normalize_config({**live.carrier.config, "callback_delay": 5}))
    clinic = factory.clinic(provider)
    message_id = send_via_api(client, factory.api_token(clinic), DELIVERED_NUMBER)
    forwarder = silent_provider(forward_to=live.sandbox_url)

    kill_worker_mid_send(live, monkeypatch, forwarder.url, message_id)
    wait_for(forwarder.received.is_set)
    recovered = recover_now(live, monkeypatch)
    run_worker(live.app)
    row = sms_delivery(message_id)
    provider_ids = [d.id for d in live.carrier.all_deliveries()]

    assert forwarder.forwarded_statuses == [201 if provider == "twilio" else 202]
    assert recovered == 1
    assert len(provider_creates(live)) == 1
    assert row.status == "accepted"
    assert row.attempts == 1
    assert provider_ids == [row.provider_message_id]


@pytest.mark.parametrize("provider", PROVIDERS)
def test_lost_job_requeued(client, live, factory, provider):
    clinic = factory.clinic(provider)
    message_id = send_via_api(client, factory.api_token(clinic), DELIVERED_NUMBER)

    with_live_job = reconcile.requeue_stalled(older_than_seconds=0)
    redis.Redis.from_url(live.app.config["REDIS_URL"]).flushdb()
    requeued = reconcile.requeue_stalled(older_than_seconds=0)
    run_worker(live.app)

    assert with_live_job == 0
    assert requeued == 1
    assert wait_final(message_id, "sms").status == "delivered"
    assert len(provider_creates(live)) == 1


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


def closed_port():
    """Return a loopback port that nothing listens on."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def drop_callbacks(live, monkeypatch, clinic):
    """Make the sandbox's status callbacks for ``clinic`` go nowhere, as if every one was lost."""
    if clinic.provider == "twilio":
        # Twilio posts to the StatusCallback URL of each message, built from the base URL.
        monkeypatch.setitem(live.app.config, "PAWPOST_BASE_URL", f"http://127.0.0.1:{closed_port()}")
        return
    config = dict(live.carrier.config)
    applications = dict(config["bandwidth_applications"])
    applications[clinic.bandwidth_application_id] = {}
    config["bandwidth_applications"] = applications
    live.carrier.set_config(normalize_config(config))


@pytest.mark.parametrize("provider", PROVIDERS)
def test_missing_receipt_looked_up(client, live, factory, monkeypatch, provider):
    monkeypatch.setitem(live.app.config, "PAWPOST_RECEIPT_TIMEOUT_SECONDS", 0)
    clinic = factory.clinic(provider)
    message_id = send_via_api(client, factory.api_token(clinic), DELIVERED_NUMBER)
    drop_callbacks(live, monkeypatch, clinic)
    run_send_job(live.app, message_id)

    def provider_delivered():
        return all(d.status == "delivered" for d in live.carrier.all_deliveries())

    wait_for(provider_delivered)
    waiting = sms_delivery(message_id).status
    resolved = reconcile.resolve_missing_receipts()

    assert waiting == "accepted"
    assert resolved == 1
    assert sms_delivery(message_id).status == "delivered"
    assert deliveries_in_flight() == 0
