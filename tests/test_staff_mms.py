"""Staff photo sends: upload limits, signed media URLs, Bandwidth without MMS, media failure codes, segments."""

import io
import re
import time
from urllib.parse import urlparse

import pytest
from itsdangerous import TimestampSigner, URLSafeTimedSerializer
from markupsafe import escape

from conftest import STAFF_PASSWORD, run_worker
from helpers import bearer, count, csrf_token, delivery, send_via_api
from notifier import gsm, outbound_media
from portal.extensions import db
from portal.models import Attachment, Message
from portal_helpers import png_image
from provider_stubs import post_failure, provider_creates, run_send_job, settle_sandbox  # noqa: F401

MOBILE = "+15551230001"
MIB = 1024 * 1024
PDF = b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n"
TEXT = b"Rex is due for his rabies booster.\n" * 20
# A minimal ISO base media header that file-type sniffing reads as video/mp4.
MP4_HEADER = b"\x00\x00\x00\x18ftypmp42\x00\x00\x00\x00mp42isom"
PHOTO_TYPES = "send one of: image/gif, image/jpeg, image/png"


def padded(header, size):
    """Return ``header`` followed by zero bytes up to ``size`` bytes, a file that sniffs as the header's type."""
    return header + b"\x00" * (size - len(header))


def sign_in(http, user):
    page = http.get("/admin/login")
    data = {"csrf_token": csrf_token(page.data), "email": user.email, "password": STAFF_PASSWORD}
    http.post("/admin/login", data=data)


def send_files(http, client_id, files, body="Here is Rex after his bath."):
    """Post the send form with ``files`` (name, bytes) and return the page after the redirect."""
    token = csrf_token(http.get(f"/admin/clients/{client_id}").data)
    data = {"csrf_token": token, "body": body, "attachments": [(io.BytesIO(d), n) for n, d in files]}
    return http.post(
        f"/admin/clients/{client_id}/messages", data=data, content_type="multipart/form-data", follow_redirects=True
    )


@pytest.fixture
def twilio_parent(factory):
    clinic = factory.clinic("twilio", name="Happy Paws Clinic")
    return factory.client(clinic, MOBILE, name="Pat Parent")


@pytest.fixture
def bandwidth_parent(factory):
    clinic = factory.clinic("bandwidth", name="Bayside Vets")
    return factory.client(clinic, MOBILE, name="Pat Parent")


@pytest.fixture
def staff_http(client, factory):
    """Return a function that signs ``client`` in as staff of a pet parent's clinic."""

    def signed_in_for(parent):
        sign_in(client, factory.staff(parent.clinic))
        return client

    return signed_in_for


@pytest.mark.parametrize(
    ("provider", "files", "expected"),
    [
        ("twilio", [(f"p{i}.png", png_image(seed=i)) for i in range(11)], "11 files were attached; a message can carry at most 10."),
        ("twilio", [("big.png", padded(png_image(), 5 * MIB + 1))], "big.png is 5.0 MB; image/png files can be at most 5.0 MB."),
        ("twilio", [("clip.mp4", padded(MP4_HEADER, 500 * 1024 + 1))], "clip.mp4 is 500 KB; video/mp4 files can be at most 500 KB."),
        ("bandwidth", [("big.png", padded(png_image(), 3584 * 1024 + 1))], "big.png is 3.5 MB; image/png files can be at most 3.5 MB."),
        ("twilio", [("photo.png", PDF)], "photo.png is application/pdf;"),
        ("twilio", [("photo.png", TEXT)], "photo.png is of an unknown type;"),
    ],
    ids=["eleventh_file", "twilio_png_5mb", "twilio_mp4_500kb", "bandwidth_3_5mb", "pdf_named_png", "text_named_png"],
)
def test_upload_rejected(request, staff_http, provider, files, expected):
    parent = request.getfixturevalue(f"{provider}_parent")
    http = staff_http(parent)

    page = send_files(http, parent.id, files)

    assert page.status_code == 200
    assert str(escape(expected)).encode() in page.data
    assert count(Message) == 0


@pytest.mark.parametrize("name", ["pdf", "text"])
def test_wrong_type_names_allowed(twilio_parent, staff_http, name):
    http = staff_http(twilio_parent)

    page = send_files(http, twilio_parent.id, [("photo.png", PDF if name == "pdf" else TEXT)])

    assert PHOTO_TYPES.encode() in page.data


def only_attachment():
    db.session.rollback()
    return db.session.execute(db.select(Attachment)).scalar_one()


def twilio_media_urls(live):
    creates = provider_creates(live)
    assert len(creates) == 1
    return creates[0]["form"].get("MediaUrl", [])


@pytest.fixture
def sent_photo(app, live, twilio_parent, staff_http):
    """Send one PNG from a Twilio clinic and return the media URL the provider was given."""
    http = staff_http(twilio_parent)
    send_files(http, twilio_parent.id, [("rex.png", png_image())])
    run_worker(app)
    return twilio_media_urls(live)


def test_twilio_media_url_signed(app, sent_photo):
    base = app.config["PAWPOST_BASE_URL"]

    assert len(sent_photo) == 1
    assert re.fullmatch(re.escape(base) + r"/webhooks/media/[\w.-]+", sent_photo[0])


def test_twilio_media_url_names_attachment(sent_photo):
    token = urlparse(sent_photo[0]).path.rsplit("/", 1)[1]
    attachment = only_attachment()

    assert outbound_media.attachment_id_from(token) == attachment.id


@pytest.mark.parametrize("method", ["GET", "HEAD"])
def test_media_url_serves_without_login(app, sent_photo, method):
    http = app.test_client()

    response = http.open(urlparse(sent_photo[0]).path, method=method)

    assert response.status_code == 200
    assert response.mimetype == "image/png"


def test_media_url_serves_the_photo(app, sent_photo):
    response = app.test_client().get(urlparse(sent_photo[0]).path)

    assert response.data == png_image()


def old_token(app, attachment_id, hours):
    """Sign ``attachment_id`` as if the URL had been issued ``hours`` ago."""

    class OldSigner(TimestampSigner):
        def get_timestamp(self):
            return int(time.time()) - hours * 3600

    serializer = URLSafeTimedSerializer(app.config["SECRET_KEY"], salt="provider-media", signer=OldSigner)
    return serializer.dumps(attachment_id)


@pytest.mark.parametrize("case", ["tampered", "expired", "other_salt", "no_attachment"])
def test_media_url_rejected(app, sent_photo, case):
    token = urlparse(sent_photo[0]).path.rsplit("/", 1)[1]
    attachment_id = only_attachment().id
    hours = app.config["PAWPOST_MEDIA_URL_HOURS"]
    tokens = {
        "tampered": token[:-2] + ("AA" if not token.endswith("AA") else "BB"),
        "expired": old_token(app, attachment_id, hours + 1),
        "other_salt": URLSafeTimedSerializer(app.config["SECRET_KEY"], salt="other").dumps(attachment_id),
        "no_attachment": URLSafeTimedSerializer(app.config["SECRET_KEY"], salt="provider-media").dumps(attachment_id + 1000),
    }

    response = app.test_client().get(f"/webhooks/media/{tokens[case]}")

    assert response.status_code == 404


def test_media_url_hours_zero_expires(app, sent_photo, monkeypatch):
    token = old_token(app, only_attachment().id, 1)
    monkeypatch.setitem(app.config, "PAWPOST_MEDIA_URL_HOURS", 0)

    response = app.test_client().get(f"/webhooks/media/{token}")

    assert response.status_code == 404


def test_bandwidth_without_mms_notice(bandwidth_parent, staff_http):
    http = staff_http(bandwidth_parent)

    page = http.get(f"/admin/clients/{bandwidth_parent.id}")

    assert b"data-mms-notice" in page.data


def test_twilio_has_no_mms_notice(twilio_parent, staff_http):
    http = staff_http(twilio_parent)

    page = http.get(f"/admin/clients/{twilio_parent.id}")

    assert b"data-mms-notice" not in page.data


@pytest.fixture
def bandwidth_photo_request(app, live, bandwidth_parent, staff_http):
    """Send one PNG from a Bandwidth clinic without MMS and return the JSON the provider got."""
    http = staff_http(bandwidth_parent)
    send_files(http, bandwidth_parent.id, [("rex.png", png_image())])
    run_worker(app)
    creates = provider_creates(live)
    assert len(creates) == 1
    return creates[0]["json"]


def test_bandwidth_without_mms_sends_no_media(bandwidth_photo_request):
    assert "media" not in bandwidth_photo_request


def test_bandwidth_without_mms_links_portal(app, bandwidth_photo_request):
    link = re.escape(app.config["PAWPOST_BASE_URL"]) + r"/p/\S+"

    assert re.search(link, bandwidth_photo_request["text"])


@pytest.mark.parametrize(
    ("provider", "code"),
    [("twilio", 11200), ("twilio", 12300), ("bandwidth", 4410), ("bandwidth", 4412)],
)
def test_media_failure_explained(request, app, client, factory, provider, code):
    parent = request.getfixturevalue(f"{provider}_parent")
    token = factory.api_token(parent.clinic)
    # The sandbox sends no final status to numbers ending in 70, so only the failure below settles the text.
    message_id = send_via_api(client, token, "+15551230070")
    run_send_job(app, message_id)

    post_failure(client, app, delivery(message_id, "sms"), code)
    sms = next(d for d in client.get(f"/api/v1/messages/{message_id}", headers=bearer(token)).get_json()["deliveries"] if d["channel"] == "sms")

    assert sms["staff_message"].startswith("The photo could not be sent")
    assert sms["category"] != "carrier_filtered"


BODIES = {
    "plain_160": "a" * 160,
    "plain_161": "a" * 161,
    "plain_306": "b" * 306,
    "plain_307": "b" * 307,
    "extension_80": "{" * 80,
    "extension_81": "€" * 81,
    "curly_quotes": "Rex\u2019s booster is due \u201ctoday\u201d.",
    "emoji": "Rex says hi \U0001f436",
    "emoji_35": "\U0001f436" * 35,
    "emoji_36": "\U0001f436" * 36,
    "ucs2_70": "é" * 69 + "\u2019",
    "ucs2_71": "é" * 70 + "\u2019",
    "ucs2_134": "ж" * 134,
    "ucs2_135": "ж" * 135,
}


@pytest.mark.parametrize("provider", ["twilio", "bandwidth"])
@pytest.mark.parametrize("name", list(BODIES))
def test_segments_match_sandbox(request, app, client, live, factory, provider, name):
    parent = request.getfixturevalue(f"{provider}_parent")
    token = factory.api_token(parent.clinic)
    message_id = send_via_api(client, token, MOBILE, body=BODIES[name])
    run_send_job(app, message_id)

    created = provider_creates(live)[-1]
    sent = created["form"]["Body"][0] if provider == "twilio" else created["json"]["text"]
    billed = live.carrier.all_deliveries()[-1].segment_count

    assert gsm.segments(sent) == billed
