"""Twilio adapter on the official ``twilio`` SDK."""

from datetime import datetime, timezone

import requests
from requests.adapters import HTTPAdapter
from twilio.base.exceptions import TwilioException, TwilioRestException
from twilio.http.http_client import TwilioHttpClient
from twilio.rest import Client

from notifier.status import map_status
from notifier.providers.base import ProviderError, ProviderUnreachable, SendResult


class TwilioProvider:
    name = "twilio"

    def __init__(self, account_sid, auth_token, sandbox_url=None, timeout=15, connections=10):
        http_client = TwilioHttpClient(pool_connections=True, timeout=timeout)
        # The SDK keeps CPUs + 4 connections (six on two cores), and each concurrent call of a batch needs one.
        for scheme in ("https://", "http://"):
            http_client.session.mount(scheme, HTTPAdapter(pool_maxsize=connections))
        self.client = Client(account_sid, auth_token, http_client=http_client)
        self.media_prefix = "https://api.twilio.com/"
        self.timeout = timeout
        if sandbox_url:
            # The SDK builds every Messages and Lookup URL from these bases, so the sandbox gets
            # the real requests.
            self.client.api.base_url = sandbox_url.rstrip("/")
            self.client.lookups.base_url = sandbox_url.rstrip("/")
            self.media_prefix = sandbox_url.rstrip("/") + "/"
        self._media_session = requests.Session()
        self._media_session.auth = (account_sid, auth_token)

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
        return map_status("twilio", message.status), code

    def fetch_media(self, url, max_bytes):
        """Download an inbound attachment from Twilio; refuse URLs that are not Twilio's."""
        if not url.startswith(self.media_prefix):
            raise ProviderError("media-url", None, "not a Twilio media URL")
        try:
            with self._media_session.get(url, timeout=self.timeout, stream=True) as response:
                if response.status_code >= 400:
                    raise ProviderError(f"http-{response.status_code}", response.status_code)
                return _read_capped(response, max_bytes)
        except requests.RequestException as exc:
            raise ProviderUnreachable(type(exc).__name__) from exc

    def line_type(self, number):
        """Return Twilio Lookup's line type for ``number`` (mobile, landline, …), or None."""
        try:
            found = self.client.lookups.v2.phone_numbers(number).fetch(fields="line_type_intelligence")
        except TwilioException as exc:
            raise ProviderError(getattr(exc, "code", None) or "http-unknown", getattr(exc, "status", None)) from exc
        except requests.RequestException as exc:
            raise ProviderUnreachable(type(exc).__name__) from exc
        return (found.line_type_intelligence or {}).get("type")

    def find_sent(self, to, sender, since, body, exclude=frozenset()):
        """Return ``(sid, status, error_code)`` of a message Twilio took since ``since``, or None.

        Twilio keeps the body, so a match needs the same body, sender and recipient, and a SID not
        in ``exclude``. A pointer text's body contains a one-time link that cannot be rebuilt, so with
        ``body`` None the first other message from ``sender`` to ``to`` matches, as on Bandwidth.
        """
        try:
            # No DateSent filter: a message still queued at Twilio has no date_sent yet and would
            # be missed, so creation time is checked below instead.
            # NOTE: where Twilio's newest-first list puts messages without date_sent is unconfirmed.
            # If it puts them last, a queued text to a number with over 50 texts could be missed.
            found = self.client.messages.list(to=to, from_=sender, limit=50)
        except TwilioException as exc:
            raise ProviderError(getattr(exc, "code", None) or "http-unknown", getattr(exc, "status", None)) from exc
        except requests.RequestException as exc:
            raise ProviderUnreachable(type(exc).__name__) from exc
        candidates = [
            message
            for message in found
            if message.date_created
            and message.date_created >= since
            and message.sid not in exclude
            and (body is None or message.body == body)
        ]
        if not candidates:
            return None
        first = min(candidates, key=lambda message: message.date_created)
        code = str(first.error_code) if first.error_code else None
        return first.sid, map_status("twilio", first.status), code


def _read_capped(response, max_bytes):
    data = bytearray()
    for chunk in response.iter_content(64 * 1024):
        data.extend(chunk)
        if len(data) > max_bytes:
            raise ProviderError("media-too-large", response.status_code, f"over {max_bytes} bytes")
    return bytes(data)


def _validity_seconds(expires_at):
    # Twilio accepts a validity period of 1 to 36000 seconds.
    remaining = int((expires_at - datetime.now(timezone.utc)).total_seconds())
    return max(1, min(remaining, 36000))


def _service_error(exc):
    status = getattr(exc, "status", None)
    code = getattr(exc, "code", None) or (f"http-{status}" if status else "http-unknown")
    return ProviderError(code, status, str(getattr(exc, "detail", "")))
