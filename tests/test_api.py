"""The PIMS JSON API: token authentication, input validation, tenancy and the health check."""

import pytest
from rq import Queue

from helpers import BODY, bearer, count
from notifier import queues
from portal.extensions import db
from portal.models import ApiToken, Client, Message, utcnow


@pytest.fixture
def clinic(factory):
    return factory.clinic("twilio")


@pytest.fixture
def token(factory, clinic):
    return factory.api_token(clinic)


def _revoked(factory, clinic):
    row, raw = ApiToken.issue(clinic, "Old PIMS")
    row.revoked_at = utcnow()
    db.session.add(row)
    db.session.commit()
    return bearer(raw)


@pytest.mark.parametrize(
    "headers",
    [
        lambda factory, clinic: {},
        lambda factory, clinic: bearer("pp_not-a-real-token"),
        _revoked,
        lambda factory, clinic: {"Authorization": "Bearer "},
        lambda factory, clinic: {"Authorization": "Basic dXNlcjpwYXNz"},
        lambda factory, clinic: {"Authorization": "pp_not-a-real-token"},
    ],
    ids=["missing", "wrong", "revoked", "empty", "basic", "no_scheme"],
)
def test_send_unauthorized(client, factory, clinic, headers):
    response = client.post(
        "/api/v1/messages", json={"to": "+15551234501", "body": BODY}, headers=headers(factory, clinic)
    )

    assert response.status_code == 401
    assert response.is_json
    assert response.get_json()["error"]["code"] == "unauthorized"
    assert count(Message) == 0
    assert count(Client) == 0


def test_read_unauthorized(client, factory, clinic):
    response = client.get("/api/v1/messages/1", headers=_revoked(factory, clinic))

    assert response.status_code == 401
    assert response.is_json


@pytest.mark.parametrize(
    ("request_options", "code", "field", "expected_text"),
    [
        ({"data": "{not json", "content_type": "application/json"}, "invalid_json", None, None),
        ({"json": ["+15551234501", BODY]}, "invalid_json", None, None),
        ({"json": {"body": BODY}}, "invalid_field", "to", "'to'"),
        ({"json": {"to": 15551234501, "body": BODY}}, "invalid_field", "to", "'to'"),
        ({"json": {"to": None, "body": BODY}}, "invalid_field", "to", "'to'"),
        ({"json": {"to": "+15551234501"}}, "invalid_field", "body", "'body'"),
        ({"json": {"to": "+15551234501", "body": ["hi"]}}, "invalid_field", "body", "'body'"),
        ({"json": {"to": "+15551234501", "body": ""}}, "invalid_field", "body", "empty"),
        ({"json": {"to": "+15551234501", "body": "   \n "}}, "invalid_field", "body", "empty"),
        ({"json": {"to": "+15551234501", "body": "x" * 1601}}, "invalid_field", "body", "1601"),
        ({"json": {"to": "12", "body": BODY}}, "invalid_field", "to", "'12'"),
        ({"json": {"to": "hello", "body": BODY}}, "invalid_field", "to", "'hello'"),
        ({"json": {"to": "+1555", "body": BODY}}, "invalid_field", "to", "'+1555'"),
        ({"json": {"to": "", "body": BODY}}, "invalid_field", "to", "missing"),
    ],
    ids=[
        "broken_json", "json_array", "to_missing", "to_number", "to_null", "body_missing",
        "body_list", "body_empty", "body_blank", "body_1601", "to_12", "to_hello", "to_short", "to_empty",
    ],
)
def test_send_invalid_400(client, token, request_options, code, field, expected_text):
    response = client.post("/api/v1/messages", headers=bearer(token), **request_options)
    error = response.get_json()["error"]

    assert response.status_code == 400
    assert error["code"] == code
    assert error.get("field") == field
    if expected_text is not None:
        assert expected_text in error["message"]
    assert count(Message) == 0
    assert count(Client) == 0
    assert Queue("sms", connection=queues.connection()).count == 0


def test_send_created(client, token, clinic):
    response = client.post("/api/v1/messages", json={"to": "+15551234501", "body": BODY}, headers=bearer(token))
    body = response.get_json()
    message = db.session.get(Message, body["id"])

    assert response.status_code == 201
    assert response.headers["Location"] == f"/api/v1/messages/{body['id']}"
    assert body["body"] == BODY
    assert body["direction"] == "outbound"
    assert message.clinic_id == clinic.id
    assert message.source == "api"
    assert [d["channel"] for d in body["deliveries"]] == ["sms", "portal"]
    assert body["deliveries"][0]["status"] == "queued"
    assert Queue("sms", connection=queues.connection()).count == 1


def test_send_body_at_limit(client, token):
    response = client.post("/api/v1/messages", json={"to": "+15551234501", "body": "x" * 1600}, headers=bearer(token))

    assert response.status_code == 201


def test_send_body_stripped(client, token):
    response = client.post("/api/v1/messages", json={"to": "+15551234501", "body": f"  {BODY}\n"}, headers=bearer(token))

    assert response.get_json()["body"] == BODY


def test_send_same_number_one_client(client, token):
    first = client.post("/api/v1/messages", json={"to": "(555) 123-4501", "body": BODY}, headers=bearer(token))
    second = client.post("/api/v1/messages", json={"to": "+15551234501", "body": BODY}, headers=bearer(token))
    third = client.post("/api/v1/messages", json={"to": "555.123.4501", "body": BODY}, headers=bearer(token))
    clients = db.session.execute(db.select(Client)).scalars().all()

    assert [r.status_code for r in (first, second, third)] == [201, 201, 201]
    assert len(clients) == 1
    assert clients[0].mobile_number == "+15551234501"
    assert first.get_json()["client_id"] == second.get_json()["client_id"]
    assert second.get_json()["client_id"] == third.get_json()["client_id"]
    assert count(Message) == 3


def test_send_same_number_two_clinics(client, factory, token):
    other_token = factory.api_token(factory.clinic("bandwidth"))

    client.post("/api/v1/messages", json={"to": "+15551234501", "body": BODY}, headers=bearer(token))
    client.post("/api/v1/messages", json={"to": "+15551234501", "body": BODY}, headers=bearer(other_token))

    assert count(Client) == 2


def test_read_own_message(client, token):
    created = client.post("/api/v1/messages", json={"to": "+15551234501", "body": BODY}, headers=bearer(token))
    message_id = created.get_json()["id"]

    response = client.get(f"/api/v1/messages/{message_id}", headers=bearer(token))

    assert response.status_code == 200
    assert response.get_json()["id"] == message_id
    assert response.get_json()["body"] == BODY


def test_read_other_clinic_404(client, factory, token):
    other_token = factory.api_token(factory.clinic("bandwidth"))
    created = client.post("/api/v1/messages", json={"to": "+15551234501", "body": BODY}, headers=bearer(other_token))
    message_id = created.get_json()["id"]

    response = client.get(f"/api/v1/messages/{message_id}", headers=bearer(token))
    body = response.get_json()

    assert response.status_code == 404
    assert body["error"]["code"] == "not_found"
    assert set(body) == {"error"}
    assert BODY not in response.get_data(as_text=True)
    assert "+15551234501" not in response.get_data(as_text=True)


def test_read_missing_404(client, token):
    response = client.get("/api/v1/messages/999999", headers=bearer(token))

    assert response.status_code == 404
    assert response.get_json()["error"]["code"] == "not_found"


def test_unknown_route_json_404(client, token):
    response = client.get("/api/v1/nothing-here", headers=bearer(token))

    assert response.status_code == 404
    assert response.is_json


def test_healthz_ok(client):
    response = client.get("/healthz")

    assert response.status_code == 200
    assert response.get_json() == {"status": "ok", "checks": {"app": "ok", "database": "ok", "redis": "ok"}}
