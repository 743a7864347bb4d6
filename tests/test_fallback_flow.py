"""End to end through the API, RQ on real Redis, the real SDKs, the sandbox and the webhooks."""

import re
import pytest
import requests

from conftest import run_worker, start_worker_process, wait_for
from notifier.explain import FALLBACK_SENT
from notifier.gsm import is_gsm7
from portal.extensions import db
from portal.models import Delivery, PortalToken

ORIGINAL = "Rex is due for his rabies booster. Reply to book a visit."


def send_via_api(client, token, to, body=ORIGINAL):
    response = client.post("/api/v1/messages", json={"to": to, "body": body}, headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 201, response.get_json()
    return response.get_json()["id"]


def delivery(message_id, channel):
    db.session.rollback()
    return db.session.execute(
        db.select(Delivery).where(Delivery.message_id == message_id, Delivery.channel == channel)
    ).scalar_one_or_none()


def final(message_id, channel):
    def is_final():
        row = delivery(message_id, channel)
        return row is not None and row.is_final

    wait_for(is_final)
    return delivery(message_id, channel)


def received(live, number):
    return requests.get(f"{live.sandbox_url}/phones/{number}/messages", timeout=5).json()


def fallback_message(client, live, factory, number="+15551230010"):
    clinic = factory.clinic("bandwidth")
    factory.client(clinic, number)
    token = factory.api_token(clinic)
    message_id = send_via_api(client, token, number)
    run_worker(live.app)
    final(message_id, "sms")
    run_worker(live.app)
    final(message_id, "pointer")
    return message_id, token


def test_filtered_text_ends_with_fallback_message(client, live, factory):
    message_id, token = fallback_message(client, live, factory)

    body = client.get(f"/api/v1/messages/{message_id}", headers={"Authorization": f"Bearer {token}"}).get_json()
    sms = next(d for d in body["deliveries"] if d["channel"] == "sms")

    assert sms["status"] == "undelivered"
    assert sms["category"] == "carrier_filtered"
    assert sms["staff_message"] == FALLBACK_SENT


def test_fallback_marks_portal_copy_as_chat_notification(client, live, factory):
    message_id, _ = fallback_message(client, live, factory)

    portal = delivery(message_id, "portal")

    assert portal.chat_notification is True
    assert portal.read_at is None


def test_phone_receives_one_pointer_without_original_content(client, live, factory):
    fallback_message(client, live, factory)

    texts = received(live, "+15551230010")

    assert len(texts) == 1
    pointer = texts[0]["body"]
    assert live.url + "/p/" in pointer
    assert "Rex" not in pointer
    assert "Test Clinic" in pointer
    assert is_gsm7(pointer)
    assert len(pointer) <= 160


def test_pointer_link_get_spends_nothing_and_post_signs_in(client, live, factory):
    message_id, _ = fallback_message(client, live, factory)
    link = re.search(r"/p/\S+", received(live, "+15551230010")[0]["body"]).group(0)

    confirm = client.get(link)
    db.session.rollback()
    token = db.session.execute(db.select(PortalToken)).scalar_one()
    assert confirm.status_code == 200
    assert b"Open my message" in confirm.data
    assert token.used_at is None
    assert client.get("/inbox").status_code == 401

    csrf = re.search(rb'name="csrf_token" type="hidden" value="([^"]+)"', confirm.data).group(1).decode()
    opened = client.post(link, data={"csrf_token": csrf}, follow_redirects=True)

    assert opened.status_code == 200
    assert ORIGINAL.encode() in opened.data
    assert delivery(message_id, "portal").read_at is not None


@pytest.mark.parametrize("copies", [2, 3])
def test_repeated_failure_callback_sends_one_pointer(client, live, factory, copies):
    clinic = factory.clinic("bandwidth")
    live.carrier.set_config({**live.carrier.config, "duplicate_callbacks": True})
    factory.client(clinic, "+15551230010")
    message_id = send_via_api(client, factory.api_token(clinic), "+15551230010")
    run_worker(live.app)
    final(message_id, "sms")
    for _ in range(copies):
        run_worker(live.app)
    final(message_id, "pointer")

    pointers = db.session.execute(
        db.select(Delivery).where(Delivery.message_id == message_id, Delivery.channel == "pointer")
    ).scalars().all()

    assert len(pointers) == 1
    assert len(received(live, "+15551230010")) == 1


def test_two_workers_at_once_make_one_pointer_call(client, live, factory):
    clinic = factory.clinic("bandwidth")
    factory.client(clinic, "+15551230010")
    message_id = send_via_api(client, factory.api_token(clinic), "+15551230010")
    run_worker(live.app)
    final(message_id, "sms")
    pointer = delivery(message_id, "pointer")
    from notifier import queues

    # A second copy of the pointer job, as if a reconciler and the webhook both queued it.
    with live.app.app_context():
        queues.enqueue_send(pointer)
    workers = [start_worker_process(live.app) for _ in range(2)]
    for worker in workers:
        worker.wait(60)

    creates = [r for r in live.carrier.logged_requests() if r["method"] == "POST" and r["path"].endswith("/messages")]
    assert len(creates) == 2  # the original text and exactly one pointer
    assert delivery(message_id, "pointer").attempts == 1


def test_twilio_text_to_delivered_number_is_delivered(client, live, factory):
    clinic = factory.clinic("twilio")
    factory.client(clinic, "+15551230001")
    message_id = send_via_api(client, factory.api_token(clinic), "+15551230001")
    run_worker(live.app)

    sms = final(message_id, "sms")

    assert sms.status == "delivered"
    assert [m["body"] for m in received(live, "+15551230001")] == [ORIGINAL]
