"""Tenant isolation: every staff, API and Pet Portal route with an id, tried with another tenant's ids.

The routes come from ``app.url_map``, so a new route with an id fails ``test_id_routes_covered``
until it gets a row in ``ROUTES``.
"""

import re
from dataclasses import dataclass

import pytest

from conftest import STAFF_PASSWORD
from helpers import bearer, csrf_token
from portal.extensions import db
from portal.models import ApiToken, Client
from portal_helpers import portal_message, png_image, sign_in as parent_sign_in

PREFIXES = ("/admin", "/api/v1", "/inbox")
SECRET_NAME = "Bellatrix Otherclinic"
SECRET_BODY = "Biscuit's biopsy came back clear."
SECRET_NUMBER = "+15551239876"
SECRET_PIMS_ID = "B-PIMS-77"
# A PUT names a PIMS id inside the caller's own clinic, so the other clinic's id is a new record
# there. The probe sends no numbers, so the API rejects it with 400 instead of creating it.
PUT_STATUSES = {400}


@dataclass(frozen=True)
class Route:
    """How to reach one endpoint: the audience, the kind of id it takes and the statuses allowed."""

    audience: str
    kind: str
    statuses: frozenset = frozenset({404})


ROUTES = {
    "admin.conversation": Route("staff", "client"),
    "admin.send": Route("staff", "client", frozenset({403, 404})),
    "admin.attachment": Route("staff", "attachment"),
    "admin.attachment_preview": Route("staff", "attachment"),
    "admin.revoke_api_token": Route("staff", "token", frozenset({403, 404})),
    "api.get_client": Route("api", "pims_id"),
    "api.put_client": Route("api", "pims_id", frozenset(PUT_STATUSES)),
    "api.get_message": Route("api", "message"),
    "portal.message": Route("parent", "message"),
    "portal.mark_message_read": Route("parent", "message", frozenset({403, 404})),
    "portal.attachment": Route("parent", "attachment"),
    "portal.attachment_preview": Route("parent", "attachment"),
    "portal.thread": Route("parent", "client"),
    "portal.reply": Route("parent", "client", frozenset({403, 404})),
    "portal.mark_thread_read": Route("parent", "client", frozenset({403, 404})),
}


def id_rules(app):
    """Return the rules under the staff, API and Pet Portal prefixes that take an id."""
    return [r for r in app.url_map.iter_rules() if r.rule.startswith(PREFIXES) and r.arguments]


@dataclass
class Tenants:
    """Clinic A's staff, token and pet parent, and the ids of clinic B's rows."""

    staff: object
    token: str
    parent_id: int
    own: dict
    other: dict


def seed_clinic(factory, provider, number, name, body, pims_id):
    clinic = factory.clinic(provider)
    parent = factory.client(clinic, number, name=name)
    parent.pims_id = pims_id
    db.session.commit()
    message = portal_message(clinic, parent, body=body, files=[png_image()])
    token = factory.api_token(clinic)
    token_id = db.session.execute(db.select(ApiToken.id).where(ApiToken.clinic_id == clinic.id)).scalar_one()
    ids = {
        "client": parent.id,
        "message": message.id,
        "attachment": message.attachments[0].id,
        "token": token_id,
        "pims_id": pims_id,
    }
    return clinic, parent, token, ids


@pytest.fixture
def tenants(factory):
    clinic, parent, token, own = seed_clinic(factory, "twilio", "+15551230001", "Pat Parent", "See you soon.", "A-1")
    _clinic, _parent, _token, other = seed_clinic(
        factory, "bandwidth", SECRET_NUMBER, SECRET_NAME, SECRET_BODY, SECRET_PIMS_ID
    )
    return Tenants(factory.staff(clinic), token, parent.id, own, other)


def signed_in(app, tenants, audience):
    """Return a test client signed in for ``audience`` and a CSRF token for its forms."""
    http = app.test_client()
    if audience == "staff":
        page = http.get("/admin/login")
        data = {"csrf_token": csrf_token(page.data), "email": tenants.staff.email, "password": STAFF_PASSWORD}
        http.post("/admin/login", data=data)
        return http, csrf_token(http.get("/admin/api-tokens").data)
    if audience == "parent":
        parent_sign_in(http, tenants.parent_id)
        return http, csrf_token(http.get(f"/inbox/threads/{tenants.parent_id}").data)
    return http, None


def call(http, tenants, rule, method, ids, csrf):
    """Send ``method`` to ``rule`` with the id of the route's kind taken from ``ids``."""
    route = ROUTES[rule.endpoint]
    path = re.sub(r"<[^>]+>", str(ids[route.kind]), rule.rule)
    headers = bearer(tenants.token) if route.audience == "api" else {}
    if method == "GET":
        return http.get(path, headers=headers)
    if route.audience == "api":
        return http.open(path, method=method, json={"name": "Probe Name"}, headers=headers)
    return http.open(path, method=method, data={"csrf_token": csrf, "body": "Probe reply."})


def methods(rule):
    return sorted(rule.methods - {"HEAD", "OPTIONS"})


def test_id_routes_covered(app):
    missing = {rule.endpoint for rule in id_rules(app)} - set(ROUTES)

    assert missing == set(), f"Add these endpoints to ROUTES with an id factory: {sorted(missing)}"


def test_routes_table_current(app):
    stale = set(ROUTES) - {rule.endpoint for rule in id_rules(app)}

    assert stale == set()


@pytest.mark.parametrize("endpoint", sorted(ROUTES))
def test_other_tenant_ids_refused(app, tenants, endpoint):
    route = ROUTES[endpoint]
    http, csrf = signed_in(app, tenants, route.audience)
    rules = [rule for rule in id_rules(app) if rule.endpoint == endpoint]

    for rule in rules:
        for method in methods(rule):
            response = call(http, tenants, rule, method, tenants.other, csrf)
            text = response.get_data(as_text=True)

            assert response.status_code in route.statuses, f"{method} {rule.rule}: {response.status_code}"
            assert SECRET_NAME not in text, f"{method} {rule.rule} shows the other client's name"
            assert SECRET_BODY not in text, f"{method} {rule.rule} shows the other clinic's message"
            assert SECRET_NUMBER not in text, f"{method} {rule.rule} shows the other client's number"


def test_other_tenant_rows_unchanged(app, tenants):
    for audience in ("staff", "api", "parent"):
        # Test requests share the test's app context, and so Flask-Login's cached user in ``g``.
        with app.app_context():
            http, csrf = signed_in(app, tenants, audience)
            for rule in id_rules(app):
                if ROUTES[rule.endpoint].audience != audience:
                    continue
                for method in methods(rule):
                    call(http, tenants, rule, method, tenants.other, csrf)
    db.session.rollback()
    other = db.session.get(Client, tenants.other["client"])
    token = db.session.get(ApiToken, tenants.other["token"])

    assert other.name == SECRET_NAME
    assert token.revoked_at is None


GET_ENDPOINTS = [
    "admin.attachment", "admin.attachment_preview", "admin.conversation", "api.get_client", "api.get_message",
    "portal.attachment", "portal.attachment_preview", "portal.message", "portal.thread",
]


@pytest.mark.parametrize("endpoint", GET_ENDPOINTS)
def test_own_ids_return_200(app, tenants, endpoint):
    """Check the control case: GET routes return 200 with the caller's own ids, so a 404 above is a rejection."""
    route = ROUTES[endpoint]
    http, csrf = signed_in(app, tenants, route.audience)
    rules = [rule for rule in id_rules(app) if rule.endpoint == endpoint and "GET" in rule.methods]

    assert rules != []

    for rule in rules:
        response = call(http, tenants, rule, "GET", tenants.own, csrf)

        assert response.status_code == 200, f"GET {rule.rule}: {response.status_code}"
