"""Email: a real SMTP server (aiosmtpd) on 127.0.0.1, the email job on its own queue, and its
independence from the SMS delivery of the same message."""

import email
import re
import socket
from email import policy
from urllib.parse import urlsplit

import pytest
import requests
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult

import config
from conftest import run_worker, wait_for
from helpers import BODY, delivery, send_via_api, wait_final, wait_for_callbacks
from notifier import mail
from notifier.worker import build_worker
from portal.extensions import db
from portal.models import PortalToken, utcnow

ADDRESS = "pat.parent@example.com"
CLINIC_NAME = "Happy Paws Clinic"
LINK_PATTERN = re.compile(r"https?://\S+/p/[A-Za-z0-9_-]+")
SMS_QUEUES = ("fallback", "sms")


@pytest.fixture(autouse=True)
def callbacks_settled(live):
    """Wait after each test for the sandbox's last status callbacks to arrive.

    A callback that lands while the next test empties the tables breaks its foreign keys.
    """
    yield
    wait_for_callbacks(live)


def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class MailCatcher:
    """An aiosmtpd handler that keeps every accepted email and can reject recipients on cue."""

    def __init__(self):
        self.messages = []
        self.logins = []
        # Replies to the next RCPT TO commands, used up in order. Later recipients are accepted.
        self.rcpt_replies = []

    def reset(self):
        self.messages.clear()
        self.logins.clear()
        self.rcpt_replies.clear()

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if self.rcpt_replies:
            return self.rcpt_replies.pop(0)
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        self.messages.append(email.message_from_bytes(envelope.content, policy=policy.default))
        return "250 Message accepted for delivery"

    def authenticate(self, server, session, envelope, mechanism, auth_data):
        self.logins.append((auth_data.login.decode(), auth_data.password.decode()))
        return AuthResult(success=True)


@pytest.fixture(scope="module")
def smtp_server():
    catcher = MailCatcher()
    controller = Controller(
        catcher,
        hostname="127.0.0.1",
        port=free_port(),
        authenticator=catcher.authenticate,
        # Plain-text AUTH is fine on loopback, while production URLs use smtps:// or starttls.
        auth_require_tls=False,
    )
    controller.start()
    yield controller
    controller.stop()


@pytest.fixture
def smtp(app, smtp_server, monkeypatch):
    """Point the app at the test SMTP server and return the catcher of what it receives."""
    monkeypatch.setitem(app.config, "PAWPOST_SMTP_URL", f"smtp://127.0.0.1:{smtp_server.port}")
    smtp_server.handler.reset()
    return smtp_server.handler


def make_client(factory, clinic, number, address=ADDRESS, verified=True, enabled=True):
    client = factory.client(clinic, number)
    client.email = address
    client.email_verified_at = utcnow() if verified else None
    client.email_enabled = enabled
    db.session.commit()
    return client


def run_queues(app, names):
    build_worker(app, names).work(burst=True, with_scheduler=False)


def settle_sms(app, message_id):
    """Run workers until the SMS (after any retries) and its pointer, if any, have final statuses."""

    def sms_settled():
        run_worker(app)
        # Read before the pointer query, whose rollback would reload the SMS row later than the pointer's.
        sms_final = delivery(message_id, "sms").is_final
        pointer = delivery(message_id, "pointer")
        return sms_final and (pointer is None or pointer.is_final)

    wait_for(sms_settled, timeout=20, interval=0.1)


@pytest.fixture
def emailed(app, client, factory, smtp):
    """Send one message to a client with email on, and return its id, the email and the clinic's API token."""
    clinic = factory.clinic("twilio", name=CLINIC_NAME)
    make_client(factory, clinic, "+15551230001")
    token = factory.api_token(clinic)
    message_id = send_via_api(client, token, "+15551230001")
    run_worker(app)
    assert len(smtp.messages) == 1
    return message_id, smtp.messages[0], token


def test_email_sent_once(emailed, smtp):
    message_id, _message, _token = emailed

    email_delivery = delivery(message_id, "email")

    assert len(smtp.messages) == 1
    assert email_delivery.status == "delivered"
    assert email_delivery.attempts == 1


def test_email_headers(app, emailed):
    _message_id, message, _token = emailed
    sender = message["From"].addresses[0]

    assert sender.display_name == CLINIC_NAME
    assert sender.addr_spec == app.config["PAWPOST_MAIL_FROM"]
    assert message["To"] == ADDRESS
    assert message["Subject"] == f"New message from {CLINIC_NAME}"
    assert message["Message-ID"].endswith("@pawpost.example>")
    assert message["Auto-Submitted"] == "auto-generated"


@pytest.mark.parametrize("part", ["plain", "html"])
def test_email_part_has_text_and_link(app, emailed, part):
    _message_id, message, _token = emailed

    content = message.get_body(preferencelist=(part,)).get_content()

    assert BODY in content
    assert LINK_PATTERN.search(content).group(0).startswith(app.config["PAWPOST_BASE_URL"] + "/p/")


def test_email_link_opens_confirm_page(app, emailed):
    message_id, message, _token = emailed
    link = LINK_PATTERN.search(message.get_body(preferencelist=("plain",)).get_content()).group(0)

    page = app.test_client().get(urlsplit(link).path)
    db.session.rollback()
    token = db.session.execute(db.select(PortalToken).where(PortalToken.message_id == message_id)).scalar_one()

    assert page.status_code == 200
    assert b"Open my message" in page.data
    assert token.purpose == "email"
    assert token.used_at is None


def test_email_staff_message(client, emailed):
    message_id, _message, token = emailed

    body = client.get(f"/api/v1/messages/{message_id}", headers={"Authorization": f"Bearer {token}"}).get_json()
    email_json = next(d for d in body["deliveries"] if d["channel"] == "email")

    assert email_json["status"] == "delivered"
    assert email_json["staff_message"] == "Email accepted by the client's mail server."


@pytest.mark.parametrize(
    "address, verified, enabled",
    [
        (ADDRESS, False, True),
        (ADDRESS, True, False),
        (None, True, True),
        ("", True, True),
    ],
)
def test_no_email_without_verified_opt_in(app, client, factory, smtp, address, verified, enabled):
    clinic = factory.clinic("twilio")
    make_client(factory, clinic, "+15551230001", address, verified, enabled)

    message_id = send_via_api(client, factory.api_token(clinic), "+15551230001")
    run_worker(app)

    assert delivery(message_id, "email") is None
    assert smtp.messages == []


def test_keyword_reply_sends_no_email(app, factory, smtp):
    from notifier.sending import send_message

    clinic = factory.clinic("bandwidth")
    parent = make_client(factory, clinic, "+15551230001")

    message = send_message(parent, "You're unsubscribed.", source="keyword")

    assert delivery(message.id, "email") is None


@pytest.mark.parametrize(
    "replies, status, attempts, emails, category, error_code",
    [
        (["451 4.3.0 Try again later"], "delivered", 2, 1, None, None),
        (["452 4.2.2 Mailbox full", "421 4.7.0 Busy"], "delivered", 3, 1, None, None),
        (["451 4.3.0 Try again later"] * 4, "failed", 4, 0, "temporary", "451"),
        (["550 5.1.1 No such user"], "failed", 1, 0, "rejected", "550"),
        (["554 5.7.1 Rejected by policy"], "failed", 1, 0, "rejected", "554"),
        (["530 5.7.0 Authentication required"], "failed", 1, 0, "setup", "530"),
    ],
)
def test_smtp_reply_decides_retry(app, client, factory, smtp, replies, status, attempts, emails, category, error_code):
    clinic = factory.clinic("twilio")
    make_client(factory, clinic, "+15551230001")
    smtp.rcpt_replies.extend(replies)

    message_id = send_via_api(client, factory.api_token(clinic), "+15551230001")
    run_worker(app)
    email_delivery = delivery(message_id, "email")

    assert email_delivery.status == status
    assert email_delivery.attempts == attempts
    assert len(smtp.messages) == emails
    assert email_delivery.category == category
    assert email_delivery.error_code == error_code


def test_unreachable_server_retries(app, client, factory, monkeypatch):
    clinic = factory.clinic("twilio")
    make_client(factory, clinic, "+15551230001")
    # Nothing listens on a port just freed, so every connection is refused.
    monkeypatch.setitem(app.config, "PAWPOST_SMTP_URL", f"smtp://127.0.0.1:{free_port()}")

    message_id = send_via_api(client, factory.api_token(clinic), "+15551230001")
    run_worker(app)
    email_delivery = delivery(message_id, "email")

    assert email_delivery.status == "failed"
    assert email_delivery.attempts == app.config["PAWPOST_EMAIL_MAX_ATTEMPTS"]
    assert email_delivery.error_code == "connection"


@pytest.mark.parametrize(
    "number, sms_status, sms_attempts",
    [
        ("+15551230001", "delivered", 1),
        ("+15551230010", "undelivered", 1),
        ("+15551230020", "undelivered", 1),
        ("+15551230060", "delivered", 2),
    ],
)
def test_sms_outcome_leaves_one_email(app, client, factory, smtp, number, sms_status, sms_attempts):
    clinic = factory.clinic("bandwidth")
    make_client(factory, clinic, number)
    message_id = send_via_api(client, factory.api_token(clinic), number)

    # The email goes out while the SMS has not even been tried.
    run_queues(app, ("email",))
    sms_before = delivery(message_id, "sms").status
    settle_sms(app, message_id)
    email_delivery = delivery(message_id, "email")

    assert sms_before == "queued"
    assert delivery(message_id, "sms").status == sms_status
    assert delivery(message_id, "sms").attempts == sms_attempts
    assert len(smtp.messages) == 1
    assert email_delivery.status == "delivered"
    assert email_delivery.attempts == 1


def test_fallback_sends_pointer_and_one_email(app, client, factory, smtp):
    clinic = factory.clinic("bandwidth")
    make_client(factory, clinic, "+15551230010")
    message_id = send_via_api(client, factory.api_token(clinic), "+15551230010")

    settle_sms(app, message_id)

    assert delivery(message_id, "sms").category == "carrier_filtered"
    assert delivery(message_id, "pointer").status == "delivered"
    assert len(smtp.messages) == 1
    assert delivery(message_id, "email").attempts == 1


@pytest.mark.parametrize(
    "replies",
    [
        ["550 5.1.1 No such user"],
        ["451 4.3.0 Try again later"] * 4,
    ],
)
def test_failed_email_leaves_sms_untouched(app, client, factory, smtp, live, replies):
    clinic = factory.clinic("bandwidth")
    make_client(factory, clinic, "+15551230001")
    message_id = send_via_api(client, factory.api_token(clinic), "+15551230001")
    run_queues(app, SMS_QUEUES)
    before = wait_final(message_id, "sms")
    snapshot = (before.status, before.attempts, before.error_code, before.category, before.updated_at)
    smtp.rcpt_replies.extend(replies)

    run_queues(app, ("email",))
    after = delivery(message_id, "sms")
    texts = requests.get(f"{live.sandbox_url}/phones/+15551230001/messages", timeout=5).json()

    assert delivery(message_id, "email").status == "failed"
    assert (after.status, after.attempts, after.error_code, after.category, after.updated_at) == snapshot
    assert len(texts) == 1


def test_smtp_login_uses_url_credentials(app, client, factory, smtp, smtp_server, monkeypatch):
    monkeypatch.setitem(app.config, "PAWPOST_SMTP_URL", f"smtp://pawpost:s%40cret@127.0.0.1:{smtp_server.port}")
    clinic = factory.clinic("twilio")
    make_client(factory, clinic, "+15551230001")

    send_via_api(client, factory.api_token(clinic), "+15551230001")
    run_worker(app)

    assert smtp.logins == [("pawpost", "s@cret")]
    assert len(smtp.messages) == 1


def test_development_writes_eml(app, tmp_path, monkeypatch):
    # The live app set to development, since a second app would rebind the shared extensions.
    monkeypatch.setitem(app.config, "PAWPOST_ENV", "development")
    monkeypatch.setitem(app.config, "PAWPOST_MAIL_DIR", str(tmp_path / "outbox"))

    mail.send_mail(ADDRESS, "Your sign-in code", "Your code is 123456.", "<p>Your code is 123456.</p>", "Pawpost")

    files = list((tmp_path / "outbox").glob("*.eml"))
    saved = email.message_from_bytes(files[0].read_bytes(), policy=policy.default)

    assert len(files) == 1
    assert saved["Subject"] == "Your sign-in code"
    assert saved.get_body(preferencelist=("plain",)).get_content().strip() == "Your code is 123456."
    assert saved.get_body(preferencelist=("html",)) is not None


def test_send_mail_unconfigured_fails(app):
    with pytest.raises(mail.MailError) as failure:
        mail.send_mail(ADDRESS, "Subject", "Text", "<p>Text</p>", "Pawpost")

    assert failure.value.category == "setup"
    assert failure.value.temporary is False


@pytest.mark.parametrize(
    "url, expected",
    [
        ("smtp://127.0.0.1:2525", ("127.0.0.1", 2525, None, None, False, False)),
        ("smtp://mail.example.com", ("mail.example.com", 25, None, None, False, False)),
        ("smtp://u:p@mail.example.com?starttls=true", ("mail.example.com", 587, "u", "p", False, True)),
        ("smtps://u:p%2Fq@mail.example.com", ("mail.example.com", 465, "u", "p/q", True, False)),
        ("smtps://mail.example.com:2465", ("mail.example.com", 2465, None, None, True, False)),
    ],
)
def test_parse_smtp_url(url, expected):
    settings = config.parse_smtp_url(url)

    assert (settings.host, settings.port, settings.username, settings.password, settings.implicit_tls, settings.starttls) == expected


@pytest.mark.parametrize(
    "url",
    [
        "http://user:hunter2@mail.example.com",
        "smtp://user:hunter2@:25",
        "smtp://user:hunter2@mail.example.com:99999",
        "smtp://user:hunter2@mail.example.com?starttls=maybe",
        "smtp://user:hunter2@mail.example.com?tls=true",
        "smtps://user:hunter2@mail.example.com?starttls=true",
    ],
)
def test_bad_smtp_url_fails_at_start(url):
    with pytest.raises(config.ConfigError) as failure:
        config.load(
            {
                "PAWPOST_ENV": "production",
                "SECRET_KEY": "s",
                "SQLALCHEMY_DATABASE_URI": "sqlite://",
                "REDIS_URL": "redis://127.0.0.1:6379/0",
                "PAWPOST_BASE_URL": "https://pawpost.example.com",
                "PAWPOST_MAIL_FROM": "notifications@pawpost.example.com",
                "PAWPOST_SMTP_URL": url,
            }
        )

    assert "PAWPOST_SMTP_URL" in str(failure.value)
    assert "hunter2" not in str(failure.value)


def test_production_smtp_needs_mail_from():
    with pytest.raises(config.ConfigError, match="PAWPOST_MAIL_FROM is not set"):
        config.load(
            {
                "PAWPOST_ENV": "production",
                "SECRET_KEY": "s",
                "SQLALCHEMY_DATABASE_URI": "sqlite://",
                "REDIS_URL": "redis://127.0.0.1:6379/0",
                "PAWPOST_BASE_URL": "https://pawpost.example.com",
                "PAWPOST_SMTP_URL": "smtps://mail.example.com",
            }
        )
