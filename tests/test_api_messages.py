"""POST and GET /api/v1/messages: content types, scheduling, quiet hours, media and idempotency."""

import io
import threading
import time
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest
import requests
from rq import Queue

from api_helpers import PNG, app_settings, media_server  # noqa: F401  (fixture)
from conftest import run_worker
from helpers import BODY, bearer, count
from notifier import queues, reconcile, remote_media
from portal.extensions import db
from portal.models import Attachment, Client, Clinic, Delivery, IdempotencyKey, Message, utcnow

TO = "+15551234501"


@pytest.fixture
def clinic(factory):
    return factory.clinic("twilio")


@pytest.fixture
def token(factory, clinic):
    return factory.api_token(clinic)


def sms_queue():
    return Queue("sms", connection=queues.connection())


def post(client, token, payload, **headers):
    return client.post("/api/v1/messages", json=payload, headers={**bearer(token), **headers})


def parse_time(text):
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def set_quiet_hours(clinic, start, end, zone="America/New_York"):
    row = db.session.get(Clinic, clinic.id)
    row.timezone, row.quiet_start_minute, row.quiet_end_minute = zone, start, end
    db.session.commit()


# Content types ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "content_type"),
    [
        (f"to={TO}&body=hi", "application/x-www-form-urlencoded"),
        ("to and body", "text/plain"),
        ("<message/>", "application/xml"),
        ("", None),
    ],
    ids=["form", "text", "xml", "none"],
)
def test_send_wrong_type_415(client, token, data, content_type):
    headers = bearer(token)
    if content_type:
        headers["Content-Type"] = content_type
    response = client.post("/api/v1/messages", data=data, headers=headers)

    assert response.status_code == 415
    assert response.get_json()["error"]["code"] == "unsupported_media_type"
    assert "application/json" in response.get_json()["error"]["message"]
    assert count(Message) == 0


@pytest.mark.parametrize("field", ["send_time", "mediaUrls", "client_id"])
def test_send_unknown_field_400(client, token, field):
    response = post(client, token, {"to": TO, "body": BODY, field: "x"})
    error = response.get_json()["error"]

    assert response.status_code == 400
    assert error["field"] == field
    assert f"'{field}'" in error["message"]
    assert "send_at" in error["message"]
    assert count(Message) == 0


# send_at and quiet hours ------------------------------------------------------------------


def test_send_at_future_scheduled(client, token):
    when = (utcnow() + timedelta(hours=2)).replace(microsecond=0)
    response = post(client, token, {"to": TO, "body": BODY, "send_at": when.isoformat()})
    body = response.get_json()
    sms = db.session.execute(db.select(Delivery).where(Delivery.channel == "sms")).scalar_one()
    registry = sms_queue().scheduled_job_registry

    assert response.status_code == 201
    assert parse_time(body["send_at"]) == when
    assert db.session.get(Message, body["id"]).send_at == when
    assert sms.next_attempt_at == when
    assert sms_queue().count == 0
    assert registry.get_job_ids() == [f"send-{sms.id}-1"]


def test_send_at_past_sends_now(client, token):
    when = utcnow() - timedelta(hours=1)
    response = post(client, token, {"to": TO, "body": BODY, "send_at": when.isoformat()})

    assert response.status_code == 201
    assert response.get_json()["send_at"] is None
    assert sms_queue().count == 1


def test_send_at_offset_converted(client, token):
    local = (utcnow() + timedelta(days=3)).astimezone(timezone(timedelta(hours=-5))).replace(microsecond=0)
    response = post(client, token, {"to": TO, "body": BODY, "send_at": local.isoformat()})
    send_at = response.get_json()["send_at"]

    assert send_at.endswith("Z")
    assert parse_time(send_at) == local


def test_scheduled_not_sent_early(app, client, token):
    when = utcnow() + timedelta(hours=2)
    message_id = post(client, token, {"to": TO, "body": BODY, "send_at": when.isoformat()}).get_json()["id"]

    run_worker(app)
    sms = db.session.execute(db.select(Delivery).where(Delivery.message_id == message_id, Delivery.channel == "sms")).scalar_one()

    assert sms.status == "queued"
    assert sms.attempts == 0


def test_scheduled_hidden_from_portal(client, token):
    from portal.threads import thread_messages

    post(client, token, {"to": TO, "body": "later", "send_at": (utcnow() + timedelta(hours=2)).isoformat()})
    post(client, token, {"to": TO, "body": "now"})
    record = db.session.execute(db.select(Client)).scalar_one()
    messages, _has_older = thread_messages(record)

    assert [m.body for m in messages] == ["now"]


@pytest.mark.parametrize(
    ("value", "expected_text"),
    [
        ("tomorrow", "'tomorrow'"),
        ("2026-03-08T09:00:00", "offset"),
        ("2026-03-08", "offset"),
        ("2026-13-01T09:00:00Z", "real date"),
        ("2026-02-30T09:00:00Z", "real date"),
        ("2026-03-08T09:00:00+25:00", "real date"),
        ("9999-12-31T23:59:59-23:59", "real date"),
        ("2099-01-01T09:00:00Z", "366 days"),
        (1773000000, "1773000000"),
        ("", "''"),
    ],
    ids=["word", "no_offset", "date_only", "month_13", "feb_30", "offset_25h", "overflow", "far_future", "number", "empty"],
)
def test_send_at_invalid_400(client, token, value, expected_text):
    response = post(client, token, {"to": TO, "body": BODY, "send_at": value})
    error = response.get_json()["error"]

    assert response.status_code == 400
    assert error["field"] == "send_at"
    assert expected_text in error["message"]
    assert count(Message) == 0


def _local(zone, day, hour, minute=0):
    return datetime(day.year, day.month, day.day, hour, minute, tzinfo=ZoneInfo(zone))


@pytest.mark.parametrize("zone", ["America/New_York", "America/Los_Angeles"])
def test_quiet_hours_move_scheduled(client, clinic, token, zone):
    set_quiet_hours(clinic, 21 * 60, 8 * 60, zone)
    day = (utcnow() + timedelta(days=10)).astimezone(ZoneInfo(zone)).date()
    requested = _local(zone, day, 23, 15)

    response = post(client, token, {"to": TO, "body": BODY, "send_at": requested.isoformat()})
    expected = _local(zone, day + timedelta(days=1), 8)

    assert parse_time(response.get_json()["send_at"]) == expected


def test_quiet_hours_keep_daytime(client, clinic, token):
    set_quiet_hours(clinic, 21 * 60, 8 * 60)
    day = (utcnow() + timedelta(days=10)).astimezone(ZoneInfo("America/New_York")).date()
    requested = _local("America/New_York", day, 14)

    response = post(client, token, {"to": TO, "body": BODY, "send_at": requested.isoformat()})

    assert parse_time(response.get_json()["send_at"]) == requested


def _window_around_now(zone):
    now = utcnow().astimezone(ZoneInfo(zone))
    minute = now.hour * 60 + now.minute
    return (minute - 60) % 1440, (minute + 60) % 1440


def test_quiet_hours_hold_immediate(client, clinic, token):
    start, end = _window_around_now("America/New_York")
    set_quiet_hours(clinic, start, end)
    before = utcnow()

    response = post(client, token, {"to": TO, "body": BODY})
    send_at = parse_time(response.get_json()["send_at"])

    assert response.status_code == 201
    assert before + timedelta(minutes=58) < send_at <= before + timedelta(minutes=61)
    assert sms_queue().count == 0
    assert sms_queue().scheduled_job_registry.count == 1


def test_admin_send_ignores_quiet_hours(client, factory, clinic):
    from helpers import csrf_token

    start, end = _window_around_now("America/New_York")
    set_quiet_hours(clinic, start, end)
    staff = factory.staff(clinic)
    page = client.get("/admin/login")
    client.post("/admin/login", data={"email": staff.email, "password": "correct horse battery staple", "csrf_token": csrf_token(page.data)})
    page = client.get("/admin/")

    client.post("/admin/messages", data={"to": TO, "body": BODY, "csrf_token": csrf_token(page.data)})
    message = db.session.execute(db.select(Message)).scalar_one()

    assert message.send_at is None
    assert sms_queue().count == 1


def test_invalid_timezone_sends(client, clinic, token):
    set_quiet_hours(clinic, 0, 1439, zone="Not/A_Zone")

    response = post(client, token, {"to": TO, "body": BODY})

    assert response.status_code == 201
    assert response.get_json()["send_at"] is None


# Media ------------------------------------------------------------------------------------


def test_multipart_upload_created(client, token):
    response = client.post(
        "/api/v1/messages",
        data={"to": TO, "body": BODY, "media": (io.BytesIO(PNG), "rex.png")},
        headers=bearer(token),
        content_type="multipart/form-data",
    )
    body = response.get_json()
    attachment = db.session.execute(db.select(Attachment)).scalar_one()

    assert response.status_code == 201
    assert body["media"] == [{"position": 0, "content_type": "image/png", "size_bytes": len(PNG)}]
    assert attachment.storage_key is not None


def test_multipart_photo_only(client, token):
    response = client.post(
        "/api/v1/messages",
        data={"to": TO, "media": (io.BytesIO(PNG), "rex.png")},
        headers=bearer(token),
        content_type="multipart/form-data",
    )

    assert response.status_code == 201
    assert response.get_json()["body"] == ""


def test_multipart_send_at(client, token):
    when = (utcnow() + timedelta(hours=3)).replace(microsecond=0)
    response = client.post(
        "/api/v1/messages",
        data={"to": TO, "body": BODY, "send_at": when.isoformat()},
        headers=bearer(token),
        content_type="multipart/form-data",
    )

    assert parse_time(response.get_json()["send_at"]) == when


@pytest.mark.parametrize(
    ("data", "field", "expected_text"),
    [
        ({"to": TO, "body": BODY, "media": (io.BytesIO(b"plain text"), "notes.txt")}, "media", "notes.txt"),
        ({"to": TO, "body": BODY, "photo": (io.BytesIO(PNG), "rex.png")}, "photo", "'media'"),
        ({"to": TO, "body": BODY, "channel": "sms"}, "channel", "'channel'"),
        ({"to": [TO, "+15551234502"], "body": BODY}, "to", "2 times"),
        ({"body": BODY}, "to", "'to'"),
        ({"to": TO, "body": ""}, "body", "empty"),
    ],
    ids=["text_file", "wrong_file_field", "unknown_field", "repeated_to", "to_missing", "body_empty"],
)
def test_multipart_invalid_400(client, token, data, field, expected_text):
    response = client.post("/api/v1/messages", data=data, headers=bearer(token), content_type="multipart/form-data")
    error = response.get_json()["error"]

    assert response.status_code == 400
    assert error["field"] == field
    assert expected_text in error["message"]
    assert count(Message) == 0


def test_multipart_too_many_files_400(client, token):
    files = [(io.BytesIO(PNG), f"rex{i}.png") for i in range(11)]
    response = client.post(
        "/api/v1/messages", data={"to": TO, "body": BODY, "media": files}, headers=bearer(token), content_type="multipart/form-data"
    )

    assert response.status_code == 400
    assert "at most 10" in response.get_json()["error"]["message"]


def test_media_url_downloaded(client, token, media_server):
    response = post(client, token, {"to": TO, "body": BODY, "media_urls": [f"{media_server}/photo.png"]})
    body = response.get_json()

    assert response.status_code == 201
    assert body["media"][0]["content_type"] == "image/png"
    assert body["media"][0]["size_bytes"] == len(PNG)


def test_media_url_redirect_followed(client, token, media_server):
    response = post(client, token, {"to": TO, "body": BODY, "media_urls": [f"{media_server}/redirect"]})

    assert response.status_code == 201
    assert len(response.get_json()["media"]) == 1


@pytest.mark.parametrize(
    ("path", "expected_text"),
    [
        ("ftp://127.0.0.1/photo.png", "not an http or https URL"),
        ("file:///etc/passwd", "not an http or https URL"),
        ("http://10.0.0.1/photo.png", "private or local"),
        ("http://169.254.169.254/latest/meta-data", "private or local"),
        ("http://[fe80::1]/photo.png", "private or local"),
        ("http://0.0.0.0/photo.png", "private or local"),
        ("{server}/redirect-private", "private or local"),
        ("{server}/loop", "redirected more than 3 times"),
        ("{server}/missing.png", "HTTP status 404"),
        ("{server}/notes.txt", "send one of"),
        ("{server}/big.png", "limit"),
        ("http://127.0.0.1:9/photo.png", "could not be reached"),
        ("http://[::1/photo.png", "not a valid URL"),
    ],
    ids=[
        "ftp", "file", "private", "metadata", "link_local_v6", "unspecified", "redirect_private", "redirect_loop",
        "not_found", "not_media", "too_big", "refused", "unclosed_ipv6",
    ],
)
def test_media_url_rejected_400(client, token, media_server, path, expected_text):
    url = path.format(server=media_server)
    response = post(client, token, {"to": TO, "body": BODY, "media_urls": [f"{media_server}/photo.png", url]})
    error = response.get_json()["error"]

    assert response.status_code == 400
    assert error["code"] == "invalid_media"
    assert error["field"] == "media_urls[1]"
    assert expected_text in error["message"]
    assert count(Message) == 0


@pytest.mark.parametrize(
    ("value", "field"),
    [("https://example.com/a.png", "media_urls"), ([""], "media_urls[0]"), ([42], "media_urls[0]"), (["x" * 2001], "media_urls[0]")],
    ids=["string", "empty", "number", "too_long"],
)
def test_media_urls_shape_400(client, token, value, field):
    response = post(client, token, {"to": TO, "body": BODY, "media_urls": value})

    assert response.status_code == 400
    assert response.get_json()["error"]["field"] == field


@pytest.mark.parametrize(
    "url",
    ["{server}/photo.png", "http://localhost:{port}/photo.png", "http://[::ffff:127.0.0.1]:{port}/photo.png"],
    ids=["ipv4", "localhost", "mapped_v6"],
)
def test_production_refuses_loopback(media_server, url):
    port = media_server.rsplit(":", 1)[1]
    policy = remote_media.FetchPolicy(max_bytes=1024 * 1024, allow_loopback=False)

    with pytest.raises(remote_media.MediaFetchFailed, match="private or local"):
        remote_media.fetch(url.format(server=media_server, port=port), policy)


def test_fetch_deadline(media_server):
    policy = remote_media.FetchPolicy(max_bytes=1024 * 1024, allow_loopback=True)
    started = time.monotonic()

    with pytest.raises(remote_media.MediaFetchFailed, match="timed out|longer than"):
        remote_media.fetch(f"{media_server}/slow.png", policy, deadline=time.monotonic() + 0.3)
    assert time.monotonic() - started < 1.5


def test_fetch_size_limit(media_server):
    policy = remote_media.FetchPolicy(max_bytes=len(PNG) - 1, allow_loopback=True)

    with pytest.raises(remote_media.MediaFetchFailed, match="limit"):
        remote_media.fetch(f"{media_server}/photo.png", policy)


# Idempotency ------------------------------------------------------------------------------


def test_idempotent_replay(client, token):
    payload = {"to": TO, "body": BODY}
    first = post(client, token, payload, **{"Idempotency-Key": "order-1"})
    second = post(client, token, payload, **{"Idempotency-Key": "order-1"})

    assert first.status_code == 201
    assert second.status_code == 201
    assert second.get_json() == first.get_json()
    assert second.headers["Idempotent-Replayed"] == "true"
    assert "Idempotent-Replayed" not in first.headers
    assert second.headers["Location"] == first.headers["Location"]
    assert count(Message) == 1
    assert sms_queue().count == 1


def age_idempotency_keys(hours):
    db.session.execute(db.update(IdempotencyKey).values(created_at=utcnow() - timedelta(hours=hours)))
    db.session.commit()


@pytest.mark.parametrize(("age_hours", "kept"), [(47, 1), (49, 0)])
def test_idempotency_key_pruned_after_48_hours(client, token, age_hours, kept):
    post(client, token, {"to": TO, "body": BODY}, **{"Idempotency-Key": "order-1"})
    age_idempotency_keys(age_hours)

    reconcile.prune_idempotency_keys()

    assert count(IdempotencyKey) == kept


def test_pruned_idempotency_key_sends_again(client, token):
    post(client, token, {"to": TO, "body": BODY}, **{"Idempotency-Key": "order-1"})
    age_idempotency_keys(49)
    reconcile.prune_idempotency_keys()

    again = post(client, token, {"to": TO, "body": BODY}, **{"Idempotency-Key": "order-1"})

    assert again.status_code == 201
    assert "Idempotent-Replayed" not in again.headers
    assert count(Message) == 2


def test_idempotent_key_order_ignored(client, token):
    first = client.post(
        "/api/v1/messages", data=f'{{"to": "{TO}", "body": "{BODY}"}}', content_type="application/json",
        headers={**bearer(token), "Idempotency-Key": "k"},
    )
    second = client.post(
        "/api/v1/messages", data=f'{{ "body": "{BODY}",\n "to": "{TO}" }}', content_type="application/json",
        headers={**bearer(token), "Idempotency-Key": "k"},
    )

    assert second.headers.get("Idempotent-Replayed") == "true"
    assert second.get_json()["id"] == first.get_json()["id"]


@pytest.mark.parametrize(
    "changed",
    [{"to": "+15551234502", "body": BODY}, {"to": TO, "body": "Different text"}, {"to": TO, "body": BODY, "send_at": "2027-06-01T12:00:00Z"}],
    ids=["to", "body", "send_at"],
)
def test_idempotent_key_reused_422(client, token, changed):
    post(client, token, {"to": TO, "body": BODY}, **{"Idempotency-Key": "order-1"})
    response = post(client, token, changed, **{"Idempotency-Key": "order-1"})
    error = response.get_json()["error"]

    assert response.status_code == 422
    assert error["code"] == "idempotency_key_reused"
    assert "'order-1'" in error["message"]
    assert count(Message) == 1


def test_idempotent_failure_not_stored(client, token):
    first = post(client, token, {"to": "12", "body": BODY}, **{"Idempotency-Key": "k"})
    second = post(client, token, {"to": TO, "body": BODY}, **{"Idempotency-Key": "k"})

    assert first.status_code == 400
    assert second.status_code == 201
    assert count(IdempotencyKey) == 1


def test_idempotent_keys_per_clinic(client, factory, token):
    other = factory.api_token(factory.clinic("bandwidth"))

    first = post(client, token, {"to": TO, "body": BODY}, **{"Idempotency-Key": "k"})
    second = post(client, other, {"to": TO, "body": BODY}, **{"Idempotency-Key": "k"})

    assert second.status_code == 201
    assert "Idempotent-Replayed" not in second.headers
    assert second.get_json()["id"] != first.get_json()["id"]


@pytest.mark.parametrize("key", ["", "x" * 256, "caf\u00e9", "tab\there"], ids=["empty", "too_long", "non_ascii", "control"])
def test_idempotent_key_invalid_400(client, token, key):
    response = client.post(
        "/api/v1/messages", json={"to": TO, "body": BODY}, headers=[("Authorization", f"Bearer {token}"), ("Idempotency-Key", key)]
    )

    assert response.status_code == 400
    assert response.get_json()["error"]["field"] == "Idempotency-Key"
    assert count(Message) == 0


def test_idempotent_concurrent_one_send(live, token):
    results = []
    barrier = threading.Barrier(6)

    def send():
        barrier.wait()
        response = requests.post(
            f"{live.url}/api/v1/messages",
            json={"to": TO, "body": BODY},
            headers={**bearer(token), "Idempotency-Key": "concurrent-1"},
            timeout=30,
        )
        results.append(response)

    threads = [threading.Thread(target=send) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)

    assert [r.status_code for r in results] == [201] * 6
    assert len({r.json()["id"] for r in results}) == 1
    assert sum(r.headers.get("Idempotent-Replayed") == "true" for r in results) == 5
    assert count(Message) == 1
    assert count(Client) == 1
    assert sms_queue().count == 1


# Reading a message -------------------------------------------------------------------------


def test_read_message_fields(app, client, token):
    message_id = post(client, token, {"to": TO, "body": BODY}).get_json()["id"]
    run_worker(app)

    body = client.get(f"/api/v1/messages/{message_id}", headers=bearer(token)).get_json()
    sms = body["deliveries"][0]

    assert set(sms) == {"channel", "status", "category", "error_code", "attempts", "staff_message", "next_attempt_at", "updated_at"}
    assert sms["channel"] == "sms"
    assert sms["attempts"] == 1
    assert isinstance(sms["staff_message"], str)
    assert body["timeline"][0]["event"] == "Queued to send."
    assert body["client_pims_id"] is None


def test_read_message_timeline_provider(app, client, live, token):
    from helpers import wait_final

    message_id = post(client, token, {"to": TO, "body": BODY}).get_json()["id"]
    run_worker(app)
    wait_final(message_id, "sms")

    body = client.get(f"/api/v1/messages/{message_id}", headers=bearer(token)).get_json()

    assert any("provider reported" in entry["event"] for entry in body["timeline"])
    assert body["deliveries"][0]["status"] == "delivered"


@pytest.mark.parametrize("message_id", ["2147483648", "99999999999999999999999", "0"])
def test_read_huge_id_404(client, token, message_id):
    response = client.get(f"/api/v1/messages/{message_id}", headers=bearer(token))

    assert response.status_code == 404
    assert response.get_json()["error"]["code"] == "not_found"
