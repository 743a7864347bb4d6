"""Queries behind the Pet Portal inbox: a pet parent's client records, threads and messages.

Each clinic keeps its own client record of a pet parent, and records with the same mobile
number belong to the same person. Whichever record signed in, the portal shows one thread per
record, so one per clinic.
"""

from dataclasses import dataclass
from datetime import datetime
from functools import cache
from typing import NamedTuple

from sqlalchemy import bindparam, func, literal_column, update
from sqlalchemy.engine import Row
from sqlalchemy.orm import aliased, joinedload

from portal.extensions import db
from portal.models import Attachment, Client, Clinic, Delivery, Message, utcnow
from portal.models.types import UTCDateTime


class ThreadClinic(NamedTuple):
    """The clinic of an inbox thread: its name, and its time zone for the local time."""

    id: int
    name: str
    timezone: str


class LatestMessage(NamedTuple):
    """The newest visible message of an inbox thread."""

    id: int
    direction: str
    body: str
    created_at: datetime
    has_attachments: bool


@dataclass(frozen=True)
class ThreadSummary:
    """One line of the inbox: a clinic's thread with its newest message and unread counts.

    ``latest`` is None for a thread without visible messages.
    """

    client_id: int
    clinic: ThreadClinic
    latest: LatestMessage | None
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


def _rows(statement, params):
    """Return the rows of ``statement``, which selects columns and no ORM entities.

    The rows go through the session's connection rather than the ORM, which halves the
    statement's Python overhead. Pending changes are flushed first, as the ORM would.
    """
    db.session.flush()
    return db.session.connection().execute(statement, params).all()


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
    return db.select(Message).where(_is_visible(utcnow()))


# The statements below are built once, with the time that decides which scheduled messages are
# due as a parameter.
_NOW = bindparam("now", type_=UTCDateTime())


def _is_visible(now):
    return ((Message.direction == "inbound") | _portal_copy(Delivery.id).is_not(None)) & _is_due(now)


def _is_due(now):
    return Message.send_at.is_(None) | (Message.send_at <= now)


# Portal copies and attachments are read by scalar subqueries, one index lookup per message. A join
# makes PostgreSQL's planner read the ends of both id indexes, slow while deleted rows await vacuum.
def _portal_copy(value):
    """Return ``value`` of the outer message's portal copy, or NULL when it has none."""
    return (
        db.select(value)
        .where(Delivery.message_id == Message.id, Delivery.channel == "portal")
        .scalar_subquery()
    )


def _limit(count):
    """Return ``count`` as a literal LIMIT, which lets PostgreSQL keep one plan for a prepared statement.

    PostgreSQL costs a generic plan without knowing a bound LIMIT's value, so it prices the walks
    these statements cut short as whole index scans and plans every execution anew instead.
    """
    return literal_column(str(int(count)))


def _has_attachments(message):
    # Unlike this subquery, an EXISTS may run as a hash of the whole table when the thread is long.
    first = db.select(Attachment.id).where(Attachment.message_id == message.id).limit(_limit(1)).scalar_subquery()
    return first.is_not(None)


def _unread_count(condition=None):
    """Return the number of due unread portal copies in the thread of the outer query's ``Client``."""
    # NOTE: each count looks up the portal copy of every message in the thread, so a thread of
    # tens of thousands of messages takes longer to count than with a join, which reads it once.
    unread = Delivery.read_at.is_(None) if condition is None else Delivery.read_at.is_(None) & condition
    return (
        db.select(func.count())
        .select_from(Message)
        .where(Message.client_id == Client.id, _is_due(_NOW), _portal_copy(unread))
        .correlate(Client)
        .scalar_subquery()
    )


@cache
def _summaries_statement():
    newest_id = (
        db.select(Message.id)
        .where(Message.client_id == Client.id, _is_visible(_NOW))
        .order_by(Message.id.desc())
        .limit(_limit(1))
        .correlate(Client)
        .scalar_subquery()
    )
    latest = aliased(Message, name="latest")
    return (
        db.select(
            Client.id.label("client_id"),
            Clinic.id.label("clinic_id"),
            Clinic.name.label("clinic_name"),
            Clinic.timezone,
            latest.id.label("latest_id"),
            latest.direction,
            latest.body,
            latest.created_at,
            _has_attachments(latest).label("has_attachments"),
            _unread_count().label("unread"),
            _unread_count(Delivery.chat_notification.is_(True)).label("unread_chat"),
        )
        .select_from(Client)
        .join(Clinic, Clinic.id == Client.clinic_id)
        .outerjoin(latest, latest.id == newest_id)
        .where(Client.mobile_number == bindparam("mobile_number"))
        .order_by(Client.id)
    )


def thread_summaries(client):
    """Return the person's threads, newest activity first, each with its unread counts.

    One statement reads every record with its clinic, its newest visible message and its unread
    counts, however many clinics the person has. A correlated subquery picks each thread's newest
    message, a short walk back along ``ix_messages_client_id_id`` on PostgreSQL and SQLite alike.
    """
    rows = _rows(_summaries_statement(), {"mobile_number": client.mobile_number, "now": utcnow()})
    summaries = []
    for row in rows:
        latest = None
        if row.latest_id is not None:
            # SQLite returns the attachment test as 0 or 1.
            has_attachments = bool(row.has_attachments)
            latest = LatestMessage(row.latest_id, row.direction, row.body, row.created_at, has_attachments)
        clinic = ThreadClinic(row.clinic_id, row.clinic_name, row.timezone)
        summaries.append(ThreadSummary(row.client_id, clinic, latest, row.unread, row.unread_chat))
    # Threads without messages go last; the rest by their newest message.
    summaries.sort(key=lambda s: (s.latest is not None, s.latest.id if s.latest else 0), reverse=True)
    return summaries


def unread_counts(client_ids):
    """Return ``{client_id: (unread, unread_chat_notifications)}`` for threads with unread messages."""
    params = {"client_ids": list(client_ids), "now": utcnow()}
    rows = _rows(_unread_counts_statement(), params)
    return {client_id: (unread, chat) for client_id, unread, chat in rows if unread}


@cache
def _unread_counts_statement():
    return db.select(
        Client.id, _unread_count(), _unread_count(Delivery.chat_notification.is_(True))
    ).where(Client.id.in_(bindparam("client_ids", expanding=True)))


def thread_messages(record, before=None, limit=50):
    """Return ``(messages, has_older)``: up to ``limit`` ThreadMessages of a thread, oldest first.

    ``before`` is a message id; only older messages are returned, for the "older messages" link.
    The read and chat state come from the portal copy, and attachments are read only for the
    messages that have some.
    """
    params = {"client_id": record.id, "now": utcnow()}
    if before is not None:
        params["before"] = before
    # One row more than a page shows whether older messages remain.
    rows = _rows(_thread_statement(before is not None, limit + 1), params)
    page = list(reversed(rows[:limit]))
    files = _attachments([row.id for row in page if row.has_attachments])
    messages = [
        ThreadMessage(
            id=row.id,
            direction=row.direction,
            body=row.body,
            created_at=row.created_at,
            unread=bool(row.unread),
            chat_notification=bool(row.chat_notification),
            attachments=files.get(row.id, ()),
        )
        for row in page
    ]
    return messages, len(rows) > limit


@cache
def _thread_statement(before, limit):
    statement = (
        db.select(
            Message.id,
            Message.direction,
            Message.body,
            Message.created_at,
            _portal_copy(Delivery.read_at.is_(None)).label("unread"),
            _portal_copy(Delivery.chat_notification).label("chat_notification"),
            _has_attachments(Message).label("has_attachments"),
        )
        .where(Message.client_id == bindparam("client_id"), _is_visible(_NOW))
        .order_by(Message.id.desc())
        .limit(_limit(limit))
    )
    if before:
        statement = statement.where(Message.id < bindparam("before"))
    return statement


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
