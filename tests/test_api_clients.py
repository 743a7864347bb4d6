"""PUT/GET /api/v1/clients: PIMS upserts, the textable-number rule, conflicts, listings and failure rates."""

import base64
import json
import threading

import pytest
import requests

from conftest import run_worker
from helpers import BODY, bearer, count, wait_final
from notifier import policy
from portal.extensions import db
from portal.models import Client, Delivery, SmsHourlyStat, utcnow


@pytest.fixture
def clinic(factory):
    return factory.clinic("twilio")


@pytest.fixture
def token(factory, clinic):
    return factory.api_token(clinic)


def put(client, token, pims_id, record):
    return client.put(f"/api/v1/clients/{pims_id}", json=record, headers=bearer(token))


def stored(pims_id):
    db.session.rollback()
    return db.session.execute(db.select(Client).where(Client.pims_id == pims_id)).scalar_one()


def numbers(*entries):
    return [{"number": number, "type": kind} if kind != "-" else {"number": number} for number, kind in entries]


# The textable-number rule -----------------------------------------------------------------

MOBILE, CELL, HOME, WORK, OTHER, SECOND = (
    "+15551230001", "+15551230002", "+15551230003", "+15551230004", "+15551230005", "+15551230006",
)


@pytest.mark.parametrize(
    ("listed", "expected"),
    [
        ([(HOME, "home"), (MOBILE, "mobile")], MOBILE),
        ([(HOME, "home"), (CELL, "cell"), (MOBILE, "mobile")], CELL),
        ([(MOBILE, "Mobile"), (SECOND, "mobile")], MOBILE),
        ([(OTHER, "other"), (MOBILE, "mobile")], MOBILE),
        ([(HOME, "home"), (OTHER, "-")], OTHER),
        ([(HOME, "home"), (OTHER, "other")], OTHER),
        ([(HOME, None), (SECOND, "mobile")], SECOND),
        ([(HOME, "home")], None),
        ([(WORK, "work"), (HOME, "landline")], None),
        ([("+15551230001 ext. 12", "mobile")], None),
        ([("+15551230001 ext. 12", "mobile"), (OTHER, "-")], OTHER),
    ],
    ids=[
        "mobile_over_home", "first_mobile_typed", "first_of_two_mobiles", "mobile_over_other", "untyped",
        "other", "null_type_untyped", "home_only", "work_and_landline", "extension", "extension_then_other",
    ],
)
def test_textable_rule(client, token, listed, expected):
    response = put(client, token, "P1", {"numbers": numbers(*listed)})

    assert response.status_code == 201
    assert response.get_json()["textable_number"] == expected


@pytest.mark.parametrize("kind", ["-", "other", "mobile"], ids=["untyped", "other", "mobile"])
def test_textable_skips_known_landline(client, token, kind):
    policy.record_line_type(OTHER, "landline", "provider_error", "30006")
    db.session.commit()

    response = put(client, token, "P1", {"numbers": numbers((OTHER, kind), (SECOND, "-"))})

    assert response.get_json()["textable_number"] == SECOND


def test_numbers_normalised(client, token):
    response = put(client, token, "P1", {"numbers": [{"number": "(555) 123-0001", "type": "mobile"}, {"number": "555.123.0003 x7", "type": "work"}]})
    listed = response.get_json()["numbers"]

    assert listed[0] == {"number": MOBILE, "type": "mobile", "extension": None, "textable": True}
    assert listed[1] == {"number": HOME, "type": "work", "extension": "7", "textable": False}


# Create and update -----------------------------------------------------------------------


def test_create_201(client, token, clinic):
    response = put(
        client, token, "PIMS-42",
        {"name": "Pat Parent", "numbers": numbers((MOBILE, "mobile")), "email": "Pat@Example.com", "preferences": {"email": True, "push": False}},
    )
    body = response.get_json()
    row = stored("PIMS-42")

    assert response.status_code == 201
    assert response.headers["Location"] == "/api/v1/clients/PIMS-42"
    assert body["pims_id"] == "PIMS-42"
    assert body["name"] == "Pat Parent"
    assert body["email"] == "Pat@example.com"
    assert body["email_verified"] is False
    assert body["preferences"] == {"email": True, "push": False}
    assert row.clinic_id == clinic.id
    assert row.mobile_number == MOBILE
    assert json.loads(row.pims_numbers) == [{"number": MOBILE, "type": "mobile", "extension": None}]


def test_update_200(client, token):
    put(client, token, "P1", {"name": "Pat", "numbers": numbers((MOBILE, "mobile"))})

    response = put(client, token, "P1", {"name": "Pat Parent", "numbers": numbers((SECOND, "mobile"))})

    assert response.status_code == 200
    assert response.get_json()["textable_number"] == SECOND
    assert stored("P1").name == "Pat Parent"
    assert count(Client) == 1


def test_update_keeps_missing_fields(client, token):
    put(client, token, "P1", {"name": "Pat", "numbers": numbers((MOBILE, "mobile")), "email": "pat@example.com"})

    response = put(client, token, "P1", {"preferences": {"push": True}})
    body = response.get_json()

    assert body["name"] == "Pat"
    assert body["textable_number"] == MOBILE
    assert body["email"] == "pat@example.com"
    assert body["preferences"] == {"email": False, "push": True}


def test_lost_mobile_keeps_number(client, token):
    put(client, token, "P1", {"numbers": numbers((MOBILE, "mobile"))})

    response = put(client, token, "P1", {"numbers": numbers((HOME, "home"))})
    row = stored("P1")

    assert response.get_json()["textable_number"] is None
    assert row.mobile_number == MOBILE
    assert row.textable is False


def test_regained_mobile_textable(client, token):
    put(client, token, "P1", {"numbers": numbers((HOME, "home"))})

    response = put(client, token, "P1", {"numbers": numbers((HOME, "home"), (MOBILE, "cell"))})

    assert response.get_json()["textable_number"] == MOBILE
    assert stored("P1").textable is True


def test_number_change_ends_portal_sessions(client, token):
    put(client, token, "P1", {"numbers": numbers((MOBILE, "mobile"))})
    before = stored("P1").session_version

    put(client, token, "P1", {"numbers": numbers((SECOND, "mobile"))})

    assert stored("P1").session_version == before + 1


def test_same_number_keeps_sessions(client, token):
    put(client, token, "P1", {"numbers": numbers((MOBILE, "mobile"))})
    before = stored("P1").session_version

    put(client, token, "P1", {"name": "Pat", "numbers": numbers((MOBILE, "mobile"))})

    assert stored("P1").session_version == before


def test_email_change_unverifies(client, token):
    put(client, token, "P1", {"numbers": numbers((MOBILE, "mobile")), "email": "pat@example.com"})
    row = stored("P1")
    row.email_verified_at = utcnow()
    db.session.commit()

    put(client, token, "P1", {"email": "PAT@example.com"})
    same_address = stored("P1").email_verified_at
    put(client, token, "P1", {"email": "other@example.com"})

    assert same_address is not None
    assert stored("P1").email_verified_at is None


def test_email_null_clears(client, token):
    put(client, token, "P1", {"numbers": numbers((MOBILE, "mobile")), "email": "pat@example.com"})

    response = put(client, token, "P1", {"email": None})

    assert response.get_json()["email"] is None


def test_adopts_number_only_client(client, token):
    created = client.post("/api/v1/messages", json={"to": MOBILE, "body": BODY}, headers=bearer(token)).get_json()

    response = put(client, token, "P1", {"numbers": numbers((MOBILE, "mobile"))})

    assert response.status_code == 200
    assert response.get_json()["id"] == created["client_id"]
    assert count(Client) == 1


def test_same_pims_id_two_clinics(client, factory, token):
    other = factory.api_token(factory.clinic("bandwidth"))

    first = put(client, token, "P1", {"numbers": numbers((MOBILE, "mobile"))})
    second = put(client, other, "P1", {"numbers": numbers((MOBILE, "mobile"))})

    assert first.status_code == 201
    assert second.status_code == 201
    assert count(Client) == 2


def test_read_client(client, factory, token):
    put(client, token, "P1", {"numbers": numbers((MOBILE, "mobile"))})
    other = factory.api_token(factory.clinic("bandwidth"))

    own = client.get("/api/v1/clients/P1", headers=bearer(token))
    foreign = client.get("/api/v1/clients/P1", headers=bearer(other))

    assert own.status_code == 200
    assert own.get_json()["textable_number"] == MOBILE
    assert foreign.status_code == 404
    assert MOBILE not in foreign.get_data(as_text=True)


# Conflicts and invalid input ---------------------------------------------------------------


def test_number_conflict_409(client, token):
    put(client, token, "P1", {"numbers": numbers((MOBILE, "mobile"))})

    response = put(client, token, "P2", {"numbers": numbers((MOBILE, "mobile"))})
    error = response.get_json()["error"]

    assert response.status_code == 409
    assert error["code"] == "number_conflict"
    assert MOBILE in error["message"]
    assert "'P1'" in error["message"]
    assert count(Client) == 1


def test_home_number_shared_ok(client, token):
    put(client, token, "P1", {"numbers": numbers((HOME, "home"))})

    response = put(client, token, "P2", {"numbers": numbers((HOME, "home"), (WORK, "work"))})

    assert response.status_code == 201
    assert stored("P2").mobile_number == WORK


@pytest.mark.parametrize(
    ("record", "field", "expected_text"),
    [
        ({"numbers": [{"number": MOBILE}, {"number": "12", "type": "mobile"}]}, "numbers[1].number", "'12'"),
        ({"numbers": [{"number": "hello"}]}, "numbers[0].number", "'hello'"),
        ({"numbers": [{"number": 5551230001}]}, "numbers[0].number", "string"),
        ({"numbers": [{"number": MOBILE, "type": "pager"}]}, "numbers[0].type", "'pager'"),
        ({"numbers": [{"number": MOBILE, "kind": "mobile"}]}, "numbers[0].kind", "number and type"),
        ({"numbers": [MOBILE]}, "numbers[0]", "object"),
        ({"numbers": MOBILE}, "numbers", "list"),
        ({"numbers": [{"number": MOBILE}] * 11}, "numbers", "at most 10"),
        ({"numbers": []}, "numbers", "at least one"),
        ({"name": "Pat"}, "numbers", "at least one"),
        ({"numbers": [{"number": MOBILE}], "email": "not-an-address"}, "email", "'not-an-address'"),
        ({"numbers": [{"number": MOBILE}], "email": 5}, "email", "email address"),
        ({"numbers": [{"number": MOBILE}], "name": ["Pat"]}, "name", "string"),
        ({"numbers": [{"number": MOBILE}], "name": "x" * 121}, "name", "120"),
        ({"numbers": [{"number": MOBILE}], "preferences": {"sms": True}}, "preferences.sms", "email and push"),
        ({"numbers": [{"number": MOBILE}], "preferences": {"email": "yes"}}, "preferences.email", "true or false"),
        ({"numbers": [{"number": MOBILE}], "preferences": True}, "preferences", "object"),
        ({"numbers": [{"number": MOBILE}], "phone": MOBILE}, "phone", "'phone'"),
    ],
    ids=[
        "short_number", "word_number", "numeric_number", "unknown_type", "unknown_number_field", "bare_string",
        "numbers_string", "eleven_numbers", "empty_numbers", "no_numbers", "bad_email", "email_number",
        "name_list", "name_long", "unknown_preference", "preference_string", "preferences_bool", "unknown_field",
    ],
)
def test_invalid_400(client, token, record, field, expected_text):
    response = put(client, token, "P1", record)
    error = response.get_json()["error"]

    assert response.status_code == 400
    assert error["field"] == field
    assert expected_text in error["message"]
    assert count(Client) == 0


@pytest.mark.parametrize("pims_id", ["x" * 65, "tab%09id"], ids=["too_long", "control"])
def test_invalid_pims_id_400(client, token, pims_id):
    response = put(client, token, pims_id, {"numbers": numbers((MOBILE, "mobile"))})

    assert response.status_code == 400
    assert response.get_json()["error"]["field"] == "pims_id"


def test_put_not_json_415(client, token):
    response = client.put("/api/v1/clients/P1", data="name=Pat", content_type="application/x-www-form-urlencoded", headers=bearer(token))

    assert response.status_code == 415


def test_put_json_array_400(client, token):
    response = client.put("/api/v1/clients/P1", json=[1, 2], headers=bearer(token))

    assert response.status_code == 400
    assert response.get_json()["error"]["code"] == "invalid_json"


def test_concurrent_create_one_client(live, token):
    results = []
    barrier = threading.Barrier(4)

    def upsert():
        barrier.wait()
        response = requests.put(
            f"{live.url}/api/v1/clients/P1", json={"numbers": numbers((MOBILE, "mobile"))}, headers=bearer(token), timeout=30
        )
        results.append(response.status_code)

    threads = [threading.Thread(target=upsert) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)

    assert sorted(results) == [200, 200, 200, 201]
    assert count(Client) == 1


# Untextable clients -------------------------------------------------------------------------


def test_untextable_send_suppressed(app, client, token):
    put(client, token, "P1", {"numbers": numbers((HOME, "home"))})
    message_id = client.post("/api/v1/messages", json={"to": HOME, "body": BODY}, headers=bearer(token)).get_json()["id"]

    run_worker(app)
    sms = wait_final(message_id, "sms")

    assert sms.status == "suppressed"
    assert sms.category == "landline"


# Listings ---------------------------------------------------------------------------------


def _create(client, token, total):
    for index in range(total):
        put(client, token, f"P{index}", {"numbers": numbers((f"+1555124{index:04d}", "mobile"))})


def _pages(client, token, query):
    ids, cursor, pages = [], None, 0
    while True:
        url = f"/api/v1/clients?{query}" + (f"&cursor={cursor}" if cursor else "")
        body = client.get(url, headers=bearer(token)).get_json()
        ids += [item["id"] for item in body["clients"]]
        pages += 1
        cursor = body["next_cursor"]
        if cursor is None:
            return ids, pages


def test_list_paginated(client, token):
    _create(client, token, 5)

    ids, pages = _pages(client, token, "limit=2")

    assert pages == 3
    assert ids == sorted(ids)
    assert len(set(ids)) == 5


def test_list_other_clinic_hidden(client, factory, token):
    _create(client, token, 2)
    other = factory.api_token(factory.clinic("bandwidth"))

    body = client.get("/api/v1/clients", headers=bearer(other)).get_json()

    assert body == {"clients": [], "next_cursor": None}


def _fail_sms(clinic_id, client_id, category):
    from helpers import outbound_sms

    row = db.session.get(Client, client_id)
    sms = outbound_sms(row.clinic, row, status="failed")
    sms.category, sms.final_at = category, utcnow()
    db.session.commit()
    return sms


def test_bad_number_list(client, clinic, token):
    _create(client, token, 3)
    put(client, token, "HOME", {"numbers": numbers((HOME, "home"))})
    _fail_sms(clinic.id, stored("P1").id, "invalid_number")
    _fail_sms(clinic.id, stored("P2").id, "carrier_filtered")

    body = client.get("/api/v1/clients?bad_number=true", headers=bearer(token)).get_json()
    problems = {item["pims_id"]: item["problem"] for item in body["clients"]}

    assert problems == {"P1": "invalid_number", "HOME": "landline"}
    assert all("problem_seen_at" in item for item in body["clients"])


def test_bad_number_paginated(client, clinic, token):
    _create(client, token, 5)
    for index in range(5):
        _fail_sms(clinic.id, stored(f"P{index}").id, "landline")

    ids, pages = _pages(client, token, "bad_number=true&limit=2")

    assert pages == 3
    assert len(set(ids)) == 5


# A cursor whose JSON is nested deeper than Python's parser can follow.
DEEP_CURSOR = base64.urlsafe_b64encode(b"[" * 5000).decode().rstrip("=")


@pytest.mark.parametrize(
    ("query", "field"),
    [("limit=0", "limit"), ("limit=201", "limit"), ("limit=ten", "limit"), ("bad_number=maybe", "bad_number"),
     ("cursor=not-a-cursor", "cursor"), ("cursor=eyJpZCI6IjEifQ", "cursor"), ("cursor=eyJpZCI6MTAwMDAwMDAwMDAwMDB9", "cursor"),
     ("bad_number=true&cursor=eyJpZCI6MX0", "cursor"), ("limit=%C2%B2", "limit"), ("limit=" + "9" * 5000, "limit"),
     ("cursor=" + DEEP_CURSOR, "cursor")],
    ids=["limit_zero", "limit_big", "limit_word", "bad_number_word", "cursor_garbage", "cursor_string_id", "cursor_huge_id",
         "cursor_wrong_listing", "limit_superscript", "limit_long", "cursor_deep"],
)
def test_list_invalid_400(client, token, query, field):
    response = client.get(f"/api/v1/clients?{query}", headers=bearer(token))

    assert response.status_code == 400
    assert response.get_json()["error"]["field"] == field


# Failure rates ----------------------------------------------------------------------------


def _stat(clinic_id, outcome, number, category=""):
    hour = utcnow().replace(minute=0, second=0, microsecond=0)
    db.session.add(SmsHourlyStat(clinic_id=clinic_id, hour=hour, outcome=outcome, category=category, count=number))
    db.session.commit()


def test_failure_rates(client, factory, clinic, token):
    _stat(clinic.id, "delivered", 90)
    _stat(clinic.id, "failed", 6, "landline")
    _stat(clinic.id, "failed", 4, "carrier_filtered")
    _stat(clinic.id, "suppressed", 3, "opted_out")
    _stat(factory.clinic("bandwidth").id, "failed", 50, "landline")

    body = client.get("/api/v1/failure-rates", headers=bearer(token)).get_json()
    day = body["windows"]["24h"]

    assert day["attempted"] == 100
    assert day["failed"] == 10
    assert day["rate"] == pytest.approx(0.10)
    assert day["suppressed"] == 3
    assert day["failed_by_category"] == {"landline": 6, "carrier_filtered": 4}
    assert body["windows"]["30d"]["failed"] == 10
    assert body["state"] == "investigate"
    assert body["top_category"] == "landline"
    assert len(body["daily"]) == 30


def test_failure_rates_empty(client, token):
    body = client.get("/api/v1/failure-rates", headers=bearer(token)).get_json()

    assert body["windows"]["7d"]["rate"] is None
    assert body["state"] == "healthy"
    assert body["top_category"] is None
