"""Provider webhooks: authentication, idempotent status updates and Bandwidth event arrays.

Callback bodies are built by hand in the shapes the providers document: Twilio's form-encoded
StatusCallback request, signed like ``X-Twilio-Signature``, and Bandwidth's JSON array of
message events with HTTP basic auth.
"""

import json
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from flask import request as flask_request
from rq import Queue
from twilio.request_validator import RequestValidator

from conftest import TWILIO_SID, TWILIO_TOKEN
from helpers import STATUS_EVENT_MODES, apply_queued, count, delivery, outbound_sms, provider_events, use_status_event_mode
from notifier import queues
from portal.extensions import db
from portal.models import Delivery, Message

CLIENT_NUMBER = "+15551230001"
TWILIO_SMS_SID = "SM" + "a1" * 16
EVENT_TIME = "2025-03-04T15:16:17.000Z"


@pytest.fixture(autouse=True, params=STATUS_EVENT_MODES)
def status_event_mode(request, app, monkeypatch):
    """Run every test here with status events applied in the request, and again queued for the workers."""
    use_status_event_mode(app, monkeypatch, request.param)
    return request.param


@pytest.fixture
def twilio_sms(factory):
    """Return an SMS delivery of a Twilio clinic without fallback, accepted by Twilio."""
    clinic = factory.clinic("twilio", fallback=False)
    client = factory.client(clinic, CLIENT_NUMBER)
    return outbound_sms(clinic, client, provider_message_id=TWILIO_SMS_SID)


@pytest.fixture
def bandwidth_sms(factory):
    """Return an SMS delivery of a Bandwidth clinic with fallback on, accepted by Bandwidth."""
    clinic = factory.clinic("bandwidth")
    client = factory.client(clinic, CLIENT_NUMBER)
    return outbound_sms(clinic, client)


def _clinic(sms):
    return sms.message.clinic


# Twilio


def twilio_path(clinic_id, ref):
    return f"/webhooks/twilio/{clinic_id}/status?ref={ref}"


def twilio_params(status, error_code=None, account_sid=TWILIO_SID, message_sid=TWILIO_SMS_SID):
    """Return a Twilio StatusCallback form: the official example's fields plus To and ApiVersion."""
    params = {
        "AccountSid": account_sid,
        "ApiVersion": "2010-04-01",
        "From": "+15559000001",
        "MessageSid": message_sid,
        "MessageStatus": status,
        "SmsSid": message_sid,
        "SmsStatus": status,
        "To": CLIENT_NUMBER,
    }
    if error_code is not None:
        params["ErrorCode"] = str(error_code)
        params["ErrorMessage"] = "Delivery failed."
    return params


def twilio_signature(url, params, token=TWILIO_TOKEN):
    return RequestValidator(token).compute_signature(url, params)


def post_twilio(client, app, clinic_id, ref, params, token=TWILIO_TOKEN, **kwargs):
    """Post a status callback signed over the public URL, as Twilio would."""
    path = twilio_path(clinic_id, ref)
    signature = twilio_signature(app.config["PAWPOST_BASE_URL"] + path, params, token)
    return client.post(path, data=params, headers={"X-Twilio-Signature": signature}, **kwargs)


def ref_of(sms):
    return f"{sms.id}.{sms.attempts}"


def test_twilio_signed_callback_applied(client, app, twilio_sms):
    response = post_twilio(client, app, _clinic(twilio_sms).id, ref_of(twilio_sms), twilio_params("sent"))
    events = provider_events()

    assert response.status_code == 200
    assert delivery(twilio_sms.message_id, "sms").status == "sent"
    assert len(events) == 1
    assert events[0].outcome == "applied"
    assert events[0].delivery_id == twilio_sms.id
    assert events[0].provider_message_id == TWILIO_SMS_SID


def test_twilio_undelivered_stores_code(client, app, twilio_sms):
    params = twilio_params("undelivered", error_code=30006)

    response = post_twilio(client, app, _clinic(twilio_sms).id, ref_of(twilio_sms), params)
    sms = delivery(twilio_sms.message_id, "sms")

    assert response.status_code == 200
    assert sms.status == "undelivered"
    assert sms.error_code == "30006"
    assert sms.category == "landline"
    assert sms.final_at is not None


def _forged(factory, sms, app):
    path = twilio_path(_clinic(sms).id, ref_of(sms))
    return path, twilio_params("delivered"), {"X-Twilio-Signature": "bm90IGEgc2lnbmF0dXJl"}


def _unsigned(factory, sms, app):
    return twilio_path(_clinic(sms).id, ref_of(sms)), twilio_params("delivered"), {}


def _signed_for(path, params, app, token=TWILIO_TOKEN):
    return {"X-Twilio-Signature": twilio_signature(app.config["PAWPOST_BASE_URL"] + path, params, token)}


def _unknown_clinic(factory, sms, app):
    path = twilio_path(999999, ref_of(sms))
    params = twilio_params("delivered")
    return path, params, _signed_for(path, params, app)


def _bandwidth_clinic(factory, sms, app):
    other = factory.clinic("bandwidth")
    path = twilio_path(other.id, ref_of(sms))
    params = twilio_params("delivered")
    return path, params, _signed_for(path, params, app)


def _other_twilio_clinic(factory, sms, app):
    other = factory.clinic("twilio")
    other.twilio_auth_token = "token-of-another-clinic"
    db.session.commit()
    path = twilio_path(other.id, ref_of(sms))
    params = twilio_params("delivered")
    return path, params, _signed_for(path, params, app)


def _replayed_to_other_clinic(factory, sms, app):
    other = factory.clinic("twilio")
    params = twilio_params("delivered")
    signed = _signed_for(twilio_path(_clinic(sms).id, ref_of(sms)), params, app)
    return twilio_path(other.id, ref_of(sms)), params, signed


def _other_token(factory, sms, app):
    path = twilio_path(_clinic(sms).id, ref_of(sms))
    params = twilio_params("delivered")
    return path, params, _signed_for(path, params, app, token="another-auth-token")


def _other_account(factory, sms, app):
    path = twilio_path(_clinic(sms).id, ref_of(sms))
    params = twilio_params("delivered", account_sid="AC" + "f" * 32)
    return path, params, _signed_for(path, params, app)


def _tampered_status(factory, sms, app):
    path = twilio_path(_clinic(sms).id, ref_of(sms))
    headers = _signed_for(path, twilio_params("sent"), app)
    return path, twilio_params("delivered"), headers


def _tampered_ref(factory, sms, app):
    params = twilio_params("delivered")
    headers = _signed_for(twilio_path(_clinic(sms).id, ref_of(sms)), params, app)
    return twilio_path(_clinic(sms).id, f"{sms.id}.7"), params, headers


@pytest.mark.parametrize(
    "build",
    [
        _forged,
        _unsigned,
        _unknown_clinic,
        _bandwidth_clinic,
        _other_twilio_clinic,
        _replayed_to_other_clinic,
        _other_token,
        _other_account,
        _tampered_status,
        _tampered_ref,
    ],
)
def test_twilio_rejected_changes_nothing(client, app, factory, twilio_sms, build):
    updated_at = twilio_sms.updated_at
    path, params, headers = build(factory, twilio_sms, app)

    response = client.post(path, data=params, headers=headers)
    sms = delivery(twilio_sms.message_id, "sms")

    assert response.status_code == 403
    assert count(Message) == 1
    assert provider_events() == []
    assert sms.status == "accepted"
    assert sms.updated_at == updated_at


@pytest.mark.parametrize("signature", ["sïgnature", "=" * 28, "a" * 4000])
def test_twilio_malformed_signature_rejected(client, app, twilio_sms, signature):
    path = twilio_path(_clinic(twilio_sms).id, ref_of(twilio_sms))

    response = client.post(path, data=twilio_params("delivered"), headers={"X-Twilio-Signature": signature})

    assert response.status_code == 403
    assert delivery(twilio_sms.message_id, "sms").status == "accepted"


@pytest.mark.parametrize(
    "request_options",
    [
        {"base_url": "http://internal:8000"},
        {"base_url": "http://10.0.0.7:8000/"},
        {
            "base_url": "http://internal:8000",
            "headers": {"X-Forwarded-Proto": "https", "X-Forwarded-Host": "pawpost.example.com"},
        },
    ],
)
def test_twilio_behind_proxy_accepted(client, app, twilio_sms, request_options):
    params = twilio_params("delivered")
    path = twilio_path(_clinic(twilio_sms).id, ref_of(twilio_sms))
    headers = {**request_options.get("headers", {}), **_signed_for(path, params, app)}

    response = client.post(path, data=params, headers=headers, base_url=request_options["base_url"])

    assert response.status_code == 200
    assert delivery(twilio_sms.message_id, "sms").status == "delivered"


def test_twilio_internal_url_rejected(client, app, twilio_sms):
    params = twilio_params("delivered")
    path = twilio_path(_clinic(twilio_sms).id, ref_of(twilio_sms))
    signature = twilio_signature("http://internal:8000" + path, params)

    response = client.post(
        path, data=params, headers={"X-Twilio-Signature": signature}, base_url="http://internal:8000"
    )

    assert response.status_code == 403
    assert delivery(twilio_sms.message_id, "sms").status == "accepted"


@pytest.mark.parametrize(
    ("statuses", "final_status", "outcomes"),
    [
        (["sent", "sent"], "sent", ["applied", "duplicate"]),
        (["delivered", "delivered"], "delivered", ["applied", "duplicate"]),
        (["sent", "delivered", "sent"], "delivered", ["applied", "applied", "duplicate"]),
        (["delivered", "sent"], "delivered", ["applied", "duplicate"]),
        (["sending", "sent", "delivered"], "delivered", ["duplicate", "applied", "applied"]),
        (["queued"], "accepted", ["duplicate"]),
        (["failed", "delivered"], "failed", ["applied", "duplicate"]),
        (["delivered", "undelivered"], "delivered", ["applied", "duplicate"]),
        (["DELIVERED"], "delivered", ["applied"]),
    ],
)
def test_twilio_status_sequence(client, app, twilio_sms, statuses, final_status, outcomes):
    clinic_id = _clinic(twilio_sms).id
    for status in statuses:
        error_code = 30006 if status in ("failed", "undelivered") else None
        response = post_twilio(client, app, clinic_id, ref_of(twilio_sms), twilio_params(status, error_code))
        assert response.status_code == 200

    assert delivery(twilio_sms.message_id, "sms").status == final_status
    assert [event.outcome for event in provider_events()] == outcomes


def test_twilio_duplicate_keeps_first_transition(client, app, twilio_sms):
    clinic_id = _clinic(twilio_sms).id
    post_twilio(client, app, clinic_id, ref_of(twilio_sms), twilio_params("delivered"))
    first = delivery(twilio_sms.message_id, "sms")
    first_final_at, first_updated_at = first.final_at, first.updated_at

    post_twilio(client, app, clinic_id, ref_of(twilio_sms), twilio_params("delivered"))
    second = delivery(twilio_sms.message_id, "sms")

    assert second.final_at == first_final_at
    assert second.updated_at == first_updated_at
    assert len(provider_events()) == 2


def test_twilio_old_attempt_is_stale(client, app, factory):
    clinic = factory.clinic("twilio", fallback=False)
    sms = outbound_sms(clinic, factory.client(clinic, CLIENT_NUMBER), attempts=2)

    response = post_twilio(client, app, clinic.id, f"{sms.id}.1", twilio_params("undelivered", 30003))
    events = provider_events()

    assert response.status_code == 200
    assert delivery(sms.message_id, "sms").status == "accepted"
    assert delivery(sms.message_id, "sms").error_code is None
    assert [event.outcome for event in events] == ["stale"]


def test_twilio_unknown_status_ignored(client, app, twilio_sms):
    params = twilio_params("teleported")

    response = post_twilio(client, app, _clinic(twilio_sms).id, ref_of(twilio_sms), params)
    events = provider_events()

    assert response.status_code == 200
    assert delivery(twilio_sms.message_id, "sms").status == "accepted"
    assert len(events) == 1
    assert events[0].outcome == "ignored"
    assert events[0].status == "teleported"
    assert json.loads(events[0].payload)["MessageStatus"] == ["teleported"]


@pytest.mark.parametrize("missing", ["MessageSid", "MessageStatus"])
def test_twilio_missing_field_400(client, app, twilio_sms, missing):
    params = twilio_params("delivered")
    del params[missing]

    response = post_twilio(client, app, _clinic(twilio_sms).id, ref_of(twilio_sms), params)

    assert response.status_code == 400
    assert response.is_json
    assert response.get_json()["error"]["message"] == "MessageSid and MessageStatus are required."
    assert provider_events() == []
    assert delivery(twilio_sms.message_id, "sms").status == "accepted"


# "%C2%B2" is "²" percent-encoded, as it would appear in the URL Twilio signs.
@pytest.mark.parametrize("ref", ["999999.1", "12345678901.1", "not-a-ref", "%C2%B2.1", ""])
def test_twilio_unknown_ref_unmatched(client, app, twilio_sms, ref):
    params = twilio_params("delivered", message_sid="SM" + "b2" * 16)

    response = post_twilio(client, app, _clinic(twilio_sms).id, ref, params)
    events = provider_events()

    assert response.status_code == 200
    assert [event.outcome for event in events] == ["unmatched"]
    assert delivery(twilio_sms.message_id, "sms").status == "accepted"


def test_twilio_other_clinic_delivery_unmatched(client, app, factory, twilio_sms):
    # Both clinics share one Twilio account, so the signature is valid for either URL.
    other = factory.clinic("twilio")

    response = post_twilio(client, app, other.id, ref_of(twilio_sms), twilio_params("delivered"))

    assert response.status_code == 200
    assert [event.outcome for event in provider_events()] == ["unmatched"]
    assert delivery(twilio_sms.message_id, "sms").status == "accepted"


# Bandwidth


def bandwidth_path(clinic_id):
    return f"/webhooks/bandwidth/{clinic_id}/messages"


def bandwidth_status(sms, event_type, error_code=None, message_id="1741101377000abcdef"):
    """Return one Bandwidth status event for ``sms``, with our ref in the tag."""
    clinic = sms.message.clinic
    event = {
        "type": event_type,
        "time": EVENT_TIME,
        "to": CLIENT_NUMBER,
        "description": "ok" if error_code is None else "Carrier rejected the message as spam.",
        "message": {
            "id": message_id,
            "owner": clinic.sender_number,
            "applicationId": clinic.bandwidth_application_id,
            "time": EVENT_TIME,
            "segmentCount": 1,
            "direction": "out",
            "to": [CLIENT_NUMBER],
            "from": clinic.sender_number,
            "text": "",
            "priority": "default",
            "tag": ref_of(sms),
        },
    }
    if error_code is not None:
        event["errorCode"] = error_code
    return event


def bandwidth_inbound(clinic, text="Thanks, see you Tuesday", message_id="1741101399000inbound"):
    """Return one Bandwidth message-received event from the client to the clinic's number."""
    return {
        "type": "message-received",
        "time": EVENT_TIME,
        "to": clinic.sender_number,
        "description": "Incoming message received",
        "message": {
            "id": message_id,
            "owner": clinic.sender_number,
            "applicationId": clinic.bandwidth_application_id,
            "time": EVENT_TIME,
            "segmentCount": 1,
            "direction": "in",
            "to": [clinic.sender_number],
            "from": CLIENT_NUMBER,
            "text": text,
        },
    }


def post_bandwidth(client, clinic, events, auth=None, **kwargs):
    """Post an event array with the clinic's callback credentials unless ``auth`` is given."""
    auth = auth if auth is not None else (clinic.webhook_username, clinic.webhook_password)
    return client.post(bandwidth_path(clinic.id), json=events, auth=auth, **kwargs)


def inbound_messages():
    db.session.rollback()
    return db.session.execute(db.select(Message).where(Message.direction == "inbound")).scalars().all()


def test_bandwidth_basic_auth_applied(client, bandwidth_sms):
    clinic = _clinic(bandwidth_sms)

    response = post_bandwidth(client, clinic, [bandwidth_status(bandwidth_sms, "message-delivered")])
    events = provider_events()

    assert response.status_code == 200
    assert delivery(bandwidth_sms.message_id, "sms").status == "delivered"
    assert [event.outcome for event in events] == ["applied"]
    assert events[0].provider == "bandwidth"


def _wrong_password(factory, clinic):
    return {"auth": (clinic.webhook_username, "wrong-password")}


def _wrong_username(factory, clinic):
    return {"auth": ("someone-else", clinic.webhook_password)}


def _no_auth(factory, clinic):
    return {"auth": ()}


def _bearer(factory, clinic):
    return {"auth": (), "headers": {"Authorization": f"Bearer {clinic.webhook_password}"}}


def _other_clinic_credentials(factory, clinic):
    other = factory.clinic("bandwidth")
    return {"auth": (other.webhook_username, other.webhook_password)}


def _empty_password(factory, clinic):
    return {"auth": (clinic.webhook_username, "")}


@pytest.mark.parametrize(
    "credentials",
    [_wrong_password, _wrong_username, _no_auth, _bearer, _other_clinic_credentials, _empty_password],
)
def test_bandwidth_rejected_changes_nothing(client, factory, bandwidth_sms, credentials):
    clinic = _clinic(bandwidth_sms)
    events = [bandwidth_status(bandwidth_sms, "message-delivered"), bandwidth_inbound(clinic)]
    options = credentials(factory, clinic)
    auth = options.pop("auth") or None

    response = client.post(bandwidth_path(clinic.id), json=events, auth=auth, **options)

    assert response.status_code == 403
    assert provider_events() == []
    assert inbound_messages() == []
    assert delivery(bandwidth_sms.message_id, "sms").status == "accepted"


@pytest.mark.parametrize("stored_password", [None, ""])
def test_bandwidth_clinic_without_password_rejects(client, factory, bandwidth_sms, stored_password):
    clinic = _clinic(bandwidth_sms)
    clinic.webhook_password = stored_password
    db.session.commit()

    response = post_bandwidth(
        client, clinic, [bandwidth_status(bandwidth_sms, "message-delivered")], auth=(clinic.webhook_username, "")
    )

    assert response.status_code == 403
    assert provider_events() == []


@pytest.mark.parametrize("target", ["twilio", "bandwidth", "missing"])
def test_bandwidth_other_clinic_url_rejected(client, factory, bandwidth_sms, target):
    clinic = _clinic(bandwidth_sms)
    target_id = factory.clinic(target).id if target != "missing" else 999999

    response = client.post(
        bandwidth_path(target_id),
        json=[bandwidth_status(bandwidth_sms, "message-delivered")],
        auth=(clinic.webhook_username, clinic.webhook_password),
    )

    assert response.status_code == 403
    assert provider_events() == []


def test_bandwidth_receipt_and_inbound_array(client, bandwidth_sms):
    clinic = _clinic(bandwidth_sms)
    events = [
        bandwidth_status(bandwidth_sms, "message-sending"),
        bandwidth_status(bandwidth_sms, "message-delivered"),
        bandwidth_inbound(clinic, text="Thanks, see you Tuesday"),
    ]

    response = post_bandwidth(client, clinic, events)
    inbound = inbound_messages()
    logged = provider_events()

    assert response.status_code == 200
    assert delivery(bandwidth_sms.message_id, "sms").status == "delivered"
    assert len(inbound) == 1
    assert inbound[0].body == "Thanks, see you Tuesday"
    assert inbound[0].client_id == bandwidth_sms.message.client_id
    assert inbound[0].provider_message_id == "1741101399000inbound"
    assert count(Message) == 2
    # Queued status events are stored when applied, after the inbound message.
    assert sorted((event.kind, event.outcome) for event in logged) == [
        ("inbound", "stored"),
        ("status", "applied"),
        ("status", "applied"),
    ]


def test_bandwidth_receipt_is_not_inbound(client, bandwidth_sms):
    clinic = _clinic(bandwidth_sms)

    post_bandwidth(client, clinic, [bandwidth_status(bandwidth_sms, "message-delivered")])

    assert inbound_messages() == []
    assert count(Message) == 1


def test_bandwidth_outbound_echo_not_stored(client, bandwidth_sms):
    clinic = _clinic(bandwidth_sms)
    echo = bandwidth_inbound(clinic)
    echo["message"]["direction"] = "out"

    response = post_bandwidth(client, clinic, [echo])

    assert response.status_code == 200
    assert inbound_messages() == []


def test_bandwidth_same_array_twice(client, bandwidth_sms):
    clinic = _clinic(bandwidth_sms)
    events = [bandwidth_status(bandwidth_sms, "message-delivered"), bandwidth_inbound(clinic)]
    post_bandwidth(client, clinic, events)
    first = delivery(bandwidth_sms.message_id, "sms")
    first_updated_at = first.updated_at

    response = post_bandwidth(client, clinic, events)
    second = delivery(bandwidth_sms.message_id, "sms")

    assert response.status_code == 200
    assert len(inbound_messages()) == 1
    assert second.status == "delivered"
    assert second.updated_at == first_updated_at
    assert sorted(event.outcome for event in provider_events()) == ["applied", "duplicate", "duplicate", "stored"]


def test_bandwidth_failure_starts_fallback(client, app, bandwidth_sms):
    clinic = _clinic(bandwidth_sms)

    post_bandwidth(client, clinic, [bandwidth_status(bandwidth_sms, "message-failed", error_code=4770)])
    sms = delivery(bandwidth_sms.message_id, "sms")

    assert sms.status == "undelivered"
    assert sms.category == "carrier_filtered"
    assert sms.error_code == "4770"
    assert delivery(bandwidth_sms.message_id, "pointer").status == "queued"
    assert delivery(bandwidth_sms.message_id, "portal").chat_notification is True
    assert Queue("fallback", connection=queues.connection()).count == 1


def _valid_event(sms):
    return bandwidth_status(sms, "message-delivered")


def _without(key):
    def build(sms):
        event = _valid_event(sms)
        del event[key]
        return [event]

    build.__name__ = f"missing_{key}"
    return build


def _without_message_field(key):
    def build(sms):
        event = _valid_event(sms)
        del event["message"][key]
        return [event]

    build.__name__ = f"missing_message_{key}"
    return build


def _with(key, value):
    def build(sms):
        event = _valid_event(sms)
        event[key] = value
        return [event]

    build.__name__ = f"bad_{key}"
    return build


MALFORMED_BODIES = {
    "not_json": lambda sms: {"data": "this is not json", "content_type": "application/json"},
    "form_encoded": lambda sms: {"data": {"type": "message-delivered"}},
    "json_object": lambda sms: {"json": _valid_event(sms)},
    "json_string": lambda sms: {"json": "message-delivered"},
    "json_null": lambda sms: {"data": "null", "content_type": "application/json"},
    "empty_array": lambda sms: {"json": []},
    "array_of_number": lambda sms: {"json": [1]},
    "array_with_list": lambda sms: {"json": [_valid_event(sms), []]},
    "missing_type": lambda sms: {"json": _without("type")(sms)},
    "missing_message": lambda sms: {"json": _without("message")(sms)},
    "missing_time": lambda sms: {"json": _without("time")(sms)},
    "missing_message_id": lambda sms: {"json": _without_message_field("id")(sms)},
    "unknown_type": lambda sms: {"json": _with("type", "message-exploded")(sms)},
    "error_code_text": lambda sms: {"json": _with("errorCode", "forty-seven")(sms)},
    "message_not_object": lambda sms: {"json": _with("message", "hello")(sms)},
    "valid_then_invalid": lambda sms: {"json": [_valid_event(sms), {"type": "message-delivered"}]},
    "inbound_missing_from": lambda sms: {"json": [_inbound_without_from(sms)]},
    "events_101": lambda sms: {"json": [_valid_event(sms)] * 101},
}


def _inbound_without_from(sms):
    event = bandwidth_inbound(sms.message.clinic)
    del event["message"]["from"]
    return event


@pytest.mark.parametrize("name", list(MALFORMED_BODIES))
def test_bandwidth_malformed_body_400(client, bandwidth_sms, name):
    clinic = _clinic(bandwidth_sms)
    body = MALFORMED_BODIES[name](bandwidth_sms)

    response = client.post(
        bandwidth_path(clinic.id), auth=(clinic.webhook_username, clinic.webhook_password), **body
    )

    assert response.status_code == 400
    assert response.is_json
    assert provider_events() == []
    assert count(Message) == 1
    assert delivery(bandwidth_sms.message_id, "sms").status == "accepted"


def test_bandwidth_100_events_accepted(client, bandwidth_sms):
    clinic = _clinic(bandwidth_sms)

    response = post_bandwidth(client, clinic, [bandwidth_status(bandwidth_sms, "message-delivered")] * 100)

    assert response.status_code == 200
    assert len(provider_events()) == 100


def test_bandwidth_concurrent_failures_one_pointer(app, live, bandwidth_sms):
    clinic = _clinic(bandwidth_sms)
    url = live.url + bandwidth_path(clinic.id)
    body = [bandwidth_status(bandwidth_sms, "message-failed", error_code=4770)]
    auth = (clinic.webhook_username, clinic.webhook_password)

    def post(_):
        return requests.post(url, json=body, auth=auth, timeout=30).status_code

    with ThreadPoolExecutor(max_workers=8) as pool:
        statuses = list(pool.map(post, range(8)))
    apply_queued(app)
    pointers = count(Delivery, Delivery.message_id == bandwidth_sms.message_id, Delivery.channel == "pointer")
    outcomes = [event.outcome for event in provider_events()]

    assert statuses == [200] * 8
    assert pointers == 1
    assert outcomes.count("applied") == 1
    assert outcomes.count("duplicate") == 7
    assert Queue("fallback", connection=queues.connection()).count == 1


@pytest.mark.parametrize(
    ("path", "opened"),
    [("/webhooks/twilio/1/status", False), ("/webhooks/bandwidth/1/messages", False), ("/inbox", True), ("/webhooksx", True)],
)
def test_session_opened_only_outside_webhooks(app, path, opened):
    with app.test_request_context(path, headers={"Cookie": "session=anything"}):
        session = app.session_interface.open_session(app, flask_request)

    assert app.session_interface.is_null_session(session) is not opened
