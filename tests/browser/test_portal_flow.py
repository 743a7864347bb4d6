"""A filtered text, end to end on a phone: pointer link, confirm, read, reply with a photo, staff see it.

Screenshots of the inbox and the message go to the test's temporary folder. Run with
PAWPOST_UPDATE_SCREENSHOTS=1 to write them to docs/images/ as well, for the README.
"""

import os
import re
import shutil
from pathlib import Path

from browser.conftest import new_context
from conftest import STAFF_PASSWORD, run_worker
from helpers import delivery, send_via_api, wait_final, wait_for_callbacks
from portal_helpers import png_image, portal_message, wait_for_texts

NUMBER = "+15551230010"
ORIGINAL = "Rex is due for his rabies booster on Friday. Reply here to pick a time."
REPLY = "Friday at 10 works for us. Here is Rex today."
DOCS_IMAGES = Path(__file__).resolve().parents[2] / "docs" / "images"


def save_screenshot(page, tmp_path, name):
    path = tmp_path / name
    page.screenshot(path=str(path), full_page=True)
    if os.environ.get("PAWPOST_UPDATE_SCREENSHOTS") == "1":
        DOCS_IMAGES.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, DOCS_IMAGES / name)
    return path


def filtered_text(client, live, factory):
    """Send a text that the sandbox filters at a Bandwidth clinic; return the clinic, client and message id."""
    clinic = factory.clinic("bandwidth", name="Happy Paws Clinic")
    parent = factory.client(clinic, NUMBER, name="Pat Parent")
    # A second clinic with a client record for the same number, so the inbox shows two threads.
    other = factory.clinic("twilio", name="Maple Street Vets")
    portal_message(other, factory.client(other, NUMBER), body="Bella is due for her vaccines. Call us to book.")
    message_id = send_via_api(client, factory.api_token(clinic), NUMBER, body=ORIGINAL)
    run_worker(live.app)
    wait_final(message_id, "sms")
    run_worker(live.app)
    wait_final(message_id, "pointer")
    return clinic, parent, message_id


def test_filtered_text_to_reply_seen_by_staff(browser, live, client, factory, phone, tmp_path):
    clinic, parent, message_id = filtered_text(client, live, factory)
    staff = factory.staff(clinic)
    pointer = wait_for_texts(live, NUMBER)[0]["body"]
    link = re.search(r"https?://\S+/p/\S+", pointer).group(0)

    # The phone shows the pointer text; the pet parent taps its link.
    phone.goto(f"{live.sandbox_url}/phones/{NUMBER}")
    phone.get_by_role("link", name=link).tap()
    phone.get_by_role("button", name="Open my message").tap()
    phone.wait_for_url(f"**/inbox/messages/{message_id}")
    message_text = phone.locator(".message .body").inner_text()
    chat_chip = phone.locator(".message .chip-chat").inner_text()
    save_screenshot(phone, tmp_path, "portal-message.png")

    phone.get_by_role("link", name="Inbox").tap()
    phone.wait_for_url("**/inbox")
    threads = phone.locator(".thread-name").all_inner_texts()
    save_screenshot(phone, tmp_path, "portal-inbox.png")

    phone.get_by_role("link", name=re.compile("Happy Paws Clinic")).tap()
    phone.get_by_label("Message").fill(REPLY)
    phone.get_by_label("Photo (optional)").set_input_files(
        {"name": "rex.png", "mimeType": "image/png", "buffer": png_image(240, 160, seed=1)}
    )
    phone.get_by_role("button", name="Send").tap()
    phone.wait_for_url(re.compile(r"/inbox/threads/\d+#message-\d+"))
    sent_photo_width = phone.get_by_role("img", name="Photo 1 from you").evaluate(
        "(element) => element.decode().then(() => element.naturalWidth)"
    )

    desk = new_context(browser, live, device={"viewport": {"width": 1280, "height": 900}})
    staff_page = desk.new_page()
    staff_page.goto("/admin/login")
    staff_page.get_by_label("Email").fill(staff.email)
    staff_page.get_by_label("Password").fill(STAFF_PASSWORD)
    staff_page.get_by_role("button", name="Sign in").click()
    staff_page.goto(f"/admin/clients/{parent.id}")
    staff_sees_reply = staff_page.get_by_text(REPLY).is_visible()
    staff_photo_width = staff_page.locator(f"img[alt^='Photo 1 from']").last.evaluate(
        "(element) => element.decode().then(() => element.naturalWidth)"
    )
    staff_sees_read = staff_page.get_by_text("Read in the Pet Portal.").first.is_visible()
    desk.close()
    wait_for_callbacks(live)

    assert message_text == ORIGINAL
    assert chat_chip == "Chat notification"
    assert delivery(message_id, "portal").read_at is not None
    assert sorted(threads) == ["Happy Paws Clinic", "Maple Street Vets"]
    assert sent_photo_width == 240
    assert staff_sees_reply is True
    assert staff_photo_width == 240
    assert staff_sees_read is True
