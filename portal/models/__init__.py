"""Database models, split by subject; import them from here."""

from portal.models.clinic import PROVIDERS, ApiToken, Clinic, IdempotencyKey, StaffUser
from portal.models.client import Client, PortalToken
from portal.models.consent import LINE_TYPES, Consent, PhoneLine
from portal.models.portal_access import LoginCode, PushSubscription
from portal.models.stats import Escalation, SmsClosedDay, SmsDailyStat, SmsFleetHourlyStat, SmsHourlyStat, SmsRollupMark
from portal.models.messaging import (
    CHANNELS,
    FAILED_STATUSES,
    FINAL_RANK,
    SMS_CHANNELS,
    STATUS_RANK,
    Attachment,
    Delivery,
    Message,
    ProviderEvent,
)
from portal.models.types import utcnow

__all__ = [
    "PROVIDERS", "ApiToken", "IdempotencyKey", "Attachment", "Consent", "LINE_TYPES", "PhoneLine", "LoginCode", "PushSubscription", "Escalation", "SmsClosedDay", "SmsDailyStat", "SmsFleetHourlyStat", "SmsHourlyStat", "SmsRollupMark", "Clinic", "StaffUser", "Client", "PortalToken", "CHANNELS",
    "FAILED_STATUSES", "FINAL_RANK", "SMS_CHANNELS", "STATUS_RANK", "Delivery", "Message",
    "ProviderEvent", "utcnow",
]
