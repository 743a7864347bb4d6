"""Pet Portal settings: email and push choices, and each clinic's texting state."""

import re

import pytest

from notifier import policy
from portal.extensions import db
from portal.models import Client, utcnow
from portal_helpers import page_token, sign_in

MOBILE = "+15551230001"


@pytest.fixture
def person(factory, client):
    """Return a signed-in pet parent known to two clinics; only the first has a verified email."""
    happy = factory.clinic("bandwidth", name="Happy Paws Clinic")
    maple = factory.clinic("twilio", name="Maple Street Vets")
    at_happy = factory.client(happy, MOBILE)
    at_happy.email = "pat@example.com"
    at_happy.email_verified_at = utcnow()
    at_maple = factory.client(maple, MOBILE)
    db.session.commit()
    sign_in(client, at_happy.id)
    return at_happy, at_maple


def save(http, **fields):
    data = {"csrf_token": page_token(http, "/preferences"), **fields}
    return http.post("/preferences", data=data)


def stored(client_id):
    db.session.rollback()
    return db.session.get(Client, client_id)


def texting_section(html, clinic_id):
    return re.search(rf'data-clinic="{clinic_id}">(.*?)</li>', html, re.S).group(1)


def test_email_choice_only_for_verified(client, person):
    at_happy, at_maple = person

    html = client.get("/preferences").get_data(as_text=True)

    assert f'value="{at_happy.id}"' in html
    assert "Email me new messages from Happy Paws Clinic" in html
    assert "Email me new messages from Maple Street Vets" not in html


def test_no_email_choice_without_verified(client, person):
    at_happy, _ = person
    at_happy.email_verified_at = None
    db.session.commit()

    html = client.get("/preferences").get_data(as_text=True)

    assert 'name="email_clients"' not in html
    assert "No clinic has a verified email address for you." in html


def test_email_turned_on(client, person):
    at_happy, at_maple = person

    response = save(client, email_clients=str(at_happy.id))

    assert response.status_code == 302
    assert stored(at_happy.id).email_enabled is True
    assert stored(at_maple.id).email_enabled is False


def test_email_turned_off(client, person):
    at_happy, _ = person
    at_happy.email_enabled = True
    db.session.commit()

    save(client)

    assert stored(at_happy.id).email_enabled is False


def test_email_for_unverified_rejected(client, person):
    _, at_maple = person

    response = save(client, email_clients=str(at_maple.id))

    assert response.status_code == 200
    assert stored(at_maple.id).email_enabled is False


@pytest.mark.parametrize("push", [True, False])
def test_push_choice_saved_for_every_clinic(client, person, push):
    at_happy, at_maple = person

    save(client, **({"push": "y"} if push else {}))

    assert stored(at_happy.id).push_enabled is push
    assert stored(at_maple.id).push_enabled is push


def test_push_button_and_no_script_note(client, person):
    html = client.get("/preferences").get_data(as_text=True)

    assert '<button type="button" id="enable-push"' in html
    assert "Push notifications need JavaScript." in html
    assert '<meta name="csrf-token"' in html


@pytest.mark.parametrize(
    ("state", "expected"),
    [
        (None, "Texts are on."),
        ("opted_out", "You turned off texts. Text START to (555) 900-0001 to turn texts back on."),
        ("landline", "the number it has for you is a landline"),
    ],
    ids=["on", "opted_out", "landline"],
)
def test_texting_state(client, person, state, expected):
    at_happy, at_maple = person
    if state == "opted_out":
        policy.record_consent(at_happy.clinic.sender_number, MOBILE, True, "keyword")
    elif state == "landline":
        policy.record_line_type(MOBILE, "landline", "lookup")
    db.session.commit()

    html = client.get("/preferences").get_data(as_text=True)

    assert expected in texting_section(html, at_happy.clinic_id)


def test_opt_out_is_per_clinic(client, person):
    at_happy, at_maple = person
    policy.record_consent(at_happy.clinic.sender_number, MOBILE, True, "keyword")
    db.session.commit()

    html = client.get("/preferences").get_data(as_text=True)

    assert "Texts are on." in texting_section(html, at_maple.clinic_id)
    assert "You turned off texts." in texting_section(html, at_happy.clinic_id)


def test_no_button_turns_texts_on(client, person):
    at_happy, _ = person
    policy.record_consent(at_happy.clinic.sender_number, MOBILE, True, "keyword")
    db.session.commit()

    section = texting_section(client.get("/preferences").get_data(as_text=True), at_happy.clinic_id)

    assert "<form" not in section
    assert "<button" not in section
    assert f'href="sms:{at_happy.clinic.sender_number}?body=START"' in section

