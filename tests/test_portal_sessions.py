"""Pet Portal sessions: cookie flags, "stay signed in", and logout that ends every session."""

import pytest
import requests

import config
from helpers import csrf_token
from portal.extensions import db
from portal.models import Client
from portal_helpers import issue_link, page_token, portal_message, sign_in

MOBILE = "+15551230001"


@pytest.fixture
def parent(factory):
    clinic = factory.clinic("bandwidth", name="Happy Paws Clinic")
    row = factory.client(clinic, MOBILE)
    portal_message(clinic, row)
    return row


def cookie_header(response, name):
    return next(h for h in response.headers.getlist("Set-Cookie") if h.startswith(name + "="))


def live_browser(live, client_id, remember=False):
    """Return a requests session signed in through a fresh link on the live server."""
    browser = requests.Session()
    raw = issue_link(client_id)
    page = browser.get(f"{live.url}/p/{raw}", timeout=5)
    data = {"csrf_token": csrf_token(page.content)}
    if remember:
        data["remember"] = "y"
    browser.post(f"{live.url}/p/{raw}", data=data, timeout=5, allow_redirects=False)
    return browser


def inbox_status(live, cookies):
    browser = requests.Session()
    for name, value in cookies.items():
        browser.cookies.set(name, value)
    return browser.get(f"{live.url}/inbox", timeout=5, allow_redirects=False).status_code


def live_logout(live, browser):
    token = csrf_token(browser.get(f"{live.url}/inbox", timeout=5).content)
    return browser.post(f"{live.url}/logout", data={"csrf_token": token}, timeout=5, allow_redirects=False)


@pytest.mark.parametrize(
    ("flag", "present"),
    [("HttpOnly", True), ("SameSite=Lax", True), ("Secure", False)],
)
def test_session_cookie_flags(client, parent, flag, present):
    response = sign_in(client, parent.id)

    assert (flag in cookie_header(response, "session")) is present


@pytest.mark.parametrize(
    ("flag", "present"),
    [("HttpOnly", True), ("SameSite=Lax", True), ("Secure", False)],
)
def test_remember_cookie_flags(client, parent, flag, present):
    response = sign_in(client, parent.id, remember=True)

    assert (flag in cookie_header(response, "remember_token")) is present


@pytest.mark.parametrize(
    ("base_url", "secure"),
    [("https://pawpost.example.com", True), ("http://127.0.0.1:5000", False)],
)
@pytest.mark.parametrize("setting", ["SESSION_COOKIE_SECURE", "REMEMBER_COOKIE_SECURE"])
def test_cookies_secure_on_https(base_url, secure, setting):
    settings = config.load({"PAWPOST_ENV": "development", "PAWPOST_BASE_URL": base_url})

    assert settings[setting] is secure


def test_no_remember_cookie_by_default(client, parent):
    response = sign_in(client, parent.id)

    assert "remember_token=" not in " ".join(response.headers.getlist("Set-Cookie"))


def test_remember_cookie_signs_in_alone(live, parent):
    browser = live_browser(live, parent.id, remember=True)

    status = inbox_status(live, {"remember_token": browser.cookies["remember_token"]})

    assert status == 200


def test_logout_rejects_old_remember_cookie(live, parent):
    browser = live_browser(live, parent.id, remember=True)
    old_cookie = browser.cookies["remember_token"]

    response = live_logout(live, browser)

    assert response.status_code == 302
    assert inbox_status(live, {"remember_token": old_cookie}) == 401


def test_logout_rejects_old_session_cookie(live, parent):
    browser = live_browser(live, parent.id)
    old_cookie = browser.cookies["session"]

    live_logout(live, browser)

    assert inbox_status(live, {"session": old_cookie}) == 401


def test_logout_ends_other_devices(live, parent):
    phone = live_browser(live, parent.id, remember=True)
    laptop = live_browser(live, parent.id)

    live_logout(live, phone)

    assert laptop.get(f"{live.url}/inbox", timeout=5, allow_redirects=False).status_code == 401


def test_logout_ends_other_clinic_record(live, factory, parent):
    other_clinic = factory.clinic("twilio", name="Maple Street Vets")
    other_record = factory.client(other_clinic, MOBILE)
    first = live_browser(live, parent.id)
    second = live_browser(live, other_record.id)

    live_logout(live, first)

    assert second.get(f"{live.url}/inbox", timeout=5, allow_redirects=False).status_code == 401


def test_logout_raises_session_version(client, parent):
    sign_in(client, parent.id)
    before = parent.session_version

    client.post("/logout", data={"csrf_token": page_token(client, "/inbox")})
    db.session.rollback()

    assert db.session.get(Client, parent.id).session_version == before + 1


def test_logout_keeps_other_people_signed_in(live, factory, parent):
    neighbour = factory.client(parent.clinic, "+15551230002", name="Other Parent")
    first = live_browser(live, parent.id)
    second = live_browser(live, neighbour.id)

    live_logout(live, first)

    assert second.get(f"{live.url}/inbox", timeout=5, allow_redirects=False).status_code == 200


def test_logout_needs_csrf(client, parent):
    sign_in(client, parent.id)

    response = client.post("/logout")

    assert response.status_code == 400
    assert client.get("/inbox").status_code == 200


def test_logout_signed_out_redirects(client):
    response = client.post("/logout", data={"csrf_token": page_token(client, "/login")})

    assert response.status_code == 302
    assert response.headers["Location"] == "/"


def test_link_remember_checkbox(client, parent):
    raw = issue_link(parent.id)

    page = client.get(f"/p/{raw}")

    assert b'name="remember"' in page.data
    assert b"Stay signed in on this device" in page.data
