"""Status steps and callback delivery from background threads, with bounded retries."""

import dataclasses
import ipaddress
import logging
import threading
import time
from urllib.parse import urlsplit

import requests

from sandbox.state import Delivery, SandboxState, iso_utc, utc_now

logger = logging.getLogger("sandbox")

# At most MAX_ATTEMPTS posts per callback, waiting 0.25, 0.5, 1 and 2 s between them. With
# REQUEST_TIMEOUT_SECONDS that bounds one callback to about 9 s before the sandbox gives up.
MAX_ATTEMPTS = 5
FIRST_BACKOFF_SECONDS = 0.25
REQUEST_TIMEOUT_SECONDS = 1.0


@dataclasses.dataclass(frozen=True)
class Callback:
    """An HTTP POST to send to the customer's callback URL."""

    url: str
    event: str
    headers: dict
    form: dict | None = None
    json_body: list | None = None
    auth: tuple[str, str] | None = None


@dataclasses.dataclass(frozen=True)
class Step:
    """A status change applied after the callback delay, with the callback to post (if any)."""

    status: str
    error_code: int | None = None
    error_message: str | None = None
    reaches_phone: bool = False
    callback: Callback | None = None


def is_loopback_url(url: str) -> bool:
    """Return whether the URL is http(s) on localhost or a loopback address."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return False
    if parts.hostname == "localhost":
        return True
    try:
        return ipaddress.ip_address(parts.hostname).is_loopback
    except ValueError:
        return False


def post_once(session: requests.Session, callback: Callback) -> int:
    """Post the callback once and return the HTTP status, or raise requests.RequestException."""
    # Redirects are not followed, so a callback cannot be led off the loopback host.
    # A 3xx response counts as a failed try.
    response = session.post(
        callback.url,
        data=callback.form,
        json=callback.json_body,
        headers=callback.headers,
        auth=callback.auth,
        timeout=REQUEST_TIMEOUT_SECONDS,
        allow_redirects=False,
    )
    return response.status_code


def try_post(session: requests.Session, callback: Callback) -> dict:
    """Post the callback once and return {"http_status": …}, or {"error": …} if no response came."""
    try:
        return {"http_status": post_once(session, callback)}
    except requests.RequestException as error:
        return {"error": type(error).__name__}


def post_with_retries(callback: Callback, message_id: str) -> dict:
    """Post the callback until a 2xx or MAX_ATTEMPTS tries, and return a record of the result."""
    started = iso_utc(utc_now())
    with requests.Session() as session:
        # Ignore proxy variables so a callback can only go to the loopback URL it names.
        session.trust_env = False
        for attempt in range(1, MAX_ATTEMPTS + 1):
            result = try_post(session, callback)
            record = {"event": callback.event, "time": started, "attempts": attempt, **result}
            if 200 <= record.get("http_status", 0) < 300:
                return {**record, "delivered": True}
            log_failed_attempt(record, message_id)
            if attempt < MAX_ATTEMPTS:
                time.sleep(FIRST_BACKOFF_SECONDS * 2 ** (attempt - 1))
    logger.error(
        "Gave up on callback %s for message %s after %d attempts", callback.event, message_id, MAX_ATTEMPTS
    )
    return {**record, "delivered": False}


def log_failed_attempt(record: dict, message_id: str) -> None:
    """Log one failed callback attempt with the message id, never the number or body."""
    logger.warning(
        "Callback %s for message %s failed on attempt %d of %d: %s",
        record["event"],
        message_id,
        record["attempts"],
        MAX_ATTEMPTS,
        record.get("error") or f"HTTP {record['http_status']}",
    )


def post_copies(
    state: SandboxState, delivery: Delivery, callback: Callback, generation: int, copies: int
) -> list[dict]:
    """Post the callback `copies` times in a row, record each result on the delivery and return them."""
    if not is_loopback_url(callback.url):
        logger.warning(
            "Skipped callback %s for message %s: the sandbox posts only to localhost or loopback URLs",
            callback.event,
            delivery.id,
        )
        skipped = {"event": callback.event, "skipped": "not a loopback URL"}
        state.record_callback(delivery, skipped, generation)
        return [skipped]
    records = []
    for _ in range(copies):
        record = post_with_retries(callback, delivery.id)
        state.record_callback(delivery, record, generation)
        records.append(record)
    return records


def send_callback(state: SandboxState, delivery: Delivery, callback: Callback, generation: int) -> None:
    """Post one status callback (twice with duplicate_callbacks) and record each result."""
    copies = 2 if state.config_value("duplicate_callbacks") else 1
    post_copies(state, delivery, callback, generation, copies)


def run_steps(state: SandboxState, delivery: Delivery, steps: list[Step], generation: int) -> None:
    """Apply each step after the callback delay and post its callback, in order."""
    for step in steps:
        time.sleep(state.config_value("callback_delay"))
        if not state.apply_step(delivery, step, generation):
            return
        if step.callback is not None:
            send_callback(state, delivery, step.callback, generation)
    state.finish_callbacks(delivery, generation)


def start_steps(state: SandboxState, delivery: Delivery, steps: list[Step], generation: int) -> None:
    """Run the delivery's steps on a daemon thread so the API call returns at once."""
    worker = threading.Thread(
        target=run_steps,
        args=(state, delivery, steps, generation),
        name=f"sandbox-callbacks-{delivery.id}",
        daemon=True,
    )
    worker.start()
