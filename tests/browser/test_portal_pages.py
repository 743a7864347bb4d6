"""Every Pet Portal page in Chromium at 360 px: no sideways scrolling, 44 px tap targets, axe-core, page weight."""

import re
from dataclasses import dataclass

import pytest
from axe_playwright_python.sync_playwright import Axe

from browser.conftest import SMALL_PHONE, new_context, sign_in_page
from conftest import Factory, reset_state
from notifier import policy
from portal.extensions import db
from portal.models import utcnow
from portal_helpers import inbound_message, issue_link, png_image, portal_message, video_clip

MOBILE = "+15551230001"
WIDTH = 360
MIN_TARGET_PX = 44
MAX_PAGE_BYTES = 50 * 1024
# axe-core impact levels this suite rejects; "minor" and "moderate" findings are reviewed by hand.
REJECTED_IMPACTS = ("serious", "critical")

# Every visible link, button and file picker, with its size and a short description.
SMALL_TARGETS_SCRIPT = """
(minimum) => [...document.querySelectorAll('a[href], button, input[type=submit], input[type=file], [role=button]')]
  .filter((element) => element.getClientRects().length > 0 && getComputedStyle(element).visibility !== 'hidden')
  .map((element) => ({rect: element.getBoundingClientRect(), html: element.outerHTML.slice(0, 120)}))
  .filter(({rect}) => rect.width < minimum || rect.height < minimum)
  .map(({rect, html}) => `${Math.round(rect.width)}x${Math.round(rect.height)} ${html}`)
"""
ASSETS_SCRIPT = """
() => [...document.querySelectorAll('link[rel=stylesheet][href], script[src]')].map((element) => element.href || element.src)
"""


@dataclass
class World:
    """The rows behind the pages: a pet parent at two clinics with photos, a video and a reply."""

    at_happy: object
    at_maple: object
    photo_message: object


def build_world(factory):
    happy = factory.clinic("bandwidth", name="Happy Paws Clinic")
    maple = factory.clinic("twilio", name="Maple Street Vets")
    at_happy = factory.client(happy, MOBILE)
    at_happy.email = "pat@example.com"
    at_happy.email_verified_at = utcnow()
    at_maple = factory.client(maple, MOBILE)
    db.session.commit()
    portal_message(happy, at_happy, body="Rex's lab results are normal.", read=True)
    inbound_message(happy, at_happy, body="Great news, thank you!")
    photo_message = portal_message(
        happy, at_happy, body="Here is Rex after his bath.", chat=True, files=[png_image(320, 200), video_clip()]
    )
    portal_message(maple, at_maple, body="Bella is due for her vaccines. Call us to book.")
    policy.record_consent(maple.sender_number, MOBILE, True, "keyword")
    db.session.commit()
    return World(at_happy, at_maple, photo_message)


@pytest.fixture
def world(factory):
    return build_world(factory)


def submit(page, button):
    with page.expect_navigation() as navigation:
        page.get_by_role("button", name=button).click()
    return navigation.value


def open_login_error(page, world):
    page.goto("/login")
    page.get_by_label("Email address or mobile number").fill("not an address")
    return submit(page, "Send me a code")


def open_code_entry(page, world):
    page.goto("/login")
    page.get_by_label("Email address or mobile number").fill(MOBILE)
    return submit(page, "Send me a code")


def open_reply_error(page, world):
    page.goto(f"/inbox/threads/{world.at_happy.id}")
    return submit(page, "Send")


# name: (how to open it, expected status, whether it needs a signed-in pet parent)
PAGES = {
    "home": (lambda page, world: page.goto("/"), 200, False),
    "confirm_link": (lambda page, world: page.goto(f"/p/{issue_link(world.at_happy.id, world.photo_message.id)}"), 200, False),
    "link_problem": (lambda page, world: page.goto("/p/not-a-real-link"), 404, False),
    "login": (lambda page, world: page.goto("/login"), 200, False),
    "login_error": (open_login_error, 400, False),
    "code_entry": (open_code_entry, 200, False),
    "sign_in_required": (lambda page, world: page.goto("/inbox"), 401, False),
    "inbox": (lambda page, world: page.goto("/inbox"), 200, True),
    "thread": (lambda page, world: page.goto(f"/inbox/threads/{world.at_happy.id}"), 200, True),
    "reply_error": (open_reply_error, 400, True),
    "message": (lambda page, world: page.goto(f"/inbox/messages/{world.photo_message.id}"), 200, True),
    "preferences": (lambda page, world: page.goto("/preferences"), 200, True),
    "not_found": (lambda page, world: page.goto("/inbox/messages/999999"), 404, True),
}


@dataclass
class Measurement:
    status: int
    scroll_width: int
    small_targets: list
    axe_rejected: list
    asset_bytes: dict


@pytest.fixture(scope="module")
def measurements(browser, live):
    """Open every portal page once at 360 x 740 and measure it; the tests below check the numbers."""
    reset_state(live)
    results = {}
    with live.app.app_context():
        world = build_world(Factory(live))
        signed_in = new_context(browser, live, device=SMALL_PHONE)
        sign_in_page(signed_in.new_page(), world.at_happy.id)
        for name, (opener, _status, needs_sign_in) in PAGES.items():
            context = signed_in if needs_sign_in else new_context(browser, live, device=SMALL_PHONE)
            page = context.new_page()
            results[name] = measure(page, opener(page, world))
            page.close()
            if context is not signed_in:
                context.close()
        signed_in.close()
        db.session.remove()
    return results


def measure(page, response):
    page.wait_for_load_state("load")
    asset_bytes = {response.url: len(response.body())}
    for url in page.evaluate(ASSETS_SCRIPT):
        asset_bytes[url] = len(page.request.get(url).body())
    violations = Axe().run(page).response["violations"]
    return Measurement(
        status=response.status,
        scroll_width=page.evaluate("document.documentElement.scrollWidth"),
        small_targets=page.evaluate(SMALL_TARGETS_SCRIPT, MIN_TARGET_PX),
        axe_rejected=[
            f"{v['id']} ({v['impact']}): {[n['target'] for n in v['nodes']]}"
            for v in violations
            if v["impact"] in REJECTED_IMPACTS
        ],
        asset_bytes=asset_bytes,
    )


@pytest.mark.parametrize("name", PAGES)
def test_page_status(measurements, name):
    assert measurements[name].status == PAGES[name][1]


@pytest.mark.parametrize("name", PAGES)
def test_page_fits_360_px(measurements, name):
    assert measurements[name].scroll_width <= WIDTH


@pytest.mark.parametrize("name", PAGES)
def test_page_tap_targets(measurements, name):
    assert measurements[name].small_targets == []


@pytest.mark.parametrize("name", PAGES)
def test_page_axe(measurements, name):
    assert measurements[name].axe_rejected == []


@pytest.mark.parametrize("name", PAGES)
def test_page_weight(measurements, name):
    total = sum(measurements[name].asset_bytes.values())

    assert total < MAX_PAGE_BYTES, measurements[name].asset_bytes


def test_inbox_without_javascript(browser, live, app, world):
    context = new_context(browser, live, java_script_enabled=False)
    page = context.new_page()
    sign_in_page(page, world.at_happy.id)

    page.goto("/inbox")
    names = page.locator(".thread-name").all_inner_texts()
    context.close()

    assert sorted(names) == ["Happy Paws Clinic", "Maple Street Vets"]


def test_thread_video_playable(phone, world):
    sign_in_page(phone, world.at_happy.id)
    phone.goto(f"/inbox/threads/{world.at_happy.id}")
    video = phone.locator("video.attachment")

    video.evaluate("(element) => new Promise((resolve) => element.readyState >= 1 ? resolve() : element.addEventListener('loadedmetadata', resolve))")

    assert video.evaluate("(element) => element.duration") > 0
    assert video.evaluate("(element) => element.error") is None


def test_thread_photo_loads(phone, world):
    sign_in_page(phone, world.at_happy.id)
    phone.goto(f"/inbox/threads/{world.at_happy.id}")
    photo = phone.get_by_role("img", name="Photo 1 from Happy Paws Clinic")
    photo.scroll_into_view_if_needed()

    natural_width = photo.evaluate("(element) => element.decode().then(() => element.naturalWidth)")
    shown_width = photo.bounding_box()["width"]

    assert natural_width == 320
    assert shown_width <= 390
