"""Bandwidth adapter on the official ``bandwidth-sdk``."""

import urllib3
from bandwidth import ApiClient, Configuration, MessagesApi
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

    def __init__(self, account_id, username, password, application_id, sandbox_url=None, timeout=15):
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
        self.application_id = application_id
        self.timeout = timeout
        self.api = MessagesApi(ApiClient(config))

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
        item = found.messages[0]
        status = _LIST_STATUS.get(str(item.message_status.value if item.message_status else ""), None)
        code = str(item.error_code) if item.error_code else None
        return status, code
