"""Helpers shared by the test modules: API sends, rows in a known state, waits and form tokens."""

import re

from flask.testing import FlaskClient

from conftest import wait_for
from notifier import status_queue
from portal.extensions import db
from portal.models import FINAL_RANK, STATUS_RANK, Delivery, Message, ProviderEvent, utcnow

BODY = "Rex is due for his rabies booster. Reply to book a visit."
CSRF_PATTERN = re.compile(rb'name="csrf_token"[^>]*value="([^"]+)"')


def bearer(token):
    return {"Authorization": f"Bearer {token}"}


def send_via_api(client, token, to, body=BODY):
    """Send a message through the API and return its id."""
    response = client.post("/api/v1/messages", json={"to": to, "body": body}, headers=bearer(token))
    assert response.status_code == 201, response.get_json()
    return response.get_json()["id"]


def delivery(message_id, channel):
    """Return the message's delivery on ``channel`` as stored now, or None."""
    db.session.rollback()
    return db.session.execute(
        db.select(Delivery).where(Delivery.message_id == message_id, Delivery.channel == channel)
    ).scalar_one_or_none()


def wait_final(message_id, channel):
    """Wait until the delivery on ``channel`` has a final status and return it."""

    def delivery_is_final():
        row = delivery(message_id, channel)
        return row is not None and row.is_final

    wait_for(delivery_is_final)
    return delivery(message_id, channel)


def wait_for_callbacks(live):
    """Wait until the sandbox has posted every callback it will post for its messages."""

    def callbacks_finished():
        deliveries = live.carrier.all_deliveries()
        return all(d.callbacks_finished for d in deliveries)

    wait_for(callbacks_finished)


def outbound_sms(clinic, client, status="accepted", attempts=1, provider_message_id=None):
    """Store an outbound message with its SMS delivery in ``status`` and its portal copy."""
    message = Message(clinic_id=clinic.id, client_id=client.id, body=BODY, source="api")
    sms = Delivery(
        message=message,
        channel="sms",
        provider=clinic.provider,
        status=status,
        status_rank=STATUS_RANK[status],
        attempts=attempts,
        provider_message_id=provider_message_id,
    )
    portal = Delivery(
        message=message, channel="portal", status="delivered", status_rank=FINAL_RANK, final_at=utcnow()
    )
    db.session.add_all([message, sms, portal])
    db.session.commit()
    return sms


def provider_events():
    """Return every provider event row, oldest first."""
    db.session.rollback()
    return db.session.execute(db.select(ProviderEvent).order_by(ProviderEvent.id)).scalars().all()


def count(model, *conditions):
    """Return how many rows of ``model`` match ``conditions``."""
    db.session.rollback()
    statement = db.select(db.func.count()).select_from(model)
    if conditions:
        statement = statement.where(*conditions)
    return db.session.execute(statement).scalar_one()


def csrf_token(html):
    """Return the CSRF token of the first form in an HTML page."""
    return CSRF_PATTERN.search(html).group(1).decode()


class ApplyingClient(FlaskClient):
    """A test client that applies queued status events after each webhook call, as a worker would."""

    def open(self, *args, **kwargs):
        response = super().open(*args, **kwargs)
        path = args[0] if args and isinstance(args[0], str) else kwargs.get("path", "")
        if path.startswith("/webhooks/"):
            apply_queued(self.application)
        return response


def apply_queued(app):
    """Apply every status event queued in Redis, in this thread; fail when some are left."""
    with app.app_context():
        assert status_queue.drain(consumer="tests"), "Queued status events were left unapplied."


STATUS_EVENT_MODES = ["applied in the request", "queued"]


def use_status_event_mode(app, monkeypatch, mode):
    """Apply status callbacks in the request, or queue them and apply them after each webhook call."""
    queued = mode == "queued"
    monkeypatch.setitem(app.config, "PAWPOST_QUEUE_STATUS_EVENTS", queued)
    if queued:
        monkeypatch.setattr(app, "test_client_class", ApplyingClient)

