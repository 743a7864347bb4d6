"""JSON nested deeper than Python's parser can follow: a 400 like any other invalid JSON, and nothing stored."""

import pytest

from helpers import bearer, count
from portal.models import Client, Message

# Deep enough for a RecursionError in Python's json module: 200 KB, under the webhooks' body limit.
DEEP = "[" * 100_000 + "]" * 100_000


@pytest.fixture
def clinic(factory):
    return factory.clinic("twilio", name="Happy Paws Clinic")


@pytest.mark.parametrize(
    ("method", "path"),
    [("post", "/api/v1/messages"), ("post", "/api/v1/messages/batch"), ("put", "/api/v1/clients/pims-1")],
    ids=["send", "batch", "client_upsert"],
)
def test_api_deep_json_rejected(client, factory, clinic, method, path):
    token = factory.api_token(clinic)

    response = getattr(client, method)(path, data=DEEP, content_type="application/json", headers=bearer(token))

    assert response.status_code == 400
    assert response.get_json()["error"]["code"] == "invalid_json"
    assert count(Message) == 0
    assert count(Client) == 0


def test_bandwidth_deep_json_rejected(client, factory):
    clinic = factory.clinic("bandwidth")

    response = client.post(
        f"/webhooks/bandwidth/{clinic.id}/messages",
        data=DEEP,
        content_type="application/json",
        auth=(clinic.webhook_username, clinic.webhook_password),
    )

    assert response.status_code == 400
    assert b"non-empty JSON array" in response.data
    assert count(Message) == 0
