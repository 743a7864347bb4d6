"""JSON shapes of the API's resources. The OpenAPI document describes the same shapes."""

from notifier.clients import listed_numbers
from notifier.explain import staff_message
from notifier.timeline import timeline


def iso(moment):
    """Return an aware datetime as RFC 3339 text in UTC, or None."""
    return moment.isoformat().replace("+00:00", "Z") if moment is not None else None


def message_json(message):
    return {
        "id": message.id,
        "client_id": message.client_id,
        "client_pims_id": message.client.pims_id,
        "direction": message.direction,
        "source": message.source,
        "body": message.body,
        "created_at": iso(message.created_at),
        "send_at": iso(message.send_at),
        "media": [
            {"position": a.position, "content_type": a.content_type, "size_bytes": a.size_bytes}
            for a in message.attachments
        ],
        "deliveries": [delivery_json(d) for d in message.deliveries],
        "timeline": [{"at": iso(at), "event": event} for at, event in timeline(message)],
    }


def delivery_json(delivery):
    return {
        "channel": delivery.channel,
        "status": delivery.status,
        "category": delivery.category,
        "error_code": delivery.error_code,
        "attempts": delivery.attempts,
        "staff_message": staff_message(delivery),
        "next_attempt_at": iso(delivery.next_attempt_at),
        "updated_at": iso(delivery.updated_at),
    }


def client_json(client):
    textable_number = client.mobile_number if client.textable else None
    return {
        "id": client.id,
        "pims_id": client.pims_id,
        "name": client.name,
        "textable_number": textable_number,
        "numbers": [
            {
                "number": listed["number"],
                "type": listed.get("type"),
                "extension": listed.get("extension"),
                "textable": listed["number"] == textable_number and not listed.get("extension"),
            }
            for listed in listed_numbers(client)
        ],
        "email": client.email,
        "email_verified": client.email_verified_at is not None,
        "preferences": {"email": client.email_enabled, "push": client.push_enabled},
        "created_at": iso(client.created_at),
        "updated_at": iso(client.pims_updated_at),
    }
