"""Staff admin: sign-in and sign-out, the conversation page, the send form and clinic scoping."""

from urllib.parse import urlencode

import pytest
from markupsafe import escape
from rq import Queue

from conftest import STAFF_PASSWORD
from helpers import BODY, count, csrf_token, outbound_sms
from notifier import queues
from portal.extensions import db
from portal.models import FINAL_RANK, Client, Delivery, Message

FALLBACK_SENT = "Text Not Delivered — Message sent as Chat Notification to Client Instead."


@pytest.fixture
def clinic(factory):
    return factory.clinic("bandwidth", name="Happy Paws Clinic")


@pytest.fixture
def staff(factory, clinic):
    return factory.staff(clinic, email="sam@happypaws.example")


@pytest.fixture
def pet_parent(factory, clinic):
    return factory.client(clinic, "+15551230001", name="Pat Parent")


def sign_in(client, email, password=STAFF_PASSWORD, next_path=None):
    page = client.get("/admin/login")
    url = "/admin/login" + (f"?{urlencode({'next': next_path})}" if next_path is not None else "")
    return client.post(url, data={"email": email, "password": password, "csrf_token": csrf_token(page.data)})


def signed_in(client):
    with client.session_transaction() as session:
        return session.get("_user_id")


def sms_queue_length():
    return Queue("sms", connection=queues.connection()).count


def test_login_page_renders(client):
    response = client.get("/admin/login")

    assert response.status_code == 200
    assert b'name="csrf_token"' in response.data


@pytest.mark.parametrize(
    ("email", "password"),
    [
        ("sam@happypaws.example", "wrong password"),
        ("nobody@happypaws.example", STAFF_PASSWORD),
        ("sam@happypaws.example", ""),
    ],
    ids=["wrong_password", "unknown_email", "empty_password"],
)
def test_login_rejected(client, staff, email, password):
    response = sign_in(client, email, password)

    assert response.status_code == 200
    assert signed_in(client) is None
    assert client.get("/admin/").status_code == 302


def test_login_wrong_password_shows_error(client, staff):
    response = sign_in(client, staff.email, "wrong password")

    assert b"do not match an account" in response.data


def test_login_without_csrf_rejected(client, staff):
    response = client.post("/admin/login", data={"email": staff.email, "password": STAFF_PASSWORD})

    assert response.status_code == 400
    assert signed_in(client) is None


@pytest.mark.parametrize("email", ["sam@happypaws.example", "SAM@HappyPaws.example"])
def test_login_shows_clients(client, staff, pet_parent, email):
    response = sign_in(client, email)
    listing = client.get(response.headers["Location"])

    assert response.status_code == 302
    assert response.headers["Location"] == "/admin/"
    assert signed_in(client) == f"staff:{staff.id}"
    assert listing.status_code == 200
    assert b"Pat Parent" in listing.data


@pytest.mark.parametrize(
    ("next_path", "location"),
    [
        ("/admin/clients/7", "/admin/clients/7"),
        ("//evil.example/", "/admin/"),
        ("https://evil.example/", "/admin/"),
        ("/\\evil.example", "/admin/"),
        ("/\t/evil.example", "/admin/"),
        ("/\n/evil.example", "/admin/"),
        ("", "/admin/"),
    ],
    ids=["same_site", "scheme_relative", "absolute", "backslash", "tab", "newline", "empty"],
)
def test_login_next_stays_on_site(client, staff, next_path, location):
    response = sign_in(client, staff.email, next_path=next_path)

    assert response.headers["Location"] == location


def test_pages_need_sign_in(client, pet_parent):
    response = client.get(f"/admin/clients/{pet_parent.id}")

    assert response.status_code == 302
    assert response.headers["Location"].startswith("/admin/login")


def add_fallback_message(clinic, parent):
    """Store a message filtered by the carrier whose pointer text was delivered."""
    sms = outbound_sms(clinic, parent, status="undelivered")
    sms.error_code, sms.category = "4770", "carrier_filtered"
    sms.message.delivery("portal").chat_notification = True
    pointer = Delivery(
        message_id=sms.message_id,
        channel="pointer",
        provider=clinic.provider,
        status="delivered",
        status_rank=FINAL_RANK,
        attempts=1,
    )
    db.session.add(pointer)
    db.session.commit()
    return sms.message_id


def add_failed_message(clinic, parent, category, code):
    sms = outbound_sms(clinic, parent, status="undelivered")
    sms.error_code, sms.category = code, category
    db.session.commit()
    return sms.message_id


def bubble(html, message_id):
    """Return the part of the conversation page that shows one message."""
    start = html.index(f'id="message-{message_id}"')
    end = html.find('<li class="bubble', start)
    return html[start:] if end == -1 else html[start:end]


def test_conversation_staff_messages(client, clinic, staff, pet_parent):
    delivered = outbound_sms(clinic, pet_parent, status="delivered").message_id
    waiting = outbound_sms(clinic, pet_parent, status="accepted").message_id
    landline = add_failed_message(clinic, pet_parent, "landline", "4720")
    unknown = add_failed_message(clinic, pet_parent, "unknown", "4999")
    fallback = add_fallback_message(clinic, pet_parent)
    sign_in(client, staff.email)

    html = client.get(f"/admin/clients/{pet_parent.id}").get_data(as_text=True)
    expected = {
        delivered: ["Delivered."],
        waiting: ["Handed to the provider; waiting for the carrier."],
        landline: [
            "The number on the client record isn't a mobile line. "
            "Update the contact record in your PIMS to a mobile number."
        ],
        unknown: ["The provider reported error 4999, which Pawpost does not recognise yet."],
        fallback: [
            FALLBACK_SENT,
            "Pointer: Pet Portal notice text delivered.",
            "Portal: In the Pet Portal inbox as a chat notification; not read yet.",
        ],
    }

    for message_id, texts in expected.items():
        message_html = bubble(html, message_id)
        assert BODY in message_html
        for text in texts:
            assert str(escape(text)) in message_html, (message_id, text)


def test_conversation_lists_in_order(client, clinic, staff, pet_parent):
    first = outbound_sms(clinic, pet_parent, status="delivered").message_id
    second = outbound_sms(clinic, pet_parent, status="delivered").message_id
    sign_in(client, staff.email)

    html = client.get(f"/admin/clients/{pet_parent.id}").get_data(as_text=True)

    assert html.index(f'id="message-{first}"') < html.index(f'id="message-{second}"')


def test_send_form_queues_message(client, staff, pet_parent):
    sign_in(client, staff.email)
    page = client.get(f"/admin/clients/{pet_parent.id}")

    response = client.post(
        f"/admin/clients/{pet_parent.id}/messages", data={"body": BODY, "csrf_token": csrf_token(page.data)}
    )
    message = db.session.execute(db.select(Message)).scalar_one()

    assert response.status_code == 302
    assert response.headers["Location"] == f"/admin/clients/{pet_parent.id}"
    assert message.body == BODY
    assert message.client_id == pet_parent.id
    assert message.source == "admin"
    assert message.author_id == staff.id
    assert message.delivery("sms").status == "queued"
    assert sms_queue_length() == 1
    assert b"Message queued to send." in client.get(response.headers["Location"]).data


@pytest.mark.parametrize(
    ("body", "error"),
    [("", b"The message body is empty"), ("   ", b"The message body is empty"), ("x" * 1601, b"at most 1600 characters")],
    ids=["empty", "blank", "1601_chars"],
)
def test_send_form_invalid_body(client, staff, pet_parent, body, error):
    sign_in(client, staff.email)
    page = client.get(f"/admin/clients/{pet_parent.id}")

    response = client.post(
        f"/admin/clients/{pet_parent.id}/messages", data={"body": body, "csrf_token": csrf_token(page.data)}
    )

    assert response.status_code == 302
    assert count(Message) == 0
    assert sms_queue_length() == 0
    assert error in client.get(response.headers["Location"]).data


def test_send_form_without_csrf_400(client, staff, pet_parent):
    sign_in(client, staff.email)

    response = client.post(f"/admin/clients/{pet_parent.id}/messages", data={"body": BODY})

    assert response.status_code == 400
    assert count(Message) == 0
    assert sms_queue_length() == 0


def test_new_conversation_creates_client(client, clinic, staff):
    sign_in(client, staff.email)
    page = client.get("/admin/")

    response = client.post(
        "/admin/messages", data={"to": "(555) 123-4560", "body": BODY, "csrf_token": csrf_token(page.data)}
    )
    created = db.session.execute(db.select(Client)).scalar_one()

    assert response.headers["Location"] == f"/admin/clients/{created.id}"
    assert created.clinic_id == clinic.id
    assert created.mobile_number == "+15551234560"
    assert count(Message) == 1
    assert sms_queue_length() == 1


def test_new_conversation_invalid_number(client, staff):
    sign_in(client, staff.email)
    page = client.get("/admin/")

    response = client.post("/admin/messages", data={"to": "hello", "body": BODY, "csrf_token": csrf_token(page.data)})

    assert response.headers["Location"] == "/admin/"
    assert b"&#39;hello&#39; is not a valid phone number" in client.get("/admin/").data
    assert count(Client) == 0
    assert count(Message) == 0


@pytest.fixture
def other_clinic_client(factory):
    other = factory.clinic("twilio", name="Other Clinic")
    return factory.client(other, "+15551230002", name="Olive Other")


def test_other_clinic_client_page_404(client, staff, other_clinic_client):
    sign_in(client, staff.email)

    response = client.get(f"/admin/clients/{other_clinic_client.id}")

    assert response.status_code == 404
    assert b"Olive Other" not in response.data


def test_other_clinic_send_404(client, staff, pet_parent, other_clinic_client):
    sign_in(client, staff.email)
    page = client.get(f"/admin/clients/{pet_parent.id}")

    response = client.post(
        f"/admin/clients/{other_clinic_client.id}/messages",
        data={"body": BODY, "csrf_token": csrf_token(page.data)},
    )

    assert response.status_code == 404
    assert count(Message) == 0
    assert sms_queue_length() == 0


def test_other_clinic_client_not_listed(client, staff, pet_parent, other_clinic_client):
    sign_in(client, staff.email)

    listing = client.get("/admin/?q=Olive")

    assert b"Olive Other" not in listing.data


def test_operator_sees_every_clinic(client, factory, pet_parent, other_clinic_client):
    operator = factory.staff(None, email="ops@pawpost.example", operator=True)
    sign_in(client, operator.email)

    listing = client.get("/admin/")

    assert b"Pat Parent" in listing.data
    assert b"Olive Other" in listing.data
    assert client.get(f"/admin/clients/{other_clinic_client.id}").status_code == 200


def test_logout_get_not_allowed(client, staff):
    sign_in(client, staff.email)

    response = client.get("/admin/logout")

    assert response.status_code == 405
    assert signed_in(client) == f"staff:{staff.id}"


def test_logout_without_csrf_400(client, staff):
    sign_in(client, staff.email)

    response = client.post("/admin/logout")

    assert response.status_code == 400
    assert signed_in(client) == f"staff:{staff.id}"


def test_logout_with_csrf(client, staff):
    sign_in(client, staff.email)
    page = client.get("/admin/")

    response = client.post("/admin/logout", data={"csrf_token": csrf_token(page.data)})

    assert response.status_code == 302
    assert response.headers["Location"] == "/admin/login"
    assert signed_in(client) is None
    assert client.get("/admin/").status_code == 302
