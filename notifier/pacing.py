"""Per-sender pacing: no sender number sends more texts in any one second than its configured rate.

Carriers cap how many messages per second one number may send (its throughput class), and
texts above the cap are queued or dropped by the provider. Each send reserves the sender's next
slot in Redis, shared by every worker, and slots are spaced evenly (a generic cell rate
algorithm): ``(1000 + PAWPOST_PACING_MARGIN_MS) / rate`` milliseconds apart. Even spacing with
that margin keeps every one-second window at or under the rate even when a send reaches the
provider up to the margin later than its slot, and gives carriers a steady stream, not bursts.

``PAWPOST_SENDER_RATE`` sets the rate of every sender in messages per second (0 turns pacing
off) and ``PAWPOST_SENDER_RATES`` overrides it per number, as ``+15550001111=10,+15550002222=3``.
"""

import logging
import time

import redis
from flask import current_app

from notifier import queues

log = logging.getLogger(__name__)

KEY_PREFIX = "pawpost:pacing:"
WINDOW_MS = 1000
# Slots a send may take when it keeps waking too late for them; the last one is used late.
LATE_WAKE_ATTEMPTS = 3

# Returns the whole milliseconds from now to the reserved slot and moves the sender's next free
# slot one interval past it. The Redis clock is the only clock, so workers on different
# machines agree. KEYS[1]: the sender's next free slot (ms); ARGV[1]: the interval (ms).
RESERVE_SCRIPT = """
local now_parts = redis.call('TIME')
local now = tonumber(now_parts[1]) * 1000 + tonumber(now_parts[2]) / 1000
local interval = tonumber(ARGV[1])
local slot = math.max(now, tonumber(redis.call('GET', KEYS[1]) or now))
redis.call('SET', KEYS[1], tostring(slot + interval), 'PX', math.ceil(slot + interval - now) + 1000)
return math.ceil(slot - now)
"""


class InvalidRate(ValueError):
    """A sender rate setting is not a whole number of messages per second."""


def sender_rate(sender_number):
    """Return the configured messages per second of ``sender_number``, or 0 when it is not paced."""
    overrides = parse_rates(current_app.config.get("PAWPOST_SENDER_RATES") or "")
    if sender_number in overrides:
        return overrides[sender_number]
    return int(current_app.config.get("PAWPOST_SENDER_RATE") or 0)


def parse_rates(text):
    """Parse ``"+15550001111=10,+15550002222=3"`` into ``{number: rate}``; raise InvalidRate when malformed."""
    rates = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        number, _, value = item.partition("=")
        if not number.strip() or not value.strip().isdigit():
            raise InvalidRate(
                f"Sender rate {item!r} is invalid. Write each as +15550001111=10 (whole messages per second)."
            )
        rates[number.strip()] = int(value)
    return rates


def reserve(sender_number, rate, margin_ms=None):
    """Reserve the sender's next send slot and return the seconds to wait before sending."""
    if margin_ms is None:
        margin_ms = current_app.config["PAWPOST_PACING_MARGIN_MS"]
    script = current_app.extensions.get("pawpost_pacing_script")
    if script is None:
        script = current_app.extensions["pawpost_pacing_script"] = queues.connection().register_script(RESERVE_SCRIPT)
    wait_ms = script(keys=[KEY_PREFIX + sender_number], args=[(WINDOW_MS + margin_ms) / rate])
    return int(wait_ms) / 1000


def wait_for_turn(sender_number):
    """Block until ``sender_number`` may send one more text; return the seconds waited.

    Senders without a rate return at once. When Redis is unreachable the text goes out unpaced,
    since holding every text back would be worse than an occasional provider-side queue.
    """
    rate = sender_rate(sender_number)
    if rate <= 0:
        return 0.0
    margin = current_app.config["PAWPOST_PACING_MARGIN_MS"] / 1000
    waited = 0.0
    for _attempt in range(LATE_WAKE_ATTEMPTS):
        try:
            wait = reserve(sender_number, rate)
        except redis.exceptions.RedisError as exc:
            log.warning("Pacing skipped for one text: Redis is unreachable (%s).", exc)
            return waited
        # NOTE: the worker sleeps here, so a backlog of one slow sender can occupy every worker and
        # delay other senders. Each wait is at most (send threads of all workers / rate) seconds.
        deadline = time.monotonic() + wait
        if wait > 0:
            time.sleep(wait)
        waited += wait
        late = time.monotonic() - deadline
        if late <= margin:
            return waited
        # A busy process woke this thread past its slot and margin. Sending now could put one text
        # too many into a second, so the text takes a new slot.
        log.info("A paced send woke %.0f ms after its slot; it takes the next free slot.", late * 1000)
    return waited
