"""Clinics, their staff accounts and their API tokens."""

import hashlib
import secrets

from flask_login import UserMixin
from sqlalchemy import ForeignKey, Index, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship
from werkzeug.security import check_password_hash, generate_password_hash

from portal.extensions import db
from portal.models.types import UTCDateTime, utcnow

PROVIDERS = ("twilio", "bandwidth")


class Clinic(db.Model):
    __tablename__ = "clinics"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(120))
    provider: Mapped[str] = mapped_column(String(16))
    sender_number: Mapped[str] = mapped_column(String(20))
    country: Mapped[str] = mapped_column(String(2), default="US")
    fallback_enabled: Mapped[bool] = mapped_column(default=False)
    mms_enabled: Mapped[bool] = mapped_column(default=False)
    # Twilio long codes reply to STOP, START and HELP themselves, so Pawpost then only records them.
    provider_handles_keywords: Mapped[bool] = mapped_column(default=False)
    help_text: Mapped[str | None] = mapped_column(String(300))
    # IANA time zone of the clinic; quiet hours are local wall-clock minutes after midnight.
    timezone: Mapped[str] = mapped_column(String(64), default="America/New_York")
    quiet_start_minute: Mapped[int | None] = mapped_column()
    quiet_end_minute: Mapped[int | None] = mapped_column()
    # Twilio credentials: the auth token also signs Twilio's callbacks to us.
    twilio_account_sid: Mapped[str | None] = mapped_column(String(64))
    twilio_auth_token: Mapped[str | None] = mapped_column(String(128))
    # Bandwidth credentials, and the basic-auth pair set on the clinic's messaging application
    # for the callbacks Bandwidth sends us.
    bandwidth_account_id: Mapped[str | None] = mapped_column(String(64))
    bandwidth_username: Mapped[str | None] = mapped_column(String(128))
    bandwidth_password: Mapped[str | None] = mapped_column(String(128))
    bandwidth_application_id: Mapped[str | None] = mapped_column(String(64))
    webhook_username: Mapped[str | None] = mapped_column(String(64))
    webhook_password: Mapped[str | None] = mapped_column(String(128))
    created_at = mapped_column(UTCDateTime, default=utcnow)

    staff = relationship("StaffUser", back_populates="clinic")

    @staticmethod
    def default_fallback(provider):
        """Return the fallback policy a new clinic on ``provider`` starts with."""
        return provider == "bandwidth"

    @staticmethod
    def default_handles_keywords(provider):
        """Return whether ``provider`` replies to STOP, START and HELP itself (Twilio long codes do)."""
        return provider == "twilio"

    @property
    def help_reply(self):
        """Return the reply to HELP or INFO: the clinic's own text, or one naming the clinic."""
        return self.help_text or (
            f"{self.name}: appointment and care messages. Reply STOP to opt out, START to opt back in."
        )


class StaffUser(UserMixin, db.Model):
    __tablename__ = "staff_users"

    id: Mapped[int] = mapped_column(primary_key=True)
    clinic_id: Mapped[int | None] = mapped_column(ForeignKey("clinics.id"), index=True)
    email: Mapped[str] = mapped_column(String(254), unique=True)
    name: Mapped[str] = mapped_column(String(120))
    password_hash: Mapped[str] = mapped_column(String(256))
    # Operators run Pawpost and see every clinic; clinic staff have a clinic_id.
    is_operator: Mapped[bool] = mapped_column(default=False)
    # Clinic admins manage their clinic's API tokens.
    is_clinic_admin: Mapped[bool] = mapped_column(default=False)
    # Repeated wrong passwords lock the account until this time.
    failed_logins: Mapped[int] = mapped_column(default=0)
    locked_until = mapped_column(UTCDateTime, nullable=True)
    created_at = mapped_column(UTCDateTime, default=utcnow)

    clinic = relationship("Clinic", back_populates="staff")

    def get_id(self):
        return f"staff:{self.id}"

    def set_password(self, password):
        self.password_hash = generate_password_hash(password)

    def check_password(self, password):
        return check_password_hash(self.password_hash, password)


class ApiToken(db.Model):
    """A bearer token a clinic's practice-management system uses; only its hash is stored."""

    __tablename__ = "api_tokens"
    __table_args__ = (UniqueConstraint("token_hash"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    clinic_id: Mapped[int] = mapped_column(ForeignKey("clinics.id"), index=True)
    name: Mapped[str] = mapped_column(String(80))
    token_hash: Mapped[str] = mapped_column(String(64))
    created_at = mapped_column(UTCDateTime, default=utcnow)
    revoked_at = mapped_column(UTCDateTime, nullable=True)
    last_used_at = mapped_column(UTCDateTime, nullable=True)
    note: Mapped[str | None] = mapped_column(Text)

    clinic = relationship("Clinic")

    @staticmethod
    def hash(raw):
        return hashlib.sha256(raw.encode()).hexdigest()

    @classmethod
    def issue(cls, clinic, name, raw=None):
        """Create a token for ``clinic`` and return ``(row, raw_token)``; the raw value is shown once."""
        raw = raw or "pp_" + secrets.token_urlsafe(32)
        return cls(clinic=clinic, name=name, token_hash=cls.hash(raw)), raw


class IdempotencyKey(db.Model):
    """The first response to an API request sent with an ``Idempotency-Key`` header, replayed on retries."""

    __tablename__ = "idempotency_keys"
    __table_args__ = (UniqueConstraint("clinic_id", "key"), Index("ix_idempotency_keys_created_at", "created_at"))

    id: Mapped[int] = mapped_column(primary_key=True)
    clinic_id: Mapped[int] = mapped_column(ForeignKey("clinics.id"))
    key: Mapped[str] = mapped_column(String(255))
    # SHA-256 of the method, path and body, so a different request with a reused key is refused.
    request_hash: Mapped[str] = mapped_column(String(64))
    status_code: Mapped[int | None] = mapped_column()
    response_body: Mapped[str | None] = mapped_column(Text)
    created_at = mapped_column(UTCDateTime, default=utcnow)
