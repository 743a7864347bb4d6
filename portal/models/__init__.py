"""Database models, split by subject; import them from here."""

from portal.models.clinic import PROVIDERS, ApiToken, Clinic, StaffUser
from portal.models.client import Client, PortalToken
from portal.models.messaging import (
    CHANNELS,
    FAILED_STATUSES,
    FINAL_RANK,
    SMS_CHANNELS,
    STATUS_RANK,
    Delivery,
    Message,
    ProviderEvent,
)
from portal.models.types import utcnow

__all__ = [
    "PROVIDERS", "ApiToken", "Clinic", "StaffUser", "Client", "PortalToken", "CHANNELS",
    "FAILED_STATUSES", "FINAL_RANK", "SMS_CHANNELS", "STATUS_RANK", "Delivery", "Message",
    "ProviderEvent", "utcnow",
]
