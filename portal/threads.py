"""Queries behind the Pet Portal inbox: a pet parent's client records, threads and messages.

Each clinic keeps its own client record of a pet parent, and records with the same mobile
number belong to the same person. Whichever record signed in, the portal shows one thread per
record, so one per clinic.
"""

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import case, exists, func, update
from sqlalchemy.engine import Row
from sqlalchemy.orm import aliased, joinedload, selectinload

from portal.extensions import db
from portal.models import Attachment, Client, Delivery, Message, utcnow


@dataclass(frozen=True)
class ThreadSummary:
    """One line of the inbox: a clinic's thread with its newest message and unread counts."""

    client: Client
    latest: Message | None
    unread: int
    unread_chat: int


@dataclass(frozen=True)
class ThreadMessage:
    """A message as the thread page shows it, with the read and chat state of its portal copy.

    ``unread`` and ``chat_notification`` are False for a message without a portal copy (a reply).
    """

    id: int
    direction: str
    body: str
    created_at: datetime
    unread: bool
    chat_notification: bool
    # Rows with ``id``, ``content_type`` and ``storage_key``, in position order.
    attachments: tuple[Row, ...]


def person_client_ids(client):
    """Return a select of the ids of every client record that shares ``client``'s mobile number."""
    return db.select(Client.id).where(Client.mobile_number == client.mobile_number)


def person_clients(client):
    """Return every client record that shares ``client``'s mobile number, oldest first."""
    return (
        db.session.execute(
            db.select(Client)
            .where(Client.mobile_number == client.mobile_number)
            .options(joinedload(Client.clinic))
            .order_by(Client.id)
        )
        .scalars()
        .all()
    )


def visible_messages():
    """Return a select of the messages a pet parent may see: their own replies and every portal copy.

    A scheduled message stays hidden until its send time, like its text.
    """
    return _only_visible(db.select(Message))


def _only_visible(statement):
    # The outer join brings each message's portal copy, whose columns callers may select too.
    return (
        statement.outerjoin(Delivery, (Delivery.message_id == Message.id) & (Delivery.channel == "portal"))
        .where((Message.direction == "inbound") | (Delivery.id.is_not(None)))
        .where(_is_due())
    )


def _is_due():
    return Message.send_at.is_(None) | (Message.send_at <= utcnow())


def thread_summaries(client):
    """Return the person's threads, newest activity first, each with its unread counts.

    One statement reads every record with its clinic, its newest visible message and its unread
    counts, and one more the attachments of those messages, however many clinics the person has.
    A correlated subquery picks each thread's newest message, a short walk back along
    ``ix_messages_client_id_id`` on PostgreSQL and SQLite alike.
    """
    latest = aliased(Message, name="latest")
    newest_id = (
        _only_visible(db.select(Message.id))
        .where(Message.client_id == Client.id)
        .order_by(Message.id.desc())
        .limit(1)
        .correlate(Client)
        .scalar_subquery()
    )
    counts = _unread_counts_select().where(Message.client_id.in_(person_client_ids(client))).subquery()
    rows = db.session.execute(
        db.select(Client, latest, counts.c.unread, counts.c.unread_chat)
        .select_from(Client)
        .outerjoin(latest, latest.id == newest_id)
        .outerjoin(counts, counts.c.client_id == Client.id)
        .where(Client.mobile_number == client.mobile_number)
        .options(joinedload(Client.clinic), selectinload(latest.attachments))
        .order_by(Client.id)
    ).all()
    summaries = [
        ThreadSummary(record, message, int(unread or 0), int(unread_chat or 0))
        for record, message, unread, unread_chat in rows
    ]
    # Threads without messages go last; the rest by their newest message.
    summaries.sort(key=lambda s: (s.latest is not None, s.latest.id if s.latest else 0), reverse=True)
    return summaries


def unread_counts(client_ids):
    """Return ``{client_id: (unread, unread_chat_notifications)}`` for threads with unread messages."""
    rows = db.session.execute(_unread_counts_select().where(Message.client_id.in_(client_ids))).all()
    return {client_id: (unread, int(chat or 0)) for client_id, unread, chat in rows}


def _unread_counts_select():
    return (
        db.select(
            Message.client_id,
            func.count(Delivery.id).label("unread"),
            func.sum(case((Delivery.chat_notification.is_(True), 1), else_=0)).label("unread_chat"),
        )
        .join(Delivery, Delivery.message_id == Message.id)
        .where(Delivery.channel == "portal", Delivery.read_at.is_(None))
        .where(_is_due())
        .group_by(Message.client_id)
    )


def thread_messages(record, before=None, limit=50):
    """Return ``(messages, has_older)``: up to ``limit`` ThreadMessages of a thread, oldest first.

    ``before`` is a message id; only older messages are returned, for the "older messages" link.
    The portal copy comes from the visibility join itself, and attachments are read only for the
    messages that have some.
    """
    has_attachments = exists().where(Attachment.message_id == Message.id)
    statement = (
        _only_visible(
            db.select(
                Message.id,
                Message.direction,
                Message.body,
                Message.created_at,
                Delivery.id.label("portal_id"),
                Delivery.read_at,
                Delivery.chat_notification,
                has_attachments.label("has_attachments"),
            )
        )
        .where(Message.client_id == record.id)
        .order_by(Message.id.desc())
        .limit(limit + 1)
    )
    if before is not None:
        statement = statement.where(Message.id < before)
    rows = db.session.execute(statement).all()
    page = list(reversed(rows[:limit]))
    files = _attachments([row.id for row in page if row.has_attachments])
    messages = [
        ThreadMessage(
            id=row.id,
            direction=row.direction,
            body=row.body,
            created_at=row.created_at,
            unread=row.portal_id is not None and row.read_at is None,
            chat_notification=row.portal_id is not None and bool(row.chat_notification),
            attachments=files.get(row.id, ()),
        )
        for row in page
    ]
    return messages, len(rows) > limit


def _attachments(message_ids):
    """Return ``{message_id: (attachment rows in position order)}`` for ``message_ids``."""
    if not message_ids:
        return {}
    rows = db.session.execute(
        db.select(Attachment.id, Attachment.message_id, Attachment.content_type, Attachment.storage_key)
        .where(Attachment.message_id.in_(message_ids))
        .order_by(Attachment.message_id, Attachment.position)
    ).all()
    grouped = {}
    for row in rows:
        grouped[row.message_id] = grouped.get(row.message_id, ()) + (row,)
    return grouped


def mark_read(message_ids):
    """Set ``read_at`` on the unread portal copies of ``message_ids``; staff see it as read."""
    db.session.execute(
        update(Delivery)
        .where(Delivery.message_id.in_(message_ids), Delivery.channel == "portal", Delivery.read_at.is_(None))
        .values(read_at=utcnow())
        .execution_options(synchronize_session=False)
    )
