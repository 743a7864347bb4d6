"""Delivery outcomes chosen by the last two digits of the destination number.

The table is data so that tests, the README and the demo read the same rows. The
unmapped_code row uses 30999 and 4999, which are meant to be codes that no error map in
Pawpost lists, so the demo exercises its fallback for unknown codes.
"""

import re
from dataclasses import dataclass


@dataclass(frozen=True)
class Outcome:
    """One row of the outcome table: what each provider reports for a message."""

    name: str
    summary: str
    # Twilio statuses posted as status callbacks, in order. Empty means rejected at create.
    twilio_statuses: tuple[str, ...]
    twilio_error_code: int | None = None
    twilio_error_message: str | None = None
    # Synchronous HTTP 400 code for the Twilio create call, which then stores no message.
    twilio_reject_code: int | None = None
    # None means Bandwidth posts message-delivered.
    bandwidth_error_code: int | None = None
    bandwidth_description: str = "ok"
    # False means Bandwidth posts no event at all for the message.
    bandwidth_final_event: bool = True
    reaches_phone: bool = False
    # Odd-numbered messages to the number take this outcome and even-numbered ones are delivered.
    fails_odd_attempts: bool = False
    # A body with a link (or the configured allowed_link_prefix) is delivered instead.
    spares_links: bool = False


DELIVERED = Outcome(
    name="delivered",
    summary="Delivered to the handset.",
    twilio_statuses=("sent", "delivered"),
    reaches_phone=True,
)

OUTCOMES = {
    outcome.name: outcome
    for outcome in (
        DELIVERED,
        Outcome(
            name="carrier_filtered",
            summary="Carrier filtered the content, unless the body contains a link.",
            twilio_statuses=("sent", "undelivered"),
            twilio_error_code=30007,
            twilio_error_message="Message filtered by the carrier.",
            bandwidth_error_code=4770,
            bandwidth_description="Carrier rejected the message as spam.",
            spares_links=True,
        ),
        Outcome(
            name="landline",
            summary="Destination is a landline.",
            twilio_statuses=("sent", "undelivered"),
            twilio_error_code=30006,
            twilio_error_message="Destination is a landline or an unreachable carrier.",
            bandwidth_error_code=4720,
            bandwidth_description="Destination is not enabled for messaging.",
        ),
        Outcome(
            name="opted_out",
            summary="Recipient opted out: Twilio rejects the create call, Bandwidth fails later.",
            twilio_statuses=(),
            twilio_reject_code=21610,
            twilio_error_message="Attempt to send to an unsubscribed recipient.",
            bandwidth_error_code=4775,
            bandwidth_description="Carrier reports that the recipient opted out.",
        ),
        Outcome(
            name="invalid_number",
            summary="Number does not exist.",
            twilio_statuses=("failed",),
            twilio_error_code=30005,
            twilio_error_message="Unknown destination handset.",
            bandwidth_error_code=4721,
            bandwidth_description="Destination number is deactivated.",
        ),
        Outcome(
            name="blocked",
            summary="Carrier or recipient blocked the sender.",
            twilio_statuses=("sent", "undelivered"),
            twilio_error_code=30004,
            twilio_error_message="Message blocked.",
            bandwidth_error_code=4772,
            bandwidth_description="Sender or receiver is blocked downstream.",
        ),
        Outcome(
            name="temporary",
            summary="Handset unreachable on the 1st, 3rd, 5th… message, delivered on the others.",
            twilio_statuses=("sent", "undelivered"),
            twilio_error_code=30003,
            twilio_error_message="Unreachable destination handset.",
            bandwidth_error_code=4702,
            bandwidth_description="Subscriber is unavailable.",
            fails_odd_attempts=True,
        ),
        Outcome(
            name="no_final_status",
            summary="Reaches the phone but no final status arrives.",
            twilio_statuses=("sent",),
            bandwidth_final_event=False,
            reaches_phone=True,
        ),
        Outcome(
            name="clinic_setup",
            summary="Sender number is not registered (a clinic setup problem).",
            twilio_statuses=("failed",),
            twilio_error_code=30034,
            twilio_error_message="Message from an unregistered number.",
            bandwidth_error_code=4481,
            bandwidth_description="Source number is blacklisted.",
        ),
        Outcome(
            name="unmapped_code",
            summary="Fails with a code that no error table lists.",
            twilio_statuses=("sent", "undelivered"),
            twilio_error_code=30999,
            twilio_error_message="Unlisted sandbox error.",
            bandwidth_error_code=4999,
            bandwidth_description="Unlisted sandbox error.",
        ),
        Outcome(
            name="always_filtered",
            summary="Carrier filters every message, links included.",
            twilio_statuses=("sent", "undelivered"),
            twilio_error_code=30007,
            twilio_error_message="Message filtered by the carrier.",
            bandwidth_error_code=4770,
            bandwidth_description="Carrier rejected the message as spam.",
        ),
    )
}

# Last two digits of the destination number -> outcome name. Other suffixes are delivered.
SUFFIX_OUTCOMES = {
    **{f"0{digit}": "delivered" for digit in range(10)},
    "10": "carrier_filtered",
    "20": "landline",
    "30": "opted_out",
    "40": "invalid_number",
    "50": "blocked",
    "60": "temporary",
    "70": "no_final_status",
    "80": "clinic_setup",
    "90": "unmapped_code",
    "99": "always_filtered",
}

LINK_PATTERN = re.compile(r"https?://\S")


def outcome_for_number(number: str) -> Outcome:
    """Look up the outcome row for a destination number by its last two digits."""
    name = SUFFIX_OUTCOMES.get(number[-2:], DELIVERED.name)
    return OUTCOMES[name]


def contains_allowed_link(body: str, allowed_link_prefix: str | None) -> bool:
    """Return whether the body carries a link that the link-sparing filter lets through."""
    if allowed_link_prefix:
        return allowed_link_prefix in body
    return LINK_PATTERN.search(body) is not None


def effective_outcome(
    outcome: Outcome, *, attempt: int, body: str, allowed_link_prefix: str | None
) -> Outcome:
    """Resolve the outcome of one message, given its 1-based attempt count to that number."""
    if outcome.fails_odd_attempts and attempt % 2 == 0:
        return DELIVERED
    if outcome.spares_links and contains_allowed_link(body, allowed_link_prefix):
        return DELIVERED
    return outcome
