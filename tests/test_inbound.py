"""Inbound texts and photos: stored once, with every attachment, and shown to staff and the pet parent.

A phone texts the clinic's number through the sandbox (``POST /phones/<number>/send``), which
posts the provider's real inbound webhook: Twilio's signed form, or Bandwidth's event array with
basic auth. Attachments are fetched by the ``fetch_attachments`` job through the provider SDKs.
"""

from pathlib import Path

import pytest
import requests

from conftest import STAFF_PASSWORD, run_worker
from helpers import count, csrf_token, provider_events, send_via_api
from portal.extensions import db
from portal.models import Attachment, Client, Message, PortalToken

# settle_sandbox is an autouse fixture, so importing it applies it to every test here.
from provider_stubs import (  # noqa: F401
    bandwidth_event,
    post_bandwidth_events,
    run_send_job,
    settle_sandbox,
    sms_delivery,
)

PHONE = "+15551230001"
NO_RECEIPT_NUMBER = "+15551230070"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
PROVIDERS = ["twilio", "bandwidth"]


def text_clinic(live, phone, to, body, **fields):
    """Have ``phone`` text the number ``to`` through the sandbox, and return the sandbox's response."""
    response = requests.post(
        f"{live.sandbox_url}/phones/{phone}/send", json={"to": to, "body": body, **fields}, timeout=10
    )
    assert response.status_code == 202, response.text
    return response.json()


def inbound_messages():
    db.session.rollback()
    return db.session.execute(db.select(Message).where(Message.direction == "inbound")).scalars().all()


def sign_in_staff(client, factory, clinic):
    user = factory.staff(clinic)
    page = client.get("/admin/login")
    data = {"email": user.email, "password": STAFF_PASSWORD, "csrf_token": csrf_token(page.data)}
    assert client.post("/admin/login", data=data).status_code == 302


def provider_file(live, clinic, url):
    """Download an inbound attachment straight from the sandbox, with the clinic's API credentials."""
    assert url.startswith(live.sandbox_url)
    if clinic.provider == "twilio":
        auth = (clinic.twilio_account_sid, clinic.twilio_auth_token)
    else:
        auth = (clinic.bandwidth_username, clinic.bandwidth_password)
    response = requests.get(url, auth=auth, timeout=5)
    assert response.status_code == 200
    return response.content


@pytest.mark.parametrize("provider", PROVIDERS)
def test_mms_attachments_stored(client, live, factory, provider):
    clinic = factory.clinic(provider)
    sign_in_staff(client, factory, clinic)

    text_clinic(live, PHONE, clinic.sender_number, "Rex's rash today", media=3)
    [message] = inbound_messages()
    originals = [provider_file(live, clinic, a.source_url) for a in message.attachments]
    run_worker(live.app)
    db.session.rollback()
    attachments = (
        db.session.execute(
            db.select(Attachment).where(Attachment.message_id == message.id).order_by(Attachment.position)
        )
        .scalars()
        .all()
    )
    media_dir = Path(live.app.config["PAWPOST_MEDIA_DIR"])
    stored = [(media_dir / a.storage_key).read_bytes() for a in attachments]
    served = [client.get(f"/admin/attachments/{a.id}") for a in attachments]

    assert message.body == "Rex's rash today"
    assert [a.position for a in attachments] == [0, 1, 2]
    assert [a.content_type for a in attachments] == ["image/png"] * 3
    assert [a.source_url for a in attachments] == [None] * 3
    assert [a.size_bytes for a in attachments] == [len(data) for data in stored]
    assert stored == originals
    assert all(data.startswith(PNG_SIGNATURE) for data in stored)
    assert len(set(stored)) == 3
    assert [r.status_code for r in served] == [200] * 3
    assert [r.mimetype for r in served] == ["image/png"] * 3
    assert [r.data for r in served] == stored


@pytest.mark.parametrize("provider", PROVIDERS)
def test_repeated_webhook_stored_once(live, factory, provider):
    clinic = factory.clinic(provider)

    sent = text_clinic(live, PHONE, clinic.sender_number, "See you at 3", media=1, repeat=2)
    events = [e for e in provider_events() if e.kind == "inbound"]

    assert len(sent["webhooks"]) == 2
    assert len(inbound_messages()) == 1
    assert count(Attachment) == 1
    assert [e.outcome for e in events] == ["stored", "duplicate"]
    assert [e.provider_message_id for e in events] == [sent["id"], sent["id"]]


@pytest.mark.parametrize("provider", PROVIDERS)
def test_own_number_not_stored(live, factory, provider):
    clinic = factory.clinic(provider)
    other = factory.clinic(provider)

    text_clinic(live, other.sender_number, clinic.sender_number, "Reminder: Rex's booster is due")
    events = provider_events()

    assert inbound_messages() == []
    assert count(Client) == 0
    assert [e.outcome for e in events] == ["loop"]


def inbound_event(clinic, text, message_id):
    """Return one Bandwidth ``message-received`` event from PHONE to the clinic's number."""
    return {
        "type": "message-received",
        "time": "2026-01-05T18:20:16Z",
        "description": "Incoming message received",
        "to": clinic.sender_number,
        "message": {
            "id": message_id,
            "owner": clinic.sender_number,
            "applicationId": clinic.bandwidth_application_id,
            "time": "2026-01-05T18:20:16Z",
            "segmentCount": 1,
            "direction": "in",
            "to": [clinic.sender_number],
            "from": PHONE,
            "text": text,
        },
    }


def test_bandwidth_mixed_array_one_inbound(client, live, factory):
    clinic = factory.clinic("bandwidth")
    message_id = send_via_api(client, factory.api_token(clinic), NO_RECEIPT_NUMBER)
    run_send_job(live.app, message_id)
    events = [
        bandwidth_event(sms_delivery(message_id), "message-delivered"),
        inbound_event(clinic, "Thanks!", "1741101399000inbound"),
    ]

    response = post_bandwidth_events(client, clinic, events)
    [inbound] = inbound_messages()

    assert response.status_code == 200
    assert sms_delivery(message_id).status == "delivered"
    assert inbound.body == "Thanks!"
    assert inbound.client.mobile_number == PHONE
    assert count(Message, Message.direction == "inbound") == 1


def sign_in_pet_parent(client, client_id):
    """Sign the pet parent in through a fresh portal link, as the pointer text's link does."""
    row, raw = PortalToken.issue(client_id=client_id, message_id=None, purpose="pointer", days=1)
    db.session.add(row)
    db.session.commit()
    page = client.get(f"/p/{raw}")
    response = client.post(f"/p/{raw}", data={"csrf_token": csrf_token(page.data)})
    assert response.status_code == 302


@pytest.mark.parametrize("provider", PROVIDERS)
def test_reply_in_portal_inbox(client, live, factory, provider):
    clinic = factory.clinic(provider)
    parent = factory.client(clinic, PHONE)

    text_clinic(live, PHONE, clinic.sender_number, "Can we move Rex to Friday?")
    sign_in_pet_parent(client, parent.id)
    inbox = client.get("/inbox")

    assert inbox.status_code == 200
    assert b"Can we move Rex to Friday?" in inbox.data
    assert [m.client_id for m in inbound_messages()] == [parent.id]
