"""Facts Pawpost keeps about a number: SMS consent per clinic sender, and the line type."""

from sqlalchemy import ForeignKey, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from portal.extensions import db
from portal.models.types import UTCDateTime, utcnow

LINE_TYPES = ("mobile", "landline", "unknown")


class Consent(db.Model):
    """SMS consent of one client number towards one clinic sender number.

    An opt-out is learned from a STOP-style reply or a provider error, and only the client's
    own START-style reply clears it.
    """

    __tablename__ = "consents"
    __table_args__ = (UniqueConstraint("sender_number", "client_number"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    sender_number: Mapped[str] = mapped_column(String(20))
    client_number: Mapped[str] = mapped_column(String(20))
    opted_out: Mapped[bool] = mapped_column(default=False)
    # keyword, provider_error or client_opt_in: how the current state was learned.
    source: Mapped[str] = mapped_column(String(16))
    message_id: Mapped[int | None] = mapped_column(ForeignKey("messages.id"))
    updated_at = mapped_column(UTCDateTime, default=utcnow)


class PhoneLine(db.Model):
    """The line type of a number, learned from provider errors or a line-type lookup."""

    __tablename__ = "phone_lines"
    __table_args__ = (UniqueConstraint("number"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    number: Mapped[str] = mapped_column(String(20))
    line_type: Mapped[str] = mapped_column(String(10))
    # provider_error or lookup, with the code or lookup that reported it.
    source: Mapped[str] = mapped_column(String(16))
    detail: Mapped[str | None] = mapped_column(String(64))
    updated_at = mapped_column(UTCDateTime, default=utcnow)
