"""SMS outcome counts per clinic, by hour as texts settle and by day once a day is over, and escalations."""

from sqlalchemy import ForeignKey, Index, SmallInteger, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from portal.extensions import db
from portal.models.types import UTCDateTime, utcnow

OUTCOMES = ("delivered", "failed", "suppressed", "unknown")
STRIPES = 16


class SmsHourlyStat(db.Model):
    """How many of a clinic's texts settled in one hour with one outcome and failure category.

    The dashboard reads these rows instead of scanning messages, so its cost grows with the
    number of hours shown, not with the number of texts sent.
    """

    __tablename__ = "sms_hourly_stats"
    __table_args__ = (
        UniqueConstraint("clinic_id", "hour", "outcome", "category", "stripe"),
        Index("ix_sms_hourly_stats_hour", "hour"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    clinic_id: Mapped[int] = mapped_column(ForeignKey("clinics.id"))
    hour = mapped_column(UTCDateTime)
    outcome: Mapped[str] = mapped_column(String(10))
    # Empty for delivered and unknown outcomes.
    category: Mapped[str] = mapped_column(String(20), default="")
    # A clinic's texts settle into STRIPES rows per hour, outcome and category, chosen by
    # delivery id, so that concurrent status callbacks do not all wait for one row's lock.
    # Readers sum over every stripe.
    stripe: Mapped[int] = mapped_column(SmallInteger, default=0, server_default="0")
    count: Mapped[int] = mapped_column(default=0)


class SmsDailyStat(db.Model):
    """The sum of a clinic's hourly rows for one UTC day, outcome and failure category.

    Rows are written once, when the day is closed (see ``SmsClosedDay``), so the dashboard's
    7-day and 30-day windows add up one row per day instead of 24.
    """

    __tablename__ = "sms_daily_stats"
    __table_args__ = (
        UniqueConstraint("clinic_id", "day", "outcome", "category"),
        Index("ix_sms_daily_stats_day", "day"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    clinic_id: Mapped[int] = mapped_column(ForeignKey("clinics.id"))
    # Midnight UTC at the start of the day.
    day = mapped_column(UTCDateTime)
    outcome: Mapped[str] = mapped_column(String(10))
    category: Mapped[str] = mapped_column(String(20), default="")
    count: Mapped[int] = mapped_column(default=0)


class SmsClosedDay(db.Model):
    """A UTC day whose hourly rows, for every clinic, have been summed into ``sms_daily_stats``."""

    __tablename__ = "sms_closed_days"

    day = mapped_column(UTCDateTime, primary_key=True)
    closed_at = mapped_column(UTCDateTime, default=utcnow)


class SmsFleetHourlyStat(db.Model):
    """The sum of every clinic's hourly rows for one closed hour, outcome and failure category.

    The operators' figures across all clinics read these, one row per hour instead of one per
    clinic and hour. ``SmsRollupMark`` records up to which hour they are written.
    """

    __tablename__ = "sms_fleet_hourly_stats"
    __table_args__ = (UniqueConstraint("hour", "outcome", "category"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    hour = mapped_column(UTCDateTime)
    outcome: Mapped[str] = mapped_column(String(10))
    category: Mapped[str] = mapped_column(String(20), default="")
    count: Mapped[int] = mapped_column(default=0)


class SmsRollupMark(db.Model):
    """A rollup's progress: every period before ``until`` has been summed."""

    __tablename__ = "sms_rollup_marks"

    name: Mapped[str] = mapped_column(String(40), primary_key=True)
    until = mapped_column(UTCDateTime)


class Escalation(db.Model):
    """A clinic's request to escalate persistent carrier filtering, with the figures at that moment."""

    __tablename__ = "escalations"

    id: Mapped[int] = mapped_column(primary_key=True)
    clinic_id: Mapped[int] = mapped_column(ForeignKey("clinics.id"), index=True)
    staff_id: Mapped[int] = mapped_column(ForeignKey("staff_users.id"))
    # JSON: failure rates and counts by category when the escalation was made.
    figures: Mapped[str] = mapped_column(Text)
    note: Mapped[str | None] = mapped_column(String(500))
    created_at = mapped_column(UTCDateTime, default=utcnow)

    staff = relationship("StaffUser")
    clinic = relationship("Clinic")
