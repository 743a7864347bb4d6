"""Bandwidth adapter on the official ``bandwidth-sdk``."""

import urllib3
from bandwidth import ApiClient, Configuration, MediaApi, MessagesApi
from bandwidth.exceptions import ApiException
from bandwidth.models.message_request import MessageRequest

from notifier.providers.base import ProviderError, ProviderUnreachable, SendResult

# Bandwidth's SDK reports delivery states in upper case; map them to Twilio-style words.
_LIST_STATUS = {
    "RECEIVED": "accepted",
    "QUEUED": "accepted",
    "ACCEPTED": "accepted",
    "SENDING": "sent",
    "SENT": "sent",
    "DELIVERED": "delivered",
    "FAILED": "failed",
    "UNDELIVERED": "undelivered",
}


class BandwidthProvider:
    name = "bandwidth"

    def __init__(self, account_id, username, password, application_id, sandbox_url=None, timeout=15, connections=10):
        if sandbox_url:
            # Each SDK operation carries its own host list; ignoring it makes ``host`` win.
            config = Configuration(
                username=username,
                password=password,
                host=sandbox_url.rstrip("/") + "/api/v2",
                ignore_operation_servers=True,
            )
        else:
            config = Configuration(username=username, password=password)
        self.account_id = account_id
        self.media_prefix = (
            sandbox_url.rstrip("/") if sandbox_url else "https://messaging.bandwidth.com"
        ) + f"/api/v2/users/{account_id}/media/"
        self.application_id = application_id
        self.timeout = timeout
        # One connection for each of a batch's concurrent calls.
        config.connection_pool_maxsize = connections
        client = ApiClient(config)
        self.api = MessagesApi(client)
        self.media_api = MediaApi(client)

    def send(self, text):
        """Create the message at Bandwidth and return its id."""
        request = MessageRequest(
            application_id=self.application_id,
            to=[text.to],
            var_from=text.sender,
            text=text.body,
            media=list(text.media_urls) or None,
            tag=text.tag,
            expiration=text.expires_at,
        )
        try:
            message = self.api.create_message(self.account_id, request, _request_timeout=self.timeout)
        except ApiException as exc:
            raise ProviderError(f"http-{exc.status}", exc.status, exc.body or "") from exc
        except urllib3.exceptions.HTTPError as exc:
            raise ProviderUnreachable(type(exc).__name__) from exc
        return SendResult(message.id, "accepted")

    def fetch_status(self, provider_message_id):
        """Return ``(status, error_code)`` of a message as Bandwidth reports it now, or (None, None)."""
        try:
            found = self.api.list_messages(
                self.account_id, message_id=provider_message_id, _request_timeout=self.timeout
            )
        except ApiException as exc:
            raise ProviderError(f"http-{exc.status}", exc.status, exc.body or "") from exc
        except urllib3.exceptions.HTTPError as exc:
            raise ProviderUnreachable(type(exc).__name__) from exc
        if not found.messages:
            return None, None
        return _status_of(found.messages[0])

    def fetch_media(self, url, max_bytes):
        """Download an inbound attachment from Bandwidth's media store; refuse other URLs."""
        if not url.startswith(self.media_prefix):
            raise ProviderError("media-url", None, "not this account's Bandwidth media URL")
        media_id = url[len(self.media_prefix):]
        try:
            data = self.media_api.get_media(self.account_id, media_id, _request_timeout=self.timeout)
        except ApiException as exc:
            raise ProviderError(f"http-{exc.status}", exc.status, "") from exc
        except urllib3.exceptions.HTTPError as exc:
            raise ProviderUnreachable(type(exc).__name__) from exc
        if len(data) > max_bytes:
            raise ProviderError("media-too-large", 200, f"over {max_bytes} bytes")
        return bytes(data)

    def line_type(self, number):
        """Return None: Bandwidth's messaging API has no line-type lookup."""
        return None

    def find_sent(self, to, sender, since, body, exclude=frozenset()):
        """Return ``(id, status, error_code)`` of a message Bandwidth took since ``since``, or None.

        Bandwidth keeps no text, so the match is the first message from ``sender`` to ``to``
        received at or after ``since`` whose id is not in ``exclude``.
        """
        try:
            found = self.api.list_messages(
                self.account_id,
                source_tn=sender,
                destination_tn=to,
                from_date_time=since.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
                _request_timeout=self.timeout,
            )
        except ApiException as exc:
            raise ProviderError(f"http-{exc.status}", exc.status, exc.body or "") from exc
        except urllib3.exceptions.HTTPError as exc:
            raise ProviderUnreachable(type(exc).__name__) from exc
        candidates = [
            m for m in found.messages or [] if m.receive_time and m.receive_time >= since and m.message_id not in exclude
        ]
        if not candidates:
            return None
        first = min(candidates, key=lambda m: m.receive_time)
        return (first.message_id, *_status_of(first))


def _status_of(item):
    status = _LIST_STATUS.get(str(item.message_status.value if item.message_status else ""), None)
    code = str(item.error_code) if item.error_code else None
    return status, code
