"""The retry schedule: backoff, attempt limits, the validity period, and one send per attempt.

Failures come from a stub that returns an error to the create call (``CannedResponseServer``)
or from failure callbacks posted by hand for texts sent to a ...70 number, for which the sandbox
posts no final status. The test app's retry base delay is zero, so a retry is queued as soon as
it is scheduled.
"""

from dataclasses import dataclass

import pytest
from rq.exceptions import NoSuchJobError
from rq.job import Job

from conftest import run_worker, start_worker_process
from helpers import bearer, provider_events, send_via_api, wait_for_callbacks
from notifier import queues
from notifier.policy import backoff_seconds

# settle_sandbox is an autouse fixture, so importing it applies it to every test here.
from provider_stubs import (  # noqa: F401
    CannedResponseServer,
    bandwidth_error_body,
    post_bandwidth_event,
    post_failure,
    post_twilio_status,
    provider_creates,
    run_send_job,
    settle_sandbox,
    sms_delivery,
    twilio_error_body,
)

NO_RECEIPT_NUMBER = "+15551230070"
DELIVERED_NUMBER = "+15551230001"
EXHAUSTED_4 = (
    "A transient issue stopped the text, and all 4 attempts failed. "
    "Retries are exhausted; if you see a pattern, escalate to support."
)
EXHAUSTED_2 = (
    "A transient issue stopped the text, and all 2 attempts failed. "
    "Retries are exhausted; if you see a pattern, escalate to support."
)
EXPIRES_FIRST = (
    "A transient issue stopped the text, and it can't be retried before it expires. "
    "If you see a pattern, escalate to support."
)


def retrying(attempt, limit):
    return f"A transient issue; retrying automatically (attempt {attempt} of {limit}). If you see a pattern, escalate to support."


@dataclass(frozen=True)
class Stub:
    http_status: int
    body: dict


CREATE_TEMPORARY = {
    "twilio": Stub(429, twilio_error_body(20429, 429)),
    "bandwidth": Stub(429, bandwidth_error_body(429)),
}
CALLBACK_TEMPORARY = {"twilio": "30017", "bandwidth": "4780"}
CALLBACK_ONCE = {"twilio": "30003", "bandwidth": "4702"}
PROVIDERS = ["twilio", "bandwidth"]


@pytest.fixture
def error_provider(app, monkeypatch):
    """Return a function that starts a ``CannedResponseServer`` and points the provider SDKs at it."""
    started = []

    def start(stub):
        server = CannedResponseServer(stub.http_status, stub.body)
        started.append(server)
        monkeypatch.setitem(app.config, "PAWPOST_SANDBOX_URL", server.url)
        return server

    yield start
    for server in started:
        server.stop()


def staff_text(client, token, message_id):
    body = client.get(f"/api/v1/messages/{message_id}", headers=bearer(token)).get_json()
    return next(d for d in body["deliveries"] if d["channel"] == "sms")["staff_message"]


def has_send_job(row, attempt):
    """Return whether RQ has a send job for ``attempt`` of the delivery, in any state."""
    try:
        Job.fetch(queues.send_job_id(row.id, attempt), connection=queues.connection())
    except NoSuchJobError:
        return False
    return True


def sent_to_no_receipt_number(client, live, factory, provider):
    """Send one text that the provider accepts and never confirms, and return (token, message id)."""
    clinic = factory.clinic(provider, fallback=False)
    token = factory.api_token(clinic)
    message_id = send_via_api(client, token, NO_RECEIPT_NUMBER)
    run_send_job(live.app, message_id)
    wait_for_callbacks(live)
    return token, message_id


def fail_each_attempt(client, live, token, message_id, code, rounds):
    """Post a failure for each attempt and send each retry, and return staff's text after each failure."""
    texts = []
    for _ in range(rounds):
        assert post_failure(client, live.app, sms_delivery(message_id), code).status_code == 200
        texts.append(staff_text(client, token, message_id))
        if sms_delivery(message_id).status != "queued":
            break
        run_send_job(live.app, message_id)
        wait_for_callbacks(live)
    return texts


@pytest.mark.parametrize(
    ("attempts", "ceiling"),
    [(1, 30), (2, 60), (3, 120), (4, 240), (5, 480), (6, 900), (7, 900)],
)
def test_backoff_jitter_range(app, monkeypatch, attempts, ceiling):
    monkeypatch.setitem(app.config, "PAWPOST_RETRY_BASE_SECONDS", 30)
    monkeypatch.setitem(app.config, "PAWPOST_RETRY_MAX_SECONDS", 900)

    samples = [backoff_seconds(attempts) for _ in range(400)]

    assert min(samples) >= ceiling / 2
    assert max(samples) <= ceiling
    # Uniform jitter over the whole range: 400 draws all missing the top or bottom 10 % is
    # a chance of 0.9**400, about 5e-19.
    assert max(samples) > 0.9 * ceiling
    assert min(samples) < 0.6 * ceiling


@pytest.mark.parametrize("provider", PROVIDERS)
def test_create_errors_exhaust_retries(client, live, factory, error_provider, provider):
    clinic = factory.clinic(provider, fallback=False)
    token = factory.api_token(clinic)
    stub = error_provider(CREATE_TEMPORARY[provider])

    message_id = send_via_api(client, token, DELIVERED_NUMBER)
    run_worker(live.app)
    row = sms_delivery(message_id)

    assert len(stub.paths) == 4
    assert row.status == "failed"
    assert row.category == "temporary"
    assert row.attempts == 4
    assert row.next_attempt_at is None
    assert staff_text(client, token, message_id) == EXHAUSTED_4


@pytest.mark.parametrize("provider", PROVIDERS)
def test_callback_failures_exhaust_retries(client, live, factory, provider):
    token, message_id = sent_to_no_receipt_number(client, live, factory, provider)

    texts = fail_each_attempt(client, live, token, message_id, CALLBACK_TEMPORARY[provider], rounds=5)
    row = sms_delivery(message_id)

    assert texts == [retrying(2, 4), retrying(3, 4), retrying(4, 4), EXHAUSTED_4]
    assert row.status == "undelivered"
    assert row.attempts == 4
    assert len(provider_creates(live)) == 4
    assert not has_send_job(row, 5)


@pytest.mark.parametrize("provider", PROVIDERS)
def test_once_code_retries_once(client, live, factory, provider):
    token, message_id = sent_to_no_receipt_number(client, live, factory, provider)

    texts = fail_each_attempt(client, live, token, message_id, CALLBACK_ONCE[provider], rounds=3)
    row = sms_delivery(message_id)

    assert texts == [retrying(2, 2), EXHAUSTED_2]
    assert row.status == "undelivered"
    assert row.attempts == 2
    assert len(provider_creates(live)) == 2
    assert not has_send_job(row, 3)


@pytest.mark.parametrize("provider", PROVIDERS)
def test_no_retry_past_validity(client, live, factory, monkeypatch, provider):
    # The first retry would wait 30 to 60 s, past the 20 s the text stays valid.
    monkeypatch.setitem(live.app.config, "PAWPOST_RETRY_BASE_SECONDS", 60)
    monkeypatch.setitem(live.app.config, "PAWPOST_SMS_VALIDITY_SECONDS", 20)
    token, message_id = sent_to_no_receipt_number(client, live, factory, provider)

    post_failure(client, live.app, sms_delivery(message_id), CALLBACK_TEMPORARY[provider])
    row = sms_delivery(message_id)

    assert row.status == "undelivered"
    assert row.next_attempt_at is None
    assert not has_send_job(row, 2)
    assert staff_text(client, token, message_id) == EXPIRES_FIRST


@pytest.mark.parametrize("provider", PROVIDERS)
def test_expired_text_not_sent(client, live, factory, monkeypatch, provider):
    monkeypatch.setitem(live.app.config, "PAWPOST_SMS_VALIDITY_SECONDS", 0)
    clinic = factory.clinic(provider)
    message_id = send_via_api(client, factory.api_token(clinic), DELIVERED_NUMBER)

    outcome = run_send_job(live.app, message_id)
    row = sms_delivery(message_id)

    assert outcome == "expired"
    assert row.status == "failed"
    assert row.error_code == "expired"
    assert row.category == "temporary"
    assert provider_creates(live) == []


PERMANENT = [
    ("twilio", "30007"),
    ("twilio", "30006"),
    ("twilio", "21610"),
    ("twilio", "30005"),
    ("twilio", "30004"),
    ("twilio", "30034"),
    ("bandwidth", "4770"),
    ("bandwidth", "4720"),
    ("bandwidth", "4775"),
    ("bandwidth", "4721"),
    ("bandwidth", "4772"),
    ("bandwidth", "4481"),
    ("bandwidth", "9902"),
]


@pytest.mark.parametrize(("provider", "code"), PERMANENT)
def test_permanent_failure_not_retried(client, live, factory, provider, code):
    _, message_id = sent_to_no_receipt_number(client, live, factory, provider)

    post_failure(client, live.app, sms_delivery(message_id), code)
    row = sms_delivery(message_id)

    assert row.status == "undelivered"
    assert row.attempts == 1
    assert row.next_attempt_at is None
    assert not has_send_job(row, 2)


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        # 30035: the 10DLC number is still being configured, so the retry rule is "later".
        (
            "30035",
            "The clinic's sending setup has a problem (registration, verification, account). Retrying automatically (attempt 2 of 4).",
        ),
        (
            "39996",
            "The provider reported error 39996, which Pawpost does not recognise yet. Retrying once automatically (attempt 2 of 2).",
        ),
    ],
)
def test_retry_text_matches_rule(client, live, factory, monkeypatch, code, expected):
    monkeypatch.setitem(live.app.config, "PAWPOST_RETRY_BASE_SECONDS", 60)
    token, message_id = sent_to_no_receipt_number(client, live, factory, "twilio")

    post_failure(client, live.app, sms_delivery(message_id), code)

    assert sms_delivery(message_id).status == "queued"
    assert staff_text(client, token, message_id) == expected


def post_late_event(client, app, row):
    """Post an in-progress event for attempt 1: Twilio's ``sent``, Bandwidth's MMS ``message-sending``."""
    if row.provider == "twilio":
        return post_twilio_status(client, app, row, "sent", attempt=1)
    return post_bandwidth_event(client, row, "message-sending", attempt=1)


@pytest.mark.parametrize("provider", PROVIDERS)
def test_late_callback_keeps_retry(client, live, factory, monkeypatch, provider):
    monkeypatch.setitem(live.app.config, "PAWPOST_RETRY_BASE_SECONDS", 60)
    _, message_id = sent_to_no_receipt_number(client, live, factory, provider)
    post_failure(client, live.app, sms_delivery(message_id), CALLBACK_TEMPORARY[provider])

    response = post_late_event(client, live.app, sms_delivery(message_id))
    row = sms_delivery(message_id)

    assert response.status_code == 200
    assert row.status == "queued"
    assert row.attempts == 1
    assert provider_events()[-1].outcome == "stale"


def test_duplicate_job_one_create(client, live, factory):
    clinic = factory.clinic("twilio")
    message_id = send_via_api(client, factory.api_token(clinic), DELIVERED_NUMBER)
    row = sms_delivery(message_id)
    # A second job for the same delivery, as when the reconciler and the API both queue it.
    queues.queue("sms").enqueue(
        "notifier.jobs.send_text", row.id, job_id=f"duplicate-{row.id}", result_ttl=600
    )

    workers = [start_worker_process(live.app) for _ in range(2)]
    exit_codes = [worker.wait(30) for worker in workers]
    results = sorted(
        Job.fetch(job_id, connection=queues.connection()).return_value()
        for job_id in (queues.send_job_id(row.id, 1), f"duplicate-{row.id}")
    )

    assert exit_codes == [0, 0]
    assert results == ["accepted", "skipped"]
    assert len(provider_creates(live)) == 1
    assert sms_delivery(message_id).attempts == 1
