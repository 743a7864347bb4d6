"""Pet Portal access: one-time sign-in codes and Web Push subscriptions."""

import hashlib

from sqlalchemy import ForeignKey, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from portal.extensions import db
from portal.models.types import UTCDateTime, utcnow


class LoginCode(db.Model):
    """A short one-time code sent to a client's verified email address or phone; only its hash is stored."""

    __tablename__ = "login_codes"

    id: Mapped[int] = mapped_column(primary_key=True)
    client_id: Mapped[int] = mapped_column(ForeignKey("clients.id"), index=True)
    # email or sms
    channel: Mapped[str] = mapped_column(String(8))
    code_hash: Mapped[str] = mapped_column(String(64))
    failed_attempts: Mapped[int] = mapped_column(default=0)
    expires_at = mapped_column(UTCDateTime)
    used_at = mapped_column(UTCDateTime, nullable=True)
    created_at = mapped_column(UTCDateTime, default=utcnow)

    client = relationship("Client")

    @staticmethod
    def hash(client_id, code):
        # The client id salts the hash, so equal codes of two clients never share a hash.
        return hashlib.sha256(f"{client_id}:{code}".encode()).hexdigest()


class PushSubscription(db.Model):
    """A browser's Web Push subscription for one client on one device."""

    __tablename__ = "push_subscriptions"
    __table_args__ = (UniqueConstraint("endpoint"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    client_id: Mapped[int] = mapped_column(ForeignKey("clients.id"), index=True)
    endpoint: Mapped[str] = mapped_column(Text)
    p256dh: Mapped[str] = mapped_column(String(200))
    auth: Mapped[str] = mapped_column(String(100))
    user_agent: Mapped[str | None] = mapped_column(String(200))
    created_at = mapped_column(UTCDateTime, default=utcnow)
    last_success_at = mapped_column(UTCDateTime, nullable=True)

    client = relationship("Client")
