"""Pet Portal sign-in by one-time code: by SMS and email, hash-only storage, limits and ``next``."""

import re
import socket
from datetime import timedelta
from email import message_from_bytes
from email import policy as email_policy
from urllib.parse import quote

import pytest
import redis
import requests
from aiosmtpd.controller import Controller

from conftest import run_worker
from helpers import count, csrf_token, wait_for_callbacks
from notifier import login_codes, policy
from portal.auth import safe_next
from portal.extensions import db
from portal.models import LoginCode, utcnow
from portal_helpers import code_from_text, page_token, wait_for_texts

MOBILE = "+15551230001"
EMAIL = "pat@example.com"
CSRF_VALUE = re.compile(rb'name="csrf_token"[^>]*value="[^"]+"')


class Inbox:
    """An aiosmtpd handler that keeps every email it receives."""

    def __init__(self):
        self.emails = []

    async def handle_DATA(self, server, session, envelope):
        self.emails.append((envelope.rcpt_tos, message_from_bytes(envelope.content, policy=email_policy.default)))
        return "250 OK"


@pytest.fixture(autouse=True)
def settled_callbacks(live):
    """Wait for the sandbox's delivery callbacks of a test's texts, so none lands in the next test."""
    yield
    wait_for_callbacks(live)


@pytest.fixture
def smtp(app):
    """Run a local SMTP server and point the app's mail setting at it for one test."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    inbox = Inbox()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    previous = app.config.get("PAWPOST_SMTP_URL")
    app.config["PAWPOST_SMTP_URL"] = f"smtp://127.0.0.1:{port}"
    yield inbox
    app.config["PAWPOST_SMTP_URL"] = previous
    controller.stop()


@pytest.fixture
def parent(factory):
    """Return a client whose texts are delivered and whose email address is verified."""
    clinic = factory.clinic("bandwidth", name="Happy Paws Clinic")
    row = factory.client(clinic, MOBILE)
    row.email = EMAIL
    row.email_verified_at = utcnow()
    db.session.commit()
    return row


def request_code(http, address, next_path=None):
    path = "/login" + (f"?next={next_path}" if next_path else "")
    return http.post(path, data={"csrf_token": page_token(http, "/login"), "address": address})


def enter_code(http, code, remember=False):
    data = {"csrf_token": page_token(http, "/login/code"), "code": code}
    if remember:
        data["remember"] = "y"
    return http.post("/login/code", data=data)


def texted_code(live, number=MOBILE):
    return code_from_text(wait_for_texts(live, number)[-1]["body"])


def active_codes():
    db.session.rollback()
    return db.session.execute(db.select(LoginCode)).scalars().all()


def test_login_page_has_form(client):
    response = client.get("/login")

    assert response.status_code == 200
    assert b'name="address"' in response.data
    assert b"Send me a code" in response.data


def test_sms_code_signs_in(client, live, parent):
    requested = request_code(client, "(555) 123-0001")
    run_worker(live.app)
    code = texted_code(live)

    signed_in = enter_code(client, code)

    assert requested.status_code == 302
    assert requested.headers["Location"] == "/login/code"
    assert signed_in.status_code == 302
    assert signed_in.headers["Location"] == "/inbox"
    assert client.get("/inbox").status_code == 200


@pytest.mark.parametrize("script", ["fullwidth", "arabic_indic"])
def test_code_in_other_digits_signs_in(client, live, parent, script):
    request_code(client, MOBILE)
    run_worker(live.app)
    code = texted_code(live)
    zero = {"fullwidth": 0xFF10, "arabic_indic": 0x0660}[script]

    signed_in = enter_code(client, "".join(chr(zero + int(digit)) for digit in code))

    assert signed_in.status_code == 302
    assert signed_in.headers["Location"] == "/inbox"


def test_sms_code_text(client, live, parent):
    request_code(client, MOBILE)
    run_worker(live.app)

    texts = wait_for_texts(live, MOBILE)

    assert len(texts) == 1
    assert "Happy Paws Clinic" in texts[0]["body"]
    assert "expires in 10 minutes" in texts[0]["body"]
    assert texts[0]["body"].endswith(f"@127.0.0.1 #{code_from_text(texts[0]['body'])}")


def test_code_stored_only_as_hash(client, live, parent):
    request_code(client, MOBILE)
    run_worker(live.app)
    code = texted_code(live)
    rows = active_codes()
    store = redis.Redis.from_url(live.app.config["REDIS_URL"])
    redis_values = b"".join(store.dump(key) or b"" for key in store.scan_iter())

    assert len(rows) == 1
    assert rows[0].code_hash == LoginCode.hash(parent.id, code)
    assert code not in rows[0].code_hash
    assert rows[0].channel == "sms"
    assert code.encode() not in redis_values


def test_code_expires_in_ten_minutes(client, live, parent):
    request_code(client, MOBILE)
    run_worker(live.app)

    row = active_codes()[0]

    assert timedelta(minutes=9) < row.expires_at - utcnow() <= timedelta(minutes=10)


def test_email_code_signs_in(client, live, parent, smtp):
    request_code(client, "Pat@Example.com")
    run_worker(live.app)
    recipients, email = smtp.emails[-1]
    code = code_from_text(email.get_body(("plain",)).get_content())

    signed_in = enter_code(client, code)

    assert recipients == [EMAIL]
    assert code in email["Subject"]
    assert signed_in.headers["Location"] == "/inbox"
    assert active_codes()[0].channel == "email"


def test_unverified_email_gets_nothing(client, live, parent, smtp):
    parent.email_verified_at = None
    db.session.commit()

    response = request_code(client, EMAIL)
    run_worker(live.app)

    assert response.headers["Location"] == "/login/code"
    assert smtp.emails == []
    assert count(LoginCode) == 0


@pytest.mark.parametrize(
    "reason",
    ["opted_out", "landline"],
)
def test_unreachable_number_gets_nothing(client, live, parent, reason):
    if reason == "opted_out":
        policy.record_consent(parent.clinic.sender_number, MOBILE, True, "keyword")
    else:
        policy.record_line_type(MOBILE, "landline", "lookup")
    db.session.commit()

    response = request_code(client, MOBILE)
    run_worker(live.app)

    assert response.headers["Location"] == "/login/code"
    assert live.carrier.all_deliveries() == []
    assert count(LoginCode) == 0


@pytest.mark.parametrize(
    "address",
    [MOBILE, "+15551239999", EMAIL, "nobody@example.com"],
    ids=["client_mobile", "unknown_mobile", "client_email", "unknown_email"],
)
def test_code_page_reveals_nothing(client, parent, address):
    response = request_code(client, address)
    page = client.get("/login/code")

    assert response.status_code == 302
    assert response.headers["Location"] == "/login/code"
    assert page.status_code == 200
    assert b"belongs to a Pet Portal account, we sent a 6-digit code" in page.data


def test_code_page_same_for_unknown(live, parent):
    pages = []
    # Same length and last two digits, so the masked number on the page is the same.
    for address in (MOBILE, "+15551239901"):
        browser = requests.Session()
        login_page = browser.get(f"{live.url}/login", timeout=5)
        data = {"csrf_token": csrf_token(login_page.content), "address": address}
        code_page = browser.post(f"{live.url}/login", data=data, timeout=5)
        pages.append(CSRF_VALUE.sub(b"", code_page.content))

    assert pages[0] == pages[1]


@pytest.mark.parametrize(
    "address",
    ["not an address", "12", "pat@", "@example.com"],
)
def test_invalid_address_400(client, parent, address):
    response = request_code(client, address)

    assert response.status_code == 400
    assert b"Enter an email address such as" in response.data


def test_wrong_code_rejected(client, live, parent):
    request_code(client, MOBILE)
    run_worker(live.app)
    code = texted_code(live)
    wrong = f"{(int(code) + 1) % 10**6:06d}"

    response = enter_code(client, wrong)

    assert response.status_code == 400
    assert b"That code is wrong or has expired" in response.data
    assert active_codes()[0].failed_attempts == 1
    assert client.get("/inbox").status_code == 401


def test_code_dead_after_failed_attempts(client, live, parent):
    request_code(client, MOBILE)
    run_worker(live.app)
    code = texted_code(live)
    wrong = f"{(int(code) + 1) % 10**6:06d}"
    for _ in range(login_codes.MAX_FAILED_ATTEMPTS):
        enter_code(client, wrong)

    response = enter_code(client, code)

    assert response.status_code == 400
    assert active_codes()[0].failed_attempts == login_codes.MAX_FAILED_ATTEMPTS
    assert active_codes()[0].used_at is None
    assert client.get("/inbox").status_code == 401


def test_expired_code_rejected(client, live, parent):
    request_code(client, MOBILE)
    run_worker(live.app)
    code = texted_code(live)
    row = active_codes()[0]
    row.expires_at = utcnow() - timedelta(seconds=1)
    db.session.commit()

    response = enter_code(client, code)

    assert response.status_code == 400
    assert client.get("/inbox").status_code == 401


def test_code_works_once(client, live, parent):
    request_code(client, MOBILE)
    run_worker(live.app)
    code = texted_code(live)
    enter_code(client, code)
    client.post("/logout", data={"csrf_token": page_token(client, "/inbox")})
    request_code(client, MOBILE)

    response = enter_code(client, code)

    assert response.status_code == 400
    assert client.get("/inbox").status_code == 401


@pytest.mark.parametrize("code", ["12345", "1234567", "abcdef", "12 34 5x"])
def test_malformed_code_not_counted(client, live, parent, code):
    request_code(client, MOBILE)
    run_worker(live.app)

    response = enter_code(client, code)

    assert response.status_code == 400
    assert b"Enter the 6 digits of the code" in response.data
    assert active_codes()[0].failed_attempts == 0


def test_code_with_spaces_accepted(client, live, parent):
    request_code(client, MOBILE)
    run_worker(live.app)
    code = texted_code(live)

    response = enter_code(client, f"{code[:3]} {code[3:]}")

    assert response.headers["Location"] == "/inbox"


def test_code_page_without_request_redirects(client):
    response = client.get("/login/code")

    assert response.status_code == 302
    assert response.headers["Location"] == "/login"


@pytest.mark.parametrize(
    "address",
    [MOBILE, "+15551239999"],
    ids=["client", "unknown"],
)
def test_address_rate_limit(client, live, parent, address):
    answers = [request_code(client, address).status_code for _ in range(6)]

    assert answers[:5] == [302] * 5
    assert answers[5] == 429


def test_address_limit_message(client, parent):
    for _ in range(5):
        request_code(client, MOBILE)

    response = request_code(client, "555-123-0001")

    assert response.status_code == 429
    assert b"Too many codes were requested for this address" in response.data


def test_client_rate_limit(client, live, parent, smtp):
    for address in [MOBILE] * 3 + [EMAIL] * 3:
        request_code(client, address)
    run_worker(live.app)

    assert len(wait_for_texts(live, MOBILE, 3)) + len(smtp.emails) == 5
    assert count(LoginCode) == 5


@pytest.mark.parametrize(
    ("next_path", "expected"),
    [
        ("/inbox/threads/5", "/inbox/threads/5"),
        ("//evil.example", "/inbox"),
        ("/%2F%2Fevil.example", "/inbox"),
        ("javascript:alert(1)", "/inbox"),
        ("https://evil.example/", "/inbox"),
    ],
    ids=["path", "scheme_relative", "encoded_slashes", "javascript", "absolute"],
)
def test_code_sign_in_next(client, live, parent, next_path, expected):
    request_code(client, MOBILE, next_path=quote(next_path, safe=""))
    run_worker(live.app)

    response = enter_code(client, texted_code(live))

    assert response.headers["Location"] == expected


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        ("/inbox", "/inbox"),
        ("/inbox/messages/3?x=1#reply", "/inbox/messages/3?x=1#reply"),
        ("/a%20b", "/a%20b"),
        (None, None),
        ("", None),
        ("inbox", None),
        ("//evil.example", None),
        ("///evil.example", None),
        ("////evil.example", None),
        ("/\\evil.example", None),
        ("\\\\evil.example", None),
        ("\\/evil.example", None),
        ("/\t/evil.example", None),
        ("/\n/evil.example", None),
        ("https://evil.example", None),
        ("http:evil.example", None),
        ("javascript:alert(1)", None),
        ("JavaScript:alert(1)", None),
        (" javascript:alert(1)", None),
        ("/%2F%2Fevil.example", None),
        ("/%2f/evil.example", None),
        ("%2F%2Fevil.example", None),
        ("/%5Cevil.example", None),
        ("/%5cevil.example", None),
        ("%5C%5Cevil.example", None),
        ("/%252F%252Fevil.example", None),
        ("/%09/evil.example", None),
        ("/%0A/evil.example", None),
        ("/" + "a" * 2001, None),
    ],
)
def test_safe_next(target, expected):
    assert safe_next(target) == expected


def test_remember_on_code_sign_in(client, live, parent):
    request_code(client, MOBILE)
    run_worker(live.app)

    response = enter_code(client, texted_code(live), remember=True)

    assert "remember_token=" in " ".join(response.headers.getlist("Set-Cookie"))


def test_login_form_needs_csrf(client, parent):
    response = client.post("/login", data={"address": MOBILE})

    assert response.status_code == 400
    assert count(LoginCode) == 0


def test_code_form_csrf_in_page(client, parent):
    request_code(client, MOBILE)

    page = client.get("/login/code")

    assert csrf_token(page.data)
    assert b'autocomplete="one-time-code"' in page.data
    assert b'inputmode="numeric"' in page.data
