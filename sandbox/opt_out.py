"""Twilio's default opt-out handling on long codes: STOP blocks the sender, START lifts the block.

Twilio handles these keywords itself, before it forwards the message to the inbound webhook,
and it rejects later sends to the opted-out phone with error 21610. Bandwidth leaves keyword
handling to the customer, so the sandbox applies none on Bandwidth numbers.
"""

import logging
import uuid

from sandbox import segments
from sandbox.state import Delivery, SandboxState, utc_now

logger = logging.getLogger("sandbox")

# Twilio's default opt-out and opt-in keywords for long codes and toll-free numbers.
OPT_OUT_KEYWORDS = frozenset({"STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT", "REVOKE", "OPTOUT"})
OPT_IN_KEYWORDS = frozenset({"START", "YES", "UNSTOP"})
OPT_OUT_CONFIRMATION = (
    "You have successfully been unsubscribed. You will not receive any more messages from this "
    "number. Reply START to resubscribe."
)


def keyword_of(body: str) -> str | None:
    """Return the opt-out or opt-in keyword that the body consists of, or None."""
    # Only a message that is the keyword alone counts, so "STOP please" is an ordinary message.
    word = body.strip().upper()
    if word in OPT_OUT_KEYWORDS or word in OPT_IN_KEYWORDS:
        return word
    return None


def confirmation_reply(account_sid: str, clinic_number: str, phone: str) -> Delivery:
    """Build the opt-out confirmation that Twilio sends back, as a message the phone received."""
    now = utc_now()
    return Delivery(
        id="SM" + uuid.uuid4().hex,
        provider="twilio",
        account_id=account_sid,
        to=phone,
        from_=clinic_number,
        body=OPT_OUT_CONFIRMATION,
        media=[],
        outcome="delivered",
        status="delivered",
        segment_count=segments.count_segments(OPT_OUT_CONFIRMATION),
        created=now,
        updated=now,
        sent=now,
        delivered_to_phone=now,
        direction="reply",
        callbacks_finished=True,
    )


def apply_keyword(state: SandboxState, message: Delivery) -> str | None:
    """Apply an opt-out or opt-in keyword that a phone sent to a Twilio clinic number, and return it."""
    keyword = keyword_of(message.body)
    clinic_number, phone = message.to, message.from_
    if keyword in OPT_OUT_KEYWORDS:
        state.set_opted_out(clinic_number, phone, True)
        reply = confirmation_reply(message.account_id, clinic_number, phone)
        state.add_delivery(reply)
        # The keyword stays out of the log because it is the message body.
        logger.info("Inbound message %s opted the phone out: confirmation %s recorded", message.id, reply.id)
    elif keyword in OPT_IN_KEYWORDS:
        state.set_opted_out(clinic_number, phone, False)
        logger.info("Inbound message %s opted the phone back in", message.id)
    return keyword
