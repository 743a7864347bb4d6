"""Staff pages in Chromium: the composer's live counter, a photo send, and the System Health Dashboard."""

import re
from datetime import timedelta

import pytest

from browser.conftest import new_context
from conftest import STAFF_PASSWORD, run_worker
from notifier import gsm, stats
from portal.extensions import db
from portal.models import utcnow
from portal_helpers import png_image, wait_for_texts

NUMBER = "+15551230001"
DESKTOP = {"viewport": {"width": 1280, "height": 900}}
CURLY = "Rex\u2019s booster is \u201cdue\u201d"
# Browser console text that marks a Content-Security-Policy violation.
CSP_PATTERN = re.compile(r"Content[- ]Security[- ]Policy", re.IGNORECASE)


def open_page(browser, live, **options):
    """Return a desktop page and the list its console messages are collected into."""
    context = new_context(browser, live, device=DESKTOP, **options)
    page = context.new_page()
    console = []
    page.on("console", lambda message: console.append(message.text))
    return page, console


def csp_violations(console):
    return [text for text in console if CSP_PATTERN.search(text)]


def sign_in(page, staff):
    page.goto("/admin/login")
    page.get_by_label("Email").fill(staff.email)
    page.get_by_label("Password").fill(STAFF_PASSWORD)
    page.get_by_role("button", name=re.compile("Sign in", re.IGNORECASE)).click()
    page.wait_for_url("**/admin/")


@pytest.fixture
def twilio_parent(factory):
    clinic = factory.clinic("twilio", name="Happy Paws Clinic")
    return factory.client(clinic, NUMBER, name="Pat Parent")


@pytest.fixture
def composer(browser, live, app, factory, twilio_parent):
    """Return a page on the conversation with a Twilio clinic's client, and its console messages."""
    page, console = open_page(browser, live)
    sign_in(page, factory.staff(twilio_parent.clinic))
    page.get_by_role("link", name="Pat Parent").click()
    page.wait_for_url(f"**/admin/clients/{twilio_parent.id}")
    yield page, console
    page.context.close()


@pytest.mark.parametrize(
    "text",
    ["Hello", "a" * 161, "{[]}" * 40, CURLY, "Rex says hi \U0001f436", "é" * 70 + "\u2019"],
    ids=["short", "plain_161", "extension", "curly_quotes", "emoji", "ucs2_71"],
)
def test_counter_matches_gsm(composer, text):
    page, console = composer
    page.get_by_label("Message").fill(text)
    counter = page.locator("[data-counter]")
    encoding, _units = gsm.encoding(text)

    assert counter.get_attribute("data-encoding") == encoding
    assert counter.get_attribute("data-segments") == str(gsm.segments(text))
    assert csp_violations(console) == []


def test_smart_offer_replaces_quotes(composer):
    page, console = composer
    body = page.get_by_label("Message")
    offer = page.locator("[data-smart-offer]")
    body.fill(CURLY)
    offer_shown = offer.is_visible()

    offer.get_by_role("button").click()

    assert offer_shown
    assert body.input_value() == gsm.replace_smart_punctuation(CURLY)
    assert page.locator("[data-counter]").get_attribute("data-encoding") == "GSM-7"
    assert offer.is_hidden()
    assert csp_violations(console) == []


def test_plain_text_has_no_offer(composer):
    page, _console = composer
    page.get_by_label("Message").fill("Rex's booster is due")

    assert page.locator("[data-smart-offer]").is_hidden()


def test_photo_send_reaches_phone(composer, app, live):
    page, console = composer
    page.get_by_label("Message").fill("Here is Rex after his bath.")
    page.get_by_label("Photos or videos (up to 10)").set_input_files(
        {"name": "rex.png", "mimeType": "image/png", "buffer": png_image(240, 160, seed=2)}
    )
    page.get_by_role("button", name="Send text").click()
    page.wait_for_load_state()
    photo = page.locator(".bubble.outbound img.attachment")
    width = photo.evaluate("(element) => element.decode().then(() => element.naturalWidth)")

    run_worker(app)
    received = wait_for_texts(live, NUMBER)[0]

    assert width == 240
    assert received["body"].startswith("Here is Rex after his bath.")
    assert len(received["media"]) == 1
    assert csp_violations(console) == []


def seed(clinic_id, hours_ago, outcome, count, category=""):
    stats.add_history(clinic_id, utcnow() - timedelta(hours=hours_ago), outcome, count, category)
    db.session.commit()


@pytest.fixture
def health_staff(factory):
    """Return staff of a clinic whose seeded figures give 10 %, 5 % and 27.5 % failure rates."""
    clinic = factory.clinic("bandwidth")
    seed(clinic.id, 2, "delivered", 90)
    seed(clinic.id, 2, "failed", 6, "landline")
    seed(clinic.id, 3, "failed", 4, "carrier_filtered")
    seed(clinic.id, 72, "delivered", 100)
    seed(clinic.id, 480, "delivered", 100)
    seed(clinic.id, 480, "failed", 100, "landline")
    return factory.staff(clinic)


@pytest.mark.parametrize("javascript", [True, False], ids=["js", "no_js"])
def test_health_dashboard_renders(browser, live, app, health_staff, javascript):
    page, console = open_page(browser, live, java_script_enabled=javascript)
    sign_in(page, health_staff)
    page.goto("/admin/health")
    rates = {
        window: page.locator(f".tile[data-window='{window}'] [data-field=rate]").inner_text()
        for window in ("24h", "7d", "30d")
    }
    headings = page.get_by_role("heading", name="SMS Failure Rates").count()
    chart = page.locator("svg.chart")
    state = page.locator("[data-state]").get_attribute("data-state")
    bars = chart.locator("rect").count()
    violations = csp_violations(console)
    page.context.close()

    assert headings == 1
    assert rates == {"24h": "10.0 %", "7d": "5.0 %", "30d": "27.5 %"}
    assert state == "watch"
    assert bars > 0
    assert violations == []


def test_console_catches_csp_violation(browser, live, app, health_staff):
    """Control case: an inline script is blocked and reported, so the empty lists above mean no violation."""
    page, console = open_page(browser, live)
    sign_in(page, health_staff)
    page.evaluate("() => { const s = document.createElement('script'); s.textContent = '1'; document.body.append(s); }")
    page.wait_for_timeout(100)
    violations = csp_violations(console)
    page.context.close()

    assert violations != []
