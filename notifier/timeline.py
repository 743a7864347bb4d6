"""The story of one outbound message, for staff: queued, sent, delivered or failed, fallback, retries, read."""

from portal.extensions import db
from portal.models import ProviderEvent

CHANNEL_NAMES = {"sms": "Text", "pointer": "Pet Portal notice text", "email": "Email", "push": "Push notification"}


def timeline(message):
    """Return ``[(time, sentence)]`` for ``message``, oldest first."""
    entries = [(message.created_at, "Queued to send.")]
    deliveries = {d.id: d for d in message.deliveries}
    for delivery in message.deliveries:
        name = CHANNEL_NAMES.get(delivery.channel)
        if delivery.channel == "pointer":
            entries.append((delivery.created_at, "Carrier filtered the text; the message became a Pet Portal chat notification and a notice text was queued."))
        if delivery.channel == "portal" and delivery.read_at:
            entries.append((delivery.read_at, "Read in the Pet Portal."))
        if name and delivery.attempts > 1:
            entries.append((delivery.claimed_at, f"{name}: attempt {delivery.attempts} started."))
        if name and delivery.status == "suppressed":
            entries.append((delivery.final_at, f"{name}: not sent ({(delivery.category or '').replace('_', ' ')})."))
    events = db.session.execute(
        db.select(ProviderEvent)
        .where(ProviderEvent.delivery_id.in_(deliveries), ProviderEvent.outcome == "applied")
        .order_by(ProviderEvent.received_at, ProviderEvent.id)
    ).scalars()
    for event in events:
        name = CHANNEL_NAMES.get(deliveries[event.delivery_id].channel, "Text")
        code = f" (error {event.error_code})" if event.error_code else ""
        entries.append((event.received_at, f"{name}: provider reported {event.status}{code}."))
    return sorted((entry for entry in entries if entry[0] is not None), key=lambda entry: entry[0])
