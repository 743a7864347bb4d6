"""Every failure category, for each provider, through the create call and through a status callback.

Create-time errors come from the sandbox where it has them (Twilio 21610 for a ...30 number) and
otherwise from ``CannedResponseServer``, a loopback stub that returns one error to the real SDK's
create call. Bandwidth's create call reports only an HTTP status, never a delivery error code, so
its create-time cases are the HTTP statuses in notifier/codes/bandwidth.toml: the other
categories reach a Bandwidth clinic only in ``message-failed`` callbacks.

Callback cases send to a ...70 number, for which the sandbox posts no final status, and then post
the failure by hand: Twilio's form signed with the clinic's auth token, Bandwidth's event array
with the clinic's basic auth.
"""

import logging
from dataclasses import dataclass

import pytest
from prometheus_client import REGISTRY
from rq.exceptions import NoSuchJobError
from rq.job import Job, JobStatus

from helpers import bearer, send_via_api, wait_for_callbacks
from notifier import queues
from portal.models import utcnow

# settle_sandbox is an autouse fixture, so importing it applies it to every test here.
from provider_stubs import (  # noqa: F401
    CannedResponseServer,
    bandwidth_error_body,
    post_failure,
    run_send_job,
    settle_sandbox,
    sms_delivery,
    twilio_error_body,
)

DELIVERED_NUMBER = "+15551230001"
OPTED_OUT_NUMBER = "+15551230030"
NO_RECEIPT_NUMBER = "+15551230070"

FALLBACK_SENT = "Text Not Delivered — Message sent as Chat Notification to Client Instead."
FINAL_TEXT = {
    "carrier_filtered": (
        "Text Not Delivered — the carrier filtered the text as spam or for its content. "
        "Turn on Pet Portal fallback for your clinic so filtered texts reach the client's Pet Portal inbox."
    ),
    "landline": "The number on the client record isn't a mobile line. Update the contact record in your PIMS to a mobile number.",
    "opted_out": "The client previously texted STOP. They need to text START to your clinic number to opt back in.",
    "invalid_number": "The number isn't in service. Verify contact info in your PIMS.",
    "blocked": (
        "The carrier or the recipient's device is rejecting messages. "
        "Reach the client another way, such as a phone call or email."
    ),
    "clinic_setup": (
        "The clinic's sending setup has a problem (registration, verification, account). Contact support."
    ),
}
TEMPORARY_RETRY_TEXT = (
    "A transient issue; retrying automatically (attempt 2 of 4). If you see a pattern, escalate to support."
)


def unknown_retry_text(code):
    return f"The provider reported error {code}, which Pawpost does not recognise yet. Retrying once automatically (attempt 2 of 2)."


def unknown_final_text(code):
    return (
        f"The provider reported error {code}, which Pawpost does not recognise yet. "
        "Contact support with the error code so it can be mapped."
    )


@dataclass(frozen=True)
class Case:
    provider: str
    category: str
    code: str
    # HTTP status of the stubbed create error; None sends through the sandbox instead.
    http_status: int | None = 400
    retried: bool = False

    @property
    def id(self):
        return f"{self.provider}-{self.category}-{self.code}"


# Unmapped codes differ per test, because Pawpost logs each unmapped code once per process.
SEND_CASES = [
    Case("twilio", "carrier_filtered", "21618"),
    Case("twilio", "landline", "21614"),
    Case("twilio", "opted_out", "21610", http_status=None),
    Case("twilio", "invalid_number", "21211"),
    # Twilio reports 30004 only in callbacks. Sent at create, it checks that both paths use one table.
    Case("twilio", "blocked", "30004"),
    Case("twilio", "temporary", "20429", http_status=429, retried=True),
    Case("twilio", "clinic_setup", "21408"),
    Case("twilio", "unknown", "39999", retried=True),
    Case("bandwidth", "temporary", "http-429", http_status=429, retried=True),
    Case("bandwidth", "clinic_setup", "http-400", http_status=400),
    Case("bandwidth", "clinic_setup", "http-401", http_status=401),
    Case("bandwidth", "unknown", "http-500", http_status=500, retried=True),
]
CALLBACK_CASES = [
    Case("twilio", "carrier_filtered", "30007"),
    Case("twilio", "landline", "30006"),
    Case("twilio", "opted_out", "21610"),
    Case("twilio", "invalid_number", "30005"),
    Case("twilio", "blocked", "30004"),
    Case("twilio", "temporary", "30017", retried=True),
    Case("twilio", "clinic_setup", "30034"),
    Case("twilio", "unknown", "39998", retried=True),
    Case("bandwidth", "carrier_filtered", "4770"),
    Case("bandwidth", "landline", "4720"),
    Case("bandwidth", "opted_out", "4775"),
    Case("bandwidth", "invalid_number", "4721"),
    Case("bandwidth", "blocked", "4772"),
    Case("bandwidth", "temporary", "4780", retried=True),
    Case("bandwidth", "clinic_setup", "4481"),
    Case("bandwidth", "unknown", "4998", retried=True),
]


def expected_text(case):
    """Return what staff should see right after the first attempt failed with ``case.code``."""
    if case.category == "temporary":
        return TEMPORARY_RETRY_TEXT
    if case.category == "unknown":
        return unknown_retry_text(case.code)
    # Bandwidth clinics have the Pet Portal fallback on by default, Twilio clinics off.
    if case.category == "carrier_filtered" and case.provider == "bandwidth":
        return FALLBACK_SENT
    return FINAL_TEXT[case.category]


@pytest.fixture
def retries_wait(app, monkeypatch):
    """Schedule retries 30 to 60 s ahead, so a test can check the queued retry before any worker runs it."""
    monkeypatch.setitem(app.config, "PAWPOST_RETRY_BASE_SECONDS", 60)


@pytest.fixture
def error_provider(app, monkeypatch):
    """Return a function that starts a ``CannedResponseServer`` and points the provider SDKs at it."""
    started = []

    def start(http_status, body):
        stub = CannedResponseServer(http_status, body)
        started.append(stub)
        monkeypatch.setitem(app.config, "PAWPOST_SANDBOX_URL", stub.url)
        return stub

    yield start
    for stub in started:
        stub.stop()


def start_stub_for(case, error_provider):
    if case.http_status is None:
        return None
    if case.provider == "twilio":
        return error_provider(case.http_status, twilio_error_body(int(case.code), case.http_status))
    return error_provider(case.http_status, bandwidth_error_body(case.http_status))


def fail_at_create(client, live, factory, error_provider, case):
    """Send one text whose create call fails with ``case.code``, and return (token, message id, stub)."""
    clinic = factory.clinic(case.provider)
    token = factory.api_token(clinic)
    stub = start_stub_for(case, error_provider)
    number = OPTED_OUT_NUMBER if stub is None else DELIVERED_NUMBER
    message_id = send_via_api(client, token, number)
    run_send_job(live.app, message_id)
    return token, message_id, stub


def fail_by_callback(client, live, factory, case):
    """Send one text the provider accepts, post its failure callback, and return (token, message id)."""
    clinic = factory.clinic(case.provider)
    token = factory.api_token(clinic)
    message_id = send_via_api(client, token, NO_RECEIPT_NUMBER)
    run_send_job(live.app, message_id)
    wait_for_callbacks(live)
    response = post_failure(client, live.app, sms_delivery(message_id), case.code)
    assert response.status_code == 200
    return token, message_id


def retry_job_scheduled(row):
    """Return whether RQ has the delivery's next send job, scheduled for later."""
    try:
        job = Job.fetch(queues.send_job_id(row.id, row.attempts + 1), connection=queues.connection())
    except NoSuchJobError:
        return False
    return job.get_status() == JobStatus.SCHEDULED


def api_sms(client, token, message_id):
    body = client.get(f"/api/v1/messages/{message_id}", headers=bearer(token)).get_json()
    return next(d for d in body["deliveries"] if d["channel"] == "sms")


@pytest.mark.parametrize("case", SEND_CASES, ids=lambda case: case.id)
def test_create_error_category(client, live, factory, error_provider, retries_wait, case):
    token, message_id, stub = fail_at_create(client, live, factory, error_provider, case)

    row = sms_delivery(message_id)
    sms = api_sms(client, token, message_id)

    assert row.category == case.category
    assert row.error_code == case.code
    assert row.status == ("queued" if case.retried else "failed")
    assert (row.next_attempt_at is not None) == case.retried
    assert row.next_attempt_at is None or row.next_attempt_at > utcnow()
    assert row.attempts == 1
    assert retry_job_scheduled(row) == case.retried
    assert sms["staff_message"] == expected_text(case)
    if stub is not None:
        assert len(stub.paths) == 1


@pytest.mark.parametrize("case", CALLBACK_CASES, ids=lambda case: case.id)
def test_callback_error_category(client, live, factory, retries_wait, case):
    token, message_id = fail_by_callback(client, live, factory, case)

    row = sms_delivery(message_id)
    sms = api_sms(client, token, message_id)

    assert row.category == case.category
    assert row.error_code == case.code
    assert row.status == ("queued" if case.retried else "undelivered")
    assert (row.next_attempt_at is not None) == case.retried
    assert row.next_attempt_at is None or row.next_attempt_at > utcnow()
    assert row.attempts == 1
    assert retry_job_scheduled(row) == case.retried
    assert sms["staff_message"] == expected_text(case)


def unmapped_records(caplog, code):
    """Return the log records that ask for ``code`` to be mapped."""
    return [
        record
        for record in caplog.records
        if record.name == "notifier.classify"
        and record.getMessage().startswith("Unmapped ")
        and f" {code};" in record.getMessage()
    ]


@pytest.mark.parametrize(("provider", "code"), [("twilio", "39997"), ("bandwidth", "4997")])
def test_unmapped_code_retried_once(client, live, factory, caplog, provider, code):
    caplog.set_level(logging.INFO)
    clinic = factory.clinic(provider)
    token = factory.api_token(clinic)
    message_id = send_via_api(client, token, NO_RECEIPT_NUMBER)
    run_send_job(live.app, message_id)
    wait_for_callbacks(live)

    post_failure(client, live.app, sms_delivery(message_id), code)
    retrying = api_sms(client, token, message_id)
    run_send_job(live.app, message_id)
    wait_for_callbacks(live)
    post_failure(client, live.app, sms_delivery(message_id), code)

    row = sms_delivery(message_id)
    records = unmapped_records(caplog, code)

    assert retrying["staff_message"] == unknown_retry_text(code)
    assert row.status == "undelivered"
    assert row.attempts == 2
    assert row.next_attempt_at is None
    assert api_sms(client, token, message_id)["staff_message"] == unknown_final_text(code)
    assert len(records) == 1
    assert f"notifier/codes/{provider}.toml" in records[0].getMessage()
    assert records[0].levelno == logging.WARNING


def clinic_setup_count(provider, code):
    value = REGISTRY.get_sample_value(
        "pawpost_clinic_setup_failures_total", {"provider": provider, "code": code}
    )
    return value or 0.0


CLINIC_SETUP_CASES = [
    pytest.param("create", Case("twilio", "clinic_setup", "21606"), id="create-twilio"),
    pytest.param(
        "create", Case("bandwidth", "clinic_setup", "http-403", http_status=403), id="create-bandwidth"
    ),
    pytest.param("callback", Case("twilio", "clinic_setup", "30032"), id="callback-twilio"),
    pytest.param("callback", Case("bandwidth", "clinic_setup", "4795"), id="callback-bandwidth"),
]


@pytest.mark.parametrize(("path", "case"), CLINIC_SETUP_CASES)
def test_clinic_setup_logged_and_counted(client, live, factory, error_provider, caplog, path, case):
    caplog.set_level(logging.INFO)
    before = clinic_setup_count(case.provider, case.code)

    if path == "create":
        _, message_id, _ = fail_at_create(client, live, factory, error_provider, case)
    else:
        _, message_id = fail_by_callback(client, live, factory, case)
    row = sms_delivery(message_id)
    errors = [r for r in caplog.records if r.levelno == logging.ERROR and r.name == "notifier.status"]

    assert row.category == "clinic_setup"
    assert clinic_setup_count(case.provider, case.code) == before + 1
    assert len(errors) == 1
    assert f"Delivery {row.id} " in errors[0].getMessage()
    assert case.code in errors[0].getMessage()
