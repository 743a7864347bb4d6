"""The OpenAPI document: it matches the routes, and a Schemathesis run finds no 5xx and no response off the schema."""

import re

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from helpers import bearer
from portal.api.openapi import DOCUMENT

IGNORED_METHODS = {"HEAD", "OPTIONS"}
# Generated media URLs point here, a closed loopback port, so the run never reaches another host.
UNREACHABLE_MEDIA_URL = "http://127.0.0.1:9/photo.png"


def documented_operations():
    return {(path, method.upper()) for path, item in DOCUMENT["paths"].items() for method in item}


def routed_operations(app):
    operations = set()
    for rule in app.url_map.iter_rules():
        if not rule.rule.startswith("/api/v1/"):
            continue
        path = re.sub(r"<(?:[a-z]+:)?([a-z_]+)>", r"{\1}", rule.rule)
        operations |= {(path, method) for method in rule.methods - IGNORED_METHODS}
    return operations


def test_document_version():
    assert DOCUMENT["openapi"] == "3.1.0"


def test_documented_routes_exist(app):
    assert documented_operations() - routed_operations(app) == set()


def test_routes_documented(app):
    assert routed_operations(app) - documented_operations() == set()


def test_served_document(client):
    response = client.get("/api/v1/openapi.json")

    assert response.status_code == 200
    assert response.get_json() == DOCUMENT


def test_bearer_security():
    assert DOCUMENT["security"] == [{"bearerAuth": []}]
    assert DOCUMENT["components"]["securitySchemes"]["bearerAuth"]["scheme"] == "bearer"


@pytest.mark.parametrize(("path", "method"), sorted(documented_operations()))
def test_errors_documented(path, method):
    responses = DOCUMENT["paths"][path][method.lower()]["responses"]

    assert "429" in responses
    if path != "/api/v1/openapi.json":
        assert "401" in responses


@pytest.fixture
def api_token(factory):
    return factory.api_token(factory.clinic("twilio"))


def keep_media_local(context, body):
    """Point generated media URLs at a closed loopback port, so the run never reaches another host."""
    if isinstance(body, dict) and isinstance(body.get("media_urls"), list):
        return {**body, "media_urls": [UNREACHABLE_MEDIA_URL for _ in body["media_urls"]]}
    return body


CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]


# NOTE: schemathesis.pytest.from_fixture (Schemathesis 4.32.5) fails under pytest 9.2 with
# "'Function' object has no attribute '_nodeid'", so each operation's Hypothesis strategy is
# used directly instead.
def generated_cases():
    """Return (path, method, mode) for every operation; only operations with inputs get invalid data."""
    cases = []
    for path, method in sorted(documented_operations()):
        operation = DOCUMENT["paths"][path][method.lower()]
        cases.append((path, method, GenerationMode.POSITIVE))
        if operation.get("parameters") or operation.get("requestBody"):
            cases.append((path, method, GenerationMode.NEGATIVE))
    return cases


@pytest.mark.parametrize(("path", "method", "mode"), generated_cases())
def test_api_conforms(app, api_token, path, method, mode):
    schema = schemathesis.openapi.from_wsgi("/api/v1/openapi.json", app)
    schema.hook("map_body")(keep_media_local)
    strategy = schema[path][method].as_strategy(generation_mode=mode, hooks=schema.hooks)

    @given(case=strategy)
    @settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    def call(case):
        case.call_and_validate(headers=bearer(api_token), checks=CHECKS)

    call()


def test_success_responses_conform(app, api_token):
    """Generated data rarely creates anything, so each success response is also checked with real data."""
    schema = schemathesis.openapi.from_wsgi("/api/v1/openapi.json", app)
    headers = bearer(api_token)
    record = {"name": "Pat Parent", "numbers": [{"number": "+15551234567", "type": "mobile"}, {"number": "+15557654321", "type": "home"}]}
    client_path = {"pims_id": "P1"}
    steps = [
        ("/api/v1/clients/{pims_id}", "PUT", {"path_parameters": client_path, "body": record}, 201),
        ("/api/v1/clients/{pims_id}", "PUT", {"path_parameters": client_path, "body": record}, 200),
        ("/api/v1/clients/{pims_id}", "GET", {"path_parameters": client_path}, 200),
        ("/api/v1/messages", "POST", {"body": {"to": "+15551234567", "body": "Hello"}, "media_type": "application/json"}, 201),
        ("/api/v1/messages/{message_id}", "GET", {"path_parameters": {"message_id": "<sent>"}}, 200),
        ("/api/v1/clients", "GET", {"query": {"bad_number": True, "limit": 1}}, 200),
        ("/api/v1/failure-rates", "GET", {}, 200),
    ]
    statuses, sent_id = [], None
    for path, method, options, _expected in steps:
        if options.get("path_parameters", {}).get("message_id") == "<sent>":
            options = {"path_parameters": {"message_id": sent_id}}
        response = schema[path][method].Case(**options).call_and_validate(headers=headers, checks=CHECKS)
        if method == "POST":
            sent_id = response.json()["id"]
        statuses.append(response.status_code)

    assert statuses == [expected for *_rest, expected in steps]
