"""Staff-facing text for each delivery: a status word, the reason and the action."""

from notifier.classify import categories, classify
from notifier.policy import RETRY_LIMITS

FALLBACK_SENT = "Text Not Delivered — Message sent as Chat Notification to Client Instead."
BOTH_BLOCKED = (
    "Text Not Delivered — the carrier blocked both the text and the Pet Portal notice. "
    "The message is in the client's Pet Portal inbox; reach the client another way, "
    "such as a phone call or email."
)
IN_PROGRESS = {
    "queued": "Waiting to send.",
    "sending": "Sending.",
    "accepted": "Handed to the provider; waiting for the carrier.",
    "sent": "Accepted by the carrier; waiting for the delivery receipt.",
    "delivered": "Delivered.",
    "unknown": "The final status is unknown: the provider did not confirm delivery.",
}


# Staff text for email and push deliveries by channel and status, then by failure category.
# {error} is the last SMTP or HTTP status (or "no connection"), {attempts} the attempts made.
NOTIFICATION_PROGRESS = {
    "email": {
        "queued": "Waiting to send the email.",
        "sending": "Sending the email.",
        "delivered": "Email accepted by the client's mail server.",
    },
    "push": {
        "queued": "Waiting to send the push notification.",
        "sending": "Sending the push notification.",
        "delivered": "Push notification accepted by the push service of the client's browser.",
    },
}
NOTIFICATION_FAILURES = {
    "email": {
        "temporary": "The mail server kept failing ({error}); Pawpost stopped after {attempts}. "
        "If you see a pattern, escalate to support.",
        "rejected": "The client's mail server rejected the email ({error}). "
        "Check the email address on the client record in your PIMS.",
        "setup": "Pawpost's email setup has a problem ({error}). Contact support.",
        "opted_out": "Not emailed: the client turned email notifications off in the Pet Portal.",
        "no_address": "Not emailed: the client has no verified email address.",
        "not_configured": "Not emailed: email is not set up on this Pawpost server. Contact support.",
    },
    "push": {
        "temporary": "The push service kept failing ({error}); Pawpost stopped after {attempts}. "
        "If you see a pattern, escalate to support.",
        "rejected": "The push service rejected the notification ({error}). Contact support if it keeps happening.",
        "subscription_gone": "No push notification: the client's browsers no longer accept notifications. "
        "The client can turn them on again in the Pet Portal.",
        "opted_out": "No push notification: the client turned push notifications off in the Pet Portal.",
        "no_subscription": "No push notification: none of the client's browsers is signed up for notifications.",
        "not_configured": "No push notification: Web Push is not set up on this Pawpost server. Contact support.",
    },
}


def staff_message(delivery):
    """Return the sentence staff see for ``delivery``."""
    if delivery.channel == "portal":
        return _portal_message(delivery)
    if delivery.channel in NOTIFICATION_PROGRESS:
        return _notification_message(delivery)
    if delivery.channel == "pointer":
        return _pointer_message(delivery)
    if delivery.status == "queued" and delivery.attempts and delivery.category:
        return retrying_text(delivery)
    if delivery.status not in ("undelivered", "failed", "suppressed"):
        return IN_PROGRESS.get(delivery.status, delivery.status)
    if delivery.status == "suppressed":
        return "Not sent by text: " + failure_text(delivery.category, None)
    if delivery.category == "carrier_filtered":
        pointer = delivery.message.delivery("pointer")
        if pointer is not None:
            return BOTH_BLOCKED if pointer.status in ("undelivered", "failed") else FALLBACK_SENT
    if delivery.category == "temporary" and delivery.attempts > 1:
        return (
            f"A transient issue stopped the text, and all {delivery.attempts} attempts failed. "
            "Retries are exhausted; if you see a pattern, escalate to support."
        )
    if delivery.error_code == "expired":
        return "The text was not sent: it waited past its validity period (a backlog or an outage). Send it again if it still matters."
    if delivery.category == "temporary":
        return "A transient issue stopped the text, and it can't be retried before it expires. " + _action("temporary")
    override = classify(delivery.provider, delivery.error_code or "none").reason
    if override:
        return f"{override} Send the photo again, or contact support if it keeps failing."
    return failure_text(delivery.category, delivery.error_code)


def retrying_text(delivery):
    """Return the sentence for a delivery waiting for its next attempt."""
    attempt = f"attempt {delivery.attempts + 1} of {_attempt_limit(delivery)}"
    if delivery.category == "temporary":
        return f"A transient issue; retrying automatically ({attempt}). If you see a pattern, escalate to support."
    reason = categories()[delivery.category]["reason"].format(code=delivery.error_code or "none")
    # Some setup codes (Twilio 30035, 30024) retry "later", up to the delivery's own maximum.
    once = " once" if _retry_rule(delivery) == "once" else ""
    return f"{reason} Retrying{once} automatically ({attempt})."


def _retry_rule(delivery):
    return classify(delivery.provider, delivery.error_code or "none").retry


def _attempt_limit(delivery):
    # The code's retry rule can allow fewer attempts than the delivery's own maximum.
    return min(RETRY_LIMITS.get(_retry_rule(delivery)) or delivery.max_attempts, delivery.max_attempts)


def _action(category):
    return categories()[category]["action"]


def failure_text(category, code):
    """Return the reason and action for a failure ``category`` as one paragraph."""
    entry = categories()[category or "unknown"]
    reason = entry["reason"].format(code=code or "none")
    return f"{reason} {entry['action']}"


def _portal_message(delivery):
    if delivery.read_at:
        return "Read in the Pet Portal."
    if delivery.chat_notification:
        return "In the Pet Portal inbox as a chat notification; not read yet."
    return "In the Pet Portal inbox."


def _pointer_message(delivery):
    if delivery.status in ("undelivered", "failed"):
        return "The Pet Portal notice text was blocked too."
    if delivery.status == "delivered":
        return "Pet Portal notice text delivered."
    return "Pet Portal notice text: " + IN_PROGRESS.get(delivery.status, delivery.status).lower()


def _notification_message(delivery):
    channel = delivery.channel
    noun = "email" if channel == "email" else "push notification"
    error = _error_text(channel, delivery.error_code)
    if delivery.status == "queued" and delivery.attempts:
        attempt = f"attempt {delivery.attempts + 1} of {delivery.max_attempts}"
        return f"A transient issue stopped the {noun} ({error}); retrying automatically ({attempt})."
    if delivery.status in NOTIFICATION_PROGRESS[channel]:
        return NOTIFICATION_PROGRESS[channel][delivery.status]
    attempts = "1 attempt" if delivery.attempts == 1 else f"{delivery.attempts} attempts"
    template = NOTIFICATION_FAILURES[channel].get(delivery.category)
    if template is None:
        return f"The {noun} was not sent ({error}). Contact support."
    return template.format(error=error, attempts=attempts)


def _error_text(channel, code):
    if not code or not code.isdigit():
        return {"connection": "no connection"}.get(code, code or "no error code")
    return f"{'SMTP' if channel == 'email' else 'HTTP'} {code}"
