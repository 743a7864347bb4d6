"""Status events queued in Redis by the web process and applied in batches by the workers' appliers."""

import json
import socket
import time

import pytest
import redis
import requests
from prometheus_client import REGISTRY
from sqlalchemy.exc import DBAPIError, OperationalError

from conftest import start_worker_process, wait_for
from helpers import count, delivery, outbound_sms, provider_events
from notifier import queues, status_queue
from notifier.status import StatusEvent
from portal import create_app
from portal.extensions import db
from portal.models import Delivery
from test_webhook_ingest import statements_on_this_thread
from test_webhooks import CLIENT_NUMBER, TWILIO_SMS_SID, post_twilio, ref_of, twilio_params, twilio_path, twilio_signature


@pytest.fixture(autouse=True)
def queue_on(app, monkeypatch):
    monkeypatch.setitem(app.config, "PAWPOST_QUEUE_STATUS_EVENTS", True)


@pytest.fixture
def clinic(factory):
    return factory.clinic("twilio", fallback=False)


@pytest.fixture
def sms(factory, clinic):
    return outbound_sms(clinic, factory.client(clinic, CLIENT_NUMBER), provider_message_id=TWILIO_SMS_SID)


def event(sms, status, error_code=None, message_sid=TWILIO_SMS_SID):
    """Return a Twilio status event for ``sms`` as the webhook builds it."""
    return StatusEvent(
        provider="twilio",
        provider_status=status,
        provider_message_id=message_sid,
        error_code=error_code,
        delivery_id=sms.id,
        attempt=sms.attempts,
        payload={"MessageStatus": [status]},
    )


def closed_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def stream_entries(name):
    return queues.connection().xrange(name)


def test_callback_returns_before_applied(client, app, sms):
    response = post_twilio(client, app, sms.message.clinic_id, ref_of(sms), twilio_params("delivered"))

    assert response.status_code == 200
    assert status_queue.waiting() == 1
    assert delivery(sms.message_id, "sms").status == "accepted"
    assert provider_events() == []


def test_queued_callback_applied_with_its_arrival_time(client, app, sms):
    before = time.time()
    post_twilio(client, app, sms.message.clinic_id, ref_of(sms), twilio_params("delivered"))
    after = time.time()
    time.sleep(0.05)

    status_queue.drain()
    stored = provider_events()

    assert delivery(sms.message_id, "sms").status == "delivered"
    assert [event.outcome for event in stored] == ["applied"]
    assert before <= stored[0].received_at.timestamp() <= after
    assert status_queue.waiting() == 0


def test_forged_callback_not_queued(client, app, sms):
    response = post_twilio(client, app, sms.message.clinic_id, ref_of(sms), twilio_params("delivered"), token="not-the-token")

    assert response.status_code == 403
    assert status_queue.waiting() == 0


def test_redis_unreachable_applies_in_the_request(client, app, sms, monkeypatch):
    monkeypatch.setitem(app.extensions, "pawpost_redis", redis.Redis(port=closed_port(), socket_timeout=1))

    response = post_twilio(client, app, sms.message.clinic_id, ref_of(sms), twilio_params("delivered"))

    assert response.status_code == 200
    assert delivery(sms.message_id, "sms").status == "delivered"
    assert [event.outcome for event in provider_events()] == ["applied"]


# Events of one batch, in arrival order, and the status they leave.
BATCHES = [
    (["sent", "delivered"], "delivered", ["applied", "applied"]),
    (["delivered", "sent"], "delivered", ["applied", "duplicate"]),
    (["undelivered", "delivered"], "undelivered", ["applied", "duplicate"]),
    (["delivered", "undelivered"], "delivered", ["applied", "duplicate"]),
    (["delivered", "delivered"], "delivered", ["applied", "duplicate"]),
]


@pytest.mark.parametrize(("statuses", "final_status", "outcomes"), BATCHES)
def test_batch_applies_events_in_arrival_order(sms, statuses, final_status, outcomes):
    events = [event(sms, status, "30003" if status == "undelivered" else None) for status in statuses]
    assert status_queue.push(sms.message.clinic_id, events)

    applied = status_queue.read_and_apply("tests")

    assert applied == len(statuses)
    assert delivery(sms.message_id, "sms").status == final_status
    assert [stored.outcome for stored in provider_events()] == outcomes


def test_batch_moves_many_deliveries(factory, clinic):
    texts = [outbound_sms(clinic, factory.client(clinic, f"+1555123{index:04d}")) for index in range(40)]
    assert status_queue.push(clinic.id, [event(text, "delivered", message_sid=f"SM{text.id:032d}") for text in texts])

    status_queue.drain()

    assert count(Delivery, Delivery.channel == "sms", Delivery.status == "delivered") == 40
    assert len(provider_events()) == 40


def test_batch_of_many_is_one_statement_on_postgresql(factory, clinic):
    if db.engine.dialect.name != "postgresql":
        pytest.skip("The one-statement move is PostgreSQL's")
    texts = [outbound_sms(clinic, factory.client(clinic, f"+1555123{index:04d}")) for index in range(40)]
    assert status_queue.push(clinic.id, [event(text, "delivered", message_sid=f"SM{text.id:032d}") for text in texts])

    with statements_on_this_thread() as statements:
        status_queue.read_and_apply("tests")

    assert len(statements) == 1


def test_abandoned_events_claimed_by_another_applier(client, app, sms, monkeypatch):
    post_twilio(client, app, sms.message.clinic_id, ref_of(sms), twilio_params("delivered"))
    status_queue.ensure_group()
    # An applier that read the event and died before applying it.
    queues.connection().xreadgroup(status_queue.GROUP, "stopped", {status_queue.STREAM: ">"})
    monkeypatch.setattr(status_queue, "CLAIM_IDLE_MS", 0)

    claimed = status_queue.claim_abandoned("alive")

    assert claimed == 1
    assert delivery(sms.message_id, "sms").status == "delivered"
    assert status_queue.waiting() == 0


def test_recent_events_of_another_applier_left_alone(client, app, sms):
    post_twilio(client, app, sms.message.clinic_id, ref_of(sms), twilio_params("delivered"))
    status_queue.ensure_group()
    queues.connection().xreadgroup(status_queue.GROUP, "busy", {status_queue.STREAM: ">"})

    claimed = status_queue.claim_abandoned("alive")

    assert claimed == 0
    assert delivery(sms.message_id, "sms").status == "accepted"


def test_unreadable_entry_set_aside(sms):
    connection = queues.connection()
    connection.xadd(status_queue.STREAM, {"event": "not json"})
    assert status_queue.push(sms.message.clinic_id, [event(sms, "delivered")])

    status_queue.drain()
    set_aside = stream_entries(status_queue.FAILED_STREAM)

    assert delivery(sms.message_id, "sms").status == "delivered"
    assert len(set_aside) == 1
    assert set_aside[0][1][b"reason"] == b"it is not a status event"
    assert status_queue.waiting() == 0


def test_failing_event_set_aside(sms):
    if db.engine.dialect.name != "postgresql":
        pytest.skip("SQLite here does not enforce the clinic's foreign key")
    # No clinic has this id, so storing the event breaks its foreign key.
    assert status_queue.push(987654, [event(sms, "sent")])
    assert status_queue.push(sms.message.clinic_id, [event(sms, "delivered")])

    status_queue.drain()
    set_aside = stream_entries(status_queue.FAILED_STREAM)

    assert delivery(sms.message_id, "sms").status == "delivered"
    assert len(set_aside) == 1
    assert json.loads(set_aside[0][1][b"event"])["clinic_id"] == 987654
    assert status_queue.waiting() == 0


def test_events_wait_while_the_database_is_unreachable(app, sms, tmp_path):
    assert status_queue.push(sms.message.clinic_id, [event(sms, "delivered")])
    unreachable = (
        f"postgresql://postgres@127.0.0.1:{closed_port()}/pawpost"
        if db.engine.dialect.name == "postgresql"
        else f"sqlite:///{tmp_path}/missing/pawpost.db"
    )
    other = create_app({**_settings(app), "SQLALCHEMY_DATABASE_URI": unreachable})

    with other.app_context(), pytest.raises(OperationalError):
        status_queue.read_and_apply("cut-off")
    pending = queues.connection().xpending(status_queue.STREAM, status_queue.GROUP)

    assert pending["pending"] == 1
    assert stream_entries(status_queue.FAILED_STREAM) == []
    assert delivery(sms.message_id, "sms").status == "accepted"


def _settings(app):
    keys = ("PAWPOST_ENV", "SECRET_KEY", "REDIS_URL", "PAWPOST_BASE_URL", "PAWPOST_SANDBOX_URL", "PAWPOST_MEDIA_DIR")
    return {key: app.config[key] for key in keys}


def test_group_made_again_after_redis_emptied(sms):
    status_queue.ensure_group()
    queues.connection().flushdb()

    first = status_queue.read_and_apply("tests")
    assert status_queue.push(sms.message.clinic_id, [event(sms, "delivered")])
    second = status_queue.read_and_apply("tests")

    assert first == 0
    assert second == 1
    assert delivery(sms.message_id, "sms").status == "delivered"


def test_stopped_consumers_forgotten(monkeypatch):
    status_queue.ensure_group()
    connection = queues.connection()
    connection.xreadgroup(status_queue.GROUP, "stopped-worker", {status_queue.STREAM: ">"})
    monkeypatch.setattr(status_queue, "FORGET_CONSUMER_MS", -1)

    status_queue.forget_stopped_consumers()

    assert connection.xinfo_consumers(status_queue.STREAM, status_queue.GROUP) == []


def test_worker_process_applies_queued_callbacks(app, live, sms):
    # Not in burst mode, so the worker's applier runs.
    worker = start_worker_process(app, ("--reconcile-every", "0", "--queues", "default"))
    path = twilio_path(sms.message.clinic_id, ref_of(sms))
    params = twilio_params("delivered")
    headers = {"X-Twilio-Signature": twilio_signature(app.config["PAWPOST_BASE_URL"] + path, params)}

    def delivered():
        return delivery(sms.message_id, "sms").status == "delivered"

    try:
        response = requests.post(live.url + path, data=params, headers=headers, timeout=30)
        # A new process imports the app first, which takes seconds on a busy machine.
        wait_for(delivered, timeout=30)
    finally:
        worker.terminate()
        worker.wait(20)

    assert response.status_code == 200
    assert [stored.outcome for stored in provider_events()] == ["applied"]


# Failures the applier must distinguish: one bad event, or a database that fails them all.


@pytest.fixture
def failing_pass(sms):
    """Queue two events that cannot be stored and let one pass fail on them; return the error."""
    if db.engine.dialect.name != "postgresql":
        pytest.skip("SQLite here does not enforce the clinic's foreign key")
    # No clinic has this id, so every event fails, as when the database refuses all writes.
    assert status_queue.push(987654, [event(sms, "sent"), event(sms, "delivered")])
    with pytest.raises(status_queue.ApplyingFailed) as raised:
        status_queue.read_and_apply("tests")
    return raised.value


def test_events_stay_queued_when_all_fail(failing_pass):
    pending = queues.connection().xpending(status_queue.STREAM, status_queue.GROUP)

    assert "All 2 status events failed" in str(failing_pass)
    assert pending["pending"] == 2
    assert stream_entries(status_queue.FAILED_STREAM) == []


def test_failing_events_set_aside_once_others_apply(sms, failing_pass):
    assert status_queue.push(sms.message.clinic_id, [event(sms, "delivered")])

    applied = status_queue.read_and_apply("tests", pending=True)

    assert applied == 3
    assert len(stream_entries(status_queue.FAILED_STREAM)) == 2
    assert delivery(sms.message_id, "sms").status == "delivered"
    assert status_queue.waiting() == 0


def test_read_only_database_sets_nothing_aside(app, sms):
    if db.engine.dialect.name != "postgresql":
        pytest.skip("Read-only transactions are PostgreSQL's")
    assert status_queue.push(sms.message.clinic_id, [event(sms, "sent"), event(sms, "delivered")])
    read_only = app.config["SQLALCHEMY_DATABASE_URI"] + "?options=-c%20default_transaction_read_only%3Don"
    other = create_app({**_settings(app), "SQLALCHEMY_DATABASE_URI": read_only})

    # The database is at fault, so the events are not tried one by one.
    with other.app_context(), pytest.raises(DBAPIError) as raised:
        status_queue.read_and_apply("read-only")

    assert raised.value.orig.sqlstate == status_queue.READ_ONLY_SQLSTATE

    assert stream_entries(status_queue.FAILED_STREAM) == []
    assert delivery(sms.message_id, "sms").status == "accepted"
    # Writable again: the same applier applies the events it had read.
    assert status_queue.read_and_apply("read-only", pending=True) == 2
    assert delivery(sms.message_id, "sms").status == "delivered"


def final_delivered_count():
    return REGISTRY.get_sample_value(
        "pawpost_deliveries_final_total", {"channel": "sms", "status": "delivered", "category": ""}
    ) or 0


def test_retried_batch_counts_once(factory, clinic):
    if db.engine.dialect.name != "postgresql":
        pytest.skip("SQLite here does not enforce the clinic's foreign key")
    texts = [outbound_sms(clinic, factory.client(clinic, f"+1555123{index:04d}")) for index in range(20)]
    events = [event(text, "delivered", message_sid=f"SM{text.id:032d}") for text in texts]
    assert status_queue.push(clinic.id, events)
    assert status_queue.push(987654, [event(texts[0], "sent", message_sid="SM" + "7" * 32)])
    before = final_delivered_count()

    status_queue.drain()

    assert final_delivered_count() - before == 20
    assert count(Delivery, Delivery.channel == "sms", Delivery.status == "delivered") == 20


def test_event_matched_by_message_id_keeps_its_order(factory):
    clinic = factory.clinic("bandwidth")
    message_id = "1741101377000filtered"
    text = outbound_sms(clinic, factory.client(clinic, CLIENT_NUMBER), provider_message_id=message_id)
    failed = StatusEvent("bandwidth", "message-failed", message_id, "4470", None, None, {"type": "message-failed"})
    delivered = StatusEvent("bandwidth", "message-delivered", message_id, None, text.id, text.attempts, {"type": "message-delivered"})
    assert status_queue.push(clinic.id, [failed, delivered])

    status_queue.read_and_apply("tests")

    assert delivery(text.message_id, "sms").status == "undelivered"
    assert delivery(text.message_id, "pointer") is not None


def test_set_aside_events_queued_again(app, sms):
    connection = queues.connection()
    connection.xadd(status_queue.STREAM, {"event": "not json"})
    assert status_queue.push(sms.message.clinic_id, [event(sms, "delivered")])
    status_queue.drain()
    # The unreadable entry stays unreadable; a real event set aside would apply now.
    connection.xadd(status_queue.FAILED_STREAM, {"event": status_queue._encode(sms.message.clinic_id, event(sms, "sent"), "2026-01-01T00:00:00+00:00"), "reason": "applying it failed"})

    result = app.test_cli_runner().invoke(args=["status-events", "requeue-set-aside"])
    status_queue.drain()
    set_aside = stream_entries(status_queue.FAILED_STREAM)

    assert result.exit_code == 0
    assert "Queued 2 set-aside status events again" in result.output
    assert len(set_aside) == 1
    assert set_aside[0][1][b"reason"] == b"it is not a status event"
    assert [stored.outcome for stored in provider_events()] == ["applied", "duplicate"]
