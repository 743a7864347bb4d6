"""Pet Portal inbox: one thread per clinic, unread counts, read only by POST, attachments for the owner."""

import re
from contextlib import contextmanager
from datetime import timedelta

import pytest
from sqlalchemy import event

from helpers import BODY, csrf_token, delivery
from portal.extensions import db
from portal.models import Delivery, Message, utcnow
from portal_helpers import (
    inbound_message,
    page_token,
    png_image,
    portal_message,
    sign_in,
    staff_browser,
    video_clip,
)

MOBILE = "+15551230001"


@pytest.fixture
def person(factory):
    """Return a pet parent known to two clinics under one number, and a neighbour at the first."""
    happy = factory.clinic("bandwidth", name="Happy Paws Clinic")
    maple = factory.clinic("twilio", name="Maple Street Vets")
    at_happy = factory.client(happy, MOBILE)
    at_maple = factory.client(maple, MOBILE)
    neighbour = factory.client(happy, "+15551230002", name="Other Parent")
    return at_happy, at_maple, neighbour


def clinic_order(html):
    return re.findall(r'class="thread-name">([^<]+)<', html)


def test_inbox_one_thread_per_clinic(client, person):
    at_happy, at_maple, neighbour = person
    portal_message(at_happy.clinic, at_happy, body="From Happy Paws")
    portal_message(at_maple.clinic, at_maple, body="From Maple Street")
    portal_message(neighbour.clinic, neighbour, body="For the neighbour")
    sign_in(client, at_happy.id)

    html = client.get("/inbox").get_data(as_text=True)

    assert sorted(clinic_order(html)) == ["Happy Paws Clinic", "Maple Street Vets"]
    assert "From Maple Street" in html
    assert "For the neighbour" not in html


def test_inbox_newest_thread_first(client, person):
    at_happy, at_maple, _ = person
    portal_message(at_maple.clinic, at_maple, body="Older")
    portal_message(at_happy.clinic, at_happy, body="Newer")
    sign_in(client, at_maple.id)

    html = client.get("/inbox").get_data(as_text=True)

    assert clinic_order(html) == ["Happy Paws Clinic", "Maple Street Vets"]


def test_inbox_unread_count_per_thread(client, person):
    at_happy, at_maple, _ = person
    portal_message(at_happy.clinic, at_happy)
    portal_message(at_happy.clinic, at_happy)
    portal_message(at_happy.clinic, at_happy, read=True)
    portal_message(at_maple.clinic, at_maple, read=True)
    sign_in(client, at_maple.id)

    html = client.get("/inbox").get_data(as_text=True)

    assert html.count('class="badge"') == 1
    assert "2 unread" in html


def test_inbox_counts_due_portal_unread(client, person):
    at_happy, _, _ = person
    portal_message(at_happy.clinic, at_happy)
    portal_message(at_happy.clinic, at_happy, chat=True)
    portal_message(at_happy.clinic, at_happy, chat=True, read=True)
    later = portal_message(at_happy.clinic, at_happy, chat=True)
    later.send_at = utcnow() + timedelta(days=1)
    db.session.commit()
    sms_only(at_happy.clinic, at_happy)
    inbound_message(at_happy.clinic, at_happy, body="Thanks!")
    sign_in(client, at_happy.id)

    html = client.get("/inbox").get_data(as_text=True)

    assert html.count('class="badge"') == 1
    assert '<span class="badge">2 unread</span>' in html
    assert '<span class="chip chip-chat">1 chat notification</span>' in html


def test_inbox_marks_chat_notifications(client, person):
    at_happy, _, _ = person
    portal_message(at_happy.clinic, at_happy, chat=True)
    sign_in(client, at_happy.id)

    html = client.get("/inbox").get_data(as_text=True)

    assert "1 chat notification" in html


def test_thread_marks_chat_notification(client, person):
    at_happy, _, _ = person
    portal_message(at_happy.clinic, at_happy, chat=True)
    portal_message(at_happy.clinic, at_happy, chat=False)
    sign_in(client, at_happy.id)

    html = client.get(f"/inbox/threads/{at_happy.id}").get_data(as_text=True)

    assert html.count('<span class="chip chip-chat">Chat notification</span>') == 1
    assert "didn't deliver as a" in html


def test_thread_shows_own_replies(client, person):
    at_happy, _, _ = person
    portal_message(at_happy.clinic, at_happy)
    inbound_message(at_happy.clinic, at_happy, body="Thanks, see you Tuesday.")
    sign_in(client, at_happy.id)

    html = client.get(f"/inbox/threads/{at_happy.id}").get_data(as_text=True)

    assert "Thanks, see you Tuesday." in html
    assert '<p class="sender">You' in html


def test_thread_of_other_clinic_record(client, person):
    at_happy, at_maple, _ = person
    portal_message(at_maple.clinic, at_maple, body="From Maple Street")
    sign_in(client, at_happy.id)

    response = client.get(f"/inbox/threads/{at_maple.id}")

    assert response.status_code == 200
    assert b"From Maple Street" in response.data


def test_thread_of_other_person_404(client, person):
    at_happy, _, neighbour = person
    portal_message(neighbour.clinic, neighbour)
    sign_in(client, at_happy.id)

    response = client.get(f"/inbox/threads/{neighbour.id}")

    assert response.status_code == 404
    assert BODY.encode() not in response.data


def test_message_of_other_person_404(client, person):
    at_happy, _, neighbour = person
    theirs = portal_message(neighbour.clinic, neighbour)
    sign_in(client, at_happy.id)

    response = client.get(f"/inbox/messages/{theirs.id}")

    assert response.status_code == 404


def test_thread_pages_older_messages(client, person):
    at_happy, _, _ = person
    messages = [portal_message(at_happy.clinic, at_happy, body=f"Message number {i}.") for i in range(52)]
    sign_in(client, at_happy.id)

    first = client.get(f"/inbox/threads/{at_happy.id}").get_data(as_text=True)
    older = client.get(f"/inbox/threads/{at_happy.id}?before={messages[2].id}").get_data(as_text=True)

    assert "Message number 51." in first
    assert "Message number 1." not in first
    assert f"before={messages[2].id}" in first
    assert "Message number 1." in older
    assert "Show older messages" not in older


@pytest.mark.parametrize(
    "path",
    ["/inbox", "/inbox/threads/{client_id}", "/inbox/messages/{message_id}"],
)
def test_get_never_marks_read(client, person, path):
    at_happy, _, _ = person
    message = portal_message(at_happy.clinic, at_happy)
    sign_in(client, at_happy.id)

    response = client.get(path.format(client_id=at_happy.id, message_id=message.id))

    assert response.status_code == 200
    assert delivery(message.id, "portal").read_at is None


def test_mark_message_read(client, person):
    at_happy, _, _ = person
    message = portal_message(at_happy.clinic, at_happy)
    other = portal_message(at_happy.clinic, at_happy)
    sign_in(client, at_happy.id)
    token = page_token(client, f"/inbox/messages/{message.id}")

    response = client.post(f"/inbox/messages/{message.id}/read", data={"csrf_token": token})

    assert response.status_code == 302
    assert response.headers["Location"] == f"/inbox/messages/{message.id}"
    assert delivery(message.id, "portal").read_at is not None
    assert delivery(other.id, "portal").read_at is None


def test_mark_read_needs_csrf(client, person):
    at_happy, _, _ = person
    message = portal_message(at_happy.clinic, at_happy)
    sign_in(client, at_happy.id)

    response = client.post(f"/inbox/messages/{message.id}/read")

    assert response.status_code == 400
    assert delivery(message.id, "portal").read_at is None


def test_mark_other_person_read_404(client, person):
    at_happy, _, neighbour = person
    theirs = portal_message(neighbour.clinic, neighbour)
    sign_in(client, at_happy.id)

    response = client.post(f"/inbox/messages/{theirs.id}/read", data={"csrf_token": page_token(client, "/inbox")})

    assert response.status_code == 404
    assert delivery(theirs.id, "portal").read_at is None


def test_mark_thread_read(client, person):
    at_happy, at_maple, _ = person
    happy_messages = [portal_message(at_happy.clinic, at_happy) for _ in range(2)]
    maple_message = portal_message(at_maple.clinic, at_maple)
    sign_in(client, at_happy.id)
    token = page_token(client, f"/inbox/threads/{at_happy.id}")

    client.post(f"/inbox/threads/{at_happy.id}/read", data={"csrf_token": token})

    assert [delivery(m.id, "portal").read_at is not None for m in happy_messages] == [True, True]
    assert delivery(maple_message.id, "portal").read_at is None


def test_mark_all_read(client, person):
    at_happy, at_maple, neighbour = person
    mine = [portal_message(at_happy.clinic, at_happy), portal_message(at_maple.clinic, at_maple)]
    theirs = portal_message(neighbour.clinic, neighbour)
    sign_in(client, at_happy.id)

    client.post("/inbox/read", data={"csrf_token": page_token(client, "/inbox")})

    assert [delivery(m.id, "portal").read_at is not None for m in mine] == [True, True]
    assert delivery(theirs.id, "portal").read_at is None


def test_staff_see_read_state(client, live, factory, person):
    at_happy, _, _ = person
    message = portal_message(at_happy.clinic, at_happy)
    staff = factory.staff(at_happy.clinic)
    sign_in(client, at_happy.id)
    client.post(f"/inbox/messages/{message.id}/read", data={"csrf_token": page_token(client, "/inbox")})

    html = staff_browser(live, staff).get(f"{live.url}/admin/clients/{at_happy.id}", timeout=5).text

    assert "Read in the Pet Portal." in html


@pytest.mark.parametrize(
    ("maker", "content_type"),
    [(png_image, "image/png"), (video_clip, "video/mp4")],
    ids=["photo", "video"],
)
def test_attachment_served_to_owner(client, person, maker, content_type):
    at_happy, at_maple, _ = person
    message = portal_message(at_maple.clinic, at_maple, files=[maker()])
    sign_in(client, at_happy.id)

    response = client.get(f"/inbox/attachments/{message.attachments[0].id}")

    assert response.status_code == 200
    assert response.mimetype == content_type
    assert response.data == maker()
    assert response.headers["Cache-Control"] == "private, no-cache"


def test_video_supports_range_requests(client, person):
    at_happy, _, _ = person
    message = portal_message(at_happy.clinic, at_happy, files=[video_clip()])
    sign_in(client, at_happy.id)

    response = client.get(f"/inbox/attachments/{message.attachments[0].id}", headers={"Range": "bytes=0-99"})

    assert response.status_code == 206
    assert len(response.data) == 100


def test_attachment_of_other_person_404(client, person):
    at_happy, _, neighbour = person
    theirs = portal_message(neighbour.clinic, neighbour, files=[png_image()])
    sign_in(client, at_happy.id)

    response = client.get(f"/inbox/attachments/{theirs.attachments[0].id}")

    assert response.status_code == 404


def test_attachment_signed_out_401(client, person):
    at_happy, _, _ = person
    message = portal_message(at_happy.clinic, at_happy, files=[png_image()])

    response = client.get(f"/inbox/attachments/{message.attachments[0].id}")

    assert response.status_code == 401
    assert response.data != png_image()


def test_thread_shows_photo_and_video(client, person):
    at_happy, _, _ = person
    message = portal_message(at_happy.clinic, at_happy, files=[png_image(), video_clip()])
    sign_in(client, at_happy.id)
    photo, video = message.attachments

    html = client.get(f"/inbox/threads/{at_happy.id}").get_data(as_text=True)

    assert f'src="/inbox/attachments/{photo.id}/preview"' in html
    assert f'<a href="/inbox/attachments/{photo.id}">' in html
    assert f'<video class="attachment" controls playsinline preload="metadata" src="/inbox/attachments/{video.id}"' in html
    assert 'alt="Photo 1 from Happy Paws Clinic (opens the full photo)"' in html


def test_message_shows_photo_and_video(client, person):
    at_happy, _, _ = person
    message = portal_message(at_happy.clinic, at_happy, body="Two files", files=[png_image(), video_clip()])
    sign_in(client, at_happy.id)
    photo, video = message.attachments

    html = client.get(f"/inbox/messages/{message.id}").get_data(as_text=True)

    assert '<div class="body">Two files</div>' in html
    assert f'src="/inbox/attachments/{photo.id}/preview"' in html
    assert 'alt="Photo 1 from Happy Paws Clinic (opens the full photo)"' in html
    assert 'aria-label="Video 2 from Happy Paws Clinic"' in html
    assert f'<a class="button button-secondary" href="/inbox/attachments/{video.id}">Open video 2</a>' in html


@pytest.mark.parametrize(
    "path",
    ["/inbox/threads/{client_id}", "/inbox/messages/{message_id}"],
)
def test_clinic_number_tel_link(client, person, path):
    at_happy, _, _ = person
    message = portal_message(at_happy.clinic, at_happy)
    sign_in(client, at_happy.id)

    html = client.get(path.format(client_id=at_happy.id, message_id=message.id)).get_data(as_text=True)

    assert f'href="tel:{at_happy.clinic.sender_number}"' in html
    assert '<meta name="format-detection" content="telephone=no">' in html


@pytest.mark.parametrize(
    "path",
    ["/inbox", "/inbox/threads/1", "/inbox/messages/1", "/preferences"],
)
def test_signed_out_gets_sign_in_page(client, path):
    response = client.get(path)

    assert response.status_code == 401
    assert b"Sign in with a code" in response.data
    assert f'href="/login?next={path}"'.encode() in response.data


@pytest.mark.parametrize(
    ("zone", "shown"),
    [
        ("America/New_York", "12:05 PM EST"),
        # The clinic's setting takes precedence over its number's area code (212 is New York).
        ("America/Los_Angeles", "9:05 AM PST"),
        ("Not/A_Zone", "5:05 PM UTC"),
        # A folder of the zone database, not a zone.
        ("America", "5:05 PM UTC"),
        ("", "5:05 PM UTC"),
    ],
)
@pytest.mark.parametrize("page", ["thread", "inbox"])
def test_times_shown_in_clinic_time_zone(client, factory, zone, shown, page):
    clinic = factory.clinic("bandwidth", name="Midtown Vets")
    clinic.sender_number = "+12125550100"
    clinic.timezone = zone
    db.session.commit()
    parent = factory.client(clinic, MOBILE)
    portal_message(clinic, parent, created_at=utcnow().replace(month=1, day=15, hour=17, minute=5))
    sign_in(client, parent.id)

    path = f"/inbox/threads/{parent.id}" if page == "thread" else "/inbox"
    html = client.get(path).get_data(as_text=True)

    assert shown in html


def test_inbox_mark_all_button_only_when_unread(client, person):
    at_happy, _, _ = person
    portal_message(at_happy.clinic, at_happy, read=True)
    sign_in(client, at_happy.id)

    html = client.get("/inbox").get_data(as_text=True)

    assert "Mark all as read" not in html
    assert csrf_token(html.encode())


@contextmanager
def counted_statements():
    """Collect the SQL statements the app sends while the block runs.

    The test client shares the test's database session, so it is emptied first. A request then
    starts with nothing loaded, as in production.
    """
    db.session.remove()
    statements = []

    def record(_connection, _cursor, statement, *_args):
        statements.append(statement)

    event.listen(db.engine, "before_cursor_execute", record)
    try:
        yield statements
    finally:
        event.remove(db.engine, "before_cursor_execute", record)


def add_threads(factory, count, first=0):
    """Give the MOBILE pet parent ``count`` more clinics, each thread with a message, some with more."""
    records = []
    for number in range(first, first + count):
        clinic = factory.clinic("bandwidth", name=f"Clinic {number:02d}")
        record = factory.client(clinic, MOBILE)
        portal_message(clinic, record, chat=number % 2 == 0, read=number % 3 == 0)
        if number % 4 == 0:
            inbound_message(clinic, record, body=f"Reply {number}")
        if number % 5 == 0:
            portal_message(clinic, record, body="", files=[png_image(seed=number)])
        records.append(record)
    return records


def test_inbox_statement_count_fixed(client, factory):
    records = add_threads(factory, 3)
    sign_in(client, records[0].id)
    with counted_statements() as three:
        first = client.get("/inbox")
    add_threads(factory, 9, first=3)
    with counted_statements() as twelve:
        second = client.get("/inbox")

    assert len(clinic_order(first.get_data(as_text=True))) == 3
    assert len(clinic_order(second.get_data(as_text=True))) == 12
    assert len(twelve) == len(three)
    # The test's app context keeps the signed-in user in flask.g across requests, so the user
    # loader sends nothing here and only the inbox's own statement is counted.
    assert len(twelve) == 1


def test_thread_ignores_unread_not_due(client, person):
    at_happy, _, _ = person
    for number in range(52):
        portal_message(at_happy.clinic, at_happy, body=f"Message number {number}.", read=True)
    later = portal_message(at_happy.clinic, at_happy, body="Scheduled for tomorrow")
    later.send_at = utcnow() + timedelta(days=1)
    db.session.commit()
    sign_in(client, at_happy.id)

    html = client.get(f"/inbox/threads/{at_happy.id}").get_data(as_text=True)

    assert "Show older messages" in html
    assert "Scheduled for tomorrow" not in html
    assert "Mark all as read" not in html


def test_thread_page_statements(client, person):
    at_happy, _, _ = person
    for number in range(20):
        portal_message(at_happy.clinic, at_happy, body=f"Message number {number}.", read=number < 19)
    portal_message(at_happy.clinic, at_happy, body="", files=[png_image()])
    thread_path = f"/inbox/threads/{at_happy.id}"
    sign_in(client, at_happy.id)

    with counted_statements() as statements:
        response = client.get(thread_path)

    assert response.status_code == 200
    assert len(re.findall(r'id="message-\d+"', response.get_data(as_text=True))) == 21
    assert len(statements) <= 3


@pytest.mark.parametrize("page", ["inbox", "thread"])
def test_pages_keep_prepared_statements(client, person, page):
    # psycopg prepares a statement on its fifth run and drops its prepared statements at every
    # ROLLBACK, which ends each request's transaction.
    if db.engine.dialect.name != "postgresql":
        pytest.skip("prepared statements are a PostgreSQL matter")
    at_happy, _, _ = person
    portal_message(at_happy.clinic, at_happy)
    sign_in(client, at_happy.id)
    path = "/inbox" if page == "inbox" else f"/inbox/threads/{at_happy.id}"
    db.session.remove()
    # One pooled connection serves every request, as the app's teardown returns it each time.
    db.engine.dispose()

    statuses = []
    for _ in range(8):
        statuses.append(client.get(path).status_code)
        db.session.remove()
    with db.engine.connect() as connection:
        prepared = connection.exec_driver_sql("SELECT count(*) FROM pg_prepared_statements").scalar()
    db.engine.dispose()

    assert statuses == [200] * 8
    assert prepared >= 1


@pytest.mark.parametrize("root", ["", "/pp", "/9876543210123"])
def test_thread_links_under_app_root(client, person, root):
    at_happy, _, _ = person
    message = portal_message(at_happy.clinic, at_happy, files=[png_image()])
    attachment_id = message.attachments[0].id
    sign_in(client, at_happy.id)

    html = client.get(f"/inbox/threads/{at_happy.id}", base_url=f"http://localhost{root}/").get_data(as_text=True)

    assert f'href="{root}/inbox/messages/{message.id}"' in html
    assert f'src="{root}/inbox/attachments/{attachment_id}/preview"' in html


@pytest.mark.parametrize(
    "path",
    [
        "/inbox/threads/2147483648",
        "/inbox/messages/99999999999999999999999",
        "/inbox/attachments/2147483648/preview",
        "/admin/attachments/2147483648/preview",
    ],
)
def test_ids_beyond_integer_404(client, person, path):
    at_happy, _, _ = person
    sign_in(client, at_happy.id)

    response = client.get(path)

    assert response.status_code == 404


@pytest.mark.parametrize("before", ["2147483648", "99999999999999999999999", "0", "-5"])
def test_thread_before_not_an_id_400(client, person, before):
    at_happy, _, _ = person
    portal_message(at_happy.clinic, at_happy)
    sign_in(client, at_happy.id)

    response = client.get(f"/inbox/threads/{at_happy.id}?before={before}")

    assert response.status_code == 400
    assert f"before={before} is not a message id" in response.get_data(as_text=True)


def hidden_scheduled(clinic, record):
    message = portal_message(clinic, record, body="Scheduled for tomorrow")
    message.send_at = utcnow() + timedelta(days=1)
    db.session.commit()


def due_scheduled(clinic, record):
    message = portal_message(clinic, record, body="Scheduled an hour ago")
    message.send_at = utcnow() - timedelta(hours=1)
    db.session.commit()


def sms_only(clinic, record):
    message = Message(clinic_id=clinic.id, client_id=record.id, body="Text without a portal copy", source="api")
    db.session.add_all([message, Delivery(message=message, channel="sms")])
    db.session.commit()


def reply(clinic, record):
    inbound_message(clinic, record, body="Thanks, see you Tuesday.")


def photo_only(clinic, record):
    portal_message(clinic, record, body="", files=[png_image()])


@pytest.mark.parametrize(
    ("newest", "preview"),
    [
        (hidden_scheduled, "Older visible message"),
        (due_scheduled, "Scheduled an hour ago"),
        (sms_only, "Older visible message"),
        (reply, "You: Thanks, see you Tuesday."),
        (photo_only, "Photo"),
    ],
    ids=["scheduled_later", "scheduled_due", "sms_only", "reply", "photo_only"],
)
def test_inbox_preview_newest_visible(client, person, newest, preview):
    at_happy, at_maple, _ = person
    portal_message(at_happy.clinic, at_happy, body="Older visible message")
    newest(at_happy.clinic, at_happy)
    portal_message(at_maple.clinic, at_maple, body="Other clinic")
    sign_in(client, at_happy.id)

    html = client.get("/inbox").get_data(as_text=True)
    previews = [" ".join(text.split()) for text in re.findall(r'class="preview">(.*?)</span>', html, re.S)]

    assert previews == ["Other clinic", preview]


def test_inbox_hides_empty_thread(client, person):
    at_happy, at_maple, _ = person
    portal_message(at_maple.clinic, at_maple, body="From Maple Street")
    sign_in(client, at_happy.id)

    html = client.get("/inbox").get_data(as_text=True)

    assert clinic_order(html) == ["Maple Street Vets"]


@pytest.mark.parametrize(
    ("unread_message", "shown"),
    [("newest", True), ("oldest", True), ("none", False)],
)
def test_thread_mark_all_older_pages(client, person, unread_message, shown):
    at_happy, _, _ = person
    unread_number = {"newest": 51, "oldest": 0, "none": None}[unread_message]
    for number in range(52):
        portal_message(at_happy.clinic, at_happy, body=f"Message number {number}.", read=number != unread_number)
    sign_in(client, at_happy.id)

    html = client.get(f"/inbox/threads/{at_happy.id}").get_data(as_text=True)

    assert ("Mark all as read" in html) is shown
