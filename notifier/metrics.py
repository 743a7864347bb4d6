"""Prometheus counters for what operators watch."""

from prometheus_client import Counter, Histogram

CLINIC_SETUP_FAILURES = Counter(
    "pawpost_clinic_setup_failures_total",
    "SMS failures caused by a clinic's sending setup (registration, verification, account).",
    ["provider", "code"],
)
RETRIES = Counter("pawpost_sms_retries_total", "SMS attempts scheduled again after a temporary failure.", ["provider"])
SUPPRESSED = Counter("pawpost_sms_suppressed_total", "SMS sends skipped before the provider call.", ["reason"])
FALLBACKS = Counter("pawpost_fallbacks_total", "Carrier-filtered texts sent to the Pet Portal instead.", ["provider"])
SENDS = Counter("pawpost_sends_total", "Texts handed to a provider.", ["provider", "channel"])
FINAL_DELIVERIES = Counter(
    "pawpost_deliveries_final_total", "Deliveries that reached a final status.", ["channel", "status", "category"]
)
POINTER_FAILURES = Counter("pawpost_pointer_failures_total", "Pet Portal notice texts that failed too.", ["provider"])
CALLBACK_TO_FALLBACK = Histogram(
    "pawpost_callback_to_fallback_seconds",
    "Time from the carrier-filter callback to the pointer text handed to the provider.",
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)
