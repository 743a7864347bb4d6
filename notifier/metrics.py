"""Prometheus counters for what operators watch."""

from prometheus_client import Counter

CLINIC_SETUP_FAILURES = Counter(
    "pawpost_clinic_setup_failures_total",
    "SMS failures caused by a clinic's sending setup (registration, verification, account).",
    ["provider", "code"],
)
RETRIES = Counter("pawpost_sms_retries_total", "SMS attempts scheduled again after a temporary failure.", ["provider"])
SUPPRESSED = Counter("pawpost_sms_suppressed_total", "SMS sends skipped before the provider call.", ["reason"])
FALLBACKS = Counter("pawpost_fallbacks_total", "Carrier-filtered texts sent to the Pet Portal instead.", ["provider"])
