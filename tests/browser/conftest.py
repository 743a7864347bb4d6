"""Browser fixtures: Debian's Chromium driven by Playwright, kept off the network, at phone sizes.

The browser is the system's /usr/bin/chromium (``.ci/run`` installs it); Playwright never
downloads one. Without it the browser tests are skipped, except under CI, where they fail.
"""

import os
import re
from pathlib import Path

import pytest
from playwright.sync_api import sync_playwright

from portal_helpers import issue_link

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
    "--no-sandbox",
    "--headless",
    # Any host name but the loopback addresses fails to resolve, so no page can reach the network.
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE localhost, EXCLUDE 127.0.0.1",
]
# A mid-range phone held upright, and the narrowest width the portal must fit.
PHONE = {"viewport": {"width": 390, "height": 844}, "device_scale_factor": 2, "is_mobile": True, "has_touch": True}
SMALL_PHONE = {"viewport": {"width": 360, "height": 740}, "is_mobile": True, "has_touch": True}


@pytest.fixture(scope="session")
def browser():
    """Launch Chromium once for the whole run."""
    if not CHROMIUM.exists():
        if os.environ.get("CI"):
            pytest.fail(f"{CHROMIUM} is missing; .ci/run installs it with apt-get install chromium.")
        pytest.skip(f"{CHROMIUM} is missing; install it with apt-get install chromium to run the browser tests.")
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        yield chromium
        chromium.close()


def new_context(browser, live, device=PHONE, **options):
    """Open a fresh browser profile (its own cookies) on the live app."""
    context = browser.new_context(base_url=live.url, **device, **options)
    context.set_default_timeout(10_000)
    return context


@pytest.fixture
def phone(browser, live, app):
    """Return a page in a fresh phone-sized browser profile."""
    context = new_context(browser, live)
    yield context.new_page()
    context.close()


def sign_in_page(page, client_id, message_id=None):
    """Sign ``page`` in through a fresh link, pressing the confirm button as a person would."""
    page.goto(f"/p/{issue_link(client_id, message_id)}")
    page.get_by_role("button", name="Open my message").click()
    page.wait_for_url(re.compile(r"/inbox"))
