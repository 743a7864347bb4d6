"""Consent: inbound keywords, opt-outs and landlines learned from provider errors, and line-type lookups.

End-to-end cases have a phone text the clinic's number through the sandbox
(``POST /phones/<number>/send``), which posts the provider's inbound webhook to Pawpost. The
sandbox handles STOP for Twilio numbers the way Twilio long codes do, and does nothing for
Bandwidth numbers, so Pawpost must keep and honour its own consent record.
"""

import pytest
import requests
from markupsafe import escape

from conftest import STAFF_PASSWORD, run_worker
from helpers import bearer, count, csrf_token, send_via_api, wait_for_callbacks, wait_final
from notifier.inbound import OPT_IN_REPLY, OPT_OUT_REPLY
from notifier.keywords import match
from portal.extensions import db
from portal.models import Consent, Delivery, Message, PhoneLine

# settle_sandbox is an autouse fixture, so importing it applies it to every test here.
from provider_stubs import (  # noqa: F401
    provider_creates,
    queued_jobs,
    run_send_job,
    settle_sandbox,
    sms_delivery,
)

PHONE = "+15551230001"
OPTED_OUT_NUMBER = "+15551230030"
LANDLINE_NUMBER = "+15551230020"
OPTED_OUT_TEXT = (
    "Not sent by text: The client previously texted STOP. "
    "They need to text START to your clinic number to opt back in."
)
LANDLINE_TEXT = (
    "Not sent by text: The number on the client record isn't a mobile line. "
    "Update the contact record in your PIMS to a mobile number."
)


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("STOP", "opt_out"),
        (" stop ", "opt_out"),
        ("Stop.", "opt_out"),
        ("STOP!", "opt_out"),
        ("stop\n", "opt_out"),
        ("StopAll", "opt_out"),
        ("unsubscribe", "opt_out"),
        ("Cancel", "opt_out"),
        ("END", "opt_out"),
        ("quit!", "opt_out"),
        ("Revoke", "opt_out"),
        ("OPTOUT", "opt_out"),
        ("OPT OUT", "opt_out"),
        ("opt out", "opt_out"),
        ("opt-out", "opt_out"),
        ("Opt  Out.", "opt_out"),
        ("START", "opt_in"),
        ("start.", "opt_in"),
        ("Yes", "opt_in"),
        ("YES!", "opt_in"),
        ("unstop", "opt_in"),
        ("HELP", "help"),
        ("help?", "help"),
        (" Info ", "help"),
        ("INFO.", "help"),
        ("please don't stop the reminders", "review"),
        ("Stop please", "review"),
        ("can I unsubscribe my other dog?", "review"),
        ("Please remove me from this list", "review"),
        ("Thanks, see you Tuesday", None),
        ("Yes please, book 3pm", None),
        ("Rex stopped eating yesterday", None),
        ("Can I get info about the vaccine?", None),
        ("", None),
        (None, None),
    ],
)
def test_keyword_match(body, expected):
    assert match(body) == expected


def text_clinic(live, phone, clinic, body, **fields):
    """Have ``phone`` text the clinic's number through the sandbox, and return the sandbox's response."""
    response = requests.post(
        f"{live.sandbox_url}/phones/{phone}/send",
        json={"to": clinic.sender_number, "body": body, **fields},
        timeout=10,
    )
    assert response.status_code == 202, response.text
    assert response.json()["delivered"] is True
    return response.json()


def received(live, phone):
    """Return the bodies of the texts the phone received, oldest first."""
    return [m["body"] for m in requests.get(f"{live.sandbox_url}/phones/{phone}/messages", timeout=5).json()]


def consent(clinic, number):
    db.session.rollback()
    return db.session.execute(
        db.select(Consent).where(
            Consent.sender_number == clinic.sender_number, Consent.client_number == number
        )
    ).scalar_one_or_none()


def line_of(number):
    db.session.rollback()
    return db.session.execute(db.select(PhoneLine).where(PhoneLine.number == number)).scalar_one_or_none()


def sms_of(message_id):
    db.session.rollback()
    return db.session.execute(
        db.select(Delivery).where(Delivery.message_id == message_id, Delivery.channel == "sms")
    ).scalar_one()


def staff_text(client, token, message_id):
    body = client.get(f"/api/v1/messages/{message_id}", headers=bearer(token)).get_json()
    return {d["channel"]: d for d in body["deliveries"]}


def sign_in_staff(client, factory, clinic):
    user = factory.staff(clinic)
    page = client.get("/admin/login")
    response = client.post(
        "/admin/login",
        data={"email": user.email, "password": STAFF_PASSWORD, "csrf_token": csrf_token(page.data)},
    )
    assert response.status_code == 302


def client_id_of(clinic, number):
    db.session.rollback()
    from portal.models import Client

    return db.session.execute(
        db.select(Client.id).where(Client.clinic_id == clinic.id, Client.mobile_number == number)
    ).scalar_one()


def test_bandwidth_stop_suppresses_later_texts(client, live, factory):
    clinic = factory.clinic("bandwidth", name="Happy Paws")
    token = factory.api_token(clinic)

    text_clinic(live, PHONE, clinic, "Stop.")
    stored = consent(clinic, PHONE)
    run_worker(live.app)
    wait_for_callbacks(live)
    confirmations = received(live, PHONE)
    creates_after_reply = len(provider_creates(live))
    message_id = send_via_api(client, token, PHONE)
    run_send_job(live.app, message_id)
    deliveries = staff_text(client, token, message_id)

    assert stored.opted_out is True
    assert stored.source == "keyword"
    assert confirmations == [OPT_OUT_REPLY.format(clinic="Happy Paws")]
    assert deliveries["sms"]["status"] == "suppressed"
    assert deliveries["sms"]["category"] == "opted_out"
    assert deliveries["sms"]["staff_message"] == OPTED_OUT_TEXT
    assert deliveries["portal"]["status"] == "delivered"
    assert len(provider_creates(live)) == creates_after_reply == 1


def test_twilio_stop_no_second_reply(client, live, factory):
    clinic = factory.clinic("twilio")
    token = factory.api_token(clinic)

    text_clinic(live, PHONE, clinic, "STOP")
    replies_queued = queued_jobs()
    message_id = send_via_api(client, token, PHONE)
    run_send_job(live.app, message_id)

    # The only confirmation is the one the sandbox sends in Twilio's name.
    assert replies_queued == 0
    assert len(received(live, PHONE)) == 1
    assert consent(clinic, PHONE).opted_out is True
    assert sms_delivery(message_id).status == "suppressed"
    assert provider_creates(live) == []


def test_stop_is_per_clinic(client, live, factory):
    first = factory.clinic("bandwidth")
    second = factory.clinic("bandwidth")

    text_clinic(live, PHONE, first, "STOP")
    blocked = send_via_api(client, factory.api_token(first), PHONE)
    allowed = send_via_api(client, factory.api_token(second), PHONE)
    run_send_job(live.app, blocked)
    run_send_job(live.app, allowed)

    assert consent(second, PHONE) is None
    assert sms_delivery(blocked).status == "suppressed"
    assert wait_final(allowed, "sms").status == "delivered"


@pytest.mark.parametrize("provider", ["twilio", "bandwidth"])
def test_start_clears_opt_out(client, live, factory, provider):
    clinic = factory.clinic(provider, name="Happy Paws")

    text_clinic(live, PHONE, clinic, "STOP")
    text_clinic(live, PHONE, clinic, "start")
    message_id = send_via_api(client, factory.api_token(clinic), PHONE)
    run_send_job(live.app, message_id)
    stored = consent(clinic, PHONE)

    assert stored.opted_out is False
    assert stored.source == "client_opt_in"
    assert wait_final(message_id, "sms").status == "delivered"


def test_bandwidth_start_confirmed(live, factory):
    clinic = factory.clinic("bandwidth", name="Happy Paws")

    text_clinic(live, PHONE, clinic, "STOP")
    text_clinic(live, PHONE, clinic, "START")
    run_worker(live.app)
    wait_for_callbacks(live)

    assert received(live, PHONE) == [
        OPT_OUT_REPLY.format(clinic="Happy Paws"),
        OPT_IN_REPLY.format(clinic="Happy Paws"),
    ]


def test_bandwidth_repeated_stop_confirmed_once(live, factory):
    clinic = factory.clinic("bandwidth", name="Happy Paws")

    text_clinic(live, PHONE, clinic, "STOP")
    text_clinic(live, PHONE, clinic, "stop")
    run_worker(live.app)
    wait_for_callbacks(live)

    assert received(live, PHONE) == [OPT_OUT_REPLY.format(clinic="Happy Paws")]
    assert consent(clinic, PHONE).opted_out is True


def test_yes_without_opt_out_no_reply(live, factory):
    # YES is an opt-in keyword and also the usual reply to "Reply YES to confirm".
    clinic = factory.clinic("bandwidth")

    text_clinic(live, PHONE, clinic, "Yes")
    db.session.rollback()
    message = db.session.execute(db.select(Message).where(Message.direction == "inbound")).scalar_one()

    assert message.keyword == "opt_in"
    assert queued_jobs() == 0
    assert consent(clinic, PHONE).opted_out is False


def test_bandwidth_help_gets_help_text(live, factory):
    clinic = factory.clinic("bandwidth", name="Happy Paws")

    text_clinic(live, PHONE, clinic, "help")
    run_worker(live.app)
    wait_for_callbacks(live)

    assert received(live, PHONE) == [clinic.help_reply]
    assert consent(clinic, PHONE) is None


def test_twilio_help_no_pawpost_reply(live, factory):
    clinic = factory.clinic("twilio")

    text_clinic(live, PHONE, clinic, "HELP")

    assert queued_jobs() == 0
    assert provider_creates(live) == []
    assert received(live, PHONE) == []
    assert count(Message, Message.keyword == "help") == 1


@pytest.mark.parametrize("provider", ["twilio", "bandwidth"])
def test_near_miss_flagged_for_staff(client, live, factory, provider):
    clinic = factory.clinic(provider)
    sign_in_staff(client, factory, clinic)

    text_clinic(live, PHONE, clinic, "please don't stop the reminders")
    page = client.get(f"/admin/clients/{client_id_of(clinic, PHONE)}")
    db.session.rollback()
    message = db.session.execute(db.select(Message).where(Message.direction == "inbound")).scalar_one()

    assert message.keyword == "review"
    assert consent(clinic, PHONE) is None
    assert queued_jobs() == 0
    assert page.status_code == 200
    assert str(escape("This reply mentions stopping texts.")).encode() in page.data


@pytest.mark.parametrize(("provider", "code"), [("twilio", "21610"), ("bandwidth", "4775")])
def test_provider_opt_out_recorded(client, live, factory, provider, code):
    clinic = factory.clinic(provider, fallback=False)
    token = factory.api_token(clinic)

    first = send_via_api(client, token, OPTED_OUT_NUMBER)
    run_send_job(live.app, first)
    failed = wait_final(first, "sms")
    creates = len(provider_creates(live))
    later = send_via_api(client, token, OPTED_OUT_NUMBER)
    run_send_job(live.app, later)
    stored = consent(clinic, OPTED_OUT_NUMBER)

    assert failed.error_code == code
    assert stored.opted_out is True
    assert stored.source == "provider_error"
    assert sms_delivery(later).status == "suppressed"
    assert sms_delivery(later).category == "opted_out"
    assert len(provider_creates(live)) == creates == 1


@pytest.mark.parametrize(("provider", "code"), [("twilio", "30006"), ("bandwidth", "4720")])
def test_provider_landline_recorded(client, live, factory, provider, code):
    clinic = factory.clinic(provider, fallback=False)
    token = factory.api_token(clinic)
    sign_in_staff(client, factory, clinic)

    first = send_via_api(client, token, LANDLINE_NUMBER)
    run_send_job(live.app, first)
    failed = wait_final(first, "sms")
    later = send_via_api(client, token, LANDLINE_NUMBER)
    run_send_job(live.app, later)
    page = client.get(f"/admin/clients/{client_id_of(clinic, LANDLINE_NUMBER)}")

    assert failed.error_code == code
    assert line_of(LANDLINE_NUMBER).line_type == "landline"
    assert sms_delivery(later).status == "suppressed"
    assert sms_delivery(later).category == "landline"
    assert staff_text(client, token, later)["sms"]["staff_message"] == LANDLINE_TEXT
    assert len(provider_creates(live)) == 1
    assert b'data-field="line-type">Landline' in page.data


def test_twilio_lookup_finds_landline(client, live, factory, monkeypatch):
    monkeypatch.setitem(live.app.config, "PAWPOST_LINE_TYPE_LOOKUP", True)
    clinic = factory.clinic("twilio")

    message_id = send_via_api(client, factory.api_token(clinic), LANDLINE_NUMBER)
    run_worker(live.app)
    lookups = [r for r in live.carrier.logged_requests() if r["path"].startswith("/v2/PhoneNumbers/")]
    creates = [r for r in live.carrier.logged_requests() if r["path"].endswith("/Messages.json")]

    assert line_of(LANDLINE_NUMBER).line_type == "landline"
    assert len(lookups) == 1
    assert lookups[0]["query"] == {"Fields": ["line_type_intelligence"]}
    # The lookup runs before the first text, so the landline never gets one.
    assert creates == []
    assert sms_of(message_id).status == "suppressed"


def test_lookup_off_by_default(client, live, factory):
    clinic = factory.clinic("twilio")

    message_id = send_via_api(client, factory.api_token(clinic), PHONE)
    run_send_job(live.app, message_id)

    # The one queued job is the send job that run_send_job ran outside RQ.
    assert queued_jobs() == 1
    assert [r for r in live.carrier.logged_requests() if r["path"].startswith("/v2/")] == []
