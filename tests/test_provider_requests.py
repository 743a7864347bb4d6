"""The HTTP requests the real Twilio and Bandwidth SDKs make for our adapters, read from the sandbox log."""

import tomllib
from pathlib import Path

import pytest

from conftest import TWILIO_SID, TWILIO_TOKEN, run_worker
from helpers import BODY, bearer, delivery, send_via_api, wait_final, wait_for_callbacks
from portal.extensions import db

CATEGORIES_TOML = Path(__file__).resolve().parent.parent / "notifier" / "codes" / "categories.toml"


def create_requests(live):
    """Return the logged message-create requests, oldest first."""
    return [r for r in live.carrier.logged_requests() if r["method"] == "POST"]


def staff_text(category):
    entry = tomllib.loads(CATEGORIES_TOML.read_text())[category]
    return f"{entry['reason']} {entry['action']}"


def sent_once(client, live, factory, provider, number):
    """Send one message through the API and the worker, and return the clinic, message id and request."""
    clinic = factory.clinic(provider, fallback=False)
    message_id = send_via_api(client, factory.api_token(clinic), number)
    run_worker(live.app)
    [request] = create_requests(live)
    return clinic, message_id, request


def test_twilio_create_request(client, live, factory):
    clinic, message_id, request = sent_once(client, live, factory, "twilio", "+15551230001")
    sms = delivery(message_id, "sms")

    assert request["path"] == f"/2010-04-01/Accounts/{TWILIO_SID}/Messages.json"
    assert request["username"] == TWILIO_SID
    assert request["password"] == TWILIO_TOKEN
    assert request["content_type"].startswith("application/x-www-form-urlencoded")
    assert request["form"]["To"] == ["+15551230001"]
    assert request["form"]["From"] == [clinic.sender_number]
    assert request["form"]["Body"] == [BODY]
    assert request["form"]["StatusCallback"] == [
        f"{live.url}/webhooks/twilio/{clinic.id}/status?ref={sms.id}.1"
    ]
    assert "MediaUrl" not in request["form"]
    assert request["status"] == 201


def test_twilio_callback_url_reaches_webhook(client, live, factory):
    _, message_id, _ = sent_once(client, live, factory, "twilio", "+15551230001")

    sms = wait_final(message_id, "sms")

    assert sms.status == "delivered"
    assert sms.provider_message_id.startswith("SM")


def test_bandwidth_create_request(client, live, factory):
    clinic, message_id, request = sent_once(client, live, factory, "bandwidth", "+15551230001")
    sms = delivery(message_id, "sms")

    assert request["path"] == f"/api/v2/users/{clinic.bandwidth_account_id}/messages"
    assert request["username"] == clinic.bandwidth_username
    assert request["password"] == clinic.bandwidth_password
    assert request["content_type"].startswith("application/json")
    assert request["json"]["applicationId"] == clinic.bandwidth_application_id
    assert request["json"]["to"] == ["+15551230001"]
    assert request["json"]["from"] == clinic.sender_number
    assert request["json"]["text"] == BODY
    assert request["json"]["tag"] == f"{sms.id}.1"
    assert "media" not in request["json"]
    assert request["status"] == 202


@pytest.mark.parametrize("provider", ["twilio", "bandwidth"])
def test_pointer_request_carries_pointer_ref(client, live, factory, provider):
    clinic = factory.clinic(provider, fallback=True)
    message_id = send_via_api(client, factory.api_token(clinic), "+15551230010")
    run_worker(live.app)
    wait_final(message_id, "sms")
    run_worker(live.app)
    pointer = wait_final(message_id, "pointer")
    wait_for_callbacks(live)

    first, second = create_requests(live)
    text = second["form"]["Body"][0] if provider == "twilio" else second["json"]["text"]

    assert live.url + "/p/" in text
    assert BODY not in text
    if provider == "twilio":
        assert second["form"]["StatusCallback"] == [
            f"{live.url}/webhooks/twilio/{clinic.id}/status?ref={pointer.id}.1"
        ]
    else:
        assert second["json"]["tag"] == f"{pointer.id}.1"
    assert pointer.status == "delivered"


def test_twilio_opted_out_fails_at_create(client, live, factory):
    clinic = factory.clinic("twilio", fallback=True)
    token = factory.api_token(clinic)
    message_id = send_via_api(client, token, "+15551230030")
    run_worker(live.app)
    run_worker(live.app)

    requests_made = create_requests(live)
    sms = delivery(message_id, "sms")
    body = client.get(f"/api/v1/messages/{message_id}", headers=bearer(token)).get_json()
    sms_json = next(d for d in body["deliveries"] if d["channel"] == "sms")

    assert len(requests_made) == 1
    assert requests_made[0]["status"] == 400
    assert sms.status == "failed"
    assert sms.category == "opted_out"
    assert sms.error_code == "21610"
    assert sms.attempts == 1
    assert sms_json["staff_message"] == staff_text("opted_out")
    assert delivery(message_id, "pointer") is None


def test_bandwidth_rejected_application_fails_at_create(client, live, factory):
    clinic = factory.clinic("bandwidth")
    clinic.bandwidth_application_id = "app-not-registered"
    db.session.commit()
    message_id = send_via_api(client, factory.api_token(clinic), "+15551230001")
    run_worker(live.app)
    run_worker(live.app)

    requests_made = create_requests(live)
    sms = delivery(message_id, "sms")

    assert len(requests_made) == 1
    assert requests_made[0]["status"] == 400
    assert sms.status == "failed"
    assert sms.error_code == "http-400"
    assert sms.category == "clinic_setup"
    assert sms.attempts == 1
