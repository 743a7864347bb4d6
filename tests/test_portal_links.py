"""Pet Portal pointer links: a GET never spends the token, a POST with CSRF signs the client in."""

import secrets
from datetime import timedelta

import pytest
import requests

from helpers import BODY, csrf_token, outbound_sms
from portal.extensions import db
from portal.models import PortalToken, utcnow

LINK_PREVIEW_AGENTS = [
    "facebookexternalhit/1.1 (+http://www.facebook.com/externalhit_uatext.php)",
    "Slackbot-LinkExpanding 1.0 (+https://api.slack.com/robots)",
    "WhatsApp/2.0",
    "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/17.4 Mobile/15E148 Safari/604.1",
]


def issue_link(client_id, message_id, days=7):
    """Store a pointer token and return its raw value, as the pointer job does."""
    row, raw = PortalToken.issue(client_id=client_id, message_id=message_id, purpose="pointer", days=days)
    db.session.add(row)
    db.session.commit()
    return raw


def token_row(raw):
    db.session.rollback()
    return db.session.execute(
        db.select(PortalToken).where(PortalToken.token_hash == PortalToken.hash(raw))
    ).scalar_one()


@pytest.fixture
def pet_parent(factory):
    """Return a client with one message in the portal and a fresh pointer link to it."""
    clinic = factory.clinic("bandwidth", name="Happy Paws Clinic")
    parent = factory.client(clinic, "+15551230010")
    sms = outbound_sms(clinic, parent)
    raw = issue_link(parent.id, sms.message_id)
    return parent, sms.message_id, raw


def signed_in_session(client):
    with client.session_transaction() as session:
        return "_user_id" in session


def open_link(client, raw):
    """Confirm a link as a person would: load the page, then press the button."""
    page = client.get(f"/p/{raw}")
    return client.post(f"/p/{raw}", data={"csrf_token": csrf_token(page.data)})


@pytest.mark.parametrize("user_agent", LINK_PREVIEW_AGENTS)
def test_link_get_spends_nothing(client, pet_parent, user_agent):
    _, _, raw = pet_parent

    response = client.get(f"/p/{raw}", headers={"User-Agent": user_agent})

    assert response.status_code == 200
    assert b"Open my message" in response.data
    assert b"Happy Paws Clinic" in response.data
    assert BODY.encode() not in response.data
    assert token_row(raw).used_at is None
    assert signed_in_session(client) is False
    assert client.get("/inbox").status_code == 401


def test_link_head_spends_nothing(client, pet_parent):
    _, _, raw = pet_parent

    response = client.head(f"/p/{raw}")

    assert response.status_code == 200
    assert token_row(raw).used_at is None
    assert client.get("/inbox").status_code == 401


def test_link_get_twice_still_usable(client, pet_parent):
    _, message_id, raw = pet_parent
    client.get(f"/p/{raw}")
    client.get(f"/p/{raw}")

    response = open_link(client, raw)

    assert response.status_code == 302
    assert response.headers["Location"] == f"/inbox/messages/{message_id}"


def test_link_post_without_csrf_400(client, pet_parent):
    _, _, raw = pet_parent
    client.get(f"/p/{raw}")

    response = client.post(f"/p/{raw}")

    assert response.status_code == 400
    assert token_row(raw).used_at is None
    assert client.get("/inbox").status_code == 401


def test_link_post_wrong_csrf_400(client, pet_parent):
    _, _, raw = pet_parent
    client.get(f"/p/{raw}")

    response = client.post(f"/p/{raw}", data={"csrf_token": "forged-token"})

    assert response.status_code == 400
    assert token_row(raw).used_at is None


def test_link_post_signs_in(client, pet_parent):
    parent, message_id, raw = pet_parent

    response = open_link(client, raw)
    message_page = client.get(response.headers["Location"])

    assert response.status_code == 302
    assert response.headers["Location"] == f"/inbox/messages/{message_id}"
    assert token_row(raw).used_at is not None
    assert signed_in_session(client) is True
    assert message_page.status_code == 200
    assert BODY.encode() in message_page.data
    assert client.get("/inbox").status_code == 200


def test_link_post_again_410(client, pet_parent):
    _, _, raw = pet_parent
    first_page = client.get(f"/p/{raw}")
    second_page = client.get(f"/p/{raw}")
    client.post(f"/p/{raw}", data={"csrf_token": csrf_token(first_page.data)})

    response = client.post(f"/p/{raw}", data={"csrf_token": csrf_token(second_page.data)})

    assert response.status_code == 410
    assert b"already used" in response.data


def test_used_link_get_410(client, pet_parent):
    _, _, raw = pet_parent
    open_link(client, raw)

    response = client.get(f"/p/{raw}")

    assert response.status_code == 410
    assert b"already used" in response.data


def test_used_link_other_browser(client, live, pet_parent):
    _, _, raw = pet_parent
    open_link(client, raw)
    # A browser of its own, through the live server, so it shares no request state with ``client``.
    other = requests.Session()

    response = other.get(f"{live.url}/p/{raw}", timeout=5)

    assert response.status_code == 410
    assert other.get(f"{live.url}/inbox", timeout=5, allow_redirects=False).status_code == 401


def test_expired_link_410(client, pet_parent):
    parent, message_id, raw = pet_parent
    row = token_row(raw)
    row.expires_at = utcnow() - timedelta(minutes=1)
    db.session.commit()
    csrf = csrf_token(client.get(f"/p/{issue_link(parent.id, message_id)}").data)

    page = client.get(f"/p/{raw}")
    posted = client.post(f"/p/{raw}", data={"csrf_token": csrf})

    assert page.status_code == 410
    assert b"expired" in page.data
    assert posted.status_code == 410
    assert b"expired" in posted.data
    assert token_row(raw).used_at is None
    assert client.get("/inbox").status_code == 401


@pytest.mark.parametrize(
    "raw",
    [
        "unknown-token",
        secrets.token_urlsafe(24),
        "x" * 500,
        "a" * 101,
        "%F0%9F%90%BE",
    ],
    ids=["word", "random", "500_chars", "101_chars", "emoji"],
)
def test_unknown_link_404(client, pet_parent, raw):
    response = client.get(f"/p/{raw}")

    assert response.status_code == 404
    assert b"This link is not valid" in response.data
    assert client.get("/inbox").status_code == 401


def test_unknown_link_post_404(client, pet_parent):
    _, _, raw = pet_parent
    csrf = csrf_token(client.get(f"/p/{raw}").data)

    response = client.post("/p/" + "x" * 500, data={"csrf_token": csrf})

    assert response.status_code == 404
    assert token_row(raw).used_at is None


def test_other_client_message_404(client, factory, pet_parent):
    parent, message_id, raw = pet_parent
    other_parent = factory.client(parent.clinic, "+15551230020", name="Other Parent")
    other_message_id = outbound_sms(parent.clinic, other_parent).message_id
    open_link(client, raw)

    own = client.get(f"/inbox/messages/{message_id}")
    other = client.get(f"/inbox/messages/{other_message_id}")

    assert own.status_code == 200
    assert other.status_code == 404
    assert BODY.encode() not in other.data


def test_second_link_switches_client(client, factory, pet_parent):
    parent, message_id, raw = pet_parent
    other_parent = factory.client(parent.clinic, "+15551230020", name="Other Parent")
    other_message_id = outbound_sms(parent.clinic, other_parent).message_id
    open_link(client, raw)

    response = open_link(client, issue_link(other_parent.id, other_message_id))

    assert response.headers["Location"] == f"/inbox/messages/{other_message_id}"
    assert client.get(f"/inbox/messages/{message_id}").status_code == 404


@pytest.mark.parametrize(
    "path",
    ["confirm", "problem", "message"],
)
def test_portal_private_headers(client, pet_parent, path):
    _, message_id, raw = pet_parent
    if path == "confirm":
        response = client.get(f"/p/{raw}")
    elif path == "problem":
        response = client.get("/p/unknown-token")
    else:
        open_link(client, raw)
        response = client.get(f"/inbox/messages/{message_id}")

    assert response.headers["Referrer-Policy"] == "same-origin"
    assert response.headers["Cache-Control"] == "no-store"


def test_logout_ends_session(client, pet_parent):
    _, _, raw = pet_parent
    open_link(client, raw)
    inbox = client.get("/inbox")

    response = client.post("/logout", data={"csrf_token": csrf_token(inbox.data)})

    assert response.status_code == 302
    assert client.get("/inbox").status_code == 401
