"""Text with a NUL or an unpaired UTF-16 surrogate, which the database cannot store, and text that shows nothing.

Forms and API requests get a 400 that names the field, and nothing is stored. Provider webhooks
store the text with the character replaced by U+FFFD, since a rejected callback would be retried.
Texts of only invisible characters, numbers with extensions and blank PIMS ids get a 400 too.
"""

import pytest

from helpers import bearer, count
from notifier.status import StatusEvent
from portal.models import Client, Message
from portal_helpers import page_token, portal_message, sign_in
from provider_stubs import post_bandwidth_events
from test_inbound import inbound_event, inbound_messages

MOBILE = "+15551230002"


@pytest.fixture
def clinic(factory):
    return factory.clinic("twilio", name="Happy Paws Clinic")


@pytest.fixture
def token(factory, clinic):
    return factory.api_token(clinic)


@pytest.mark.parametrize(
    ("path", "payload", "field"),
    [
        ("/api/v1/messages", {"to": MOBILE, "body": "Rex\u0000 is ready."}, "body"),
        ("/api/v1/messages/batch", {"messages": [{"to": MOBILE, "body": "Rex\u0000 is ready."}]}, "messages[0].body"),
        ("/api/v1/messages", {"to": MOBILE + "\u0000", "body": "Rex is ready."}, "to"),
        ("/api/v1/messages", {"to": MOBILE, "body": "Rex \ud83d is ready."}, "body"),
        ("/api/v1/messages/batch", {"messages": [{"to": MOBILE, "body": "Rex \udfff ate."}]}, "messages[0].body"),
    ],
    ids=["send_body", "batch_body", "send_to", "send_body_surrogate", "batch_body_surrogate"],
)
def test_api_unstorable_text_rejected(client, token, path, payload, field):
    response = client.post(path, json=payload, headers=bearer(token))

    assert response.status_code == 400
    assert response.get_json()["error"]["field"] == field
    assert "cannot store" in response.get_json()["error"]["message"]
    assert count(Message) == 0


@pytest.mark.parametrize("name", ["Pat\u0000", "Pat \ud800"], ids=["nul", "surrogate"])
def test_client_upsert_unstorable_rejected(client, token, name):
    response = client.put("/api/v1/clients/pims-1", json={"name": name, "numbers": []}, headers=bearer(token))

    assert response.status_code == 400
    assert response.get_json()["error"]["field"] == "name"
    assert count(Client) == 0


def test_staff_login_nul_rejected(client):
    data = {"csrf_token": page_token(client, "/admin/login"), "email": "sam\u0000@happypaws.example", "password": "x"}

    response = client.post("/admin/login", data=data)

    assert response.status_code == 400
    assert b"email&#39; contains a NUL character" in response.data


@pytest.mark.parametrize(
    ("body", "message"),
    [("Rex\u0000 ate.", b"body&#39; contains a NUL character"), ("\u200b \u200b", b"Write a message or add a photo")],
    ids=["nul", "invisible"],
)
def test_portal_reply_bad_text_rejected(client, factory, clinic, body, message):
    record = factory.client(clinic, MOBILE)
    portal_message(clinic, record)
    sign_in(client, record.id)
    data = {"csrf_token": page_token(client, f"/inbox/threads/{record.id}"), "body": body}

    response = client.post(f"/inbox/threads/{record.id}/messages", data=data, content_type="multipart/form-data")

    assert response.status_code == 400
    assert message in response.data
    assert count(Message, Message.direction == "inbound") == 0


def test_api_path_nul_rejected(client, token):
    response = client.get("/api/v1/clients/pims%00one", headers=bearer(token))

    assert response.status_code == 400
    assert response.get_json()["error"]["field"] == "pims_id"


def test_portal_json_nul_rejected(client, factory, clinic):
    record = factory.client(clinic, MOBILE)
    portal_message(clinic, record)
    sign_in(client, record.id)
    token = page_token(client, "/preferences")

    response = client.post(
        "/push/subscriptions/delete", json={"endpoint": "https://push.example.com/a\u0000"}, headers={"X-CSRFToken": token}
    )

    assert response.status_code == 400


@pytest.mark.parametrize("text", ["Rex\u0000 ate.", "Rex\ud83d ate."], ids=["nul", "surrogate"])
def test_bandwidth_inbound_text_replaced(client, factory, text):
    clinic = factory.clinic("bandwidth")

    response = post_bandwidth_events(client, clinic, [inbound_event(clinic, text, "1741101399000nul")])

    [stored] = inbound_messages()
    assert response.status_code == 200
    assert stored.body == "Rex\ufffd ate."


@pytest.mark.parametrize("message_id", ["SM\u00001", "SM\udc001"], ids=["nul", "surrogate"])
def test_status_event_text_replaced(message_id):
    event = StatusEvent("twilio", "delivered", message_id, None, None, None, {})

    assert event.provider_message_id == "SM\ufffd1"


@pytest.mark.parametrize(
    ("path", "payload", "field"),
    [
        ("/api/v1/messages", {"to": MOBILE, "body": "\u200b"}, "body"),
        ("/api/v1/messages", {"to": MOBILE, "body": " \ufeff \u200b "}, "body"),
        ("/api/v1/messages/batch", {"messages": [{"to": MOBILE, "body": "\u2060"}]}, "messages[0].body"),
        ("/api/v1/messages", {"to": "+1 555 123 0002 ext. 55", "body": "Rex is ready."}, "to"),
        ("/api/v1/messages", {"to": "+15551230002;ext=2", "body": "Rex is ready."}, "to"),
        ("/api/v1/messages/batch", {"messages": [{"to": "555-123-0002 x7", "body": "Rex is ready."}]}, "messages[0].to"),
    ],
    ids=["zero_width_space", "byte_order_mark", "batch_word_joiner", "extension", "extension_rfc3966", "batch_extension"],
)
def test_api_invisible_or_extension_rejected(client, token, path, payload, field):
    response = client.post(path, json=payload, headers=bearer(token))

    assert response.status_code == 400
    assert response.get_json()["error"]["field"] == field
    assert count(Message) == 0


def test_api_body_with_visible_text_accepted(client, token):
    response = client.post("/api/v1/messages", json={"to": MOBILE, "body": "\u200bRex is ready."}, headers=bearer(token))

    assert response.status_code == 201


@pytest.mark.parametrize("pims_id", ["%20", "%20%20%20"], ids=["space", "spaces"])
def test_blank_pims_id_rejected(client, token, pims_id):
    response = client.put(f"/api/v1/clients/{pims_id}", json={"name": "Pat", "numbers": []}, headers=bearer(token))

    assert response.status_code == 400
    assert response.get_json()["error"]["field"] == "pims_id"
    assert count(Client) == 0
