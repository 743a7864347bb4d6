"""Web Push: subscriptions through the portal routes, and notifications through pywebpush to a
local push service that checks VAPID signatures and decrypts each payload."""

import json
import logging
import time

import pytest

import config
from conftest import run_worker
from helpers import BODY, csrf_token, delivery, send_via_api, wait_final, wait_for_callbacks
from notifier import push
from portal.extensions import db
from portal.models import Client, PortalToken, PushSubscription
from push_service import PushService

SUBJECT = "mailto:ops@pawpost.example"
NUMBER = "+15551230001"
OTHER_NUMBER = "+15551230002"


@pytest.fixture(autouse=True)
def callbacks_settled(live):
    """Wait after each test for the sandbox's last status callbacks to arrive.

    A callback that lands while the next test empties the tables breaks its foreign keys.
    """
    yield
    wait_for_callbacks(live)


@pytest.fixture(scope="module")
def push_service():
    service = PushService().start()
    yield service
    service.stop()


@pytest.fixture
def vapid(app, push_service, monkeypatch):
    """Turn Web Push on with a fresh key pair and return the public key."""
    public, private = push.generate_vapid_keys()
    monkeypatch.setitem(app.config, "PAWPOST_VAPID_PUBLIC_KEY", public)
    monkeypatch.setitem(app.config, "PAWPOST_VAPID_PRIVATE_KEY", private)
    monkeypatch.setitem(app.config, "PAWPOST_VAPID_SUBJECT", SUBJECT)
    push_service.reset()
    return public


class Browser:
    """A test client whose requests each run in their own app context, as on a real server.

    The ``app`` fixture keeps an app context open. A request inside it would share ``g``, and
    with it Flask-Login's cached user and the CSRF token, with every other test client.
    """

    def __init__(self, app):
        self.app = app
        self.http = app.test_client()

    def get(self, *args, **kwargs):
        with self.app.app_context():
            return self.http.get(*args, **kwargs)

    def post(self, *args, **kwargs):
        with self.app.app_context():
            return self.http.post(*args, **kwargs)


def sign_in(http, client_id):
    """Sign ``http`` in as the client through a portal link, and return the session's CSRF token."""
    row, raw = PortalToken.issue(client_id=client_id, message_id=None, purpose="email", days=1)
    db.session.add(row)
    db.session.commit()
    token = csrf_token(http.get(f"/p/{raw}").data)
    response = http.post(f"/p/{raw}", data={"csrf_token": token})
    assert response.status_code == 302
    return token


def subscribe(http, token, subscription):
    return http.post("/push/subscriptions", json=subscription, headers={"X-CSRFToken": token})


@pytest.fixture
def pet_parent(app, factory, vapid, push_service):
    """Return a client of a Twilio clinic, signed in on a test client, with two subscribed browsers."""
    clinic = factory.clinic("twilio", name="Happy Paws Clinic")
    parent = factory.client(clinic, NUMBER)
    http = Browser(app)
    token = sign_in(http, parent.id)
    browsers = [push_service.subscribe(vapid) for _ in range(2)]
    for browser in browsers:
        assert subscribe(http, token, browser).status_code == 201
    return clinic, parent, http, token, browsers


def send_and_work(client, factory, clinic, app):
    message_id = send_via_api(client, factory.api_token(clinic), NUMBER)
    run_worker(app)
    return message_id


def test_push_reaches_each_browser(app, client, factory, pet_parent, push_service):
    clinic, _parent, _http, _token, browsers = pet_parent

    message_id = send_and_work(client, factory, clinic, app)

    assert push_service.rejected == []
    for browser in browsers:
        assert len(push_service.received_by(browser["endpoint"])) == 1
    assert delivery(message_id, "push").status == "delivered"


def test_push_payload_has_no_message_text(app, client, factory, pet_parent, push_service):
    clinic, _parent, _http, _token, browsers = pet_parent

    message_id = send_and_work(client, factory, clinic, app)
    payload = push_service.received_by(browsers[0]["endpoint"])[0].payload

    assert BODY not in json.dumps(payload)
    assert "rabies" not in json.dumps(payload).lower()
    assert payload["title"] == "Happy Paws Clinic"
    assert payload["body"] == push.NOTIFICATION_BODY
    assert payload["url"] == f"{app.config['PAWPOST_BASE_URL']}/inbox/messages/{message_id}"


def test_push_vapid_claims(app, client, factory, pet_parent, push_service):
    clinic, _parent, _http, _token, browsers = pet_parent

    send_and_work(client, factory, clinic, app)
    sent = push_service.received_by(browsers[0]["endpoint"])[0]

    assert sent.claims["aud"] == push_service.url
    assert sent.claims["sub"] == SUBJECT
    assert sent.claims["exp"] > time.time()
    assert sent.ttl == push.TTL_SECONDS


@pytest.mark.parametrize("status", [404, 410])
def test_gone_subscription_is_deleted(app, client, factory, pet_parent, push_service, status):
    clinic, _parent, _http, _token, browsers = pet_parent
    push_service.expire(browsers[0]["endpoint"], status)

    message_id = send_and_work(client, factory, clinic, app)
    endpoints = db.session.execute(db.select(PushSubscription.endpoint)).scalars().all()

    assert endpoints == [browsers[1]["endpoint"]]
    assert len(push_service.received_by(browsers[1]["endpoint"])) == 1
    assert delivery(message_id, "push").status == "delivered"


def test_all_gone_fails_push(app, client, factory, pet_parent, push_service):
    clinic, _parent, _http, _token, browsers = pet_parent
    for browser in browsers:
        push_service.expire(browser["endpoint"])

    message_id = send_and_work(client, factory, clinic, app)
    push_delivery = delivery(message_id, "push")

    assert push_delivery.status == "failed"
    assert push_delivery.category == "subscription_gone"
    assert db.session.execute(db.select(db.func.count()).select_from(PushSubscription)).scalar_one() == 0


@pytest.mark.parametrize(
    "status, times, expected_status, expected_attempts, category",
    [
        (503, 1, "delivered", 2, None),
        (429, 2, "delivered", 3, None),
        (503, 10, "failed", 4, "temporary"),
        (400, 1, "failed", 1, "rejected"),
        (413, 1, "failed", 1, "rejected"),
    ],
)
def test_push_service_errors(app, client, factory, pet_parent, push_service, status, times, expected_status, expected_attempts, category):
    clinic, _parent, _http, _token, browsers = pet_parent
    for browser in browsers:
        push_service.fail_next(browser["endpoint"], status, times)

    message_id = send_and_work(client, factory, clinic, app)
    push_delivery = delivery(message_id, "push")

    assert push_delivery.status == expected_status
    assert push_delivery.attempts == expected_attempts
    assert push_delivery.category == category


def test_push_follows_sms_fallback(app, client, factory, vapid, push_service):
    clinic = factory.clinic("bandwidth")
    parent = factory.client(clinic, "+15551230010")
    http = Browser(app)
    browser = push_service.subscribe(vapid)
    assert subscribe(http, sign_in(http, parent.id), browser).status_code == 201

    message_id = send_via_api(client, factory.api_token(clinic), "+15551230010")
    run_worker(app)
    wait_final(message_id, "sms")
    run_worker(app)
    wait_final(message_id, "pointer")

    assert delivery(message_id, "sms").category == "carrier_filtered"
    assert len(push_service.received_by(browser["endpoint"])) == 1
    assert delivery(message_id, "push").attempts == 1


def test_no_push_without_subscription(app, client, factory, vapid):
    clinic = factory.clinic("twilio")
    parent = factory.client(clinic, NUMBER)
    parent.push_enabled = True
    db.session.commit()

    message_id = send_and_work(client, factory, clinic, app)

    assert delivery(message_id, "push") is None


def test_subscribe_turns_push_on(app, pet_parent):
    _clinic, parent, _http, _token, _browsers = pet_parent

    assert db.session.get(Client, parent.id).push_enabled is True


def test_push_reaches_other_clinic_record(app, client, factory, vapid, push_service):
    first, second = factory.clinic("twilio"), factory.clinic("twilio")
    parent = factory.client(first, NUMBER)
    other_record = factory.client(second, NUMBER)
    http = Browser(app)
    browser = push_service.subscribe(vapid)
    assert subscribe(http, sign_in(http, parent.id), browser).status_code == 201

    message_id = send_via_api(client, factory.api_token(second), NUMBER)
    run_worker(app)
    db.session.rollback()

    assert db.session.get(Client, other_record.id).push_enabled is True
    assert len(push_service.received_by(browser["endpoint"])) == 1
    assert delivery(message_id, "push").status == "delivered"


def test_subscribe_again_updates(app, pet_parent):
    _clinic, _parent, http, token, browsers = pet_parent

    response = subscribe(http, token, browsers[0])
    count = db.session.execute(db.select(db.func.count()).select_from(PushSubscription)).scalar_one()

    assert response.status_code == 200
    assert count == 2


# Any P-256 public key is a valid p256dh, and the auth secret is 16 bytes.
VALID_P256DH = push.generate_vapid_keys()[0]
VALID_AUTH = "tBHItJI5svbpez7KI4CCXg"
BAD_SUBSCRIPTIONS = [
    ("not-an-object", "JSON"),
    ({"keys": {"p256dh": VALID_P256DH, "auth": VALID_AUTH}}, "endpoint is missing"),
    ({"endpoint": "ftp://push.example.net/x", "keys": {"p256dh": VALID_P256DH, "auth": VALID_AUTH}}, "endpoint must be"),
    ({"endpoint": "http://push.example.net/x", "keys": {"p256dh": VALID_P256DH, "auth": VALID_AUTH}}, "endpoint must be"),
    ({"endpoint": "https://10.0.0.7/x", "keys": {"p256dh": VALID_P256DH, "auth": VALID_AUTH}}, "endpoint must be"),
    ({"endpoint": "https://intranet/x", "keys": {"p256dh": VALID_P256DH, "auth": VALID_AUTH}}, "endpoint must be"),
    ({"endpoint": "https://push.example.net/" + "a" * 1000, "keys": {"p256dh": VALID_P256DH, "auth": VALID_AUTH}}, "limit"),
    ({"endpoint": "https://push.example.net/x"}, "keys is missing"),
    ({"endpoint": "https://push.example.net/x", "keys": {"auth": VALID_AUTH}}, "keys.p256dh"),
    ({"endpoint": "https://push.example.net/x", "keys": {"p256dh": VALID_P256DH[:40], "auth": VALID_AUTH}}, "keys.p256dh"),
    ({"endpoint": "https://push.example.net/x", "keys": {"p256dh": "BA" + "A" * 85, "auth": VALID_AUTH}}, "P-256 curve"),
    ({"endpoint": "https://push.example.net/x", "keys": {"p256dh": VALID_P256DH, "auth": "c2hvcnQ"}}, "keys.auth"),
    ({"endpoint": "https://push.example.net/x", "keys": {"p256dh": VALID_P256DH, "auth": "*" * 22}}, "keys.auth"),
]


@pytest.mark.parametrize("body, expected", BAD_SUBSCRIPTIONS)
def test_subscribe_rejects_invalid(app, pet_parent, body, expected):
    _clinic, _parent, http, token, _browsers = pet_parent

    response = subscribe(http, token, body)

    assert response.status_code == 400
    assert expected in response.get_json()["error"]["message"]


@pytest.mark.parametrize(
    "endpoint, environment, allowed",
    [
        ("https://fcm.googleapis.com/fcm/send/abc", "production", True),
        ("https://web.push.apple.com/abc", "production", True),
        ("http://127.0.0.1:8080/push/abc", "test", True),
        ("http://localhost:8080/push/abc", "development", True),
        ("http://127.0.0.1:8080/push/abc", "production", False),
        ("https://127.0.0.1/push/abc", "production", False),
        ("https://[::1]/push/abc", "production", False),
        ("https://push.localhost/abc", "production", False),
        ("https://user@push.example.net/abc", "production", False),
    ],
)
def test_endpoint_rules(endpoint, environment, allowed):
    subscription = {"endpoint": endpoint, "keys": {"p256dh": VALID_P256DH, "auth": VALID_AUTH}}
    try:
        push.parse_subscription(subscription, environment)
        accepted = True
    except push.InvalidSubscription:
        accepted = False

    assert accepted is allowed


def test_subscribe_requires_csrf(app, pet_parent, push_service, vapid):
    _clinic, _parent, http, _token, _browsers = pet_parent

    response = http.post("/push/subscriptions", json=push_service.subscribe(vapid))
    count = db.session.execute(db.select(db.func.count()).select_from(PushSubscription)).scalar_one()

    assert response.status_code == 400
    assert count == 2


def test_subscribe_requires_sign_in(app, vapid, push_service):
    http = Browser(app)
    token = csrf_token(http.get("/login").data)

    response = subscribe(http, token, push_service.subscribe(vapid))

    assert response.status_code == 401


def test_other_person_cannot_delete(app, factory, pet_parent):
    clinic, _parent, _http, _token, browsers = pet_parent
    stranger = factory.client(clinic, OTHER_NUMBER)
    http = Browser(app)
    token = sign_in(http, stranger.id)

    response = http.post("/push/subscriptions/delete", json={"endpoint": browsers[0]["endpoint"]}, headers={"X-CSRFToken": token})
    count = db.session.execute(db.select(db.func.count()).select_from(PushSubscription)).scalar_one()

    assert response.status_code == 404
    assert count == 2


def test_other_person_cannot_take_endpoint(app, factory, pet_parent, push_service, vapid):
    clinic, parent, _http, _token, browsers = pet_parent
    stranger = factory.client(clinic, OTHER_NUMBER)
    http = Browser(app)
    token = sign_in(http, stranger.id)
    forged = {**push_service.subscribe(vapid), "endpoint": browsers[0]["endpoint"]}

    response = subscribe(http, token, forged)
    owner = db.session.execute(
        db.select(PushSubscription.client_id).where(PushSubscription.endpoint == browsers[0]["endpoint"])
    ).scalar_one()

    assert response.status_code == 409
    assert owner == parent.id


def test_owner_deletes_subscription(app, pet_parent):
    _clinic, _parent, http, token, browsers = pet_parent

    response = http.post("/push/subscriptions/delete", json={"endpoint": browsers[0]["endpoint"]}, headers={"X-CSRFToken": token})
    endpoints = db.session.execute(db.select(PushSubscription.endpoint)).scalars().all()

    assert response.status_code == 200
    assert endpoints == [browsers[1]["endpoint"]]


def test_push_key_route(app, vapid):
    response = Browser(app).get("/push/key")

    assert response.status_code == 200
    assert response.get_json()["public_key"] == vapid


def test_push_key_route_when_off(app):
    response = Browser(app).get("/push/key")

    assert response.status_code == 404


def test_generate_vapid_keys_command(app):
    result = app.test_cli_runner().invoke(args=["push", "generate-vapid-keys"])
    lines = dict(line.split("=", 1) for line in result.output.splitlines() if line.startswith("PAWPOST_"))
    settings = config.load(
        {
            "PAWPOST_ENV": "development",
            "PAWPOST_VAPID_PUBLIC_KEY": lines["PAWPOST_VAPID_PUBLIC_KEY"],
            "PAWPOST_VAPID_PRIVATE_KEY": lines["PAWPOST_VAPID_PRIVATE_KEY"],
        }
    )

    assert result.exit_code == 0
    assert settings["PAWPOST_VAPID_PUBLIC_KEY"] == lines["PAWPOST_VAPID_PUBLIC_KEY"]


@pytest.mark.parametrize(
    "keys, message",
    [
        ({"PAWPOST_VAPID_PUBLIC_KEY": "x"}, "PAWPOST_VAPID_PRIVATE_KEY is not set"),
        ({"PAWPOST_VAPID_PRIVATE_KEY": "x"}, "PAWPOST_VAPID_PUBLIC_KEY is not set"),
        ({"PAWPOST_VAPID_PUBLIC_KEY": "x", "PAWPOST_VAPID_PRIVATE_KEY": "not-a-key"}, "PAWPOST_VAPID_PRIVATE_KEY is not"),
        ({"PAWPOST_VAPID_SUBJECT": "ops@pawpost.example"}, "PAWPOST_VAPID_SUBJECT must be"),
    ],
)
def test_bad_vapid_settings_fail_at_start(keys, message):
    with pytest.raises(config.ConfigError, match=message):
        config.load({"PAWPOST_ENV": "development", **keys})


def test_mismatched_vapid_keys_fail_at_start():
    public, _private = push.generate_vapid_keys()
    _public, private = push.generate_vapid_keys()

    with pytest.raises(config.ConfigError, match="does not belong"):
        config.load({"PAWPOST_ENV": "development", "PAWPOST_VAPID_PUBLIC_KEY": public, "PAWPOST_VAPID_PRIVATE_KEY": private})


def test_push_off_is_logged(app, caplog):
    # create_app calls this once per app. A second app here would rebind the shared extensions.
    with caplog.at_level(logging.WARNING, logger="notifier.push"):
        push.log_status(app)

    assert "Web Push is off" in caplog.text


def test_wrong_vapid_key_is_rejected(app, client, factory, pet_parent, push_service, monkeypatch):
    clinic, _parent, _http, _token, browsers = pet_parent
    public, private = push.generate_vapid_keys()
    monkeypatch.setitem(app.config, "PAWPOST_VAPID_PUBLIC_KEY", public)
    monkeypatch.setitem(app.config, "PAWPOST_VAPID_PRIVATE_KEY", private)

    message_id = send_and_work(client, factory, clinic, app)
    push_delivery = delivery(message_id, "push")

    assert push_service.received == []
    assert len(push_service.rejected) == 2
    assert push_delivery.status == "failed"
    assert push_delivery.error_code == "403"
