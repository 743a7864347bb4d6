"""Security headers, staff lockout, trusted proxies, /metrics, webhook fuzzing and log hygiene."""

import base64
import json
import logging
import re

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from twilio.request_validator import RequestValidator

from conftest import STAFF_PASSWORD, TWILIO_TOKEN, run_worker, wait_for
from portal import create_app
from portal.extensions import db
from portal.logging import ContextFilter, JsonFormatter, configure_logging
from portal.models import Delivery, Message, ProviderEvent, StaffUser
from portal.security import TrustedProxyFix


@pytest.mark.parametrize("path", ["/", "/admin/login", "/healthz", "/p/unknown-token"])
def test_security_headers_present(client, path):
    headers = client.get(path).headers

    assert "default-src 'self'" in headers["Content-Security-Policy"]
    assert "frame-ancestors 'none'" in headers["Content-Security-Policy"]
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["X-Frame-Options"] == "DENY"


def test_no_hsts_over_http(client):
    assert "Strict-Transport-Security" not in client.get("/healthz").headers


def test_hsts_over_https(live):
    config = {key: live.app.config[key] for key in ("SECRET_KEY", "SQLALCHEMY_DATABASE_URI", "REDIS_URL")}
    app = create_app({**config, "PAWPOST_ENV": "test", "PAWPOST_BASE_URL": "https://pawpost.example.com"})

    headers = app.test_client().get("/healthz").headers

    assert headers["Strict-Transport-Security"].startswith("max-age=")
    assert app.config["SESSION_COOKIE_SECURE"] is True


def csrf_of(page):
    return re.search(rb'name="csrf_token" type="hidden" value="([^"]+)"', page.data).group(1).decode()


def attempt(client, email, password):
    token = csrf_of(client.get("/admin/login"))
    return client.post("/admin/login", data={"csrf_token": token, "email": email, "password": password})


def test_lockout_after_five_wrong_passwords(client, factory):
    user = factory.staff(factory.clinic())
    for _ in range(5):
        attempt(client, user.email, "wrong password")

    response = attempt(client, user.email, STAFF_PASSWORD)
    db.session.rollback()

    assert response.status_code == 429
    assert b"locked" in response.data
    assert db.session.get(StaffUser, user.id).locked_until is not None


def test_right_password_resets_failures(client, factory):
    user = factory.staff(factory.clinic())
    for _ in range(4):
        attempt(client, user.email, "wrong password")

    response = attempt(client, user.email, STAFF_PASSWORD)
    db.session.rollback()

    assert response.status_code == 302
    assert db.session.get(StaffUser, user.id).failed_logins == 0


def echo_environ(environ, start_response):
    start_response("200 OK", [("Content-Type", "application/json")])
    fields = {"scheme": environ["wsgi.url_scheme"], "addr": environ["REMOTE_ADDR"], "host": environ.get("HTTP_HOST")}
    return [json.dumps(fields).encode()]


def call(middleware, remote_addr):
    environ = {
        "REMOTE_ADDR": remote_addr,
        "wsgi.url_scheme": "http",
        "HTTP_HOST": "internal:8000",
        "HTTP_X_FORWARDED_PROTO": "https",
        "HTTP_X_FORWARDED_FOR": "203.0.113.9",
        "HTTP_X_FORWARDED_HOST": "pawpost.example.com",
    }
    return json.loads(b"".join(middleware(environ, lambda *args: None)))


def test_forwarded_headers_trusted_from_proxy():
    seen = call(TrustedProxyFix(echo_environ, "10.0.0.5"), "10.0.0.5")

    assert seen == {"scheme": "https", "addr": "203.0.113.9", "host": "pawpost.example.com"}


def test_forwarded_headers_ignored_from_others():
    seen = call(TrustedProxyFix(echo_environ, "10.0.0.5"), "198.51.100.7")

    assert seen == {"scheme": "http", "addr": "198.51.100.7", "host": "internal:8000"}


def test_metrics_hidden_without_token_setting(client):
    assert client.get("/metrics").status_code == 404


@pytest.mark.parametrize(("header", "status"), [(None, 401), ("Bearer wrong", 401), ("Basic c2VjcmV0", 401), ("Bearer s3cret", 200)])
def test_metrics_token_required(app, client, monkeypatch, header, status):
    monkeypatch.setitem(app.config, "PAWPOST_METRICS_TOKEN", "s3cret")

    response = client.get("/metrics", headers={"Authorization": header} if header else {})

    assert response.status_code == status


def test_metrics_lists_counters(app, client, monkeypatch):
    monkeypatch.setitem(app.config, "PAWPOST_METRICS_TOKEN", "s3cret")

    body = client.get("/metrics", headers={"Authorization": "Bearer s3cret"}).get_data(as_text=True)

    assert 'pawpost_queue_depth{queue="sms"}' in body
    assert "pawpost_fallbacks_total" in body
    assert "pawpost_callback_to_fallback_seconds_bucket" in body


def stored_rows():
    db.session.rollback()
    return sum(db.session.execute(db.select(db.func.count()).select_from(model)).scalar() for model in (ProviderEvent, Message))


def basic(clinic):
    pair = f"{clinic.webhook_username}:{clinic.webhook_password}".encode()
    return {"Authorization": "Basic " + base64.b64encode(pair).decode()}


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=12,
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=st.one_of(st.binary(max_size=300), json_values.map(lambda value: json.dumps(value).encode())))
def test_bandwidth_fuzz_never_stores(client, factory, body):
    clinic = factory.clinic("bandwidth")
    before = stored_rows()

    response = client.post(f"/webhooks/bandwidth/{clinic.id}/messages", data=body, headers=basic(clinic), content_type="application/json")

    assert response.status_code == 400
    assert stored_rows() == before


def test_bandwidth_truncated_body_rejected(client, factory):
    clinic = factory.clinic("bandwidth")
    event = json.dumps([{"type": "message-delivered", "time": "2026-12-04T10:00:00Z", "to": "+15551230001"}])

    response = client.post(
        f"/webhooks/bandwidth/{clinic.id}/messages", data=event[: len(event) // 2], headers=basic(clinic), content_type="application/json"
    )

    assert response.status_code == 400
    assert stored_rows() == 0


@pytest.mark.parametrize("provider", ["twilio", "bandwidth"])
def test_oversized_callback_rejected(client, factory, provider):
    clinic = factory.clinic(provider)
    path = f"/webhooks/{provider}/{clinic.id}/" + ("status" if provider == "twilio" else "messages")
    headers = basic(clinic) if provider == "bandwidth" else {"X-Twilio-Signature": "x"}

    response = client.post(path, data=b"[" + b" " * (300 * 1024) + b"]", headers=headers, content_type="application/json")

    assert response.status_code == 400
    assert stored_rows() == 0


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(form=st.dictionaries(st.sampled_from(["MessageSid", "MessageStatus", "ErrorCode", "AccountSid", "To", "X"]), st.text(max_size=30), max_size=5))
def test_twilio_fuzz_signed_garbage(client, live, factory, form):
    clinic = factory.clinic("twilio")
    path = f"/webhooks/twilio/{clinic.id}/status"
    form = {key: value.replace("\x00", "") for key, value in form.items()}
    signature = RequestValidator(TWILIO_TOKEN).compute_signature(live.url + path, form)
    before_deliveries = db.session.execute(db.select(db.func.count()).select_from(Delivery)).scalar()

    response = client.post(path, data=form, headers={"X-Twilio-Signature": signature})

    assert response.status_code in (200, 400, 403)
    assert db.session.execute(db.select(db.func.count()).select_from(Delivery)).scalar() == before_deliveries


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    form=st.dictionaries(st.text(max_size=10), st.text(max_size=30), max_size=5),
    signature=st.from_regex(r"[A-Za-z0-9+/= ]{0,40}", fullmatch=True),
)
def test_twilio_fuzz_unsigned_forbidden(client, factory, form, signature):
    clinic = factory.clinic("twilio")
    before = stored_rows()

    response = client.post(f"/webhooks/twilio/{clinic.id}/status", data=form, headers={"X-Twilio-Signature": signature})

    assert response.status_code == 403
    assert stored_rows() == before


class Collector(logging.Handler):
    def __init__(self):
        super().__init__(logging.DEBUG)
        self.lines = []
        self.addFilter(ContextFilter())

    def emit(self, record):
        self.lines.append(self.format(record))


def test_logs_carry_no_numbers_or_bodies(client, live, factory):
    configure_logging("DEBUG")
    collector = Collector()
    logging.getLogger().addHandler(collector)
    body = "Biscuit's bloodwork came back normal"
    try:
        clinic = factory.clinic("bandwidth")
        token = factory.api_token(clinic)
        for suffix in ("01", "10", "20", "60"):
            client.post("/api/v1/messages", json={"to": f"+155512300{suffix}", "body": body}, headers={"Authorization": f"Bearer {token}"})
        for _ in range(3):
            run_worker(live.app)

        def settled():
            db.session.rollback()
            return all(d.is_final for d in db.session.execute(db.select(Delivery).where(Delivery.channel == "sms")).scalars())

        wait_for(settled)
    finally:
        logging.getLogger().removeHandler(collector)
        configure_logging("WARNING")

    assert collector.lines
    assert [line for line in collector.lines if "5551230" in line] == []
    assert [line for line in collector.lines if "Biscuit" in line] == []


def test_traceback_numbers_masked():
    collector = Collector()
    collector.setFormatter(JsonFormatter())
    logger = logging.getLogger("pawpost.tests.traceback")
    logger.addHandler(collector)
    try:
        # Database errors quote the failed statement's values, as in this one.
        raise ValueError("Key (clinic_id, client_number)=(1, +15557770001) already exists.")
    except ValueError:
        logger.exception("Applying failed.")
    finally:
        logger.removeHandler(collector)

    assert len(collector.lines) == 1
    assert "5557770001" not in collector.lines[0]
    assert "already exists" in collector.lines[0]


def test_pointer_confirm_works_over_https(live, factory):
    """Over HTTPS, Flask-WTF needs a same-origin Referer on the confirm POST; the page's policy allows it."""
    from notifier.sending import send_message
    from portal.models import PortalToken

    config = {key: live.app.config[key] for key in ("SECRET_KEY", "SQLALCHEMY_DATABASE_URI", "REDIS_URL")}
    app = create_app({**config, "PAWPOST_ENV": "test", "PAWPOST_BASE_URL": "https://pawpost.example.com"})
    clinic = factory.clinic("bandwidth")
    pet_parent = factory.client(clinic, "+15551230001")
    message = send_message(pet_parent, "Rex is ready.", source="api")
    row, raw = PortalToken.issue(pet_parent.id, message.id, "pointer", days=1)
    db.session.add(row)
    db.session.commit()
    browser = app.test_client()
    link = f"https://pawpost.example.com/p/{raw}"

    page = browser.get(link)
    response = browser.post(link, data={"csrf_token": csrf_of(page)}, headers={"Referer": link})

    assert page.headers["Referrer-Policy"] == "same-origin"
    assert response.status_code == 302


def test_staff_sign_in_rate_limited(client, factory):
    user = factory.staff(factory.clinic())
    statuses = [attempt(client, f"nobody{n}@clinic.example", "wrong password").status_code for n in range(21)]

    response = attempt(client, user.email, STAFF_PASSWORD)

    assert statuses[:20] == [200] * 20
    assert statuses[20] == 429
    assert response.status_code == 429
