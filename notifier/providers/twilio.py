"""Twilio adapter on the official ``twilio`` SDK."""

from datetime import datetime, timezone

import requests
from twilio.base.exceptions import TwilioException, TwilioRestException
from twilio.http.http_client import TwilioHttpClient
from twilio.rest import Client

from notifier.providers.base import ProviderError, ProviderUnreachable, SendResult


class TwilioProvider:
    name = "twilio"

    def __init__(self, account_sid, auth_token, sandbox_url=None, timeout=15):
        http_client = TwilioHttpClient(pool_connections=True, timeout=timeout)
        self.client = Client(account_sid, auth_token, http_client=http_client)
        if sandbox_url:
            # The SDK builds every Messages URL from this base, so the sandbox gets the real requests.
            self.client.api.base_url = sandbox_url.rstrip("/")

    def send(self, text):
        """Create the message at Twilio and return its SID and initial status."""
        params = {"to": text.to, "from_": text.sender, "body": text.body}
        if text.media_urls:
            params["media_url"] = list(text.media_urls)
        if text.status_callback:
            params["status_callback"] = text.status_callback
        if text.expires_at is not None:
            params["validity_period"] = _validity_seconds(text.expires_at)
        try:
            message = self.client.messages.create(**params)
        except TwilioRestException as exc:
            raise ProviderError(exc.code or f"http-{exc.status}", exc.status, exc.msg) from exc
        except TwilioException as exc:
            # Replies in the RFC 9457 shape raise TwilioServiceException, not TwilioRestException.
            raise _service_error(exc) from exc
        except requests.RequestException as exc:
            raise ProviderUnreachable(type(exc).__name__) from exc
        return SendResult(message.sid, message.status)

    def fetch_status(self, provider_message_id):
        """Return ``(status, error_code)`` of a message as Twilio reports it now."""
        try:
            message = self.client.messages(provider_message_id).fetch()
        except TwilioRestException as exc:
            raise ProviderError(exc.code or f"http-{exc.status}", exc.status, exc.msg) from exc
        except requests.RequestException as exc:
            raise ProviderUnreachable(type(exc).__name__) from exc
        code = str(message.error_code) if message.error_code else None
        return message.status, code


def _validity_seconds(expires_at):
    # Twilio accepts a validity period of 1 to 36000 seconds.
    remaining = int((expires_at - datetime.now(timezone.utc)).total_seconds())
    return max(1, min(remaining, 36000))


def _service_error(exc):
    status = getattr(exc, "status", None)
    code = getattr(exc, "code", None) or (f"http-{status}" if status else "http-unknown")
    return ProviderError(code, status, str(getattr(exc, "detail", "")))
