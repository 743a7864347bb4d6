"""Queries behind the Pet Portal inbox: a pet parent's client records, threads and messages.

Each clinic keeps its own client record of a pet parent, and records with the same mobile
number belong to the same person. Whichever record signed in, the portal shows one thread per
record, so one per clinic.
"""

from dataclasses import dataclass

from sqlalchemy import case, func, update
from sqlalchemy.orm import selectinload

from portal.extensions import db
from portal.models import Client, Delivery, Message, utcnow


@dataclass(frozen=True)
class ThreadSummary:
    """One line of the inbox: a clinic's thread with its newest message and unread counts."""

    client: Client
    latest: Message | None
    unread: int
    unread_chat: int


def person_client_ids(client):
    """Return a select of the ids of every client record that shares ``client``'s mobile number."""
    return db.select(Client.id).where(Client.mobile_number == client.mobile_number)


def person_clients(client):
    """Return every client record that shares ``client``'s mobile number, oldest first."""
    return (
        db.session.execute(
            db.select(Client)
            .where(Client.mobile_number == client.mobile_number)
            .options(selectinload(Client.clinic))
            .order_by(Client.id)
        )
        .scalars()
        .all()
    )


def visible_messages():
    """Return a select of the messages a pet parent may see: their own replies and every portal copy.

    A scheduled message stays hidden until its send time, like its text.
    """
    return (
        db.select(Message)
        .outerjoin(Delivery, (Delivery.message_id == Message.id) & (Delivery.channel == "portal"))
        .where((Message.direction == "inbound") | (Delivery.id.is_not(None)))
        .where(_is_due())
    )


def _is_due():
    return Message.send_at.is_(None) | (Message.send_at <= utcnow())


def thread_summaries(client):
    """Return the person's threads, newest activity first, each with its unread counts."""
    records = person_clients(client)
    counts = unread_counts([record.id for record in records])
    summaries = []
    for record in records:
        latest = db.session.execute(
            visible_messages()
            .where(Message.client_id == record.id)
            .options(selectinload(Message.attachments), selectinload(Message.deliveries))
            .order_by(Message.id.desc())
            .limit(1)
        ).scalar_one_or_none()
        unread, unread_chat = counts.get(record.id, (0, 0))
        summaries.append(ThreadSummary(record, latest, unread, unread_chat))
    # Threads without messages go last; the rest by their newest message.
    summaries.sort(key=lambda s: (s.latest is not None, s.latest.id if s.latest else 0), reverse=True)
    return summaries


def unread_counts(client_ids):
    """Return ``{client_id: (unread, unread_chat_notifications)}`` for threads with unread messages."""
    rows = db.session.execute(
        db.select(
            Message.client_id,
            func.count(Delivery.id),
            func.sum(case((Delivery.chat_notification.is_(True), 1), else_=0)),
        )
        .join(Delivery, Delivery.message_id == Message.id)
        .where(Message.client_id.in_(client_ids), Delivery.channel == "portal", Delivery.read_at.is_(None))
        .where(_is_due())
        .group_by(Message.client_id)
    ).all()
    return {client_id: (unread, int(chat or 0)) for client_id, unread, chat in rows}


def thread_messages(record, before=None, limit=50):
    """Return ``(messages, has_older)``: up to ``limit`` messages of a thread, oldest first.

    ``before`` is a message id; only older messages are returned, for the "older messages" link.
    """
    statement = (
        visible_messages()
        .where(Message.client_id == record.id)
        .options(selectinload(Message.attachments), selectinload(Message.deliveries))
        .order_by(Message.id.desc())
        .limit(limit + 1)
    )
    if before is not None:
        statement = statement.where(Message.id < before)
    rows = db.session.execute(statement).scalars().all()
    return list(reversed(rows[:limit])), len(rows) > limit


def mark_read(message_ids):
    """Set ``read_at`` on the unread portal copies of ``message_ids``; staff see it as read."""
    db.session.execute(
        update(Delivery)
        .where(Delivery.message_id.in_(message_ids), Delivery.channel == "portal", Delivery.read_at.is_(None))
        .values(read_at=utcnow())
        .execution_options(synchronize_session=False)
    )
