"""POST /api/v1/messages/batch: many texts stored in one transaction and queued by one fan-out job."""

from datetime import timezone

import pytest

from conftest import run_worker
from helpers import BODY, bearer, count
from notifier import queues
from portal.extensions import db
from portal.models import Client, Delivery, Message, utcnow


@pytest.fixture
def clinic(factory):
    return factory.clinic("bandwidth", fallback=False)


@pytest.fixture
def token(factory, clinic):
    return factory.api_token(clinic)


def post_batch(client, token, entries, **headers):
    return client.post("/api/v1/messages/batch", json={"messages": entries}, headers={**bearer(token), **headers})


def test_batch_stores_and_sends(client, live, token, clinic):
    entries = [{"to": f"+1555123{index:04d}", "body": f"{BODY} ({index})"} for index in range(3)]

    response = post_batch(client, token, entries)
    run_worker(live.app)

    assert response.status_code == 201
    body = response.get_json()
    assert body["count"] == 3
    assert [m["to"] for m in body["messages"]] == [e["to"] for e in entries]
    assert count(Message, Message.clinic_id == clinic.id) == 3
    assert count(Delivery, Delivery.channel == "portal", Delivery.status == "delivered") == 3
    assert count(Delivery, Delivery.channel == "sms", Delivery.attempts == 1, Delivery.status != "queued") == 3
    assert sorted(d.to for d in live.carrier.all_deliveries()) == [e["to"] for e in entries]


def test_batch_reuses_client(client, factory, token, clinic):
    existing = factory.client(clinic, "+15551230001")

    response = post_batch(client, token, [{"to": "(555) 123-0001", "body": BODY}, {"to": "+15551230001", "body": BODY}])

    assert response.status_code == 201
    assert [m["client_id"] for m in response.get_json()["messages"]] == [existing.id, existing.id]
    assert count(Client) == 1


def test_batch_email_client_gets_email(client, factory, token, clinic, monkeypatch, live):
    monkeypatch.setitem(live.app.config, "PAWPOST_SMTP_URL", "smtp://127.0.0.1:9")
    record = factory.client(clinic, "+15551230001")
    record.email, record.email_enabled, record.email_verified_at = "pat@example.com", True, utcnow()
    db.session.commit()

    response = post_batch(client, token, [{"to": "+15551230001", "body": BODY}, {"to": "+15551230002", "body": BODY}])

    assert response.status_code == 201
    [first, second] = response.get_json()["messages"]
    assert {d.channel for d in db.session.get(Message, first["id"]).deliveries} == {"sms", "portal", "email"}
    assert {d.channel for d in db.session.get(Message, second["id"]).deliveries} == {"sms", "portal"}


def test_batch_one_fanout_job(client, token):
    post_batch(client, token, [{"to": f"+1555123{index:04d}", "body": BODY} for index in range(5)])

    jobs = queues.queue("sms").get_jobs()

    assert [job.func_name for job in jobs] == ["notifier.batch.enqueue_batch_sends"]
    assert len(jobs[0].args[0]) == 5


@pytest.mark.parametrize(
    ("entries", "field"),
    [
        ([{"to": "+15551230001", "body": BODY}, {"to": "12", "body": BODY}], "messages[1].to"),
        ([{"to": "+15551230001", "body": "   "}], "messages[0].body"),
        ([{"to": "+15551230001", "body": "x" * 1601}], "messages[0].body"),
        ([{"to": "+15551230001"}], "messages[0].body"),
        ([{"to": "+15551230001", "body": BODY, "send_at": "2030-01-01T00:00:00Z"}], "messages[0].send_at"),
        (["+15551230001"], "messages[0]"),
        ([], "messages"),
        ([{"to": "+15551230001", "body": BODY}] * 1001, "messages"),
    ],
)
def test_batch_invalid_entry(client, token, entries, field):
    response = post_batch(client, token, entries)

    assert response.status_code == 400
    assert response.get_json()["error"]["field"] == field
    assert count(Message) == 0


def test_batch_not_an_object(client, token):
    response = client.post("/api/v1/messages/batch", json=[{"to": "+15551230001"}], headers=bearer(token))

    assert response.status_code == 400
    assert response.get_json()["error"]["code"] == "invalid_json"


def test_batch_idempotent_replay(client, token):
    entries = [{"to": "+15551230001", "body": BODY}]

    first = post_batch(client, token, entries, **{"Idempotency-Key": "batch-1"})
    second = post_batch(client, token, entries, **{"Idempotency-Key": "batch-1"})

    assert second.status_code == 201
    assert second.get_json() == first.get_json()
    assert second.headers["Idempotent-Replayed"] == "true"
    assert count(Message) == 1


def test_batch_quiet_hours(client, token, clinic):
    now = utcnow()
    minute = now.hour * 60 + now.minute
    # Quiet from an hour ago to an hour from now, so the batch is held whatever the time of day.
    clinic.quiet_start_minute, clinic.quiet_end_minute = (minute - 60) % 1440, (minute + 60) % 1440
    clinic.timezone = "UTC"
    db.session.commit()

    response = post_batch(client, token, [{"to": "+15551230001", "body": BODY}])

    send_at = response.get_json()["send_at"]
    assert send_at is not None
    message = db.session.execute(db.select(Message)).scalar_one()
    assert message.send_at.astimezone(timezone.utc).isoformat().replace("+00:00", "Z") == send_at
    assert queues.queue("sms").count == 0
