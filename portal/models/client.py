"""Pet parents (a clinic's clients) and their portal sign-in tokens."""

import hashlib
import secrets
from datetime import timedelta

from flask_login import UserMixin
from sqlalchemy import ForeignKey, String, Text, UniqueConstraint, true
from sqlalchemy.orm import Mapped, mapped_column, relationship

from portal.extensions import db
from portal.models.types import UTCDateTime, utcnow


class Client(UserMixin, db.Model):
    __tablename__ = "clients"
    __table_args__ = (UniqueConstraint("clinic_id", "mobile_number"), UniqueConstraint("clinic_id", "pims_id"))

    id: Mapped[int] = mapped_column(primary_key=True)
    clinic_id: Mapped[int] = mapped_column(ForeignKey("clinics.id"), index=True)
    name: Mapped[str] = mapped_column(String(120), default="")
    # E.164, normalised with the clinic's country as default. Indexed on its own because every
    # Pet Portal page finds the person's records at all clinics by this number.
    mobile_number: Mapped[str] = mapped_column(String(20), index=True)
    email: Mapped[str | None] = mapped_column(String(254))
    # The client's id in the clinic's practice-management system, and every number it lists
    # (JSON: [{"number", "type"}]); mobile_number is the one chosen for texts.
    pims_id: Mapped[str | None] = mapped_column(String(64))
    pims_numbers: Mapped[str | None] = mapped_column(Text)
    # False when the PIMS lists no number Pawpost may text. mobile_number then keeps the last
    # textable number (or, for a client that never had one, a listed number) so the record
    # still has its unique key, and no SMS is sent to it.
    textable: Mapped[bool] = mapped_column(default=True, server_default=true())
    # When the PIMS last wrote this record through the API.
    pims_updated_at = mapped_column(UTCDateTime, nullable=True)
    # Set when the client proved they read this address (a link or code sent there was used).
    email_verified_at = mapped_column(UTCDateTime, nullable=True)
    email_enabled: Mapped[bool] = mapped_column(default=False)
    push_enabled: Mapped[bool] = mapped_column(default=False)
    # Part of the session id: raising it on logout ends every session and remember cookie.
    session_version: Mapped[int] = mapped_column(default=1)
    created_at = mapped_column(UTCDateTime, default=utcnow)

    clinic = relationship("Clinic")

    def get_id(self):
        return f"client:{self.id}:{self.session_version}"

    @property
    def display_name(self):
        return self.name or "Client"


class PortalToken(db.Model):
    """A single-use, expiring link that signs one client in to the Pet Portal.

    Only a SHA-256 hash of the token is stored, so a copy of the database cannot be used to
    sign in.
    """

    __tablename__ = "portal_tokens"
    __table_args__ = (UniqueConstraint("token_hash"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64))
    client_id: Mapped[int] = mapped_column(ForeignKey("clients.id"), index=True)
    message_id: Mapped[int | None] = mapped_column(ForeignKey("messages.id"))
    purpose: Mapped[str] = mapped_column(String(16))
    expires_at = mapped_column(UTCDateTime)
    used_at = mapped_column(UTCDateTime, nullable=True)
    created_at = mapped_column(UTCDateTime, default=utcnow)

    client = relationship("Client")
    message = relationship("Message")

    @staticmethod
    def hash(raw):
        return hashlib.sha256(raw.encode()).hexdigest()

    @classmethod
    def issue(cls, client_id, message_id, purpose, days):
        """Create a token row and return ``(row, raw_token)``; the raw value goes only in the link."""
        raw = secrets.token_urlsafe(24)
        row = cls(
            token_hash=cls.hash(raw),
            client_id=client_id,
            message_id=message_id,
            purpose=purpose,
            expires_at=utcnow() + timedelta(days=days),
        )
        return row, raw
