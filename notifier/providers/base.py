"""The interface every provider adapter implements."""

from dataclasses import dataclass, field
from datetime import datetime


@dataclass(frozen=True)
class OutboundText:
    to: str
    sender: str
    body: str
    media_urls: list = field(default_factory=list)
    # Where the provider should post status callbacks (Twilio sets this per message).
    status_callback: str | None = None
    # Opaque reference echoed in callbacks (Bandwidth's tag); carries ids, never personal data.
    tag: str | None = None
    # The provider drops the text if it cannot hand it on before this time.
    expires_at: datetime | None = None


@dataclass(frozen=True)
class SendResult:
    provider_message_id: str
    provider_status: str


class ProviderError(Exception):
    """The provider rejected the request; ``code`` is its error code or ``http-<status>``."""

    def __init__(self, code, http_status=None, detail=""):
        super().__init__(f"provider error {code} (HTTP {http_status})")
        self.code = str(code)
        self.http_status = http_status
        self.detail = detail


class ProviderUnreachable(Exception):
    """The request got no response, so the provider may or may not have the message."""
