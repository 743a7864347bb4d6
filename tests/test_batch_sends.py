"""Texts of a batch sent by send jobs of many texts each, with the provider calls made side by side."""

from datetime import timedelta

import pytest

from conftest import run_worker
from helpers import BODY, bearer, count
from notifier import batch, jobs, policy, queues, reconcile
from portal.extensions import db
from portal.models import Delivery, Message, utcnow


@pytest.fixture
def clinic(factory):
    return factory.clinic("twilio", fallback=False)


@pytest.fixture
def token(factory, clinic):
    return factory.api_token(clinic)


def post_batch(client, token, numbers):
    response = client.post(
        "/api/v1/messages/batch",
        json={"messages": [{"to": number, "body": BODY} for number in numbers]},
        headers=bearer(token),
    )
    assert response.status_code == 201, response.get_json()
    return response.get_json()["messages"]


def delivered_numbers(how_many):
    """Return distinct numbers whose last two digits the sandbox delivers (00 to 09)."""
    return [f"+155512{index:03d}0{index % 10}" for index in range(how_many)]


def sms_delivery_ids(messages):
    return [
        db.session.execute(
            db.select(Delivery.id).where(Delivery.message_id == message["id"], Delivery.channel == "sms")
        ).scalar_one()
        for message in messages
    ]


def test_every_text_reaches_provider_once(client, live, token):
    numbers = delivered_numbers(120)

    post_batch(client, token, numbers)
    run_worker(live.app)

    assert sorted(d.to for d in live.carrier.all_deliveries()) == numbers
    assert count(Delivery, Delivery.channel == "sms", Delivery.attempts == 1) == 120
    assert count(Delivery, Delivery.channel == "sms", Delivery.provider_message_id.is_(None)) == 0


@pytest.mark.parametrize(
    ("concurrency", "job_sizes"),
    [
        (50, [50, 50, 20]),
        (32, [32, 32, 32, 24]),
        (64, [64, 56]),
        (1, [1] * 120),
    ],
)
def test_batch_job_size_follows_concurrency(app, client, token, monkeypatch, concurrency, job_sizes):
    ids = sms_delivery_ids(post_batch(client, token, delivered_numbers(120)))
    queues.queue("sms").empty()
    monkeypatch.setitem(app.config, "PAWPOST_SEND_CONCURRENCY", concurrency)

    batch.enqueue_batch_sends(ids)
    jobs_queued = queues.queue("sms").get_jobs()

    assert [len(job.args[0]) for job in jobs_queued] == job_sizes


def test_batch_send_jobs_run_send_texts(client, token):
    ids = sms_delivery_ids(post_batch(client, token, delivered_numbers(120)))
    queues.queue("sms").empty()

    batch.enqueue_batch_sends(ids)

    assert {job.func_name for job in queues.queue("sms").get_jobs()} == {"notifier.jobs.send_texts"}


# Each number's setup, the statuses its text may have after the send job, and its category.
# The provider's callbacks may already have moved an accepted text on.
CASES = [
    ("+15551240101", None, ("accepted", "sent", "delivered"), None),
    ("+15551240201", "opted_out", ("suppressed",), "opted_out"),
    ("+15551240301", "landline", ("suppressed",), "landline"),
    ("+15551240401", "untextable", ("suppressed",), "landline"),
    # The sandbox rejects the create call for numbers ending in 30 with Twilio's 21610.
    ("+15551240530", None, ("failed",), "opted_out"),
]


def set_up(clinic, factory, number, setup):
    if setup == "opted_out":
        policy.record_consent(clinic.sender_number, number, True, "keyword")
    elif setup == "landline":
        policy.record_line_type(number, "landline", "lookup")
    elif setup == "untextable":
        record = factory.client(clinic, number)
        record.textable = False
    db.session.commit()


@pytest.fixture
def sent_batch(client, factory, clinic, token):
    for number, setup, _status, _category in CASES:
        set_up(clinic, factory, number, setup)
    ids = sms_delivery_ids(post_batch(client, token, [number for number, *_rest in CASES]))
    queues.queue("sms").empty()
    outcomes = jobs.send_texts(ids)
    db.session.rollback()
    return dict(zip((number for number, *_rest in CASES), ids)), outcomes


@pytest.mark.parametrize(("number", "_setup", "statuses", "category"), CASES)
def test_batch_outcome_per_text(sent_batch, number, _setup, statuses, category):
    ids, _outcomes = sent_batch
    row = db.session.get(Delivery, ids[number])

    assert row.status in statuses
    assert row.category == category


def test_batch_outcome_counts(sent_batch):
    _ids, outcomes = sent_batch

    assert outcomes == {"skipped": 0, "accepted": 1, "suppressed": 3, "failed": 1}


def test_batch_calls_provider_only_for_sendable(sent_batch, live):
    assert sorted(d.to for d in live.carrier.all_deliveries()) == ["+15551240101"]


def test_batch_run_twice_sends_once(client, live, token):
    ids = sms_delivery_ids(post_batch(client, token, delivered_numbers(6)))
    queues.queue("sms").empty()

    first = jobs.send_texts(ids)
    second = jobs.send_texts(ids)

    assert first["accepted"] == 6
    assert second == {"skipped": 6}
    assert len(live.carrier.all_deliveries()) == 6


def age_deliveries(ids):
    db.session.execute(
        db.update(Delivery).where(Delivery.id.in_(ids)).values(updated_at=utcnow() - timedelta(minutes=10))
    )
    db.session.commit()


def test_reconciler_leaves_queued_batch_job(client, token):
    ids = sms_delivery_ids(post_batch(client, token, delivered_numbers(3)))
    queues.queue("sms").empty()
    batch.enqueue_batch_sends(ids)
    age_deliveries(ids)

    requeued = reconcile.requeue_stalled()

    assert requeued == 0
    assert len(queues.queue("sms").get_jobs()) == 1


def test_reconciler_requeues_lost_batch_job(client, token):
    ids = sms_delivery_ids(post_batch(client, token, delivered_numbers(3)))
    queues.queue("sms").empty()
    batch.enqueue_batch_sends(ids)
    queues.queue("sms").empty()
    age_deliveries(ids)

    requeued = reconcile.requeue_stalled()

    assert requeued == 3
    assert count(Message) == 3
