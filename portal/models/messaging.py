"""Messages, their per-channel deliveries and the raw provider event log."""

from sqlalchemy import ForeignKey, Index, String, Text, UniqueConstraint, text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from portal.extensions import db
from portal.models.types import UTCDateTime, utcnow

# Channels each get their own delivery row and their own job, so one never holds up another.
# "pointer" is the short SMS that links to the Pet Portal after a carrier filtered the text.
CHANNELS = ("sms", "pointer", "portal", "email", "push")
SMS_CHANNELS = ("sms", "pointer")

# Statuses only move forward along these ranks; every final status shares the top rank, so
# the first final status a delivery reaches is the one it keeps.
STATUS_RANK = {
    "queued": 0,
    "sending": 1,
    "accepted": 2,
    "sent": 3,
    "delivered": 4,
    "undelivered": 4,
    "failed": 4,
    "suppressed": 4,
    "unknown": 4,
}
FINAL_RANK = 4
FAILED_STATUSES = ("undelivered", "failed")
UNSETTLED_SQL = "status IN ('queued', 'sending', 'accepted', 'sent')"


class Message(db.Model):
    __tablename__ = "messages"
    __table_args__ = (
        Index("ix_messages_client_id_created_at", "client_id", "created_at"),
        # The Pet Portal inbox and thread pages walk a thread's messages back from the newest id.
        Index("ix_messages_client_id_id", "client_id", "id"),
        UniqueConstraint("clinic_id", "provider_message_id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    clinic_id: Mapped[int] = mapped_column(ForeignKey("clinics.id"), index=True)
    client_id: Mapped[int] = mapped_column(ForeignKey("clients.id"))
    direction: Mapped[str] = mapped_column(String(8), default="outbound")
    body: Mapped[str] = mapped_column(Text, default="")
    # Who started it: "admin" (a staff member), "api" (a PIMS) or "client" (an inbound reply).
    source: Mapped[str] = mapped_column(String(8))
    author_id: Mapped[int | None] = mapped_column(ForeignKey("staff_users.id"))
    # Set on inbound messages only, so a repeated inbound webhook stores nothing twice.
    provider_message_id: Mapped[str | None] = mapped_column(String(64))
    # Inbound only: the keyword it matched (opt_out, opt_in, help), or "review" when it mentions
    # stopping in other words and staff should read it.
    keyword: Mapped[str | None] = mapped_column(String(8))
    # When a scheduled message goes out; quiet hours can move it later than the requested time.
    send_at = mapped_column(UTCDateTime, nullable=True)
    created_at = mapped_column(UTCDateTime, default=utcnow)

    client = relationship("Client")
    clinic = relationship("Clinic")
    author = relationship("StaffUser")
    deliveries = relationship("Delivery", back_populates="message", order_by="Delivery.id")
    attachments = relationship("Attachment", back_populates="message", order_by="Attachment.position")

    def delivery(self, channel):
        """Return this message's delivery on ``channel``, or None."""
        return next((d for d in self.deliveries if d.channel == channel), None)


class Delivery(db.Model):
    __tablename__ = "deliveries"
    __table_args__ = (
        UniqueConstraint("message_id", "channel"),
        Index("ix_deliveries_provider_message", "provider", "provider_message_id"),
        Index("ix_deliveries_status_rank_updated_at", "status_rank", "updated_at"),
        # The reconciler's look-ups touch only deliveries still on their way, a few among millions.
        Index(
            "ix_deliveries_unsettled",
            "status",
            "id",
            postgresql_where=text(UNSETTLED_SQL),
            sqlite_where=text(UNSETTLED_SQL),
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    message_id: Mapped[int] = mapped_column(ForeignKey("messages.id"))
    channel: Mapped[str] = mapped_column(String(8))
    status: Mapped[str] = mapped_column(String(12), default="queued")
    status_rank: Mapped[int] = mapped_column(default=0)
    provider: Mapped[str | None] = mapped_column(String(16))
    provider_message_id: Mapped[str | None] = mapped_column(String(64))
    error_code: Mapped[str | None] = mapped_column(String(16))
    category: Mapped[str | None] = mapped_column(String(20))
    attempts: Mapped[int] = mapped_column(default=0)
    max_attempts: Mapped[int] = mapped_column(default=1)
    # A queued retry waits until this time; the reconciler leaves it alone until then.
    next_attempt_at = mapped_column(UTCDateTime, nullable=True)
    # Portal copies: set when the portal became the way the message reached the client.
    chat_notification: Mapped[bool] = mapped_column(default=False)
    read_at = mapped_column(UTCDateTime, nullable=True)
    claimed_at = mapped_column(UTCDateTime, nullable=True)
    final_at = mapped_column(UTCDateTime, nullable=True)
    created_at = mapped_column(UTCDateTime, default=utcnow)
    updated_at = mapped_column(UTCDateTime, default=utcnow)

    message = relationship("Message", back_populates="deliveries")

    @property
    def is_final(self):
        return self.status_rank >= FINAL_RANK


class ProviderEvent(db.Model):
    """One raw callback event from a provider, kept as received; rows are never updated."""

    __tablename__ = "provider_events"
    __table_args__ = (Index("ix_provider_events_provider_message", "provider", "provider_message_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    clinic_id: Mapped[int] = mapped_column(ForeignKey("clinics.id"), index=True)
    provider: Mapped[str] = mapped_column(String(16))
    kind: Mapped[str] = mapped_column(String(12))
    provider_message_id: Mapped[str | None] = mapped_column(String(64))
    delivery_id: Mapped[int | None] = mapped_column(ForeignKey("deliveries.id"), index=True)
    status: Mapped[str | None] = mapped_column(String(24))
    error_code: Mapped[str | None] = mapped_column(String(16))
    # What applying the event did: applied, duplicate (no forward move), unmatched, stored.
    outcome: Mapped[str] = mapped_column(String(12))
    payload: Mapped[str] = mapped_column(Text)
    received_at = mapped_column(UTCDateTime, default=utcnow)


class Attachment(db.Model):
    """A photo or video of a message, stored by Pawpost so nothing depends on the provider keeping it."""

    __tablename__ = "attachments"
    __table_args__ = (UniqueConstraint("message_id", "position"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    message_id: Mapped[int] = mapped_column(ForeignKey("messages.id"), index=True)
    position: Mapped[int] = mapped_column()
    content_type: Mapped[str | None] = mapped_column(String(100))
    size_bytes: Mapped[int | None] = mapped_column()
    # Path under the media directory; empty until the file is fetched.
    storage_key: Mapped[str | None] = mapped_column(String(200))
    # Where the provider offered the file; needed only until it is fetched.
    source_url: Mapped[str | None] = mapped_column(Text)
    fetched_at = mapped_column(UTCDateTime, nullable=True)
    created_at = mapped_column(UTCDateTime, default=utcnow)

    message = relationship("Message", back_populates="attachments")
