"""Photos in the Pet Portal: a screen-sized, upright copy without metadata, and the original one tap away."""

import io
from concurrent.futures import ThreadPoolExecutor

import pytest
from PIL import Image

from notifier import media
from portal_helpers import png_image, portal_message, sign_in, staff_browser

MOBILE = "+15551230001"
# EXIF tag 0x0112 (Orientation) value 6: the camera was turned, so viewers rotate 90° clockwise.
ORIENTATION_TAG = 0x0112
CAMERA_MAKE_TAG = 0x010F


@pytest.fixture
def parent(factory):
    clinic = factory.clinic("twilio", name="Maple Street Vets")
    return factory.client(clinic, MOBILE)


def jpeg(width, height, exif=None):
    image = Image.new("RGB", (width, height), (180, 120, 60))
    out = io.BytesIO()
    image.save(out, "JPEG", exif=exif if exif is not None else Image.Exif())
    return out.getvalue()


def turned_phone_photo():
    """Return a 2000×1500 JPEG with an EXIF orientation that turns it, and the camera's make."""
    exif = Image.Exif()
    exif[ORIENTATION_TAG] = 6
    exif[CAMERA_MAKE_TAG] = "PetCam"
    return jpeg(2000, 1500, exif)


def transparent_png():
    image = Image.new("RGBA", (1600, 1600), (0, 0, 0, 0))
    out = io.BytesIO()
    image.save(out, "PNG")
    return out.getvalue()


def preview_of(client, parent, data):
    message = portal_message(parent.clinic, parent, files=[data])
    sign_in(client, parent.id)
    return client.get(f"/inbox/attachments/{message.attachments[0].id}/preview")


def test_large_photo_scaled_to_screen(client, parent):
    response = preview_of(client, parent, turned_phone_photo())
    image = Image.open(io.BytesIO(response.data))

    assert response.status_code == 200
    assert response.mimetype == "image/jpeg"
    assert max(image.size) == 1280


def test_turned_photo_shown_upright(client, parent):
    image = Image.open(io.BytesIO(preview_of(client, parent, turned_phone_photo()).data))

    assert image.size == (960, 1280)


def test_preview_keeps_no_metadata(client, parent):
    image = Image.open(io.BytesIO(preview_of(client, parent, turned_phone_photo()).data))

    assert dict(image.getexif()) == {}


def test_transparent_photo_on_white(client, parent):
    image = Image.open(io.BytesIO(preview_of(client, parent, transparent_png()).data))

    assert image.getpixel((10, 10)) == (255, 255, 255)


def huge_blank_png():
    """Return a PNG of 60 million pixels that compresses to a few hundred kilobytes."""
    out = io.BytesIO()
    Image.new("1", (10000, 6000)).save(out, "PNG")
    return out.getvalue()


@pytest.mark.parametrize(
    "data",
    [jpeg(640, 480), png_image()[:40] + b"\0" * 200, huge_blank_png()],
    ids=["small-plain-jpeg", "broken-png", "huge-png"],
)
def test_original_served_when_no_copy_needed(client, parent, data):
    response = preview_of(client, parent, data)

    assert response.status_code == 200
    assert response.data == data


def test_sixteen_bit_grey_photo_keeps_its_grey(client, parent):
    out = io.BytesIO()
    Image.new("I;16", (1600, 1200), 32768).save(out, "PNG")

    image = Image.open(io.BytesIO(preview_of(client, parent, out.getvalue()).data))

    assert image.getpixel((10, 10)) == (128, 128, 128)


def test_animated_webp_served_as_original(client, parent):
    frames = [Image.new("RGB", (1600, 1200), colour) for colour in ((200, 0, 0), (0, 200, 0))]
    out = io.BytesIO()
    frames[0].save(out, "WEBP", save_all=True, append_images=frames[1:], duration=100)

    response = preview_of(client, parent, out.getvalue())

    assert response.data == out.getvalue()


def test_concurrent_first_previews_all_served(app, parent):
    message = portal_message(parent.clinic, parent, files=[turned_phone_photo()])
    key, content_type = message.attachments[0].storage_key, message.attachments[0].content_type

    def make_preview(_number):
        with app.app_context():
            return media.preview_path(key, content_type).name

    with ThreadPoolExecutor(max_workers=8) as pool:
        names = list(pool.map(make_preview, range(8)))

    assert set(names) == {names[0]}
    assert names[0].endswith(".preview.jpg")


def test_preview_made_once(client, parent):
    first = preview_of(client, parent, turned_phone_photo())
    second = client.get(first.request.path)

    assert second.data == first.data
    assert second.headers["Cache-Control"] == "private, no-cache"


def test_preview_signed_out_401(client, parent):
    message = portal_message(parent.clinic, parent, files=[turned_phone_photo()])

    response = client.get(f"/inbox/attachments/{message.attachments[0].id}/preview")

    assert response.status_code == 401


def test_staff_see_screen_sized_photo(live, factory, parent):
    staff = factory.staff(parent.clinic)
    message = portal_message(parent.clinic, parent, files=[turned_phone_photo()])
    attachment_id = message.attachments[0].id
    browser = staff_browser(live, staff)

    html = browser.get(f"{live.url}/admin/clients/{parent.id}", timeout=5).text
    preview = browser.get(f"{live.url}/admin/attachments/{attachment_id}/preview", timeout=5)
    image = Image.open(io.BytesIO(preview.content))

    assert f'<a href="/admin/attachments/{attachment_id}"><img class="attachment" src="/admin/attachments/{attachment_id}/preview"' in html
    assert preview.status_code == 200
    assert preview.headers["Content-Type"] == "image/jpeg"
    assert image.size == (960, 1280)


def test_staff_preview_other_clinic_404(live, factory, parent):
    other_clinic = factory.clinic("twilio", name="Other Vets")
    staff = factory.staff(other_clinic)
    message = portal_message(parent.clinic, parent, files=[turned_phone_photo()])
    browser = staff_browser(live, staff)

    response = browser.get(f"{live.url}/admin/attachments/{message.attachments[0].id}/preview", timeout=5)

    assert response.status_code == 404


@pytest.mark.parametrize("suffix", ["", "/preview"])
def test_missing_file_404(client, live, factory, parent, suffix):
    staff = factory.staff(parent.clinic)
    message = portal_message(parent.clinic, parent, files=[turned_phone_photo()])
    attachment_id = message.attachments[0].id
    media.path_for(message.attachments[0].storage_key).unlink()
    sign_in(client, parent.id)
    browser = staff_browser(live, staff)

    portal = client.get(f"/inbox/attachments/{attachment_id}{suffix}")
    admin = browser.get(f"{live.url}/admin/attachments/{attachment_id}{suffix}", timeout=5)

    assert portal.status_code == 404
    assert admin.status_code == 404
