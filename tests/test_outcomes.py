"""What the API reports for each outcome of the sandbox's suffix table, per provider and fallback setting.

Each case sends through the API, runs the worker and waits for the sandbox's callbacks. It
repeats that until no text of the message is waiting, because a retry or a pointer text takes
one more round. The test app's retry base delay is zero, so a retry is queued at once.
"""

import tomllib
from dataclasses import dataclass
from pathlib import Path

import pytest

from conftest import run_worker
from helpers import bearer, delivery, send_via_api, wait_for_callbacks
from provider_stubs import run_send_job

# Worker runs per case: enough for the first attempt, a retry and a pointer text, with spares.
MAX_ROUNDS = 6
CATEGORIES_TOML = Path(__file__).resolve().parent.parent / "notifier" / "codes" / "categories.toml"
FALLBACK_SENT = "Text Not Delivered — Message sent as Chat Notification to Client Instead."


@dataclass(frozen=True)
class Expected:
    status: str
    category: str | None = None
    code: str | None = None
    # "none" when no pointer text may exist, else the pointer delivery's final status.
    pointer: str = "none"
    attempts: int = 1


def category_text(category, code):
    entry = tomllib.loads(CATEGORIES_TOML.read_text())[category]
    return f"{entry['reason'].format(code=code)} {entry['action']}"


def expected_outcome(provider, suffix, fallback):
    twilio = provider == "twilio"
    filtered_pointer = "delivered" if fallback else "none"
    blocked_pointer = "undelivered" if fallback else "none"
    table = {
        "01": Expected("delivered"),
        "10": Expected("undelivered", "carrier_filtered", "30007" if twilio else "4770", filtered_pointer),
        "20": Expected("undelivered", "landline", "30006" if twilio else "4720"),
        "30": Expected("failed", "opted_out", "21610") if twilio else Expected("undelivered", "opted_out", "4775"),
        "40": Expected("failed" if twilio else "undelivered", "invalid_number", "30005" if twilio else "4721"),
        "50": Expected("undelivered", "blocked", "30004" if twilio else "4772"),
        # The sandbox fails the 1st text to a ...60 number and delivers the 2nd, which is the retry.
        "60": Expected("delivered", attempts=2),
        "70": Expected("sent" if twilio else "accepted"),
        "80": Expected("failed" if twilio else "undelivered", "clinic_setup", "30034" if twilio else "4481"),
        # An unmapped code is retried once, and fails again.
        "90": Expected("undelivered", "unknown", "30999" if twilio else "4999", attempts=2),
        "99": Expected("undelivered", "carrier_filtered", "30007" if twilio else "4770", blocked_pointer),
    }
    return table[suffix]


def expected_staff_message(expected):
    if expected.status == "delivered":
        return "Delivered."
    if expected.status == "sent":
        return "Accepted by the carrier; waiting for the delivery receipt."
    if expected.status == "accepted":
        return "Handed to the provider; waiting for the carrier."
    if expected.pointer == "delivered":
        return FALLBACK_SENT
    if expected.pointer == "undelivered":
        return (
            "Text Not Delivered — the carrier blocked both the text and the Pet Portal notice. "
            "The message is in the client's Pet Portal inbox; reach the client another way, "
            "such as a phone call or email."
        )
    return category_text(expected.category, expected.code)


CASES = [
    pytest.param(provider, fallback, suffix, id=f"{provider}-{'fallback' if fallback else 'plain'}-{suffix}")
    for provider in ("twilio", "bandwidth")
    for fallback in (True, False)
    for suffix in ("01", "10", "20", "30", "40", "50", "60", "70", "80", "90", "99")
]


def texts_waiting(message_id):
    return [
        channel
        for channel in ("sms", "pointer")
        if (row := delivery(message_id, channel)) is not None and row.status == "queued"
    ]


def settled(client, live, token, number):
    """Send to ``number`` and return the API's view once no text of the message is waiting."""
    message_id = send_via_api(client, token, number)
    for _ in range(MAX_ROUNDS):
        run_worker(live.app)
        wait_for_callbacks(live)
        if not texts_waiting(message_id):
            break
    body = client.get(f"/api/v1/messages/{message_id}", headers=bearer(token)).get_json()
    return {d["channel"]: d for d in body["deliveries"]}


@pytest.mark.parametrize(("provider", "fallback", "suffix"), CASES)
def test_outcome_reported(client, live, factory, provider, fallback, suffix):
    clinic = factory.clinic(provider, fallback=fallback)
    expected = expected_outcome(provider, suffix, fallback)

    deliveries = settled(client, live, factory.api_token(clinic), f"+155512300{suffix}")
    sms = deliveries["sms"]

    assert sms["status"] == expected.status
    assert sms["category"] == expected.category
    assert sms["error_code"] == expected.code
    assert sms["staff_message"] == expected_staff_message(expected)
    assert sms["attempts"] == expected.attempts
    assert deliveries.get("pointer", {}).get("status", "none") == expected.pointer


@pytest.mark.parametrize("provider", ["twilio", "bandwidth"])
def test_pointer_blocked_too(client, live, factory, provider):
    clinic = factory.clinic(provider, fallback=True)

    deliveries = settled(client, live, factory.api_token(clinic), "+15551230099")
    creates = [r for r in live.carrier.logged_requests() if r["method"] == "POST"]

    assert "blocked both" in deliveries["sms"]["staff_message"]
    assert deliveries["pointer"]["status"] == "undelivered"
    assert deliveries["pointer"]["staff_message"] == "The Pet Portal notice text was blocked too."
    assert deliveries["portal"]["staff_message"] == "In the Pet Portal inbox as a chat notification; not read yet."
    assert len(creates) == 2


@pytest.mark.parametrize("provider", ["twilio", "bandwidth"])
def test_filtered_without_fallback_one_send(client, live, factory, provider):
    clinic = factory.clinic(provider, fallback=False)

    deliveries = settled(client, live, factory.api_token(clinic), "+15551230010")
    creates = [r for r in live.carrier.logged_requests() if r["method"] == "POST"]

    assert "pointer" not in deliveries
    assert deliveries["portal"]["staff_message"] == "In the Pet Portal inbox."
    assert len(creates) == 1


@pytest.mark.parametrize(
    ("provider", "suffix", "staff_message"),
    [
        (
            "twilio",
            "60",
            "A transient issue; retrying automatically (attempt 2 of 2). "
            "If you see a pattern, escalate to support.",
        ),
        (
            "bandwidth",
            "60",
            "A transient issue; retrying automatically (attempt 2 of 2). "
            "If you see a pattern, escalate to support.",
        ),
        (
            "twilio",
            "90",
            "The provider reported error 30999, which Pawpost does not recognise yet. "
            "Retrying once automatically (attempt 2 of 2).",
        ),
    ],
)
def test_retry_pending_shown(client, live, factory, provider, suffix, staff_message):
    clinic = factory.clinic(provider)
    token = factory.api_token(clinic)
    message_id = send_via_api(client, token, f"+155512300{suffix}")
    # Only the send job runs: a worker burst could also run the retry the failure callback queues.
    run_send_job(live.app, message_id)
    wait_for_callbacks(live)

    body = client.get(f"/api/v1/messages/{message_id}", headers=bearer(token)).get_json()
    sms = next(d for d in body["deliveries"] if d["channel"] == "sms")

    assert sms["status"] == "queued"
    assert sms["attempts"] == 1
    assert sms["staff_message"] == staff_message
