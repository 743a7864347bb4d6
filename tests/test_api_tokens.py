"""API tokens: the clinic admin's page, revocation, last-used tracking, and the API's error format."""

import hashlib
import io
import re
from datetime import timedelta

import pytest

from api_helpers import app_settings
from helpers import BODY, bearer, count, csrf_token
from portal.extensions import db
from portal.models import ApiToken, Message, utcnow

TOKEN_PATTERN = re.compile(r'id="new-token"[^>]*value="(pp_[^"]+)"')


@pytest.fixture
def clinic(factory):
    return factory.clinic("twilio")


@pytest.fixture
def admin(factory, clinic):
    user = factory.staff(clinic)
    user.is_clinic_admin = True
    db.session.commit()
    return user


def sign_in(client, user):
    page = client.get("/admin/login")
    client.post("/admin/login", data={"email": user.email, "password": "correct horse battery staple", "csrf_token": csrf_token(page.data)})


def create_token(client, name="Practice PIMS"):
    page = client.get("/admin/api-tokens")
    return client.post("/admin/api-tokens", data={"name": name, "csrf_token": csrf_token(page.data)})


def stored_tokens():
    db.session.rollback()
    return db.session.execute(db.select(ApiToken)).scalars().all()


# The admin page ----------------------------------------------------------------------------


def test_page_lists_tokens(client, factory, clinic, admin):
    factory.api_token(clinic)
    sign_in(client, admin)

    response = client.get("/admin/api-tokens")

    assert response.status_code == 200
    assert "Test PIMS" in response.get_data(as_text=True)
    assert "Never" in response.get_data(as_text=True)


def test_page_anonymous_redirects(client):
    response = client.get("/admin/api-tokens")

    assert response.status_code == 302
    assert "/admin/login" in response.headers["Location"]


@pytest.mark.parametrize("kind", ["staff", "operator"])
def test_page_non_admin_403(client, factory, clinic, kind):
    user = factory.staff(clinic if kind == "staff" else None, operator=kind == "operator")
    sign_in(client, user)

    token = csrf_token(client.get("/admin/").data)

    assert client.get("/admin/api-tokens").status_code == 403
    assert client.post("/admin/api-tokens", data={"name": "x", "csrf_token": token}).status_code == 403
    assert count(ApiToken) == 0


def test_create_shows_token_once(client, admin):
    sign_in(client, admin)

    response = create_token(client)
    raw = TOKEN_PATTERN.search(response.get_data(as_text=True)).group(1)
    (row,) = stored_tokens()
    reloaded = client.get("/admin/api-tokens").get_data(as_text=True)

    assert response.status_code == 201
    assert response.headers["Cache-Control"] == "no-store"
    assert row.token_hash == hashlib.sha256(raw.encode()).hexdigest()
    assert row.name == "Practice PIMS"
    assert row.clinic_id == admin.clinic_id
    assert raw not in reloaded
    assert "Practice PIMS" in reloaded


def test_created_token_works(client, admin):
    sign_in(client, admin)
    raw = TOKEN_PATTERN.search(create_token(client).get_data(as_text=True)).group(1)

    response = client.post("/api/v1/messages", json={"to": "+15551234501", "body": BODY}, headers=bearer(raw))

    assert response.status_code == 201


@pytest.mark.parametrize("name", ["", "   ", "x" * 81], ids=["empty", "blank", "too_long"])
def test_create_invalid_name_400(client, admin, name):
    sign_in(client, admin)

    response = create_token(client, name)

    assert response.status_code == 400
    assert count(ApiToken) == 0


def test_create_needs_csrf(client, admin):
    sign_in(client, admin)

    response = client.post("/admin/api-tokens", data={"name": "No CSRF"})

    assert response.status_code == 400
    assert count(ApiToken) == 0


def test_revoke_then_401(client, factory, clinic, admin):
    raw = factory.api_token(clinic)
    (row,) = stored_tokens()
    sign_in(client, admin)
    page = client.get("/admin/api-tokens")

    response = client.post(f"/admin/api-tokens/{row.id}/revoke", data={"csrf_token": csrf_token(page.data)})
    api = client.get("/api/v1/failure-rates", headers=bearer(raw))

    assert response.status_code == 302
    assert stored_tokens()[0].revoked_at is not None
    assert api.status_code == 401
    assert api.get_json()["error"]["code"] == "unauthorized"


def test_revoke_other_clinic_404(client, factory, admin):
    factory.api_token(factory.clinic("bandwidth"))
    (row,) = stored_tokens()
    sign_in(client, admin)
    page = client.get("/admin/api-tokens")

    response = client.post(f"/admin/api-tokens/{row.id}/revoke", data={"csrf_token": csrf_token(page.data)})

    assert response.status_code == 404
    assert stored_tokens()[0].revoked_at is None


def test_page_hides_other_clinic(client, factory, admin):
    factory.api_token(factory.clinic("bandwidth"))
    sign_in(client, admin)

    assert "Test PIMS" not in client.get("/admin/api-tokens").get_data(as_text=True)


# last_used_at ------------------------------------------------------------------------------


def test_last_used_set(client, factory, clinic):
    raw = factory.api_token(clinic)
    before = utcnow()

    client.get("/api/v1/failure-rates", headers=bearer(raw))

    assert stored_tokens()[0].last_used_at >= before - timedelta(seconds=1)


def test_last_used_once_a_minute(client, factory, clinic):
    raw = factory.api_token(clinic)
    client.get("/api/v1/failure-rates", headers=bearer(raw))
    first = stored_tokens()[0].last_used_at

    client.get("/api/v1/failure-rates", headers=bearer(raw))

    assert stored_tokens()[0].last_used_at == first


def test_last_used_after_a_minute(client, factory, clinic):
    raw = factory.api_token(clinic)
    row = stored_tokens()[0]
    row.last_used_at = utcnow() - timedelta(minutes=2)
    db.session.commit()

    client.get("/api/v1/failure-rates", headers=bearer(raw))

    assert stored_tokens()[0].last_used_at > utcnow() - timedelta(seconds=30)


# Error format ------------------------------------------------------------------------------


@pytest.fixture
def token(factory, clinic):
    return factory.api_token(clinic)


@pytest.mark.parametrize(
    ("method", "path", "status", "code"),
    [
        ("get", "/api/v1/nothing-here", 404, "not_found"),
        ("get", "/api/v1/messages/abc", 404, "not_found"),
        ("delete", "/api/v1/messages", 405, "method_not_allowed"),
        ("get", "/api/v1/messages", 405, "method_not_allowed"),
        ("post", "/api/v1/failure-rates", 405, "method_not_allowed"),
        ("delete", "/api/v1/clients/P1", 405, "method_not_allowed"),
    ],
    ids=["unknown_path", "id_not_number", "delete_messages", "get_messages", "post_rates", "delete_client"],
)
def test_http_errors_json(client, token, method, path, status, code):
    response = getattr(client, method)(path, headers=bearer(token))
    error = response.get_json()["error"]

    assert response.status_code == status
    assert error["code"] == code
    assert isinstance(error["message"], str)


def test_405_allow_header(client, token):
    response = client.delete("/api/v1/messages", headers=bearer(token))

    assert "POST" in response.headers["Allow"]


def test_body_too_large_413(app, client, token):
    with app_settings(app, MAX_CONTENT_LENGTH=1024):
        response = client.post(
            "/api/v1/messages",
            data={"to": "+15551234501", "body": BODY, "media": (io.BytesIO(b"\x00" * 4096), "big.png")},
            headers=bearer(token),
            content_type="multipart/form-data",
        )

    assert response.status_code == 413
    assert response.get_json()["error"]["code"] == "payload_too_large"
    assert count(Message) == 0


def test_rate_limited_429(app, client, token):
    with app_settings(app, PAWPOST_API_RATE_LIMIT="2 per minute"):
        statuses = [client.get("/api/v1/failure-rates", headers=bearer(token)).status_code for _ in range(3)]
        response = client.get("/api/v1/failure-rates", headers=bearer(token))

    assert statuses == [200, 200, 429]
    assert response.get_json()["error"]["code"] == "rate_limited"
    assert 1 <= int(response.headers["Retry-After"]) <= 60


def test_rate_limit_per_token(app, client, factory, clinic, token):
    other = factory.api_token(clinic)
    with app_settings(app, PAWPOST_API_RATE_LIMIT="1 per minute"):
        first = client.get("/api/v1/failure-rates", headers=bearer(token)).status_code
        second = client.get("/api/v1/failure-rates", headers=bearer(other)).status_code

    assert first == 200
    assert second == 200
