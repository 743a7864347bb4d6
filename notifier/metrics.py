"""Prometheus counters for what operators watch."""

from prometheus_client import Counter, Histogram
from sqlalchemy import event
from sqlalchemy.orm import Session

from portal.extensions import db

# Session.info key of the counts that wait for their transaction's commit.
_PENDING = "pawpost_pending_counts"

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


def count_after_commit(child):
    """Add one to ``child`` (a labelled counter) when the session's transaction commits.

    A rolled-back transaction counts nothing, so work that is rolled back and done again, such
    as a batch of status events applied again one by one, is counted once.
    """
    db.session().info.setdefault(_PENDING, []).append(child)


@event.listens_for(Session, "after_commit")
def _count_committed(session):
    for child in session.info.pop(_PENDING, ()):
        child.inc()


@event.listens_for(Session, "after_rollback")
def _drop_rolled_back(session):
    session.info.pop(_PENDING, None)

