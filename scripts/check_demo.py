"""Drive a running demo (``make run``) through the API and the sandbox's JSON, and check the results.

Start the demo with PAWPOST_DEMO_TOKEN_BANDWIDTH and PAWPOST_DEMO_TOKEN_TWILIO set, then run
``.venv/bin/python scripts/check_demo.py`` with the same two variables. Exits 1 on the first
check that fails.
"""

import os
import re
import sys
import time

import requests

WEB = os.environ.get("PAWPOST_BASE_URL", "http://127.0.0.1:5000")
SANDBOX = os.environ.get("PAWPOST_SANDBOX_URL", "http://127.0.0.1:5050")
FALLBACK = "Text Not Delivered — Message sent as Chat Notification to Client Instead."


def main():
    bandwidth = os.environ["PAWPOST_DEMO_TOKEN_BANDWIDTH"]
    twilio = os.environ["PAWPOST_DEMO_TOKEN_TWILIO"]
    original = f"Bella is due for her vaccines ({int(time.time())}). Call us to book."
    # A number of its own each run: the sandbox filters numbers ending in 10, and the demo's own
    # start-up traffic to +15552010010 may still be reaching the Pet Portal fallback.
    filtered_number = f"+15552{int(time.time()) % 10000:04d}10"
    before = len(_received(filtered_number))

    filtered_id = _send(bandwidth, filtered_number, original)
    delivered_id = _send(twilio, "+15553010001", "Max is ready for pickup.")

    sms = _wait_final(bandwidth, filtered_id, "sms")
    _check(sms["staff_message"] == FALLBACK, f"staff message is {sms['staff_message']!r}")
    _wait_final(bandwidth, filtered_id, "pointer")
    pointers = _received(filtered_number)[before:]
    _check(len(pointers) == 1, f"the filtered number received {len(pointers)} new texts, expected 1")
    _check(original not in pointers[0]["body"], "the pointer text repeats the original message")

    link = re.search(r"https?://\S+/p/\S+", pointers[0]["body"]).group(0)
    _check(original in _open_link(link), "the pointer link did not show the original message")

    twilio_sms = _wait_final(twilio, delivered_id, "sms")
    _check(twilio_sms["status"] == "delivered", f"the Twilio text ended {twilio_sms['status']!r}")
    bodies = [m["body"] for m in _received("+15553010001")]
    _check("Max is ready for pickup." in bodies, "the Twilio number did not receive the original text")
    print("Demo checks passed.")


def _send(token, to, body):
    response = requests.post(
        f"{WEB}/api/v1/messages", json={"to": to, "body": body}, headers={"Authorization": f"Bearer {token}"}, timeout=10
    )
    _check(response.status_code == 201, f"POST /api/v1/messages answered {response.status_code}: {response.text}")
    return response.json()["id"]


def _wait_final(token, message_id, channel, timeout=30):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        body = requests.get(f"{WEB}/api/v1/messages/{message_id}", headers={"Authorization": f"Bearer {token}"}, timeout=10).json()
        delivery = next((d for d in body["deliveries"] if d["channel"] == channel), None)
        if delivery and delivery["status"] in ("delivered", "undelivered", "failed", "unknown", "suppressed"):
            return delivery
        time.sleep(0.3)
    _check(False, f"message {message_id} has no final {channel} status after {timeout} s")


def _received(number):
    return requests.get(f"{SANDBOX}/phones/{number}/messages", timeout=10).json()


def _open_link(link):
    session = requests.Session()
    page = session.get(link, timeout=10)
    _check(page.status_code == 200, f"GET of the pointer link answered {page.status_code}")
    csrf = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', page.text).group(1)
    opened = session.post(link, data={"csrf_token": csrf}, timeout=10)
    _check(opened.status_code == 200, f"POST of the pointer link answered {opened.status_code}")
    return opened.text


def _check(condition, failure):
    if not condition:
        print(f"Demo check failed: {failure}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
