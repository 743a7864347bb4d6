"""In-memory sandbox state, shared by request threads and callback threads under one lock."""

import collections
import copy
import dataclasses
import threading
from datetime import datetime, timezone

# Oldest API requests are dropped past this count so a long demo does not grow without bound.
MAX_LOGGED_REQUESTS = 10_000


def utc_now() -> datetime:
    """Return the current time as an aware UTC datetime."""
    return datetime.now(timezone.utc)


def iso_utc(moment: datetime) -> str:
    """Format a UTC datetime as ISO 8601 with milliseconds and a Z suffix."""
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


@dataclasses.dataclass
class Delivery:
    """One message to one recipient, as the provider tracks it."""

    id: str
    provider: str
    account_id: str
    to: str
    from_: str
    body: str
    media: list[str]
    outcome: str
    status: str
    segment_count: int
    created: datetime
    updated: datetime
    sent: datetime | None = None
    delivered_to_phone: datetime | None = None
    error_code: int | None = None
    error_message: str | None = None
    # "outbound" (sent through the API), "inbound" (a phone texted a clinic number) or "reply"
    # (an automatic reply from the carrier, such as Twilio's opt-out confirmation).
    direction: str = "outbound"
    # Provider-specific request fields: status_callback (Twilio), or application_id, recipients,
    # tag, priority and expiration (Bandwidth).
    details: dict = dataclasses.field(default_factory=dict)
    callbacks: list[dict] = dataclasses.field(default_factory=list)
    callbacks_finished: bool = False


@dataclasses.dataclass(frozen=True)
class MediaFile:
    """A media file that the sandbox serves for an inbound MMS."""

    content: bytes
    content_type: str
    account_id: str
    # The Twilio auth token that basic auth on the media URL must carry, or None for Bandwidth.
    auth_token: str | None = None


class SandboxState:
    """Messages, phone inboxes, media, opt-outs, the API request log and the current config."""

    def __init__(self, config: dict) -> None:
        self.lock = threading.RLock()
        self.config = config
        self.generation = 0
        self.reset()

    def reset(self) -> None:
        """Clear messages, inboxes, media, opt-outs, counters and the request log.

        Callbacks still pending for earlier messages are orphaned.
        """
        with self.lock:
            self.deliveries: list[Delivery] = []
            # Keyed by the URL path that serves the file.
            self.media: dict[str, MediaFile] = {}
            # (sender number, phone number) pairs that Twilio rejects with 21610.
            self.opt_outs: set[tuple[str, str]] = set()
            self.requests: collections.deque = collections.deque(maxlen=MAX_LOGGED_REQUESTS)
            self.request_count = 0
            self.attempts_by_number: collections.Counter = collections.Counter()
            # Callback threads compare this before each step and stop once it has moved on.
            self.generation += 1

    def set_config(self, config: dict) -> None:
        """Replace the config used by later requests and callbacks."""
        with self.lock:
            self.config = config

    def config_value(self, key: str):
        """Return one config value read under the lock."""
        with self.lock:
            return self.config[key]

    def bandwidth_application(self, application_id: str) -> dict | None:
        """Return the configured Bandwidth application, or None if it is not configured."""
        with self.lock:
            return self.config["bandwidth_applications"].get(application_id)

    def clinic_number(self, number: str) -> dict | None:
        """Return the configured clinic number entry, or None if the number is not configured."""
        with self.lock:
            return self.config["numbers"].get(number)

    def add_media(self, path: str, media: MediaFile) -> None:
        """Store a media file under the URL path that serves it."""
        with self.lock:
            self.media[path] = media

    def find_media(self, path: str) -> MediaFile | None:
        """Return the media file served at the URL path, or None."""
        with self.lock:
            return self.media.get(path)

    def set_opted_out(self, sender: str, phone: str, opted_out: bool) -> None:
        """Record or clear an opt-out of the phone from messages sent by the sender number."""
        with self.lock:
            if opted_out:
                self.opt_outs.add((sender, phone))
            else:
                self.opt_outs.discard((sender, phone))

    def is_opted_out(self, sender: str, phone: str) -> bool:
        """Return whether the phone opted out of messages from the sender number."""
        with self.lock:
            return (sender, phone) in self.opt_outs

    def log_request(self, entry: dict) -> dict:
        """Append an API request to the log and return the stored entry."""
        with self.lock:
            self.request_count += 1
            entry["index"] = self.request_count
            self.requests.append(entry)
            return entry

    def logged_requests(self) -> list[dict]:
        """Return a copy of the API request log, oldest first."""
        with self.lock:
            return copy.deepcopy(list(self.requests))

    def next_attempt(self, number: str) -> int:
        """Count one more accepted message to the number and return its 1-based count."""
        with self.lock:
            self.attempts_by_number[number] += 1
            return self.attempts_by_number[number]

    def add_delivery(self, delivery: Delivery) -> int:
        """Store a copy of a new delivery and return the generation its callbacks belong to."""
        with self.lock:
            # A copy, so the caller can render the queued state while callback threads move on.
            self.deliveries.append(copy.deepcopy(delivery))
            return self.generation

    def find_deliveries(self, provider: str, account_id: str, message_id: str) -> list[Delivery]:
        """Return copies of the deliveries of one message of one account."""
        with self.lock:
            return [
                copy.deepcopy(delivery)
                for delivery in self.deliveries
                if (delivery.provider, delivery.account_id, delivery.id)
                == (provider, account_id, message_id)
            ]

    def search_deliveries(self, provider: str, account_id: str) -> list[Delivery]:
        """Return copies of all deliveries of one provider account, oldest first."""
        with self.lock:
            return [
                copy.deepcopy(delivery)
                for delivery in self.deliveries
                if delivery.provider == provider and delivery.account_id == account_id
            ]

    def apply_step(self, delivery: Delivery, step, generation: int) -> bool:
        """Apply a status step to the stored delivery, or return False if a reset orphaned it."""
        with self.lock:
            if generation != self.generation:
                return False
            stored = self.stored(delivery)
            stored.status = step.status
            stored.error_code = step.error_code
            stored.error_message = step.error_message
            stored.updated = utc_now()
            if step.status in ("sent", "SENT") and stored.sent is None:
                stored.sent = stored.updated
            if step.reaches_phone:
                stored.delivered_to_phone = stored.updated
            return True

    def record_callback(self, delivery: Delivery, entry: dict, generation: int) -> None:
        """Append the result of one callback post to the delivery, unless a reset orphaned it."""
        with self.lock:
            if generation == self.generation:
                self.stored(delivery).callbacks.append(entry)

    def finish_callbacks(self, delivery: Delivery, generation: int) -> None:
        """Mark that no more callbacks will be posted for the delivery."""
        with self.lock:
            if generation == self.generation:
                self.stored(delivery).callbacks_finished = True

    def stored(self, delivery: Delivery) -> Delivery:
        """Return the stored delivery with the same message id and recipient (lock held)."""
        for candidate in self.deliveries:
            if (candidate.provider, candidate.id, candidate.to) == (
                delivery.provider,
                delivery.id,
                delivery.to,
            ):
                return candidate
        raise KeyError(f"Delivery {delivery.id} is not stored.")

    def phone_deliveries(self, number: str) -> list[Delivery]:
        """Return copies of the deliveries that reached the number, oldest first."""
        with self.lock:
            reached = [
                copy.deepcopy(delivery)
                for delivery in self.deliveries
                if delivery.to == number and delivery.delivered_to_phone is not None
            ]
        return sorted(reached, key=lambda delivery: delivery.delivered_to_phone)

    def phone_counts(self) -> dict[str, int]:
        """Return how many messages each phone received, keyed by number."""
        with self.lock:
            return dict(
                collections.Counter(
                    delivery.to
                    for delivery in self.deliveries
                    if delivery.delivered_to_phone is not None
                )
            )

    def all_deliveries(self) -> list[Delivery]:
        """Return copies of every delivery, oldest first."""
        with self.lock:
            return copy.deepcopy(self.deliveries)
