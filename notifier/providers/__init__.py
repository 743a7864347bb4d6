"""Provider adapters: one small interface over the official Twilio and Bandwidth SDKs."""

import threading

from notifier.providers.base import OutboundText, ProviderError, ProviderUnreachable, SendResult

__all__ = ["OutboundText", "ProviderError", "ProviderUnreachable", "SendResult", "for_clinic"]

_cache = {}
_cache_lock = threading.Lock()


def for_clinic(clinic, sandbox_url=None, timeout=15, connections=10):
    """Return the adapter for ``clinic``'s provider, reused per process to keep HTTP connections alive.

    ``connections`` is how many HTTP connections the adapter keeps open for calls made at once.
    """
    if clinic.provider == "twilio":
        key = ("twilio", clinic.twilio_account_sid, clinic.twilio_auth_token, sandbox_url, connections)
    else:
        key = (
            "bandwidth", clinic.bandwidth_account_id, clinic.bandwidth_username,
            clinic.bandwidth_password, clinic.bandwidth_application_id, sandbox_url, connections,
        )
    with _cache_lock:
        adapter = _cache.get(key)
        if adapter is None:
            adapter = _build(clinic, sandbox_url, timeout, connections)
            _cache[key] = adapter
    return adapter


def _build(clinic, sandbox_url, timeout, connections):
    # Imported here so a process that only uses one provider never loads the other SDK.
    if clinic.provider == "twilio":
        from notifier.providers.twilio import TwilioProvider

        return TwilioProvider(clinic.twilio_account_sid, clinic.twilio_auth_token, sandbox_url, timeout, connections)
    if clinic.provider == "bandwidth":
        from notifier.providers.bandwidth import BandwidthProvider

        return BandwidthProvider(
            clinic.bandwidth_account_id,
            clinic.bandwidth_username,
            clinic.bandwidth_password,
            clinic.bandwidth_application_id,
            sandbox_url,
            timeout,
            connections,
        )
    raise ValueError(f"Clinic {clinic.id} has provider {clinic.provider!r}; use twilio or bandwidth.")
