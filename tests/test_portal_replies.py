"""Pet Portal replies: text and at most one photo, stored as inbound messages that staff see."""

import io

import pytest
import requests

import config
from helpers import count, csrf_token
from notifier import media
from portal.extensions import db
from portal.forms import typed_text
from portal.models import Attachment, Message
from portal_helpers import page_token, png_image, portal_message, sign_in, staff_browser, video_clip

MOBILE = "+15551230001"
PHOTO_LIMIT = media.MAX_MEDIA_BYTES


@pytest.fixture
def parent(factory, client):
    """Return a signed-in client with one message from their clinic."""
    clinic = factory.clinic("bandwidth", name="Happy Paws Clinic")
    row = factory.client(clinic, MOBILE)
    portal_message(clinic, row)
    sign_in(client, row.id)
    return row


def reply(http, record, body="Rex is feeling better.", photo=None, filename="rex.png", token=None):
    data = {"csrf_token": token or page_token(http, f"/inbox/threads/{record.id}"), "body": body}
    if photo is not None:
        data["photo"] = (io.BytesIO(photo), filename)
    return http.post(f"/inbox/threads/{record.id}/messages", data=data, content_type="multipart/form-data")


def replies():
    db.session.rollback()
    return db.session.execute(db.select(Message).where(Message.direction == "inbound")).scalars().all()


def test_text_reply_stored_inbound(client, parent):
    response = reply(client, parent)
    stored = replies()

    assert response.status_code == 302
    assert response.headers["Location"] == f"/inbox/threads/{parent.id}#message-{stored[0].id}"
    assert len(stored) == 1
    assert stored[0].source == "portal"
    assert stored[0].body == "Rex is feeling better."
    assert stored[0].client_id == parent.id
    assert stored[0].clinic_id == parent.clinic_id


def test_reply_shows_in_thread(client, parent):
    reply(client, parent)

    html = client.get(f"/inbox/threads/{parent.id}").get_data(as_text=True)

    assert "Rex is feeling better." in html
    assert "Your message was sent to Happy Paws Clinic." in html


def test_photo_reply_stored(client, parent):
    photo = png_image(seed=2)

    reply(client, parent, photo=photo)
    stored = replies()[0]

    assert len(stored.attachments) == 1
    assert stored.attachments[0].content_type == "image/png"
    assert stored.attachments[0].size_bytes == len(photo)
    assert media.path_for(stored.attachments[0].storage_key).read_bytes() == photo


def test_photo_only_reply(client, parent):
    response = reply(client, parent, body="", photo=png_image())

    assert response.status_code == 302
    assert replies()[0].body == ""
    assert len(replies()[0].attachments) == 1


def test_staff_see_reply_with_photo(client, live, factory, parent):
    staff = factory.staff(parent.clinic)
    reply(client, parent, photo=png_image(seed=3))
    attachment = replies()[0].attachments[0]
    browser = staff_browser(live, staff)

    html = browser.get(f"{live.url}/admin/clients/{parent.id}", timeout=5).text
    photo = browser.get(f"{live.url}/admin/attachments/{attachment.id}", timeout=5)

    assert "Rex is feeling better." in html
    assert "sent from the Pet Portal" in html
    assert f'href="/admin/attachments/{attachment.id}"' in html
    assert photo.content == png_image(seed=3)


@pytest.mark.parametrize(
    ("data", "filename"),
    [
        (b"%PDF-1.7\n1 0 obj <<>> endobj\n", "vaccines.pdf"),
        (b"just some text", "notes.txt"),
        (b'<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>', "rex.svg"),
        (video_clip(), "clip.mp4"),
        (b"MZ\x90\x00\x03\x00\x00\x00", "rex.png"),
    ],
    ids=["pdf", "text", "svg", "video", "exe_named_png"],
)
def test_non_photo_rejected(client, parent, data, filename):
    response = reply(client, parent, photo=data, filename=filename)

    assert response.status_code == 400
    assert b"is not a photo Pawpost can show" in response.data
    assert count(Message, Message.direction == "inbound") == 0
    assert count(Attachment) == 0


def test_photo_over_limit_rejected(client, parent):
    # Fits the request limit, so the photo check itself rejects it.
    photo = png_image() + b"\x00" * (PHOTO_LIMIT + 1 - len(png_image()))

    response = reply(client, parent, photo=photo)

    assert response.status_code == 400
    assert b"The photo is larger than 5 MB" in response.data
    assert count(Message, Message.direction == "inbound") == 0


def test_large_photo_keeps_typed_text(client, parent):
    # Over the photo limit but within the app's request limit, so the form is read.
    photo = png_image() + b"\x00" * (PHOTO_LIMIT + 200 * 1024)

    response = reply(client, parent, body="Rex limps on his left leg.", photo=photo)

    assert response.status_code == 400
    assert b"The photo is larger than 5 MB" in response.data
    assert b"Rex limps on his left leg.</textarea>" in response.data
    assert count(Message, Message.direction == "inbound") == 0


def test_body_over_request_limit_413(app, client, parent):
    limit = app.config["MAX_CONTENT_LENGTH"]
    photo = png_image() + b"\x00" * limit

    response = reply(client, parent, photo=photo)

    assert response.status_code == 413
    assert b"The photo is larger than 5 MB" in response.data
    assert count(Message, Message.direction == "inbound") == 0


def test_huge_text_field_413_too_long(client, parent):
    # Within the request limit, but over the form's limit on a text field's size.
    response = reply(client, parent, body="x" * 600_000)

    assert response.status_code == 413
    assert b"Shorten it to at most 1600 characters" in response.data
    assert count(Message, Message.direction == "inbound") == 0


def test_empty_photo_rejected(client, parent):
    response = reply(client, parent, body="", photo=b"")

    assert response.status_code == 400
    assert count(Message, Message.direction == "inbound") == 0


def test_empty_reply_rejected(client, parent):
    response = reply(client, parent, body="   ")

    assert response.status_code == 400
    assert b"Write a message or add a photo" in response.data


def test_long_reply_rejected(client, parent):
    response = reply(client, parent, body="x" * 1601)

    assert response.status_code == 400
    assert b"at most 1600 characters" in response.data
    assert count(Message, Message.direction == "inbound") == 0


@pytest.mark.parametrize(
    ("body", "shown"),
    [
        ("x" * 1601, "x" * 1601),
        # Blank lines around the text go, as they do when a reply is stored.
        ("\n" + "y" * 1601 + "\n", "y" * 1601),
        ("<b>Rex</b> " + "z" * 1600, "&lt;b&gt;Rex&lt;/b&gt; " + "z" * 1600),
    ],
)
def test_rejected_reply_keeps_text(client, parent, body, shown):
    response = reply(client, parent, body=body)

    html = response.get_data(as_text=True)
    assert response.status_code == 400
    assert f'aria-describedby="reply-error">\n{shown}</textarea>' in html


def test_browser_line_breaks_count_once(client, parent):
    # Browsers post each line break of a textarea as CR LF but count it as one character.
    body = "Rex ate.\r\n" * 10 + "y" * 1510

    response = reply(client, parent, body=body)

    assert response.status_code == 302
    assert replies()[0].body == ("Rex ate.\n" * 10 + "y" * 1510)


def test_reply_without_csrf_400(client, parent):
    response = reply(client, parent, token="forged")

    assert response.status_code == 400
    assert count(Message, Message.direction == "inbound") == 0


def test_reply_to_other_person_404(client, factory, parent):
    neighbour = factory.client(parent.clinic, "+15551230002", name="Other Parent")

    response = reply(client, neighbour, token=page_token(client, f"/inbox/threads/{parent.id}"))

    assert response.status_code == 404
    assert count(Message, Message.direction == "inbound") == 0


def test_reply_to_other_clinic_thread(client, factory, parent):
    maple = factory.clinic("twilio", name="Maple Street Vets")
    at_maple = factory.client(maple, MOBILE)

    reply(client, at_maple, token=page_token(client, f"/inbox/threads/{parent.id}"))

    assert replies()[0].clinic_id == maple.id
    assert replies()[0].client_id == at_maple.id


def test_reply_signed_out_401(live, parent):
    signed_out = requests.Session()
    token = csrf_token(signed_out.get(f"{live.url}/login", timeout=5).content)

    response = signed_out.post(
        f"{live.url}/inbox/threads/{parent.id}/messages", data={"csrf_token": token, "body": "Hi"}, timeout=5
    )

    assert response.status_code == 401
    assert count(Message, Message.direction == "inbound") == 0


def test_reply_form_states_limit(client, parent):
    html = client.get(f"/inbox/threads/{parent.id}").get_data(as_text=True)

    assert 'enctype="multipart/form-data"' in html
    assert "One photo (JPEG, PNG, GIF or WebP) of at most 5 MB." in html
    assert 'accept="image/*"' in html


@pytest.mark.parametrize("value", ["0", "-1", str(PHOTO_LIMIT)])
def test_upload_limit_below_reply_rejected(monkeypatch, value):
    monkeypatch.setenv("PAWPOST_MAX_UPLOAD_BYTES", value)

    with pytest.raises(config.ConfigError, match=f"PAWPOST_MAX_UPLOAD_BYTES={value} is too small"):
        config.load({"PAWPOST_ENV": "development"})


@pytest.mark.parametrize("value", [str(config.MAX_UPLOAD_BYTES + 1), "50000000000"])
def test_upload_limit_above_maximum_rejected(monkeypatch, value):
    monkeypatch.setenv("PAWPOST_MAX_UPLOAD_BYTES", value)

    with pytest.raises(config.ConfigError, match=f"PAWPOST_MAX_UPLOAD_BYTES={value} is too large"):
        config.load({"PAWPOST_ENV": "development"})


@pytest.mark.parametrize("limit", [config.MIN_UPLOAD_BYTES, config.MAX_UPLOAD_BYTES], ids=["minimum", "maximum"])
def test_upload_limit_at_bounds_accepted(monkeypatch, limit):
    monkeypatch.setenv("PAWPOST_MAX_UPLOAD_BYTES", str(limit))

    settings = config.load({"PAWPOST_ENV": "development"})

    assert settings["MAX_CONTENT_LENGTH"] == limit


@pytest.mark.parametrize(
    ("typed", "stored"),
    [("a\r\nb", "a\nb"), ("a\rb", "a\nb"), ("a\r\r\nb", "a\n\nb"), ("a\n\rb", "a\n\nb"), ("\n\r x \r\n", "x"), (None, None)],
    ids=["crlf", "lone_cr", "cr_crlf", "lf_cr", "blank_around", "missing"],
)
def test_typed_text_line_breaks(typed, stored):
    assert typed_text(typed) == stored


def test_two_photos_rejected(client, parent):
    data = {
        "csrf_token": page_token(client, f"/inbox/threads/{parent.id}"),
        "body": "Two views of Rex.",
        "photo": [(io.BytesIO(png_image()), "rex.png"), (io.BytesIO(png_image()), "rex2.png")],
    }

    response = client.post(f"/inbox/threads/{parent.id}/messages", data=data, content_type="multipart/form-data")

    assert response.status_code == 400
    assert b"Attach one photo at most" in response.data
    assert b"Two views of Rex.</textarea>" in response.data
    assert count(Message, Message.direction == "inbound") == 0


@pytest.mark.parametrize("value", ["", "abc", "5e6"])
def test_upload_limit_not_number_rejected(monkeypatch, value):
    monkeypatch.setenv("PAWPOST_MAX_UPLOAD_BYTES", value)

    with pytest.raises(config.ConfigError, match="must be a whole number such as 12582912"):
        config.load({"PAWPOST_ENV": "development"})
